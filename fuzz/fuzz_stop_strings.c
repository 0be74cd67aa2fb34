// libFuzzer target: arbitrary bytes as stop strings plus a text. Layout: byte 0 = number of
// stop strings (mod 5); each stop string is a length byte (mod 12, +1) and that many bytes;
// the rest is the text. The text is pushed twice, whole and in pieces whose sizes come from
// the bytes themselves; both runs must agree, the output must be a prefix of the text, and it
// must contain no stop string.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/stop_strings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Pushes text (in pieces when split) and flushes; returns the output length in out.
static size_t run(cs_stop_matcher *m, const uint8_t *text, size_t len, bool split, char *out) {
    size_t used = 0, pos = 0;
    bool stopped = false;
    while (pos < len && !stopped) {
        size_t piece = split ? 1 + text[pos] % 7 : len;
        if (piece > len - pos) piece = len - pos;
        used += cs_stop_push(m, (const char *)text + pos, piece, out + used,
                             piece + CS_STOP_MAX_HELD, &stopped);
        pos += piece;
    }
    if (!stopped) used += cs_stop_flush(m, out + used, CS_STOP_MAX_HELD);
    return used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    char stop_buf[4][14];
    const char *stops[4];
    size_t ns = data[0] % 5, at = 1;
    for (size_t j = 0; j < ns; j++) {
        if (at >= size) return 0;
        size_t l = 1 + data[at++] % 12;
        if (l > size - at) return 0;
        memcpy(stop_buf[j], data + at, l);
        stop_buf[j][l] = 0; // an embedded NUL just shortens (or empties) the string
        stops[j] = stop_buf[j];
        at += l;
    }
    const uint8_t *text = data + at;
    const size_t len = size - at;
    cs_stop_matcher *a = cs_stop_init(stops, ns, NULL, 0);
    if (!a) return 0; // empty or invalid UTF-8 stop string: rejected, fine
    cs_stop_matcher *b = cs_stop_init(stops, ns, NULL, 0);
    static char out1[4096 + 2 * CS_STOP_MAX_HELD], out2[4096 + 2 * CS_STOP_MAX_HELD];
    const size_t n1 = run(a, text, len, false, out1), n2 = run(b, text, len, true, out2);
    if (n1 != n2 || memcmp(out1, out2, n1) || n1 > len || memcmp(out1, text, n1))
        __builtin_trap();
    for (size_t j = 0; j < ns; j++) {
        const size_t l = strlen(stops[j]);
        for (size_t i = 0; i + l <= n1; i++)
            if (!memcmp(out1 + i, stops[j], l)) __builtin_trap();
    }
    if (cs_stop_matched(a) != cs_stop_matched(b)) __builtin_trap();
    cs_stop_free(a);
    cs_stop_free(b);
    return 0;
}
