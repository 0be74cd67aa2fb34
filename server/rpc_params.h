// Reading JSON-RPC params strictly: every value checked for type and range, every unknown
// key refused, and the first problem remembered with the name of the parameter.
#ifndef CS_RPC_PARAMS_H
#define CS_RPC_PARAMS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "cserve/engine.h"

typedef struct rpc_reader {
    const cJSON *params; // an object
    const char *bad_param; // first offending parameter (NULL while all is well)
    char msg[256];
} rpc_reader;

// Fails (false, msg set) unless every key of params is in the NULL-terminated list.
bool rpc_only_keys(rpc_reader *r, const char *const *known);
// A number in [lo, hi] (integral when integer); def when absent or null.
double rpc_num(rpc_reader *r, const char *name, double def, double lo, double hi, bool integer);
bool rpc_bool(rpc_reader *r, const char *name, bool def);
// A string or NULL when absent. cJSON ends a string at an escaped NUL (\u0000):
// rpc_parse_object refuses bodies that hold one.
const char *rpc_str(rpc_reader *r, const char *name);
// An array of integers in [lo, hi); malloc'd (caller frees), *n its length; NULL when absent.
int32_t *rpc_int_array(rpc_reader *r, const char *name, int64_t lo, int64_t hi, int max_len, int *n);
void rpc_fail(rpc_reader *r, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// messages [{role, content}] into *msgs (malloc'd; pointers into the JSON). Returns the count
// (0 when absent), or -1 with the reader failed.
int rpc_read_messages(rpc_reader *r, cs_chat_message **msgs);
// What a generate request's fields point at besides the JSON itself; rpc_gen_bufs_free.
typedef struct rpc_gen_bufs {
    int32_t *tokens;
    cs_chat_message *msgs;
    char *schema;          // json_schema, serialised compactly
    const char **choices;  // into the JSON
} rpc_gen_bufs;
void rpc_gen_bufs_free(rpc_gen_bufs *b);

// The generate method's params into q (defaults first). Pointers in q point into params and
// *bufs (zero it first; the caller frees it). Problems are left in r.
void rpc_read_generate(rpc_reader *r, int vocab, int max_model_len, cs_request *q, rpc_gen_bufs *bufs);

// The parameter an engine error message names: its leading identifier ("temperature: ...")
// copied into buf, or NULL when the message starts otherwise.
const char *rpc_param_of(const char *msg, char *buf, size_t cap);

// stop: a string or an array of at most CS_MAX_STOP non-empty strings, into q->stop.
void rpc_read_stop(rpc_reader *r, cs_request *q);

// Parses body as one JSON object, strictly where cJSON is lenient (RFC 8259): valid UTF-8, no
// raw control byte inside a string nor any but space, tab, CR, LF between tokens, nothing but
// whitespace after the object. Returns NULL with r->msg set (r->bad_param NULL: the body as a
// whole is wrong), or the object (the caller deletes it) as r->params, with r failed, naming
// the parameter, when a member holds \u0000 (a C string would end there) or a key appears
// twice. Resets r first.
cJSON *rpc_parse_object(rpc_reader *r, const char *body, size_t len);
// The strict parse alone, of any JSON value: NULL with msg ("<what> is not ...") when text
// breaks the rules above; *nul_member as for rpc_parse_object (-1: no \u0000 in an object's
// member at the top level).
cJSON *rpc_parse_json(const char *text, size_t len, const char *what, int *nul_member, char *msg, size_t cap);
// Fails r, naming param (the key itself when param is NULL), when obj holds a key twice:
// cJSON would read the first, Python (and so most gateways) the last. what names obj in the
// message ("messages[2]").
bool rpc_unique_keys(rpc_reader *r, const cJSON *obj, const char *param, const char *what);

// Client text made safe for a log line: at most max bytes of s, with every byte outside
// printable ASCII, and the backslash, written as \xNN (no forged lines, no terminal escapes).
// out holds cap bytes (4 * max + 1 is always enough), NUL-terminated.
void rpc_escape(const char *s, size_t max, char *out, size_t cap);

// True when [s, s + len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool rpc_valid_utf8(const char *s, size_t len);
// s[0..len) as a NUL-terminated string of valid UTF-8 without NULs: each byte that starts no
// character (and each NUL) becomes U+FFFD. malloc'd; NULL when out of memory. One pass.
char *rpc_utf8_clean(const char *s, size_t len);

#endif
