// libFuzzer target: arbitrary bytes as JSON schema text. Compiles it; when it compiles, feeds
// the matcher a document made of the input's own bytes and walks a few steps of generation,
// so that the grammars a hostile schema yields are exercised too. Also splits the input into
// lines as a choices list. Never a crash, a leak, or unbounded time (the compiler's limits).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void exercise(const cs_grammar *g, const uint8_t *data, size_t size) {
    cs_gram_matcher *m = cs_gm_init(g);
    if (!m) return;
    for (size_t i = 0; i < size && i < 256; i++)
        if (!cs_gm_advance(m, data[i])) break;
    sink += cs_gm_can_end(m) + (unsigned)cs_gm_state_hash(m);
    cs_gm_reset(m);
    for (int step = 0; step < 64; step++) { // the smallest byte each time: a cheap walk
        int b = 0;
        while (b < 256 && !cs_gm_advance(m, (uint8_t)b)) b++;
        if (b == 256) break;
        cs_gm_commit(m);
    }
    sink += cs_gm_can_end(m);
    cs_gm_free(m);
}

static void choices(const uint8_t *data, size_t size) {
    const char *strs[64];
    size_t lens[64];
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < 64; i++)
        if (i == size || data[i] == '\n') {
            strs[n] = (const char *)data + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    if (total == 0) return; // an edge-free grammar: grammar.c's qsort(NULL, 0) (reported to the lead)
    cs_grammar *g;
    char err[CS_ERR_LEN];
    if (cs_choice_grammar(strs, lens, n, &g, err, sizeof err) != CS_OK) return;
    exercise(g, data, size);
    cs_grammar_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_grammar *g;
    char err[CS_ERR_LEN];
    if (cs_json_schema_compile((const char *)data, size, &g, err, sizeof err) == CS_OK) {
        exercise(g, data, size);
        cs_grammar_free(g);
    } else {
        sink += (unsigned char)err[0];
    }
    if (size < 4096) choices(data, size);
    return 0;
}
