#include "train/train_config.h"
#include "data/score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"

// Every module name lora.targets accepts, by the families that use it.
#define LC_TARGET_NAMES                                                                                               \
    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama-style: Llama, Mistral, Qwen2, Gemma, "       \
    "Gemma 2, OLMo, OLMoE, Qwen2-MoE), w1, w3, w2 (Mixtral's experts), qkv_proj, gate_up_proj (Phi-3), c_attn, "       \
    "c_proj, c_fc (GPT-2), query_key_value, dense, dense_h_to_4h, dense_4h_to_h (Falcon, Bloom)"

typedef enum key_type {
    KEY_STRING, KEY_INT, KEY_NUMBER, KEY_BOOL, KEY_STRING_LIST, KEY_OBJECT,
    KEY_STRING_OR_LIST, // lora.targets: "all-linear" or a list of names
    KEY_LAYERS,         // lora.layers: a list of indices, {"last": N} or "all"
} key_type;

// Every key the config accepts (anything else is a typo and refused), with
// its default and meaning for `lora train --help`.
static const struct {
    const char *path;
    key_type type;
    const char *def;   // the default as a user would write it; "required" when there is none
    const char *about; // what it does, briefly
} known_keys[] = {
    {"model", KEY_STRING, "required", "Hugging Face model folder or GGUF file"},
    {"train_data", KEY_STRING, "required", "JSONL: prompt/completion, messages (chat) or text lines"},
    {"valid_data", KEY_STRING, "none", "JSONL evaluated every eval_every steps and at the end"},
    {"valid_split", KEY_NUMBER, "0", "fraction of train_data held out instead of valid_data"},
    {"output_dir", KEY_STRING, "required", "checkpoints, metrics.jsonl, loss.svg; a rerun resumes here"},
    {"init_adapter", KEY_STRING, "none", "start from this adapter (checkpoint or PEFT folder)"},
    {"chat_template", KEY_STRING, "the model's", "a .jinja file for chat data"},
    {"lora", KEY_OBJECT, NULL, NULL},
    {"lora.r", KEY_INT, "16", "adapter rank"},
    {"lora.alpha", KEY_NUMBER, "2 x r", "scale alpha/r (alpha/sqrt(r) with rslora)"},
    {"lora.dropout", KEY_NUMBER, "0", "dropout on the adapter's input"},
    {"lora.rslora", KEY_BOOL, "false", "rank-stabilized scale alpha/sqrt(r)"},
    {"lora.targets", KEY_STRING_OR_LIST, "all-linear", "\"all-linear\" (every linear but the head) or [\"q_proj\", ...]"},
    {"lora.layers", KEY_LAYERS, "all", "layers to adapt: [0, 2, 5] or {\"last\": N}"},
    {"optimizer", KEY_OBJECT, NULL, NULL},
    {"optimizer.lr", KEY_NUMBER, "2e-4", "AdamW peak learning rate"},
    {"optimizer.beta1", KEY_NUMBER, "0.9", "AdamW beta1"},
    {"optimizer.beta2", KEY_NUMBER, "0.999", "AdamW beta2"},
    {"optimizer.eps", KEY_NUMBER, "1e-8", "AdamW epsilon"},
    {"optimizer.weight_decay", KEY_NUMBER, "0", "decoupled weight decay"},
    {"schedule", KEY_OBJECT, NULL, NULL},
    {"schedule.type", KEY_STRING, "cosine", "constant, linear or cosine decay to min_lr"},
    {"schedule.warmup_steps", KEY_INT, "0", "linear warmup from 0"},
    {"schedule.min_lr", KEY_NUMBER, "0", "the learning rate the decay ends at"},
    {"batch_size", KEY_INT, "4", "sequences per micro-batch"},
    {"grad_accum", KEY_INT, "1", "micro-batches per optimizer step"},
    {"max_seq_len", KEY_INT, "512", "longer examples are truncated (and counted)"},
    {"steps", KEY_INT, "required*", "optimizer steps (*give steps or epochs)"},
    {"epochs", KEY_INT, "required*", "passes over train_data (*give steps or epochs)"},
    {"max_grad_norm", KEY_NUMBER, "1.0", "global gradient-norm clip; 0 = off"},
    {"seed", KEY_INT, "0", "adapter init, shuffling and dropout"},
    {"packing", KEY_BOOL, "false", "pack examples into max_seq_len rows"},
    {"mask_prompt", KEY_BOOL, "true", "loss on completions (assistant turns) only"},
    {"eval_every", KEY_INT, "0", "evaluate every N steps (and at the end); 0 = at the end only"},
    {"eval_max_examples", KEY_INT, "0", "evaluate (and eval_generate) the first N validation examples; 0 = all"},
    {"save_every", KEY_INT, "0", "checkpoint every N steps (and at the end)"},
    {"keep_checkpoints", KEY_INT, "3", "how many checkpoints to keep"},
    {"log_every", KEY_INT, "auto", "without a terminal, a progress line every N steps (about 50 a run)"},
    {"threads", KEY_INT, "0", "threads; 0 = every core"},
    {"skip_nonfinite", KEY_BOOL, "false", "skip (and count) a batch with NaN/Inf instead of stopping"},
    {"activation_checkpointing", KEY_BOOL, "false", "recompute each layer in the backward (less memory)"},
    {"bf16_weights", KEY_BOOL, "false", "hold frozen weights in bf16 (half the memory)"},
    {"compute", KEY_STRING, "fp32", "fp32 or bf16 products of the frozen weights"},
    {"eval_generate", KEY_OBJECT, "off", "task accuracy from greedy answers on the validation data"},
    {"eval_generate.every", KEY_INT, "1", "every N steps"},
    {"eval_generate.limit", KEY_INT, "0", "the first N examples; 0 = all"},
    {"eval_generate.metric", KEY_STRING, "number", "exact, number or contains"},
    {"eval_generate.max_tokens", KEY_INT, "256", "answer length limit"},
    {"early_stopping", KEY_OBJECT, "off", "stop when evaluations stop improving"},
    {"early_stopping.patience", KEY_INT, "1", "evaluations without improvement before stopping"},
    {"early_stopping.min_delta", KEY_NUMBER, "0", "the smallest change that counts as improvement"},
};

void lc_train_config_describe(FILE *out) {
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
        if (!known_keys[i].about) continue; // an object that only groups keys
        fprintf(out, "  %-26s %-12s %s\n", known_keys[i].path, known_keys[i].def, known_keys[i].about);
    }
}

static int find_key(const char *path) {
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
        if (strcmp(known_keys[i].path, path) == 0) return (int)i;
    return -1;
}

// Other trainers' names for our keys (PEFT's LoraConfig, transformers'
// TrainingArguments, MLX-LM's lora config): a user coming from them writes
// these first.
static const struct {
    const char *name, *ours, *whose;
} foreign_keys[] = {
    {"lora_alpha", "lora.alpha", "PEFT's"},
    {"target_modules", "lora.targets", "PEFT's"},
    {"lora_dropout", "lora.dropout", "PEFT's"},
    {"use_rslora", "lora.rslora", "PEFT's"},
    {"layers_to_transform", "lora.layers", "PEFT's"},
    {"rank", "lora.r", "MLX-LM's"},
    {"num_layers", "lora.layers", "MLX-LM's"},
    {"learning_rate", "optimizer.lr", "transformers'"},
    {"weight_decay", "optimizer.weight_decay", "transformers'"},
    {"adam_beta1", "optimizer.beta1", "transformers'"},
    {"adam_beta2", "optimizer.beta2", "transformers'"},
    {"adam_epsilon", "optimizer.eps", "transformers'"},
    {"lr_scheduler_type", "schedule.type", "transformers'"},
    {"num_train_epochs", "epochs", "transformers'"},
    {"max_steps", "steps", "transformers'"},
    {"iters", "steps", "MLX-LM's"},
    {"per_device_train_batch_size", "batch_size", "transformers'"},
    {"gradient_accumulation_steps", "grad_accum", "transformers'"},
    {"gradient_checkpointing", "activation_checkpointing", "transformers'"},
    {"grad_checkpoint", "activation_checkpointing", "MLX-LM's"},
    {"max_seq_length", "max_seq_len", "MLX-LM's"},
    {"logging_steps", "log_every", "transformers'"},
    {"steps_per_report", "log_every", "MLX-LM's"},
    {"eval_steps", "eval_every", "transformers'"},
    {"steps_per_eval", "eval_every", "MLX-LM's"},
    {"val_batches", "eval_max_examples", "MLX-LM's"},
    {"save_steps", "save_every", "transformers'"},
    {"save_total_limit", "keep_checkpoints", "transformers'"},
    {"adapter_path", "output_dir", "MLX-LM's"},
    {"model_name_or_path", "model", "transformers'"},
    {"resume_adapter_file", "init_adapter", "MLX-LM's"},
};

// Edit distance with transpositions (optimal string alignment), capped at
// 64 bytes a side: keys are short, and a longer one is no near miss.
static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

static const char *last_part(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

// A hint for an unknown key, " (did you mean \"lora.alpha\"?)", or "" when
// nothing is near: the known key or other trainer's name closest to it,
// also when it sits in the wrong object ("lr" at the top is optimizer.lr).
// Scores count edits twice and a wrong object once, so a name found whole
// in another object beats a one-letter change in this one; the edits a
// match may need grow with the shorter name (one below 6 letters).
static void key_hint(const char *path, char *out, size_t cap) {
    const char *last = last_part(path);
    size_t plen = (size_t)(last - path), n = strlen(last);
    int best = 99, best_key = -1, best_foreign = -1;
    for (size_t k = 0; k < sizeof known_keys / sizeof known_keys[0]; k++) {
        if (known_keys[k].type == KEY_OBJECT) continue; // "loss" is no "lora"
        const char *kp = known_keys[k].path, *kl = last_part(kp);
        bool same_object = (size_t)(kl - kp) == plen && memcmp(kp, path, plen) == 0;
        int e = edit_distance(last, kl), d = 2 * e + !same_object;
        size_t shorter = strlen(kl) < n ? strlen(kl) : n;
        if (e > (shorter < 6 ? 1 : shorter < 10 ? 2 : 3)) continue;
        if (d < best) best = d, best_key = (int)k, best_foreign = -1;
    }
    // Another trainer's name, exactly or one edit off.
    for (size_t f = 0; f < sizeof foreign_keys / sizeof foreign_keys[0]; f++) {
        if (find_key(foreign_keys[f].ours) < 0) continue;
        int e = edit_distance(last, foreign_keys[f].name);
        if (e > (e && n < 6 ? 0 : 1)) continue;
        if (2 * e < best) best = 2 * e, best_foreign = (int)f;
    }
    out[0] = '\0';
    if (best_foreign >= 0)
        snprintf(out, cap, " (did you mean \"%s\"? %s is %s name)", foreign_keys[best_foreign].ours,
                 foreign_keys[best_foreign].name, foreign_keys[best_foreign].whose);
    else if (best_key >= 0)
        snprintf(out, cap, " (did you mean \"%s\"?)", known_keys[best_key].path);
}

static int type_ok(const cJSON *v, key_type t) {
    switch (t) {
    case KEY_STRING: return cJSON_IsString(v);
    case KEY_INT: return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15;
    case KEY_NUMBER: return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case KEY_BOOL: return cJSON_IsBool(v);
    case KEY_OBJECT: return cJSON_IsObject(v);
    case KEY_STRING_OR_LIST:
        if (cJSON_IsString(v)) return 1;
        // fall through
    case KEY_STRING_LIST:
        if (!cJSON_IsArray(v)) return 0;
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e)) return 0;
        return 1;
    case KEY_LAYERS: // checked entry by entry in parse_layers
        return cJSON_IsArray(v) || cJSON_IsObject(v) || (cJSON_IsString(v) && strcmp(v->valuestring, "all") == 0);
    }
    return 0;
}

static const char *type_name(key_type t) {
    static const char *names[] = {"a string", "an integer", "a number", "true or false", "a list of strings",
                                  "an object", "a string or a list of strings",
                                  "a list of layer indices, {\"last\": N} or \"all\""};
    return names[t];
}

// Where the values came from, for messages: an error about a value an
// override gave names that "--set key=value", any other the config file.
typedef struct config_src {
    const char *file;
    const char *const *overrides; // "key=value" texts, in the order applied
    char **labels;                // "--set key=value" for each
    int n_overrides;
} config_src;

// The label of the last override that set `path` or an object holding it
// (a later one replaces an earlier), else the file.
static const char *src_of(const config_src *s, const char *path) {
    const char *what = s->file;
    size_t plen = strlen(path);
    for (int i = 0; i < s->n_overrides; i++) {
        const char *o = s->overrides[i];
        size_t klen = strcspn(o, "=");
        if (klen <= plen && memcmp(o, path, klen) == 0 && (path[klen] == '\0' || path[klen] == '.'))
            what = s->labels[i];
    }
    return what;
}

// The same for a check on several keys: the latest override among them.
static const char *src_any(const config_src *s, const char *const *paths, int n) {
    const char *what = s->file;
    int best = -1;
    for (int k = 0; k < n; k++) {
        const char *w = src_of(s, paths[k]);
        for (int i = best + 1; i < s->n_overrides; i++)
            if (w == s->labels[i]) best = i, what = w;
    }
    return what;
}

// Walks obj checking every key against the schema (names, duplicates, and
// with `types` the value types); prefix is the dotted path so far.
static lc_status check_keys(const cJSON *obj, const char *prefix, const config_src *s, bool types) {
    for (const cJSON *e = obj->child; e; e = e->next) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", e->string ? e->string : "");
        const char *what = src_of(s, path);
        // "lora.r" as one name would be found below and then never read:
        // nested keys are objects in the file.
        const char *dot = e->string ? strchr(e->string, '.') : NULL;
        if (dot && find_key(path) >= 0)
            return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is not a key: write it nested, \"%.*s\": {\"%s\": ...}", what,
                            e->string, (int)(dot - e->string), e->string, dot + 1);
        int k = dot ? -1 : find_key(path);
        if (k < 0) {
            char hint[160];
            key_hint(path, hint, sizeof hint);
            return lc_error(LC_STATUS_INPUT, "%s: unknown key \"%s\"%s", what, path, hint);
        }
        // cJSON keeps duplicates and its lookups take the first; Python's json
        // takes the last. Which one was meant would be a guess. A level holds
        // at most one of each known key, so this scan stays short.
        for (const cJSON *p = obj->child; p != e; p = p->next)
            if (strcmp(p->string, e->string) == 0)
                return lc_error(LC_STATUS_INPUT, "%s: duplicate key \"%s\"", what, path);
        if (types && !type_ok(e, known_keys[k].type))
            return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be %s", what, path, type_name(known_keys[k].type));
        if (known_keys[k].type == KEY_OBJECT && cJSON_IsObject(e)) {
            lc_status st = check_keys(e, path, s, types);
            if (st) return st;
        }
    }
    return LC_STATUS_OK;
}

// Sets root[dotted key] = value text, or removes the key when the text is
// empty (`--set steps= --set epochs=1` on a config that has steps). The
// whole text must be JSON (cJSON_Parse alone took "10x" as 10); text that
// is not is a string, which check_keys refuses for a key of another type.
// A string key takes any text that is not a JSON string as it is, so
// output_dir=2024 names a folder.
static lc_status apply_override(cJSON *root, const char *override) {
    const char *eq = strchr(override, '=');
    if (!eq || eq == override) return lc_error(LC_STATUS_USAGE, "--set %s: expected key=value", override);
    char key[256];
    size_t klen = (size_t)(eq - override);
    if (klen >= sizeof key) return lc_error(LC_STATUS_USAGE, "--set %s: key too long", override);
    memcpy(key, override, klen);
    key[klen] = '\0';
    int k = find_key(key);
    if (k < 0) {
        char hint[160];
        key_hint(key, hint, sizeof hint);
        return lc_error(LC_STATUS_USAGE, "--set: unknown key \"%s\"%s", key, hint);
    }
    const char *text = eq + 1;
    bool unset = *text == '\0';
    cJSON *value = NULL;
    if (!unset) {
        value = cJSON_ParseWithOpts(text, NULL, true);
        if (value && known_keys[k].type == KEY_STRING && !cJSON_IsString(value)) {
            cJSON_Delete(value);
            value = NULL;
        }
        if (!value) value = cJSON_CreateString(text);
        if (!value) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    cJSON *parent = root;
    char *dot;
    char *name = key;
    while ((dot = strchr(name, '.'))) {
        *dot = '\0';
        cJSON *child = cJSON_GetObjectItemCaseSensitive(parent, name);
        if (!child && unset) return LC_STATUS_OK; // nothing there to remove
        if (!child) child = cJSON_AddObjectToObject(parent, name);
        if (!cJSON_IsObject(child)) {
            cJSON_Delete(value);
            return lc_error(LC_STATUS_USAGE, "--set %s: \"%s\" is not an object", override, name);
        }
        parent = child;
        name = dot + 1;
    }
    if (unset) cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
    else if (cJSON_GetObjectItemCaseSensitive(parent, name)) cJSON_ReplaceItemInObjectCaseSensitive(parent, name, value);
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

// "lora.layers": a list of layer indices (PEFT's layers_to_transform) or
// {"last": N} (MLX-LM's --num-layers); absent or "all" (the --help default),
// every layer. Whether they fit
// the model is checked once it is loaded (lc_lora_layers_resolve).
static lc_status parse_layers(const cJSON *v, const char *what, lc_lora_config *c) {
    memset(c->layers, 0, sizeof c->layers);
    c->layers_last = 0;
    if (!v || cJSON_IsString(v)) return LC_STATUS_OK; // "all": type_ok took no other string
    if (cJSON_IsObject(v)) {
        const cJSON *last = cJSON_GetObjectItemCaseSensitive(v, "last");
        if (!last || cJSON_GetArraySize(v) != 1 || !cJSON_IsNumber(last) ||
            last->valuedouble != floor(last->valuedouble) || last->valuedouble < 1 ||
            last->valuedouble > LC_LORA_MAX_LAYERS)
            return lc_error(LC_STATUS_INPUT, "%s: \"lora.layers\" as an object must be {\"last\": N}, N in 1..%d", what,
                            LC_LORA_MAX_LAYERS);
        c->layers_last = (int)last->valuedouble;
        return LC_STATUS_OK;
    }
    if (!v->child) return lc_error(LC_STATUS_INPUT, "%s: \"lora.layers\" is empty", what);
    for (const cJSON *e = v->child; e; e = e->next) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(d == floor(d)))
            return lc_error(LC_STATUS_INPUT,
                            "%s: \"lora.layers\" must be a list of layer indices, {\"last\": N} or \"all\"", what);
        if (d < 0 || d >= LC_LORA_MAX_LAYERS)
            return lc_error(LC_STATUS_INPUT, "%s: lora.layers: layer %.0f is out of range (0..%d)", what, d,
                            LC_LORA_MAX_LAYERS - 1);
        int layer = (int)d;
        if (c->layers[layer / 64] >> (layer % 64) & 1)
            return lc_error(LC_STATUS_INPUT, "%s: lora.layers: layer %d is listed twice", what, layer);
        c->layers[layer / 64] |= 1ull << (layer % 64);
    }
    return LC_STATUS_OK;
}

#define TRY(x)                                                                                                        \
    do {                                                                                                              \
        lc_status st_ = (x);                                                                                          \
        if (st_) return st_;                                                                                          \
    } while (0)

static lc_status fill(lc_train_config *cfg, const cJSON *root, const config_src *s) {
#define W(path) src_of(s, path)
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

    TRY(get_path(root, "model", W("model"), 1, cfg->model, sizeof cfg->model));
    TRY(get_path(root, "train_data", W("train_data"), 1, cfg->train_data, sizeof cfg->train_data));
    TRY(get_path(root, "valid_data", W("valid_data"), 0, cfg->valid_data, sizeof cfg->valid_data));
    TRY(get_path(root, "output_dir", W("output_dir"), 1, cfg->output_dir, sizeof cfg->output_dir));
    TRY(get_path(root, "init_adapter", W("init_adapter"), 0, cfg->init_adapter, sizeof cfg->init_adapter));
    TRY(get_path(root, "chat_template", W("chat_template"), 0, cfg->chat_template, sizeof cfg->chat_template));
    TRY(lc_json_get_double(root, "valid_split", W("valid_split"), 0.0, &cfg->valid_split));
    if (cfg->valid_split < 0.0 || cfg->valid_split >= 1.0)
        return lc_error(LC_STATUS_INPUT, "%s: \"valid_split\" must be in [0, 1)", W("valid_split"));
    if (cfg->valid_split > 0.0 && cfg->valid_data[0])
        return lc_error(LC_STATUS_INPUT, "%s: give \"valid_data\" or \"valid_split\", not both",
                        src_any(s, (const char *[]){"valid_data", "valid_split"}, 2));

    TRY(get_int_range(lora, "r", "lora.r", W("lora.r"), 16, 1, 4096, &v));
    cfg->lora.r = (int)v;
    TRY(lc_json_get_double(lora, "alpha", W("lora.alpha"), 2.0 * cfg->lora.r, &d));
    cfg->lora.alpha = (float)d;
    TRY(lc_json_get_double(lora, "dropout", W("lora.dropout"), 0.0, &d));
    if (d < 0.0 || d >= 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"lora.dropout\" must be in [0, 1)", W("lora.dropout"));
    cfg->lora.dropout = (float)d;
    TRY(lc_json_get_bool(lora, "rslora", W("lora.rslora"), false, &b));
    cfg->lora.rslora = b;
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(lora, "targets");
    cfg->lora.targets = 0;
    // PEFT's "all-linear", as the value or the only entry: every linear of the
    // blocks the model has, not the output head (as PEFT takes it).
    const cJSON *only = cJSON_IsArray(targets) && cJSON_GetArraySize(targets) == 1 ? targets->child : targets;
    if (!targets || (cJSON_IsString(only) && strcmp(only->valuestring, "all-linear") == 0)) {
        cfg->lora.targets = LC_LINEAR_KIND_ALL; // every projection the model has
    } else if (cJSON_IsString(targets)) {
        return lc_error(LC_STATUS_INPUT, "%s: lora.targets: \"%.64s\" is not \"all-linear\"; name modules in a list",
                        W("lora.targets"), targets->valuestring);
    } else {
        // Names of any family: the model is not known yet. Once it is loaded,
        // a name it does not have is refused (lc_lora_init) listing its own.
        for (const cJSON *e = targets->child; e; e = e->next) {
            if (strcmp(e->valuestring, "all-linear") == 0)
                return lc_error(LC_STATUS_INPUT, "%s: lora.targets: \"all-linear\" must be the only entry",
                                W("lora.targets"));
            unsigned bit = lc_lora_target_bit(e->valuestring);
            if (!bit)
                return lc_error(LC_STATUS_INPUT,
                                "%s: lora.targets: unknown module \"%.64s\" (accepted: \"all-linear\", "
                                LC_TARGET_NAMES ")", W("lora.targets"), e->valuestring);
            cfg->lora.targets |= bit;
        }
        if (!cfg->lora.targets) return lc_error(LC_STATUS_INPUT, "%s: \"lora.targets\" is empty", W("lora.targets"));
    }
    TRY(parse_layers(cJSON_GetObjectItemCaseSensitive(lora, "layers"), W("lora.layers"), &cfg->lora));

    TRY(lc_json_get_double(opt, "lr", W("optimizer.lr"), 2e-4, &d));
    if (d <= 0.0) return lc_error(LC_STATUS_INPUT, "%s: \"optimizer.lr\" must be positive", W("optimizer.lr"));
    cfg->lr = (float)d;
    TRY(lc_json_get_double(opt, "beta1", W("optimizer.beta1"), 0.9, &d));
    cfg->adamw.beta1 = (float)d;
    TRY(lc_json_get_double(opt, "beta2", W("optimizer.beta2"), 0.999, &d));
    cfg->adamw.beta2 = (float)d;
    TRY(lc_json_get_double(opt, "eps", W("optimizer.eps"), 1e-8, &d));
    cfg->adamw.eps = (float)d;
    TRY(lc_json_get_double(opt, "weight_decay", W("optimizer.weight_decay"), 0.0, &d));
    cfg->adamw.weight_decay = (float)d;
    if (!(cfg->adamw.beta1 >= 0 && cfg->adamw.beta1 < 1 && cfg->adamw.beta2 >= 0 && cfg->adamw.beta2 < 1 &&
          cfg->adamw.eps > 0 && cfg->adamw.weight_decay >= 0))
        return lc_error(LC_STATUS_INPUT, "%s: optimizer betas must be in [0, 1), eps positive, weight_decay >= 0",
                        src_any(s, (const char *[]){"optimizer.beta1", "optimizer.beta2", "optimizer.eps",
                                                    "optimizer.weight_decay"}, 4));

    const char *type;
    TRY(lc_json_get_string(sched, "type", W("schedule.type"), "cosine", &type));
    int t = lc_schedule_type_parse(type);
    if (t < 0)
        return lc_error(LC_STATUS_INPUT, "%s: schedule.type \"%s\" is not constant, linear or cosine",
                        W("schedule.type"), type);
    cfg->schedule.type = (lc_schedule_type)t;
    TRY(get_int_range(sched, "warmup_steps", "schedule.warmup_steps", W("schedule.warmup_steps"), 0, 0, 1 << 30,
                      &v));
    cfg->schedule.warmup_steps = v;
    TRY(lc_json_get_double(sched, "min_lr", W("schedule.min_lr"), 0.0, &d));
    if (d < 0.0 || d > cfg->lr)
        return lc_error(LC_STATUS_INPUT, "%s: \"schedule.min_lr\" must be in [0, lr]",
                        src_any(s, (const char *[]){"schedule.min_lr", "optimizer.lr"}, 2));
    cfg->schedule.min_lr = (float)d;
    cfg->schedule.lr = cfg->lr;

    TRY(get_int_range(root, "batch_size", "batch_size", W("batch_size"), 4, 1, 1 << 16, &v));
    cfg->batch_size = (int)v;
    TRY(get_int_range(root, "grad_accum", "grad_accum", W("grad_accum"), 1, 1, 1 << 16, &v));
    cfg->grad_accum = (int)v;
    TRY(get_int_range(root, "max_seq_len", "max_seq_len", W("max_seq_len"), 512, 2, 1 << 20, &v));
    cfg->max_seq_len = (int)v;
    TRY(get_int_range(root, "steps", "steps", W("steps"), 0, 0, (int64_t)1 << 40, &v));
    cfg->steps = v;
    TRY(get_int_range(root, "epochs", "epochs", W("epochs"), 0, 0, 1 << 20, &v));
    cfg->epochs = (int)v;
    if ((cfg->steps > 0) == (cfg->epochs > 0)) {
        const char *what = src_any(s, (const char *[]){"steps", "epochs"}, 2);
        bool steps_set = W("steps") != s->file, epochs_set = W("epochs") != s->file;
        // One from the file, one from --set: say how to drop the file's.
        if (cfg->steps > 0 && steps_set != epochs_set)
            return lc_error(LC_STATUS_INPUT, "%s: give exactly one of \"steps\" and \"epochs\" (--set %s= removes "
                            "the config's)", what, steps_set ? "epochs" : "steps");
        return lc_error(LC_STATUS_INPUT, "%s: give exactly one of \"steps\" and \"epochs\"", what);
    }
    TRY(lc_json_get_double(root, "max_grad_norm", W("max_grad_norm"), 1.0, &d));
    if (d < 0.0)
        return lc_error(LC_STATUS_INPUT, "%s: \"max_grad_norm\" must be >= 0 (0 disables)", W("max_grad_norm"));
    cfg->max_grad_norm = (float)d;
    TRY(get_int_range(root, "seed", "seed", W("seed"), 0, 0, (int64_t)1 << 53, &v));
    cfg->seed = (uint64_t)v;
    TRY(lc_json_get_bool(root, "packing", W("packing"), false, &cfg->packing));
    TRY(lc_json_get_bool(root, "mask_prompt", W("mask_prompt"), true, &cfg->mask_prompt));
    TRY(lc_json_get_bool(root, "skip_nonfinite", W("skip_nonfinite"), false, &cfg->skip_nonfinite));
    TRY(lc_json_get_bool(root, "activation_checkpointing", W("activation_checkpointing"), false, &cfg->activation_checkpointing));
    TRY(lc_json_get_bool(root, "bf16_weights", W("bf16_weights"), false, &cfg->bf16_weights));
    const char *compute;
    TRY(lc_json_get_string(root, "compute", W("compute"), "fp32", &compute));
    int parsed = lc_compute_parse(compute);
    if (parsed < 0)
        return lc_error(LC_STATUS_INPUT, "%s: \"compute\" \"%s\" is not fp32 or bf16", W("compute"), compute);
    cfg->compute = (lc_compute)parsed;
    TRY(get_int_range(root, "eval_every", "eval_every", W("eval_every"), 0, 0, 1 << 30, &v));
    cfg->eval_every = (int)v;
    TRY(get_int_range(root, "save_every", "save_every", W("save_every"), 0, 0, 1 << 30, &v));
    cfg->save_every = (int)v;
    TRY(get_int_range(root, "keep_checkpoints", "keep_checkpoints", W("keep_checkpoints"), 3, 1, 1 << 20, &v));
    cfg->keep_checkpoints = (int)v;
    TRY(get_int_range(root, "threads", "threads", W("threads"), 0, 0, 4096, &v));
    cfg->threads = (int)v;
    TRY(get_int_range(root, "eval_max_examples", "eval_max_examples", W("eval_max_examples"), 0, 0, 1 << 30, &v));
    cfg->eval_max_examples = (int)v;
    TRY(get_int_range(root, "log_every", "log_every", W("log_every"), 0, 0, 1 << 30, &v));
    cfg->log_every = (int)v;

    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "eval_generate");
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(root, "early_stopping");
    if (!gen) gen = &empty;
    if (!es) es = &empty;
    TRY(get_int_range(gen, "every", "eval_generate.every", W("eval_generate.every"), gen == &empty ? 0 : 1, 0,
                      1 << 30, &v));
    cfg->eval_generate.every = (int)v;
    TRY(get_int_range(gen, "limit", "eval_generate.limit", W("eval_generate.limit"), 0, 0, 1 << 30, &v));
    cfg->eval_generate.limit = (int)v;
    TRY(get_int_range(gen, "max_tokens", "eval_generate.max_tokens", W("eval_generate.max_tokens"), 256, 1, 1 << 20,
                      &v));
    cfg->eval_generate.max_tokens = (int)v;
    const char *metric;
    TRY(lc_json_get_string(gen, "metric", W("eval_generate.metric"), "number", &metric));
    if ((cfg->eval_generate.metric = lc_metric_parse(metric)) < 0)
        return lc_error(LC_STATUS_INPUT, "%s: \"eval_generate.metric\" \"%s\" is not exact, number or contains",
                        W("eval_generate.metric"), metric);
    TRY(get_int_range(es, "patience", "early_stopping.patience", W("early_stopping.patience"), es == &empty ? 0 : 1, 0,
                      1 << 30, &v));
    cfg->early_stopping.patience = (int)v;
    TRY(lc_json_get_double(es, "min_delta", W("early_stopping.min_delta"), 0.0, &d));
    if (!(d >= 0.0))
        return lc_error(LC_STATUS_INPUT, "%s: \"early_stopping.min_delta\" must be >= 0", W("early_stopping.min_delta"));
    cfg->early_stopping.min_delta = (float)d;
    bool has_valid = cfg->valid_data[0] || cfg->valid_split > 0.0;
    if ((cfg->eval_generate.every || cfg->early_stopping.patience) && !has_valid)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" needs validation data (valid_data or valid_split)",
                        W(cfg->eval_generate.every ? "eval_generate" : "early_stopping"),
                        cfg->eval_generate.every ? "eval_generate" : "early_stopping");
    if (cfg->eval_generate.every && !cfg->mask_prompt)
        return lc_error(LC_STATUS_INPUT, "%s: \"eval_generate\" needs \"mask_prompt\": true (the prompt a model "
                        "answers ends where the loss starts)", W("eval_generate"));
    if (cfg->early_stopping.patience && !cfg->eval_every && !cfg->eval_generate.every)
        return lc_error(LC_STATUS_INPUT, "%s: \"early_stopping\" needs evaluations: set eval_every (or "
                        "eval_generate.every)", W("early_stopping"));
    return LC_STATUS_OK;
}

#undef W

static lc_status finish(lc_train_config *cfg, cJSON *root, const config_src *s) {
    lc_status st = check_keys(root, "", s, true);
    if (!st) st = fill(cfg, root, s);
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
    config_src src = {what, NULL, NULL, 0};
    return finish(cfg, root, &src);
}

// A config's relative input paths name files from the working directory;
// one that does not exist there but does beside the config file (a config
// run from another folder) is taken from there, with a note for the caller
// to print once the config is valid. Values given by --set stay relative
// to the working directory.
static lc_status resolve_inputs(cJSON *root, const config_src *s, char *notes, size_t cap) {
    static const char *const keys[] = {"model", "train_data", "valid_data", "init_adapter", "chat_template"};
    const char *slash = strrchr(s->file, '/');
    if (!slash) return LC_STATUS_OK; // the config is in the working directory
    char dir[4096];
    size_t dlen = (size_t)(slash - s->file);
    if (dlen == 0) dlen = 1; // "/x.json"
    if (dlen >= sizeof dir) return LC_STATUS_OK;
    memcpy(dir, s->file, dlen);
    dir[dlen] = '\0';
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        struct stat sb;
        if (!cJSON_IsString(v) || !v->valuestring[0] || v->valuestring[0] == '/' || src_of(s, keys[k]) != s->file ||
            stat(v->valuestring, &sb) == 0)
            continue;
        char joined[4096], cwd[4096], whole[4096];
        if (lc_path_join(joined, sizeof joined, dir, v->valuestring) || stat(joined, &sb) != 0) continue;
        // Absolute, so a resume from another working directory names the
        // same file (checkpoints keep the config as resolved).
        if (joined[0] != '/') {
            if (!getcwd(cwd, sizeof cwd) || lc_path_join(whole, sizeof whole, cwd, joined)) continue;
            snprintf(joined, sizeof joined, "%s", whole);
        }
        size_t used = strlen(notes);
        snprintf(notes + used, cap - used, "lora train: %s: %s is not in the working directory; using %s, beside the "
                 "config file\n", keys[k], v->valuestring, joined);
        if (!cJSON_SetValuestring(v, joined)) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    return LC_STATUS_OK;
}

lc_status lc_train_config_load(lc_train_config *cfg, const char *path, const char *const *overrides, int n_overrides) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root;
    lc_status st = lc_json_load_file(path, 1 << 20, &root);
    if (st) return st;
    config_src src = {path, overrides, NULL, n_overrides};
    if (!cJSON_IsObject(root)) {
        st = lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);
    } else {
        // The file's own keys first: an override would replace or remove only
        // the first of two duplicates and hide the other.
        config_src file_only = {path, NULL, NULL, 0};
        st = check_keys(root, "", &file_only, false);
    }
    if (!st && n_overrides > 0) {
        src.labels = calloc((size_t)n_overrides, sizeof *src.labels);
        if (!src.labels) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    for (int i = 0; !st && i < n_overrides; i++) {
        size_t n = strlen(overrides[i]) + sizeof "--set ";
        if (!(src.labels[i] = malloc(n))) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        else snprintf(src.labels[i], n, "--set %s", overrides[i]);
    }
    for (int i = 0; !st && i < n_overrides; i++) st = apply_override(root, overrides[i]);
    if (!st) st = resolve_inputs(root, &src, cfg->notes, sizeof cfg->notes);
    if (st) cJSON_Delete(root);
    else st = finish(cfg, root, &src);
    if (!st) snprintf(cfg->path, sizeof cfg->path, "%s", path);
    for (int i = 0; src.labels && i < n_overrides; i++) free(src.labels[i]);
    free(src.labels);
    return st;
}

void lc_train_config_free(lc_train_config *cfg) {
    free(cfg->json);
    cfg->json = NULL;
}
