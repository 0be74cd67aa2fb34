// The DFA of the subset construction -> the DFA handed to the grammar builder
// (engine/regex_internal.h): states that cannot reach acceptance are dropped (a matcher must
// never enter a state with no way to finish), equivalent states are merged (Hopcroft's
// partition refinement, O(m log n) for m transitions; skipped past CS_RX_MAX_MIN_TRANSITIONS,
// for memory: the result is then correct, only larger), and states are numbered breadth-first
// from the start.
#include <stdlib.h>
#include <string.h>

#include "regex_internal.h"

// Marks live[s] for every state that can reach an accepting one (backwards search).
static bool find_live(const int32_t *next, const uint8_t *acc, int32_t n, int32_t nc, uint8_t *live) {
    int32_t *off = calloc((size_t)n + 1, sizeof *off), *pred = malloc(((size_t)n * (size_t)nc + 1) * sizeof *pred);
    int32_t *queue = malloc((size_t)n * sizeof *queue);
    if (!off || !pred || !queue) {
        free(off), free(pred), free(queue);
        return false;
    }
    for (int32_t s = 0; s < n; s++)
        for (const int32_t *t = next + (size_t)s * nc, *e = t + nc; t < e; t++)
            if (*t >= 0) off[*t + 1]++;
    for (int32_t s = 0; s < n; s++) off[s + 1] += off[s];
    for (int32_t s = 0; s < n; s++)
        for (const int32_t *t = next + (size_t)s * nc, *e = t + nc; t < e; t++)
            if (*t >= 0) pred[off[*t]++] = s;
    for (int32_t s = n; s > 0; s--) off[s] = off[s - 1]; // back to starts
    off[0] = 0;
    int32_t head = 0, tail = 0;
    for (int32_t s = 0; s < n; s++)
        if ((live[s] = acc[s])) queue[tail++] = s;
    while (head < tail) {
        int32_t s = queue[head++];
        for (int32_t k = off[s]; k < off[s + 1]; k++)
            if (!live[pred[k]]) live[pred[k]] = 1, queue[tail++] = pred[k];
    }
    free(off), free(pred), free(queue);
    return true;
}

// A refinable partition of elements 0..n-1: each set is a contiguous run of elem[], and
// marking moves an element to the front of its set so a split is one cut.
typedef struct part {
    int32_t n_sets;
    int32_t *elem, *loc, *set;   // (n): elements by set, each element's index in elem, its set
    int32_t *first, *past;       // (n): set s is elem[first[s] .. past[s])
    int32_t *marked, *touched;   // (n): marked count per set; the sets with marks
    int32_t n_touched;
} part;

static bool part_init(part *p, int32_t n) {
    size_t sz = (size_t)(n ? n : 1) * sizeof(int32_t);
    p->elem = malloc(sz), p->loc = malloc(sz), p->set = calloc(1, sz), p->first = malloc(sz);
    p->past = malloc(sz), p->marked = calloc(1, sz), p->touched = malloc(sz);
    if (!p->elem || !p->loc || !p->set || !p->first || !p->past || !p->marked || !p->touched) return false;
    for (int32_t k = 0; k < n; k++) p->elem[k] = p->loc[k] = k;
    p->n_sets = n > 0, p->first[0] = 0, p->past[0] = n, p->n_touched = 0;
    return true;
}

static void part_free(part *p) {
    free(p->elem), free(p->loc), free(p->set), free(p->first), free(p->past), free(p->marked), free(p->touched);
}

static void part_mark(part *p, int32_t e) {
    int32_t s = p->set[e], i = p->loc[e], j = p->first[s] + p->marked[s];
    if (i < j) return; // already marked
    p->elem[i] = p->elem[j], p->loc[p->elem[i]] = i;
    p->elem[j] = e, p->loc[e] = j;
    if (p->marked[s]++ == 0) p->touched[p->n_touched++] = s;
}

// Splits every touched set into its marked and unmarked parts; the smaller part becomes the
// new set (Hopcroft's "process the smaller half", which bounds the work by m log n).
static void part_split(part *p) {
    while (p->n_touched > 0) {
        int32_t s = p->touched[--p->n_touched], j = p->first[s] + p->marked[s];
        if (j == p->past[s]) { p->marked[s] = 0; continue; }
        int32_t z = p->n_sets++;
        if (p->marked[s] <= p->past[s] - j) p->first[z] = p->first[s], p->past[z] = p->first[s] = j;
        else p->past[z] = p->past[s], p->first[z] = p->past[s] = j;
        for (int32_t i = p->first[z]; i < p->past[z]; i++) p->set[p->elem[i]] = z;
        p->marked[s] = p->marked[z] = 0;
    }
}

// Hopcroft's refinement for a partial transition function (after Valmari and Lehtinen):
// states start split by acceptance, transitions grouped by byte class; each transition group
// splits the states by "has such a transition", each new state block splits the transition
// groups by "leads into this block", until nothing changes. blk[s] ends as s's equivalence
// class (dead states -1). Returns the number of classes, 0 when out of memory, -1 when the
// DFA has more than CS_RX_MAX_MIN_TRANSITIONS live transitions (left unminimised).
static int32_t refine(const int32_t *next, const uint8_t *acc, const uint8_t *live, int32_t n, int32_t nc, int32_t *blk) {
    int32_t nl = 0, m = 0;
    for (int32_t s = 0; s < n; s++) blk[s] = live[s] ? nl++ : -1; // live states renumbered
    for (int32_t s = 0; s < n && m <= CS_RX_MAX_MIN_TRANSITIONS; s++)
        for (const int32_t *t = next + (size_t)s * nc, *e = t + nc; live[s] && t < e; t++) m += *t >= 0 && live[*t];
    if (m > CS_RX_MAX_MIN_TRANSITIONS) return -1;
    part B = {0}, C = {0};
    int32_t *tail = malloc((size_t)(m ? m : 1) * sizeof *tail), *in = malloc((size_t)(m ? m : 1) * sizeof *in);
    int32_t *in_off = calloc((size_t)nl + 1, sizeof *in_off), *head = malloc((size_t)(m ? m : 1) * sizeof *head);
    int32_t count = 0;
    if (!tail || !in || !in_off || !head || !part_init(&B, nl) || !part_init(&C, m)) goto done;
    m = 0; // transitions in class order, so each class is a contiguous run
    for (int32_t c = 0; c < nc; c++) {
        for (int32_t s = 0; s < n; s++) {
            int32_t t = next[(int64_t)s * nc + c];
            if (blk[s] < 0 || t < 0 || blk[t] < 0) continue;
            tail[m] = blk[s], head[m] = blk[t], in_off[blk[t] + 1]++;
            part_mark(&C, m++);
        }
        part_split(&C);
    }
    for (int32_t s = 0; s < nl; s++) in_off[s + 1] += in_off[s];
    for (int32_t t = 0; t < m; t++) in[in_off[head[t]]++] = t;
    for (int32_t s = nl; s > 0; s--) in_off[s] = in_off[s - 1];
    in_off[0] = 0;
    for (int32_t s = 0; s < n; s++)
        if (blk[s] >= 0 && acc[s]) part_mark(&B, blk[s]);
    part_split(&B);
    for (int32_t c = 0, b = 1; c < C.n_sets; c++) { // block 0 needs no turn: the groups stand in
        for (int32_t i = C.first[c]; i < C.past[c]; i++) part_mark(&B, tail[C.elem[i]]);
        part_split(&B);
        for (; b < B.n_sets; b++) {
            for (int32_t i = B.first[b]; i < B.past[b]; i++)
                for (int32_t j = in_off[B.elem[i]]; j < in_off[B.elem[i] + 1]; j++) part_mark(&C, in[j]);
            part_split(&C);
        }
    }
    for (int32_t s = 0; s < n; s++)
        if (blk[s] >= 0) blk[s] = B.set[blk[s]];
    count = B.n_sets;
done:
    part_free(&B), part_free(&C);
    free(tail), free(in), free(in_off), free(head);
    return count;
}

// Writes the quotient DFA (blocks blk, nb of them) into out, numbered breadth-first from the
// block of state 0. False when out of memory.
static bool emit(const int32_t *next, const uint8_t *acc, int32_t n, int32_t nc, const int32_t *blk, int32_t nb,
                 cs_rx_dfa *out) {
    int32_t *rep = malloc((size_t)nb * sizeof *rep), *order = malloc((size_t)nb * sizeof *order);
    int32_t *num = malloc((size_t)nb * sizeof *num);
    out->next = malloc((size_t)nb * (size_t)nc * sizeof *out->next);
    out->accept = malloc((size_t)nb);
    bool ok = rep && order && num && out->next && out->accept;
    if (ok) {
        for (int32_t b = 0; b < nb; b++) num[b] = -1;
        for (int32_t s = n - 1; s >= 0; s--)
            if (blk[s] >= 0) rep[blk[s]] = s;
        int32_t head = 0, tail = 0;
        num[blk[0]] = tail, order[tail++] = blk[0];
        while (head < tail) {
            int32_t b = order[head], s = rep[b];
            out->accept[head] = acc[s];
            for (int32_t c = 0; c < nc; c++) {
                int32_t t = next[(int64_t)s * nc + c], u = t >= 0 ? blk[t] : -1;
                if (u >= 0 && num[u] < 0) num[u] = tail, order[tail++] = u;
                out->next[(int64_t)head * nc + c] = u >= 0 ? num[u] : -1;
            }
            head++;
        }
        out->n_states = tail; // every block is reachable; tail == nb
        out->n_classes = nc;
    }
    free(rep), free(order), free(num);
    return ok;
}

cs_status cs_rx_minimise(const int32_t *next, const uint8_t *acc, int32_t n, const uint8_t *class_of, int32_t nc,
                         cs_rx_dfa *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    memcpy(out->class_of, class_of, sizeof out->class_of);
    uint8_t *live = calloc((size_t)n, 1);
    int32_t *blk = malloc((size_t)n * sizeof *blk);
    cs_status st = CS_OK;
    if (!live || !blk || !find_live(next, acc, n, nc, live)) {
        st = cs_errf(err, errlen, CS_ERR_NOMEM, "regex: out of memory");
    } else if (!live[0]) {
        st = cs_errf(err, errlen, CS_ERR_INVALID, "regex: pattern matches no string");
    } else {
        int32_t nb = refine(next, acc, live, n, nc, blk);
        if (nb < 0) { // too many transitions: every live state is its own block (as refine left it)
            nb = 0;
            for (int32_t s = 0; s < n; s++) nb += live[s];
        }
        if (nb == 0 || !emit(next, acc, n, nc, blk, nb, out)) st = cs_errf(err, errlen, CS_ERR_NOMEM, "regex: out of memory");
    }
    free(live), free(blk);
    if (st != CS_OK) cs_rx_dfa_free(out);
    return st;
}
