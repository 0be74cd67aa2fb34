// libFuzzer: arbitrary bytes as tokenizer.json. Loading must fail cleanly or give a
// tokenizer that can encode and decode a fixed text.
#include <stdint.h>
#include <stdlib.h>

#include "common/assert.h"
#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_tokenizer *tok = NULL;
    char err[CS_ERR_LEN];
    if (cs_tokenizer_from_hf_json_mem((const char *)data, size, NULL, 0, &tok, err, sizeof err) != CS_OK) {
        CS_ASSERT(tok == NULL);
        return 0;
    }
    static const char text[] = "Hello <s> world 123 \xF0\x9F\xA4\x97\n\xFF";
    int32_t ids[256];
    int n = cs_tokenizer_encode(tok, text, sizeof text - 1, CS_TOK_ADD_SPECIAL | CS_TOK_PARSE_SPECIAL, ids, 256);
    CS_ASSERT(n >= 0);
    char out[4096];
    cs_tokenizer_decode(tok, ids, (size_t)(n < 256 ? n : 256), false, out, sizeof out);
    cs_tokenizer_free(tok);
    return 0;
}
