// Model loading from GGUF: the config read from metadata, and every way a model file can be
// incomplete or inconsistent answered with an error naming the problem.
#include <string.h>
#include <unistd.h>

#include "engine/model_file.h"
#include "engine/tokenizer.h"
#include "test_util.h"
#include "tiny_model.h"

static char dir[] = "/tmp/cs_test_model_XXXXXX";

static cs_status open_tiny(const tiny_opts *o, cs_model_file **m, char *err) {
    char path[256];
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    if (tiny_model_write(path, o) != 0) return CS_ERR_IO;
    err[0] = 0;
    return cs_model_file_open(path, m, err, CS_ERR_LEN);
}

static void test_valid(void) {
    cs_model_file *m = NULL;
    char err[CS_ERR_LEN];
    TEST_CONDF(open_tiny(&(tiny_opts){0}, &m, err) == CS_OK, "%s", err);
    if (!m) return;
    const cs_model_config *c = &m->cfg;
    TEST_COND(c->arch == CS_ARCH_LLAMA && c->n_layer == 2 && c->dim == 64 && c->ffn_dim == 128);
    TEST_COND(c->n_head == 4 && c->n_head_kv == 2 && c->head_dim == 16 && c->rope_dim == 16);
    TEST_COND(c->vocab_size == 300 && c->context_len == 256 && c->rms_eps == 1e-5f);
    TEST_COND(c->rope_theta == 10000.0f && c->rope_layout == CS_ROPE_NORM);
    TEST_COND(c->tied_embeddings && !c->attn_bias && c->rope_scaling == CS_ROPE_SCALING_NONE);
    TEST_COND(!strcmp(m->name, "tiny") && m->format == CS_FORMAT_GGUF);
    TEST_COND(m->n_tensors == 2 + 9 * 2);
    const cs_model_tensor *t = cs_model_file_tensor(m, "blk.1.attn_k.weight");
    TEST_COND(t && t->ne[0] == 64 && t->ne[1] == 32 && t->dtype == CS_DTYPE_F32);
    TEST_COND(m->tok && cs_tokenizer_vocab_size(m->tok) == 300);
    cs_model_file_free(m);
    TEST_CONDF(open_tiny(&(tiny_opts){.untied = 1}, &m, err) == CS_OK, "%s", err);
    TEST_COND(m && !m->cfg.tied_embeddings);
    cs_model_file_free(m);
}

static void expect_fail(tiny_opts o, cs_status want, const char *needle) {
    cs_model_file *m = NULL;
    char err[CS_ERR_LEN];
    cs_status st = open_tiny(&o, &m, err);
    TEST_CONDF(st == want, "want %d got %d (%s)", want, st, err);
    TEST_CONDF(strstr(err, needle) != NULL, "'%s' does not mention '%s'", err, needle);
    TEST_COND(m == NULL);
    cs_model_file_free(m);
}

static void test_broken(void) {
    expect_fail((tiny_opts){.drop_tensor = "blk.1.ffn_up.weight"}, CS_ERR_NOT_FOUND,
                "missing tensor 'blk.1.ffn_up.weight'");
    expect_fail((tiny_opts){.drop_tensor = "output_norm.weight"}, CS_ERR_NOT_FOUND, "output_norm");
    expect_fail((tiny_opts){.bad_shape = "blk.0.attn_v.weight"}, CS_ERR_FORMAT,
                "'blk.0.attn_v.weight' has shape [64, 33]");
    expect_fail((tiny_opts){.bad_shape = "blk.0.ffn_norm.weight"}, CS_ERR_FORMAT, "ffn_norm");
    expect_fail((tiny_opts){.q5_0_tensor = "blk.0.ffn_gate.weight"}, CS_ERR_UNSUPPORTED, "Q5_0");
    expect_fail((tiny_opts){.arch = "gptneox"}, CS_ERR_UNSUPPORTED, "architecture 'gptneox'");
    expect_fail((tiny_opts){.omit_block_count = 1}, CS_ERR_FORMAT, "llama.block_count");
    expect_fail((tiny_opts){.kv_heads = 3}, CS_ERR_FORMAT, "kv head count 3");
}

static void test_default_model(void) {
    const char *path = test_env("CSERVE_MODEL");
    if (!path) return;
    cs_model_file *m = NULL;
    char err[CS_ERR_LEN] = "";
    TEST_CONDF(cs_model_file_open(path, &m, err, sizeof err) == CS_OK, "%s", err);
    if (!m) return;
    const cs_model_config *c = &m->cfg;
    TEST_COND(c->n_layer == 30 && c->dim == 576 && c->ffn_dim == 1536 && c->n_head == 9);
    TEST_COND(c->n_head_kv == 3 && c->head_dim == 64 && c->vocab_size == 49152);
    TEST_COND(c->context_len == 8192 && c->rope_theta == 100000.0f && c->tied_embeddings);
    TEST_COND(cs_model_file_weight_bytes(m) > 90u << 20 && cs_model_file_weight_bytes(m) < 100u << 20);
    cs_model_file_free(m);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_valid();
    test_broken();
    test_default_model();
    char path[256];
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    unlink(path);
    rmdir(dir);
    return TEST_REPORT();
}
