// libFuzzer target: bytes drive block-manager operations. Byte 0 picks the block size (1-8)
// and whether keys are forced to collide; then each operation is an opcode byte and an
// argument byte. After every operation cs_bm_check must pass, and a shadow of what each KV
// slot holds (a fingerprint of the salt and every token up to that position) must match
// what any admitted or live sequence reads back.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "engine/block_manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_SEQ = 6, MAX_LEN = 48, N_BLOCKS = 24 };

typedef struct fseq {
    cs_bm_seq s;
    bool live;
    int n;
    uint64_t salt;
    int32_t toks[MAX_LEN];
    uint64_t fp[MAX_LEN];
} fseq;

static void push(fseq *t, int32_t tok) {
    uint64_t prev = t->n ? t->fp[t->n - 1] : t->salt + 1;
    uint64_t h = (prev ^ (uint32_t)tok) * 0x100000001b3ull;
    t->toks[t->n] = tok;
    t->fp[t->n++] = h ^ (h >> 29);
}

static void verify(const cs_bm *bm, const fseq *t, const uint64_t *kv, int upto) {
    for (int pos = 0; pos < upto; pos++) CS_ASSERT(kv[cs_bm_slot(bm, &t->s, pos)] == t->fp[pos]);
}

static void check(const cs_bm *bm, fseq *seq) {
    cs_bm_seq *live[N_SEQ];
    int n = 0;
    for (int i = 0; i < N_SEQ; i++)
        if (seq[i].live) live[n++] = &seq[i].s;
    char err[256];
    if (!cs_bm_check(bm, live, n, err, sizeof err)) {
        fprintf(stderr, "cs_bm_check: %s\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    int bs = 1 + data[0] % 8;
    cs_bm *bm = cs_bm_init(N_BLOCKS, bs, true);
    cs_bm_debug_constant_hash(bm, data[0] & 0x80);
    uint64_t *kv = calloc((size_t)N_BLOCKS * bs, sizeof *kv);
    fseq *seq = calloc(N_SEQ, sizeof *seq);
    CS_ASSERT(bm && kv && seq);
    for (size_t at = 1; at + 1 < size; at += 2) {
        uint8_t op = data[at], arg = data[at + 1];
        fseq *t = &seq[op % N_SEQ];
        cs_bm_copy cp[1];
        switch ((op / N_SEQ) % 6) {
        case 0: // admit a prompt over a 2-token vocabulary: the arg's bits, then a length
            if (t->live) break;
            t->n = 0;
            t->salt = arg >> 7;
            for (int i = 0; i < 1 + (arg & 15) * 2 && i < MAX_LEN; i++) push(t, (arg >> 4 >> (i % 3)) & 1);
            {
                int want = cs_bm_lookup(bm, t->toks, t->n, t->salt);
                CS_ASSERT(cs_bm_admit(bm, &t->s, t->toks, t->n, t->salt) == want);
            }
            t->live = true;
            verify(bm, t, kv, t->s.n_computed);
            break;
        case 1: // append up to arg % 8 + 1 known tokens (a decode samples one first)
            if (!t->live) break;
            if (t->s.n_tokens == t->n && t->n < MAX_LEN) push(t, arg & 1);
            {
                int k = t->n - t->s.n_tokens < 1 + arg % 8 ? t->n - t->s.n_tokens : 1 + arg % 8;
                if (k == 0 || !cs_bm_can_append(bm, &t->s, k)) break;
                if (cs_bm_append(bm, &t->s, k, cp) == 1)
                    for (int r = 0; r < cp[0].n_rows; r++)
                        kv[(size_t)cp[0].dst * bs + r] = kv[(size_t)cp[0].src * bs + r];
            }
            break;
        case 2: // the forward wrote some pending slots
            if (!t->live || t->s.n_tokens == t->s.n_computed) break;
            {
                int k = 1 + arg % (t->s.n_tokens - t->s.n_computed);
                for (int pos = t->s.n_computed; pos < t->s.n_computed + k; pos++)
                    kv[cs_bm_slot(bm, &t->s, pos)] = t->fp[pos];
                cs_bm_commit(bm, &t->s, t->toks, k, t->salt);
            }
            break;
        case 3: { // fork t into another empty slot
            fseq *d = &seq[arg % N_SEQ];
            if (!t->live || d->live || t->s.n_tokens != t->s.n_computed) break;
            *d = *t;
            d->s = (cs_bm_seq){0};
            cs_bm_fork(bm, &t->s, &d->s);
            break;
        }
        case 4:
            if (t->live) cs_bm_release(bm, &t->s);
            t->live = false;
            break;
        default:
            cs_bm_evict(bm, arg % 4);
            break;
        }
        for (int i = 0; i < N_SEQ; i++)
            if (seq[i].live) verify(bm, &seq[i], kv, seq[i].s.n_computed);
        check(bm, seq);
    }
    for (int i = 0; i < N_SEQ; i++)
        if (seq[i].live) cs_bm_release(bm, &seq[i].s);
    check(bm, seq);
    cs_bm_free(bm);
    free(kv);
    free(seq);
    return 0;
}
