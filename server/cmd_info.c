// cserve info: what a model file holds, without loading it for inference.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/model_file.h"
#include "engine/tokenizer.h"

static void print_size(const char *label, size_t bytes) {
    printf("%-22s %zu bytes (%.1f MiB)\n", label, bytes, (double)bytes / (1024.0 * 1024.0));
}

static void print_tensor_types(const cs_model_file *m) {
    size_t count[CS_DTYPE_COUNT] = {0}, bytes[CS_DTYPE_COUNT] = {0};
    for (int i = 0; i < m->n_tensors; i++) {
        count[m->tensors[i].dtype]++;
        bytes[m->tensors[i].dtype] += m->tensors[i].nbytes;
    }
    printf("%-22s", "tensor types");
    for (int t = 0; t < CS_DTYPE_COUNT; t++)
        if (count[t]) printf(" %s x%zu (%.1f MiB)", cs_dtype_name((cs_dtype)t), count[t],
                             (double)bytes[t] / (1024.0 * 1024.0));
    printf("\n");
}

// The layer matrices --quant converts: F32/F16/BF16 attention and feed-forward weights.
static bool quantised_by(const cs_model_tensor *t) {
    static const char *const kinds[] = {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                                        "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", NULL};
    if (strncmp(t->name, "blk.", 4) != 0 || t->n_dims != 2) return false;
    if (t->dtype != CS_DTYPE_F32 && t->dtype != CS_DTYPE_F16 && t->dtype != CS_DTYPE_BF16) return false;
    const char *dot = strchr(t->name + 4, '.');
    for (int i = 0; dot && kinds[i]; i++)
        if (!strcmp(dot + 1, kinds[i])) return true;
    return false;
}

// What the weights take with --quant: the converted matrices in their new type, the rest as stored.
static void print_quantised(const cs_model_file *m, cs_dtype q) {
    size_t bytes = 0;
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const cs_model_tensor *t = &m->tensors[i];
        size_t row;
        if (quantised_by(t) && cs_dtype_row_bytes(q, t->ne[0], &row)) {
            bytes += row * (size_t)t->ne[1];
            n++;
        } else {
            bytes += t->nbytes;
        }
    }
    printf("%-22s %d matrices as %s, embeddings and the rest as stored\n", "with --quant", n, cs_dtype_name(q));
    print_size("weights with --quant", bytes);
}

static void print_rope(const cs_model_config *c) {
    static const char *scaling[] = {"none", "linear", "llama3"};
    printf("%-22s base %g, %d dims, layout %s, scaling %s", "rope", (double)c->rope_theta,
           c->rope_dim, c->rope_layout == CS_ROPE_NORM ? "interleaved (GGUF llama)" : "neox (half split)",
           c->rope_freqs_tensor ? "per-frequency tensor" : scaling[c->rope_scaling]);
    if (c->rope_scaling != CS_ROPE_SCALING_NONE) printf(" x%g", (double)c->rope_factor);
    printf("\n");
}

static void print_model(const char *path, const cs_model_file *m, cs_dtype quant) {
    const cs_model_config *c = &m->cfg;
    printf("%-22s %s\n", "model", path);
    printf("%-22s %s\n", "name", m->name);
    printf("%-22s %s\n", "format", m->format == CS_FORMAT_GGUF ? "GGUF" : "safetensors (Hugging Face)");
    if (m->gguf) printf("%-22s %u\n", "gguf version", cs_gguf_version(m->gguf));
    printf("%-22s %s\n", "architecture", cs_arch_name(c->arch));
    printf("%-22s %d\n", "layers", c->n_layer);
    printf("%-22s %d\n", "hidden size", c->dim);
    printf("%-22s %d\n", "feed-forward size", c->ffn_dim);
    printf("%-22s %d query, %d key/value (head dim %d)\n", "attention heads", c->n_head,
           c->n_head_kv, c->head_dim);
    printf("%-22s %d\n", "vocabulary", c->vocab_size);
    printf("%-22s %d\n", "context length", c->context_len);
    printf("%-22s %g\n", "rms norm epsilon", (double)c->rms_eps);
    print_rope(c);
    printf("%-22s %s%s\n", "lm_head", c->tied_embeddings ? "tied to token embedding" : "separate",
           c->attn_bias ? ", q/k/v bias" : "");
    if (m->quant_desc[0]) printf("%-22s %s\n", "checkpoint quant", m->quant_desc);
    print_tensor_types(m);
    print_size("weights", cs_model_file_weight_bytes(m));
    if (quant != CS_DTYPE_COUNT) print_quantised(m, quant);
    printf("%-22s %s, %d tokens, bos %d, eos %d\n", "tokenizer", cs_tokenizer_kind_name(m->tok),
           cs_tokenizer_vocab_size(m->tok), cs_tokenizer_bos(m->tok), cs_tokenizer_eos(m->tok));
    bool known;
    cs_chat_kind k = cs_chat_detect(cs_tokenizer_chat_template(m->tok), &known);
    printf("%-22s %s%s\n", "chat template", cs_chat_kind_name(k),
           cs_tokenizer_chat_template(m->tok) ? (known ? "" : " (unrecognised template: fallback)")
                                              : " (none in the file: default)");
}

int cs_cmd_info(int argc, char **argv) {
    const char *model = NULL, *quant_name = NULL;
    int group = 32;
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        if (cs_cli_is_help(argv[i])) {
            printf("usage: cserve info [--model PATH] [--quant int8|int4 [--quant-group N]]\n\n"
                   "  --model PATH  a GGUF file or a Hugging Face directory (default: $CSERVE_MODEL\n"
                   "                or the default model fetched by scripts/setup.sh)\n"
                   "  --quant ...   also show the weight bytes after load-time quantisation\n");
            return CS_EXIT_OK;
        }
        if (cs_cli_text(argc, argv, &i, "--model", &model, &bad) ||
            cs_cli_quant_opt(argc, argv, &i, &quant_name, &group, &bad)) {
            if (bad) return CS_EXIT_BAD_INPUT;
            continue;
        }
        fprintf(stderr, "error: unknown option '%s' (see cserve info --help)\n", argv[i]);
        return CS_EXIT_BAD_INPUT;
    }
    const char *path = cs_cli_model_path(model);
    cs_model_file *m;
    char err[CS_ERR_LEN];
    if (cs_model_file_open(path, &m, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s: %s\n", path, err);
        return CS_EXIT_BAD_INPUT;
    }
    cs_dtype quant = CS_DTYPE_COUNT;
    if (cs_quant_type(quant_name, group, &quant, err, sizeof err) != CS_OK) {
        fprintf(stderr, "error: %s\n", err);
        cs_model_file_free(m);
        return CS_EXIT_BAD_INPUT;
    }
    print_model(path, m, quant);
    cs_model_file_free(m);
    return CS_EXIT_OK;
}
