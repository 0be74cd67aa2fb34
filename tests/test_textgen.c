// The generation output pipeline on the default model's tokenizer, with logits forced so that
// a chosen token wins each step: stop strings spanning tokens are cut exactly, end tokens and
// stop ids end without text, max_tokens gives "length", ignore_eos goes on, seeds repeat.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/textgen.h"
#include "engine/tokenizer.h"
#include "test_util.h"

static cs_tokenizer *tok;
static int vocab;
static float *logits;

static int32_t id_of(const char *text) { // a text that is a single token
    int32_t ids[4];
    int n = cs_tokenizer_encode(tok, text, strlen(text), 0, ids, 4);
    TEST_CONDF(n == 1, "%s is %d tokens", text, n);
    return ids[0];
}

static void force(int32_t id) {
    for (int i = 0; i < vocab; i++) logits[i] = (float)(i % 7) * 0.01f;
    logits[id] = 30.0f;
}

// Runs textgen with the given forced tokens; returns the text and the finish reason.
static cs_finish run(const cs_gen_params *p, const int32_t *seq, int n, char *text, int *steps) {
    char err[CS_ERR_LEN];
    cs_textgen *g = cs_textgen_init(tok, p, NULL, 0, err, sizeof err);
    TEST_CONDF(g != NULL, "%s", err);
    size_t len = 0;
    cs_finish f = CS_FINISH_NONE;
    *steps = 0;
    for (int i = 0; g && f == CS_FINISH_NONE; i++) {
        force(seq[i < n ? i : n - 1]);
        cs_textgen_step st = cs_textgen_next(g, logits, NULL);
        memcpy(text + len, st.text, st.text_len);
        len += st.text_len;
        f = st.finish;
        (*steps)++;
        TEST_COND(st.feed == (f == CS_FINISH_NONE));
    }
    text[len] = 0;
    cs_textgen_free(g);
    return f;
}

static void test_stop_string_across_tokens(void) {
    cs_gen_params p;
    cs_gen_params_default(&p);
    p.sampling.temperature = 0;
    p.stop[p.n_stop++] = "world";
    int32_t seq[] = {id_of("Hello"), id_of(" wor"), id_of("ld"), id_of("!")};
    char text[4096];
    int steps;
    TEST_COND(run(&p, seq, 4, text, &steps) == CS_FINISH_STOP);
    TEST_CONDF(!strcmp(text, "Hello "), "got '%s'", text);
    TEST_COND(steps == 3);
}

static void test_length_and_eos(void) {
    cs_gen_params p;
    cs_gen_params_default(&p);
    p.sampling.temperature = 0;
    p.max_tokens = 3;
    int32_t hi = id_of("Hi"), eos = cs_tokenizer_eos(tok);
    char text[4096];
    int steps;
    TEST_COND(run(&p, &hi, 1, text, &steps) == CS_FINISH_LENGTH);
    TEST_COND(!strcmp(text, "HiHiHi") && steps == 3);
    int32_t seq[] = {hi, eos, hi};
    TEST_COND(run(&p, seq, 3, text, &steps) == CS_FINISH_STOP);
    TEST_COND(!strcmp(text, "Hi") && steps == 2); // the end token's text is not shown
    p.ignore_eos = true;
    TEST_COND(run(&p, seq, 3, text, &steps) == CS_FINISH_LENGTH && steps == 3);
    p.ignore_eos = false;
    p.n_stop_ids = 1;
    p.stop_ids[0] = hi;
    TEST_COND(run(&p, seq, 3, text, &steps) == CS_FINISH_STOP && steps == 1 && !strcmp(text, ""));
    p.max_tokens = 0;
    TEST_COND(run(&p, seq, 3, text, &steps) == CS_FINISH_LENGTH && !strcmp(text, ""));
}

static void test_emoji_split(void) {
    // an emoji that the vocabulary holds only as byte tokens is shown whole or not at all
    const char *emoji = "\xf0\x9f\xa6\x99"; // U+1F999
    int32_t ids[8];
    int n = cs_tokenizer_encode(tok, emoji, 4, 0, ids, 8);
    TEST_COND(n > 1);
    cs_gen_params p;
    cs_gen_params_default(&p);
    p.sampling.temperature = 0;
    p.max_tokens = n;
    char text[64];
    int steps;
    TEST_COND(run(&p, ids, n, text, &steps) == CS_FINISH_LENGTH);
    TEST_COND(!strcmp(text, emoji));
}

static void test_bad_params(void) {
    cs_gen_params p;
    cs_gen_params_default(&p);
    char err[CS_ERR_LEN];
    p.max_tokens = -1;
    TEST_COND(cs_textgen_init(tok, &p, NULL, 0, err, sizeof err) == NULL && strstr(err, "max_tokens"));
    cs_gen_params_default(&p);
    p.n_stop_ids = 1;
    p.stop_ids[0] = vocab;
    TEST_COND(cs_textgen_init(tok, &p, NULL, 0, err, sizeof err) == NULL && strstr(err, "stop_token_ids"));
    cs_gen_params_default(&p);
    p.sampling.temperature = -1;
    TEST_COND(cs_textgen_init(tok, &p, NULL, 0, err, sizeof err) == NULL && strstr(err, "temperature"));
}

int main(void) {
    const char *model = test_env("CSERVE_MODEL");
    cs_gguf *g;
    char err[CS_ERR_LEN];
    if (!model || cs_gguf_open(model, &g, err, sizeof err) != CS_OK) {
        puts("default model absent: skipped");
        return 77;
    }
    if (cs_tokenizer_from_gguf(g, &tok, err, sizeof err) != CS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    vocab = cs_tokenizer_vocab_size(tok);
    logits = malloc(sizeof(float) * vocab);
    test_stop_string_across_tokens();
    test_length_and_eos();
    test_emoji_split();
    test_bad_params();
    free(logits);
    cs_tokenizer_free(tok);
    cs_gguf_free(g);
    return TEST_REPORT();
}
