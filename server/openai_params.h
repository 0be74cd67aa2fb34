// Reading OpenAI request bodies (/v1/chat/completions, /v1/completions) into engine requests:
// every honoured field checked for type and range, fields we know but cannot honour refused
// when set, and unknown fields ignored (the caller logs them once).
#ifndef CS_OPENAI_PARAMS_H
#define CS_OPENAI_PARAMS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "cserve/engine.h"

#define OA_MAX_PROMPTS 256 // prompts in one completions call

typedef struct oa_params {
    bool chat;
    cs_request q;           // everything but the prompt, which each leg sets
    // completions: one leg per prompt (text, or token ids); chat: one leg, the messages
    int n_legs;
    const char *texts[OA_MAX_PROMPTS];
    int32_t *ids[OA_MAX_PROMPTS];
    int n_ids[OA_MAX_PROMPTS];
    cs_chat_message *msgs;
    int n_msgs;
    char **owned;           // strings made here (joined content parts), freed with the params
    int n_owned;
    const char *model;      // NULL when absent
    bool stream, include_usage;
    bool logprobs;          // per-token logprobs asked (q.logprobs alternatives each)
    char *schema;
    const char **choices;
    // the field the constraint came from ("response_format", "guided_regex", ...): the engine's
    // errors name its own field ("json_schema: ..."), the client's is the one to report
    const char *constraint_param;
    // the first problem: 400 with the parameter's name (code is NULL or an OpenAI code)
    const char *bad_param;
    char msg[256];
    // fields that are neither honoured nor refused, for the caller to log
    const char *unknown[8];
    int n_unknown;
} oa_params;

// Reads body (a JSON object) into p; false with p->bad_param and p->msg set. Pointers in p
// point into body. oa_params_free whatever the result.
bool oa_read_params(const cJSON *body, bool chat, int vocab, oa_params *p);
void oa_params_free(oa_params *p);

#endif
