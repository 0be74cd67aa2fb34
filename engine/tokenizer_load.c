// Loading a tokenizer from GGUF metadata (tokenizer.ggml.*), driving the builder in
// tokenizer_vocab.c. (tokenizer.json: tokenizer_json.c.)
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer_internal.h"

#define MAX_VOCAB (1 << 24)

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

// ======================================= GGUF ============================================
static cs_pretok pretok_of_gguf(const char *pre, size_t n) {
    static const struct { const char *name; cs_pretok p; } map[] = {
        {"smollm", CS_PRETOK_SMOLLM}, {"starcoder", CS_PRETOK_SMOLLM},
        {"refact", CS_PRETOK_SMOLLM}, {"llama-bpe", CS_PRETOK_LLAMA3},
        {"llama3", CS_PRETOK_LLAMA3}, {"smaug-bpe", CS_PRETOK_LLAMA3},
        {"qwen2", CS_PRETOK_QWEN2},   {"gpt-2", CS_PRETOK_GPT2},
        {"default", CS_PRETOK_GPT2},
    };
    for (size_t i = 0; pre && i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].name) == n && memcmp(map[i].name, pre, n) == 0) return map[i].p;
    return (cs_pretok)-1;
}

static cs_status gguf_vocab(const cs_gguf *g, cs_tokenizer *t, char *err, size_t errlen) {
    int ki = cs_gguf_find_key(g, "tokenizer.ggml.tokens");
    int ti = cs_gguf_find_key(g, "tokenizer.ggml.token_type");
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s;
        size_t len;
        if (!cs_gguf_arr_str(g, ki, (uint64_t)i, &s, &len))
            return cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.ggml.tokens[%d] unreadable", i);
        int64_t type = CS_TT_NORMAL;
        if (ti >= 0 && !cs_gguf_arr_i64(g, ti, (uint64_t)i, &type))
            return cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.ggml.token_type[%d] unreadable", i);
        if (type < CS_TT_NORMAL || type > CS_TT_BYTE) type = CS_TT_NORMAL;
        cs_status st = cs_tok_set_piece(t, i, s, len, (int)type, err, errlen);
        if (st != CS_OK) return st;
    }
    return cs_tok_index_vocab(t, err, errlen);
}

static cs_status gguf_merges(const cs_gguf *g, cs_tokenizer *t, char *err, size_t errlen) {
    cs_gguf_type et;
    uint64_t n;
    const void *data;
    if (!cs_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data) || et != CS_GGUF_STRING)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "byte-level BPE without tokenizer.ggml.merges");
    cs_status st = cs_tok_reserve_merges(t, n, err, errlen);
    if (st != CS_OK) return st;
    int mi = cs_gguf_find_key(g, "tokenizer.ggml.merges");
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (!cs_gguf_arr_str(g, mi, i, &s, &len))
            return cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.ggml.merges[%llu] unreadable",
                           (unsigned long long)i);
        const char *sp = memchr(s, ' ', len);
        if (!sp) continue; // not "a b": nothing to merge
        cs_tok_add_merge(t, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1, (uint32_t)i);
    }
    return CS_OK;
}

static cs_status gguf_scores(const cs_gguf *g, cs_tokenizer *t, char *err, size_t errlen) {
    int si = cs_gguf_find_key(g, "tokenizer.ggml.scores");
    if (si < 0) return cs_errf(err, errlen, CS_ERR_FORMAT, "SentencePiece vocabulary without scores");
    float *scores = malloc((size_t)t->n_vocab * sizeof *scores);
    if (!scores) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (scores)");
    for (int32_t i = 0; i < t->n_vocab; i++) {
        double v;
        if (!cs_gguf_arr_f64(g, si, (uint64_t)i, &v)) {
            free(scores);
            return cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.ggml.scores[%d] unreadable", i);
        }
        scores[i] = (float)v;
    }
    cs_status st = cs_tok_set_scores(t, scores, err, errlen);
    free(scores);
    return st;
}

static int32_t gguf_id(const cs_gguf *g, const cs_tokenizer *t, const char *key) {
    uint32_t v;
    return cs_gguf_get_u32(g, key, &v) && v < (uint32_t)t->n_vocab ? (int32_t)v : -1;
}

static void gguf_specials(const cs_gguf *g, cs_tokenizer *t) {
    t->bos = gguf_id(g, t, "tokenizer.ggml.bos_token_id");
    t->eos = gguf_id(g, t, "tokenizer.ggml.eos_token_id");
    t->unk = gguf_id(g, t, "tokenizer.ggml.unknown_token_id");
    t->pad = gguf_id(g, t, "tokenizer.ggml.padding_token_id");
    t->eot = gguf_id(g, t, "tokenizer.ggml.eot_token_id");
    t->eom = gguf_id(g, t, "tokenizer.ggml.eom_token_id");
    bool spm = t->kind == CS_TOK_SPM_BPE, b;
    t->add_bos = cs_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) ? b : spm;
    t->add_eos = cs_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) ? b : false;
    if (spm) {
        bool prefix = cs_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) ? b : true;
        t->spm_prefix = prefix ? CS_SPM_PREFIX_ALWAYS : CS_SPM_PREFIX_NEVER;
        t->strip_leading_space = prefix;
        t->byte_fallback = true;
        t->model_unk = t->unk; // byte-level BPE (as in Hugging Face) drops what it cannot encode
    }
}

static cs_status gguf_load(const cs_gguf *g, cs_tokenizer *t, char *err, size_t errlen) {
    cs_status st = gguf_vocab(g, t, err, errlen);
    if (st != CS_OK) return st;
    if (t->kind == CS_TOK_BYTE_BPE) {
        const char *pre = NULL;
        size_t n = 0;
        if (!cs_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &n)) pre = "default", n = 7;
        int p = (int)pretok_of_gguf(pre, n);
        if (p < 0)
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "unsupported tokenizer.ggml.pre '%.*s'",
                           (int)(n > 64 ? 64 : n), pre);
        t->pretok = (cs_pretok)p;
        t->ignore_merges = p == CS_PRETOK_LLAMA3; // as Llama-3's tokenizer.json says
        st = gguf_merges(g, t, err, errlen);
    } else {
        st = gguf_scores(g, t, err, errlen);
    }
    if (st != CS_OK) return st;
    gguf_specials(g, t);
    const char *tmpl;
    size_t tn;
    if (cs_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tn) && !(t->chat_template = dup_n(tmpl, tn)))
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (chat template)");
    return cs_tok_finish(t, err, errlen);
}

cs_status cs_tokenizer_from_gguf(const struct cs_gguf *g, cs_tokenizer **out, char *err,
                                 size_t errlen) {
    *out = NULL;
    const char *model;
    size_t mlen;
    if (!cs_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen))
        return cs_errf(err, errlen, CS_ERR_NOT_FOUND, "GGUF has no tokenizer.ggml.model");
    cs_tok_kind kind;
    if (mlen == 4 && memcmp(model, "gpt2", 4) == 0) kind = CS_TOK_BYTE_BPE;
    else if (mlen == 5 && memcmp(model, "llama", 5) == 0) kind = CS_TOK_SPM_BPE;
    else
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "unsupported tokenizer.ggml.model '%.*s'",
                       (int)(mlen > 64 ? 64 : mlen), model);
    cs_gguf_type et;
    uint64_t n;
    const void *data;
    if (!cs_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data) || et != CS_GGUF_STRING)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "GGUF has no tokenizer.ggml.tokens strings");
    if (n == 0 || n > MAX_VOCAB)
        return cs_errf(err, errlen, CS_ERR_FORMAT, "vocabulary size %llu out of range",
                       (unsigned long long)n);
    cs_tokenizer *t = cs_tok_new(kind, (int32_t)n);
    if (!t) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (tokenizer)");
    cs_status st = gguf_load(g, t, err, errlen);
    if (st != CS_OK) {
        cs_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CS_OK;
}
