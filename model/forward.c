#include "model/forward.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/kernels.h"

lc_status lc_forward_state_init(lc_forward_state *s, const lc_model *m, int max_batch, int max_tokens, int max_rows) {
    const lc_model_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    s->max_batch = max_batch;
    s->max_tokens = max_tokens;
    s->max_rows = max_rows;
    size_t R = (size_t)max_rows, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * max_batch * max_tokens * KVD;
    s->x = malloc(sizeof(float) * R * C);
    s->xn = malloc(sizeof(float) * R * C);
    s->q = malloc(sizeof(float) * R * QD);
    s->kv_new = malloc(sizeof(float) * R * KVD);
    s->att = malloc(sizeof(float) * R * QD);
    s->gate = malloc(sizeof(float) * R * F);
    s->up = malloc(sizeof(float) * R * F);
    s->k_cache = malloc(sizeof(float) * cache);
    s->v_cache = malloc(sizeof(float) * cache);
    s->scores = malloc(sizeof(float) * (size_t)max_tokens);
    s->pos = malloc(sizeof(int32_t) * R);
    s->logits = malloc(sizeof(float) * R * (size_t)c->vocab_size);
    if (!s->x || !s->xn || !s->q || !s->kv_new || !s->att || !s->gate || !s->up || !s->k_cache || !s->v_cache ||
        !s->scores || !s->pos || !s->logits) {
        lc_forward_state_free(s);
        return lc_error(LC_STATUS_RUNTIME, "out of memory planning activations for %d x %d tokens", max_batch,
                        max_tokens);
    }
    return LC_STATUS_OK;
}

void lc_forward_state_free(lc_forward_state *s) {
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->kv_new);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->k_cache);
    free(s->v_cache);
    free(s->scores);
    free(s->pos);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

static void linear(float *out, const float *x, const lc_linear *lin, int N) {
    lc_matmul_forward(out, x, lin->w, lin->bias, N, lin->in, lin->out);
}

// Copies rows [B*T, KVD] of new keys/values into cache positions pos0.. of each sequence.
static void cache_store(float *cache, const float *rows, int B, int T, int Tcap, int pos0, int KVD) {
    for (int b = 0; b < B; b++)
        memcpy(cache + ((size_t)b * Tcap + pos0) * KVD, rows + (size_t)b * T * KVD, sizeof(float) * (size_t)T * KVD);
}

lc_status lc_forward(lc_forward_state *s, const lc_model *m, const int32_t *tokens, int B, int T, int pos0,
                     lc_logits_mode mode) {
    const lc_model_config *c = &m->cfg;
    int N = B * T;
    if (B > s->max_batch || N > s->max_rows || pos0 < 0 || pos0 + T > s->max_tokens)
        return lc_error(LC_STATUS_RUNTIME, "sequence of %d tokens at position %d exceeds the planned %d", T, pos0,
                        s->max_tokens);
    for (int i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lc_error(LC_STATUS_INPUT, "token id %d outside the vocabulary of %d", tokens[i], c->vocab_size);
    int C = c->hidden_size, H = c->n_heads, KVH = c->n_kv_heads, D = c->head_dim, F = c->intermediate_size;
    int KVD = KVH * D, Tcap = s->max_tokens;
    size_t layer_cache = (size_t)s->max_batch * Tcap * KVD;

    lc_embedding_forward(s->x, tokens, m->embed, N, C);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) s->pos[b * T + t] = pos0 + t;

    for (int l = 0; l < c->n_layers; l++) {
        const lc_layer *L = &m->layers[l];
        float *kc = s->k_cache + l * layer_cache, *vc = s->v_cache + l * layer_cache;

        lc_rmsnorm_forward(s->xn, NULL, s->x, L->attn_norm, c->rms_norm_eps, N, C);
        linear(s->q, s->xn, &L->lin[LC_LINEAR_KIND_Q], N);
        lc_rope_forward(s->q, s->pos, m->inv_freq, N, H, D);
        linear(s->kv_new, s->xn, &L->lin[LC_LINEAR_KIND_K], N);
        lc_rope_forward(s->kv_new, s->pos, m->inv_freq, N, KVH, D);
        cache_store(kc, s->kv_new, B, T, Tcap, pos0, KVD);
        linear(s->kv_new, s->xn, &L->lin[LC_LINEAR_KIND_V], N);
        cache_store(vc, s->kv_new, B, T, Tcap, pos0, KVD);
        lc_attention_forward(s->att, s->q, kc, vc, s->scores, B, T, Tcap, H, KVH, D, pos0, c->sliding_window);
        linear(s->xn, s->att, &L->lin[LC_LINEAR_KIND_O], N);
        lc_add_forward(s->x, s->xn, (size_t)N * C);

        lc_rmsnorm_forward(s->xn, NULL, s->x, L->mlp_norm, c->rms_norm_eps, N, C);
        linear(s->gate, s->xn, &L->lin[LC_LINEAR_KIND_GATE], N);
        linear(s->up, s->xn, &L->lin[LC_LINEAR_KIND_UP], N);
        lc_swiglu_forward(s->gate, s->gate, s->up, (size_t)N * F);
        linear(s->xn, s->gate, &L->lin[LC_LINEAR_KIND_DOWN], N);
        lc_add_forward(s->x, s->xn, (size_t)N * C);
    }

    if (mode == LC_LOGITS_MODE_LAST) {
        // Only each sequence's last row feeds the head: gather them first.
        for (int b = 0; b < B; b++)
            memmove(s->x + (size_t)b * C, s->x + ((size_t)b * T + T - 1) * C, sizeof(float) * (size_t)C);
        N = B;
    }
    lc_rmsnorm_forward(s->xn, NULL, s->x, m->final_norm, c->rms_norm_eps, N, C);
    lc_matmul_forward(s->logits, s->xn, m->lm_head, NULL, N, C, c->vocab_size);
    return LC_STATUS_OK;
}
