// libFuzzer target: arbitrary bytes as one JSON-RPC request line, through the same checks the
// server runs before anything reaches the engine: UTF-8, JSON parse (nesting bounded), and
// the generate parameter reader with all its type and range checks.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/rpc_params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile int sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!rpc_valid_utf8((const char *)data, size)) return 0;
    cJSON *req = cJSON_ParseWithLength((const char *)data, size);
    if (!req) return 0;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(req, "params");
    if (cJSON_IsObject(params)) {
        rpc_reader rd = {.params = params};
        cs_request q;
        rpc_gen_bufs bufs = {0};
        rpc_read_generate(&rd, 49152, 8192, &q, &bufs);
        if (!rd.bad_param) {
            // what the engine will be handed must be within the limits the reader promises
            if (q.tokens && (q.n_tokens < 1 || q.n_tokens > 8192)) abort();
            for (int i = 0; q.tokens && i < q.n_tokens; i++)
                if (q.tokens[i] < 0 || q.tokens[i] >= 49152) abort();
            if (q.n_stop < 0 || q.n_stop > CS_MAX_STOP || q.max_tokens < 0 || q.n < 1 || q.n > 64) abort();
            sink += q.n_messages;
        } else {
            sink += (int)strlen(rd.msg);
        }
        rpc_gen_bufs_free(&bufs);
    }
    cJSON_Delete(req);
    return 0;
}
