// Writes a tiny but complete llama-family GGUF (2 layers, dim 64, GQA 4/2 heads, vocab 300,
// byte-level BPE tokenizer) with knobs to break it, for the loader tests.
#ifndef CS_TINY_MODEL_H
#define CS_TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_writer.h"

enum { TINY_DIM = 64, TINY_FFN = 128, TINY_HEADS = 4, TINY_KV = 2, TINY_LAYERS = 2, TINY_VOCAB = 300 };

typedef struct tiny_opts {
    const char *arch;          // default "llama"
    const char *drop_tensor;   // leave this tensor out
    const char *bad_shape;     // give this tensor one row too many
    const char *q5_0_tensor;    // store this tensor as Q5_0 (a type we do not support)
    int kv_heads;              // default TINY_KV
    int untied;                // write output.weight
    int omit_block_count;
    int attn_bias;             // write blk.N.attn_{q,k,v}.bias (with arch "qwen2")
} tiny_opts;

typedef struct tiny_model {
    gw g;
    char *token_text[TINY_VOCAB];
    const char *tokens[TINY_VOCAB];
    float *buffers[64];
    int n_buffers;
} tiny_model;

// GPT-2's printable stand-in for byte b (as UTF-8) in byte-level BPE vocabularies.
static inline void tiny_byte_char(int b, char out[4]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int n = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static inline void tiny_add_tensor(tiny_model *t, const tiny_opts *o, const char *name, int64_t ne0,
                                   int64_t ne1) {
    if (o->drop_tensor && !strcmp(o->drop_tensor, name)) return;
    if (o->bad_shape && !strcmp(o->bad_shape, name)) ne1 = ne1 ? ne1 + 1 : 0, ne0 += ne1 ? 0 : 1;
    int64_t n = ne0 * (ne1 ? ne1 : 1);
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = (float)((i * 7919 % 1000) - 500) / 5000.0f;
    t->buffers[t->n_buffers++] = w;
    int64_t ne[2] = {ne0, ne1};
    if (o->q5_0_tensor && !strcmp(o->q5_0_tensor, name)) // 22 bytes per 32 weights
        gw_tensor(&t->g, name, 6, ne1 ? 2 : 1, ne, w, (size_t)n / 32 * 22);
    else
        gw_tensor(&t->g, name, 0, ne1 ? 2 : 1, ne, w, (size_t)n * sizeof *w);
}

static inline void tiny_tokenizer(tiny_model *t) {
    static const char *special[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    int32_t types[TINY_VOCAB];
    for (int i = 0; i < TINY_VOCAB; i++) {
        t->token_text[i] = calloc(1, 16);
        types[i] = 1;
        if (i < 3) {
            snprintf(t->token_text[i], 16, "%s", special[i]);
            types[i] = 3;
        } else if (i < 3 + 256) {
            tiny_byte_char(i - 3, t->token_text[i]);
        } else {
            snprintf(t->token_text[i], 16, "tok%d", i); // never produced by the merges below
        }
        t->tokens[i] = t->token_text[i];
    }
    // merges making "he", "ll", "hell", "hello" (ids 296..299)
    snprintf(t->token_text[296], 16, "he");
    snprintf(t->token_text[297], 16, "ll");
    snprintf(t->token_text[298], 16, "hell");
    snprintf(t->token_text[299], 16, "hello");
    const char *merges[] = {"h e", "l l", "he ll", "hell o"};
    gw_kv_str(&t->g, "tokenizer.ggml.model", "gpt2");
    gw_kv_str(&t->g, "tokenizer.ggml.pre", "smollm");
    gw_kv_arr_str(&t->g, "tokenizer.ggml.tokens", TINY_VOCAB, t->tokens);
    gw_kv_arr(&t->g, "tokenizer.ggml.token_type", 5, 4, TINY_VOCAB, types);
    gw_kv_arr_str(&t->g, "tokenizer.ggml.merges", 4, merges);
    gw_kv_u32(&t->g, "tokenizer.ggml.bos_token_id", 1);
    gw_kv_u32(&t->g, "tokenizer.ggml.eos_token_id", 2);
    gw_kv_bool(&t->g, "tokenizer.ggml.add_bos_token", 0);
}

static inline void tiny_layer(tiny_model *t, const tiny_opts *o, int l) {
    int hd = TINY_DIM / TINY_HEADS, kv = (o->kv_heads ? o->kv_heads : TINY_KV) * hd;
    struct { const char *s; int64_t ne0, ne1; } w[] = {
        {"attn_norm.weight", TINY_DIM, 0}, {"attn_q.weight", TINY_DIM, TINY_DIM},
        {"attn_k.weight", TINY_DIM, kv}, {"attn_v.weight", TINY_DIM, kv},
        {"attn_output.weight", TINY_DIM, TINY_DIM}, {"ffn_norm.weight", TINY_DIM, 0},
        {"ffn_gate.weight", TINY_DIM, TINY_FFN}, {"ffn_up.weight", TINY_DIM, TINY_FFN},
        {"ffn_down.weight", TINY_FFN, TINY_DIM},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s", l, w[i].s);
        tiny_add_tensor(t, o, name, w[i].ne0, w[i].ne1);
    }
    if (!o->attn_bias) return;
    const char *bias[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s", l, bias[i]);
        tiny_add_tensor(t, o, name, i == 0 ? TINY_DIM : kv, 0);
    }
}

// Writes the model to path. Returns 0 on success.
static inline int tiny_model_write(const char *path, const tiny_opts *o) {
    tiny_model *t = calloc(1, sizeof *t);
    gw_init(&t->g, 3);
    const char *arch = o->arch ? o->arch : "llama";
    char key[96];
    gw_kv_str(&t->g, "general.architecture", arch);
    gw_kv_str(&t->g, "general.name", "tiny");
#define TINY_KEY(k) (snprintf(key, sizeof key, "%s.%s", arch, k), key)
    if (!o->omit_block_count) gw_kv_u32(&t->g, TINY_KEY("block_count"), TINY_LAYERS);
    gw_kv_u32(&t->g, TINY_KEY("context_length"), 256);
    gw_kv_u32(&t->g, TINY_KEY("embedding_length"), TINY_DIM);
    gw_kv_u32(&t->g, TINY_KEY("feed_forward_length"), TINY_FFN);
    gw_kv_u32(&t->g, TINY_KEY("attention.head_count"), TINY_HEADS);
    gw_kv_u32(&t->g, TINY_KEY("attention.head_count_kv"), o->kv_heads ? o->kv_heads : TINY_KV);
    gw_kv_f32(&t->g, TINY_KEY("rope.freq_base"), 10000.0f);
    gw_kv_f32(&t->g, TINY_KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef TINY_KEY
    tiny_tokenizer(t);
    tiny_add_tensor(t, o, "token_embd.weight", TINY_DIM, TINY_VOCAB);
    tiny_add_tensor(t, o, "output_norm.weight", TINY_DIM, 0);
    if (o->untied) tiny_add_tensor(t, o, "output.weight", TINY_DIM, TINY_VOCAB);
    for (int l = 0; l < TINY_LAYERS; l++) tiny_layer(t, o, l);
    size_t n;
    unsigned char *file = gw_finish(&t->g, &n);
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(file, 1, n, f) != n;
    if (f) fclose(f);
    free(file);
    gw_free(&t->g);
    for (int i = 0; i < TINY_VOCAB; i++) free(t->token_text[i]);
    for (int i = 0; i < t->n_buffers; i++) free(t->buffers[i]);
    free(t);
    return rc;
}

#endif
