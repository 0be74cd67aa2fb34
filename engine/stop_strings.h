// Stop strings over streamed text: decoded text goes in piece by piece (one token's worth at a
// time, say), and out comes the text that can safely be sent to the client.
//
//     const char *stops[] = {"\n\nUser:", "</answer>"};
//     char err[CS_ERR_LEN];
//     cs_stop_matcher *m = cs_stop_init(stops, 2, err, sizeof err); // NULL: see err
//     char out[CS_STOP_MAX_HELD + 64];
//     bool stopped = false;
//     while (!stopped && more tokens) {
//         size_t n = cs_stop_push(m, piece, piece_len, out, sizeof out, &stopped);
//         send(out, n);                           // stopped: the sequence ends here
//     }
//     if (!stopped) send(out, cs_stop_flush(m, out, sizeof out));
//     cs_stop_free(m);
//
// Text that might be the beginning of a stop string is held back until it either completes a
// stop string or can no longer. A stop string is matched on bytes, across push boundaries,
// and is never emitted, nor is anything after it.
//
// Which match wins: the stream stops at the first byte that completes any stop string (so the
// result never depends on how the text was split into pieces); if several stop strings end on
// that byte, the longest one (the one that starts earliest) is cut. With "ab" and "abc", text
// "xabc" stops after "xab" and emits "x"; with "abcd" and "bc", text "abcd" emits "a".
//
// UTF-8: the matcher never emits part of a character. An incomplete multi-byte sequence at the
// end of the text (a token that ends mid-character) is held back until its last byte arrives
// or until cs_stop_flush, and the held-back region is widened to a character boundary.
// Invalid UTF-8 passes through unchanged; at most 3 extra bytes are held because of it.
#ifndef CS_STOP_STRINGS_H
#define CS_STOP_STRINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/status.h"

#define CS_STOP_MAX_STRINGS 16
#define CS_STOP_MAX_LEN 256
// The most bytes the matcher ever holds back: a stop string less one byte, widened by up to 3
// bytes to start on a UTF-8 character.
#define CS_STOP_MAX_HELD (CS_STOP_MAX_LEN - 1 + 3)

typedef struct cs_stop_matcher cs_stop_matcher;

// Whether s can be a stop string: 1 to CS_STOP_MAX_LEN bytes of valid UTF-8. When it cannot,
// writes the reason into why ("is 300 bytes (must be 1 to 256)", "is not valid UTF-8"), for
// the caller to put after its own name for the string. cs_stop_init applies exactly this, so
// a request can be refused up front instead of failing once it is scheduled.
bool cs_stop_string_ok(const char *s, char *why, size_t whylen);

// Copies the n stop strings (n = 0 is allowed: then the matcher only keeps UTF-8 characters
// whole). Returns NULL with a message in err when n > CS_STOP_MAX_STRINGS or a string fails
// cs_stop_string_ok; NULL with "out of memory" when allocation fails. The caller frees with
// cs_stop_free.
cs_stop_matcher *cs_stop_init(const char *const *stops, size_t n, char *err, size_t errlen);
void cs_stop_free(cs_stop_matcher *m); // NULL is fine

// Appends text[0, len) to the stream and writes to out the bytes that are now safe to emit,
// returning their count. out must have room for len + CS_STOP_MAX_HELD bytes (checked). When
// a stop string completes, writes everything before it, sets *stopped and discards the rest;
// after that, pushes write nothing and keep *stopped true. Otherwise *stopped is set false.
size_t cs_stop_push(cs_stop_matcher *m, const char *text, size_t len, char *out, size_t cap,
                    bool *stopped);

// At the end of generation: writes everything still held back (when nothing matched) and
// returns its length; out must have room for CS_STOP_MAX_HELD bytes (checked). Writes nothing
// after a match. After a flush without a match the matcher starts over as a fresh stream.
size_t cs_stop_flush(cs_stop_matcher *m, char *out, size_t cap);

// True once a stop string has matched.
bool cs_stop_matched(const cs_stop_matcher *m);

#endif
