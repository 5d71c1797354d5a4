#include "model/forward.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/kernels.h"

lc_status lc_forward_positions(lc_graph *g, const lc_model *m, const lc_forward_input *in, const int32_t **pos,
                               const float **rope_cs) {
    const int32_t *p = in->pos;
    if (!p) {
        int32_t *own = lc_arena_alloc(&g->arena, sizeof(int32_t) * (size_t)in->B * in->T);
        if (!own) return lc_graph_status(g);
        for (int b = 0; b < in->B; b++)
            for (int t = 0; t < in->T; t++) own[b * in->T + t] = in->pos0 + t;
        p = own;
    }
    *pos = p;
    *rope_cs = NULL;
    if (m->cfg.pos != LC_POS_KIND_ROPE) return LC_STATUS_OK;
    *rope_cs = lc_graph_rope_table(g, p, m->inv_freq, in->B * in->T, m->cfg.rope_dim);
    return *rope_cs ? LC_STATUS_OK : lc_graph_status(g);
}

lc_status lc_forward_check_tokens(const lc_model *m, const lc_forward_input *in) {
    for (int i = 0; i < in->B * in->T; i++)
        if (in->tokens[i] < 0 || in->tokens[i] >= m->cfg.vocab_size)
            return lc_error(LC_STATUS_INPUT, "token id %d outside the vocabulary of %d", in->tokens[i],
                            m->cfg.vocab_size);
    if (m->pos_embed) {
        // A learned position table ends: later positions have no embedding.
        // Given positions (packed rows restart them per example) are the
        // ones looked up, whatever the row length.
        int P = m->cfg.max_position_embeddings, last = in->pos ? -1 : in->pos0 + in->T - 1;
        for (int i = 0; in->pos && i < in->B * in->T; i++)
            if (in->pos[i] > last) last = in->pos[i];
        if (last >= P)
            return lc_error(LC_STATUS_INPUT, "position %d is beyond the model's %d learned positions", last, P);
    }
    return LC_STATUS_OK;
}

lc_tensor *lc_model_norm(lc_graph *g, const lc_model *m, const lc_norm *n, lc_tensor *x) {
    if (m->cfg.norm == LC_NORM_KIND_LAYER) return lc_op_layernorm(g, x, n->w, n->b, m->cfg.norm_eps);
    return lc_op_rmsnorm(g, x, n->w, m->cfg.norm_eps);
}

lc_tensor *lc_model_embed(lc_graph *g, const lc_model *m, const lc_forward_input *in, const int32_t *pos) {
    const lc_model_config *cfg = &m->cfg;
    int N = in->B * in->T, C = cfg->hidden_size;
    lc_tensor *x = lc_tensor_new(g, N, C);
    if (!x) return NULL;
    if (m->embed.type == LC_WTYPE_F32) lc_embedding_forward(x->data, in->tokens, m->embed.data, N, C);
    else // a stored type: dequantize the rows looked up
        for (int n = 0; n < N; n++) lc_weight_dequant(x->data + (size_t)n * C, &m->embed, in->tokens[n], 1, 0, C, C);
    if (cfg->embed_scale != 1.0f)
        for (size_t i = 0; i < (size_t)N * C; i++) x->data[i] *= cfg->embed_scale;
    if (m->pos_embed)
        for (int n = 0; n < N; n++) lc_add_forward(x->data + (size_t)n * C, m->pos_embed + (size_t)pos[n] * C, C);
    if (cfg->embed_norm) x = lc_model_norm(g, m, &m->embed_norm, x);
    return x; // frozen inputs: no gradient flows into the embeddings
}

static lc_tensor *linear(const lc_block_ctx *c, int l, lc_linear_kind kind, lc_tensor *x) {
    const lc_linear *lin = &c->m->layers[l].lin[kind];
    const lc_lora_ref *lora = lc_lora_get(c->lora, l, kind);
    return lc_op_linear_parts(c->g, x, &lin->w, 1, &lin->out, &lin->bias, &lora);
}

// Copies rows [B*T, KVD] into cache positions pos0.. of each sequence and
// returns the layer's whole cache as a tensor [B*Tcap, KVD].
static lc_tensor *cache_append(const lc_block_ctx *c, float *layer_cache, const lc_tensor *rows) {
    int B = c->in->B, T = c->in->T, KVD = rows->cols, Tcap = c->cache->max_tokens;
    for (int b = 0; b < B; b++)
        memcpy(layer_cache + ((size_t)b * Tcap + c->in->pos0) * KVD, rows->data + (size_t)b * T * KVD,
               sizeof(float) * (size_t)T * KVD);
    return lc_tensor_wrap(c->g, layer_cache, B * Tcap, KVD);
}

// Whether linears k0..k0+n-1 of a layer have their weights stacked row-wise
// in one buffer (the loader stacks q/k/v and gate/up when it converts them):
// then one GEMM computes them all.
static bool stacked(const lc_layer *L, lc_linear_kind k0, int n) {
    const lc_linear *a = &L->lin[k0];
    size_t row_bytes = lc_wtype_row_bytes(a->w.type, a->in), rows = 0;
    for (int i = 0; i < n; i++) {
        const lc_linear *b = &L->lin[k0 + i];
        if (b->out == 0 || b->in != a->in || b->w.type != a->w.type) return false;
        if ((const unsigned char *)b->w.data != (const unsigned char *)a->w.data + rows * row_bytes) return false;
        rows += (size_t)b->out;
    }
    return true;
}

// Linears k0..k0+n-1 of layer l as one GEMM over their stacked weights.
static lc_tensor *linear_stacked(const lc_block_ctx *c, int l, lc_linear_kind k0, int n, lc_tensor *x) {
    const lc_linear *lin = &c->m->layers[l].lin[k0];
    int outs[LC_LINEAR_MAX_PARTS];
    const float *biases[LC_LINEAR_MAX_PARTS];
    const lc_lora_ref *loras[LC_LINEAR_MAX_PARTS];
    lc_weight w = lin->w;
    w.rows = 0;
    for (int i = 0; i < n; i++) {
        outs[i] = lin[i].out;
        biases[i] = lin[i].bias;
        loras[i] = lc_lora_get(c->lora, l, (lc_linear_kind)(k0 + i));
        w.rows += lin[i].out;
    }
    return lc_op_linear_parts(c->g, x, &w, n, outs, biases, loras);
}

// Self-attention of the normed input h, through the output projection.
static lc_tensor *attention(const lc_block_ctx *c, int l, lc_tensor *h) {
    const lc_model *m = c->m;
    const lc_model_config *cfg = &m->cfg;
    lc_graph *g = c->g;
    int D = cfg->head_dim, q_dim = cfg->n_heads * D, kv_dim = cfg->n_kv_heads * D;
    lc_tensor *q, *k, *v;
    if (cfg->qkv == LC_QKV_LAYOUT_SEPARATE) {
        // Stacked q/k/v weights are not run as one GEMM: splitting its output
        // costs a copy of q, k and v per layer (+230 MB on the 135M shape)
        // and measured no faster (bench/, 251 vs 255 tokens/s).
        q = linear(c, l, LC_LINEAR_KIND_Q, h);
        k = linear(c, l, LC_LINEAR_KIND_K, h);
        v = linear(c, l, LC_LINEAR_KIND_V, h);
    } else {
        // One projection over the fused weight, then split by the family's
        // row layout.
        lc_tensor *qkv = linear(c, l, LC_LINEAR_KIND_QKV, h);
        q = lc_op_gather_cols(g, qkv, m->qkv_cols, q_dim);
        k = lc_op_gather_cols(g, qkv, m->qkv_cols + q_dim, kv_dim);
        v = lc_op_gather_cols(g, qkv, m->qkv_cols + q_dim + kv_dim, kv_dim);
    }
    if (m->layers[l].q_norm.w) { // OLMoE: RMSNorm over the whole projection, before the head split
        q = lc_model_norm(g, m, &m->layers[l].q_norm, q);
        k = lc_model_norm(g, m, &m->layers[l].k_norm, k);
    }
    if (cfg->clip_qkv > 0.0f) {
        q = lc_op_clamp(g, q, cfg->clip_qkv);
        k = lc_op_clamp(g, k, cfg->clip_qkv);
        v = lc_op_clamp(g, v, cfg->clip_qkv);
    }
    if (cfg->pos == LC_POS_KIND_ROPE) {
        // q and k feed only rope, whose backward needs no values: rotate in place.
        q = lc_op_rope(g, q, c->rope_cs, D, cfg->rope_dim, true);
        k = lc_op_rope(g, k, c->rope_cs, D, cfg->rope_dim, true);
    }
    if (!q || !k || !v) return NULL;
    int Tk = c->in->T;
    if (c->cache) {
        size_t layer = (size_t)l * c->cache->max_batch * c->cache->max_tokens * k->cols;
        k = cache_append(c, c->cache->k + layer, k);
        v = cache_append(c, c->cache->v + layer, v);
        Tk = c->cache->max_tokens;
    }
    lc_attention_opts opts = {
        .scale = lc_config_layer_attn_scale(cfg, l),
        .softcap = cfg->attn_softcap,
        .alibi = m->alibi,
        .window = lc_config_layer_window(cfg, l),
    };
    lc_tensor *att = lc_op_attention(g, q, k, v, c->in->seg_start, c->in->B, c->in->T, Tk, cfg->n_heads,
                                     cfg->n_kv_heads, D, c->in->pos0, &opts);
    return linear(c, l, LC_LINEAR_KIND_O, att);
}

// A frozen linear of a sparse layer (router, gate), without adapter.
static lc_tensor *linear_frozen(lc_graph *g, const lc_linear *lin, lc_tensor *x) {
    const lc_lora_ref *none = NULL;
    return lc_op_linear_parts(g, x, &lin->w, 1, &lin->out, &lin->bias, &none);
}

// One expert's gated MLP (proj: gate, up, down) on its rows x, with its
// adapters (expert e of layer l; e == n_experts: the shared expert).
static lc_tensor *expert_mlp(const lc_block_ctx *c, int l, int e, const lc_linear *proj, lc_tensor *x) {
    lc_graph *g = c->g;
    lc_tensor *t[LC_EXPERT_PROJ_COUNT];
    for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
        const lc_lora_ref *lora = lc_lora_get_expert(c->lora, l, e, (lc_expert_proj)j);
        if (j == LC_EXPERT_PROJ_DOWN) x = lc_op_glu(g, t[LC_EXPERT_PROJ_GATE], t[LC_EXPERT_PROJ_UP], c->m->cfg.act);
        t[j] = lc_op_linear_parts(g, x, &proj[j].w, 1, &proj[j].out, &proj[j].bias, &lora);
    }
    return t[LC_EXPERT_PROJ_DOWN];
}

// A sparse layer's MLP: each token's top experts weighted by the router's
// softmax, every expert one product over the rows of the tokens that chose
// it (in token order, so the result does not depend on threads or batch
// composition); plus qwen2_moe's shared expert scaled by a sigmoid gate.
static lc_tensor *moe(const lc_block_ctx *c, int l, lc_tensor *h) {
    const lc_model_config *cfg = &c->m->cfg;
    const lc_moe *moe = c->m->layers[l].moe;
    lc_graph *g = c->g;
    const lc_moe_routing *r;
    lc_tensor *w = lc_op_moe_route(g, linear_frozen(g, &moe->router, h), cfg->experts_per_tok,
                                   cfg->norm_topk_prob, &r);
    lc_tensor **ys = lc_arena_alloc(&g->arena, sizeof *ys * (size_t)cfg->n_experts);
    if (!w || !ys) return NULL;
    for (int e = 0; e < cfg->n_experts; e++) {
        int n = r->start[e + 1] - r->start[e];
        ys[e] = NULL;
        if (n == 0) continue;
        lc_tensor *xe = lc_op_gather_rows(g, h, r->rows + r->start[e], n);
        if (!(ys[e] = expert_mlp(c, l, e, moe->experts + (size_t)e * LC_EXPERT_PROJ_COUNT, xe))) return NULL;
    }
    lc_tensor *out = lc_op_moe_combine(g, w, r, ys, cfg->hidden_size);
    if (moe->shared[0].out) {
        lc_tensor *gate = linear_frozen(g, &moe->shared_gate, h);
        lc_tensor *shared = expert_mlp(c, l, cfg->n_experts, moe->shared, h);
        out = lc_op_add(g, out, lc_op_sigmoid_gate(g, shared, gate), true);
    }
    return out;
}

static lc_tensor *mlp(const lc_block_ctx *c, int l, lc_tensor *h) {
    const lc_model_config *cfg = &c->m->cfg;
    lc_graph *g = c->g;
    lc_tensor *a;
    if (c->m->layers[l].moe) return moe(c, l, h);
    if (!cfg->mlp_gated) {
        a = lc_op_act(g, linear(c, l, LC_LINEAR_KIND_UP, h), cfg->act);
    } else if (cfg->gate_up_fused) {
        a = lc_op_glu_packed(g, linear(c, l, LC_LINEAR_KIND_GATE_UP, h), cfg->act);
    } else if (stacked(&c->m->layers[l], LC_LINEAR_KIND_GATE, 2)) {
        a = lc_op_glu_packed(g, linear_stacked(c, l, LC_LINEAR_KIND_GATE, 2, h), cfg->act);
    } else {
        a = lc_op_glu(g, linear(c, l, LC_LINEAR_KIND_GATE, h), linear(c, l, LC_LINEAR_KIND_UP, h), cfg->act);
    }
    return linear(c, l, LC_LINEAR_KIND_DOWN, a);
}

lc_tensor *lc_block_forward(const lc_block_ctx *c, int l, lc_tensor *x) {
    const lc_model *m = c->m;
    const lc_model_config *cfg = &m->cfg;
    const lc_layer *L = &m->layers[l];
    lc_graph *g = c->g;
    // Branch outputs feed only the residual adds, whose backward needs no
    // values: the adds write into the branch outputs' storage.
    lc_tensor *h = lc_model_norm(g, m, &L->attn_norm, x);
    lc_tensor *a = attention(c, l, h);
    if (cfg->block == LC_BLOCK_KIND_SANDWICH) a = lc_model_norm(g, m, &L->post_attn_norm, a);
    if (cfg->block == LC_BLOCK_KIND_PARALLEL) {
        lc_tensor *hm = cfg->parallel_two_norms ? lc_model_norm(g, m, &L->mlp_norm, x) : h;
        lc_tensor *f = mlp(c, l, hm);
        return lc_op_add(g, lc_op_add(g, x, a, true), f, true);
    }
    x = lc_op_add(g, cfg->residual_from_norm ? h : x, a, true);
    h = lc_model_norm(g, m, &L->mlp_norm, x);
    lc_tensor *f = mlp(c, l, h);
    if (cfg->block == LC_BLOCK_KIND_SANDWICH) f = lc_model_norm(g, m, &L->post_mlp_norm, f);
    return lc_op_add(g, cfg->residual_from_norm ? h : x, f, true);
}

lc_status lc_model_forward_hidden(lc_graph *g, const lc_model *m, const lc_lora *lora, lc_kv_cache *cache,
                                  const lc_forward_input *in, lc_tensor **out) {
    const lc_model_config *cfg = &m->cfg;
    int N = in->B * in->T, C = cfg->hidden_size;
    *out = NULL;
    if (cache && (in->B > cache->max_batch || in->pos0 < 0 || in->pos0 + in->T > cache->max_tokens))
        return lc_error(LC_STATUS_RUNTIME, "sequence of %d tokens at position %d exceeds the planned %d", in->T,
                        in->pos0, cache->max_tokens);
    lc_status st = lc_forward_check_tokens(m, in);
    if (st) return st;
    const int32_t *pos;
    const float *cs;
    if ((st = lc_forward_positions(g, m, in, &pos, &cs))) return st;
    lc_block_ctx c = {g, m, lora, cache, in, pos, cs};

    lc_tensor *x = lc_model_embed(g, m, in, pos);
    if (!x) return lc_graph_status(g);
    for (int l = 0; l < cfg->n_layers && x; l++) {
        if (g->record) {
            x = lc_block_forward(&c, l, x);
        } else {
            // Nothing is kept for a backward: the block's activations are
            // released as soon as its output is copied back into x.
            lc_arena_mark mark = lc_arena_get_mark(&g->arena);
            lc_tensor *y = lc_block_forward(&c, l, x);
            if (y) memcpy(x->data, y->data, sizeof(float) * (size_t)N * C);
            else x = NULL;
            if (!g->arena.failed) lc_arena_reset(&g->arena, mark);
        }
    }
    if (x) *out = lc_model_norm(g, m, &m->final_norm, x);
    return lc_graph_status(g);
}

lc_status lc_forward_state_init(lc_forward_state *s, const lc_model *m, int max_batch, int max_tokens, int max_rows,
                                int logits_rows) {
    const lc_model_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    lc_graph_init(&s->graph, false);
    s->max_rows = max_rows;
    s->logits_rows = logits_rows;
    s->cache.max_batch = max_batch;
    s->cache.max_tokens = max_tokens;
    size_t cache = (size_t)c->n_layers * max_batch * max_tokens * c->n_kv_heads * c->head_dim;
    s->cache.k = malloc(sizeof(float) * cache);
    s->cache.v = malloc(sizeof(float) * cache);
    s->logits = malloc(sizeof(float) * (size_t)logits_rows * c->vocab_size);
    if (!s->cache.k || !s->cache.v || !s->logits) {
        lc_forward_state_free(s);
        return lc_error(LC_STATUS_RUNTIME, "out of memory planning a KV cache for %d x %d tokens", max_batch,
                        max_tokens);
    }
    return LC_STATUS_OK;
}

void lc_forward_state_free(lc_forward_state *s) {
    lc_graph_free(&s->graph);
    free(s->cache.k);
    free(s->cache.v);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

lc_status lc_forward(lc_forward_state *s, const lc_model *m, const int32_t *tokens, int B, int T, int pos0,
                     lc_logits_mode mode) {
    lc_forward_input in = {tokens, B, T, NULL, NULL, pos0};
    return lc_forward_input_run(s, m, &in, mode);
}

lc_status lc_forward_input_run(lc_forward_state *s, const lc_model *m, const lc_forward_input *in,
                               lc_logits_mode mode) {
    const lc_model_config *c = &m->cfg;
    int B = in->B, T = in->T, N = B * T, C = c->hidden_size;
    int rows = mode == LC_LOGITS_MODE_LAST ? B : N;
    if (N > s->max_rows || rows > s->logits_rows || B > s->cache.max_batch)
        return lc_error(LC_STATUS_RUNTIME, "%d token rows exceed the planned %d", N, s->max_rows);
    lc_graph_reset(&s->graph);
    lc_tensor *h;
    lc_status st = lc_model_forward_hidden(&s->graph, m, s->lora, &s->cache, in, &h);
    if (st) return st;
    const float *src = h->data;
    if (mode == LC_LOGITS_MODE_LAST) {
        // Only each sequence's last row feeds the head: gather them first.
        float *last = lc_arena_alloc(&s->graph.arena, sizeof(float) * (size_t)B * C);
        if (!last) return lc_graph_status(&s->graph);
        for (int b = 0; b < B; b++)
            memcpy(last + (size_t)b * C, h->data + ((size_t)b * T + T - 1) * C, sizeof(float) * (size_t)C);
        src = last;
    }
    lc_weight_matmul_forward(s->logits, src, &m->lm_head, rows, s->graph.compute);
    if (c->final_softcap > 0.0f) lc_softcap_forward(s->logits, NULL, c->final_softcap, rows * c->vocab_size);
    return LC_STATUS_OK;
}
