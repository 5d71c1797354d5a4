#include "train/train_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

// Every module name lora.targets accepts, by the families that use it.
#define LC_TARGET_NAMES                                                                                               \
    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama-style: Llama, Mistral, Qwen2, Gemma, "       \
    "Gemma 2, OLMo), qkv_proj, gate_up_proj (Phi-3), c_attn, c_proj, c_fc (GPT-2), query_key_value, dense, "           \
    "dense_h_to_4h, dense_4h_to_h (Falcon, Bloom)"

typedef enum key_type { KEY_STRING, KEY_INT, KEY_NUMBER, KEY_BOOL, KEY_STRING_LIST, KEY_OBJECT } key_type;

// Every key the config accepts; anything else is a typo and refused.
static const struct {
    const char *path;
    key_type type;
} known_keys[] = {
    {"model", KEY_STRING},          {"train_data", KEY_STRING},      {"valid_data", KEY_STRING},
    {"valid_split", KEY_NUMBER},    {"output_dir", KEY_STRING},      {"init_adapter", KEY_STRING},
    {"lora", KEY_OBJECT},           {"lora.r", KEY_INT},             {"lora.alpha", KEY_NUMBER},
    {"lora.dropout", KEY_NUMBER},   {"lora.rslora", KEY_BOOL},       {"lora.targets", KEY_STRING_LIST},
    {"optimizer", KEY_OBJECT},      {"optimizer.lr", KEY_NUMBER},    {"optimizer.beta1", KEY_NUMBER},
    {"optimizer.beta2", KEY_NUMBER}, {"optimizer.eps", KEY_NUMBER},  {"optimizer.weight_decay", KEY_NUMBER},
    {"schedule", KEY_OBJECT},       {"schedule.type", KEY_STRING},   {"schedule.warmup_steps", KEY_INT},
    {"schedule.min_lr", KEY_NUMBER}, {"batch_size", KEY_INT},        {"grad_accum", KEY_INT},
    {"max_seq_len", KEY_INT},       {"steps", KEY_INT},              {"epochs", KEY_INT},
    {"max_grad_norm", KEY_NUMBER},  {"seed", KEY_INT},               {"packing", KEY_BOOL},
    {"mask_prompt", KEY_BOOL},      {"eval_every", KEY_INT},         {"save_every", KEY_INT},
    {"keep_checkpoints", KEY_INT},  {"threads", KEY_INT},          {"skip_nonfinite", KEY_BOOL},
    {"activation_checkpointing", KEY_BOOL}, {"bf16_weights", KEY_BOOL},
};

static int find_key(const char *path) {
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
        if (strcmp(known_keys[i].path, path) == 0) return (int)i;
    return -1;
}

static int type_ok(const cJSON *v, key_type t) {
    switch (t) {
    case KEY_STRING: return cJSON_IsString(v);
    case KEY_INT: return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15;
    case KEY_NUMBER: return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case KEY_BOOL: return cJSON_IsBool(v);
    case KEY_OBJECT: return cJSON_IsObject(v);
    case KEY_STRING_LIST:
        if (!cJSON_IsArray(v)) return 0;
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e)) return 0;
        return 1;
    }
    return 0;
}

static const char *type_name(key_type t) {
    static const char *names[] = {"a string", "an integer", "a number", "true or false", "a list of strings",
                                  "an object"};
    return names[t];
}

// Walks obj checking every key against the schema; prefix is the dotted path so far.
static lc_status check_keys(const cJSON *obj, const char *prefix, const char *what) {
    for (const cJSON *e = obj->child; e; e = e->next) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", e->string ? e->string : "");
        int k = find_key(path);
        if (k < 0) return lc_error(LC_STATUS_INPUT, "%s: unknown key \"%s\"", what, path);
        // cJSON keeps duplicates and its lookups take the first; Python's json
        // takes the last. Which one was meant would be a guess. A level holds
        // at most one of each known key, so this scan stays short.
        for (const cJSON *p = obj->child; p != e; p = p->next)
            if (strcmp(p->string, e->string) == 0)
                return lc_error(LC_STATUS_INPUT, "%s: duplicate key \"%s\"", what, path);
        if (!type_ok(e, known_keys[k].type))
            return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be %s", what, path, type_name(known_keys[k].type));
        if (known_keys[k].type == KEY_OBJECT) {
            lc_status st = check_keys(e, path, what);
            if (st) return st;
        }
    }
    return LC_STATUS_OK;
}

// Sets root[dotted key] = value text (JSON if it parses, else a string).
static lc_status apply_override(cJSON *root, const char *override) {
    const char *eq = strchr(override, '=');
    if (!eq || eq == override) return lc_error(LC_STATUS_USAGE, "--set %s: expected key=value", override);
    char key[256];
    size_t klen = (size_t)(eq - override);
    if (klen >= sizeof key) return lc_error(LC_STATUS_USAGE, "--set %s: key too long", override);
    memcpy(key, override, klen);
    key[klen] = '\0';
    if (find_key(key) < 0) return lc_error(LC_STATUS_USAGE, "--set: unknown key \"%s\"", key);
    const char *text = eq + 1;
    cJSON *value = cJSON_Parse(text);
    if (!value) value = cJSON_CreateString(text);
    if (!value) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    cJSON *parent = root;
    char *dot;
    char *name = key;
    while ((dot = strchr(name, '.'))) {
        *dot = '\0';
        cJSON *child = cJSON_GetObjectItemCaseSensitive(parent, name);
        if (!child) child = cJSON_AddObjectToObject(parent, name);
        if (!cJSON_IsObject(child)) {
            cJSON_Delete(value);
            return lc_error(LC_STATUS_USAGE, "--set %s: \"%s\" is not an object", override, name);
        }
        parent = child;
        name = dot + 1;
    }
    if (cJSON_GetObjectItemCaseSensitive(parent, name)) cJSON_ReplaceItemInObjectCaseSensitive(parent, name, value);
    else cJSON_AddItemToObject(parent, name, value);
    return LC_STATUS_OK;
}

static lc_status get_path(const cJSON *obj, const char *key, const char *what, int required, char *out, size_t cap) {
    const char *s;
    lc_status st = lc_json_get_string(obj, key, what, "", &s);
    if (st) return st;
    if (required && !*s) return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is required", what, key);
    if (strlen(s) >= cap) return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is too long", what, key);
    snprintf(out, cap, "%s", s);
    return LC_STATUS_OK;
}

static lc_status get_int_range(const cJSON *obj, const char *key, const char *path, const char *what, int64_t def,
                               int64_t lo, int64_t hi, int64_t *out) {
    lc_status st = lc_json_get_int(obj, key, what, def, out);
    if (st) return st;
    if (*out < lo || *out > hi)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is %lld, outside %lld..%lld", what, path, (long long)*out,
                        (long long)lo, (long long)hi);
    return LC_STATUS_OK;
}

#define TRY(x)                                                                                                        \
    do {                                                                                                              \
        lc_status st_ = (x);                                                                                          \
        if (st_) return st_;                                                                                          \
    } while (0)

static lc_status fill(lc_train_config *cfg, const cJSON *root, const char *what) {
    const cJSON *lora = cJSON_GetObjectItemCaseSensitive(root, "lora");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(root, "optimizer");
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(root, "schedule");
    cJSON empty = {0};
    empty.type = cJSON_Object;
    if (!lora) lora = &empty;
    if (!opt) opt = &empty;
    if (!sched) sched = &empty;
    int64_t v;
    double d;
    bool b;

    TRY(get_path(root, "model", what, 1, cfg->model, sizeof cfg->model));
    TRY(get_path(root, "train_data", what, 1, cfg->train_data, sizeof cfg->train_data));
    TRY(get_path(root, "valid_data", what, 0, cfg->valid_data, sizeof cfg->valid_data));
    TRY(get_path(root, "output_dir", what, 1, cfg->output_dir, sizeof cfg->output_dir));
    TRY(get_path(root, "init_adapter", what, 0, cfg->init_adapter, sizeof cfg->init_adapter));
    TRY(lc_json_get_double(root, "valid_split", what, 0.0, &cfg->valid_split));
    if (cfg->valid_split < 0.0 || cfg->valid_split >= 1.0)
        return lc_error(LC_STATUS_INPUT, "%s: \"valid_split\" must be in [0, 1)", what);
    if (cfg->valid_split > 0.0 && cfg->valid_data[0])
        return lc_error(LC_STATUS_INPUT, "%s: give \"valid_data\" or \"valid_split\", not both", what);

    TRY(get_int_range(lora, "r", "lora.r", what, 16, 1, 4096, &v));
    cfg->lora.r = (int)v;
    TRY(lc_json_get_double(lora, "alpha", what, 2.0 * cfg->lora.r, &d));
    cfg->lora.alpha = (float)d;
    TRY(lc_json_get_double(lora, "dropout", what, 0.0, &d));
    if (d < 0.0 || d >= 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"lora.dropout\" must be in [0, 1)", what);
    cfg->lora.dropout = (float)d;
    TRY(lc_json_get_bool(lora, "rslora", what, false, &b));
    cfg->lora.rslora = b;
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(lora, "targets");
    cfg->lora.targets = 0;
    if (!targets) {
        cfg->lora.targets = LC_LINEAR_KIND_ALL; // every projection the model has
    } else {
        // Names of any family: the model is not known yet. Once it is loaded,
        // a name it does not have is refused (lc_lora_init) listing its own.
        for (const cJSON *e = targets->child; e; e = e->next) {
            unsigned bit = lc_lora_target_bit(e->valuestring);
            if (!bit)
                return lc_error(LC_STATUS_INPUT,
                                "%s: lora.targets: unknown module \"%.64s\" (accepted: " LC_TARGET_NAMES ")", what,
                                e->valuestring);
            cfg->lora.targets |= bit;
        }
        if (!cfg->lora.targets) return lc_error(LC_STATUS_INPUT, "%s: \"lora.targets\" is empty", what);
    }

    TRY(lc_json_get_double(opt, "lr", what, 2e-4, &d));
    if (d <= 0.0) return lc_error(LC_STATUS_INPUT, "%s: \"optimizer.lr\" must be positive", what);
    cfg->lr = (float)d;
    TRY(lc_json_get_double(opt, "beta1", what, 0.9, &d));
    cfg->adamw.beta1 = (float)d;
    TRY(lc_json_get_double(opt, "beta2", what, 0.999, &d));
    cfg->adamw.beta2 = (float)d;
    TRY(lc_json_get_double(opt, "eps", what, 1e-8, &d));
    cfg->adamw.eps = (float)d;
    TRY(lc_json_get_double(opt, "weight_decay", what, 0.0, &d));
    cfg->adamw.weight_decay = (float)d;
    if (!(cfg->adamw.beta1 >= 0 && cfg->adamw.beta1 < 1 && cfg->adamw.beta2 >= 0 && cfg->adamw.beta2 < 1 &&
          cfg->adamw.eps > 0 && cfg->adamw.weight_decay >= 0))
        return lc_error(LC_STATUS_INPUT, "%s: optimizer betas must be in [0, 1), eps positive, weight_decay >= 0",
                        what);

    const char *type;
    TRY(lc_json_get_string(sched, "type", what, "cosine", &type));
    int t = lc_schedule_type_parse(type);
    if (t < 0)
        return lc_error(LC_STATUS_INPUT, "%s: schedule.type \"%s\" is not constant, linear or cosine", what, type);
    cfg->schedule.type = (lc_schedule_type)t;
    TRY(get_int_range(sched, "warmup_steps", "schedule.warmup_steps", what, 0, 0, 1 << 30, &v));
    cfg->schedule.warmup_steps = v;
    TRY(lc_json_get_double(sched, "min_lr", what, 0.0, &d));
    if (d < 0.0 || d > cfg->lr) return lc_error(LC_STATUS_INPUT, "%s: \"schedule.min_lr\" must be in [0, lr]", what);
    cfg->schedule.min_lr = (float)d;
    cfg->schedule.lr = cfg->lr;

    TRY(get_int_range(root, "batch_size", "batch_size", what, 4, 1, 1 << 16, &v));
    cfg->batch_size = (int)v;
    TRY(get_int_range(root, "grad_accum", "grad_accum", what, 1, 1, 1 << 16, &v));
    cfg->grad_accum = (int)v;
    TRY(get_int_range(root, "max_seq_len", "max_seq_len", what, 512, 2, 1 << 20, &v));
    cfg->max_seq_len = (int)v;
    TRY(get_int_range(root, "steps", "steps", what, 0, 0, (int64_t)1 << 40, &v));
    cfg->steps = v;
    TRY(get_int_range(root, "epochs", "epochs", what, 0, 0, 1 << 20, &v));
    cfg->epochs = (int)v;
    if ((cfg->steps > 0) == (cfg->epochs > 0))
        return lc_error(LC_STATUS_INPUT, "%s: give exactly one of \"steps\" and \"epochs\"", what);
    TRY(lc_json_get_double(root, "max_grad_norm", what, 1.0, &d));
    if (d < 0.0) return lc_error(LC_STATUS_INPUT, "%s: \"max_grad_norm\" must be >= 0 (0 disables)", what);
    cfg->max_grad_norm = (float)d;
    TRY(get_int_range(root, "seed", "seed", what, 0, 0, (int64_t)1 << 53, &v));
    cfg->seed = (uint64_t)v;
    TRY(lc_json_get_bool(root, "packing", what, false, &cfg->packing));
    TRY(lc_json_get_bool(root, "mask_prompt", what, true, &cfg->mask_prompt));
    TRY(lc_json_get_bool(root, "skip_nonfinite", what, false, &cfg->skip_nonfinite));
    TRY(lc_json_get_bool(root, "activation_checkpointing", what, false, &cfg->activation_checkpointing));
    TRY(lc_json_get_bool(root, "bf16_weights", what, false, &cfg->bf16_weights));
    TRY(get_int_range(root, "eval_every", "eval_every", what, 0, 0, 1 << 30, &v));
    cfg->eval_every = (int)v;
    TRY(get_int_range(root, "save_every", "save_every", what, 0, 0, 1 << 30, &v));
    cfg->save_every = (int)v;
    TRY(get_int_range(root, "keep_checkpoints", "keep_checkpoints", what, 3, 1, 1 << 20, &v));
    cfg->keep_checkpoints = (int)v;
    TRY(get_int_range(root, "threads", "threads", what, 0, 0, 4096, &v));
    cfg->threads = (int)v;
    return LC_STATUS_OK;
}

static lc_status finish(lc_train_config *cfg, cJSON *root, const char *what) {
    lc_status st = check_keys(root, "", what);
    if (!st) st = fill(cfg, root, what);
    if (!st) {
        cfg->json = cJSON_Print(root);
        if (!cfg->json) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    cJSON_Delete(root);
    return st;
}

lc_status lc_train_config_parse(lc_train_config *cfg, const char *text, const char *what) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root;
    lc_status st = lc_json_parse(text, strlen(text), what, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error(LC_STATUS_INPUT, "%s: not a JSON object", what);
    }
    return finish(cfg, root, what);
}

lc_status lc_train_config_load(lc_train_config *cfg, const char *path, const char *const *overrides, int n_overrides) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root;
    lc_status st = lc_json_load_file(path, 1 << 20, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);
    }
    for (int i = 0; i < n_overrides; i++) {
        if ((st = apply_override(root, overrides[i]))) {
            cJSON_Delete(root);
            return st;
        }
    }
    st = finish(cfg, root, path);
    if (!st) snprintf(cfg->path, sizeof cfg->path, "%s", path);
    return st;
}

void lc_train_config_free(lc_train_config *cfg) {
    free(cfg->json);
    cfg->json = NULL;
}
