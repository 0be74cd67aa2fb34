// GGUF parser: every metadata type read back, tensors placed, and every kind of corrupt file
// rejected with an error that names the problem (never a crash: this also runs under ASan).
#include <math.h>
#include <string.h>

#include "engine/gguf.h"
#include "gguf_writer.h"
#include "test_util.h"

static float f32_data[64 * 3];
static uint16_t f16_data[64];
static unsigned char q4_1_data[2 * 20];

// A file with one key of every type, a string array, a numeric array and three tensors.
static unsigned char *build_valid(uint32_t version, uint32_t alignment, size_t *n) {
    gw g;
    gw_init(&g, version);
    g.alignment = alignment;
    gw_kv_str(&g, "general.architecture", "llama");
    if (alignment != 32) gw_kv_u32(&g, "general.alignment", alignment);
    gw_kv_u8(&g, "t.u8", 200);
    gw_kv_i8(&g, "t.i8", -100);
    gw_kv_u16(&g, "t.u16", 60000);
    gw_kv_i16(&g, "t.i16", -30000);
    gw_kv_u32(&g, "t.u32", 4000000000u);
    gw_kv_i32(&g, "t.i32", -2000000000);
    gw_kv_f32(&g, "t.f32", 1.5f);
    gw_kv_bool(&g, "t.bool", 1);
    gw_kv_u64(&g, "t.u64", 1ull << 40);
    gw_kv_i64(&g, "t.i64", -(1ll << 40));
    gw_kv_f64(&g, "t.f64", 0.25);
    const char *strs[] = {"a", "", "héllo", "<|im_end|>"};
    gw_kv_arr_str(&g, "t.strs", 4, strs);
    int32_t ints[5] = {1, -2, 3, -4, 5};
    gw_kv_arr(&g, "t.ints", 5, 4, 5, ints);
    for (int i = 0; i < 64 * 3; i++) f32_data[i] = (float)i * 0.5f;
    for (int i = 0; i < 64; i++) f16_data[i] = cs_f32_to_fp16((float)i);
    gw_tensor(&g, "a.f32", 0, 2, (int64_t[]){64, 3}, f32_data, sizeof f32_data);
    gw_tensor(&g, "b.f16", 1, 1, (int64_t[]){64}, f16_data, sizeof f16_data);
    gw_tensor(&g, "c.q4_1", 3, 1, (int64_t[]){64}, q4_1_data, sizeof q4_1_data);
    unsigned char *p = gw_finish(&g, n);
    gw_free(&g);
    return p;
}

static void test_read_back(uint32_t version, uint32_t alignment) {
    size_t n;
    unsigned char *file = build_valid(version, alignment, &n);
    cs_gguf *g;
    char err[CS_ERR_LEN] = "";
    TEST_CONDF(cs_gguf_open_memory(file, n, &g, err, sizeof err) == CS_OK, "%s", err);
    if (!g) { free(file); return; }
    TEST_COND(cs_gguf_version(g) == version);
    TEST_COND(cs_gguf_alignment(g) == alignment);
    uint32_t u32; uint64_t u64; int64_t i64; float f; bool b;
    const char *s; size_t len;
    TEST_COND(cs_gguf_get_str(g, "general.architecture", &s, &len) && len == 5 && !memcmp(s, "llama", 5));
    TEST_COND(cs_gguf_get_u32(g, "t.u8", &u32) && u32 == 200);
    TEST_COND(cs_gguf_get_i64(g, "t.i8", &i64) && i64 == -100);
    TEST_COND(!cs_gguf_get_u32(g, "t.i8", &u32)); // negative does not fit unsigned
    TEST_COND(cs_gguf_get_u32(g, "t.u16", &u32) && u32 == 60000);
    TEST_COND(cs_gguf_get_i64(g, "t.i16", &i64) && i64 == -30000);
    TEST_COND(cs_gguf_get_u32(g, "t.u32", &u32) && u32 == 4000000000u);
    TEST_COND(cs_gguf_get_i64(g, "t.i32", &i64) && i64 == -2000000000);
    TEST_COND(cs_gguf_get_f32(g, "t.f32", &f) && f == 1.5f);
    TEST_COND(cs_gguf_get_bool(g, "t.bool", &b) && b);
    TEST_COND(!cs_gguf_get_u32(g, "t.bool", &u32)); // a bool is not an integer
    TEST_COND(cs_gguf_get_u64(g, "t.u64", &u64) && u64 == 1ull << 40);
    TEST_COND(!cs_gguf_get_u32(g, "t.u64", &u32)); // out of range
    TEST_COND(cs_gguf_get_i64(g, "t.i64", &i64) && i64 == -(1ll << 40));
    TEST_COND(cs_gguf_get_f32(g, "t.f64", &f) && f == 0.25f);
    TEST_COND(!cs_gguf_get_str(g, "t.u32", &s, &len));
    TEST_COND(!cs_gguf_get_u32(g, "missing", &u32));
    cs_gguf_type et; uint64_t an; const void *ad;
    TEST_COND(cs_gguf_get_arr(g, "t.strs", &et, &an, &ad) && et == CS_GGUF_STRING && an == 4);
    int ki = cs_gguf_find_key(g, "t.strs");
    TEST_COND(cs_gguf_arr_str(g, ki, 2, &s, &len) && len == strlen("héllo") && !memcmp(s, "héllo", len));
    TEST_COND(cs_gguf_arr_str(g, ki, 1, &s, &len) && len == 0);
    TEST_COND(!cs_gguf_arr_str(g, ki, 4, &s, &len)); // index out of range
    int ii = cs_gguf_find_key(g, "t.ints");
    TEST_COND(cs_gguf_arr_i64(g, ii, 3, &i64) && i64 == -4);
    double d;
    TEST_COND(cs_gguf_arr_f64(g, ii, 4, &d) && d == 5.0);
    TEST_COND(!cs_gguf_arr_str(g, ii, 0, &s, &len));
    TEST_COND(cs_gguf_n_tensors(g) == 3);
    const cs_gguf_tensor *t = cs_gguf_find_tensor(g, "a.f32");
    TEST_COND(t && t->supported && t->dtype == CS_DTYPE_F32 && t->n_dims == 2 && t->ne[0] == 64 &&
              t->ne[1] == 3 && t->nbytes == sizeof f32_data);
    TEST_COND(t && memcmp(t->data, f32_data, sizeof f32_data) == 0);
    TEST_COND(t && ((uintptr_t)t->data - (uintptr_t)file) % alignment == 0);
    t = cs_gguf_find_tensor(g, "b.f16");
    TEST_COND(t && t->dtype == CS_DTYPE_F16 && memcmp(t->data, f16_data, sizeof f16_data) == 0);
    t = cs_gguf_find_tensor(g, "c.q4_1");
    TEST_COND(t && t->dtype == CS_DTYPE_Q4_1 && t->nbytes == 40);
    TEST_COND(cs_gguf_find_tensor(g, "nope") == NULL);
    cs_gguf_free(g);
    free(file);
}

// Every proper prefix of a valid file must be rejected, never read past its end.
static void test_every_truncation(void) {
    size_t n;
    unsigned char *file = build_valid(3, 32, &n);
    int rejected = 0;
    for (size_t len = 0; len < n; len++) {
        // copy into an exact-size heap buffer so ASan catches any read past len
        unsigned char *cut = malloc(len ? len : 1);
        memcpy(cut, file, len);
        cs_gguf *g = NULL;
        char err[CS_ERR_LEN] = "";
        cs_status st = cs_gguf_open_memory(cut, len, &g, err, sizeof err);
        // the last tensor's trailing alignment padding is not needed to read it
        if (st != CS_OK) rejected++;
        TEST_CONDF(st == CS_OK || err[0], "len %zu: error without a message", len);
        cs_gguf_free(g);
        free(cut);
    }
    TEST_CONDF(rejected >= (int)n - 32, "only %d of %zu truncations rejected", rejected, n);
    free(file);
}

static void expect_error(const unsigned char *p, size_t n, cs_status want, const char *needle) {
    cs_gguf *g = NULL;
    char err[CS_ERR_LEN] = "";
    cs_status st = cs_gguf_open_memory(p, n, &g, err, sizeof err);
    TEST_CONDF(st == want, "want %d got %d (%s) for '%s'", want, st, err, needle);
    TEST_CONDF(strstr(err, needle) != NULL, "message '%s' does not mention '%s'", err, needle);
    TEST_COND(g == NULL);
    cs_gguf_free(g);
}

// Builds a file whose tensor section holds one tensor with the given fields.
static unsigned char *one_tensor(uint32_t type, uint32_t n_dims, const int64_t *ne,
                                 const void *data, size_t nbytes, size_t *n) {
    gw g;
    gw_init(&g, 3);
    gw_kv_str(&g, "general.architecture", "llama");
    gw_tensor(&g, "w", type, n_dims, ne, data, nbytes);
    unsigned char *p = gw_finish(&g, n);
    gw_free(&g);
    return p;
}

// Offset of the first tensor info's fields, found by scanning for its name.
static size_t find_bytes(const unsigned char *p, size_t n, const void *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0) return i;
    return (size_t)-1;
}

static void test_corrupt_headers(void) {
    size_t n;
    unsigned char *f = build_valid(3, 32, &n);
    unsigned char *c = malloc(n);
    memcpy(c, f, n); c[0] = 'X';
    expect_error(c, n, CS_ERR_FORMAT, "magic");
    memcpy(c, f, n); c[4] = 1;
    expect_error(c, n, CS_ERR_UNSUPPORTED, "version 1");
    memcpy(c, f, n); c[4] = 4;
    expect_error(c, n, CS_ERR_UNSUPPORTED, "version 4");
    memcpy(c, f, n); memset(c + 8, 0xff, 8); // tensor count
    expect_error(c, n, CS_ERR_FORMAT, "cannot fit");
    memcpy(c, f, n); memset(c + 16, 0x7f, 8); // kv count
    expect_error(c, n, CS_ERR_FORMAT, "cannot fit");
    memcpy(c, f, n); memset(c + 24, 0xff, 8); // first key's length
    expect_error(c, n, CS_ERR_FORMAT, "runs past the end");
    // first value type (after "general.architecture"): 24 + 8 + 20
    memcpy(c, f, n); c[52] = 99;
    expect_error(c, n, CS_ERR_FORMAT, "bad value type");
    // string array count
    size_t at = find_bytes(f, n, "t.strs", 6) + 6 + 4 + 4;
    memcpy(c, f, n); memset(c + at, 0xee, 8);
    expect_error(c, n, CS_ERR_FORMAT, "runs past the end");
    at = find_bytes(f, n, "t.ints", 6) + 6 + 4 + 4;
    memcpy(c, f, n); memset(c + at, 0xee, 7);
    expect_error(c, n, CS_ERR_FORMAT, "runs past the end");
    memcpy(c, f, n); c[at - 4] = 9; // array of arrays
    expect_error(c, n, CS_ERR_UNSUPPORTED, "nested");
    // tensor info of "a.f32": name, n_dims, ne[0], ne[1], type, offset
    at = find_bytes(f, n, "a.f32", 5) + 5;
    memcpy(c, f, n); c[at] = 5;
    expect_error(c, n, CS_ERR_FORMAT, "5 dimensions");
    memcpy(c, f, n); c[at] = 0;
    expect_error(c, n, CS_ERR_FORMAT, "0 dimensions");
    memcpy(c, f, n); memset(c + at + 4, 0, 8);
    expect_error(c, n, CS_ERR_FORMAT, "zero or overflowing");
    memcpy(c, f, n); memset(c + at + 4, 0xff, 8); memset(c + at + 12, 0xff, 7);
    expect_error(c, n, CS_ERR_FORMAT, "zero or overflowing");
    memcpy(c, f, n); memcpy(c + at + 20, &(uint32_t){77}, 4);
    expect_error(c, n, CS_ERR_UNSUPPORTED, "unknown tensor type 77");
    memcpy(c, f, n); memcpy(c + at + 24, &(uint64_t){4}, 8);
    expect_error(c, n, CS_ERR_FORMAT, "alignment");
    memcpy(c, f, n); memcpy(c + at + 24, &(uint64_t){1ull << 40}, 8);
    expect_error(c, n, CS_ERR_FORMAT, "runs past the end");
    memcpy(c, f, n); memcpy(c + at + 24, &(uint64_t){UINT64_MAX - 31}, 8);
    expect_error(c, n, CS_ERR_FORMAT, "runs past the end");
    memcpy(c, f, n); memcpy(c + at + 24, &(uint64_t){160}, 8); // [160, 928) overlaps b.f16
    expect_error(c, n, CS_ERR_FORMAT, "overlap");
    // duplicate tensor: rename b.f16 to a.f32 (same length)
    at = find_bytes(f, n, "b.f16", 5);
    memcpy(c, f, n); memcpy(c + at, "a.f32", 5);
    expect_error(c, n, CS_ERR_FORMAT, "duplicate tensor");
    at = find_bytes(f, n, "t.u16", 5);
    memcpy(c, f, n); memcpy(c + at, "t.i16", 5);
    expect_error(c, n, CS_ERR_FORMAT, "duplicate key");
    expect_error(f, 3, CS_ERR_FORMAT, "magic");
    free(c);
    free(f);
}

static void test_tensor_rules(void) {
    size_t n;
    float data[48] = {0};
    unsigned char *f = one_tensor(3, 1, (int64_t[]){48}, data, sizeof data, &n); // Q4_1, 48 % 32
    expect_error(f, n, CS_ERR_FORMAT, "not a multiple");
    free(f);
    unsigned char q6k[210] = {0};
    f = one_tensor(14, 1, (int64_t[]){256}, q6k, sizeof q6k, &n); // Q6_K: listed, not supported
    cs_gguf *g;
    char err[CS_ERR_LEN] = "";
    TEST_CONDF(cs_gguf_open_memory(f, n, &g, err, sizeof err) == CS_OK, "%s", err);
    const cs_gguf_tensor *t = g ? cs_gguf_find_tensor(g, "w") : NULL;
    TEST_COND(t && !t->supported && t->nbytes == 210 && !strcmp(cs_ggml_type_name(t->ggml_type), "Q6_K"));
    cs_gguf_free(g);
    free(f);
    // custom alignment must be a power of two
    gw w;
    gw_init(&w, 3);
    gw_kv_u32(&w, "general.alignment", 48);
    f = gw_finish(&w, &n);
    gw_free(&w);
    expect_error(f, n, CS_ERR_FORMAT, "power of two");
    free(f);
}

static void test_open_path_errors(void) {
    cs_gguf *g;
    char err[CS_ERR_LEN] = "";
    TEST_COND(cs_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err) == CS_ERR_IO);
    TEST_COND(strstr(err, "/nonexistent/x.gguf") != NULL);
    TEST_COND(cs_gguf_open("/tmp", &g, err, sizeof err) == CS_ERR_IO);
}

// The default model, when present: the facts its metadata states.
static void test_default_model(void) {
    const char *path = test_env("CSERVE_MODEL");
    if (!path) return;
    cs_gguf *g;
    char err[CS_ERR_LEN] = "";
    if (cs_gguf_open(path, &g, err, sizeof err) != CS_OK) {
        TEST_CONDF(0, "%s", err);
        return;
    }
    uint32_t v;
    TEST_COND(cs_gguf_version(g) == 3);
    TEST_COND(cs_gguf_get_u32(g, "llama.block_count", &v) && v == 30);
    TEST_COND(cs_gguf_n_tensors(g) == 272);
    const cs_gguf_tensor *t = cs_gguf_find_tensor(g, "token_embd.weight");
    TEST_COND(t && t->dtype == CS_DTYPE_Q8_0 && t->ne[0] == 576 && t->ne[1] == 49152);
    int tokens = cs_gguf_find_key(g, "tokenizer.ggml.tokens");
    const char *s;
    size_t len;
    TEST_COND(cs_gguf_arr_str(g, tokens, 2, &s, &len) && len == 10 && !memcmp(s, "<|im_end|>", 10));
    cs_gguf_free(g);
}

// `test_gguf --write-seeds DIR` writes the valid files built here as the fuzzer's seed corpus.
static int write_seeds(const char *dir) {
    uint32_t variants[3][2] = {{3, 32}, {2, 32}, {3, 64}};
    for (int i = 0; i < 3; i++) {
        size_t n;
        unsigned char *f = build_valid(variants[i][0], variants[i][1], &n);
        char path[4096];
        snprintf(path, sizeof path, "%s/seed%d.gguf", dir, i);
        FILE *out = fopen(path, "wb");
        if (!out || fwrite(f, 1, n, out) != n) return 1;
        fclose(out);
        free(f);
    }
    return 0;
}

// A message quoting a hostile name stays one printable line (common/status.c).
static void test_error_text(void) {
    char err[64];
    TEST_COND(cs_errf(err, sizeof err, CS_ERR_FORMAT, "unsupported architecture '%s'", "ll\x1b[31mama\n\a") ==
              CS_ERR_FORMAT);
    TEST_CONDF(!strcmp(err, "unsupported architecture 'll?[31mama?" "?'"), "got '%s'", err); // no trigraph
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) return write_seeds(argv[2]);
    test_error_text();
    test_read_back(3, 32);
    test_read_back(2, 32);
    test_read_back(3, 64);
    test_every_truncation();
    test_corrupt_headers();
    test_tensor_rules();
    test_open_path_errors();
    test_default_model();
    return TEST_REPORT();
}
