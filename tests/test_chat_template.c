// Chat templates against jinja2 renderings of the real template texts (SmolLM2 from the
// model's GGUF, Qwen2, Llama-3, Llama-2, Mistral), from tools/make_tokenizer_fixtures.py.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/file_map.h"
#include "engine/chat_template.h"
#include "test_util.h"

static cs_chat_kind expected_kind(const char *name) {
    if (!strcmp(name, "llama3")) return CS_CHAT_LLAMA3;
    if (!strcmp(name, "llama2") || !strcmp(name, "mistral")) return CS_CHAT_LLAMA2;
    return CS_CHAT_CHATML;
}

static void check_case(const cJSON *templates, const cJSON *c, int *bad) {
    const char *name = cJSON_GetObjectItem(c, "template")->valuestring;
    const char *text = cJSON_GetObjectItem(templates, name)->valuestring;
    const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
    const cJSON *want = cJSON_GetObjectItem(c, "expected");
    bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
    bool recognised = false;
    cs_chat_kind k = cs_chat_detect(text, &recognised);
    TEST_COND(recognised && k == expected_kind(name));
    size_t n = (size_t)cJSON_GetArraySize(msgs);
    cs_chat_msg *m = calloc(n ? n : 1, sizeof *m);
    for (size_t i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, (int)i);
        m[i].role = cJSON_GetObjectItem(it, "role")->valuestring;
        m[i].content = cJSON_GetObjectItem(it, "content")->valuestring;
    }
    char err[CS_ERR_LEN] = "";
    char *got = cs_chat_render(k, text, m, n, gen, err, sizeof err);
    bool ok = cJSON_IsString(want) ? got && strcmp(got, want->valuestring) == 0 : !got && err[0];
    if (!ok && (*bad)++ < 5)
        fprintf(stderr, "%s (%zu messages, gen %d):\n  want: %s\n  got:  %s (%s)\n", name, n, gen,
                cJSON_IsString(want) ? want->valuestring : "(error)", got ? got : "(null)", err);
    free(got);
    free(m);
}

static void test_fixture(void) {
    char *data = NULL, err[CS_ERR_LEN];
    size_t len = 0;
    TEST_COND(cs_file_read_all("tests/fixtures/chat_templates.json", 16u << 20, &data, &len, err,
                               sizeof err) == CS_OK);
    cJSON *root = cJSON_ParseWithLength(data, len);
    TEST_COND(root != NULL);
    const cJSON *templates = cJSON_GetObjectItem(root, "templates");
    const cJSON *c;
    int bad = 0, n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        check_case(templates, c, &bad);
        n++;
    }
    printf("chat templates: %d cases, %d mismatches\n", n, bad);
    TEST_COND(n >= 100 && bad == 0);
    cJSON_Delete(root);
    free(data);
}

static void test_detect_and_errors(void) {
    bool rec = true;
    TEST_COND(cs_chat_detect(NULL, &rec) == CS_CHAT_CHATML && !rec);
    TEST_COND(cs_chat_detect("{{ messages }} <start_of_turn>", &rec) == CS_CHAT_CHATML && !rec);
    TEST_COND(cs_chat_detect("x<|im_start|>y", &rec) == CS_CHAT_CHATML && rec);
    TEST_COND(!strcmp(cs_chat_kind_name(CS_CHAT_LLAMA3), "llama3"));
    char err[CS_ERR_LEN] = "";
    cs_chat_msg bad_role[] = {{"user<|im_end|>", "x"}};
    TEST_COND(!cs_chat_render(CS_CHAT_CHATML, NULL, bad_role, 1, true, err, sizeof err) && err[0]);
    // every error names the request parameter first, for the server to report, and a role
    // error says which roles there are
    cs_chat_msg empty_role[] = {{"user", "a"}, {"", "x"}};
    TEST_CONDF(!cs_chat_render(CS_CHAT_CHATML, NULL, empty_role, 2, true, err, sizeof err) &&
                   !strncmp(err, "messages[1].role: ", 18) && strstr(err, "system, user or assistant"), "'%s'", err);
    cs_chat_msg order[] = {{"assistant", "a"}};
    TEST_CONDF(!cs_chat_render(CS_CHAT_LLAMA2, NULL, order, 1, true, err, sizeof err) && !strncmp(err, "messages", 8),
               "'%s'", err);
    cs_chat_msg sys[] = {{"system", "a"}, {"user", "b"}};
    TEST_CONDF(!cs_chat_render(CS_CHAT_LLAMA2, "mistral", sys, 2, true, err, sizeof err) &&
                   !strncmp(err, "messages", 8), "'%s'", err);
    cs_chat_msg no_content[] = {{"user", NULL}};
    TEST_CONDF(!cs_chat_render(CS_CHAT_LLAMA3, NULL, no_content, 1, true, err, sizeof err) &&
                   !strncmp(err, "messages[0].content", 19), "'%s'", err);
    // No template text: plain ChatML without a default system message.
    cs_chat_msg hi[] = {{"user", "hi"}};
    char *s = cs_chat_render(CS_CHAT_CHATML, NULL, hi, 1, true, err, sizeof err);
    TEST_COND(s && !strcmp(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
    free(s);
    s = cs_chat_render(CS_CHAT_CHATML, NULL, NULL, 0, false, err, sizeof err);
    TEST_COND(s && s[0] == 0);
    free(s);
}

int main(void) {
    test_fixture();
    test_detect_and_errors();
    return TEST_REPORT();
}
