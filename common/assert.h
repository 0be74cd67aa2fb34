// CS_ASSERT: always on. For bugs and broken invariants only, never for bad input.
#ifndef CS_ASSERT_H
#define CS_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define CS_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
