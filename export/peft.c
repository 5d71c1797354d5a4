// PEFT adapter folders: adapter_model.safetensors + adapter_config.json, as
// PEFT's save_pretrained writes them (keys without the adapter name, config
// with sorted keys), and reading them back with every rank, target and shape
// checked against the config and the model.
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "export/export.h"
#include "model/gguf_model.h"
#include "model/arch.h"

// Defined in merge.c.
char *lc_export_json_print(const cJSON *root);

// PEFT names a LoRA tensor after the module's path in the *ForCausalLM
// model, under the PeftModel's "base_model.model.".
#define PEFT_PREFIX "base_model.model."
#define PEFT_NAME_MAX 192
#define PEFT_CONFIG_MAX (1u << 20)
#define PEFT_LIST_MAX 160

// "base_model.model.<layer path>.<module>.lora_A.weight" in the family's names.
static void peft_key(char *out, size_t cap, const lc_model_config *cfg, int layer, lc_linear_kind kind, char ab) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    char layer_path[96];
    snprintf(layer_path, sizeof layer_path, n.layer, layer);
    snprintf(out, cap, PEFT_PREFIX "%s.%s.lora_%c.weight", layer_path, n.lin[kind] ? n.lin[kind] : "?", ab);
}

// The same for projection proj of expert e (a sparse layer's).
static void peft_expert_key(char *out, size_t cap, const lc_model_config *cfg, int layer, int e, lc_expert_proj proj,
                            char ab) {
    char path[160];
    lc_arch_expert_path(cfg, layer, e, proj, path, sizeof path);
    snprintf(out, cap, PEFT_PREFIX "%s.lora_%c.weight", path, ab);
}

// The family's name of a kind for messages and target_modules: its module
// name ("c_attn", "q_proj"), or its path under the layer ("attn.c_proj") where
// the name alone also selects another kind (GPT-2's c_proj).
static const char *kind_label(const lc_model_config *cfg, lc_linear_kind kind) {
    const char *name = lc_arch_linear_name(cfg, kind);
    if (!name) return lc_linear_kind_name(kind);
    if (lc_arch_target_bits(cfg, name) == (1u << kind)) return name;
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    return n.lin[kind]; // a static string
}

// The shortest decimal that reads back as the same float (0.05f -> 0.05),
// so the JSON holds what the user wrote rather than 0.05000000074505806.
static double float_as_decimal(float x) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

// A Hugging Face Hub repository id, "org/name": letters, digits, '-', '_'
// and '.', neither part starting with '-' or '.', without "--" or "..", at
// most 96 characters each (the Hub's rules). A filesystem path fails it.
static bool is_hub_id(const char *s) {
    const char *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/') || strstr(s, "--") || strstr(s, "..")) return false;
    for (int part = 0; part < 2; part++) {
        const char *p = part ? slash + 1 : s, *end = part ? s + strlen(s) : slash;
        if (end == p || end - p > 96 || *p == '-' || *p == '.') return false;
        for (; p < end; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                  *p == '_' || *p == '.'))
                return false;
    }
    return true;
}

lc_status lc_export_peft_base_name(const char *model_dir, char *out, size_t cap) {
    char path[4096], *text = NULL;
    size_t len;
    if (lc_dir_exists(model_dir) && !lc_path_join(path, sizeof path, model_dir, "config.json") &&
        !lc_file_read(path, 16u << 20, &text, &len)) {
        cJSON *cfg = cJSON_ParseWithLength(text, len);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cfg, "_name_or_path");
        bool hub = cJSON_IsString(name) && is_hub_id(name->valuestring) && strlen(name->valuestring) < cap;
        if (hub) memcpy(out, name->valuestring, strlen(name->valuestring) + 1);
        cJSON_Delete(cfg);
        free(text);
        if (hub) return LC_STATUS_OK;
    }
    // The last part of the path, resolved first so "." and "models/x/" name the folder.
    char real[PATH_MAX];
    const char *p = realpath(model_dir, real) ? real : model_dir;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && p[start - 1] != '/') start--;
    if (n - start + 1 > cap) return lc_error(LC_STATUS_INPUT, "%s: name too long", model_dir);
    if (n == start) return lc_error(LC_STATUS_INPUT, "%s: no name to give the base model", model_dir);
    memcpy(out, p + start, n - start);
    out[n - start] = '\0';
    return LC_STATUS_OK;
}

static lc_status write_config(const char *path, const char *base_name, const lc_model *m, const lc_lora *lora) {
    const lc_lora_config *c = &lora->cfg;
    cJSON *root = cJSON_CreateObject();
    if (!root) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    // PEFT writes json.dumps(..., indent=2, sort_keys=True): keys in this order.
    cJSON_AddStringToObject(root, "base_model_name_or_path", base_name);
    cJSON_AddStringToObject(root, "bias", "none");
    // PEFT sets it for Conv1D layers (GPT-2), whose weights are stored [in, out].
    cJSON_AddBoolToObject(root, "fan_in_fan_out", m->cfg.arch == LC_ARCH_GPT2); // Conv1D, also from a GGUF base
    cJSON_AddBoolToObject(root, "inference_mode", 1);
    cJSON_AddBoolToObject(root, "init_lora_weights", 1);
    // PEFT finds a module's layer index after "layers" or "h" (its default
    // patterns, the containers of every family here), so layers_pattern stays null.
    cJSON_AddNullToObject(root, "layers_pattern");
    int n_selected = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) n_selected += lc_lora_layer_selected(c, m->cfg.n_layers, l);
    if (n_selected == m->cfg.n_layers) {
        cJSON_AddNullToObject(root, "layers_to_transform");
    } else {
        cJSON *layers = cJSON_AddArrayToObject(root, "layers_to_transform");
        for (int l = 0; layers && l < m->cfg.n_layers; l++)
            if (lc_lora_layer_selected(c, m->cfg.n_layers, l)) cJSON_AddItemToArray(layers, cJSON_CreateNumber(l));
    }
    cJSON_AddNumberToObject(root, "lora_alpha", float_as_decimal(c->alpha));
    cJSON_AddNumberToObject(root, "lora_dropout", float_as_decimal(c->dropout));
    cJSON_AddNullToObject(root, "modules_to_save");
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddNumberToObject(root, "r", c->r);
    cJSON_AddNullToObject(root, "revision");
    // The family's module names, each once: GPT-2's "c_proj" when both the
    // attention and the MLP output are adapted, "attn.c_proj" (PEFT matches
    // it as a suffix of the module path) when only one is.
    cJSON *targets = cJSON_AddArrayToObject(root, "target_modules");
    unsigned listed = 0;
    for (int k = 0; targets && k < LC_LINEAR_KIND_COUNT; k++) {
        if (!(c->targets & (1u << k)) || (listed & (1u << k))) continue;
        const char *name = lc_arch_linear_name(&m->cfg, (lc_linear_kind)k);
        unsigned same = name ? lc_arch_target_bits(&m->cfg, name) : 0;
        if (name && (c->targets & same) == same) {
            listed |= same;
        } else {
            name = kind_label(&m->cfg, (lc_linear_kind)k);
            listed |= 1u << k;
        }
        cJSON_AddItemToArray(targets, cJSON_CreateString(name));
    }
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(root, "use_dora", 0);
    cJSON_AddBoolToObject(root, "use_rslora", c->rslora);
    char *text = lc_export_json_print(root);
    cJSON_Delete(root);
    if (!text) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    lc_status st = lc_file_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static const char *const peft_written[] = {"adapter_model.safetensors", "adapter_config.json"};

static lc_status export_peft(const char *out_dir, const char *base_name, const lc_model *m, const lc_lora *lora,
                             lc_dtype dtype);

lc_status lc_export_peft(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         lc_dtype dtype) {
    return lc_export_peft_named(out_dir, model_dir, NULL, m, lora, dtype);
}

lc_status lc_export_peft_named(const char *out_dir, const char *model_dir, const char *base_name, const lc_model *m,
                               const lc_lora *lora, lc_dtype dtype) {
    char derived[512];
    lc_status st = LC_STATUS_OK;
    if (!base_name && !(st = lc_export_peft_base_name(model_dir, derived, sizeof derived))) base_name = derived;
    if (st) return st;
    lc_export_undo undo;
    if ((st = lc_export_undo_begin(&undo, out_dir, peft_written, 2))) return st;
    if ((st = export_peft(out_dir, base_name, m, lora, dtype))) lc_export_undo_fail(&undo);
    return st;
}

// The safetensors entry of ref's A (ab 0, [r, in]) or B (ab 1, [out, r]):
// the adapter's own floats, or their converted copy in half (laid out like
// lora->params) for F16/BF16.
static void set_entry(lc_st_entry *e, const char *name, const lc_lora *lora, const lc_lora_ref *ref,
                      const lc_linear *lin, int ab, lc_dtype dtype, const uint16_t *half) {
    const float *p = ab ? ref->B : ref->A;
    e->name = name;
    e->dtype = dtype;
    e->n_dims = 2;
    e->shape[0] = ab ? lin->out : ref->r;
    e->shape[1] = ab ? ref->r : lin->in;
    e->data = half ? (const void *)(half + (p - lora->params)) : (const void *)p;
    e->nbytes = (size_t)e->shape[0] * (size_t)e->shape[1] * lc_dtype_size(dtype);
}

static lc_status export_peft(const char *out_dir, const char *base_name, const lc_model *m, const lc_lora *lora,
                             lc_dtype dtype) {
    if (lc_gguf_fused_rows_reordered(m))
        return lc_error(LC_STATUS_USAGE, "%s: PEFT export from a GGUF %s base is not supported (llama.cpp's converter "
                        "reordered its fused query/key/value rows); export gguf or gguf-lora", out_dir,
                        lc_arch_name(m->cfg.arch));
    if (dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_F16 && dtype != LC_DTYPE_BF16)
        return lc_error(LC_STATUS_INPUT, "PEFT export: dtype must be F32, F16 or BF16");
    if (!lora || !lora->params || lora->n_layers != m->cfg.n_layers)
        return lc_error(LC_STATUS_INPUT, "PEFT export: the adapter does not belong to this model");
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
        if ((lora->cfg.targets >> k & 1) && !(lc_model_linear_kinds(&m->cfg) >> k & 1))
            return lc_error(LC_STATUS_INPUT, "PEFT export: the adapter adapts %s, which %s models do not have",
                            lc_linear_kind_name((lc_linear_kind)k), lc_arch_name(m->cfg.arch));
    lc_status st;
    int cap = lora->n_layers * (LC_LINEAR_KIND_COUNT + lora->expert_slots) * 2, n = 0;
    lc_st_entry *entries = calloc((size_t)cap + 1, sizeof *entries);
    char (*names)[PEFT_NAME_MAX] = calloc((size_t)cap + 1, sizeof *names);
    uint16_t *half = NULL;
    if (dtype != LC_DTYPE_F32) half = malloc(sizeof *half * (lora->n_params + 1));
    if (!entries || !names || (dtype != LC_DTYPE_F32 && !half)) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        goto done;
    }
    for (size_t i = 0; half && i < lora->n_params; i++)
        half[i] = dtype == LC_DTYPE_F16 ? lc_f32_to_f16(lora->params[i]) : lc_f32_to_bf16(lora->params[i]);
    for (int l = 0; l < lora->n_layers; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_lora_ref *ref = lc_lora_get(lora, l, k);
            if (!ref) continue;
            const lc_linear *lin = &m->layers[l].lin[k];
            if (!lin->out) continue; // (refused above)
            for (int ab = 0; ab < 2; ab++) {
                peft_key(names[n], sizeof names[n], &m->cfg, l, k, ab ? 'B' : 'A');
                set_entry(&entries[n], names[n], lora, ref, lin, ab, dtype, half);
                n++;
            }
        }
    }
    lc_lora_expert x;
    for (int i = 0; lc_lora_expert_next(lora, m, &i, &x);)
        for (int ab = 0; ab < 2; ab++) {
            peft_expert_key(names[n], sizeof names[n], &m->cfg, x.layer, x.expert, x.proj, ab ? 'B' : 'A');
            set_entry(&entries[n], names[n], lora, x.ref, x.lin, ab, dtype, half);
            n++;
        }
    char path[4096];
    static const char *const meta[] = {"format", "pt"};
    if ((st = lc_path_join(path, sizeof path, out_dir, "adapter_model.safetensors"))) goto done;
    if ((st = lc_st_write(path, entries, n, meta, 1))) goto done;
    if ((st = lc_path_join(path, sizeof path, out_dir, "adapter_config.json"))) goto done;
    st = write_config(path, base_name, m, lora);
done:
    free(entries);
    free(names);
    free(half);
    return st;
}

// ---------------------------------------------------------------------------
// Reading

// The kinds a target_modules entry selects in the model's family: PEFT
// adapts every module whose full name is the entry or ends with "." + entry,
// so "c_attn", "attn.c_proj" or "self_attn.q_proj" (0: none of its linears).
static unsigned target_bits(const lc_model_config *cfg, const char *entry) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    unsigned bits = 0, present = lc_model_linear_kinds(cfg);
    size_t el = strlen(entry);
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        const char *path = n.lin[k];
        if (!path || !(present >> k & 1) || !el) continue;
        size_t pl = strlen(path);
        int suffix = pl > el && path[pl - el - 1] == '.' && strcmp(path + pl - el, entry) == 0;
        if ((pl == el && strcmp(path, entry) == 0) || suffix) bits |= 1u << k;
    }
    return bits;
}

// A field that must be absent, null, false, or an empty list/object: what
// PEFT writes when a feature this reader does not implement is unused.
static lc_status refuse_if_set(const cJSON *root, const char *key, const char *path, const char *why) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return LC_STATUS_OK;
    if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && cJSON_GetArraySize(v) == 0) return LC_STATUS_OK;
    return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is set; %s", path, key, why);
}

// layers_to_transform: a list of layer indices or one index (PEFT takes an
// int as [int]); null, absent or [], every layer. layers_pattern, when given,
// must name the model's layer container ("layers", "h"), the one PEFT would
// find itself.
static lc_status read_layers(const cJSON *root, const char *path, const lc_model *m, lc_lora_config *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "layers_to_transform");
    if (!v || cJSON_IsNull(v)) return LC_STATUS_OK;
    int n = m->cfg.n_layers;
    const cJSON *one = cJSON_IsNumber(v) ? v : NULL;
    if (!one && !cJSON_IsArray(v))
        return lc_error(LC_STATUS_INPUT, "%s: layers_to_transform must be a layer index or a list of them", path);
    if (!one && !v->child) return LC_STATUS_OK; // [] is falsy to PEFT: every layer
    for (const cJSON *e = one ? one : v->child; e; e = one ? NULL : e->next) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(d == floor(d)))
            return lc_error(LC_STATUS_INPUT, "%s: layers_to_transform must be a layer index or a list of them", path);
        if (d < 0 || d >= n)
            return lc_error(LC_STATUS_INPUT, "%s: layers_to_transform: layer %.0f is out of range: the model has %d "
                            "layers (0..%d)", path, d, n, n - 1);
        int l = (int)d;
        cfg->layers[l / 64] |= 1ull << (l % 64); // listed twice is still the layer, as PEFT tests membership
    }
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "layers_pattern");
    // Empty ("" or []) is falsy to PEFT, which then matches any container.
    if (!pat || cJSON_IsNull(pat) || (cJSON_IsString(pat) && !pat->valuestring[0]) ||
        (cJSON_IsArray(pat) && !pat->child))
        return LC_STATUS_OK;
    lc_arch_names names;
    lc_arch_names_get(&names, &m->cfg);
    // "model.layers.%d" -> "layers": the path component before the index.
    const char *d = strstr(names.layer, ".%d");
    const char *start = d ? d : names.layer;
    while (start > names.layer && start[-1] != '.') start--;
    int len = d ? (int)(d - start) : 0;
    const cJSON *one_pat = cJSON_IsString(pat) ? pat : NULL;
    for (const cJSON *e = one_pat ? one_pat : (cJSON_IsArray(pat) ? pat->child : NULL); e;
         e = one_pat ? NULL : e->next)
        if (cJSON_IsString(e) && (int)strlen(e->valuestring) == len && strncmp(e->valuestring, start, (size_t)len) == 0)
            return LC_STATUS_OK;
    return lc_error(LC_STATUS_INPUT, "%s: layers_pattern does not name \"%.*s\", the layers of %s models", path, len,
                    start, lc_arch_name(m->cfg.arch));
}

static lc_status read_config(const char *path, const lc_model *m, lc_lora_config *cfg) {
    cJSON *root;
    lc_status st = lc_json_load_file(path, PEFT_CONFIG_MAX, &root);
    if (st) return st;
    memset(cfg, 0, sizeof *cfg);
    const char *s;
    int64_t r;
    double alpha, dropout;
    bool b;
    char list[PEFT_LIST_MAX];
    lc_arch_target_list(&m->cfg, list, sizeof list);
    const char *family = lc_arch_name(m->cfg.arch);
    if (!cJSON_IsObject(root)) {
        st = lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);
        goto done;
    }
    if ((st = lc_json_get_string(root, "peft_type", path, NULL, &s))) goto done;
    if (!s || strcmp(s, "LORA") != 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: peft_type is %s%s%s; only LORA adapters can be loaded", path,
                      s ? "\"" : "", s ? s : "missing", s ? "\"" : "");
        goto done;
    }
    if ((st = lc_json_get_int(root, "r", path, 8, &r))) goto done;
    if (r <= 0 || r > 4096) {
        st = lc_error(LC_STATUS_INPUT, "%s: r must be in 1..4096, got %lld", path, (long long)r);
        goto done;
    }
    if ((st = lc_json_get_double(root, "lora_alpha", path, 8.0, &alpha))) goto done;
    if (fabs(alpha) > FLT_MAX) { // would become an infinite scale as a float
        st = lc_error(LC_STATUS_INPUT, "%s: lora_alpha %g is out of range", path, alpha);
        goto done;
    }
    if ((st = lc_json_get_double(root, "lora_dropout", path, 0.0, &dropout))) goto done;
    if (!(dropout >= 0.0 && dropout < 1.0)) {
        st = lc_error(LC_STATUS_INPUT, "%s: lora_dropout must be in [0, 1), got %g", path, dropout);
        goto done;
    }
    if ((st = lc_json_get_bool(root, "use_rslora", path, false, &cfg->rslora))) goto done;
    if ((st = lc_json_get_string(root, "bias", path, "none", &s))) goto done;
    if (strcmp(s, "none") != 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: bias is \"%s\"; only \"none\" is supported (no trained biases)", path, s);
        goto done;
    }
    if ((st = lc_json_get_bool(root, "use_dora", path, false, &b))) goto done;
    if (b) {
        st = lc_error(LC_STATUS_INPUT, "%s: use_dora is true; DoRA adapters are not supported", path);
        goto done;
    }
    // The LoRA tensors are [r, in] and [out, r] either way; the flag says the
    // base weights are Conv1D ([in, out]), which PEFT sets itself for them.
    if ((st = lc_json_get_bool(root, "fan_in_fan_out", path, false, &b))) goto done;
    if (b && m->cfg.arch != LC_ARCH_GPT2) {
        st = lc_error(LC_STATUS_INPUT,
                      "%s: fan_in_fan_out is true (Conv1D weights stored [in, out], as in GPT-2); the linears of %s "
                      "models are not Conv1D",
                      path, family);
        goto done;
    }
    static const struct {
        const char *key, *why;
    } unsupported[] = {
        {"rank_pattern", "per-module ranks are not supported"},
        {"alpha_pattern", "per-module alphas are not supported"},
        {"modules_to_save", "fully trained extra modules are not supported"},
        {"layer_replication", "layer replication is not supported"},
        {"exclude_modules", "excluded modules are not supported"},
        {"target_parameters", "adapters on parameters are not supported"},
        {"trainable_token_indices", "trainable tokens are not supported"},
        {"lora_bias", "LoRA biases are not supported"},
    };
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if ((st = refuse_if_set(root, unsupported[i].key, path, unsupported[i].why))) goto done;

    if ((st = read_layers(root, path, m, cfg))) goto done;

    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(t)) {
        if (strcmp(t->valuestring, "all-linear") == 0) {
            cfg->targets = LC_LINEAR_KIND_ALL; // every linear the model has but the output layer
        } else {
            st = lc_error(LC_STATUS_INPUT,
                          "%s: target_modules is the regular expression \"%.64s\"; only a list of module names (%s "
                          "for %s models) or \"all-linear\" is supported",
                          path, t->valuestring, list, family);
            goto done;
        }
    } else if (cJSON_IsArray(t)) {
        for (const cJSON *e = t->child; e; e = e->next) {
            unsigned bits = cJSON_IsString(e) ? target_bits(&m->cfg, e->valuestring) : 0;
            if (!bits) {
                st = lc_error(LC_STATUS_INPUT,
                              "%s: target_modules names %s%.64s%s, which is not supported (supported: %s, the "
                              "modules of %s models)",
                              path, cJSON_IsString(e) ? "\"" : "", cJSON_IsString(e) ? e->valuestring : "a non-string",
                              cJSON_IsString(e) ? "\"" : "", list, family);
                goto done;
            }
            cfg->targets |= bits;
        }
    }
    if (!cfg->targets) {
        st = lc_error(LC_STATUS_INPUT, "%s: target_modules is missing or empty (a list of: %s)", path, list);
        goto done;
    }
    cfg->r = (int)r;
    cfg->alpha = (float)alpha;
    cfg->dropout = (float)dropout;
done:
    cJSON_Delete(root);
    return st;
}

// Splits a key into (layer, kind, A or B). 0 if it is not a LoRA weight of a
// decoder linear of the model's family. Accepts "...lora_A.weight" (PEFT) and
// "...lora_A.default.weight" (the in-memory name with the adapter name, which
// some tools save).
// What follows a module path in a LoRA key: ".lora_A.weight" (PEFT) or
// ".lora_A.default.weight" (the in-memory name with the adapter name, which
// some tools save); *is_b for B. 0 if rest is not that.
static int lora_suffix(const char *rest, int *is_b) {
    if (!rest || *rest != '.') return 0;
    rest++;
    if (strncmp(rest, "lora_", 5) != 0 || (rest[5] != 'A' && rest[5] != 'B')) return 0;
    if (strcmp(rest + 6, ".weight") != 0 && strcmp(rest + 6, ".default.weight") != 0) return 0;
    *is_b = rest[5] == 'B';
    return 1;
}

static int parse_key(const lc_model_config *cfg, const char *name, int *layer, int *kind, int *is_b) {
    size_t pl = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, pl) != 0) return 0;
    lc_linear_kind k;
    if (!lora_suffix(lc_export_match_module(cfg, name + pl, false, layer, &k), is_b)) return 0;
    *kind = (int)k;
    return 1;
}

// The same for a LoRA weight of an expert projection: (layer, expert, proj, A or B).
static int parse_expert_key(const lc_model_config *cfg, const char *name, int *layer, int *e, lc_expert_proj *proj,
                            int *is_b) {
    size_t pl = strlen(PEFT_PREFIX);
    return strncmp(name, PEFT_PREFIX, pl) == 0 && lora_suffix(lc_arch_match_expert(cfg, name + pl, layer, e, proj), is_b);
}

static void shape_str(char *out, size_t cap, const lc_st_tensor *t) {
    size_t len = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < t->n_dims && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

// One LoRA matrix of an expert projection, checked against the config and
// the model and read into the adapter; found_x marks it.
static lc_status read_expert_tensor(const char *path, const char *cfg_path, const lc_model *m, lc_lora *lora,
                                    const lc_st_tensor *t, int layer, int e, lc_expert_proj proj, int is_b,
                                    const lc_st_tensor **found_x) {
    lc_linear_kind kind = lc_expert_proj_kind(proj);
    if (!(lora->cfg.targets & (1u << kind)))
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s is for %s, which %s does not list in target_modules", path,
                        t->name, kind_label(&m->cfg, kind), cfg_path);
    if (!lc_lora_layer_selected(&lora->cfg, lora->n_layers, layer))
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s is for layer %d, which %s does not list in layers_to_transform",
                        path, t->name, layer, cfg_path);
    const lc_lora_ref *ref = lc_lora_get_expert(lora, layer, e, proj);
    const lc_linear *lin = lc_model_expert_linear(m, layer, e, proj);
    if (!ref || !lin)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s is for an expert, but layer %d of the model has %s", path,
                        t->name, layer, m->layers[layer].moe ? "no shared expert" : "a dense MLP, no experts");
    int slot = (layer * lora->expert_slots + e * LC_EXPERT_PROJ_COUNT + (int)proj) * 2 + is_b;
    if (found_x[slot])
        return lc_error(LC_STATUS_INPUT, "%s: tensors %s and %s hold the same weight", path, found_x[slot]->name,
                        t->name);
    found_x[slot] = t;
    int r = lora->cfg.r;
    int64_t want0 = is_b ? lin->out : r, want1 = is_b ? r : lin->in;
    char got[96];
    shape_str(got, sizeof got, t);
    if (t->n_dims != 2 || t->shape[0] != want0 || t->shape[1] != want1)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has shape %s, expected [%lld, %lld] (r=%d from %s; the "
                        "expert's projection is %d -> %d)", path, t->name, got, (long long)want0, (long long)want1,
                        r, cfg_path, lin->in, lin->out);
    if (t->dtype == LC_DTYPE_OTHER)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", path, t->name,
                        t->dtype_name);
    lc_st_tensor_to_f32(t, is_b ? ref->B : ref->A);
    return LC_STATUS_OK;
}

static lc_status load_tensors(const char *path, const char *cfg_path, const lc_model *m, lc_lora *lora) {
    lc_st_set set;
    memset(&set, 0, sizeof set);
    lc_status st = lc_st_set_add_file(&set, path);
    int n_slots = lora->n_layers * LC_LINEAR_KIND_COUNT * 2;
    const lc_st_tensor **found = calloc((size_t)n_slots + 1, sizeof *found);
    if (!st && !found) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    int r = lora->cfg.r;
    lc_arch_names names;
    lc_arch_names_get(&names, &m->cfg);
    const lc_st_tensor **found_x = calloc((size_t)lora->n_layers * lora->expert_slots * 2 + 1, sizeof *found_x);
    if (!st && !found_x) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (int i = 0; !st && i < set.n_tensors; i++) {
        const lc_st_tensor *t = &set.tensors[i];
        int layer, kind, is_b, ex;
        lc_expert_proj proj;
        if (lora->expert_slots && parse_expert_key(&m->cfg, t->name, &layer, &ex, &proj, &is_b)) {
            st = read_expert_tensor(path, cfg_path, m, lora, t, layer, ex, proj, is_b, found_x);
            continue;
        }
        if (!parse_key(&m->cfg, t->name, &layer, &kind, &is_b)) {
            char list[PEFT_LIST_MAX * 2], layer_path[96];
            size_t len = 0;
            list[0] = '\0';
            for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
                if (!names.lin[k] || !(lc_model_linear_kinds(&m->cfg) >> k & 1) || len >= sizeof list) continue;
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", names.lin[k]);
            }
            const char *d = strstr(names.layer, "%d");
            snprintf(layer_path, sizeof layer_path, "%.*s<layer>%s", d ? (int)(d - names.layer) : 0, names.layer,
                     d ? d + 2 : "");
            char experts[240] = "";
            const char *pd = names.expert ? strstr(names.expert, "%d") : NULL;
            if (pd) // where the experts are, and that routers take none
                snprintf(experts, sizeof experts, "; in a sparse layer %.*s<E>%s.<projection> for experts 0..%d%s%s, "
                         "never the router", (int)(pd - names.expert), names.expert, pd + 2, m->cfg.n_experts - 1,
                         names.shared_expert ? " and " : "", names.shared_expert ? names.shared_expert : "");
            st = lc_error(LC_STATUS_INPUT,
                          "%s: unexpected tensor %s (expected only " PEFT_PREFIX
                          "%s.<module>.lora_A/lora_B.weight, <module> one of %s%s)",
                          path, t->name, layer_path, list, experts);
            break;
        }
        if (layer >= lora->n_layers) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is for layer %d but the model has %d layers", path, t->name,
                          layer, lora->n_layers);
            break;
        }
        if (!(lora->cfg.targets & (1u << kind))) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is for %s, which %s does not list in target_modules", path,
                          t->name, kind_label(&m->cfg, (lc_linear_kind)kind), cfg_path);
            break;
        }
        if (!lc_lora_layer_selected(&lora->cfg, lora->n_layers, layer)) {
            st = lc_error(LC_STATUS_INPUT,
                          "%s: tensor %s is for layer %d, which %s does not list in layers_to_transform", path,
                          t->name, layer, cfg_path);
            break;
        }
        if (!lc_lora_get(lora, layer, kind)) { // a sparse layer has no MLP of its own
            char ex[160];
            lc_arch_expert_path(&m->cfg, layer, 0, LC_EXPERT_PROJ_GATE, ex, sizeof ex);
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is for layer %d's %s, which that layer does not have%s%s%s",
                          path, t->name, layer, kind_label(&m->cfg, (lc_linear_kind)kind),
                          m->layers[layer].moe ? " (its MLP is a mixture of experts, adapted as " : "",
                          m->layers[layer].moe ? ex : "", m->layers[layer].moe ? ", ...)" : "");
            break;
        }
        int slot = (layer * LC_LINEAR_KIND_COUNT + kind) * 2 + is_b;
        if (found[slot]) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensors %s and %s hold the same weight", path, found[slot]->name,
                          t->name);
            break;
        }
        found[slot] = t;
        const lc_linear *lin = &m->layers[layer].lin[kind];
        // A is [r, in], B is [out, r]: one dimension is the rank, the other the model's.
        int64_t want0 = is_b ? lin->out : r, want1 = is_b ? r : lin->in;
        int rank_dim = is_b ? 1 : 0;
        char got[96];
        shape_str(got, sizeof got, t);
        if (t->n_dims == 2 && t->shape[1 - rank_dim] == (is_b ? want0 : want1) && t->shape[rank_dim] != r) {
            st = lc_error(LC_STATUS_INPUT, "%s says r=%d but %s (in %s) has shape %s", cfg_path, r, t->name, path,
                          got);
            break;
        }
        if (t->n_dims != 2 || t->shape[0] != want0 || t->shape[1] != want1) {
            st = lc_error(LC_STATUS_INPUT,
                          "%s: tensor %s has shape %s, expected [%lld, %lld] (r=%d from %s; the model's %s is %d -> %d)",
                          path, t->name, got, (long long)want0, (long long)want1, r, cfg_path,
                          kind_label(&m->cfg, (lc_linear_kind)kind), lin->in, lin->out);
            break;
        }
        if (t->dtype == LC_DTYPE_OTHER) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", path, t->name,
                          t->dtype_name);
            break;
        }
        const lc_lora_ref *ref = lc_lora_get(lora, layer, kind);
        lc_st_tensor_to_f32(t, is_b ? ref->B : ref->A);
    }
    // Every targeted module of every layer needs both matrices.
    for (int k = 0; !st && k < LC_LINEAR_KIND_COUNT; k++) {
        if (!(lora->cfg.targets & (1u << k))) continue;
        int any = 0;
        for (int l = 0; l < lora->n_layers && !any; l++)
            any = found[(l * LC_LINEAR_KIND_COUNT + k) * 2] || found[(l * LC_LINEAR_KIND_COUNT + k) * 2 + 1];
        for (int i = 0; i < lora->n_layers * lora->expert_slots * 2 && !any; i++)
            any = found_x[i] && lc_expert_proj_kind((lc_expert_proj)(i / 2 % LC_EXPERT_PROJ_COUNT)) == (lc_linear_kind)k;
        if (!any) {
            st = lc_error(LC_STATUS_INPUT, "%s lists %s in target_modules but %s has no tensors for it", cfg_path,
                          kind_label(&m->cfg, (lc_linear_kind)k), path);
            break;
        }
        for (int l = 0; l < lora->n_layers && !st; l++) {
            if (!lc_lora_layer_selected(&lora->cfg, lora->n_layers, l) || !lc_lora_get(lora, l, (lc_linear_kind)k))
                continue;
            for (int ab = 0; ab < 2; ab++) {
                if (found[(l * LC_LINEAR_KIND_COUNT + k) * 2 + ab]) continue;
                char key[PEFT_NAME_MAX];
                peft_key(key, sizeof key, &m->cfg, l, (lc_linear_kind)k, ab ? 'B' : 'A');
                st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is missing", path, key);
                break;
            }
        }
    }
    // Every adapted expert projection needs both matrices too.
    lc_lora_expert x;
    for (int i = 0; !st && lc_lora_expert_next(lora, m, &i, &x);)
        for (int ab = 0; ab < 2 && !st; ab++) {
            if (found_x[(i - 1) * 2 + ab]) continue;
            char key[PEFT_NAME_MAX];
            peft_expert_key(key, sizeof key, &m->cfg, x.layer, x.expert, x.proj, ab ? 'B' : 'A');
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is missing", path, key);
        }
    free(found);
    free(found_x);
    lc_st_set_free(&set);
    return st;
}

lc_status lc_peft_load(const char *dir, const lc_model *m, lc_lora *lora) {
    char cfg_path[4096], st_path[4096];
    lc_status st;
    memset(lora, 0, sizeof *lora);
    if (!lc_dir_exists(dir)) return lc_error(LC_STATUS_INPUT, "%s: not a PEFT adapter folder", dir);
    if ((st = lc_path_join(cfg_path, sizeof cfg_path, dir, "adapter_config.json"))) return st;
    if ((st = lc_path_join(st_path, sizeof st_path, dir, "adapter_model.safetensors"))) return st;
    if (!lc_file_exists(cfg_path)) return lc_error(LC_STATUS_INPUT, "%s: missing (not a PEFT adapter folder)", cfg_path);
    if (!lc_file_exists(st_path)) {
        char bin[4096];
        if (!lc_path_join(bin, sizeof bin, dir, "adapter_model.bin") && lc_file_exists(bin))
            return lc_error(LC_STATUS_INPUT,
                            "%s: only adapter_model.bin (a pickle) is present; save the adapter with "
                            "safe_serialization=True to get adapter_model.safetensors",
                            dir);
        return lc_error(LC_STATUS_INPUT, "%s: missing", st_path);
    }
    lc_lora_config cfg;
    if ((st = read_config(cfg_path, m, &cfg))) return st;
    // A PEFT adapter's fused query/key/value rows follow Hugging Face's
    // layout, which llama.cpp's converter changed in these GGUF bases.
    if ((cfg.targets >> LC_LINEAR_KIND_QKV & 1) && lc_gguf_fused_rows_reordered(m))
        return lc_error(LC_STATUS_INPUT, "%s: a PEFT adapter on a GGUF %s base is not supported (llama.cpp's converter "
                        "reordered its fused query/key/value rows)", dir, lc_arch_name(m->cfg.arch));
    if ((st = lc_lora_init(lora, m, &cfg, 0, false))) {
        lc_error_prefix("%s", cfg_path);
        return st;
    }
    if ((st = load_tensors(st_path, cfg_path, m, lora))) lc_lora_free(lora);
    return st;
}
