// fuzz_jinja: a chat template [SEP variables as JSON] -> lc_jinja_parse, then
// lc_jinja_render with those variables (or a fixed conversation), with and
// without the generation prompt, and the assistant spans of the fixed
// conversation. Every render must end (bounded steps, depth, output), and
// what comes back must be a NUL-terminated string of the length reported.
#include "fuzz_common.h"

#include "common/status.h"
#include "data/chat.h"
#include "data/jinja.h"

static const char conversation[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    "{\"role\": \"user\", \"content\": \"Hi <b>{{ x }}</b> \\u00e9\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>hm</think> Hello!\"},"
    "{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}],"
    " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": false, \"tools\": null}";

static void render(const lc_jinja_template *t, const cJSON *vars) {
    char *out = NULL;
    size_t n = 0;
    if (lc_jinja_render(t, vars, &out, &n) == LC_STATUS_OK) {
        if (!out || strlen(out) > n) __builtin_trap();
    } else if (out)
        __builtin_trap(); // nothing is handed back on failure
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lc_fuzz_part parts[2];
    int n = lc_fuzz_split(data, size, parts, 2);
    lc_jinja_template *t = NULL;
    if (lc_jinja_parse(&t, (const char *)parts[0].p, parts[0].n, "fuzz.jinja") != LC_STATUS_OK) {
        if (t) __builtin_trap();
        return 0;
    }
    cJSON *fixed = cJSON_Parse(conversation);
    cJSON *vars = n >= 2 ? cJSON_ParseWithLength((const char *)parts[1].p, parts[1].n) : NULL;
    render(t, vars ? vars : fixed);
    cJSON_ReplaceItemInObject(fixed, "add_generation_prompt", cJSON_CreateTrue());
    render(t, fixed);
    lc_jinja_free(t);

    lc_chat *chat = NULL;
    if (lc_chat_from_text(&chat, (const char *)parts[0].p, parts[0].n, "fuzz.jinja") == LC_STATUS_OK) {
        char *full = NULL;
        size_t len = 0;
        lc_chat_span *spans = NULL;
        int k = 0;
        const cJSON *msgs = cJSON_GetObjectItem(fixed, "messages");
        if (lc_chat_assistant_spans(chat, NULL, msgs, &full, &len, &spans, &k) == LC_STATUS_OK) {
            for (int i = 0; i < k; i++)
                if (spans[i].begin >= spans[i].end || spans[i].end > len || (i && spans[i].begin < spans[i - 1].end))
                    __builtin_trap();
        }
        free(full);
        free(spans);
        lc_chat_free(chat);
    }
    cJSON_Delete(vars);
    cJSON_Delete(fixed);
    return 0;
}
