// Chat templates of the supported families, rendered by hand to the exact text their Jinja
// templates produce (checked against jinja2 renderings in tests/fixtures/chat_templates.json).
#include "chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool nomem;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->nomem) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->nomem = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

// Python's str.strip(): whitespace as str.isspace() sees it (Jinja's trim is the same).
static void sb_stripped(sbuf *b, const char *s) {
    size_t len = strlen(s), start = 0, end = len;
    while (start < end) {
        size_t n;
        uint32_t cp = cs_utf8_next(s + start, end - start, &n);
        if (!(cs_uni_flags(cp) & CS_UNI_PYSPACE)) break;
        start += n;
    }
    while (end > start) {
        size_t i = end - 1, n;
        while (i > start && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
        uint32_t cp = cs_utf8_next(s + i, end - i, &n);
        if (i + n != end || !(cs_uni_flags(cp) & CS_UNI_PYSPACE)) break;
        end = i;
    }
    sb_add(b, s + start, end - start);
}

static char *sb_done(sbuf *b, char *err, size_t errlen) {
    if (b->nomem || !b->s) {
        free(b->s);
        if (b->nomem) {
            cs_errf(err, errlen, CS_ERR_NOMEM, "messages: out of memory rendering the chat");
            return NULL;
        }
        return calloc(1, 1);
    }
    return b->s;
}

cs_chat_kind cs_chat_detect(const char *text, bool *recognised) {
    bool ok = true;
    cs_chat_kind k = CS_CHAT_CHATML;
    if (!text) ok = false;
    else if (strstr(text, "<|start_header_id|>")) k = CS_CHAT_LLAMA3;
    else if (strstr(text, "[INST]")) k = CS_CHAT_LLAMA2;
    else if (!strstr(text, "<|im_start|>")) ok = false;
    if (recognised) *recognised = ok;
    return k;
}

const char *cs_chat_kind_name(cs_chat_kind k) {
    switch (k) {
    case CS_CHAT_CHATML: return "chatml";
    case CS_CHAT_LLAMA3: return "llama3";
    case CS_CHAT_LLAMA2: return "llama2";
    }
    return "?";
}

// Roles are names, not markup: refusing anything else keeps a client from smuggling
// "<|im_end|>" or a newline into the role slot.
static bool role_ok(const char *r) {
    if (!r || !*r) return false;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= 'A' && *r <= 'Z') || (*r >= '0' && *r <= '9') ||
              *r == '_' || *r == '-'))
            return false;
    return true;
}

// The default system message of a ChatML template that adds one when the conversation has
// none (SmolLM2, Qwen2): the literal after "<|im_start|>system" and a newline, up to
// "<|im_end|>". Jinja escapes (\n, \', \\) are undone. NULL when the template has none.
static char *chatml_default_system(const char *tmpl) {
    if (!tmpl || (!strstr(tmpl, "!= 'system'") && !strstr(tmpl, "!= \"system\"")))
        return NULL;
    const char *p = strstr(tmpl, "<|im_start|>system");
    if (!p) return NULL;
    p += strlen("<|im_start|>system");
    if (*p == '\n') p++;
    else if (p[0] == '\\' && p[1] == 'n') p += 2;
    else return NULL;
    const char *end = strstr(p, "<|im_end|>");
    if (!end) return NULL;
    char *out = malloc((size_t)(end - p) + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '\\' && q + 1 < end) {
            q++;
            out[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
        } else {
            out[n++] = *q;
        }
    }
    out[n] = 0;
    return out;
}

static void render_chatml(sbuf *b, const char *tmpl, const cs_chat_msg *m, size_t n, bool gen) {
    char *sys = n > 0 && strcmp(m[0].role, "system") != 0 ? chatml_default_system(tmpl) : NULL;
    if (sys) {
        sb_str(b, "<|im_start|>system\n");
        sb_str(b, sys);
        sb_str(b, "<|im_end|>\n");
        free(sys);
    }
    for (size_t i = 0; i < n; i++) {
        sb_str(b, "<|im_start|>");
        sb_str(b, m[i].role);
        sb_str(b, "\n");
        sb_str(b, m[i].content);
        sb_str(b, "<|im_end|>\n");
    }
    if (gen) sb_str(b, "<|im_start|>assistant\n");
}

static void render_llama3(sbuf *b, const cs_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) sb_str(b, "<|begin_of_text|>");
        sb_str(b, "<|start_header_id|>");
        sb_str(b, m[i].role);
        sb_str(b, "<|end_header_id|>\n\n");
        sb_stripped(b, m[i].content);
        sb_str(b, "<|eot_id|>");
    }
    if (gen) sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-2 chat: an optional leading system message folded into the first user turn inside
// <<SYS>>, each user turn "<s>[INST] ... [/INST]", each answer " ... </s>", stripped.
// Mistral (no <<SYS>> in its template): one "<s>", unstripped, no system role.
static bool render_inst(sbuf *b, const char *tmpl, const cs_chat_msg *m, size_t n, char *err,
                        size_t errlen) {
    bool llama2 = !tmpl || strstr(tmpl, "<<SYS>>");
    const char *sys = NULL;
    if (llama2 && n > 0 && strcmp(m[0].role, "system") == 0) {
        sys = m[0].content;
        m++;
        n--;
    }
    if (!llama2) sb_str(b, "<s>");
    for (size_t i = 0; i < n; i++) {
        bool user = strcmp(m[i].role, "user") == 0, assistant = strcmp(m[i].role, "assistant") == 0;
        if (user != (i % 2 == 0)) {
            cs_errf(err, errlen, CS_ERR_INVALID,
                    "messages: roles must alternate user/assistant/user/assistant/... (after one optional system message)");
            return false;
        }
        if (!llama2 && !user && !assistant) {
            cs_errf(err, errlen, CS_ERR_INVALID, "messages: this model's template takes only the roles user and assistant");
            return false;
        }
        if (llama2 && user) {
            sb_str(b, "<s>[INST] ");
            if (i == 0 && sys) {
                sbuf tmp = {0};
                sb_str(&tmp, "<<SYS>>\n");
                sb_str(&tmp, sys);
                sb_str(&tmp, "\n<</SYS>>\n\n");
                sb_str(&tmp, m[i].content);
                if (tmp.s) sb_stripped(b, tmp.s);
                b->nomem |= tmp.nomem;
                free(tmp.s);
            } else {
                sb_stripped(b, m[i].content);
            }
            sb_str(b, " [/INST]");
        } else if (llama2 && assistant) {
            sb_str(b, " ");
            sb_stripped(b, m[i].content);
            sb_str(b, " </s>");
        } else if (user) {
            sb_str(b, "[INST] ");
            sb_str(b, m[i].content);
            sb_str(b, " [/INST]");
        } else if (assistant) {
            sb_str(b, m[i].content);
            sb_str(b, "</s>");
        }
    }
    return true;
}

// Every error names the request parameter first ("messages..."), so a server can pass it on.
char *cs_chat_render(cs_chat_kind k, const char *template_text, const cs_chat_msg *msgs,
                     size_t n, bool add_generation_prompt, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        if (!role_ok(msgs[i].role)) {
            cs_errf(err, errlen, CS_ERR_INVALID,
                    "messages[%zu].role: expected system, user or assistant (any name of letters, digits, '_' and '-' "
                    "passes to the template)", i);
            return NULL;
        }
        if (!msgs[i].content) {
            cs_errf(err, errlen, CS_ERR_INVALID, "messages[%zu].content: missing", i);
            return NULL;
        }
    }
    sbuf b = {0};
    switch (k) {
    case CS_CHAT_CHATML: render_chatml(&b, template_text, msgs, n, add_generation_prompt); break;
    case CS_CHAT_LLAMA3: render_llama3(&b, msgs, n, add_generation_prompt); break;
    case CS_CHAT_LLAMA2:
        if (!render_inst(&b, template_text, msgs, n, err, errlen)) {
            free(b.s);
            return NULL;
        }
        break;
    }
    return sb_done(&b, err, errlen);
}
