#include "model/arch.h"

#include <stdio.h>
#include <string.h>

void lc_arch_names_get(lc_arch_names *n, const lc_model_config *cfg) {
    memset(n, 0, sizeof *n);
    switch (cfg->arch) {
    case LC_ARCH_GPT2:
        *n = (lc_arch_names){
            .layer = "transformer.h.%d",
            .embed = "transformer.wte",
            .pos_embed = "transformer.wpe",
            .final_norm = "transformer.ln_f",
            .head = "lm_head",
            .attn_norm = "ln_1",
            .mlp_norm = "ln_2",
            .optional_prefix = "transformer.",
        };
        n->lin[LC_LINEAR_KIND_QKV] = "attn.c_attn";
        n->lin[LC_LINEAR_KIND_O] = "attn.c_proj";
        n->lin[LC_LINEAR_KIND_UP] = "mlp.c_fc";
        n->lin[LC_LINEAR_KIND_DOWN] = "mlp.c_proj";
        return;
    case LC_ARCH_FALCON:
    case LC_ARCH_BLOOM:
        *n = (lc_arch_names){
            .layer = "transformer.h.%d",
            .embed = "transformer.word_embeddings",
            .final_norm = "transformer.ln_f",
            .head = "lm_head",
            .attn_norm = "input_layernorm",
            .mlp_norm = "post_attention_layernorm",
            .optional_prefix = "transformer.",
        };
        if (cfg->arch == LC_ARCH_BLOOM) n->embed_norm = "transformer.word_embeddings_layernorm";
        if (cfg->parallel_two_norms) {
            n->attn_norm = "ln_attn";
            n->mlp_norm = "ln_mlp";
        } else if (cfg->block == LC_BLOCK_KIND_PARALLEL) {
            n->mlp_norm = NULL; // the MLP reads the attention norm's output
        }
        n->lin[LC_LINEAR_KIND_QKV] = "self_attention.query_key_value";
        n->lin[LC_LINEAR_KIND_O] = "self_attention.dense";
        n->lin[LC_LINEAR_KIND_UP] = "mlp.dense_h_to_4h";
        n->lin[LC_LINEAR_KIND_DOWN] = "mlp.dense_4h_to_h";
        return;
    default:
        break;
    }
    *n = (lc_arch_names){
        .layer = "model.layers.%d",
        .embed = "model.embed_tokens",
        .final_norm = "model.norm",
        .head = "lm_head",
        .attn_norm = "input_layernorm",
        .mlp_norm = "post_attention_layernorm",
    };
    if (cfg->arch == LC_ARCH_GEMMA2) {
        n->post_attn_norm = "post_attention_layernorm";
        n->mlp_norm = "pre_feedforward_layernorm";
        n->post_mlp_norm = "post_feedforward_layernorm";
    }
    if (!cfg->norm_affine) n->attn_norm = n->mlp_norm = n->final_norm = NULL;
    if (cfg->qkv == LC_QKV_LAYOUT_SEPARATE) {
        n->lin[LC_LINEAR_KIND_Q] = "self_attn.q_proj";
        n->lin[LC_LINEAR_KIND_K] = "self_attn.k_proj";
        n->lin[LC_LINEAR_KIND_V] = "self_attn.v_proj";
    } else {
        n->lin[LC_LINEAR_KIND_QKV] = "self_attn.qkv_proj";
    }
    n->lin[LC_LINEAR_KIND_O] = "self_attn.o_proj";
    if (cfg->gate_up_fused) {
        n->lin[LC_LINEAR_KIND_GATE_UP] = "mlp.gate_up_proj";
    } else {
        n->lin[LC_LINEAR_KIND_GATE] = "mlp.gate_proj";
        n->lin[LC_LINEAR_KIND_UP] = "mlp.up_proj";
    }
    n->lin[LC_LINEAR_KIND_DOWN] = "mlp.down_proj";
    if (cfg->n_experts <= 0) return;
    static const char *const hf_proj[3] = {"gate_proj", "up_proj", "down_proj"};
    static const char *const mixtral_proj[3] = {"w1", "w3", "w2"};
    bool mixtral = cfg->arch == LC_ARCH_MIXTRAL;
    n->router = mixtral ? "block_sparse_moe.gate" : "mlp.gate";
    n->expert = mixtral ? "block_sparse_moe.experts.%d" : "mlp.experts.%d";
    for (int j = 0; j < 3; j++) n->expert_lin[j] = mixtral ? mixtral_proj[j] : hf_proj[j];
    if (mixtral) { // no dense layers: these name the kinds a target selects
        n->lin[LC_LINEAR_KIND_GATE] = "block_sparse_moe.w1";
        n->lin[LC_LINEAR_KIND_UP] = "block_sparse_moe.w3";
        n->lin[LC_LINEAR_KIND_DOWN] = "block_sparse_moe.w2";
    }
    if (cfg->shared_ff > 0) {
        n->shared_expert = "mlp.shared_expert";
        n->shared_gate = "mlp.shared_expert_gate";
    }
    if (cfg->qk_norm) {
        n->q_norm = "self_attn.q_norm";
        n->k_norm = "self_attn.k_norm";
    }
}

void lc_arch_expert_path(const lc_model_config *cfg, int layer, int e, lc_expert_proj proj, char *out, size_t cap) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    if (!n.expert || cap == 0) {
        if (cap) out[0] = '\0';
        return;
    }
    char layer_path[96], expert_path[96];
    snprintf(layer_path, sizeof layer_path, n.layer, layer);
    if (e < cfg->n_experts) snprintf(expert_path, sizeof expert_path, n.expert, e);
    else snprintf(expert_path, sizeof expert_path, "%s", n.shared_expert ? n.shared_expert : "?");
    snprintf(out, cap, "%s.%s.%s", layer_path, expert_path, n.expert_lin[proj]);
}

// Reads fmt ("model.layers.%d", one %d) at the start of s: the number, in
// decimal without leading zeros, into *num; returns what follows, or NULL.
static const char *match_format(const char *s, const char *fmt, int *num) {
    const char *d = strstr(fmt, "%d");
    if (!d || strncmp(s, fmt, (size_t)(d - fmt)) != 0) return NULL;
    const char *p = s + (d - fmt);
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return NULL;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > 1000000) return NULL;
    size_t post = strlen(d + 2);
    if (strncmp(p, d + 2, post) != 0) return NULL;
    *num = (int)v;
    return p + post;
}

const char *lc_arch_match_expert(const lc_model_config *cfg, const char *s, int *layer, int *e, lc_expert_proj *proj) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    if (!n.expert) return NULL;
    int l, ex;
    const char *p = match_format(s, n.layer, &l);
    if (!p || *p != '.' || l >= cfg->n_layers) return NULL;
    p++;
    const char *q = match_format(p, n.expert, &ex);
    size_t sl = n.shared_expert ? strlen(n.shared_expert) : 0;
    if (q && ex >= cfg->n_experts) return NULL;
    if (!q && sl && strncmp(p, n.shared_expert, sl) == 0) {
        q = p + sl;
        ex = cfg->n_experts;
    }
    if (!q || *q != '.') return NULL;
    q++;
    for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
        size_t len = strlen(n.expert_lin[j]);
        if (strncmp(q, n.expert_lin[j], len) == 0 && (q[len] == '.' || q[len] == '\0')) {
            *layer = l;
            *e = ex;
            *proj = (lc_expert_proj)j;
            return q + len;
        }
    }
    return NULL;
}

const char *lc_arch_linear_name(const lc_model_config *cfg, lc_linear_kind kind) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    const char *path = n.lin[kind];
    if (!path) return NULL;
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

unsigned lc_arch_target_bits(const lc_model_config *cfg, const char *name) {
    unsigned bits = 0;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        const char *own = lc_arch_linear_name(cfg, (lc_linear_kind)k);
        if (own && strcmp(own, name) == 0) bits |= 1u << k;
    }
    return bits;
}

// One representative config per naming scheme: Llama, Phi-3, GPT-2,
// Falcon/Bloom, Mixtral (its experts' w1/w3/w2).
#define N_SCHEMES 5
static lc_model_config naming_scheme(int i) {
    static const lc_arch archs[N_SCHEMES] = {LC_ARCH_LLAMA, LC_ARCH_PHI3, LC_ARCH_GPT2, LC_ARCH_FALCON,
                                             LC_ARCH_MIXTRAL};
    lc_model_config cfg = {.arch = archs[i], .norm_affine = true, .mlp_gated = i < 2 || i == 4};
    cfg.qkv = i == 0 || i == 4 ? LC_QKV_LAYOUT_SEPARATE : LC_QKV_LAYOUT_CONCAT;
    cfg.gate_up_fused = archs[i] == LC_ARCH_PHI3;
    cfg.n_experts = i == 4;
    return cfg;
}

unsigned lc_arch_target_bits_any(const char *name) {
    unsigned bits = 0;
    for (int i = 0; i < N_SCHEMES; i++) {
        lc_model_config cfg = naming_scheme(i);
        bits |= lc_arch_target_bits(&cfg, name);
    }
    return bits;
}

void lc_arch_kind_aliases(lc_linear_kind kind, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < N_SCHEMES; i++) {
        lc_model_config cfg = naming_scheme(i);
        const char *own = lc_arch_linear_name(&cfg, kind);
        if (!own || (len && strstr(out, own))) continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? "/" : "", own);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    if (!len) snprintf(out, cap, "%s", lc_linear_kind_name(kind));
}

void lc_arch_target_list(const lc_model_config *cfg, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        const char *own = lc_arch_linear_name(cfg, (lc_linear_kind)k);
        if (!own) continue;
        // GPT-2's c_proj names two kinds: list it once.
        int seen = 0;
        for (int j = 0; j < k && !seen; j++) {
            const char *prev = lc_arch_linear_name(cfg, (lc_linear_kind)j);
            seen = prev && strcmp(prev, own) == 0;
        }
        if (seen) continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", own);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
}
