// Opening a model from a Hugging Face directory: config.json, model.safetensors (or
// model.safetensors.index.json and its shards), tokenizer.json (+ tokenizer_config.json).
// Tensor names are mapped onto GGUF's so the rest of the engine sees one naming. AWQ / GPTQ
// int4 checkpoints (quantization_config) have each linear layer's qweight / qzeros / scales
// repacked at open time into one I4_Gg tensor under the layer's usual name (hf_quant.h).
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "../common/file_map.h"
#include "hf_config.h"
#include "hf_quant.h"
#include "model_file.h"
#include "safetensors.h"
#include "tokenizer.h"

#define INDEX_NAME "model.safetensors.index.json"
#define INDEX_MAX_BYTES (64u * 1024u * 1024u)
#define MAX_SHARDS 4096
#define MAX_INDEX_ENTRIES (1 << 20)

// What an HF model owns behind its cs_model_file: the mapped shards, the GGUF-style names
// that m->tensors point at, aligned copies of tensors a writer left unaligned, and the
// repacked int4 matrices of an AWQ / GPTQ checkpoint.
struct cs_hf_model {
    cs_hf_quant quant;
    int n_files;
    cs_safetensors **files;
    int n_names;
    char **names;
    int n_copies;
    void **copies;
};

void cs_hf_model_free(struct cs_hf_model *hf) {
    if (!hf) return;
    for (int i = 0; i < hf->n_files; i++) cs_safetensors_free(hf->files[i]);
    for (int i = 0; i < hf->n_names; i++) free(hf->names[i]);
    for (int i = 0; i < hf->n_copies; i++) free(hf->copies[i]);
    free(hf->files);
    free(hf->names);
    free(hf->copies);
    free(hf);
}

// Returns "dir/name" in a malloc'd string the caller frees, or NULL when out of memory.
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// ---------------------------------------------------------------------------------------
// names

// Writes the GGUF name of a Hugging Face tensor name into out (cap bytes) and returns true,
// or returns false for tensors the engine does not use (rotary_emb.inv_freq, ...).
// *layer is the block index, or -1 for tensors outside the blocks.
static bool map_name(const char *hf, char *out, size_t cap, long *layer) {
    static const char *const top[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
    static const char *const blk[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    *layer = -1;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        if (strcmp(hf, top[i][0]) == 0) {
            snprintf(out, cap, "%s", top[i][1]);
            return true;
        }
    }
    static const char prefix[] = "model.layers.";
    if (strncmp(hf, prefix, sizeof prefix - 1) != 0) return false;
    const char *p = hf + sizeof prefix - 1;
    long l = 0;
    int digits = 0;
    // At most 6 digits: no layer count comes near, and l cannot overflow.
    while (isdigit((unsigned char)*p) && digits < 7) l = l * 10 + (*p++ - '0'), digits++;
    if (digits == 0 || digits > 6 || *p != '.') return false;
    p++;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++) {
        if (strcmp(p, blk[i][0]) == 0) {
            snprintf(out, cap, "blk.%ld.%s", l, blk[i][1]);
            *layer = l;
            return true;
        }
    }
    return false;
}

// Appends t as gguf_name to m->tensors (room reserved by the caller). hf owns the name and
// any aligned copy. where names the file for messages.
static cs_status add_tensor(cs_model_file *m, const cs_safetensors_tensor *t,
                            const char *gguf_name, const char *where, char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    if (!t->supported)
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED,
                       "%s: tensor '%s' has dtype %s, which cserve does not support (F32, F16, "
                       "BF16)",
                       where, t->name, t->dtype_name);
    if (t->n_dims < 1 || t->n_dims > 2)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: tensor '%s' has %d dimensions, expected 1 or 2", where, t->name,
                       t->n_dims);
    if (cs_model_file_tensor(m, gguf_name))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "%s: tensor '%s' appears twice", where,
                       t->name);
    char *name = strdup(gguf_name);
    if (!name) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    hf->names[hf->n_names++] = name;

    const void *data = t->data;
    size_t esize = (size_t)cs_dtype_block_bytes(t->dtype);
    if (t->nbytes > 0 && (uintptr_t)data % esize != 0) {
        // Kernels read elements in place; a writer that did not pad would make that a
        // misaligned access, so such a tensor gets its own aligned copy.
        void *copy = malloc(t->nbytes);
        if (!copy) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        memcpy(copy, data, t->nbytes);
        hf->copies[hf->n_copies++] = copy;
        data = copy;
    }
    cs_model_tensor *mt = &m->tensors[m->n_tensors++];
    mt->name = name;
    mt->dtype = t->dtype;
    mt->n_dims = t->n_dims;
    // safetensors lists the outermost dimension first; GGUF's ne[0] is the row length.
    for (int d = 0; d < 4; d++) mt->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) mt->ne[d] = t->shape[t->n_dims - 1 - d];
    mt->data = data;
    mt->nbytes = t->nbytes;
    return CS_OK;
}

// Whether name ends with suffix.
static bool ends_with(const char *name, const char *suffix) {
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

// The parts of an AWQ / GPTQ linear layer, which add_quantized reads by name once every
// shard is open.
static bool is_quant_part(const char *name) {
    return ends_with(name, ".qweight") || ends_with(name, ".qzeros") || ends_with(name, ".scales") ||
           ends_with(name, ".g_idx");
}

// Maps and adds one HF tensor, or skips it when the engine does not use it.
static cs_status use_tensor(cs_model_file *m, const cs_safetensors_tensor *t, const char *where,
                            char *err, size_t errlen) {
    char name[96];
    long layer;
    if (m->hf->quant.method != CS_HF_QUANT_NONE && is_quant_part(t->name)) return CS_OK;
    if (!map_name(t->name, name, sizeof name, &layer)) return CS_OK;
    if (layer >= m->cfg.n_layer)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "%s: tensor '%s' is for layer %ld but config.json has %d layers", where,
                       t->name, layer, m->cfg.n_layer);
    // A tied model's lm_head, when a writer stored it anyway, is the embedding again.
    if (m->cfg.tied_embeddings && strcmp(name, "output.weight") == 0) return CS_OK;
    return add_tensor(m, t, name, where, err, errlen);
}

// Makes room for n more tensors in m->tensors and the name/copy lists of hf.
static cs_status reserve(cs_model_file *m, int n, char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    size_t cap = (size_t)m->n_tensors + (size_t)n;
    cs_model_tensor *t = realloc(m->tensors, (cap ? cap : 1) * sizeof *t);
    if (!t) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    m->tensors = t;
    char **names = realloc(hf->names, (cap ? cap : 1) * sizeof *names);
    if (!names) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    hf->names = names;
    void **copies = realloc(hf->copies, (cap ? cap : 1) * sizeof *copies);
    if (!copies) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    hf->copies = copies;
    return CS_OK;
}

// Opens dir/file as hf->files[hf->n_files] (room reserved by the caller).
static cs_status open_shard(struct cs_hf_model *hf, const char *dir, const char *file,
                            char *err, size_t errlen) {
    char *path = path_join(dir, file);
    if (!path) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    cs_status s = cs_safetensors_open(path, &hf->files[hf->n_files], err, errlen);
    free(path);
    if (s == CS_OK) hf->n_files++;
    return s;
}

// ---------------------------------------------------------------------------------------
// sharded checkpoints

// One weight_map entry, pointing into the parsed index while it is alive.
typedef struct index_entry {
    const char *tensor, *file;
} index_entry;

static int cmp_entry_file(const void *a, const void *b) {
    return strcmp(((const index_entry *)a)->file, ((const index_entry *)b)->file);
}

// A shard file name must stay inside the model directory.
static bool shard_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strchr(s, '/') || strchr(s, '\\') || strstr(s, "..")) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return false;
    return true;
}

// Opens every shard the index names, once each, and adds every tensor of the weight_map from
// the shard it names. The cJSON tree lives only inside this function.
static cs_status load_index(cs_model_file *m, const char *dir, const char *index_path,
                            char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    char *text = NULL;
    size_t len = 0;
    cs_status s = cs_file_read_all(index_path, INDEX_MAX_BYTES, &text, &len, err, errlen);
    if (s != CS_OK) return s;
    cJSON *root = cJSON_ParseWithLength(text, len);
    index_entry *e = NULL;
    int n = 0;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root)
        s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: not valid JSON", INDEX_NAME);
    else if (!cJSON_IsObject(wm))
        s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: weight_map is missing or not an object",
                    INDEX_NAME);
    else if ((n = cJSON_GetArraySize(wm)) > MAX_INDEX_ENTRIES)
        s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: %d entries (limit %d)", INDEX_NAME, n,
                    MAX_INDEX_ENTRIES);
    else if (!(e = malloc((n ? (size_t)n : 1) * sizeof *e)))
        s = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    int k = 0;
    const cJSON *it;
    if (s == CS_OK) {
        cJSON_ArrayForEach(it, wm) {
            if (!it->string || !cJSON_IsString(it) || !shard_name_ok(it->valuestring)) {
                s = cs_errf(err, errlen, CS_ERR_FORMAT,
                            "%s: shard name for tensor '%.96s' is not a plain file name in the "
                            "model directory",
                            INDEX_NAME, it->string ? it->string : "?");
                break;
            }
            e[k++] = (index_entry){it->string, it->valuestring};
        }
    }
    if (s == CS_OK) {
        // Sorting by file groups each shard's entries, so each shard is opened once.
        qsort(e, (size_t)k, sizeof *e, cmp_entry_file);
        int n_shards = 0;
        for (int i = 0; i < k; i++) n_shards += i == 0 || strcmp(e[i].file, e[i - 1].file) != 0;
        if (n_shards > MAX_SHARDS)
            s = cs_errf(err, errlen, CS_ERR_FORMAT, "%s: %d shards (limit %d)", INDEX_NAME,
                        n_shards, MAX_SHARDS);
        else if (!(hf->files = calloc(n_shards ? (size_t)n_shards : 1, sizeof *hf->files)))
            s = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
        if (s == CS_OK) s = reserve(m, k, err, errlen);
    }
    for (int i = 0; i < k && s == CS_OK; i++) {
        if (i == 0 || strcmp(e[i].file, e[i - 1].file) != 0)
            s = open_shard(hf, dir, e[i].file, err, errlen);
        if (s != CS_OK) break;
        const cs_safetensors_tensor *t = cs_safetensors_find(hf->files[hf->n_files - 1],
                                                             e[i].tensor);
        if (!t) {
            s = cs_errf(err, errlen, CS_ERR_NOT_FOUND,
                        "%s: tensor '%.96s' is not in its shard '%.64s'", INDEX_NAME, e[i].tensor,
                        e[i].file);
            break;
        }
        s = use_tensor(m, t, e[i].file, err, errlen);
    }
    free(e);
    cJSON_Delete(root);
    free(text);
    return s;
}

static cs_status load_single(cs_model_file *m, const char *dir, char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    if (!(hf->files = calloc(1, sizeof *hf->files)))
        return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    cs_status s = open_shard(hf, dir, "model.safetensors", err, errlen);
    if (s != CS_OK) return s;
    const cs_safetensors *st = hf->files[0];
    int n = cs_safetensors_n_tensors(st);
    if ((s = reserve(m, n, err, errlen)) != CS_OK) return s;
    for (int i = 0; i < n && s == CS_OK; i++)
        s = use_tensor(m, cs_safetensors_tensor_at(st, i), "model.safetensors", err, errlen);
    return s;
}

// ---------------------------------------------------------------------------------------
// AWQ / GPTQ layers

// Input and output features of a matrix the engine uses, from config.json; false for names
// that are not a linear layer (the token embedding).
static bool linear_shape(const cs_model_config *c, const char *gguf, int64_t *in, int64_t *out) {
    int64_t q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
    const struct { const char *suffix; int64_t in, out; } shapes[] = {
        {".attn_q.weight", c->dim, q},         {".attn_k.weight", c->dim, kv},
        {".attn_v.weight", c->dim, kv},        {".attn_output.weight", q, c->dim},
        {".ffn_gate.weight", c->dim, c->ffn_dim}, {".ffn_up.weight", c->dim, c->ffn_dim},
        {".ffn_down.weight", c->ffn_dim, c->dim},
    };
    if (strcmp(gguf, "output.weight") == 0) {
        *in = c->dim, *out = c->vocab_size;
        return true;
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strncmp(gguf, "blk.", 4) == 0 && ends_with(gguf, shapes[i].suffix)) {
            *in = shapes[i].in, *out = shapes[i].out;
            return true;
        }
    return false;
}

// The tensor called prefix + suffix in any open shard, or NULL.
static const cs_safetensors_tensor *find_part(const struct cs_hf_model *hf, const char *prefix,
                                              const char *suffix) {
    char name[CS_SAFETENSORS_MAX_NAME + 16];
    snprintf(name, sizeof name, "%.*s%.8s", CS_SAFETENSORS_MAX_NAME, prefix, suffix);
    for (int i = 0; i < hf->n_files; i++) {
        const cs_safetensors_tensor *t = cs_safetensors_find(hf->files[i], name);
        if (t) return t;
    }
    return NULL;
}

// Repacks the layer whose qweight is t (named "<prefix>.qweight") into an I4_Gg tensor under
// the GGUF name of "<prefix>.weight". Layers the engine does not use are skipped.
static cs_status add_quantized(cs_model_file *m, const cs_safetensors_tensor *t, char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    // Names are at most CS_SAFETENSORS_MAX_NAME bytes (the reader refuses longer ones).
    char prefix[CS_SAFETENSORS_MAX_NAME + 1], hf_name[CS_SAFETENSORS_MAX_NAME + 16], name[96];
    size_t plen = strlen(t->name) - strlen(".qweight");
    snprintf(prefix, sizeof prefix, "%.*s", (int)plen, t->name);
    snprintf(hf_name, sizeof hf_name, "%s.weight", prefix);
    long layer;
    if (!map_name(hf_name, name, sizeof name, &layer)) return CS_OK;
    if (layer >= m->cfg.n_layer)
        return cs_errf(err, errlen, CS_ERR_FORMAT,
                       "tensor '%.96s' is for layer %ld but config.json has %d layers", t->name, layer,
                       m->cfg.n_layer);
    if (m->cfg.tied_embeddings && strcmp(name, "output.weight") == 0) return CS_OK;
    int64_t in, out;
    if (!linear_shape(&m->cfg, name, &in, &out))
        return cs_errf(err, errlen, CS_ERR_UNSUPPORTED, "'%.96s' is quantised, which cserve supports only "
                       "for linear layers", t->name);
    if (cs_model_file_tensor(m, name))
        return cs_errf(err, errlen, CS_ERR_FORMAT, "'%.96s' has both weight and qweight", prefix);
    cs_hf_quant_parts parts = {t, find_part(hf, prefix, ".qzeros"), find_part(hf, prefix, ".scales"),
                               find_part(hf, prefix, ".g_idx")};
    void *data;
    size_t nbytes;
    cs_status s = reserve(m, 1, err, errlen);
    if (s == CS_OK) s = cs_hf_quant_repack(&hf->quant, prefix, &parts, in, out, &data, &nbytes, err, errlen);
    if (s != CS_OK) return s;
    hf->copies[hf->n_copies++] = data;
    char *owned = strdup(name);
    if (!owned) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    hf->names[hf->n_names++] = owned;
    cs_model_tensor *mt = &m->tensors[m->n_tensors++];
    *mt = (cs_model_tensor){.name = owned, .dtype = cs_dtype_int4_exact(hf->quant.group), .n_dims = 2,
                            .ne = {in, out, 1, 1}, .data = data, .nbytes = nbytes};
    return CS_OK;
}

// Every qweight in every shard, once all are open (a layer's parts may sit in different
// shards of an index).
static cs_status load_quantized(cs_model_file *m, char *err, size_t errlen) {
    struct cs_hf_model *hf = m->hf;
    cs_status s = CS_OK;
    for (int f = 0; f < hf->n_files && s == CS_OK; f++)
        for (int i = 0; i < cs_safetensors_n_tensors(hf->files[f]) && s == CS_OK; i++) {
            const cs_safetensors_tensor *t = cs_safetensors_tensor_at(hf->files[f], i);
            if (ends_with(t->name, ".qweight")) s = add_quantized(m, t, err, errlen);
        }
    return s;
}

// ---------------------------------------------------------------------------------------
// the directory

// The directory's last path component, in a malloc'd string.
static char *dir_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    size_t len = n - b;
    if (len == 0) return strdup("model");
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, dir + b, len);
        s[len] = 0;
    }
    return s;
}

static cs_status load_weights(cs_model_file *m, const char *dir, char *err, size_t errlen) {
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, INDEX_NAME);
    cs_status s;
    if (!single || !index)
        s = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    else if (is_file(single))
        s = load_single(m, dir, err, errlen);
    else if (is_file(index))
        s = load_index(m, dir, index, err, errlen);
    else
        s = cs_errf(err, errlen, CS_ERR_NOT_FOUND,
                    "%s: neither model.safetensors nor " INDEX_NAME " is there", dir);
    free(single);
    free(index);
    if (s == CS_OK && m->hf->quant.method != CS_HF_QUANT_NONE) s = load_quantized(m, err, errlen);
    if (s == CS_OK && !cs_model_file_tensor(m, "output.weight")) m->cfg.tied_embeddings = true;
    return s;
}

static cs_status load_tokenizer(cs_model_file *m, const char *dir, char *err, size_t errlen) {
    char *tj = path_join(dir, "tokenizer.json");
    char *tc = path_join(dir, "tokenizer_config.json");
    cs_status s;
    if (!tj || !tc)
        s = cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    else if (!is_file(tj))
        s = cs_errf(err, errlen, CS_ERR_NOT_FOUND, "%s: no tokenizer.json", dir);
    else
        s = cs_tokenizer_from_hf(tj, is_file(tc) ? tc : NULL, &m->tok, err, errlen);
    free(tj);
    free(tc);
    return s;
}

// Fills m from the directory. On failure m may hold part of what was loaded; the caller
// releases it with cs_model_file_free, as for the GGUF half. m->hf owns the shards, the
// tensor names and copies; m->tensors (the array), m->name and m->tok are m's.
cs_status cs_model_file_open_hf(const char *dir, cs_model_file *m, char *err, size_t errlen) {
    m->format = CS_FORMAT_SAFETENSORS;
    m->hf = calloc(1, sizeof *m->hf);
    if (!m->hf) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    char *cfg_path = path_join(dir, "config.json");
    if (!cfg_path) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    // read once: the model's shape and its quantization_config
    char *text = NULL;
    size_t len = 0;
    cs_status s = is_file(cfg_path) ? cs_file_read_all(cfg_path, CS_HF_CONFIG_MAX_BYTES, &text, &len, err, errlen)
                                    : cs_errf(err, errlen, CS_ERR_NOT_FOUND, "%s: no config.json", dir);
    if (s == CS_OK) s = cs_hf_config_parse(text, len, &m->cfg, err, errlen);
    if (s == CS_OK) s = cs_hf_quant_parse(text, len, &m->hf->quant, err, errlen);
    free(text);
    free(cfg_path);
    if (s != CS_OK) return s;
    if (m->hf->quant.method != CS_HF_QUANT_NONE)
        snprintf(m->quant_desc, sizeof m->quant_desc, "%s int4, group %d, as %s", cs_hf_quant_name(&m->hf->quant),
                 m->hf->quant.group, cs_dtype_name(cs_dtype_int4_exact(m->hf->quant.group)));
    if (!(m->name = dir_name(dir))) return cs_errf(err, errlen, CS_ERR_NOMEM, "out of memory");
    if ((s = load_weights(m, dir, err, errlen)) != CS_OK) return s;
    return load_tokenizer(m, dir, err, errlen);
}
