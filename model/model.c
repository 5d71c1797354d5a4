#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph.h"
#include "common/file.h"
#include "common/hash.h"
#include "model/arch.h"
#include "model/gguf_model.h"

static const char *const lc_linear_names[LC_LINEAR_KIND_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj",
};

const char *lc_linear_kind_name(lc_linear_kind kind) { return lc_linear_names[kind]; }

const char *lc_linear_kind_parent(lc_linear_kind kind) {
    return kind <= LC_LINEAR_KIND_O || kind == LC_LINEAR_KIND_QKV ? "self_attn" : "mlp";
}

const lc_linear *lc_model_expert_linear(const lc_model *m, int layer, int e, lc_expert_proj proj) {
    if (layer < 0 || layer >= m->cfg.n_layers || !m->layers[layer].moe || e < 0 || e > m->cfg.n_experts) return NULL;
    const lc_moe *moe = m->layers[layer].moe;
    const lc_linear *lin = e < m->cfg.n_experts ? &moe->experts[(size_t)e * LC_EXPERT_PROJ_COUNT + proj] : &moe->shared[proj];
    return lin->out ? lin : NULL;
}

lc_linear_kind lc_expert_proj_kind(lc_expert_proj proj) {
    return proj == LC_EXPERT_PROJ_GATE ? LC_LINEAR_KIND_GATE : proj == LC_EXPERT_PROJ_UP ? LC_LINEAR_KIND_UP
                                                                                      : LC_LINEAR_KIND_DOWN;
}

unsigned lc_model_linear_kinds(const lc_model_config *c) {
    unsigned k = 1u << LC_LINEAR_KIND_O | 1u << LC_LINEAR_KIND_DOWN;
    if (c->qkv == LC_QKV_LAYOUT_SEPARATE) k |= 1u << LC_LINEAR_KIND_Q | 1u << LC_LINEAR_KIND_K | 1u << LC_LINEAR_KIND_V;
    else k |= 1u << LC_LINEAR_KIND_QKV;
    if (!c->mlp_gated) k |= 1u << LC_LINEAR_KIND_UP;
    else if (c->gate_up_fused) k |= 1u << LC_LINEAR_KIND_GATE_UP;
    else k |= 1u << LC_LINEAR_KIND_GATE | 1u << LC_LINEAR_KIND_UP;
    return k;
}

unsigned lc_model_layer_linear_kinds(const lc_model_config *c, int layer) {
    unsigned mlp = 1u << LC_LINEAR_KIND_GATE | 1u << LC_LINEAR_KIND_UP | 1u << LC_LINEAR_KIND_DOWN |
                   1u << LC_LINEAR_KIND_GATE_UP;
    return lc_model_linear_kinds(c) & (lc_config_layer_moe(c, layer) ? ~mlp : ~0u);
}

// [in, out] of a linear kind in layer `layer` (0, 0 where it has none).
static void linear_dims(const lc_model_config *c, int layer, lc_linear_kind kind, int *in, int *out) {
    int C = c->hidden_size, F = c->intermediate_size;
    int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    const int dims[LC_LINEAR_KIND_COUNT][2] = {
        {C, q_dim}, {C, kv_dim}, {C, kv_dim}, {q_dim, C}, {C, F}, {C, F}, {F, C}, {C, q_dim + 2 * kv_dim}, {C, 2 * F},
    };
    int present = (lc_model_layer_linear_kinds(c, layer) >> kind) & 1;
    *in = present ? dims[kind][0] : 0;
    *out = present ? dims[kind][1] : 0;
}

static bool linear_has_bias(const lc_model_config *c, lc_linear_kind kind) {
    if (kind == LC_LINEAR_KIND_O) return c->o_bias;
    if (kind <= LC_LINEAR_KIND_V || kind == LC_LINEAR_KIND_QKV) return c->qkv_bias;
    return c->mlp_bias;
}

void *lc_model_own(lc_model *m, size_t bytes) {
    void **owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + 1));
    if (!owned) return NULL;
    m->owned = owned;
    void *buf = malloc(bytes);
    if (buf) m->owned[m->n_owned++] = buf;
    return buf;
}

// Tensor `name`, checked to have exactly the given shape and a float dtype.
static const lc_st_tensor *find_tensor(const lc_model *m, const char *name) {
    const lc_st_tensor *t = lc_st_set_find(&m->st, name);
    lc_arch_names n;
    lc_arch_names_get(&n, &m->cfg);
    size_t pl = n.optional_prefix ? strlen(n.optional_prefix) : 0;
    if (!t && pl && strncmp(name, n.optional_prefix, pl) == 0) t = lc_st_set_find(&m->st, name + pl);
    if (t) ((lc_st_tensor *)t)->used = true; // the set is m's own
    return t;
}

static lc_status find_weight(lc_model *m, const char *name, int n_dims, int64_t d0, int64_t d1,
                             const lc_st_tensor **out) {
    const lc_st_tensor *t = find_tensor(m, name);
    const char *file = m->st.n_files ? m->st.files[0].path : "model";
    if (!t) return lc_error(LC_STATUS_INPUT, "%s: tensor %s is missing", file, name);
    file = m->st.files[t->shard].path;
    char shown[400]; // a GGUF base's tensor by both its names
    if (t->stored_name) snprintf(shown, sizeof shown, "%s (%s)", t->stored_name, name);
    else snprintf(shown, sizeof shown, "%s", name);
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
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has shape [%s], %s implies [%s]", file, shown, got,
                        m->from_gguf ? "the metadata" : "config.json", exp);
    }
    if (t->dtype == LC_DTYPE_OTHER)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has type %s (lora.c reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                        "Q5_1, Q8_0, Q4_K, Q5_K and Q6_K)", file, shown, t->dtype_name);
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
    float *buf = lc_model_own(m, sizeof(float) * (size_t)t->n_elements);
    if (!buf) return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", name);
    lc_st_tensor_to_f32(t, buf);
    *out = buf;
    return LC_STATUS_OK;
}

// Element i of a tensor as fp32.
static float tensor_elem(const lc_st_tensor *t, int64_t i) {
    float f;
    uint16_t h;
    switch (t->dtype) {
    case LC_DTYPE_F32: memcpy(&f, t->data + 4 * i, 4); return f;
    case LC_DTYPE_F16: memcpy(&h, t->data + 2 * i, 2); return lc_f16_to_f32(h);
    default: memcpy(&h, t->data + 2 * i, 2); return lc_bf16_to_f32(h);
    }
}

// Alignment a weight of type t needs to be used in place (quantized blocks are read bytewise).
static size_t wtype_align(lc_wtype t) { return t == LC_WTYPE_F32 ? 4 : t <= LC_WTYPE_BF16 ? 2 : 1; }

static bool dtype_quantized(lc_dtype d) { return d > LC_DTYPE_BF16 && d < LC_DTYPE_OTHER; }

// Copies a linear weight into dst as [d0 = out, d1 = in] of type `want`
// (the stored type, or F32/BF16 from F32/F16/BF16); `transposed`: stored [in, out] (Conv1D).
static void weight_into(const lc_st_tensor *t, void *dst, lc_wtype want, bool transposed, int64_t d0, int64_t d1) {
    if ((lc_wtype)t->dtype == want && !transposed) {
        memcpy(dst, t->data, t->nbytes);
        return;
    }
    if (want == LC_WTYPE_F32 && !transposed) {
        lc_st_tensor_to_f32(t, dst);
        return;
    }
    for (int64_t i = 0; i < t->n_elements; i++) {
        // Element i of a transposed [d1, d0] tensor lands at [i % d0][i / d0].
        int64_t o = transposed ? (i % d0) * d1 + i / d0 : i;
        float f = tensor_elem(t, i);
        if (want == LC_WTYPE_BF16) ((uint16_t *)dst)[o] = lc_f32_to_bf16(f);
        else ((float *)dst)[o] = f;
    }
}

// The type a linear's frozen weight is held in: quantized weights always as
// stored; otherwise BF16 when asked, else the stored type for a GGUF base
// (m->from_gguf) and fp32 for a Hugging Face folder (the fastest products).
static lc_wtype held_type(const lc_model *m, const lc_st_tensor *t, bool bf16) {
    if (dtype_quantized(t->dtype)) return (lc_wtype)t->dtype;
    if (bf16) return LC_WTYPE_BF16;
    return m->from_gguf ? (lc_wtype)t->dtype : LC_WTYPE_F32;
}

// Loads linears lins[0..n) from the weights named names[i]. Weights already
// in their held form (aligned, not transposed) are used in place from the
// mapping; the others are converted, and a group whose members share a type
// and are converted anyway is stacked row-wise in one buffer, which lets the
// forward pass run it as one GEMM (q/k/v, gate/up). bf16: hold F32/F16/BF16
// weights in bf16.
static lc_status load_linears(lc_model *m, lc_linear *const *lins, const char *const *names, int n_lins, bool bf16) {
    const lc_model_config *c = &m->cfg;
    const lc_st_tensor *t[LC_LINEAR_KIND_COUNT];
    lc_wtype want[LC_LINEAR_KIND_COUNT];
    bool copy[LC_LINEAR_KIND_COUNT], any_copy = false, same = true;
    bool tr = c->weights_transposed;
    size_t total = 0;
    lc_status st;
    for (int i = 0; i < n_lins; i++) {
        lc_linear *lin = lins[i];
        if ((st = find_weight(m, names[i], 2, tr ? lin->in : lin->out, tr ? lin->out : lin->in, &t[i]))) return st;
        want[i] = held_type(m, t[i], bf16);
        size_t align = wtype_align(want[i]);
        copy[i] = tr || (lc_wtype)t[i]->dtype != want[i] || (uintptr_t)t[i]->data % align != 0;
        any_copy |= copy[i];
        same &= want[i] == want[0];
        total += lc_wtype_row_bytes(want[i], lin->in) * (size_t)lin->out;
    }
    bool stack = any_copy && same && n_lins > 1;
    unsigned char *buf = NULL;
    if (stack && !(buf = lc_model_own(m, total)))
        return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", names[0]);
    for (int i = 0; i < n_lins; i++) {
        lc_linear *lin = lins[i];
        size_t bytes = lc_wtype_row_bytes(want[i], lin->in) * (size_t)lin->out;
        const void *w = t[i]->data;
        if (stack || copy[i]) {
            unsigned char *dst = stack ? buf : lc_model_own(m, bytes);
            if (!dst) return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", t[i]->name);
            weight_into(t[i], dst, want[i], tr, lin->out, lin->in);
            w = dst;
            if (stack) buf += bytes;
        }
        lin->w = (lc_weight){want[i], w, lin->out, lin->in};
    }
    return LC_STATUS_OK;
}

// The linears `kinds` of one layer under their family names.
static lc_status load_linear_group(lc_model *m, lc_layer *L, const char *base, const lc_arch_names *n,
                                   const lc_linear_kind *kinds, int n_kinds, bool bf16) {
    lc_linear *lins[LC_LINEAR_KIND_COUNT];
    char names[LC_LINEAR_KIND_COUNT][320];
    const char *name_ptrs[LC_LINEAR_KIND_COUNT];
    for (int i = 0; i < n_kinds; i++) {
        lins[i] = &L->lin[kinds[i]];
        snprintf(names[i], sizeof names[i], "%s.%s.weight", base, n->lin[kinds[i]]);
        name_ptrs[i] = names[i];
    }
    return load_linears(m, lins, name_ptrs, n_kinds, bf16);
}

// One [out, in] linear named `path`.weight, without bias.
static lc_status load_one_linear(lc_model *m, lc_linear *lin, const char *path, int in, int out, bool bf16) {
    char name[320];
    snprintf(name, sizeof name, "%s.weight", path);
    lin->in = in;
    lin->out = out;
    lin->bias = NULL;
    lc_linear *lins[1] = {lin};
    const char *names[1] = {name};
    return load_linears(m, lins, names, 1, bf16);
}

// An expert's gate, up and down projections (width ff) under module path `path`.
static lc_status load_expert(lc_model *m, lc_linear *proj, const char *path, const lc_arch_names *n, int ff,
                             bool bf16) {
    int C = m->cfg.hidden_size;
    char sub[300];
    lc_status st;
    for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
        snprintf(sub, sizeof sub, "%s.%s", path, n->expert_lin[j]);
        bool down = j == LC_EXPERT_PROJ_DOWN;
        if ((st = load_one_linear(m, &proj[j], sub, down ? ff : C, down ? C : ff, bf16))) return st;
    }
    return LC_STATUS_OK;
}

// A sparse layer's router and experts. The router and the shared expert's
// gate stay in their stored precision (a bf16 router could change which
// experts a token picks).
static lc_status load_moe(lc_model *m, lc_layer *L, const char *base, const lc_arch_names *n, bool bf16) {
    const lc_model_config *c = &m->cfg;
    int E = c->n_experts, C = c->hidden_size;
    char path[300];
    lc_status st;
    lc_moe *moe = lc_model_own(m, sizeof *moe);
    lc_linear *experts = lc_model_own(m, sizeof *experts * (size_t)E * LC_EXPERT_PROJ_COUNT);
    if (!moe || !experts) return lc_error(LC_STATUS_RUNTIME, "out of memory for %d experts", E);
    memset(moe, 0, sizeof *moe);
    memset(experts, 0, sizeof *experts * (size_t)E * LC_EXPERT_PROJ_COUNT);
    moe->experts = experts;
    L->moe = moe;
    snprintf(path, sizeof path, "%s.%s", base, n->router);
    if ((st = load_one_linear(m, &moe->router, path, C, E, false))) return st;
    for (int e = 0; e < E; e++) {
        int len = snprintf(path, sizeof path, "%s.", base);
        snprintf(path + len, sizeof path - (size_t)len, n->expert, e);
        if ((st = load_expert(m, experts + (size_t)e * LC_EXPERT_PROJ_COUNT, path, n, c->moe_ff, bf16))) return st;
    }
    if (n->shared_expert) {
        snprintf(path, sizeof path, "%s.%s", base, n->shared_expert);
        if ((st = load_expert(m, moe->shared, path, n, c->shared_ff, bf16))) return st;
        snprintf(path, sizeof path, "%s.%s", base, n->shared_gate);
        if ((st = load_one_linear(m, &moe->shared_gate, path, C, 1, false))) return st;
    }
    return LC_STATUS_OK;
}

// The embedding or head matrix [rows, cols]: a GGUF base's in its stored
// type, used in place (rows dequantized where used); otherwise fp32.
static lc_status get_matrix(lc_model *m, const char *name, int64_t rows, int64_t cols, lc_weight *out) {
    const lc_st_tensor *t;
    lc_status st = find_weight(m, name, 2, rows, cols, &t);
    if (st) return st;
    size_t align = wtype_align((lc_wtype)t->dtype);
    if (m->from_gguf && (uintptr_t)t->data % align == 0) {
        *out = (lc_weight){(lc_wtype)t->dtype, t->data, (int)rows, (int)cols};
        return LC_STATUS_OK;
    }
    const float *w;
    if ((st = get_weight(m, name, 2, rows, cols, &w))) return st;
    *out = (lc_weight){LC_WTYPE_F32, w, (int)rows, (int)cols};
    return LC_STATUS_OK;
}

static lc_status get_bias(lc_model *m, const char *name, int64_t d0, const float **out) {
    return get_weight(m, name, 1, d0, 0, out);
}

// A norm's weight (and bias for affine layer norms) under module path `path`;
// nothing for parameter-free norms. Gemma's (1 + w) is folded in here.
static lc_status load_norm_dim(lc_model *m, const char *path, int dim, lc_norm *out) {
    const lc_model_config *c = &m->cfg;
    char name[320];
    lc_status st;
    out->w = out->b = NULL;
    if (!path || !c->norm_affine) return LC_STATUS_OK;
    snprintf(name, sizeof name, "%s.weight", path);
    if ((st = get_weight(m, name, 1, dim, 0, &out->w))) return st;
    if (c->norm_plus_one) {
        float *w1 = lc_model_own(m, sizeof(float) * (size_t)dim);
        if (!w1) return lc_error(LC_STATUS_RUNTIME, "out of memory converting %s", name);
        for (int i = 0; i < dim; i++) w1[i] = 1.0f + out->w[i];
        out->w = w1;
    }
    if (c->norm == LC_NORM_KIND_LAYER) {
        snprintf(name, sizeof name, "%s.bias", path);
        if ((st = get_bias(m, name, dim, &out->b))) return st;
    }
    return LC_STATUS_OK;
}

static lc_status load_norm(lc_model *m, const char *path, lc_norm *out) {
    return load_norm_dim(m, path, m->cfg.hidden_size, out);
}

static lc_status load_layer(lc_model *m, const lc_arch_names *n, int l, bool bf16_weights) {
    const lc_model_config *c = &m->cfg;
    lc_layer *L = &m->layers[l];
    char base[128], path[256], name[320];
    lc_status st;
    snprintf(base, sizeof base, n->layer, l);
    const char *norm_names[4] = {n->attn_norm, n->mlp_norm, n->post_attn_norm, n->post_mlp_norm};
    lc_norm *norms[4] = {&L->attn_norm, &L->mlp_norm, &L->post_attn_norm, &L->post_mlp_norm};
    for (int i = 0; i < 4; i++) {
        if (!norm_names[i]) continue;
        snprintf(path, sizeof path, "%s.%s", base, norm_names[i]);
        if ((st = load_norm(m, path, norms[i]))) return st;
    }
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
        linear_dims(c, l, (lc_linear_kind)k, &L->lin[k].in, &L->lin[k].out);
    if (n->q_norm) {
        snprintf(path, sizeof path, "%s.%s", base, n->q_norm);
        if ((st = load_norm_dim(m, path, c->n_heads * c->head_dim, &L->q_norm))) return st;
        snprintf(path, sizeof path, "%s.%s", base, n->k_norm);
        if ((st = load_norm_dim(m, path, c->n_kv_heads * c->head_dim, &L->k_norm))) return st;
    }
    if (lc_config_layer_moe(c, l) && (st = load_moe(m, L, base, n, bf16_weights))) return st;
    static const lc_linear_kind qkv[] = {LC_LINEAR_KIND_Q, LC_LINEAR_KIND_K, LC_LINEAR_KIND_V};
    static const lc_linear_kind gate_up[] = {LC_LINEAR_KIND_GATE, LC_LINEAR_KIND_UP};
    bool sep_qkv = L->lin[LC_LINEAR_KIND_Q].out > 0, sep_gate_up = L->lin[LC_LINEAR_KIND_GATE].out > 0;
    if (sep_qkv && (st = load_linear_group(m, L, base, n, qkv, 3, bf16_weights))) return st;
    if (sep_gate_up && (st = load_linear_group(m, L, base, n, gate_up, 2, bf16_weights))) return st;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        lc_linear *lin = &L->lin[k];
        if (!lin->out) continue;
        bool grouped = (sep_qkv && k <= LC_LINEAR_KIND_V) || (sep_gate_up && (k == LC_LINEAR_KIND_GATE || k == LC_LINEAR_KIND_UP));
        lc_linear_kind one = (lc_linear_kind)k;
        if (!grouped && (st = load_linear_group(m, L, base, n, &one, 1, bf16_weights))) return st;
        lin->bias = NULL;
        if (linear_has_bias(c, (lc_linear_kind)k)) {
            snprintf(name, sizeof name, "%s.%s.bias", base, n->lin[k]);
            if ((st = get_bias(m, name, lin->out, &lin->bias))) return st;
        }
    }
    return LC_STATUS_OK;
}

// Position tables and the fused-projection column map, shared by loading and
// random initialization.
static lc_status plan_tables(lc_model *m) {
    const lc_model_config *c = &m->cfg;
    int H = c->n_heads, KVH = c->n_kv_heads, D = c->head_dim, group = H / KVH;
    m->inv_freq = malloc(sizeof(float) * (size_t)(c->rope_dim / 2 + 1));
    if (!m->inv_freq) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (c->pos == LC_POS_KIND_ROPE) lc_config_rope_inv_freq(c, m->inv_freq);
    if (c->pos == LC_POS_KIND_ALIBI) {
        if (!(m->alibi = lc_model_own(m, sizeof(float) * (size_t)H))) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        lc_config_alibi_slopes(c, m->alibi);
    }
    size_t q_dim = (size_t)H * D, kv_dim = (size_t)KVH * D;
    int32_t *cols = lc_model_own(m, sizeof(int32_t) * (q_dim + 2 * kv_dim));
    if (!cols) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)h * D + d;
            int g = h / group;
            switch (c->qkv) {
            case LC_QKV_LAYOUT_GROUPED: cols[i] = ((g * (group + 2) + h % group) * D + d); break;
            case LC_QKV_LAYOUT_PER_HEAD: cols[i] = (3 * h * D + d); break;
            default: cols[i] = (int32_t)i; break;
            }
        }
    for (int g = 0; g < KVH; g++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)g * D + d;
            int32_t *kc = cols + q_dim, *vc = cols + q_dim + kv_dim;
            switch (c->qkv) {
            case LC_QKV_LAYOUT_GROUPED:
                kc[i] = ((g * (group + 2) + group) * D + d);
                vc[i] = kc[i] + D;
                break;
            case LC_QKV_LAYOUT_PER_HEAD:
                kc[i] = ((3 * g + 1) * D + d);
                vc[i] = kc[i] + D;
                break;
            default:
                kc[i] = (int32_t)(q_dim + i);
                vc[i] = (int32_t)(q_dim + kv_dim + i);
                break;
            }
        }
    m->qkv_cols = cols;
    return LC_STATUS_OK;
}

lc_status lc_model_path_check(const char *path) {
    if (lc_path_is_gguf(path) || lc_dir_exists(path)) return LC_STATUS_OK;
    if (lc_file_exists(path))
        return lc_error(LC_STATUS_INPUT, "%s: is a file, not a GGUF model: give the folder holding config.json or a .gguf file",
                        path);
    return lc_error(LC_STATUS_INPUT, "%s: not a model folder or GGUF file (no such folder or file)", path);
}

lc_status lc_model_load(lc_model *m, const char *dir) { return lc_model_load_opts(m, dir, false); }

lc_status lc_model_load_opts(lc_model *m, const char *dir, bool bf16_weights) {
    char path[4096];
    lc_status st;
    memset(m, 0, sizeof *m);
    if (lc_path_is_gguf(dir)) return lc_model_load_gguf(m, dir, bf16_weights);
    if ((st = lc_model_path_check(dir))) return st;
    if ((st = lc_path_join(path, sizeof path, dir, "config.json"))) return st;
    if ((st = lc_config_load(&m->cfg, path))) return st;
    if ((st = lc_path_join(path, sizeof path, dir, "generation_config.json"))) return st;
    if (lc_file_exists(path) && (st = lc_config_load_generation(&m->cfg, path))) return st;
    if ((st = lc_st_set_open_dir(&m->st, dir)) || (st = lc_model_load_tensors(m, bf16_weights))) {
        lc_model_free(m);
        return st;
    }
    return LC_STATUS_OK;
}

lc_status lc_model_load_tensors(lc_model *m, bool bf16_weights) {
    lc_status st;
    const lc_model_config *c = &m->cfg;
    lc_arch_names n;
    lc_arch_names_get(&n, c);
    char name[320];
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    if ((st = plan_tables(m))) return st;
    snprintf(name, sizeof name, "%s.weight", n.embed);
    if ((st = get_matrix(m, name, c->vocab_size, c->hidden_size, &m->embed))) return st;
    if (n.pos_embed) {
        snprintf(name, sizeof name, "%s.weight", n.pos_embed);
        if ((st = get_weight(m, name, 2, c->max_position_embeddings, c->hidden_size, &m->pos_embed))) return st;
    }
    if (n.embed_norm && (st = load_norm(m, n.embed_norm, &m->embed_norm))) return st;
    if ((st = load_norm(m, n.final_norm, &m->final_norm))) return st;
    snprintf(name, sizeof name, "%s.weight", n.head);
    if (c->tie_word_embeddings) {
        // As in transformers: a tied head IS the embedding matrix, whatever
        // head tensor the file also stores (exports then agree with generation).
        const lc_st_tensor *stale = find_tensor(m, name);
        m->lm_head = m->embed;
        m->ignored_head = stale ? stale->name : NULL;
    } else if ((st = get_matrix(m, name, c->vocab_size, c->hidden_size, &m->lm_head))) {
        return st;
    }
    for (int l = 0; l < c->n_layers; l++)
        if ((st = load_layer(m, &n, l, bf16_weights))) return st;
    return LC_STATUS_OK;
}

// n values uniform in ±0.02·√3 (std 0.02) from a splitmix64 stream.
static void random_fill(float *buf, size_t n, uint64_t *state) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        buf[i] = ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.0346410162f;
    }
}

// Owned fp32 buffer of n values: random_fill's, or `fill`.
static float *random_buffer(lc_model *m, size_t n, uint64_t *state, int random, float fill) {
    float *buf = lc_model_own(m, sizeof(float) * n);
    if (!buf) return NULL;
    if (random) random_fill(buf, n, state);
    else
        for (size_t i = 0; i < n; i++) buf[i] = fill;
    return buf;
}

// A random (norm-like: 1, or bias-like: 0) norm for init_random.
static bool random_norm_dim(lc_model *m, lc_norm *n, int dim, uint64_t *state) {
    const lc_model_config *c = &m->cfg;
    n->w = n->b = NULL;
    if (!c->norm_affine) return true;
    size_t C = (size_t)dim;
    if (!(n->w = random_buffer(m, C, state, 0, 1.0f))) return false;
    return c->norm != LC_NORM_KIND_LAYER || (n->b = random_buffer(m, C, state, 0, 0.0f));
}

static bool random_norm(lc_model *m, lc_norm *n, uint64_t *state) {
    return random_norm_dim(m, n, m->cfg.hidden_size, state);
}

// Random blocks of a quantized type: random codes, and each block's fp16
// scale (and minimum) set so the weights have a spread like std 0.02. For
// benchmarks, which measure speed and memory, not what a model computes.
static void random_blocks(unsigned char *dst, lc_wtype t, size_t rows, int cols, uint64_t *state) {
    size_t bytes = lc_wtype_row_bytes(t, cols) * rows, bb = lc_wtype_block_bytes(t);
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z ^= z >> 27;
        memcpy(dst + i, &z, bytes - i < 8 ? bytes - i : 8);
    }
    // Where each block keeps its fp16 scale(s), and their values.
    size_t at = t == LC_WTYPE_Q6_K ? 208 : 0;
    int n_half = t == LC_WTYPE_Q4_1 || t == LC_WTYPE_Q5_1 || t == LC_WTYPE_Q4_K || t == LC_WTYPE_Q5_K ? 2 : 1;
    float d = t == LC_WTYPE_Q8_0 ? 0.02f / 74 : t >= LC_WTYPE_Q4_K ? 0.02f / 150 : 0.02f / 5;
    uint16_t hd = lc_f32_to_f16(d), hm = lc_f32_to_f16(d * 4);
    for (size_t b = 0; b < bytes / bb; b++) {
        memcpy(dst + b * bb + at, &hd, 2);
        if (n_half == 2) memcpy(dst + b * bb + at + 2, &hm, 2);
    }
}

// Fills lin's weight [out, in] (dims set) at dst with random values of type
// wtype (rows generated one at a time for bf16, so the fp32 copy never exists whole).
static bool random_weight(lc_linear *lin, unsigned char *dst, lc_wtype wtype, uint64_t *state) {
    size_t in = (size_t)lin->in, out = (size_t)lin->out;
    if (wtype > LC_WTYPE_BF16) {
        random_blocks(dst, wtype, out, lin->in, state);
    } else if (wtype == LC_WTYPE_BF16) {
        uint16_t *w = (uint16_t *)dst;
        float *row = malloc(sizeof(float) * in);
        if (!row) return false;
        for (size_t r = 0; r < out; r++) {
            random_fill(row, in, state);
            for (size_t i = 0; i < in; i++) w[r * in + i] = lc_f32_to_bf16(row[i]);
        }
        free(row);
    } else {
        random_fill((float *)dst, in * out, state);
    }
    lin->w = (lc_weight){wtype, dst, lin->out, lin->in};
    return true;
}

// A random linear of its own [out, in] buffer.
static bool random_linear(lc_model *m, lc_linear *lin, int in, int out, lc_wtype wtype, uint64_t *state) {
    lin->in = in;
    lin->out = out;
    lin->bias = NULL;
    unsigned char *dst = lc_model_own(m, lc_wtype_row_bytes(wtype, in) * (size_t)out);
    return dst && random_weight(lin, dst, wtype, state);
}

// A sparse layer's router (fp32, as loading keeps it), experts and shared expert.
static bool random_moe(lc_model *m, lc_layer *L, lc_wtype wtype, uint64_t *state) {
    const lc_model_config *c = &m->cfg;
    int C = c->hidden_size, E = c->n_experts;
    lc_moe *moe = lc_model_own(m, sizeof *moe);
    lc_linear *ex = lc_model_own(m, sizeof *ex * (size_t)(E + 1) * LC_EXPERT_PROJ_COUNT);
    if (!moe || !ex) return false;
    memset(moe, 0, sizeof *moe);
    moe->experts = ex;
    L->moe = moe;
    if (!random_linear(m, &moe->router, C, E, LC_WTYPE_F32, state)) return false;
    for (int e = 0; e <= E; e++) {
        int ff = e < E ? c->moe_ff : c->shared_ff;
        lc_linear *p = e < E ? ex + (size_t)e * LC_EXPERT_PROJ_COUNT : moe->shared;
        if (!ff) break;
        if (!random_linear(m, &p[LC_EXPERT_PROJ_GATE], C, ff, wtype, state) ||
            !random_linear(m, &p[LC_EXPERT_PROJ_UP], C, ff, wtype, state) ||
            !random_linear(m, &p[LC_EXPERT_PROJ_DOWN], ff, C, wtype, state))
            return false;
    }
    return !c->shared_ff || random_linear(m, &moe->shared_gate, C, 1, LC_WTYPE_F32, state);
}

lc_status lc_model_init_random(lc_model *m, const lc_model_config *cfg, uint64_t seed, lc_wtype wtype) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    uint64_t state = seed;
    size_t C = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    // Embeddings and head: quantized like the linears, as GGUF files hold them; else fp32.
    bool quant = wtype > LC_WTYPE_BF16;
    lc_wtype et = quant ? wtype : LC_WTYPE_F32;
    size_t eb = lc_wtype_row_bytes(et, (int64_t)C) * V;
    void *embed = quant ? lc_model_own(m, eb) : random_buffer(m, V * C, &state, 1, 0);
    if (embed && quant) random_blocks(embed, et, V, (int)C, &state);
    bool ok = m->layers && embed && !plan_tables(m) && random_norm(m, &m->final_norm, &state);
    void *head = !ok ? NULL : cfg->tie_word_embeddings ? embed : quant ? lc_model_own(m, eb) : random_buffer(m, V * C, &state, 1, 0);
    if (!head) goto oom;
    if (quant && head != embed) random_blocks(head, et, V, (int)C, &state);
    m->embed = (lc_weight){et, embed, (int)V, (int)C};
    m->lm_head = (lc_weight){et, head, (int)V, (int)C};
    if (cfg->pos == LC_POS_KIND_LEARNED &&
        !(m->pos_embed = random_buffer(m, (size_t)cfg->max_position_embeddings * C, &state, 1, 0)))
        goto oom;
    if (cfg->embed_norm && !random_norm(m, &m->embed_norm, &state)) goto oom;
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    for (int l = 0; l < cfg->n_layers; l++) {
        lc_layer *L = &m->layers[l];
        if (n.attn_norm && !random_norm(m, &L->attn_norm, &state)) goto oom;
        if (n.mlp_norm && !random_norm(m, &L->mlp_norm, &state)) goto oom;
        if (n.post_attn_norm && !random_norm(m, &L->post_attn_norm, &state)) goto oom;
        if (n.post_mlp_norm && !random_norm(m, &L->post_mlp_norm, &state)) goto oom;
        // q/k/v and gate/up stacked row-wise, as the loader stacks converted weights.
        size_t qkv_rows = 0, gu_rows = 0;
        if (lc_config_layer_moe(cfg, l) && !random_moe(m, L, wtype, &state)) goto oom;
        if (cfg->qk_norm && (!random_norm_dim(m, &L->q_norm, cfg->n_heads * cfg->head_dim, &state) ||
                             !random_norm_dim(m, &L->k_norm, cfg->n_kv_heads * cfg->head_dim, &state)))
            goto oom;
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            lc_linear *lin = &L->lin[k];
            linear_dims(cfg, l, (lc_linear_kind)k, &lin->in, &lin->out);
            if (k <= LC_LINEAR_KIND_V) qkv_rows += (size_t)lin->out;
            if (k == LC_LINEAR_KIND_GATE || k == LC_LINEAR_KIND_UP) gu_rows += (size_t)lin->out;
        }
        size_t row = lc_wtype_row_bytes(wtype, (int64_t)C); // q/k/v and gate/up read the hidden state
        unsigned char *qkv_buf = qkv_rows ? lc_model_own(m, qkv_rows * row) : NULL;
        unsigned char *gu_buf = gu_rows ? lc_model_own(m, gu_rows * row) : NULL;
        if ((qkv_rows && !qkv_buf) || (gu_rows && !gu_buf)) goto oom;
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            lc_linear *lin = &L->lin[k];
            if (!lin->out) continue;
            size_t out = (size_t)lin->out;
            size_t rb = lc_wtype_row_bytes(wtype, lin->in);
            unsigned char *dst = k <= LC_LINEAR_KIND_V ? qkv_buf : k == LC_LINEAR_KIND_GATE ? gu_buf
                               : k == LC_LINEAR_KIND_UP ? gu_buf + L->lin[LC_LINEAR_KIND_GATE].out * rb : NULL;
            if (k == LC_LINEAR_KIND_K) dst += L->lin[LC_LINEAR_KIND_Q].out * rb;
            if (k == LC_LINEAR_KIND_V) dst += (L->lin[LC_LINEAR_KIND_Q].out + L->lin[LC_LINEAR_KIND_K].out) * rb;
            if (!dst && !(dst = lc_model_own(m, out * rb))) goto oom;
            if (!random_weight(lin, dst, wtype, &state)) goto oom;
            if (linear_has_bias(cfg, (lc_linear_kind)k) && !(lin->bias = random_buffer(m, out, &state, 1, 0))) goto oom;
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
    if (m->gguf) {
        lc_gguf_close(m->gguf);
        free(m->gguf);
    }
    memset(m, 0, sizeof *m);
}

// Every byte of the weights, word at a time: a base that differs anywhere,
// even in one weight, has another fingerprint.
void lc_model_fingerprint(const lc_model *m, char out[17]) {
    const lc_model_config *c = &m->cfg;
    uint64_t h = LC_HASH_INIT;
    int fields[] = {(int)c->arch, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads,
                    c->n_kv_heads, c->head_dim, c->vocab_size, c->tie_word_embeddings};
    h = lc_hash_bytes(h, fields, sizeof fields);
    for (int i = 0; i < m->st.n_tensors; i++) {
        const lc_st_tensor *t = &m->st.tensors[i];
        h = lc_hash_bytes(h, t->name, strlen(t->name) + 1);
        h = lc_hash_bytes(h, t->dtype_name, strlen(t->dtype_name));
        h = lc_hash_bytes(h, t->shape, sizeof(int64_t) * (size_t)t->n_dims);
        h = lc_hash_words(h, t->data, t->nbytes);
    }
    lc_hash_hex(h, out);
}
