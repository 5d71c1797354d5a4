// The merged model as GGUF for llama.cpp: names, metadata and tokenizer as
// convert_hf_to_gguf.py writes them, for every family the model layer loads
// (llama/mistral as "llama", qwen2, gemma, gemma2, phi3, gpt2, falcon, olmo,
// bloom, and the mixture-of-experts families), with exactly the tensors llama.cpp's loader creates for the
// architecture (it refuses a file with any other). The adapter is merged in
// the checkpoint's row order first; then fused query/key/value rows are put
// in llama.cpp's [q; k; v] order and, for the architectures that rotate
// adjacent pairs (llama, olmo), q/k rows permuted. Configurations llama.cpp's
// graph cannot express are refused (LC_STATUS_USAGE) rather than written.
// The adapter alone and the merge into a GGUF base are in gguf_lora.c.
#include "export/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "export/export.h"
#include "export/gguf_export_internal.h"
#include "model/gguf_internal.h"
#include "model/gguf_model.h"
#include "model/safetensors.h"

// ---------------------------------------------------------------- families

#define KIND_BIT(k) (1u << LC_LINEAR_KIND_##k)

lc_status lc_gguf_family_of(const lc_model *m, const char *out_path, lc_gguf_family *f) {
    const lc_model_config *c = &m->cfg;
    const char *why = NULL;
    memset(f, 0, sizeof *f);
    f->rms = c->norm == LC_NORM_KIND_RMS;
    f->rope = c->pos == LC_POS_KIND_ROPE;
    switch (c->arch) {
    case LC_ARCH_LLAMA:
    case LC_ARCH_MISTRAL: // the llama architecture to llama.cpp, which has no sliding window (nor has
                          // the converter's output): Mistral differs from HF past its window
        f->arch = "llama";
        f->permute_qk = true;
        f->bias_ok = KIND_BIT(Q) | KIND_BIT(K) | KIND_BIT(V) | KIND_BIT(O) | KIND_BIT(GATE) | KIND_BIT(UP) |
                     KIND_BIT(DOWN);
        break;
    case LC_ARCH_QWEN2:
        f->arch = "qwen2";
        f->bias_ok = KIND_BIT(Q) | KIND_BIT(K) | KIND_BIT(V);
        break;
    case LC_ARCH_GEMMA:
    case LC_ARCH_GEMMA2:
        f->arch = c->arch == LC_ARCH_GEMMA ? "gemma" : "gemma2";
        f->output_never = f->head_dim_keys = true;
        // llama.cpp's Gemma 2 graph always soft-caps (dividing by the cap).
        // Its query scale is fixed by size, 1/sqrt(head_dim) (27B: 1/sqrt(n_embd/n_head)),
        // with no key for query_pre_attn_scalar; the released models agree with it.
        if (c->arch == LC_ARCH_GEMMA2 && (c->attn_softcap <= 0.0f || c->final_softcap <= 0.0f))
            why = "llama.cpp's gemma2 always applies attn_logit_softcapping and final_logit_softcapping, and this "
                  "config disables one";
        if (m->lm_head.data != m->embed.data &&
            (m->lm_head.type != m->embed.type ||
             memcmp(m->lm_head.data, m->embed.data,
                    lc_wtype_row_bytes(m->embed.type, c->hidden_size) * (size_t)c->vocab_size)))
            why = "llama.cpp's gemma always ties the output to token_embd, and this model has its own lm_head";
        break;
    case LC_ARCH_PHI3:
        f->arch = "phi3";
        break;
    case LC_ARCH_GPT2:
        f->arch = "gpt2";
        f->output_always = true;
        f->bias_ok = KIND_BIT(QKV) | KIND_BIT(O) | KIND_BIT(UP) | KIND_BIT(DOWN);
        if (c->attn_scale_by_layer || fabsf(c->attn_scale * sqrtf((float)c->head_dim) - 1.0f) > 1e-6f)
            why = "llama.cpp's gpt2 scales attention by 1/sqrt(head_dim) only (scale_attn_weights false or "
                  "scale_attn_by_inverse_layer_idx is not representable)";
        break;
    case LC_ARCH_FALCON:
        f->arch = "falcon";
        if (c->block != LC_BLOCK_KIND_PARALLEL) why = "llama.cpp's falcon has parallel attention/MLP blocks only";
        break;
    case LC_ARCH_OLMO:
        f->arch = "olmo";
        f->permute_qk = true;
        break;
    case LC_ARCH_BLOOM:
        f->arch = "bloom";
        f->output_always = true;
        f->bias_ok = KIND_BIT(QKV) | KIND_BIT(O) | KIND_BIT(UP) | KIND_BIT(DOWN);
        if (c->residual_from_norm)
            why = "llama.cpp's bloom has no apply_residual_connection_post_layernorm";
        break;
    case LC_ARCH_MIXTRAL: // llama.cpp's llama with experts (softmax, top k, renormalized)
        f->arch = "llama";
        f->permute_qk = true;
        f->moe = true;
        break;
    case LC_ARCH_OLMOE:
    case LC_ARCH_QWEN2_MOE: {
        bool olmoe = c->arch == LC_ARCH_OLMOE;
        f->arch = olmoe ? "olmoe" : "qwen2moe";
        f->moe = true;
        f->output_always = true; // their llama.cpp loaders require output.weight
        // llama.cpp's olmoe norms k over n_embd values: no grouped-query attention.
        if (olmoe && c->n_kv_heads != c->n_heads)
            why = "llama.cpp's olmoe has no grouped-query attention (its k_norm spans the hidden size)";
        f->bias_ok = olmoe ? 0 : KIND_BIT(Q) | KIND_BIT(K) | KIND_BIT(V);
        // Their llama.cpp graphs weight the top k experts by the softmax as it is.
        if (c->norm_topk_prob) why = "llama.cpp does not renormalize this family's top-k weights (norm_topk_prob)";
        if (olmoe && c->clip_qkv > 0.0f) why = "llama.cpp's olmoe has no clip_qkv";
        for (int l = 0; l < c->n_layers && !why; l++)
            if (!lc_config_layer_moe(c, l)) why = "llama.cpp's qwen2moe has no dense layers (mlp_only_layers, decoder_sparse_step)";
        break;
    }
    default: return lc_error(LC_STATUS_USAGE, "%s: GGUF export does not know this model family", out_path);
    }
    if (!why && c->rope_scaling == LC_ROPE_SCALING_LLAMA3 && strcmp(f->arch, "llama") != 0)
        why = "llama3 rope scaling is written as rope_freqs, which only llama.cpp's llama architecture reads";
    if (!why && f->permute_qk && c->rope_dim != c->head_dim)
        why = "partial rotary embeddings are not supported with the interleaved rotary order";
    for (int l = 0; l < c->n_layers && !why; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *lin = &m->layers[l].lin[k];
            if (lin->out && lin->bias && !(f->bias_ok >> k & 1)) {
                return lc_error(LC_STATUS_USAGE, "%s: llama.cpp's %s architecture has no bias on %s (layer %d)",
                                out_path, f->arch, lc_linear_kind_name((lc_linear_kind)k), l);
            }
        }
    if (why) return lc_error(LC_STATUS_USAGE, "%s: cannot export %s as GGUF: %s", out_path, c->model_type, why);
    return LC_STATUS_OK;
}

// ---------------------------------------------------------------- tensors

// dst row i = src row rows[i] (n rows of cols values).
static void gather_rows(float *dst, const float *src, const int32_t *rows, int n, int cols) {
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * cols, src + (size_t)rows[i] * cols, (size_t)cols * sizeof *dst);
}

// llama.cpp's names of the linear kinds. Fused query/key/value stays fused
// (attn_qkv, rows [q; k; v]); Phi-3's fused gate/up is its ffn_up with 2F
// rows [gate; up], which llama.cpp splits in half.

enum job_src {
    SRC_VALUES,     // a model array as it is (embeddings, norms, the output head)
    SRC_ROPE_FREQS, // llama3 rope factors
    SRC_LINEAR,     // merged linear weight, reordered for llama.cpp
    SRC_BIAS,       // linear bias, reordered alike
    SRC_EXPERTS,    // one projection of every expert of a layer, merged, stacked [E, out, in]
    SRC_WEIGHT,     // a sparse layer's linear merged with its adapter, if any (router, shared expert)
};

typedef struct job {
    enum job_src src;
    char name[64];
    int n_dims;
    int64_t shape[3];  // row-major; [experts, out, in] for SRC_EXPERTS
    bool f32;          // stays F32 whatever the export dtype
    lc_wtype type;     // as written (set with the header)
    const float *data; // SRC_VALUES
    int layer;
    lc_linear_kind lin;
    lc_expert_proj proj;       // SRC_EXPERTS
    const lc_linear *weight;   // SRC_WEIGHT, with its adapter (NULL: none)
    const lc_lora_ref *adapter;
} job;

static job *add_job(lc_gguf_exporter *e, enum job_src src, int n_dims, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

// Appends a job (e->jobs is sized for every tensor a model can have; past
// that, jobs land in a scratch slot and e->overflow is set).
static job *add_job(lc_gguf_exporter *e, enum job_src src, int n_dims, int64_t d0, int64_t d1, const char *fmt, ...) {
    static _Thread_local job scratch;
    job *j = &scratch;
    if (e->n_jobs < e->cap_jobs) j = &e->jobs[e->n_jobs++];
    else e->overflow = true;
    memset(j, 0, sizeof *j);
    j->src = src;
    j->n_dims = n_dims;
    j->shape[0] = d0;
    j->shape[1] = d1;
    j->f32 = n_dims < 2 || e->dtype == LC_DTYPE_F32;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->name, sizeof j->name, fmt, ap);
    va_end(ap);
    return j;
}

// A norm's weight and bias (absent parts, and OLMo's parameter-free norms, write nothing).
static void add_norm_dim(lc_gguf_exporter *e, const lc_norm *n, int layer, const char *name, int64_t C) {
    char full[48];
    if (layer >= 0) snprintf(full, sizeof full, "blk.%d.%s", layer, name);
    else snprintf(full, sizeof full, "%s", name);
    if (n->w) add_job(e, SRC_VALUES, 1, C, 1, "%s.weight", full)->data = n->w;
    if (n->b) add_job(e, SRC_VALUES, 1, C, 1, "%s.bias", full)->data = n->b;
}

static void add_norm(lc_gguf_exporter *e, const lc_norm *n, int layer, const char *name) {
    add_norm_dim(e, n, layer, name, e->m->cfg.hidden_size);
}

const char *const lc_gguf_expert_stack_names[LC_EXPERT_PROJ_COUNT] = {"ffn_gate_exps", "ffn_up_exps",
                                                                          "ffn_down_exps"};
const char *const lc_gguf_shared_expert_names[LC_EXPERT_PROJ_COUNT] = {"ffn_gate_shexp", "ffn_up_shexp",
                                                                           "ffn_down_shexp"};

// A sparse layer's router, experts (each projection of every expert stacked
// in one 3-D tensor, as convert_hf_to_gguf.py merges them) and shared expert.
static void add_moe(lc_gguf_exporter *e, int l) {
    const lc_model_config *c = &e->m->cfg;
    const lc_moe *moe = e->m->layers[l].moe;
    job *j = add_job(e, SRC_WEIGHT, 2, c->n_experts, c->hidden_size, "blk.%d.ffn_gate_inp.weight", l);
    j->weight = &moe->router;
    j->f32 = true; // the converter keeps routers in F32
    for (int p = 0; p < LC_EXPERT_PROJ_COUNT; p++) {
        const lc_linear *lin = &moe->experts[p];
        j = add_job(e, SRC_EXPERTS, 3, c->n_experts, lin->out, "blk.%d.%s.weight", l, lc_gguf_expert_stack_names[p]);
        j->shape[2] = lin->in;
        j->layer = l;
        j->proj = (lc_expert_proj)p;
    }
    if (!moe->shared[0].out) return;
    j = add_job(e, SRC_WEIGHT, 1, c->hidden_size, 1, "blk.%d.ffn_gate_inp_shexp.weight", l);
    j->weight = &moe->shared_gate;
    for (int p = 0; p < LC_EXPERT_PROJ_COUNT; p++) {
        const lc_linear *lin = &moe->shared[p];
        j = add_job(e, SRC_WEIGHT, 2, lin->out, lin->in, "blk.%d.%s.weight", l, lc_gguf_shared_expert_names[p]);
        j->weight = lin;
        j->adapter = lc_lora_get_expert(e->lora, l, c->n_experts, (lc_expert_proj)p);
    }
}

static void add_linear(lc_gguf_exporter *e, int l, lc_linear_kind k) {
    const lc_linear *lin = &e->m->layers[l].lin[k];
    if (!lin->out) return;
    job *j = add_job(e, SRC_LINEAR, 2, lin->out, lin->in, "blk.%d.%s.weight", l, lc_gguf_linear_name(k));
    j->layer = l;
    j->lin = k;
    if (!lin->bias) return;
    j = add_job(e, SRC_BIAS, 1, lin->out, 1, "blk.%d.%s.bias", l, lc_gguf_linear_name(k));
    j->layer = l;
    j->lin = k;
}

// The tensors, in the order llama.cpp's converter writes a Llama: token_embd,
// output_norm, output, rope_freqs, then per block attn_norm, attn_q/k/v,
// attn_output, ffn_norm, ffn_gate/up/down; the other families' tensors at
// the matching places.
static void plan_jobs(lc_gguf_exporter *e) {
    const lc_model *m = e->m;
    const lc_model_config *c = &m->cfg;
    const int64_t V = c->vocab_size, C = c->hidden_size;
    add_job(e, SRC_VALUES, 2, V, C, "token_embd.weight")->data = m->embed.data; // fp32: not a GGUF base
    if (c->embed_norm) add_norm(e, &m->embed_norm, -1, "token_embd_norm");
    if (m->pos_embed) { // position_embd stays F32, as the converter writes it
        job *j = add_job(e, SRC_VALUES, 2, c->max_position_embeddings, C, "position_embd.weight");
        j->data = m->pos_embed;
        j->f32 = true;
    }
    add_norm(e, &m->final_norm, -1, "output_norm");
    bool tied = c->tie_word_embeddings || m->lm_head.data == m->embed.data;
    if (!e->fam.output_never && (!tied || e->fam.output_always))
        add_job(e, SRC_VALUES, 2, V, C, "output.weight")->data = m->lm_head.data;
    if (c->rope_scaling == LC_ROPE_SCALING_LLAMA3)
        add_job(e, SRC_ROPE_FREQS, 1, c->head_dim / 2, 1, "rope_freqs.weight");

    bool falcon2 = c->arch == LC_ARCH_FALCON && c->parallel_two_norms;
    for (int l = 0; l < c->n_layers; l++) {
        const lc_layer *L = &m->layers[l];
        // Falcon's new decoder: ln_mlp is llama.cpp's attn_norm (read by the
        // MLP) and ln_attn its attn_norm_2 (read by attention).
        if (falcon2) add_norm(e, &L->mlp_norm, l, "attn_norm");
        add_norm(e, &L->attn_norm, l, falcon2 ? "attn_norm_2" : "attn_norm");
        add_linear(e, l, LC_LINEAR_KIND_Q);
        add_linear(e, l, LC_LINEAR_KIND_K);
        add_linear(e, l, LC_LINEAR_KIND_V);
        add_linear(e, l, LC_LINEAR_KIND_QKV);
        add_linear(e, l, LC_LINEAR_KIND_O);
        add_norm_dim(e, &L->q_norm, l, "attn_q_norm", (int64_t)c->n_heads * c->head_dim);
        add_norm_dim(e, &L->k_norm, l, "attn_k_norm", (int64_t)c->n_kv_heads * c->head_dim);
        add_norm(e, &L->post_attn_norm, l, "post_attention_norm");
        if (!falcon2) add_norm(e, &L->mlp_norm, l, "ffn_norm"); // Gemma 2's pre_feedforward_layernorm too
        if (L->moe) add_moe(e, l);
        add_linear(e, l, LC_LINEAR_KIND_GATE);
        add_linear(e, l, LC_LINEAR_KIND_UP);
        add_linear(e, l, LC_LINEAR_KIND_GATE_UP);
        add_linear(e, l, LC_LINEAR_KIND_DOWN);
        add_norm(e, &L->post_mlp_norm, l, "post_ffw_norm");
    }
}

// llama3 rope scaling as convert_hf_to_gguf.py writes it: a factor per
// frequency that llama.cpp divides the frequency by.
static void llama3_rope_factors(const lc_model_config *c, float *out) {
    int D = c->head_dim;
    double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double old_ctx = c->rope_original_max_pos;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (int i = 0; i < D / 2; i++) {
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
        double wavelen = 2 * M_PI / freq;
        double f;
        if (wavelen < hi_wavelen) f = 1;
        else if (wavelen > lo_wavelen) f = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

// The rows of a linear kind in llama.cpp's order: fused query/key/value
// gathered into [q; k; v] (Falcon's grouped and Bloom's per-head layouts),
// q/k permuted for interleaved rotary; Phi-3's gate_up already is [gate; up]. cols is 1 for biases. Returns the
// buffer holding the result (e->buf or e->tmp); src is in e->buf.
const float *lc_gguf_reorder_rows(lc_gguf_exporter *e, lc_linear_kind k, int rows, int cols) {
    const lc_model *m = e->m;
    const lc_model_config *c = &m->cfg;
    if (k == LC_LINEAR_KIND_QKV && m->qkv_cols) {
        gather_rows(e->tmp, e->buf, m->qkv_cols, rows, cols);
        return e->tmp;
    }
    if (e->fam.permute_qk && (k == LC_LINEAR_KIND_Q || k == LC_LINEAR_KIND_K)) {
        int heads = k == LC_LINEAR_KIND_Q ? c->n_heads : c->n_kv_heads;
        lc_gguf_permute_rows(e->tmp, e->buf, heads, rows / heads, sizeof(float) * (size_t)cols, true);
        return e->tmp;
    }
    return e->buf;
}

lc_status lc_gguf_write_rows(lc_gguf_exporter *e, lc_gguf_writer *w, lc_wtype type, const float *src, int64_t rows,
                             int64_t cols) {
    if (type == LC_WTYPE_F32) return lc_gguf_write_tensor_part(w, src, (size_t)rows * cols * sizeof(float));
    size_t row_bytes = lc_wtype_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++)
        lc_wtype_quantize_row((unsigned char *)e->half + r * row_bytes, type, src + r * cols, cols);
    return lc_gguf_write_tensor_part(w, e->half, row_bytes * (size_t)rows);
}

static lc_status write_job(lc_gguf_exporter *e, lc_gguf_writer *w, const job *j) {
    const lc_model *m = e->m;
    size_t n = (size_t)j->shape[0] * (j->n_dims >= 2 ? (size_t)j->shape[1] : 1);
    const float *src = j->data;
    switch (j->src) {
    case SRC_VALUES: break;
    case SRC_ROPE_FREQS:
        llama3_rope_factors(&m->cfg, e->buf);
        src = e->buf;
        break;
    case SRC_EXPERTS: { // expert by expert, each merged with its adapter
        lc_status st = LC_STATUS_OK;
        for (int x = 0; x < m->cfg.n_experts && !st; x++) {
            const lc_linear *lin = lc_model_expert_linear(m, j->layer, x, j->proj);
            lc_export_merge_weight(e->buf, lin, lc_lora_get_expert(e->lora, j->layer, x, j->proj));
            st = lc_gguf_write_rows(e, w, j->type, e->buf, lin->out, lin->in);
        }
        return st;
    }
    case SRC_WEIGHT:
        lc_export_merge_weight(e->buf, j->weight, j->adapter);
        src = e->buf;
        break;
    case SRC_LINEAR:
    case SRC_BIAS: {
        const lc_linear *lin = &m->layers[j->layer].lin[j->lin];
        // The adapter is merged in the checkpoint's row order, before any reordering.
        if (j->src == SRC_LINEAR) lc_export_merge_linear(e->buf, m, e->lora, j->layer, j->lin);
        else memcpy(e->buf, lin->bias, n * sizeof *e->buf);
        src = lc_gguf_reorder_rows(e, j->lin, lin->out, j->src == SRC_LINEAR ? lin->in : 1);
        break;
    }
    }
    if (j->type == LC_WTYPE_F32) return lc_gguf_write_tensor_data(w, src, n * sizeof(float));
    return lc_gguf_write_rows(e, w, j->type, src, j->shape[0], j->shape[1]);
}

// ---------------------------------------------------------------- metadata

void lc_gguf_model_name(const char *model_dir, char *out, size_t cap) {
    const char *d = model_dir && *model_dir ? model_dir : "model";
    size_t len = strlen(d);
    while (len > 1 && d[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && d[start - 1] != '/') start--;
    if (len - start > 5 && !strncmp(d + len - 5, ".gguf", 5) && !lc_dir_exists(d)) len -= 5; // a GGUF base's file
    if (len - start == 0 || (len - start == 1 && d[start] == '.')) {
        snprintf(out, cap, "model");
        return;
    }
    snprintf(out, cap, "%.*s", (int)(len - start), d + start);
}

// The id of tokenizer_config.json's `key` token (a string or {"content": ...}), or -1.
static int32_t config_token(const cJSON *root, const char *key, const lc_tokenizer *tok) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsObject(p)) p = cJSON_GetObjectItemCaseSensitive(p, "content");
    return cJSON_IsString(p) ? lc_tokenizer_find(tok, p->valuestring) : -1;
}

// Optional extras from tokenizer_config.json: the BOS, EOS and pad token ids
// (-1 when not named) and the chat template.
static lc_status read_tokenizer_config(const char *path, const lc_tokenizer *tok, int32_t ids[3],
                                       char **chat_template) {
    ids[0] = ids[1] = ids[2] = -1;
    *chat_template = NULL;
    if (!lc_file_exists(path)) return LC_STATUS_OK;
    cJSON *root;
    lc_status st = lc_json_load_file(path, GGUF_JSON_MAX, &root);
    if (st) return st;
    ids[0] = config_token(root, "bos_token", tok);
    ids[1] = config_token(root, "eos_token", tok);
    ids[2] = config_token(root, "pad_token", tok);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(t) && !(*chat_template = strdup(t->valuestring)))
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    cJSON_Delete(root);
    return st;
}

// Phi-3's original_max_position_embeddings from model_dir/config.json (the
// model config does not keep it): max_position_embeddings when absent.
static lc_status phi3_original_context(const char *model_dir, const lc_model_config *c, uint32_t *out) {
    char path[4096];
    *out = (uint32_t)c->max_position_embeddings;
    lc_status st = lc_path_join(path, sizeof path, model_dir, "config.json");
    if (st || !lc_file_exists(path)) return st;
    cJSON *root;
    if ((st = lc_json_load_file(path, 1 << 20, &root))) return st;
    int64_t v;
    st = lc_json_get_int(root, "original_max_position_embeddings", path, c->max_position_embeddings, &v);
    cJSON_Delete(root);
    if (st) return st;
    if (v < 1 || v > (1 << 24))
        return lc_error(LC_STATUS_INPUT, "%s: \"original_max_position_embeddings\" is %lld, outside 1..%d", path,
                        (long long)v, 1 << 24);
    *out = (uint32_t)v;
    return LC_STATUS_OK;
}

static lc_status export_metadata(lc_gguf_writer *w, const char *model_dir, const lc_model *m, const lc_tokenizer *tok,
                                 lc_dtype dtype, const lc_gguf_family *fam) {
    const lc_model_config *c = &m->cfg;
    const char *arch = fam->arch;
    char key[128], name[256], path[4096];
    lc_status st;
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    lc_gguf_model_name(model_dir, name, sizeof name);
    uint32_t file_type = dtype == LC_DTYPE_F32    ? LC_GGUF_FILE_TYPE_ALL_F32
                         : dtype == LC_DTYPE_F16  ? LC_GGUF_FILE_TYPE_MOSTLY_F16
                         : dtype == LC_DTYPE_BF16 ? LC_GGUF_FILE_TYPE_MOSTLY_BF16
                                                  : LC_GGUF_FILE_TYPE_MOSTLY_Q8_0;
    if ((st = lc_gguf_set_str(w, "general.architecture", arch))) return st;
    if ((st = lc_gguf_set_str(w, "general.type", "model"))) return st;
    if ((st = lc_gguf_set_str(w, "general.name", name))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers))) return st;
    // GPT-2: position_embd has context_length rows.
    if ((st = lc_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size))) return st;
    // The real MLP width (GPT-2's n_inner, Falcon's ffn_hidden_size), which the loader sizes ffn_up by.
    if ((st = lc_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads))) return st;
    // Falcon-7B's multi-query attention: 1.
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads))) return st;
    if (fam->rope && (st = lc_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta))) return st;
    if (fam->rms) st = lc_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    else st = lc_gguf_set_f32(w, KEY("attention.layer_norm_epsilon"), c->norm_eps);
    if (st) return st;
    if (fam->head_dim_keys || c->head_dim * c->n_heads != c->hidden_size) {
        if ((st = lc_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim))) return st;
    }
    if ((st = lc_gguf_set_u32(w, "general.file_type", file_type))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size))) return st;
    if (fam->rope) {
        if ((st = lc_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->rope_dim))) return st;
        if (c->rope_scaling == LC_ROPE_SCALING_LINEAR) {
            if ((st = lc_gguf_set_str(w, KEY("rope.scaling.type"), "linear"))) return st;
            if ((st = lc_gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor))) return st;
        }
    }
    if (c->arch == LC_ARCH_GEMMA2) {
        if ((st = lc_gguf_set_f32(w, KEY("attn_logit_softcapping"), c->attn_softcap))) return st;
        if ((st = lc_gguf_set_f32(w, KEY("final_logit_softcapping"), c->final_softcap))) return st;
        // No window: one as long as the context, which masks nothing.
        uint32_t window = (uint32_t)(c->sliding_window > 0 ? c->sliding_window : c->max_position_embeddings);
        if ((st = lc_gguf_set_u32(w, KEY("attention.sliding_window"), window))) return st;
    }
    if (c->arch == LC_ARCH_PHI3) {
        // Both always written: older loaders refuse a Phi-3 without sliding_window (0: none).
        uint32_t orig;
        if ((st = phi3_original_context(model_dir, c, &orig))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("rope.scaling.original_context_length"), orig))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window))) return st;
    }
    if (fam->moe) {
        if ((st = lc_gguf_set_u32(w, KEY("expert_count"), (uint32_t)c->n_experts))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)c->experts_per_tok))) return st;
    }
    if (c->arch == LC_ARCH_QWEN2_MOE) {
        if ((st = lc_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->moe_ff))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)c->shared_ff))) return st;
    }
    if (c->arch == LC_ARCH_OLMO && c->clip_qkv > 0.0f &&
        (st = lc_gguf_set_f32(w, KEY("attention.clamp_kqv"), c->clip_qkv)))
        return st;
#undef KEY

    // Special ids as the converter's SpecialVocab picks them: tokenizer_config.json's
    // tokens, else config.json's ids, else what the tokenizer itself names.
    int32_t ids[3];
    char *chat_template = NULL;
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer_config.json"))) return st;
    if ((st = read_tokenizer_config(path, tok, ids, &chat_template))) return st;
    int32_t bos = ids[0] >= 0 ? ids[0] : c->bos_token_id >= 0 ? c->bos_token_id : lc_tokenizer_bos(tok);
    int32_t eos = ids[1] >= 0 ? ids[1] : c->eos_token_id >= 0 ? c->eos_token_id : lc_tokenizer_eos(tok);
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer.json"))) goto out;
    if ((st = lc_gguf_add_vocab_ids(w, tok, path, c->vocab_size, bos, eos, ids[2], arch))) goto out;
    if (chat_template && (st = lc_gguf_set_str(w, "tokenizer.chat_template", chat_template))) goto out;
    st = lc_gguf_set_u32(w, "general.quantization_version", 2);
out:
    free(chat_template);
    return st;
}

// ---------------------------------------------------------------- export

lc_status lc_export_gguf(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         const lc_tokenizer *tok, lc_dtype dtype) {
    const lc_model_config *c = &m->cfg;
    if (dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_F16 && dtype != LC_DTYPE_BF16 && dtype != (lc_dtype)LC_WTYPE_Q8_0)
        return lc_error(LC_STATUS_USAGE, "%s: GGUF export writes f32, f16, bf16 or q8_0", out_path);
    if (m->gguf) return lc_gguf_export_from_base(out_path, m, lora, dtype);
    lc_gguf_exporter e = {.m = m, .lora = lora, .out_path = out_path, .dtype = dtype};
    lc_status st = lc_gguf_family_of(m, out_path, &e.fam);
    if (st) return st;
    if (c->qkv != LC_QKV_LAYOUT_SEPARATE) { // the gather map covers the fused rows exactly
        int64_t rows = (int64_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
        for (int l = 0; l < c->n_layers; l++)
            if (!m->qkv_cols || m->layers[l].lin[LC_LINEAR_KIND_QKV].out != rows)
                return lc_error(LC_STATUS_USAGE, "%s: the fused query/key/value projection of layer %d has %d rows, "
                                "want %lld", out_path, l, m->layers[l].lin[LC_LINEAR_KIND_QKV].out, (long long)rows);
    }
    lc_tokenizer *own_tok = NULL;
    if (!tok) {
        if ((st = lc_tokenizer_load_dir(&own_tok, model_dir))) return st;
        tok = own_tok;
    }

    lc_gguf_writer *w = NULL;
    e.cap_jobs = 12 + (size_t)c->n_layers * (2 * 4 + 2 * LC_LINEAR_KIND_COUNT + 2 + 2 + 2 * LC_EXPERT_PROJ_COUNT + 2);
    e.jobs = malloc(e.cap_jobs * sizeof *e.jobs);
    if (!e.jobs) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", out_path);
        goto done;
    }
    plan_jobs(&e);
    if (e.overflow) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: more tensors than planned for", out_path);
        goto done;
    }
    size_t max_all = (size_t)c->head_dim;
    for (size_t i = 0; i < e.n_jobs; i++) {
        const job *j = &e.jobs[i];
        size_t n = j->n_dims == 3 ? (size_t)j->shape[1] * (size_t)j->shape[2] : (size_t)j->shape[0] * (size_t)j->shape[1];
        if (n > max_all) max_all = n;
    }
    e.buf = malloc(max_all * sizeof *e.buf);
    e.tmp = malloc(max_all * sizeof *e.tmp);
    e.half = dtype == LC_DTYPE_F32 ? NULL : malloc(max_all * sizeof *e.half);
    if (!e.buf || !e.tmp || (dtype != LC_DTYPE_F32 && !e.half)) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory (%zu-element buffers)", out_path, max_all);
        goto done;
    }

    if ((st = lc_gguf_writer_new(&w, out_path))) goto done;
    if ((st = export_metadata(w, model_dir, m, tok, dtype, &e.fam))) goto done;
    for (size_t i = 0; i < e.n_jobs; i++) {
        job *j = &e.jobs[i];
        j->type = j->f32 ? LC_WTYPE_F32 : (lc_wtype)dtype;
        // Q8_0 needs rows of whole blocks; llama.cpp's converter falls back to F16.
        if (j->shape[j->n_dims - 1] % lc_wtype_block(j->type)) j->type = LC_WTYPE_F16;
        uint32_t type = lc_wtype_ggml(j->type);
        if ((st = lc_gguf_add_tensor(w, j->name, type, j->n_dims, j->shape))) goto done;
    }
    if ((st = lc_gguf_write_header(w))) goto done;
    for (size_t i = 0; i < e.n_jobs; i++)
        if ((st = write_job(&e, w, &e.jobs[i]))) goto done;
    st = lc_gguf_writer_finish(w);
done:
    lc_gguf_writer_free(w);
    free(e.jobs);
    free(e.buf);
    free(e.tmp);
    free(e.half);
    lc_tokenizer_free(own_tok);
    return st;
}
