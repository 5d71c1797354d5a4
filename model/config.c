#include "model/config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

static const char *const lc_arch_names[LC_ARCH_COUNT] = {
    "llama", "mistral", "qwen2", "gemma", "gemma2", "phi3", "gpt2", "falcon", "olmo", "bloom",
    "mixtral", "olmoe", "qwen2_moe",
};

const char *lc_arch_name(lc_arch arch) { return (unsigned)arch < LC_ARCH_COUNT ? lc_arch_names[arch] : "?"; }

const char *lc_arch_supported_list(void) {
    return "llama, mistral, qwen2, gemma, gemma2, phi3, gpt2, falcon, olmo, bloom, mixtral, olmoe, qwen2_moe";
}

// The first of `keys` present in root (families spell the same field
// differently: n_embd, hidden_size, ...), or keys[0].
static const char *pick_key(const cJSON *root, const char *const *keys) {
    for (int i = 0; keys[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(root, keys[i])) return keys[i];
    return keys[0];
}

// Reads an integer key (or the first present alias) into *out, requiring lo <= value <= hi.
static lc_status get_int_in(const cJSON *root, const char *const *keys, const char *path, int64_t def, int64_t lo,
                            int64_t hi, int *out) {
    const char *key = pick_key(root, keys);
    int64_t v;
    lc_status st = lc_json_get_int(root, key, path, def, &v);
    if (st) return st;
    if (v < lo || v > hi)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is %lld, outside %lld..%lld", path, key, (long long)v,
                        (long long)lo, (long long)hi);
    *out = (int)v;
    return LC_STATUS_OK;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

// A non-negative float where JSON null means 0 ("none") and absence `def`.
static lc_status get_cap(const cJSON *root, const char *key, const char *path, double def, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    double d = def;
    if (v && cJSON_IsNull(v)) d = 0.0;
    else if (v) {
        lc_status st = lc_json_get_double(root, key, path, def, &d);
        if (st) return st;
    }
    if (!(d >= 0.0) || !isfinite((float)d))
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be a non-negative number", path, key);
    *out = (float)d;
    return LC_STATUS_OK;
}

static lc_status parse_rope_scaling(lc_model_config *cfg, const cJSON *root, const char *path) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    cfg->rope_scaling = LC_ROPE_SCALING_NONE;
    if (!rs || cJSON_IsNull(rs)) return LC_STATUS_OK;
    if (!cJSON_IsObject(rs)) return lc_error(LC_STATUS_INPUT, "%s: \"rope_scaling\" must be an object", path);
    const char *type;
    lc_status st = lc_json_get_string(rs, "rope_type", path, NULL, &type);
    if (!st && !type) st = lc_json_get_string(rs, "type", path, "default", &type);
    if (st) return st;
    double factor, lo, hi;
    int64_t orig;
    if ((st = lc_json_get_double(rs, "factor", path, 1.0, &factor))) return st;
    // Checked as floats too: 1e-300 or 1e300 would become 0 or inf and the rotary table NaN.
    if (factor <= 0.0 || !((float)factor > 0.0f) || !isfinite((float)factor))
        return lc_error(LC_STATUS_INPUT, "%s: rope_scaling \"factor\" must be a positive float", path);
    cfg->rope_factor = (float)factor;
    if (strcmp(type, "default") == 0) return LC_STATUS_OK;
    if (strcmp(type, "linear") == 0) {
        cfg->rope_scaling = LC_ROPE_SCALING_LINEAR;
        return LC_STATUS_OK;
    }
    if (strcmp(type, "llama3") != 0)
        return lc_error(LC_STATUS_INPUT, "%s: rope_scaling type \"%s\" is not supported (llama3, linear)", path, type);
    if ((st = lc_json_get_double(rs, "low_freq_factor", path, 1.0, &lo))) return st;
    if ((st = lc_json_get_double(rs, "high_freq_factor", path, 4.0, &hi))) return st;
    if ((st = lc_json_get_int(rs, "original_max_position_embeddings", path, 8192, &orig))) return st;
    if (lo <= 0.0 || hi <= lo || orig <= 0 || orig > (1 << 24))
        return lc_error(LC_STATUS_INPUT, "%s: rope_scaling llama3 factors are inconsistent", path);
    cfg->rope_scaling = LC_ROPE_SCALING_LLAMA3;
    cfg->rope_low_freq_factor = (float)lo;
    cfg->rope_high_freq_factor = (float)hi;
    cfg->rope_original_max_pos = (int)orig;
    return LC_STATUS_OK;
}

// A token id key: an integer or a list of them (Llama 3 lists several EOS
// ids), at most `cap` ids into ids[0..*n). Absent or null: none.
static lc_status get_token_ids(const cJSON *root, const char *key, const char *path, int *ids, int cap, int *n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *n = 0;
    if (!v || cJSON_IsNull(v)) return LC_STATUS_OK;
    bool list = cJSON_IsArray(v);
    if (list && cJSON_GetArraySize(v) > cap)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" lists %d ids (at most %d)", path, key, cJSON_GetArraySize(v), cap);
    for (const cJSON *e = list ? v->child : v; e; e = list ? e->next : NULL) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e8 || e->valuedouble != floor(e->valuedouble))
            return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be a token id or a list of them", path, key);
        ids[(*n)++] = (int)e->valuedouble;
    }
    return LC_STATUS_OK;
}

// The first id of a token id key, or -1.
static lc_status get_token_id(const cJSON *root, const char *key, const char *path, int *out) {
    int ids[LC_MAX_EOS_IDS], n;
    lc_status st = get_token_ids(root, key, path, ids, LC_MAX_EOS_IDS, &n);
    *out = n ? ids[0] : -1;
    return st;
}

// eos_token_id: every id is a stop for generation; the first is the one EOS
// (eos_token_id) that exports and fallbacks use.
static lc_status get_eos_ids(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st = get_token_ids(root, "eos_token_id", path, cfg->eos_ids, LC_MAX_EOS_IDS, &cfg->n_eos_ids);
    cfg->eos_token_id = cfg->n_eos_ids ? cfg->eos_ids[0] : -1;
    return st;
}

static lc_status get_act(const cJSON *root, const char *key, const char *path, const char *def, lc_act_kind *out) {
    const char *name;
    lc_status st = lc_json_get_string(root, key, path, def, &name);
    if (st) return st;
    static const struct {
        const char *name;
        lc_act_kind act;
    } acts[] = {
        {"silu", LC_ACT_KIND_SILU},
        {"swish", LC_ACT_KIND_SILU},
        {"gelu_new", LC_ACT_KIND_GELU_TANH},
        {"gelu_pytorch_tanh", LC_ACT_KIND_GELU_TANH},
        {"gelu_fast", LC_ACT_KIND_GELU_TANH},
        {"gelu_tanh", LC_ACT_KIND_GELU_TANH},
        {"gelu", LC_ACT_KIND_GELU},
        {"relu", LC_ACT_KIND_RELU},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(acts[i].name, name) == 0) {
            *out = acts[i].act;
            return LC_STATUS_OK;
        }
    return lc_error(LC_STATUS_INPUT, "%s: \"%s\" \"%s\" is not supported (silu, gelu, gelu_new, gelu_pytorch_tanh, relu)",
                    path, key, name);
}

static void set_defaults(lc_model_config *cfg) {
    cfg->norm = LC_NORM_KIND_RMS;
    cfg->norm_affine = true;
    cfg->embed_scale = 1.0f;
    cfg->pos = LC_POS_KIND_ROPE;
    cfg->rope_theta = 10000.0f;
    cfg->rope_factor = 1.0f;
    cfg->block = LC_BLOCK_KIND_SEQUENTIAL;
    cfg->qkv = LC_QKV_LAYOUT_SEPARATE;
    cfg->mlp_gated = true;
    cfg->act = LC_ACT_KIND_SILU;
}

// The mixture-of-experts keys of mixtral, olmoe and qwen2_moe, with
// transformers' defaults.
static lc_status parse_moe(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    lc_arch a = cfg->arch;
    bool mixtral = a == LC_ARCH_MIXTRAL, qwen = a == LC_ARCH_QWEN2_MOE;
    int experts_default = mixtral ? 8 : qwen ? 60 : 64, k_default = mixtral ? 2 : qwen ? 4 : 8;
    if ((st = get_int_in(root, mixtral ? KEYS("num_local_experts") : KEYS("num_experts"), path, experts_default, 1,
                         1024, &cfg->n_experts)))
        return st;
    if ((st = get_int_in(root, KEYS("num_experts_per_tok"), path, k_default, 1, cfg->n_experts,
                         &cfg->experts_per_tok)))
        return st;
    cfg->norm_topk_prob = true; // Mixtral always renormalizes
    if (!mixtral && (st = lc_json_get_bool(root, "norm_topk_prob", path, false, &cfg->norm_topk_prob))) return st;
    cfg->moe_ff = cfg->intermediate_size;
    cfg->moe_step = 1;
    if (qwen) {
        if ((st = get_int_in(root, KEYS("moe_intermediate_size"), path, 1408, 1, 1 << 20, &cfg->moe_ff))) return st;
        if ((st = get_int_in(root, KEYS("shared_expert_intermediate_size"), path, 5632, 1, 1 << 20, &cfg->shared_ff)))
            return st;
        if ((st = get_int_in(root, KEYS("decoder_sparse_step"), path, 1, 1, 1024, &cfg->moe_step))) return st;
        const cJSON *only = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
        if (only && !cJSON_IsNull(only) && !cJSON_IsArray(only))
            return lc_error(LC_STATUS_INPUT, "%s: \"mlp_only_layers\" must be a list of layer indices", path);
        for (const cJSON *e = only && cJSON_IsArray(only) ? only->child : NULL; e; e = e->next) {
            double v = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
            if (v < 0 || v >= cfg->n_layers || v != floor(v))
                return lc_error(LC_STATUS_INPUT, "%s: \"mlp_only_layers\" must list layers of 0..%d", path,
                                cfg->n_layers - 1);
            cfg->moe_dense[(int)v / 64] |= 1ull << ((int)v % 64);
        }
    }
    cfg->qk_norm = a == LC_ARCH_OLMOE;
    return LC_STATUS_OK;
}

// Llama and the families that keep its names and sizes keys: mistral, qwen2,
// gemma, gemma2, phi3, olmo.
static lc_status parse_llama_like(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    lc_arch a = cfg->arch;
    if ((st = get_int_in(root, KEYS("hidden_size"), path, 0, 1, 65536, &cfg->hidden_size))) return st;
    if ((st = get_int_in(root, KEYS("intermediate_size"), path, 0, 1, 1 << 20, &cfg->intermediate_size))) return st;
    if ((st = get_int_in(root, KEYS("num_hidden_layers"), path, 0, 1, 1024, &cfg->n_layers))) return st;
    if ((st = get_int_in(root, KEYS("num_attention_heads"), path, 0, 1, 1024, &cfg->n_heads))) return st;
    if ((st = get_int_in(root, KEYS("num_key_value_heads"), path, cfg->n_heads, 1, 1024, &cfg->n_kv_heads))) return st;
    if ((st = get_int_in(root, KEYS("max_position_embeddings"), path, 2048, 1, 1 << 24, &cfg->max_position_embeddings)))
        return st;
    int default_head_dim = a == LC_ARCH_GEMMA || a == LC_ARCH_GEMMA2 ? 256 : cfg->hidden_size / cfg->n_heads;
    if ((st = get_int_in(root, KEYS("head_dim"), path, default_head_dim, 1, 4096, &cfg->head_dim))) return st;

    double eps = 1e-5, theta;
    // transformers' defaults: 1e-6, but 1e-5 for Mixtral and OLMoE.
    double eps_default = a == LC_ARCH_MIXTRAL || a == LC_ARCH_OLMOE ? 1e-5 : 1e-6;
    if (a != LC_ARCH_OLMO && (st = lc_json_get_double(root, "rms_norm_eps", path, eps_default, &eps))) return st;
    if ((st = lc_json_get_double(root, "rope_theta", path, 10000.0, &theta))) return st;
    if (eps <= 0.0 || eps > 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"rms_norm_eps\" must be in (0, 1]", path);
    if (theta <= 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"rope_theta\" must be above 1", path);
    cfg->norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    if ((st = parse_rope_scaling(cfg, root, path))) return st;

    bool gemma = a == LC_ARCH_GEMMA || a == LC_ARCH_GEMMA2;
    bool tie, attn_bias, mlp_bias, use_sw;
    // transformers' defaults: LlamaConfig and the others untied, Gemma's tied.
    if ((st = lc_json_get_bool(root, "tie_word_embeddings", path, gemma, &tie))) return st;
    if ((st = lc_json_get_bool(root, "attention_bias", path, false, &attn_bias))) return st;
    if ((st = lc_json_get_bool(root, "mlp_bias", path, false, &mlp_bias))) return st;
    // Qwen2 carries sliding_window but only applies it with use_sliding_window.
    bool qwen = a == LC_ARCH_QWEN2 || a == LC_ARCH_QWEN2_MOE;
    if ((st = lc_json_get_bool(root, "use_sliding_window", path, !qwen, &use_sw))) return st;
    cfg->tie_word_embeddings = tie;
    cfg->qkv_bias = attn_bias || qwen;
    cfg->o_bias = attn_bias && !qwen;
    cfg->mlp_bias = mlp_bias;
    int window = 0;
    if (a == LC_ARCH_MISTRAL || qwen || a == LC_ARCH_PHI3 || a == LC_ARCH_GEMMA2 || a == LC_ARCH_MIXTRAL) {
        if ((st = get_int_in(root, KEYS("sliding_window"), path, a == LC_ARCH_GEMMA2 ? 4096 : 0, 0, 1 << 24, &window)))
            return st;
    }
    cfg->sliding_window = use_sw ? window : 0;

    if (gemma) {
        // Gemma's RMSNorm scales by (1 + w), and its embeddings by √C rounded to
        // the activation dtype (float here).
        cfg->norm_plus_one = true;
        cfg->embed_scale = (float)sqrt((double)cfg->hidden_size);
        const char *key = cJSON_GetObjectItemCaseSensitive(root, "hidden_activation") &&
                                  !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "hidden_activation"))
                              ? "hidden_activation"
                              : "gelu_pytorch_tanh"; // HF's choice when hidden_activation is unset
        if (strcmp(key, "hidden_activation") == 0) {
            if ((st = get_act(root, key, path, "gelu_pytorch_tanh", &cfg->act))) return st;
        } else {
            cfg->act = LC_ACT_KIND_GELU_TANH;
        }
    } else if ((st = get_act(root, "hidden_act", path, "silu", &cfg->act))) {
        return st;
    }
    if (a == LC_ARCH_GEMMA2) {
        double scalar;
        cfg->block = LC_BLOCK_KIND_SANDWICH;
        cfg->sliding_alternate = true;
        if ((st = lc_json_get_double(root, "query_pre_attn_scalar", path, 224.0, &scalar))) return st;
        if (!(scalar > 0.0) || !isfinite((float)scalar))
            return lc_error(LC_STATUS_INPUT, "%s: \"query_pre_attn_scalar\" must be positive", path);
        cfg->attn_scale = (float)(1.0 / sqrt(scalar));
        if ((st = get_cap(root, "attn_logit_softcapping", path, 50.0, &cfg->attn_softcap))) return st;
        if ((st = get_cap(root, "final_logit_softcapping", path, 30.0, &cfg->final_softcap))) return st;
    }
    if (a == LC_ARCH_PHI3) {
        cfg->qkv = LC_QKV_LAYOUT_CONCAT;
        cfg->gate_up_fused = true;
        double prf;
        if ((st = lc_json_get_double(root, "partial_rotary_factor", path, 1.0, &prf))) return st;
        if (!(prf > 0.0 && prf <= 1.0))
            return lc_error(LC_STATUS_INPUT, "%s: \"partial_rotary_factor\" must be in (0, 1]", path);
        cfg->rope_dim = (int)(cfg->head_dim * prf);
    }
    if (a == LC_ARCH_OLMO) {
        cfg->norm = LC_NORM_KIND_LAYER;
        cfg->norm_affine = false;
    }
    if ((a == LC_ARCH_OLMO || a == LC_ARCH_OLMOE) && (st = get_cap(root, "clip_qkv", path, 0.0, &cfg->clip_qkv)))
        return st;
    if (a == LC_ARCH_MIXTRAL || a == LC_ARCH_OLMOE || a == LC_ARCH_QWEN2_MOE) return parse_moe(cfg, root, path);
    return LC_STATUS_OK;
}

static lc_status parse_gpt2(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    if ((st = get_int_in(root, KEYS("n_embd", "hidden_size"), path, 0, 1, 65536, &cfg->hidden_size))) return st;
    if ((st = get_int_in(root, KEYS("n_layer", "num_hidden_layers"), path, 0, 1, 1024, &cfg->n_layers))) return st;
    if ((st = get_int_in(root, KEYS("n_head", "num_attention_heads"), path, 0, 1, 1024, &cfg->n_heads))) return st;
    if ((st = get_int_in(root, KEYS("n_positions", "max_position_embeddings"), path, 1024, 1, 1 << 24,
                         &cfg->max_position_embeddings)))
        return st;
    // n_inner null (the usual value) means 4·C; lc_json_get_int treats null as absent.
    if ((st = get_int_in(root, KEYS("n_inner"), path, 4 * (int64_t)cfg->hidden_size, 1, 1 << 20,
                         &cfg->intermediate_size)))
        return st;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->norm = LC_NORM_KIND_LAYER;
    cfg->pos = LC_POS_KIND_LEARNED;
    cfg->qkv = LC_QKV_LAYOUT_CONCAT;
    cfg->mlp_gated = false;
    cfg->weights_transposed = true;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true;
    double eps;
    bool scaled, by_layer;
    // transformers' default (PretrainedConfig): tied unless the file says otherwise.
    if ((st = lc_json_get_bool(root, "tie_word_embeddings", path, true, &cfg->tie_word_embeddings))) return st;
    if ((st = lc_json_get_double(root, "layer_norm_epsilon", path, 1e-5, &eps))) return st;
    if (eps <= 0.0 || eps > 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"layer_norm_epsilon\" must be in (0, 1]", path);
    cfg->norm_eps = (float)eps;
    if ((st = get_act(root, "activation_function", path, "gelu_new", &cfg->act))) return st;
    if ((st = lc_json_get_bool(root, "scale_attn_weights", path, true, &scaled))) return st;
    if ((st = lc_json_get_bool(root, "scale_attn_by_inverse_layer_idx", path, false, &by_layer))) return st;
    if (!scaled) cfg->attn_scale = 1.0f;
    cfg->attn_scale_by_layer = by_layer;
    return LC_STATUS_OK;
}

static lc_status parse_falcon(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    if ((st = get_int_in(root, KEYS("hidden_size", "n_embed"), path, 0, 1, 65536, &cfg->hidden_size))) return st;
    if ((st = get_int_in(root, KEYS("num_hidden_layers", "n_layer"), path, 0, 1, 1024, &cfg->n_layers))) return st;
    if ((st = get_int_in(root, KEYS("num_attention_heads", "n_head"), path, 0, 1, 1024, &cfg->n_heads))) return st;
    if ((st = get_int_in(root, KEYS("max_position_embeddings"), path, 2048, 1, 1 << 24, &cfg->max_position_embeddings)))
        return st;
    if ((st = get_int_in(root, KEYS("ffn_hidden_size"), path, 4 * (int64_t)cfg->hidden_size, 1, 1 << 20,
                         &cfg->intermediate_size)))
        return st;
    bool new_arch, multi_query, parallel, bias, alibi, tie;
    if ((st = lc_json_get_bool(root, "new_decoder_architecture", path, false, &new_arch))) return st;
    if ((st = lc_json_get_bool(root, "multi_query", path, true, &multi_query))) return st;
    if ((st = lc_json_get_bool(root, "parallel_attn", path, true, &parallel))) return st;
    if ((st = lc_json_get_bool(root, "bias", path, false, &bias))) return st;
    if ((st = lc_json_get_bool(root, "alibi", path, false, &alibi))) return st;
    if ((st = lc_json_get_bool(root, "tie_word_embeddings", path, true, &tie))) return st;
    if (alibi) return lc_error(LC_STATUS_INPUT, "%s: Falcon with \"alibi\": true is not supported (rotary only)", path);
    int n_ln = new_arch ? 2 : 1;
    if ((st = get_int_in(root, KEYS("num_ln_in_parallel_attn"), path, n_ln, 1, 2, &n_ln))) return st;
    if (new_arch) {
        if ((st = get_int_in(root, KEYS("num_kv_heads"), path, cfg->n_heads, 1, 1024, &cfg->n_kv_heads))) return st;
        cfg->qkv = LC_QKV_LAYOUT_GROUPED;
    } else if (multi_query) {
        cfg->n_kv_heads = 1;
        cfg->qkv = LC_QKV_LAYOUT_CONCAT;
    } else {
        cfg->n_kv_heads = cfg->n_heads;
        cfg->qkv = LC_QKV_LAYOUT_PER_HEAD;
    }
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->block = new_arch || parallel ? LC_BLOCK_KIND_PARALLEL : LC_BLOCK_KIND_SEQUENTIAL;
    cfg->parallel_two_norms = new_arch && n_ln == 2;
    cfg->norm = LC_NORM_KIND_LAYER;
    cfg->mlp_gated = false;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = bias;
    cfg->tie_word_embeddings = tie;
    double eps, theta;
    if ((st = lc_json_get_double(root, "layer_norm_epsilon", path, 1e-5, &eps))) return st;
    if ((st = lc_json_get_double(root, "rope_theta", path, 10000.0, &theta))) return st;
    if (eps <= 0.0 || eps > 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"layer_norm_epsilon\" must be in (0, 1]", path);
    if (theta <= 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"rope_theta\" must be above 1", path);
    cfg->norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    if ((st = get_act(root, "activation", path, "gelu", &cfg->act))) return st;
    return parse_rope_scaling(cfg, root, path);
}

static lc_status parse_bloom(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    if ((st = get_int_in(root, KEYS("hidden_size", "n_embed"), path, 0, 1, 65536, &cfg->hidden_size))) return st;
    if ((st = get_int_in(root, KEYS("n_layer", "num_hidden_layers"), path, 0, 1, 1024, &cfg->n_layers))) return st;
    if ((st = get_int_in(root, KEYS("n_head", "num_attention_heads"), path, 0, 1, 1024, &cfg->n_heads))) return st;
    // ALiBi has no table size: seq_length (the training length) is the default context.
    if ((st = get_int_in(root, KEYS("seq_length", "max_position_embeddings"), path, 2048, 1, 1 << 24,
                         &cfg->max_position_embeddings)))
        return st;
    cfg->intermediate_size = 4 * cfg->hidden_size;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->norm = LC_NORM_KIND_LAYER;
    cfg->embed_norm = true;
    cfg->pos = LC_POS_KIND_ALIBI;
    cfg->qkv = LC_QKV_LAYOUT_PER_HEAD;
    cfg->mlp_gated = false;
    cfg->act = LC_ACT_KIND_GELU_TANH;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true;
    double eps;
    bool post;
    // transformers' default (PretrainedConfig): tied unless the file says otherwise.
    if ((st = lc_json_get_bool(root, "tie_word_embeddings", path, true, &cfg->tie_word_embeddings))) return st;
    if ((st = lc_json_get_double(root, "layer_norm_epsilon", path, 1e-5, &eps))) return st;
    if (eps <= 0.0 || eps > 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"layer_norm_epsilon\" must be in (0, 1]", path);
    cfg->norm_eps = (float)eps;
    if ((st = lc_json_get_bool(root, "apply_residual_connection_post_layernorm", path, false, &post))) return st;
    cfg->residual_from_norm = post;
    return LC_STATUS_OK;
}

lc_status lc_config_parse_json(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    memset(cfg, 0, sizeof *cfg);
    set_defaults(cfg);
    if (!cJSON_IsObject(root)) return lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);

    const char *type;
    if ((st = lc_json_get_string(root, "model_type", path, NULL, &type))) return st;
    if (!type) return lc_error(LC_STATUS_INPUT, "%s: \"model_type\" is missing", path);
    int a = 0;
    while (a < LC_ARCH_COUNT && strcmp(lc_arch_names[a], type) != 0) a++;
    if (a == LC_ARCH_COUNT)
        return lc_error(LC_STATUS_INPUT, "%s: model_type \"%.40s\" is not supported (supported: %s)", path, type,
                        lc_arch_supported_list());
    cfg->arch = (lc_arch)a;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);

    switch (cfg->arch) {
    case LC_ARCH_GPT2: st = parse_gpt2(cfg, root, path); break;
    case LC_ARCH_FALCON: st = parse_falcon(cfg, root, path); break;
    case LC_ARCH_BLOOM: st = parse_bloom(cfg, root, path); break;
    default: st = parse_llama_like(cfg, root, path); break;
    }
    if (st) return st;
    if ((st = get_int_in(root, KEYS("vocab_size"), path, 0, 1, 1 << 22, &cfg->vocab_size))) return st;
    if ((st = get_token_id(root, "bos_token_id", path, &cfg->bos_token_id))) return st;
    if ((st = get_eos_ids(cfg, root, path))) return st;

    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return lc_error(LC_STATUS_INPUT, "%s: the %d attention heads are not a multiple of the %d key/value heads", path,
                        cfg->n_heads, cfg->n_kv_heads);
    bool derived_head_dim = cfg->arch == LC_ARCH_GPT2 || cfg->arch == LC_ARCH_FALCON || cfg->arch == LC_ARCH_BLOOM;
    if (cfg->head_dim < 1 || (derived_head_dim && cfg->hidden_size % cfg->n_heads != 0))
        return lc_error(LC_STATUS_INPUT, "%s: hidden size %d does not split into %d heads", path, cfg->hidden_size,
                        cfg->n_heads);
    if (cfg->rope_dim == 0) cfg->rope_dim = cfg->head_dim;
    if (cfg->pos == LC_POS_KIND_ROPE && (cfg->rope_dim % 2 != 0 || cfg->rope_dim < 2))
        return lc_error(LC_STATUS_INPUT, "%s: the rotary dimension %d must be even", path, cfg->rope_dim);
    if ((long long)cfg->n_heads * cfg->head_dim > 1 << 20)
        return lc_error(LC_STATUS_INPUT, "%s: attention heads x head_dim is too large", path);
    if (cfg->attn_scale == 0.0f) cfg->attn_scale = 1.0f / sqrtf((float)cfg->head_dim);
    return LC_STATUS_OK;
}

lc_status lc_config_load(lc_model_config *cfg, const char *path) {
    cJSON *root;
    lc_status st = lc_json_load_file(path, 1 << 20, &root);
    if (st) return st;
    st = lc_config_parse_json(cfg, root, path);
    cJSON_Delete(root);
    return st;
}

lc_status lc_config_load_generation(lc_model_config *cfg, const char *path) {
    cJSON *root;
    lc_status st = lc_json_load_file(path, 1 << 20, &root);
    if (st) return st;
    const cJSON *eos = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "eos_token_id") : NULL;
    if (!cJSON_IsObject(root)) st = lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);
    else if (eos && !cJSON_IsNull(eos)) st = get_eos_ids(cfg, root, path);
    cJSON_Delete(root);
    return st;
}

void lc_config_init_llama(lc_model_config *cfg, int C, int F, int n_layers, int H, int KVH, int D, int V) {
    memset(cfg, 0, sizeof *cfg);
    set_defaults(cfg);
    cfg->arch = LC_ARCH_LLAMA;
    snprintf(cfg->model_type, sizeof cfg->model_type, "llama");
    cfg->hidden_size = C;
    cfg->intermediate_size = F;
    cfg->n_layers = n_layers;
    cfg->n_heads = H;
    cfg->n_kv_heads = KVH;
    cfg->head_dim = D;
    cfg->rope_dim = D;
    cfg->vocab_size = V;
    cfg->max_position_embeddings = 2048;
    cfg->norm_eps = 1e-5f;
    cfg->attn_scale = 1.0f / sqrtf((float)D);
    cfg->bos_token_id = cfg->eos_token_id = -1;
}

void lc_config_rope_inv_freq(const lc_model_config *cfg, float *inv_freq) {
    int D = cfg->rope_dim;
    for (int i = 0; i < D / 2; i++) {
        // Computed as PyTorch does: base ** (2i / D) in fp32, then reciprocal.
        float f = 1.0f / powf(cfg->rope_theta, (float)(2 * i) / (float)D);
        if (cfg->rope_scaling == LC_ROPE_SCALING_LINEAR) {
            f /= cfg->rope_factor;
        } else if (cfg->rope_scaling == LC_ROPE_SCALING_LLAMA3) {
            // Llama 3.1: long wavelengths are slowed by `factor`, short ones
            // kept, and the band between interpolated smoothly.
            float old = (float)cfg->rope_original_max_pos;
            float low_wavelen = old / cfg->rope_low_freq_factor;
            float high_wavelen = old / cfg->rope_high_freq_factor;
            float wavelen = 2.0f * (float)M_PI / f;
            if (wavelen > low_wavelen) {
                f /= cfg->rope_factor;
            } else if (wavelen >= high_wavelen) {
                float smooth = (old / wavelen - cfg->rope_low_freq_factor) /
                               (cfg->rope_high_freq_factor - cfg->rope_low_freq_factor);
                f = (1.0f - smooth) * f / cfg->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void lc_config_alibi_slopes(const lc_model_config *cfg, float *slopes) {
    // The heads' slopes are a geometric sequence over the largest power of two
    // not above H; the remaining heads take every other slope of the sequence
    // for twice as many heads.
    int H = cfg->n_heads, p2 = 1;
    while (p2 * 2 <= H) p2 *= 2;
    double base = pow(2.0, -pow(2.0, -(log2((double)p2) - 3.0)));
    for (int h = 0; h < p2; h++) slopes[h] = (float)pow(base, h + 1);
    double extra = pow(2.0, -pow(2.0, -(log2(2.0 * p2) - 3.0)));
    for (int h = p2; h < H; h++) slopes[h] = (float)pow(extra, 2 * (h - p2) + 1);
}

bool lc_config_layer_moe(const lc_model_config *cfg, int layer) {
    if (cfg->n_experts <= 0 || layer < 0 || layer >= 1024) return false;
    return (layer + 1) % cfg->moe_step == 0 && !(cfg->moe_dense[layer / 64] >> (layer % 64) & 1);
}

int lc_config_layer_window(const lc_model_config *cfg, int layer) {
    if (cfg->sliding_alternate && layer % 2 != 0) return 0;
    return cfg->sliding_window;
}

float lc_config_layer_attn_scale(const lc_model_config *cfg, int layer) {
    return cfg->attn_scale_by_layer ? cfg->attn_scale / (float)(layer + 1) : cfg->attn_scale;
}
