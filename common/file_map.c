#include "file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

cs_status cs_file_map_open(const char *path, cs_file_map *m, char *err, size_t errlen) {
    m->data = NULL;
    m->size = 0;
    // a FIFO blocks this open until a writer comes, as for any reader (tests/http_e2e.py holds
    // a server's model load that way), and is refused once opened: not a regular file
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cs_errf(err, errlen, CS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cs_errf(err, errlen, CS_ERR_IO, "%s: not a regular file", path);
    }
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
    FILE *f = fopen(path, "rb");
    if (!f) return cs_errf(err, errlen, CS_ERR_IO, "%s: %s", path, strerror(errno));
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
