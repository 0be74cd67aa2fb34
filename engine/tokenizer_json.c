// Loading a tokenizer from Hugging Face tokenizer.json (+ tokenizer_config.json). We read
// the parts our two families use: a BPE model (vocab, merges, byte_fallback, ignore_merges),
// added tokens, the pre-tokenizer (to pick one of our hand-written splits), the SentencePiece
// normalizer/Metaspace settings, the decoder's leading-space strip, and the post-processor's
// BOS/EOS. Anything else is refused with CS_ERR_UNSUPPORTED rather than mis-tokenized.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/file_map.h"
#include "tokenizer_internal.h"

#define MAX_VOCAB (1 << 24)
#define MAX_JSON_BYTES ((size_t)256 << 20)

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static bool jtype(const cJSON *o, const char *type) {
    const char *s = jstr(o, "type");
    return s && strcmp(s, type) == 0;
}

// A token id from JSON: an integer in [0, MAX_VOCAB).
static bool jid(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < MAX_VOCAB) || floor(d) != d) return false;
    *id = (int32_t)d;
    return true;
}

// The components of a normalizer/pre-tokenizer/decoder: the object itself, or the items of
// a "Sequence" (key "normalizers", "pretokenizers" or "decoders").
static int components(const cJSON *o, const char *seq_key, const cJSON **out, int max) {
    if (!cJSON_IsObject(o)) return 0;
    if (!jtype(o, "Sequence")) {
        out[0] = o;
        return 1;
    }
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, seq_key)) {
        if (n == max) return -1;
        out[n++] = it;
    }
    return n;
}

// --- vocabulary --------------------------------------------------------------------------
static bool is_byte_piece(const char *s) {
    return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

static cs_status json_vocab_size(const cJSON *vocab, const cJSON *added, int32_t *n,
                                 char *err, size_t errlen) {
    int32_t max = -1, id;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!jid(it, &id)) return cs_errf(err, errlen, CS_ERR_FORMAT, "bad vocab id for '%.40s'", it->string);
        if (id > max) max = id;
    }
    cJSON_ArrayForEach(it, added) {
        if (!jid(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || !jstr(it, "content"))
            return cs_errf(err, errlen, CS_ERR_FORMAT, "bad added_tokens entry");
        if (id > max) max = id;
    }
    if (max < 0) return cs_errf(err, errlen, CS_ERR_FORMAT, "empty vocabulary");
    *n = max + 1;
    return CS_OK;
}

static cs_status json_pieces(cs_tokenizer *t, const cJSON *vocab, const cJSON *added,
                             char *err, size_t errlen) {
    const cJSON *it;
    int32_t id = 0;
    cJSON_ArrayForEach(it, vocab) {
        jid(it, &id);
        int type = t->kind == CS_TOK_SPM_BPE && is_byte_piece(it->string) ? CS_TT_BYTE : CS_TT_NORMAL;
        cs_status st = cs_tok_set_piece(t, id, it->string, strlen(it->string), type, err, errlen);
        if (st != CS_OK) return st;
    }
    cJSON_ArrayForEach(it, added) {
        jid(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        const char *s = jstr(it, "content");
        int type = jbool(it, "special", false) ? CS_TT_CONTROL : CS_TT_USER;
        cs_status st = cs_tok_set_piece(t, id, s, strlen(s), type, err, errlen);
        if (st != CS_OK) return st;
    }
    return cs_tok_index_vocab(t, err, errlen);
}

static cs_status json_merges(cs_tokenizer *t, const cJSON *merges, char *err, size_t errlen) {
    cs_status st = cs_tok_reserve_merges(t, (size_t)cJSON_GetArraySize(merges), err, errlen);
    if (st != CS_OK) return st;
    uint32_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0;
        if (cJSON_IsString(it)) { // "a b"
            const char *sp = strchr(it->valuestring, ' ');
            if (sp) a = it->valuestring, alen = (size_t)(sp - a), b = sp + 1;
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) { // ["a", "b"]
            const cJSON *x = cJSON_GetArrayItem(it, 0), *y = cJSON_GetArrayItem(it, 1);
            if (cJSON_IsString(x) && cJSON_IsString(y))
                a = x->valuestring, alen = strlen(a), b = y->valuestring;
        }
        if (!a) return cs_errf(err, errlen, CS_ERR_FORMAT, "bad merge #%u", rank);
        cs_tok_add_merge(t, a, alen, b, strlen(b), rank++);
    }
    return CS_OK;
}

// --- pipeline settings -------------------------------------------------------------------
static bool has_component(const cJSON *o, const char *seq_key, const char *type) {
    const cJSON *c[16];
    int n = components(o, seq_key, c, 16);
    for (int i = 0; i < n; i++)
        if (jtype(c[i], type)) return true;
    return false;
}

// Which of our splits a byte-level pre-tokenizer is; false when it is none of them.
static bool bytelevel_pretok(const cJSON *pre, cs_pretok *out) {
    const cJSON *c[16];
    int n = components(pre, "pretokenizers", c, 16);
    if (n < 1 || n > 2 || !jtype(c[n - 1], "ByteLevel")) return false;
    bool regex = jbool(c[n - 1], "use_regex", true);
    if (jbool(c[n - 1], "add_prefix_space", false)) return false;
    if (n == 1) {
        *out = regex ? CS_PRETOK_GPT2 : CS_PRETOK_NONE;
        return true;
    }
    if (jtype(c[0], "Digits") && jbool(c[0], "individual_digits", false) && regex) {
        *out = CS_PRETOK_SMOLLM;
        return true;
    }
    if (!jtype(c[0], "Split") || regex) return false;
    const char *pat = jstr(cJSON_GetObjectItemCaseSensitive(c[0], "pattern"), "Regex");
    const char *behavior = jstr(c[0], "behavior");
    if (!pat || !behavior || strcmp(behavior, "Isolated") != 0 || jbool(c[0], "invert", false))
        return false;
    if (strcmp(pat, GPT2_REGEX) == 0) *out = CS_PRETOK_GPT2;
    else if (strcmp(pat, LLAMA3_REGEX) == 0) *out = CS_PRETOK_LLAMA3;
    else if (strcmp(pat, QWEN2_REGEX) == 0) *out = CS_PRETOK_QWEN2;
    else return false;
    return true;
}

// SentencePiece style: Prepend("▁") + Replace(" ", "▁") normalizer (Llama-2), or a
// Metaspace pre-tokenizer; Strip / Metaspace decoders drop the leading space again.
static bool spm_settings(cs_tokenizer *t, const cJSON *root) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *c[16];
    int n = components(norm, "normalizers", c, 16);
    bool replace = false;
    for (int i = 0; i < n; i++) {
        if (jtype(c[i], "Prepend") && jstr(c[i], "prepend") && !strcmp(jstr(c[i], "prepend"), "\xE2\x96\x81"))
            t->spm_prefix = CS_SPM_PREFIX_ALWAYS;
        else if (jtype(c[i], "Replace") && jstr(c[i], "content") && !strcmp(jstr(c[i], "content"), "\xE2\x96\x81"))
            replace = true;
        else
            return false;
    }
    n = components(pre, "pretokenizers", c, 16);
    for (int i = 0; i < n; i++) {
        if (!jtype(c[i], "Metaspace")) return false;
        const char *scheme = jstr(c[i], "prepend_scheme");
        bool add = jbool(c[i], "add_prefix_space", true);
        if (scheme) add = strcmp(scheme, "never") != 0;
        t->spm_prefix = !add ? CS_SPM_PREFIX_NEVER
                        : scheme && !strcmp(scheme, "first") ? CS_SPM_PREFIX_FIRST
                                                             : CS_SPM_PREFIX_ALWAYS;
        t->spm_prefix_if_missing = true;
        t->spm_split = jbool(c[i], "split", true);
        replace = true;
    }
    if (!replace) return false;
    n = components(dec, "decoders", c, 16);
    for (int i = 0; i < n; i++) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(c[i], "start");
        if (jtype(c[i], "Strip") && cJSON_IsNumber(start) && start->valuedouble >= 1)
            t->strip_leading_space = true;
        if (jtype(c[i], "Metaspace") && t->spm_prefix != CS_SPM_PREFIX_NEVER)
            t->strip_leading_space = true;
    }
    return true;
}

// TemplateProcessing "single": a special token before $A is BOS, one after it is EOS.
static void post_processor(cs_tokenizer *t, const cJSON *pp) {
    const cJSON *c[16];
    int n = components(pp, "processors", c, 16);
    for (int i = 0; i < n; i++) {
        if (!jtype(c[i], "TemplateProcessing")) continue;
        bool seen_a = false;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(c[i], "single")) {
            if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) seen_a = true;
            const char *name = jstr(cJSON_GetObjectItemCaseSensitive(it, "SpecialToken"), "id");
            int32_t id = name ? cs_tokenizer_find(t, name, strlen(name)) : -1;
            if (id < 0) continue;
            if (!seen_a) t->bos = id, t->add_bos = true;
            else t->eos = id, t->add_eos = true;
        }
    }
}

// tokenizer_config.json: a token is "text" or {"content": "text", ...}.
static int32_t config_token(const cs_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? cs_tokenizer_find(t, s, strlen(s)) : -1;
}

static cs_status apply_config(cs_tokenizer *t, const cJSON *cfg, char *err, size_t errlen) {
    int32_t id;
    if ((id = config_token(t, cfg, "bos_token")) >= 0) t->bos = id;
    if ((id = config_token(t, cfg, "eos_token")) >= 0) t->eos = id;
    if ((id = config_token(t, cfg, "unk_token")) >= 0) t->unk = id;
    if ((id = config_token(t, cfg, "pad_token")) >= 0) t->pad = id;
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
    t->add_eos = jbool(cfg, "add_eos_token", t->add_eos);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    const cJSON *it, *list = cJSON_IsArray(ct) ? ct : NULL;
    cJSON_ArrayForEach(it, list) { // [{"name": "default", "template": ...}, ...]
        const char *name = jstr(it, "name");
        if (name && !strcmp(name, "default")) tmpl = jstr(it, "template");
    }
    if (tmpl && !(t->chat_template = strdup(tmpl)))
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory (chat template)");
    return CS_OK;
}

// --- assembling --------------------------------------------------------------------------
static cs_status json_kind(const cJSON *root, const cJSON *model, cs_tok_kind *kind,
                           char *err, size_t errlen) {
    if (!cJSON_IsObject(model) || !(jtype(model, "BPE") || !jstr(model, "type")))
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "tokenizer.json: only BPE models are supported");
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(model, "vocab")) ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(model, "merges")))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.json: model lacks vocab or merges");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    *kind = has_component(pre, "pretokenizers", "ByteLevel") ? CS_TOK_BYTE_BPE : CS_TOK_SPM_BPE;
    return CS_OK;
}

static cs_status json_load(cs_tokenizer *t, const cJSON *root, const cJSON *model,
                           const cJSON *cfg, char *err, size_t errlen) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    cs_status st = json_pieces(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added, err, errlen);
    if (st == CS_OK) st = json_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), err, errlen);
    if (st != CS_OK) return st;
    t->ignore_merges = jbool(model, "ignore_merges", false);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk = t->model_unk = cs_tokenizer_find(t, unk, strlen(unk));
    if (t->kind == CS_TOK_BYTE_BPE) {
        if (!bytelevel_pretok(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &t->pretok))
            return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "tokenizer.json: unsupported byte-level pre_tokenizer");
    } else if (!spm_settings(t, root)) {
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       "tokenizer.json: neither byte-level nor SentencePiece-style (normalizer/pre_tokenizer)");
    }
    post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if (cfg && (st = apply_config(t, cfg, err, errlen)) != CS_OK) return st;
    return cs_tok_finish(t, err, errlen);
}

cs_status cs_tokenizer_from_hf_json_mem(const char *json, size_t len, const char *config,
                                        size_t config_len, cs_tokenizer **out, char *err,
                                        size_t errlen) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    cJSON *cfg = config ? cJSON_ParseWithLength(config, config_len) : NULL;
    cs_tokenizer *t = NULL;
    cs_status st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cs_tok_kind kind = CS_TOK_BYTE_BPE;
    int32_t n = 0;
    if (!cJSON_IsObject(root)) st = cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer.json: not a JSON object");
    else if (config && !cJSON_IsObject(cfg))
        st = cs_errf(err, errlen, CS_ERR_FORMAT, "tokenizer_config.json: not a JSON object");
    else if ((st = json_kind(root, model, &kind, err, errlen)) != CS_OK) {
    } else if ((st = json_vocab_size(cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                                     cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &n,
                                     err, errlen)) != CS_OK) {
    } else if (!(t = cs_tok_new(kind, n))) st = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    else st = json_load(t, root, model, cfg, err, errlen);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st != CS_OK) {
        cs_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CS_OK;
}

cs_status cs_tokenizer_from_hf(const char *tokenizer_json, const char *tokenizer_config_json,
                               cs_tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    char *json = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    cs_status st = cs_file_read_all(tokenizer_json, MAX_JSON_BYTES, &json, &len, err, errlen);
    if (st == CS_OK && tokenizer_config_json)
        st = cs_file_read_all(tokenizer_config_json, MAX_JSON_BYTES, &cfg, &cfg_len, err, errlen);
    if (st == CS_OK)
        st = cs_tokenizer_from_hf_json_mem(json, len, cfg, cfg_len, out, err, errlen);
    free(json);
    free(cfg);
    return st;
}
