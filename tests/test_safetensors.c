// The Hugging Face loader: the safetensors parser on good and hostile bytes, config.json
// parsing, and whole tiny checkpoints (F32/F16/BF16, single file and sharded, llama and
// qwen2) written into a temp dir and opened with cs_model_file_open.
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/hf_config.h"
#include "engine/model_file.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"
#include "kernels/dtype.h"
#include "test_util.h"

// ---------------------------------------------------------------------------------------
// small helpers

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const void *src, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) abort();
    sb_add(b, tmp, (size_t)n);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, text, strlen(text));
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static void rm_rf(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

// A safetensors file: header JSON text (padded to 8 bytes as the real writer does) + data.
// The caller frees the result.
static unsigned char *st_file(const char *hdr, const void *data, size_t data_len, size_t *size) {
    size_t h = strlen(hdr), padded = (h + 7) / 8 * 8;
    *size = 8 + padded + data_len;
    unsigned char *f = malloc(*size ? *size : 1);
    if (!f) abort();
    for (int i = 0; i < 8; i++) f[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(f + 8, hdr, h);
    memset(f + 8 + h, ' ', padded - h);
    if (data_len) memcpy(f + 8 + padded, data, data_len);
    return f;
}

// Opens hdr + data_len zero bytes from memory; returns the status, err gets the message.
static cs_status st_try(const char *hdr, size_t data_len, char *err, size_t errlen) {
    unsigned char *zeros = calloc(data_len ? data_len : 1, 1);
    size_t size;
    unsigned char *f = st_file(hdr, zeros, data_len, &size);
    cs_safetensors *st = NULL;
    err[0] = 0;
    cs_status s = cs_safetensors_open_memory(f, size, "t.safetensors", &st, err, errlen);
    cs_safetensors_free(st);
    free(f);
    free(zeros);
    return s;
}

// ---------------------------------------------------------------------------------------
// the raw parser

static void test_parse_good(void) {
    float a[6] = {1, 2, 3, 4, 5, -6};
    uint16_t b[2] = {cs_f32_to_bf16(0.5f), cs_f32_to_bf16(-2.0f)};
    unsigned char data[24 + 4 + 3];
    memcpy(data, a, 24);
    memcpy(data + 24, b, 4);
    memcpy(data + 28, "\x01\x02\x03", 3);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"q\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[28,31]},"
        "\"e\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[31,31]},"
        "\"s\":{\"dtype\":\"F8_E9M9\",\"shape\":[],\"data_offsets\":[31,31]}}";
    size_t size;
    unsigned char *f = st_file(hdr, data, sizeof data, &size);
    cs_safetensors *st;
    char err[CS_ERR_LEN];
    cs_status s = cs_safetensors_open_memory(f, size, "good", &st, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s", err);
    if (s != CS_OK) {
        free(f);
        return;
    }
    TEST_COND(cs_safetensors_n_tensors(st) == 5);
    TEST_COND(strcmp(cs_safetensors_tensor_at(st, 0)->name, "a") == 0); // sorted by name
    const cs_safetensors_tensor *t = cs_safetensors_find(st, "a");
    TEST_COND(t && t->supported && t->dtype == CS_DTYPE_F32 && t->n_dims == 2);
    TEST_COND(t && t->shape[0] == 2 && t->shape[1] == 3 && t->n_elems == 6 && t->nbytes == 24);
    float got[6];
    if (t) memcpy(got, t->data, 24);
    TEST_COND(t && got[0] == 1 && got[5] == -6);
    t = cs_safetensors_find(st, "b");
    uint16_t gb;
    if (t) memcpy(&gb, (const char *)t->data + 2, 2);
    TEST_COND(t && t->dtype == CS_DTYPE_BF16 && cs_bf16_to_f32(gb) == -2.0f);
    t = cs_safetensors_find(st, "q");
    TEST_COND(t && !t->supported && strcmp(t->dtype_name, "I8") == 0 && t->nbytes == 3);
    TEST_COND(t && memcmp(t->data, "\x01\x02\x03", 3) == 0);
    t = cs_safetensors_find(st, "e");
    TEST_COND(t && t->n_elems == 0 && t->nbytes == 0);
    t = cs_safetensors_find(st, "s"); // unknown dtype: listed, unsupported, scalar
    TEST_COND(t && !t->supported && t->n_dims == 0 && t->n_elems == 1);
    TEST_COND(cs_safetensors_find(st, "zz") == NULL);
    TEST_COND(cs_safetensors_dtype_size("BF16") == 2 && cs_safetensors_dtype_size("X") == 0);
    cs_safetensors_free(st);
    free(f);

    // An empty header object is a valid (empty) file.
    s = cs_safetensors_open_memory((const unsigned char *)"\x02\0\0\0\0\0\0\0{}", 10, "empty",
                                   &st, err, sizeof err);
    TEST_CONDF(s == CS_OK && cs_safetensors_n_tensors(st) == 0, "%s", err);
    cs_safetensors_free(st);
    cs_safetensors_free(NULL);
}

// One hostile header: expected status and a word the message must contain.
typedef struct bad_case {
    const char *what, *hdr;
    size_t data_len;
    cs_status want;
    const char *needle;
} bad_case;

static void test_parse_bad_headers(void) {
    static const bad_case cases[] = {
        {"not JSON", "{\"a\": {\"dtype\": \"F32\",", 0, CS_ERR_FORMAT, "not valid JSON"},
        {"garbage after JSON", "{} x", 0, CS_ERR_FORMAT, "after its JSON value"},
        {"not an object", "[1, 2, 3]", 0, CS_ERR_FORMAT, "not an object"},
        {"entry not object", "{\"a\": 3}", 0, CS_ERR_FORMAT, "entry is not an object"},
        {"metadata not object", "{\"__metadata__\": []}", 0, CS_ERR_FORMAT, "__metadata__"},
        {"no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT,
         "dtype"},
        {"dtype not printable", "{\"a\":{\"dtype\":\"f\\n32\",\"shape\":[1],"
         "\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT, "dtype"},
        {"no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT,
         "shape"},
        {"offsets past data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         4, CS_ERR_FORMAT, "past the data section"},
        {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
         8, CS_ERR_FORMAT, "reversed"},
        {"offsets not pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
         4, CS_ERR_FORMAT, "data_offsets"},
        {"offsets negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[-4,0]}}", 4, CS_ERR_FORMAT, "data_offsets"},
        {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
         8, CS_ERR_FORMAT, "needs 12"},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, CS_ERR_FORMAT,
         "overlap"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
         4, CS_ERR_FORMAT, "shape[0]"},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
         4, CS_ERR_FORMAT, "shape[0]"},
        {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}",
         4, CS_ERR_FORMAT, "shape[0]"},
        {"huge dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}",
         4, CS_ERR_FORMAT, "shape[0]"},
        {"dims overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
         "\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT, "overflows"},
        {"bytes overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[9007199254740992,256],"
         "\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT, "needs"},
        {"too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
         "\"data_offsets\":[0,4]}}", 4, CS_ERR_FORMAT, "dimensions"},
        {"duplicate", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, CS_ERR_FORMAT,
         "twice"},
        {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         CS_ERR_FORMAT, "name"},
    };
    char err[CS_ERR_LEN];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        cs_status s = st_try(c->hdr, c->data_len, err, sizeof err);
        TEST_CONDF(s == c->want && strstr(err, c->needle) && strstr(err, "t.safetensors") &&
                       !strchr(err, '\n'),
                   "%s: got %d '%s'", c->what, s, err);
    }
}

static void test_parse_bad_lengths(void) {
    char err[CS_ERR_LEN];
    cs_safetensors *st = (cs_safetensors *)1;
    // Shorter than the length field.
    cs_status s = cs_safetensors_open_memory("\x08\0\0", 3, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "truncated") && st == NULL, "%s", err);
    s = cs_safetensors_open_memory(NULL, 0, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "truncated"), "%s", err);
    // Header length beyond the file, including values that would wrap 8 + n.
    unsigned char f[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    s = cs_safetensors_open_memory(f, 10, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "runs past the end"), "%s", err);
    memset(f, 0xff, 8);
    s = cs_safetensors_open_memory(f, 10, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "runs past the end"), "%s", err);
    // A file truncated inside its data.
    size_t size;
    float four[4] = {1, 2, 3, 4};
    unsigned char *file =
        st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", four, 16,
                &size);
    s = cs_safetensors_open_memory(file, size - 1, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "truncated"), "%s", err);
    // Every shorter prefix fails cleanly too.
    int ok = 0;
    for (size_t n = 0; n < size; n++) {
        s = cs_safetensors_open_memory(file, n, "t", &st, err, sizeof err);
        ok += s == CS_ERR_FORMAT && st == NULL;
    }
    TEST_COND(ok == (int)size);
    s = cs_safetensors_open_memory(file, size, "t", &st, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s", err);
    cs_safetensors_free(st);
    free(file);
    // The path wrapper: a missing file is an I/O error naming it.
    s = cs_safetensors_open("/nonexistent/x.safetensors", &st, err, sizeof err);
    TEST_CONDF(s == CS_ERR_IO && strstr(err, "/nonexistent/x.safetensors"), "%s", err);
}

// ---------------------------------------------------------------------------------------
// config.json

#define LLAMA_CFG_HEAD                                                                       \
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "                     \
    "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "     \
    "\"vocab_size\": 300, \"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 512"

static cs_status cfg_try(const char *json, cs_model_config *c, char *err) {
    err[0] = 0;
    return cs_hf_config_parse(json, strlen(json), c, err, CS_ERR_LEN);
}

static void test_config_good(void) {
    cs_model_config c;
    char err[CS_ERR_LEN];
    cs_status s = cfg_try(LLAMA_CFG_HEAD ", \"rope_scaling\": null}", &c, err);
    TEST_CONDF(s == CS_OK, "%s", err);
    TEST_COND(c.arch == CS_ARCH_LLAMA && c.dim == 64 && c.ffn_dim == 128 && c.n_layer == 2);
    TEST_COND(c.n_head == 4 && c.n_head_kv == 4 && c.head_dim == 16 && c.rope_dim == 16);
    TEST_COND(c.vocab_size == 300 && c.context_len == 512 && c.rms_eps == 1e-5f);
    TEST_COND(c.rope_theta == 10000.0f && c.rope_layout == CS_ROPE_NEOX);
    TEST_COND(c.rope_scaling == CS_ROPE_SCALING_NONE && !c.tied_embeddings && !c.attn_bias);

    s = cfg_try(LLAMA_CFG_HEAD ", \"num_key_value_heads\": 2, \"rope_theta\": 500000.0, "
                "\"tie_word_embeddings\": true, \"head_dim\": 32, \"rope_scaling\": {"
                "\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}",
                &c, err);
    TEST_CONDF(s == CS_OK, "%s", err);
    TEST_COND(c.n_head_kv == 2 && c.head_dim == 32 && c.rope_dim == 32 && c.tied_embeddings);
    TEST_COND(c.rope_theta == 500000.0f && c.rope_scaling == CS_ROPE_SCALING_LLAMA3);
    TEST_COND(c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
              c.rope_high_freq_factor == 4.0f && c.rope_orig_context == 8192);

    s = cfg_try(LLAMA_CFG_HEAD ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}", &c,
                err);
    TEST_CONDF(s == CS_OK && c.rope_scaling == CS_ROPE_SCALING_LINEAR && c.rope_factor == 2.0f,
               "%s", err);

    s = cfg_try("{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 64, "
                "\"intermediate_size\": 96, \"num_hidden_layers\": 1, \"num_attention_heads\": "
                "4, \"num_key_value_heads\": 1, \"vocab_size\": 300, \"rope_theta\": 1000000.0, "
                "\"use_sliding_window\": false, \"sliding_window\": 131072, "
                "\"max_position_embeddings\": 32768, \"hidden_act\": \"silu\"}",
                &c, err);
    TEST_CONDF(s == CS_OK, "%s", err);
    TEST_COND(c.arch == CS_ARCH_QWEN2 && c.attn_bias && c.n_head_kv == 1);
    TEST_COND(c.context_len == 32768 && c.rope_theta == 1000000.0f);

    // Mistral 7B v0.1: a 4096-token sliding window caps the context we serve.
    s = cfg_try("{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 64, "
                "\"intermediate_size\": 96, \"num_hidden_layers\": 1, \"num_attention_heads\": "
                "4, \"num_key_value_heads\": 2, \"vocab_size\": 300, \"sliding_window\": 4096, "
                "\"max_position_embeddings\": 32768}",
                &c, err);
    TEST_CONDF(s == CS_OK && c.arch == CS_ARCH_MISTRAL && c.context_len == 4096, "%s", err);

    // Only model_type, and padding after the object, are fine.
    s = cfg_try("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 8, "
                "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 9}\n  ",
                &c, err);
    TEST_CONDF(s == CS_OK && c.arch == CS_ARCH_LLAMA && c.head_dim == 32, "%s", err);
}

static void test_config_bad(void) {
    static const struct {
        const char *json;
        cs_status want;
        const char *needle;
    } cases[] = {
        {"{\"architectures\": [\"GPT2LMHeadModel\"]}", CS_ERR_UNSUPPORTED, "GPT2LMHeadModel"},
        {"{\"architectures\": \"LlamaForCausalLM\"}", CS_ERR_FORMAT, "architectures"},
        {"{\"hidden_size\": 1}", CS_ERR_NOT_FOUND, "architectures"},
        {"{\"model_type\": \"gemma\"}", CS_ERR_UNSUPPORTED, "gemma"},
        {"[1]", CS_ERR_FORMAT, "not a JSON object"},
        {"{\"a\": ", CS_ERR_FORMAT, "not valid JSON"},
        {"{} {}", CS_ERR_FORMAT, "after the JSON"},
        {"", CS_ERR_FORMAT, "not valid JSON"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"64\"}", CS_ERR_FORMAT,
         "hidden_size: expected an integer, got a string"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64.5}", CS_ERR_FORMAT,
         "hidden_size"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}", CS_ERR_NOT_FOUND,
         "intermediate_size is missing"},
        {LLAMA_CFG_HEAD ", \"num_key_value_heads\": -2}", CS_ERR_FORMAT, "num_key_value_heads"},
        {LLAMA_CFG_HEAD ", \"num_key_value_heads\": 3}", CS_ERR_FORMAT, "kv head"},
        {LLAMA_CFG_HEAD ", \"rope_theta\": \"1e4\"}", CS_ERR_FORMAT,
         "rope_theta: expected a number, got a string"},
        {LLAMA_CFG_HEAD ", \"rope_theta\": 0}", CS_ERR_FORMAT, "rope_theta"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
         "\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
         "\"vocab_size\": 9, \"rms_norm_eps\": 1.5}", CS_ERR_FORMAT, "rms_norm_eps"},
        {LLAMA_CFG_HEAD ", \"rope_theta\": 1e300}", CS_ERR_FORMAT, "rope_theta"},
        {LLAMA_CFG_HEAD ", \"tie_word_embeddings\": 1}", CS_ERR_FORMAT, "tie_word_embeddings"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
         CS_ERR_UNSUPPORTED, "yarn"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": {\"factor\": 4}}", CS_ERR_NOT_FOUND, "rope_type"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": 2}", CS_ERR_FORMAT, "rope_scaling"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": {\"type\": \"linear\"}}", CS_ERR_NOT_FOUND,
         "factor"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
         "\"low_freq_factor\": 4, \"high_freq_factor\": 1, "
         "\"original_max_position_embeddings\": 8192}}", CS_ERR_FORMAT, "high_freq_factor"},
        {LLAMA_CFG_HEAD ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
         "\"low_freq_factor\": 1, \"high_freq_factor\": 4}}", CS_ERR_NOT_FOUND,
         "original_max_position_embeddings"},
        {LLAMA_CFG_HEAD ", \"hidden_act\": \"gelu\"}", CS_ERR_UNSUPPORTED, "gelu"},
        {LLAMA_CFG_HEAD ", \"mlp_bias\": true}", CS_ERR_UNSUPPORTED, "mlp_bias"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 65, "
         "\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
         "\"vocab_size\": 9}", CS_ERR_FORMAT, "multiple"},
    };
    cs_model_config c;
    char err[CS_ERR_LEN];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_status s = cfg_try(cases[i].json, &c, err);
        TEST_CONDF(s == cases[i].want && strstr(err, cases[i].needle), "case %zu: got %d '%s'",
                   i, s, err);
    }
    // Not NUL-terminated: the parser must stop at len.
    char raw[3] = {'{', '}', 'x'};
    cs_status s = cs_hf_config_parse(raw, 2, &c, err, sizeof err);
    TEST_CONDF(s == CS_ERR_NOT_FOUND, "%s", err);
    s = cs_hf_config_load("/nonexistent/config.json", &c, err, sizeof err);
    TEST_CONDF(s == CS_ERR_IO && strstr(err, "/nonexistent/config.json"), "%s", err);
}

// ---------------------------------------------------------------------------------------
// whole tiny checkpoints

enum { DIM = 64, FFN = 128, N_LAYER = 2, N_HEAD = 4, N_KV = 2, HD = 16, VOCAB = 300 };

typedef struct tensor_spec {
    char hf[96], gguf[64]; // gguf[0] == 0: a tensor the loader ignores
    int n_dims;
    int64_t shape[2]; // HF order: [out, in]
    int seed;
} tensor_spec;

typedef struct model_opts {
    const char *dtype;       // F32, F16, BF16
    bool qwen2, tied;
    int shards;              // 0: model.safetensors; K: K shards + index
    bool misalign;           // a 2-byte tensor first so later data is misaligned
    const char *omit;        // HF name left out of the files
    const char *odd_dtype;   // HF name stored as I8
    const char *bad_shape;   // HF name stored with one extra row
    const char *bad_shard;   // index names this file for model.norm.weight
    bool ghost;              // index lists a tensor its shard lacks
    bool no_tokenizer;
} model_opts;

static int model_tensors(const model_opts *o, tensor_spec *t) {
    int n = 0;
    int q = N_HEAD * HD, kv = N_KV * HD;
#define T(HF, GG, ND, S0, S1)                                                               \
    do {                                                                                     \
        snprintf(t[n].hf, sizeof t[n].hf, "%s", HF);                                         \
        snprintf(t[n].gguf, sizeof t[n].gguf, "%s", GG);                                     \
        t[n].n_dims = ND;                                                                    \
        t[n].shape[0] = S0;                                                                  \
        t[n].shape[1] = S1;                                                                  \
        t[n].seed = n;                                                                       \
        n++;                                                                                 \
    } while (0)
    T("model.embed_tokens.weight", "token_embd.weight", 2, VOCAB, DIM);
    T("model.norm.weight", "output_norm.weight", 1, DIM, 0);
    if (!o->tied) T("lm_head.weight", "output.weight", 2, VOCAB, DIM);
    for (int l = 0; l < N_LAYER; l++) {
        char hf[96], gg[64];
        static const struct {
            const char *hf, *gg;
            int which; // shape id
        } parts[] = {
            {"input_layernorm.weight", "attn_norm.weight", 0},
            {"self_attn.q_proj.weight", "attn_q.weight", 1},
            {"self_attn.k_proj.weight", "attn_k.weight", 2},
            {"self_attn.v_proj.weight", "attn_v.weight", 2},
            {"self_attn.o_proj.weight", "attn_output.weight", 3},
            {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
            {"mlp.gate_proj.weight", "ffn_gate.weight", 4},
            {"mlp.up_proj.weight", "ffn_up.weight", 4},
            {"mlp.down_proj.weight", "ffn_down.weight", 5},
            {"self_attn.q_proj.bias", "attn_q.bias", 6},
            {"self_attn.k_proj.bias", "attn_k.bias", 7},
            {"self_attn.v_proj.bias", "attn_v.bias", 7},
        };
        int np = o->qwen2 ? 12 : 9;
        for (int i = 0; i < np; i++) {
            snprintf(hf, sizeof hf, "model.layers.%d.%s", l, parts[i].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s", l, parts[i].gg);
            switch (parts[i].which) {
            case 0: T(hf, gg, 1, DIM, 0); break;
            case 1: T(hf, gg, 2, q, DIM); break;
            case 2: T(hf, gg, 2, kv, DIM); break;
            case 3: T(hf, gg, 2, DIM, q); break;
            case 4: T(hf, gg, 2, FFN, DIM); break;
            case 5: T(hf, gg, 2, DIM, FFN); break;
            case 6: T(hf, gg, 1, q, 0); break;
            default: T(hf, gg, 1, kv, 0); break;
            }
        }
    }
    T("model.layers.0.self_attn.rotary_emb.inv_freq", "", 1, HD / 2, 0);
#undef T
    return n;
}

// Exactly representable in F16 and BF16, distinct per tensor.
static float tval(int seed, int64_t i) {
    return (float)((i * 7 + seed * 13) % 61 - 30) / 8.0f;
}

static int64_t spec_elems(const tensor_spec *t) {
    return t->n_dims == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

// Writes the tensors ts[i] for which pick(i) into path, as dtype (or I8 / one extra row for
// the odd tensors). Appends "name" -> file to the index weight_map when wm != NULL.
static void write_shard(const char *path, const char *file, const model_opts *o,
                        const tensor_spec *ts, int n, int shard, int n_shards, sbuf *wm) {
    sbuf hdr = {0}, data = {0};
    sb_printf(&hdr, "{\"__metadata__\": {\"format\": \"pt\"}");
    if (o->misalign) {
        sb_printf(&hdr, ", \"pad\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}");
        sb_add(&data, "\0\0", 2);
    }
    for (int i = 0; i < n; i++) {
        const tensor_spec *t = &ts[i];
        if (n_shards && i % n_shards != shard) continue;
        if (o->omit && strcmp(t->hf, o->omit) == 0) continue;
        const char *dt = o->odd_dtype && strcmp(t->hf, o->odd_dtype) == 0 ? "I8"
                         : t->gguf[0] ? o->dtype : "F32";
        int64_t rows = t->shape[0] + (o->bad_shape && strcmp(t->hf, o->bad_shape) == 0);
        int64_t ne = t->n_dims == 1 ? rows : rows * t->shape[1];
        size_t begin = data.n;
        for (int64_t k = 0; k < ne; k++) {
            float v = tval(t->seed, k);
            if (strcmp(dt, "F32") == 0) {
                sb_add(&data, &v, 4);
            } else if (strcmp(dt, "I8") == 0) {
                int8_t b = (int8_t)(v * 8);
                sb_add(&data, &b, 1);
            } else {
                uint16_t h = strcmp(dt, "F16") == 0 ? cs_f32_to_fp16(v) : cs_f32_to_bf16(v);
                sb_add(&data, &h, 2);
            }
        }
        if (t->n_dims == 1)
            sb_printf(&hdr, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld]", t->hf, dt,
                      (long long)rows);
        else
            sb_printf(&hdr, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld]", t->hf, dt,
                      (long long)rows, (long long)t->shape[1]);
        sb_printf(&hdr, ", \"data_offsets\": [%zu, %zu]}", begin, data.n);
        if (wm) {
            const char *f = o->bad_shard && strcmp(t->hf, "model.norm.weight") == 0
                                ? o->bad_shard
                                : file;
            sb_printf(wm, "%s\"%s\": \"%s\"", wm->n > 1 ? ", " : "", t->hf, f);
        }
    }
    sb_printf(&hdr, "}");
    size_t size;
    unsigned char *f = st_file(hdr.p, data.p, data.n, &size);
    write_bytes(path, f, size);
    free(f);
    free(hdr.p);
    free(data.p);
}

// A byte-level BPE tokenizer.json: the 256 GPT-2 byte symbols, a few merges, and the ChatML
// special tokens after them.
static void write_tokenizer(const char *dir) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    cJSON *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    cJSON *added = cJSON_CreateArray();
    // GPT-2's byte -> code point map: printable bytes map to themselves, the rest to 256+.
    int extra = 0, id = 0;
    char sym[300][8];
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        char *s = sym[b];
        if (cp < 0x80) {
            s[0] = (char)cp, s[1] = 0;
        } else {
            s[0] = (char)(0xc0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3f)), s[2] = 0;
        }
    }
    for (int b = 0; b < 256; b++) cJSON_AddNumberToObject(vocab, sym[b], id++);
    static const char *const mer[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"\xc4\xa0", "w"}};
    for (size_t i = 0; i < sizeof mer / sizeof mer[0]; i++) {
        char both[16], line[16];
        snprintf(both, sizeof both, "%s%s", mer[i][0], mer[i][1]);
        snprintf(line, sizeof line, "%s %s", mer[i][0], mer[i][1]);
        cJSON_AddNumberToObject(vocab, both, id++);
        cJSON_AddItemToArray(merges, cJSON_CreateString(line));
    }
    static const char *const special[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 3; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", id);
        cJSON_AddStringToObject(a, "content", special[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddItemToArray(added, a);
        cJSON_AddNumberToObject(vocab, special[i], id++);
    }
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", 1);
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *text = cJSON_Print(root);
    write_text(dir, "tokenizer.json", text);
    free(text);
    cJSON_Delete(root);
    write_text(dir, "tokenizer_config.json",
               "{\"add_bos_token\": false, \"bos_token\": \"<|im_start|>\", "
               "\"eos_token\": \"<|im_end|>\", \"chat_template\": \"{% for message in messages "
               "%}<|im_start|>{{ message['role'] }}\\n{{ message['content'] }}<|im_end|>\\n"
               "{% endfor %}\"}");
}

#define TOK_VOCAB (256 + 4 + 3)

// Writes a whole tiny model into a fresh dir (caller rm_rf's it and frees the path).
static char *write_model(const model_opts *o, tensor_spec *ts, int *n_ts) {
    char *dir = strdup("/tmp/cs_st_XXXXXX");
    if (!dir || !mkdtemp(dir)) abort();
    int n = model_tensors(o, ts);
    *n_ts = n;
    sbuf cfg = {0};
    sb_printf(&cfg,
              "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d, "
              "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
              "\"num_key_value_heads\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-06, "
              "\"rope_theta\": 10000.0, \"max_position_embeddings\": 256, "
              "\"tie_word_embeddings\": %s, \"torch_dtype\": \"float32\"}",
              o->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", DIM, FFN, N_LAYER, N_HEAD,
              N_KV, VOCAB, o->tied ? "true" : "false");
    write_text(dir, "config.json", cfg.p);
    free(cfg.p);
    char path[512];
    if (o->shards == 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_shard(path, "model.safetensors", o, ts, n, 0, 0, NULL);
    } else {
        sbuf wm = {0};
        sb_printf(&wm, "{");
        for (int s = 0; s < o->shards; s++) {
            char file[64];
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, o->shards);
            snprintf(path, sizeof path, "%s/%s", dir, file);
            write_shard(path, file, o, ts, n, s, o->shards, &wm);
        }
        if (o->ghost)
            sb_printf(&wm, ", \"model.layers.0.mlp.ghost.weight\": \"model-00001-of-%05d."
                      "safetensors\"", o->shards);
        sb_printf(&wm, "}");
        sbuf idx = {0};
        sb_printf(&idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": ");
        sb_add(&idx, wm.p, wm.n);
        sb_printf(&idx, "}");
        write_text(dir, "model.safetensors.index.json", idx.p);
        free(wm.p);
        free(idx.p);
    }
    if (!o->no_tokenizer) write_tokenizer(dir);
    return dir;
}

static float elem(const cs_model_tensor *t, int64_t i) {
    const unsigned char *p = t->data;
    uint16_t h;
    float f;
    switch (t->dtype) {
    case CS_DTYPE_F32: memcpy(&f, p + 4 * i, 4); return f;
    case CS_DTYPE_F16: memcpy(&h, p + 2 * i, 2); return cs_fp16_to_f32(h);
    case CS_DTYPE_BF16: memcpy(&h, p + 2 * i, 2); return cs_bf16_to_f32(h);
    default: return NAN;
    }
}

// Opens a good model and checks config, every tensor's name/type/shape/values, and the
// tokenizer.
static void check_good_model(const model_opts *o) {
    tensor_spec ts[64];
    int n;
    char *dir = write_model(o, ts, &n);
    cs_model_file *m = NULL;
    char err[CS_ERR_LEN];
    cs_status s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s %s shards=%d: %s", o->dtype, o->qwen2 ? "qwen2" : "llama",
               o->shards, err);
    if (s == CS_OK) {
        const cs_model_config *c = &m->cfg;
        TEST_COND(m->format == CS_FORMAT_SAFETENSORS && m->hf && !m->gguf);
        TEST_COND(strncmp(m->name, "cs_st_", 6) == 0);
        TEST_COND(c->arch == (o->qwen2 ? CS_ARCH_QWEN2 : CS_ARCH_LLAMA));
        TEST_COND(c->dim == DIM && c->ffn_dim == FFN && c->n_layer == N_LAYER);
        TEST_COND(c->n_head == N_HEAD && c->n_head_kv == N_KV && c->head_dim == HD);
        TEST_COND(c->vocab_size == VOCAB && c->context_len == 256 && c->rms_eps == 1e-6f);
        TEST_COND(c->tied_embeddings == o->tied && c->attn_bias == o->qwen2);
        TEST_COND(c->rope_layout == CS_ROPE_NEOX);
        int mapped = 0, bad_vals = 0, aligned = 1;
        cs_dtype want = strcmp(o->dtype, "F32") == 0   ? CS_DTYPE_F32
                        : strcmp(o->dtype, "F16") == 0 ? CS_DTYPE_F16
                                                       : CS_DTYPE_BF16;
        for (int i = 0; i < n; i++) {
            if (!ts[i].gguf[0]) continue;
            mapped++;
            const cs_model_tensor *t = cs_model_file_tensor(m, ts[i].gguf);
            TEST_CONDF(t != NULL, "%s", ts[i].gguf);
            if (!t) continue;
            bool shape_ok = t->n_dims == ts[i].n_dims &&
                            (ts[i].n_dims == 1 ? t->ne[0] == ts[i].shape[0]
                                               : t->ne[0] == ts[i].shape[1] &&
                                                     t->ne[1] == ts[i].shape[0]);
            TEST_CONDF(shape_ok && t->dtype == want, "%s", ts[i].gguf);
            aligned &= (uintptr_t)t->data % (uintptr_t)cs_dtype_block_bytes(t->dtype) == 0;
            int64_t ne = spec_elems(&ts[i]);
            TEST_COND(t->nbytes == (size_t)ne * (size_t)cs_dtype_block_bytes(want));
            for (int64_t k = 0; k < ne; k++) bad_vals += elem(t, k) != tval(ts[i].seed, k);
        }
        TEST_COND(aligned);
        TEST_COND(bad_vals == 0);
        TEST_COND(m->n_tensors == mapped); // inv_freq ignored, nothing extra
        TEST_COND((cs_model_file_tensor(m, "output.weight") != NULL) == !o->tied);
        TEST_COND(m->tok && cs_tokenizer_vocab_size(m->tok) == TOK_VOCAB);
        TEST_COND(m->tok && cs_tokenizer_find(m->tok, "<|im_end|>", 10) == TOK_VOCAB - 1);
        const char *tmpl = m->tok ? cs_tokenizer_chat_template(m->tok) : NULL;
        TEST_COND(tmpl && strstr(tmpl, "<|im_start|>"));
        int32_t ids[16];
        int k = m->tok ? cs_tokenizer_encode(m->tok, "hello", 5, 0, ids, 16) : -1;
        // "hello" -> "hell" (merges he, ll, he+ll) + "o"
        TEST_CONDF(k == 2 && ids[0] == 258 && ids[1] == 'o', "k=%d", k);
    }
    cs_model_file_free(m);
    rm_rf(dir);
    free(dir);
}

static void test_good_models(void) {
    static const char *const dtypes[] = {"F32", "F16", "BF16"};
    for (int d = 0; d < 3; d++) {
        check_good_model(&(model_opts){.dtype = dtypes[d]});
        check_good_model(&(model_opts){.dtype = dtypes[d], .shards = 2, .tied = true});
    }
    check_good_model(&(model_opts){.dtype = "BF16", .qwen2 = true});
    check_good_model(&(model_opts){.dtype = "F32", .qwen2 = true, .shards = 3});
    check_good_model(&(model_opts){.dtype = "F32", .misalign = true});
    check_good_model(&(model_opts){.dtype = "F16", .misalign = true, .shards = 2});
}

// Opens a broken model; the status and a word of the message must match.
static void check_bad_model(const char *what, const model_opts *o, cs_status want,
                            const char *needle) {
    tensor_spec ts[64];
    int n;
    char *dir = write_model(o, ts, &n);
    cs_model_file *m = (cs_model_file *)1;
    char err[CS_ERR_LEN] = "";
    cs_status s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == want && strstr(err, needle) && !strchr(err, '\n') && m == NULL,
               "%s: got %d '%s'", what, s, err);
    if (s == CS_OK) cs_model_file_free(m);
    rm_rf(dir);
    free(dir);
}

static void test_bad_models(void) {
    check_bad_model("unsupported dtype", &(model_opts){.dtype = "F32",
                    .odd_dtype = "model.layers.1.mlp.up_proj.weight"},
                    CS_ERR_UNSUPPORTED, "model.layers.1.mlp.up_proj.weight");
    check_bad_model("missing tensor", &(model_opts){.dtype = "F16",
                    .omit = "model.layers.1.self_attn.k_proj.weight"},
                    CS_ERR_NOT_FOUND, "blk.1.attn_k.weight");
    check_bad_model("missing bias", &(model_opts){.dtype = "F16", .qwen2 = true,
                    .omit = "model.layers.0.self_attn.v_proj.bias"},
                    CS_ERR_NOT_FOUND, "blk.0.attn_v.bias");
    check_bad_model("wrong shape", &(model_opts){.dtype = "BF16",
                    .bad_shape = "model.layers.0.mlp.down_proj.weight"},
                    CS_ERR_FORMAT, "blk.0.ffn_down.weight");
    check_bad_model("missing shard", &(model_opts){.dtype = "F32", .shards = 2,
                    .bad_shard = "model-00009-of-00009.safetensors"},
                    CS_ERR_IO, "model-00009-of-00009.safetensors");
    check_bad_model("path traversal", &(model_opts){.dtype = "F32", .shards = 2,
                    .bad_shard = "../model-00001-of-00002.safetensors"},
                    CS_ERR_FORMAT, "not a plain file name");
    check_bad_model("absolute shard path", &(model_opts){.dtype = "F32", .shards = 2,
                    .bad_shard = "/etc/passwd"},
                    CS_ERR_FORMAT, "not a plain file name");
    check_bad_model("tensor not in shard", &(model_opts){.dtype = "F32", .shards = 2,
                    .ghost = true},
                    CS_ERR_NOT_FOUND, "model.layers.0.mlp.ghost.weight");
    check_bad_model("no tokenizer", &(model_opts){.dtype = "F32", .no_tokenizer = true},
                    CS_ERR_NOT_FOUND, "tokenizer.json");

    // A good model whose weight file lost its tail (an interrupted copy).
    tensor_spec ts[64];
    int n_ts;
    char *tdir = write_model(&(model_opts){.dtype = "F32"}, ts, &n_ts);
    char tpath[600];
    snprintf(tpath, sizeof tpath, "%s/model.safetensors", tdir);
    struct stat sb;
    TEST_COND(stat(tpath, &sb) == 0 && truncate(tpath, sb.st_size - 100) == 0);
    cs_model_file *tm = NULL;
    char terr[CS_ERR_LEN] = "";
    cs_status ts_st = cs_model_file_open(tdir, &tm, terr, sizeof terr);
    TEST_CONDF(ts_st == CS_ERR_FORMAT && strstr(terr, "truncated") && tm == NULL, "%s", terr);
    rm_rf(tdir);
    free(tdir);

    // Directory-level problems, written by hand.
    char dir[] = "/tmp/cs_st_XXXXXX";
    if (!mkdtemp(dir)) abort();
    cs_model_file *m = NULL;
    char err[CS_ERR_LEN] = "";
    cs_status s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_NOT_FOUND && strstr(err, "config.json"), "%s", err);
    write_text(dir, "config.json", "{\"architectures\": [\"PhiForCausalLM\"]}");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_UNSUPPORTED && strstr(err, "PhiForCausalLM"), "%s", err);
    write_text(dir, "config.json", LLAMA_CFG_HEAD ", \"num_key_value_heads\": \"2\"}");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "num_key_value_heads"), "%s", err);
    write_text(dir, "config.json", LLAMA_CFG_HEAD "}");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_NOT_FOUND && strstr(err, "model.safetensors"), "%s", err);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_bytes(path, "\x10\0\0\0\0\0\0\0{}", 10);
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "runs past the end"), "%s", err);
    size_t size;
    unsigned char *f = st_file("{\"model.layers.7.mlp.up_proj.weight\":{\"dtype\":\"F32\","
                               "\"shape\":[0],\"data_offsets\":[0,0]}}",
                               NULL, 0, &size);
    write_bytes(path, f, size);
    free(f);
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "layer 7"), "%s", err);
    remove(path);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": [1]}");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "weight_map"), "%s", err);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": 3}}");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "'a'"), "%s", err);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": ");
    s = cs_model_file_open(dir, &m, err, sizeof err);
    TEST_CONDF(s == CS_ERR_FORMAT && strstr(err, "not valid JSON"), "%s", err);
    TEST_COND(m == NULL);
    rm_rf(dir);
}

int main(void) {
    test_parse_good();
    test_parse_bad_headers();
    test_parse_bad_lengths();
    test_config_good();
    test_config_bad();
    test_good_models();
    test_bad_models();
    return TEST_REPORT();
}
