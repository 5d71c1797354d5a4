#include "model/config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

static const struct {
    const char *name;
    lc_arch arch;
} lc_arch_table[] = {
    {"llama", LC_ARCH_LLAMA},
    {"mistral", LC_ARCH_MISTRAL},
    {"qwen2", LC_ARCH_QWEN2},
};

const char *lc_arch_name(lc_arch arch) {
    for (size_t i = 0; i < sizeof lc_arch_table / sizeof lc_arch_table[0]; i++)
        if (lc_arch_table[i].arch == arch) return lc_arch_table[i].name;
    return "?";
}

// Reads an integer key into *out, requiring lo <= value <= hi.
static lc_status get_int_in(const cJSON *root, const char *key, const char *path, int64_t def, int64_t lo,
                            int64_t hi, int *out) {
    int64_t v;
    lc_status st = lc_json_get_int(root, key, path, def, &v);
    if (st) return st;
    if (v < lo || v > hi)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" is %lld, outside %lld..%lld", path, key, (long long)v,
                        (long long)lo, (long long)hi);
    *out = (int)v;
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

// bos/eos may be an integer or a list of integers (Llama 3 lists several EOS ids).
static lc_status get_token_id(const cJSON *root, const char *key, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return LC_STATUS_OK;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || !cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e8 ||
        v->valuedouble != floor(v->valuedouble))
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be a token id", path, key);
    *out = (int)v->valuedouble;
    return LC_STATUS_OK;
}

static lc_status config_parse(lc_model_config *cfg, const cJSON *root, const char *path) {
    lc_status st;
    memset(cfg, 0, sizeof *cfg);
    if (!cJSON_IsObject(root)) return lc_error(LC_STATUS_INPUT, "%s: not a JSON object", path);

    const char *type;
    if ((st = lc_json_get_string(root, "model_type", path, NULL, &type))) return st;
    if (!type) return lc_error(LC_STATUS_INPUT, "%s: \"model_type\" is missing", path);
    size_t n_arch = sizeof lc_arch_table / sizeof lc_arch_table[0];
    size_t a = 0;
    while (a < n_arch && strcmp(lc_arch_table[a].name, type) != 0) a++;
    if (a == n_arch)
        return lc_error(LC_STATUS_INPUT, "%s: model_type \"%s\" is not supported (supported: llama, mistral, qwen2)",
                        path, type);
    cfg->arch = lc_arch_table[a].arch;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);

    // Caps keep every later size computation far from overflow.
    if ((st = get_int_in(root, "hidden_size", path, 0, 1, 65536, &cfg->hidden_size))) return st;
    if ((st = get_int_in(root, "intermediate_size", path, 0, 1, 1 << 20, &cfg->intermediate_size))) return st;
    if ((st = get_int_in(root, "num_hidden_layers", path, 0, 1, 1024, &cfg->n_layers))) return st;
    if ((st = get_int_in(root, "num_attention_heads", path, 0, 1, 1024, &cfg->n_heads))) return st;
    if ((st = get_int_in(root, "num_key_value_heads", path, cfg->n_heads, 1, 1024, &cfg->n_kv_heads))) return st;
    if ((st = get_int_in(root, "vocab_size", path, 0, 1, 1 << 22, &cfg->vocab_size))) return st;
    if ((st = get_int_in(root, "max_position_embeddings", path, 2048, 1, 1 << 24, &cfg->max_position_embeddings)))
        return st;
    int default_head_dim = cfg->hidden_size / cfg->n_heads;
    if ((st = get_int_in(root, "head_dim", path, default_head_dim, 1, 4096, &cfg->head_dim))) return st;

    double eps, theta;
    if ((st = lc_json_get_double(root, "rms_norm_eps", path, 1e-6, &eps))) return st;
    if ((st = lc_json_get_double(root, "rope_theta", path, 10000.0, &theta))) return st;
    if (eps <= 0.0 || eps > 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"rms_norm_eps\" must be in (0, 1]", path);
    if (theta <= 1.0) return lc_error(LC_STATUS_INPUT, "%s: \"rope_theta\" must be above 1", path);
    cfg->rms_norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    if ((st = parse_rope_scaling(cfg, root, path))) return st;

    bool tie, attn_bias, mlp_bias, use_sw;
    if ((st = lc_json_get_bool(root, "tie_word_embeddings", path, false, &tie))) return st;
    if ((st = lc_json_get_bool(root, "attention_bias", path, false, &attn_bias))) return st;
    if ((st = lc_json_get_bool(root, "mlp_bias", path, false, &mlp_bias))) return st;
    // Qwen2 carries sliding_window but only applies it with use_sliding_window.
    if ((st = lc_json_get_bool(root, "use_sliding_window", path, cfg->arch == LC_ARCH_MISTRAL, &use_sw))) return st;
    cfg->tie_word_embeddings = tie;
    cfg->attention_bias = attn_bias || cfg->arch == LC_ARCH_QWEN2;
    cfg->o_bias = attn_bias && cfg->arch == LC_ARCH_LLAMA;
    cfg->mlp_bias = mlp_bias;
    int window = 0;
    if ((st = get_int_in(root, "sliding_window", path, 0, 0, 1 << 24, &window))) return st;
    cfg->sliding_window = use_sw ? window : 0;

    if ((st = get_token_id(root, "bos_token_id", path, &cfg->bos_token_id))) return st;
    if ((st = get_token_id(root, "eos_token_id", path, &cfg->eos_token_id))) return st;

    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return lc_error(LC_STATUS_INPUT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                        cfg->n_heads, cfg->n_kv_heads);
    if (cfg->head_dim % 2 != 0) return lc_error(LC_STATUS_INPUT, "%s: head_dim %d must be even", path, cfg->head_dim);
    if ((long long)cfg->n_heads * cfg->head_dim > 1 << 20)
        return lc_error(LC_STATUS_INPUT, "%s: num_attention_heads x head_dim is too large", path);
    return LC_STATUS_OK;
}

lc_status lc_config_load(lc_model_config *cfg, const char *path) {
    cJSON *root;
    lc_status st = lc_json_load_file(path, 1 << 20, &root);
    if (st) return st;
    st = config_parse(cfg, root, path);
    cJSON_Delete(root);
    return st;
}

void lc_config_rope_inv_freq(const lc_model_config *cfg, float *inv_freq) {
    int D = cfg->head_dim;
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
