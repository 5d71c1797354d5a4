#include "train/base.h"

#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "model/gguf_model.h"
#include "model/model.h"

// The GGUF file's vocabulary as tokenizer.json / tokenizer_config.json objects
// (tok_json NULL: the config alone).
static lc_status gguf_json(const char *path, cJSON **tok_json, cJSON **cfg_json) {
    lc_gguf_file f;
    lc_status st = lc_gguf_open(&f, path);
    if (st) return st;
    lc_gguf_str type;
    if (lc_gguf_kv_str(lc_gguf_find_kv(&f, "general.type"), 0, &type) && type.len == 7 && !memcmp(type.s, "adapter", 7))
        st = lc_error(LC_STATUS_INPUT, "%s: a LoRA adapter (general.type \"adapter\"), not a base model", path);
    else
        st = lc_gguf_tokenizer_json(&f, tok_json, cfg_json);
    lc_gguf_close(&f);
    return st;
}

lc_status lc_base_load_tokenizer(lc_tokenizer **out, const char *model) {
    *out = NULL;
    lc_status st = lc_model_path_check(model);
    if (st) return st;
    if (!lc_path_is_gguf(model)) return lc_tokenizer_load_dir(out, model);
    cJSON *t, *c;
    if ((st = gguf_json(model, &t, &c))) return st;
    st = lc_tokenizer_load_json(out, t, c, model);
    cJSON_Delete(t);
    cJSON_Delete(c);
    return st;
}

lc_status lc_base_load_chat(lc_chat **out, const char *model, const char *override_path) {
    *out = NULL;
    if (!lc_path_is_gguf(model)) return lc_chat_load(out, model, override_path);
    cJSON *c;
    lc_status st = gguf_json(model, NULL, &c); // the template and special tokens only
    if (st) return st;
    char name[4200];
    snprintf(name, sizeof name, "%s (tokenizer.chat_template)", model);
    st = lc_chat_from_config(out, c, name, override_path);
    cJSON_Delete(c);
    return st;
}
