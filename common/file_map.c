#include "file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// Opens path for reading if it is a regular file. O_NONBLOCK so that a FIFO (or a device)
// is refused at once instead of blocking the open until a writer comes; it changes nothing
// for a regular file. Returns the fd, or -1 with err set.
static int open_regular(const char *path, struct stat *st, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        cs_errf(err, errlen, CS_ERR_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        cs_errf(err, errlen, CS_ERR_IO, "%s: not a regular file", path);
        return -1;
    }
    return fd;
}

cs_status cs_file_map_open(const char *path, cs_file_map *m, char *err, size_t errlen) {
    m->data = NULL;
    m->size = 0;
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
    if (fd < 0) return CS_ERR_IO;
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return cs_errf(err, errlen, CS_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return CS_OK;
}

void cs_file_unmap(cs_file_map *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

cs_status cs_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len,
                           char *err, size_t errlen) {
    *out = NULL;
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
    if (fd < 0) return CS_ERR_IO;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cs_errf(err, errlen, CS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(f);
                return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: larger than %zu bytes", path,
                               max_bytes);
            }
            cap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return cs_errf(err, errlen, CS_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return cs_errf(err, errlen, CS_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return CS_OK;
}
