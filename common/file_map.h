// Read-only whole-file mapping. Model files are mmapped, never copied.
#ifndef CS_FILE_MAP_H
#define CS_FILE_MAP_H

#include <stddef.h>
#include "status.h"

typedef struct cs_file_map {
    const unsigned char *data; // NULL for an empty file
    size_t size;
} cs_file_map;

// Maps path read-only. On success the caller owns *m and releases it with cs_file_unmap.
cs_status cs_file_map_open(const char *path, cs_file_map *m, char *err, size_t errlen);
void cs_file_unmap(cs_file_map *m);

// Reads a whole (small) text file into a NUL-terminated malloc'd buffer the caller frees.
// Refuses files over max_bytes.
cs_status cs_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len,
                           char *err, size_t errlen);

#endif
