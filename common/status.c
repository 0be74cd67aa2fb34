#include "status.h"

#include <stdarg.h>
#include <stdio.h>

// Control bytes become '?': messages quote names and strings from model files and requests,
// and one holding a newline or an escape sequence could forge log lines or drive the terminal.
void cs_verrf(char *err, size_t errlen, const char *fmt, va_list ap) {
    if (!err || errlen == 0) return;
    vsnprintf(err, errlen, fmt, ap);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

cs_status cs_errf(char *err, size_t errlen, cs_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cs_verrf(err, errlen, fmt, ap);
    va_end(ap);
    return st;
}

const char *cs_status_str(cs_status st) {
    switch (st) {
    case CS_OK: return "ok";
    case CS_ERR_IO: return "i/o error";
    case CS_ERR_FORMAT: return "bad format";
    case CS_ERR_UNSUPPORTED: return "unsupported";
    case CS_ERR_NOT_FOUND: return "not found";
    case CS_ERR_NOMEM: return "out of memory";
    case CS_ERR_INVALID: return "invalid argument";
    }
    return "unknown status";
}
