// Tiny test helpers: TEST_COND prints file:line and the condition on failure and counts it;
// TEST_REPORT prints the totals and returns the exit code for main.
#ifndef CS_TEST_UTIL_H
#define CS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>

static int test_failures_ __attribute__((unused)), test_checks_ __attribute__((unused));

#define TEST_COND(cond)                                                                \
    do {                                                                               \
        test_checks_++;                                                                \
        if (!(cond)) {                                                                 \
            test_failures_++;                                                          \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                              \
    } while (0)

#define TEST_CONDF(cond, ...)                                                          \
    do {                                                                               \
        test_checks_++;                                                                \
        if (!(cond)) {                                                                 \
            test_failures_++;                                                          \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

#define TEST_REPORT()                                                                  \
    (printf("%d checks, %d failed\n", test_checks_, test_failures_), test_failures_ ? 1 : 0)

// Returns the env var or NULL when unset/empty, so tests can skip (exit 77) cleanly.
static inline const char *test_env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

#endif
