// Status codes and error reporting shared by every layer.
//
// Bad input (files, requests, sockets) is reported, never aborted on: a function returns a
// negative cs_status and writes a one-line reason into a caller-owned buffer.
//
//     char err[CS_ERR_LEN];
//     if (cs_gguf_open(path, &g, err, sizeof err) != CS_OK) fprintf(stderr, "%s\n", err);
#ifndef CS_STATUS_H
#define CS_STATUS_H

#include <stddef.h>

typedef enum cs_status {
    CS_OK = 0,
    CS_ERR_IO = -1,          // open/read/mmap failed
    CS_ERR_FORMAT = -2,      // corrupt, truncated or inconsistent file contents
    CS_ERR_UNSUPPORTED = -3, // valid but not something we handle (version, type, arch)
    CS_ERR_NOT_FOUND = -4,   // missing key, tensor or file
    CS_ERR_NOMEM = -5,
    CS_ERR_INVALID = -6,     // bad argument from a caller or a user
} cs_status;

#define CS_ERR_LEN 256

// Writes a formatted one-line message into err (if err != NULL) and returns st.
cs_status cs_errf(char *err, size_t errlen, cs_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// The same with a va_list, for modules whose own error helpers return other codes.
#include <stdarg.h>
void cs_verrf(char *err, size_t errlen, const char *fmt, va_list ap);

const char *cs_status_str(cs_status st);

#endif
