// libFuzzer: encode arbitrary bytes (special tokens parsed), decode the ids, and stream them
// through cs_detok; checks the decode and stream agree and the output is valid UTF-8 sized
// as promised. Tokenizer: $CSERVE_MODEL's GGUF, else the committed tiny SentencePiece one.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

static cs_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[CS_ERR_LEN];
    const char *model = getenv("CSERVE_MODEL");
    cs_gguf *g = NULL;
    if (model && *model && cs_gguf_open(model, &g, err, sizeof err) == CS_OK) {
        CS_ASSERT(cs_tokenizer_from_gguf(g, &tok, err, sizeof err) == CS_OK);
        cs_gguf_free(g); // the tokenizer copies what it needs
    } else {
        CS_ASSERT(cs_tokenizer_from_hf("tests/fixtures/tokenizer_spm.json", NULL, &tok, err,
                                       sizeof err) == CS_OK);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int flags = size && (data[0] & 1) ? CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL : CS_TOK_PARSE_SPECIAL;
    int n = cs_tokenizer_encode(tok, (const char *)data, size, flags, NULL, 0);
    CS_ASSERT(n >= 0);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    CS_ASSERT(cs_tokenizer_encode(tok, (const char *)data, size, flags, ids, n) == n);
    size_t need = cs_tokenizer_decode(tok, ids, (size_t)n, false, NULL, 0);
    char *dec = malloc(need + 1);
    CS_ASSERT(cs_tokenizer_decode(tok, ids, (size_t)n, false, dec, need) == need);
    size_t cap = 3 * cs_tokenizer_max_token_bytes(tok) + 3;
    char *stream = malloc(need + cap + 3);
    cs_detok d = {0};
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        size_t k = cs_detok_push(&d, tok, ids[i], stream + pos, cap);
        CS_ASSERT(k <= cap);
        pos += k;
    }
    pos += cs_detok_flush(&d, stream + pos, 3);
    CS_ASSERT(pos == need && memcmp(stream, dec, need) == 0);
    free(stream);
    free(dec);
    free(ids);
    return 0;
}
