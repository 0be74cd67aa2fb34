// Packing int4 / int8 matrices into the GPU layout of qpack.h, and back.
#include "qpack.h"

#include <string.h>

#include "../common/assert.h"
#include "qfrag.h"

bool cs_qpack_dims_of(int bits, int group, int64_t n, int64_t k, cs_qpack_dims *d) {
    if ((bits != 4 && bits != 8) || (group != 32 && group != 64 && group != 128)) return false;
    if (n < 1 || k < 1 || k % group != 0 || n > ((int64_t)1 << 40) / k) return false;
    d->bits = bits;
    d->group = group;
    d->n = n;
    d->k = k;
    d->n_pad = (n + 15) / 16 * 16;
    d->k_pad = (k + 63) / 64 * 64;
    d->n_tiles = d->n_pad / 16;
    d->n_chunks = d->k_pad / 64;
    d->n_groups = d->k_pad / group;
    d->code_words = (size_t)(d->n_pad * d->k_pad * bits / 32);
    d->scale_words = (size_t)(d->n_pad * d->n_groups);
    return true;
}

int cs_qpack_bits(cs_dtype t) {
    switch (t) {
    case CS_DTYPE_Q4_0:
    case CS_DTYPE_Q4_1:
    case CS_DTYPE_I4_G32:
    case CS_DTYPE_I4_G64:
    case CS_DTYPE_I4_G128: return 4;
    case CS_DTYPE_Q8_0:
    case CS_DTYPE_I8_G64:
    case CS_DTYPE_I8_G128: return 8;
    default: return 0;
    }
}

static float half_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return cs_fp16_to_f32(h);
}

static float f32_at(const unsigned char *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

void cs_qplain_from(cs_dtype t, const void *src, int64_t rows, int64_t k, int64_t row0, uint8_t *codes,
                    float *s, float *m) {
    int g = cs_dtype_group(t), bb = cs_dtype_block_bytes(t);
    CS_ASSERT(cs_qpack_bits(t) && k % g == 0);
    int64_t ng = k / g;
    const unsigned char *p = src;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < ng; b++, p += bb) {
            uint8_t *q = codes + (row0 + r) * k + b * g;
            float *sd = s + (row0 + r) * ng + b, *md = m + (row0 + r) * ng + b;
            if (cs_qpack_bits(t) == 8) { // fp16 d, int8[g]
                *sd = half_at(p);
                *md = 0.0f;
                memcpy(q, p + 2, (size_t)g);
                continue;
            }
            const unsigned char *qs; // g / 32 sub-blocks of 16 bytes, Q4_1's nibble order
            if (t == CS_DTYPE_Q4_0) {
                *sd = half_at(p);
                *md = -8.0f * *sd; // exact: a power-of-two multiple
                qs = p + 2;
            } else if (t == CS_DTYPE_Q4_1) {
                *sd = half_at(p);
                *md = half_at(p + 2);
                qs = p + 4;
            } else {
                *sd = f32_at(p);
                *md = f32_at(p + 4);
                qs = p + 8;
            }
            for (int sb = 0; sb < g / 32; sb++)
                for (int j = 0; j < 16; j++) {
                    q[32 * sb + j] = qs[16 * sb + j] & 15;
                    q[32 * sb + j + 16] = qs[16 * sb + j] >> 4;
                }
        }
}

// Where element (r, c) lives: its word, and the shift of its nibble or byte in it.
static size_t code_at(const cs_qpack_dims *d, int64_t r, int64_t c, int *shift) {
    int rt = (int)(r / 16), rr = (int)(r % 16), ch = (int)(c / 64), cc = (int)(c % 64);
    int lane = rr % 8 * 4 + cc / 16;
    return qf_code_index(rt, ch, lane, (int)d->n_chunks, d->bits) + (size_t)qf_elem_word(d->bits, rr >= 8, cc % 16, shift);
}

static size_t scale_at(const cs_qpack_dims *d, int64_t r, int64_t c) {
    return (size_t)((r / 16) * d->n_groups + c / d->group) * 16 + (size_t)(r % 16);
}

// Moves every code between the plain (n, k) bytes and the packed words, walking the packed
// words in order, lane-cell by lane-cell (qfrag.h), with each lane's 32 placements looked up
// once: 2.5 ns a weight on this machine against 7.9 placing every (r, c) on its own, which
// matters at load (an 8B model has 7 billion). pack: codes -> pcodes (which must be zero),
// else pcodes -> codes.
static void walk_codes(const cs_qpack_dims *d, uint8_t *codes, uint32_t *pcodes, bool pack) {
    uint32_t mask = d->bits == 4 ? 15u : 255u;
    int word[2][16], shift[2][16]; // a lane's element (hi, cc): qf_elem_word, once
    for (int hi = 0; hi < 2; hi++)
        for (int cc = 0; cc < 16; cc++) word[hi][cc] = qf_elem_word(d->bits, hi, cc, &shift[hi][cc]);
    for (int rt = 0; rt < (int)d->n_tiles; rt++)
        for (int ch = 0; ch < (int)d->n_chunks; ch++)
            for (int lane = 0; lane < 32; lane++) {
                uint32_t *cell = pcodes + qf_code_index(rt, ch, lane, (int)d->n_chunks, d->bits);
                int64_t c0 = qf_x_col(ch, lane);
                for (int hi = 0; hi < 2; hi++) {
                    int64_t r = (int64_t)rt * 16 + lane / 4 + 8 * hi;
                    if (r >= d->n) continue;
                    uint8_t *row = codes + r * d->k;
                    int n = c0 + 16 <= d->k ? 16 : c0 < d->k ? (int)(d->k - c0) : 0;
                    if (pack)
                        for (int cc = 0; cc < n; cc++) cell[word[hi][cc]] |= ((uint32_t)row[c0 + cc] & mask) << shift[hi][cc];
                    else
                        for (int cc = 0; cc < n; cc++) row[c0 + cc] = (uint8_t)((cell[word[hi][cc]] >> shift[hi][cc]) & mask);
                }
            }
}

void cs_qpack(const cs_qpack_dims *d, const uint8_t *codes, const float *s, const float *m, uint32_t *pcodes,
              uint32_t *pscales) {
    memset(pcodes, 0, d->code_words * 4);
    memset(pscales, 0, d->scale_words * 4);
    walk_codes(d, (uint8_t *)codes, pcodes, true); // read only when packing
    int64_t ng = d->k / d->group;
    for (int64_t r = 0; r < d->n; r++)
        for (int64_t b = 0; b < ng; b++) {
            uint32_t sb = cs_f32_to_bf16(s[r * ng + b]), mb = d->bits == 4 ? cs_f32_to_bf16(m[r * ng + b]) : 0;
            pscales[scale_at(d, r, b * d->group)] = sb | mb << 16;
        }
}

void cs_qunpack(const cs_qpack_dims *d, const uint32_t *pcodes, const uint32_t *pscales, uint8_t *codes, float *s,
                float *m) {
    walk_codes(d, codes, (uint32_t *)pcodes, false); // read only when unpacking
    int64_t ng = d->k / d->group;
    for (int64_t r = 0; r < d->n; r++)
        for (int64_t b = 0; b < ng; b++) {
            uint32_t v = pscales[scale_at(d, r, b * d->group)];
            s[r * ng + b] = cs_bf16_to_f32((uint16_t)v);
            m[r * ng + b] = cs_bf16_to_f32((uint16_t)(v >> 16));
        }
}

float cs_qpack_weight(const cs_qpack_dims *d, const uint32_t *pcodes, const uint32_t *pscales, int64_t r,
                      int64_t c) {
    int sh;
    uint32_t word = pcodes[code_at(d, r, c, &sh)], sm = pscales[scale_at(d, r, c)];
    double q = d->bits == 4 ? (double)((word >> sh) & 15) : (double)(int8_t)(uint8_t)(word >> sh);
    // s q + m is exact in double (8-bit s and m, a 4- or 8-bit q), then rounded to bf16 once
    double v = (double)cs_bf16_to_f32((uint16_t)sm) * q + (double)cs_bf16_to_f32((uint16_t)(sm >> 16));
    return cs_bf16_to_f32(qf_bf16_rne(v));
}
