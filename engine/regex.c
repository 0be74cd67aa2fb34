// engine/regex.h: pattern -> AST -> NFA -> DFA (engine/regex_internal.h), then the DFA
// becomes one rule of the grammar builder: one builder state per DFA state, and per state
// one byte edge per run of consecutive byte values with the same target, so the rule is
// deterministic and the matcher never tracks more than one alternative inside it.
#include "regex.h"

#include <stdlib.h>

#include "regex_internal.h"

static int32_t emit_rule(cs_gram_builder *b, const cs_rx_dfa *d) {
    int32_t rule = cs_gb_rule(b);
    if (rule < 0) return -1;
    int32_t *id = malloc((size_t)d->n_states * sizeof *id);
    if (!id) return -1;
    int run_lo[257], n_runs = 0; // maximal runs of bytes of one class
    for (int x = 0; x < 256; x++)
        if (x == 0 || d->class_of[x] != d->class_of[x - 1]) run_lo[n_runs++] = x;
    run_lo[n_runs] = 256;
    id[0] = cs_gb_start(b, rule);
    for (int32_t s = 1; s < d->n_states; s++) id[s] = cs_gb_state(b, rule);
    for (int32_t s = 0; s < d->n_states && !cs_gb_failed(b); s++) {
        const int32_t *next = d->next + (int64_t)s * d->n_classes;
        if (d->accept[s]) cs_gb_accept(b, id[s]);
        for (int r = 0; r < n_runs;) { // runs with one target merge into one edge
            int32_t t = next[d->class_of[run_lo[r]]];
            int r2 = r + 1;
            while (r2 < n_runs && next[d->class_of[run_lo[r2]]] == t) r2++;
            if (t >= 0) cs_gb_bytes(b, id[s], (uint8_t)run_lo[r], (uint8_t)(run_lo[r2] - 1), id[t]);
            r = r2;
        }
    }
    free(id);
    return cs_gb_failed(b) ? -1 : rule;
}

// The rule for pattern in b, or a status with the reason in err.
static cs_status compile(cs_gram_builder *b, const char *pattern, size_t len, int32_t *rule, char *err, size_t errlen) {
    *rule = -1;
    if (len > CS_REGEX_MAX_LEN)
        return cs_errf(err, errlen, CS_ERR_INVALID, "regex: pattern is %zu bytes, more than the limit of %d", len,
                       CS_REGEX_MAX_LEN);
    if (!pattern && len) return cs_errf(err, errlen, CS_ERR_INVALID, "regex: no pattern");
    cs_rx_ast ast;
    cs_status st = cs_rx_parse(pattern ? pattern : "", len, &ast, err, errlen);
    if (st != CS_OK) return st;
    cs_rx_nfa nfa;
    st = cs_rx_nfa_build(&ast, &nfa, err, errlen);
    cs_rx_ast_free(&ast);
    if (st != CS_OK) return st;
    cs_rx_dfa dfa;
    st = cs_rx_dfa_build(&nfa, CS_REGEX_MAX_DFA_STATES, &dfa, err, errlen);
    cs_rx_nfa_free(&nfa);
    if (st != CS_OK) return st;
    *rule = emit_rule(b, &dfa);
    if (*rule < 0)
        st = cs_errf(err, errlen, CS_ERR_NOMEM, "regex: the grammar builder failed (%d states: over its limits or out of memory)",
                     dfa.n_states);
    cs_rx_dfa_free(&dfa);
    return st;
}

int32_t cs_regex_compile(cs_gram_builder *b, const char *pattern, size_t len, char *err, size_t errlen) {
    int32_t rule;
    if (!b) {
        cs_errf(err, errlen, CS_ERR_NOMEM, "regex: no grammar builder");
        return -1;
    }
    return compile(b, pattern, len, &rule, err, errlen) == CS_OK ? rule : -1;
}

cs_status cs_regex_grammar(const char *pattern, size_t len, cs_grammar **out, char *err, size_t errlen) {
    *out = NULL;
    cs_gram_builder *b = cs_gb_init();
    if (!b) return cs_errf(err, errlen, CS_ERR_NOMEM, "regex: out of memory");
    int32_t rule;
    cs_status st = compile(b, pattern, len, &rule, err, errlen);
    if (st != CS_OK) {
        cs_gb_free(b);
        return st;
    }
    return cs_gb_finish(b, rule, out, err, errlen);
}
