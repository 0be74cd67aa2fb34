// Chat templates of the supported families, recognised from the model's template text and
// rendered by our own code (we do not run Jinja).
#ifndef CS_CHAT_TEMPLATE_H
#define CS_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/status.h"

typedef enum cs_chat_kind {
    CS_CHAT_CHATML,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2)
    CS_CHAT_LLAMA3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
    CS_CHAT_LLAMA2,  // <s>[INST] <<SYS>>...<</SYS>> user [/INST] answer </s>  (Llama-2, Mistral)
} cs_chat_kind;

typedef struct cs_chat_msg {
    const char *role;    // "system", "user", "assistant"
    const char *content;
} cs_chat_msg;

// Picks the family from the template text (NULL -> ChatML). *recognised is false when the
// text matched no family and ChatML was chosen as the fallback (the caller warns).
cs_chat_kind cs_chat_detect(const char *template_text, bool *recognised);
const char *cs_chat_kind_name(cs_chat_kind k);

// Renders messages with the generation prompt appended when add_generation_prompt.
// Returns a malloc'd NUL-terminated string the caller frees, or NULL with err set
// (unknown role, message order the family does not allow).
char *cs_chat_render(cs_chat_kind k, const char *template_text, const cs_chat_msg *msgs,
                     size_t n, bool add_generation_prompt, char *err, size_t errlen);

#endif
