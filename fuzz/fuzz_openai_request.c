// libFuzzer target: arbitrary bytes as the body of an OpenAI chat or completions request,
// through the checks the HTTP server runs before anything reaches the engine: the strict JSON
// parse (rpc_parse_object: UTF-8, control bytes, trailing data, \u0000, duplicate keys) and the
// OpenAI parameter reader (server/openai_params.c). The first byte picks the endpoint.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai_params.h"
#include "server/rpc_params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile int sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool chat = data[0] & 1;
    const char *body = (const char *)data + 1;
    size--;
    rpc_reader rd;
    cJSON *json = rpc_parse_object(&rd, body, size);
    if (!json || rd.bad_param) {
        if (!rd.msg[0] || (json && !cJSON_IsObject(json))) abort(); // every refusal says why
        cJSON_Delete(json);
        return 0;
    }
    // what was accepted holds no raw control byte outside JSON whitespace (checked the slow way)
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)body[i];
        if (in_string && c == '\\') i++;
        else if (c == '"') in_string = !in_string;
        else if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) abort();
    }
    // and cJSON's own rendering of it is accepted too (no refusal of canonical JSON)
    char *again = cJSON_PrintUnformatted(json);
    if (again) {
        rpc_reader rd2;
        cJSON *json2 = rpc_parse_object(&rd2, again, strlen(again));
        if (!json2 || rd2.bad_param) abort();
        cJSON_Delete(json2);
        free(again);
    }
    oa_params p;
    if (oa_read_params(json, chat, 49152, &p)) {
        // what the engine will be handed must be within the limits the reader promises
        const cs_request *q = &p.q;
        if (p.n_legs < 1 || p.n_legs > OA_MAX_PROMPTS || (chat && (p.n_msgs < 1 || !p.msgs))) abort();
        for (int i = 0; !chat && i < p.n_legs; i++) {
            if (!p.texts[i] && !p.ids[i]) abort();
            for (int k = 0; p.ids[i] && k < p.n_ids[i]; k++)
                if (p.ids[i][k] < 0 || p.ids[i][k] >= 49152) abort();
        }
        for (int i = 0; i < p.n_msgs; i++)
            if (!p.msgs[i].role || !p.msgs[i].content) abort();
        if (q->n_stop < 0 || q->n_stop > CS_MAX_STOP || q->max_tokens < -1 || q->max_tokens == 0 || q->n < 1 ||
            q->n > 64 || q->logprobs < 0 || q->logprobs > CS_MAX_LOGPROBS)
            abort();
        if ((q->json_schema != NULL) + q->json_object + (q->regex != NULL) + (q->choices != NULL) > 1) abort();
        sink += q->n_stop + p.n_unknown;
    } else {
        if (!p.bad_param || !p.msg[0]) abort();
        sink += (int)strlen(p.msg);
    }
    oa_params_free(&p);
    cJSON_Delete(json);
    return 0;
}
