#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph.h"
#include "common/file.h"

static const char *const lc_linear_names[LC_LINEAR_KIND_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

const char *lc_linear_kind_name(lc_linear_kind kind) { return lc_linear_names[kind]; }

const char *lc_linear_kind_parent(lc_linear_kind kind) { return kind <= LC_LINEAR_KIND_O ? "self_attn" : "mlp"; }

// A buffer of `bytes` freed with the model.
static void *own(lc_model *m, size_t bytes) {
    void **owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + 1));
    if (!owned) return NULL;
    m->owned = owned;
    void *buf = malloc(bytes);
    if (buf) m->owned[m->n_owned++] = buf;
    return buf;
}

// Tensor `name`, checked to have exactly the given shape and a float dtype.
static lc_status find_weight(lc_model *m, const char *name, int n_dims, int64_t d0, int64_t d1,
                             const lc_st_tensor **out) {
    const lc_st_tensor *t = lc_st_set_find(&m->st, name);
    const char *file = m->st.n_files ? m->st.files[0].path : "model";
    if (!t) return lc_error(LC_STATUS_INPUT, "%s: tensor %s is missing", file, name);
    file = m->st.files[t->shard].path;
    int64_t want[2] = {d0, d1};
    int ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[128] = "", exp[64];
        size_t len = 0;
        for (int i = 0; i < t->n_dims && len < sizeof got - 24; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (n_dims == 1) snprintf(exp, sizeof exp, "%lld", (long long)d0);
        else snprintf(exp, sizeof exp, "%lld, %lld", (long long)d0, (long long)d1);
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has shape [%s], config.json implies [%s]", file, name, got,
                        exp);
    }
    if (t->dtype == LC_DTYPE_OTHER)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", file, name,
                        t->dtype_name);
    *out = t;
    return LC_STATUS_OK;
}

// Tensor `name` as fp32 with exactly the given shape. F32 data that is
// suitably aligned is used in place; anything else is converted into a copy.
static lc_status get_weight(lc_model *m, const char *name, int n_dims, int64_t d0, int64_t d1, const float **out) {
    const lc_st_tensor *t;
    lc_status st = find_weight(m, name, n_dims, d0, d1, &t);
    if (st) return st;
    if (t->dtype == LC_DTYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = (const float *)t->data;
        return LC_STATUS_OK;
    }
    float *buf = own(m, sizeof(float) * (size_t)t->n_elements);
    if (!buf) return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", name);
    lc_st_tensor_to_f32(t, buf);
    *out = buf;
    return LC_STATUS_OK;
}

// The same as bf16: BF16 data used in place, anything else rounded into a copy.
static lc_status get_weight_bf16(lc_model *m, const char *name, int64_t d0, int64_t d1, const uint16_t **out) {
    const lc_st_tensor *t;
    lc_status st = find_weight(m, name, 2, d0, d1, &t);
    if (st) return st;
    if (t->dtype == LC_DTYPE_BF16 && ((uintptr_t)t->data % sizeof(uint16_t)) == 0) {
        *out = (const uint16_t *)t->data;
        return LC_STATUS_OK;
    }
    uint16_t *buf = own(m, sizeof(uint16_t) * (size_t)t->n_elements);
    if (!buf) return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", name);
    for (int64_t i = 0; i < t->n_elements; i++) {
        float f;
        if (t->dtype == LC_DTYPE_F32) {
            memcpy(&f, t->data + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            f = t->dtype == LC_DTYPE_F16 ? lc_f16_to_f32(h) : lc_bf16_to_f32(h);
        }
        buf[i] = lc_f32_to_bf16(f);
    }
    *out = buf;
    return LC_STATUS_OK;
}

const float *lc_linear_weight_f32(const lc_linear *lin) {
    return lin->w ? lin->w : lc_bf16_scratch_f32(lin->w_bf16, (size_t)lin->out * (size_t)lin->in);
}

static lc_status get_bias(lc_model *m, const char *name, int64_t d0, const float **out) {
    return get_weight(m, name, 1, d0, 0, out);
}

static lc_status load_layer(lc_model *m, int l, bool bf16_weights) {
    const lc_model_config *c = &m->cfg;
    lc_layer *L = &m->layers[l];
    char name[256];
    lc_status st;
    int C = c->hidden_size, F = c->intermediate_size;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    if ((st = get_weight(m, name, 1, C, 0, &L->attn_norm))) return st;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if ((st = get_weight(m, name, 1, C, 0, &L->mlp_norm))) return st;

    const int dims[LC_LINEAR_KIND_COUNT][2] = {
        {C, q_dim}, {C, kv_dim}, {C, kv_dim}, {q_dim, C}, {C, F}, {C, F}, {F, C},
    };
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        lc_linear *lin = &L->lin[k];
        lin->in = dims[k][0];
        lin->out = dims[k][1];
        snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, lc_linear_kind_parent(k),
                 lc_linear_kind_name(k));
        st = bf16_weights ? get_weight_bf16(m, name, lin->out, lin->in, &lin->w_bf16)
                          : get_weight(m, name, 2, lin->out, lin->in, &lin->w);
        if (st) return st;
        int has_bias = (k <= LC_LINEAR_KIND_V && c->attention_bias) || (k == LC_LINEAR_KIND_O && c->o_bias) ||
                       (k >= LC_LINEAR_KIND_GATE && c->mlp_bias);
        lin->bias = NULL;
        if (has_bias) {
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.bias", l, lc_linear_kind_parent(k),
                     lc_linear_kind_name(k));
            if ((st = get_bias(m, name, lin->out, &lin->bias))) return st;
        }
    }
    return LC_STATUS_OK;
}

lc_status lc_model_load(lc_model *m, const char *dir) { return lc_model_load_opts(m, dir, false); }

lc_status lc_model_load_opts(lc_model *m, const char *dir, bool bf16_weights) {
    char path[4096];
    lc_status st;
    memset(m, 0, sizeof *m);
    if (!lc_dir_exists(dir)) return lc_error(LC_STATUS_INPUT, "%s: not a model folder", dir);
    if ((st = lc_path_join(path, sizeof path, dir, "config.json"))) return st;
    if ((st = lc_config_load(&m->cfg, path))) return st;
    if ((st = lc_st_set_open_dir(&m->st, dir))) goto fail;

    const lc_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2));
    if (!m->layers || !m->inv_freq) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        goto fail;
    }
    lc_config_rope_inv_freq(c, m->inv_freq);
    if ((st = get_weight(m, "model.embed_tokens.weight", 2, c->vocab_size, c->hidden_size, &m->embed))) goto fail;
    if ((st = get_weight(m, "model.norm.weight", 1, c->hidden_size, 0, &m->final_norm))) goto fail;
    if (c->tie_word_embeddings && !lc_st_set_find(&m->st, "lm_head.weight")) {
        m->lm_head = m->embed;
    } else if ((st = get_weight(m, "lm_head.weight", 2, c->vocab_size, c->hidden_size, &m->lm_head))) {
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++)
        if ((st = load_layer(m, l, bf16_weights))) goto fail;
    return LC_STATUS_OK;
fail:
    lc_model_free(m);
    return st;
}

// Owned fp32 buffer of n values: uniform ±0.02·√3 from a splitmix64 stream, or `fill`.
static float *random_buffer(lc_model *m, size_t n, uint64_t *state, int random, float fill) {
    float *buf = own(m, sizeof(float) * n);
    if (!buf) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!random) {
            buf[i] = fill;
            continue;
        }
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        buf[i] = ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.0346410162f;
    }
    return buf;
}

lc_status lc_model_init_random(lc_model *m, const lc_model_config *cfg, uint64_t seed, bool bf16_weights) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    uint64_t state = seed;
    size_t C = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size, F = (size_t)cfg->intermediate_size;
    size_t q_dim = (size_t)cfg->n_heads * cfg->head_dim, kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(float) * (size_t)(cfg->head_dim / 2));
    float *embed = random_buffer(m, V * C, &state, 1, 0), *norm = random_buffer(m, C, &state, 0, 1.0f);
    float *head = cfg->tie_word_embeddings ? embed : random_buffer(m, V * C, &state, 1, 0);
    if (!m->layers || !m->inv_freq || !embed || !norm || !head) goto oom;
    lc_config_rope_inv_freq(cfg, m->inv_freq);
    m->embed = embed;
    m->final_norm = norm;
    m->lm_head = head;
    const size_t dims[LC_LINEAR_KIND_COUNT][2] = {
        {C, q_dim}, {C, kv_dim}, {C, kv_dim}, {q_dim, C}, {C, F}, {C, F}, {F, C},
    };
    for (int l = 0; l < cfg->n_layers; l++) {
        lc_layer *L = &m->layers[l];
        if (!(L->attn_norm = random_buffer(m, C, &state, 0, 1.0f))) goto oom;
        if (!(L->mlp_norm = random_buffer(m, C, &state, 0, 1.0f))) goto oom;
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            lc_linear *lin = &L->lin[k];
            lin->in = (int)dims[k][0];
            lin->out = (int)dims[k][1];
            size_t n = dims[k][0] * dims[k][1];
            if (bf16_weights) {
                // Generated one row at a time so the fp32 copy never exists whole.
                uint16_t *w = own(m, sizeof(uint16_t) * n);
                float *row = malloc(sizeof(float) * dims[k][0]);
                if (!w || !row) {
                    free(row);
                    goto oom;
                }
                for (size_t r = 0; r < dims[k][1]; r++) {
                    for (size_t i = 0; i < dims[k][0]; i++) {
                        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
                        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                        z ^= z >> 31;
                        row[i] = ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.0346410162f;
                    }
                    for (size_t i = 0; i < dims[k][0]; i++) w[r * dims[k][0] + i] = lc_f32_to_bf16(row[i]);
                }
                free(row);
                lin->w_bf16 = w;
            } else if (!(lin->w = random_buffer(m, n, &state, 1, 0))) {
                goto oom;
            }
            int has_bias = (k <= LC_LINEAR_KIND_V && cfg->attention_bias) || (k == LC_LINEAR_KIND_O && cfg->o_bias) ||
                           (k >= LC_LINEAR_KIND_GATE && cfg->mlp_bias);
            if (has_bias && !(lin->bias = random_buffer(m, dims[k][1], &state, 1, 0))) goto oom;
        }
    }
    return LC_STATUS_OK;
oom:
    lc_model_free(m);
    return lc_error(LC_STATUS_RUNTIME, "out of memory for a %d-layer model with random weights", cfg->n_layers);
}

void lc_model_free(lc_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    lc_st_set_free(&m->st);
    memset(m, 0, sizeof *m);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// Every byte of the weights, a 64-bit word at a time (gigabytes per second):
// a base that differs anywhere, even in one weight, has another fingerprint.
static uint64_t hash_words(uint64_t h, const unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    return fnv1a(h, p + i, n - i);
}

void lc_model_fingerprint(const lc_model *m, char out[17]) {
    const lc_model_config *c = &m->cfg;
    uint64_t h = 0xcbf29ce484222325ull;
    int fields[] = {(int)c->arch, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads,
                    c->n_kv_heads, c->head_dim, c->vocab_size, c->tie_word_embeddings};
    h = fnv1a(h, fields, sizeof fields);
    for (int i = 0; i < m->st.n_tensors; i++) {
        const lc_st_tensor *t = &m->st.tensors[i];
        h = fnv1a(h, t->name, strlen(t->name) + 1);
        h = fnv1a(h, t->dtype_name, strlen(t->dtype_name));
        h = fnv1a(h, t->shape, sizeof(int64_t) * (size_t)t->n_dims);
        h = hash_words(h, t->data, t->nbytes);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
