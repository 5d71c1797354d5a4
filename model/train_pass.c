#include "model/train_pass.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/kernels.h"

lc_status lc_train_pass_init(lc_train_pass *p, const lc_model *m, bool checkpointing) {
    memset(p, 0, sizeof *p);
    p->n_layers = m->cfg.n_layers;
    p->checkpointing = checkpointing;
    int n_graphs = checkpointing ? 1 : p->n_layers;
    p->layers = calloc((size_t)n_graphs, sizeof *p->layers);
    if (!p->layers) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    lc_arena_init(&p->grads, 16u << 20);
    lc_arena_init(&p->transient.arena, 16u << 20);
    for (int i = 0; i < n_graphs; i++) {
        lc_graph_init(&p->layers[i], true);
        p->layers[i].grad_arena = &p->grads;
        p->layers[i].transient = &p->transient;
    }
    lc_graph_init(&p->keep, false);
    lc_graph_init(&p->head, true);
    p->head.grad_arena = &p->grads;
    return LC_STATUS_OK;
}

void lc_train_pass_set_compute(lc_train_pass *p, lc_compute c) {
    int n_graphs = p->checkpointing ? 1 : p->n_layers;
    for (int i = 0; i < n_graphs; i++) p->layers[i].compute = c;
    p->keep.compute = c;
    p->head.compute = c;
}

void lc_train_pass_free(lc_train_pass *p) {
    int n_graphs = p->checkpointing ? 1 : p->n_layers;
    for (int i = 0; p->layers && i < n_graphs; i++) lc_graph_free(&p->layers[i]);
    free(p->layers);
    lc_graph_free(&p->keep);
    lc_graph_free(&p->head);
    lc_arena_free(&p->grads);
    lc_arena_free(&p->transient.arena);
    memset(p, 0, sizeof *p);
}

// Every arena of the pass, in one list for the memory report and the plan.
#define LC_PASS_MAX_ARENAS(p) ((p)->n_layers + 4)
static int pass_arenas(lc_train_pass *p, lc_arena **out) {
    int n = 0, n_graphs = p->checkpointing ? 1 : p->n_layers;
    for (int i = 0; p->layers && i < n_graphs; i++) out[n++] = &p->layers[i].arena;
    out[n++] = &p->keep.arena;
    out[n++] = &p->head.arena;
    out[n++] = &p->grads;
    out[n++] = &p->transient.arena;
    return n;
}

lc_train_pass_memory lc_train_pass_get_memory(const lc_train_pass *p) {
    lc_train_pass_memory m = {0};
    lc_arena *arenas[LC_PASS_MAX_ARENAS(p)];
    int n = pass_arenas((lc_train_pass *)p, arenas);
    for (int i = 0; i < n; i++) {
        m.held_bytes += arenas[i]->held_bytes;
        m.n_maps += arenas[i]->n_maps;
        m.n_chunks += arenas[i]->n_chunks;
    }
    return m;
}

lc_status lc_train_pass_plan(lc_train_pass *p, const lc_model *m, lc_lora *lora, int B, int T) {
    size_t n = (size_t)B * (size_t)T;
    int32_t *tokens = calloc(n, sizeof *tokens), *targets = calloc(n, sizeof *targets);
    int32_t *pos = calloc(n, sizeof *pos), *seg = calloc(n, sizeof *seg);
    lc_status st = LC_STATUS_OK;
    if (!tokens || !targets || !pos || !seg) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    } else {
        // Positions stay 0: the plan needs the shape, not the values, and a
        // packed row may be longer than a learned position table.
        lc_forward_input in = {tokens, B, T, pos, seg, 0};
        double loss = 0.0;
        int counted = 0;
        st = lc_train_pass_run(p, m, lora, &in, targets, 0.0f, &loss, &counted);
    }
    free(tokens);
    free(targets);
    free(pos);
    free(seg);
    if (lora->grads) memset(lora->grads, 0, sizeof(float) * lora->n_params);
    if (st) return st;
    // Each arena becomes one chunk for this shape (a rewind to the start
    // makes it so), its pages touched now: the pass's memory is held from
    // here on, not gained step by step. The tapes restart with the next run.
    lc_arena *arenas[LC_PASS_MAX_ARENAS(p)];
    int n_arenas = pass_arenas(p, arenas);
    for (int i = 0; i < n_arenas; i++) {
        lc_arena_reset(arenas[i], (lc_arena_mark){0});
        lc_arena_prefault(arenas[i]);
    }
    p->transient.holder = NULL;
    return LC_STATUS_OK;
}

// Moves t's gradient out of the gradient arena into dst and rewinds the arena.
static void carry_gradient(lc_train_pass *p, lc_tensor *t, float *dst) {
    memcpy(dst, t->grad, sizeof(float) * (size_t)t->rows * t->cols);
    lc_arena_reset(&p->grads, (lc_arena_mark){0});
    t->grad = dst;
}

static lc_status status_of(lc_train_pass *p, lc_graph *g) {
    if (p->keep.arena.failed) return lc_graph_status(&p->keep);
    if (p->transient.arena.failed) return lc_error(LC_STATUS_RUNTIME, "out of memory for activations");
    return lc_graph_status(g);
}

lc_status lc_train_pass_run(lc_train_pass *p, const lc_model *m, const lc_lora *lora, const lc_forward_input *in,
                            const int32_t *targets, float norm, double *loss_sum, int *counted) {
    const lc_model_config *cfg = &m->cfg;
    int N = in->B * in->T, C = cfg->hidden_size, L = cfg->n_layers;
    lc_status st = lc_forward_check_tokens(m, in);
    if (st) return st;
    lc_graph_reset(&p->keep);
    lc_arena_reset(&p->grads, (lc_arena_mark){0});
    p->transient.holder = NULL;
    const int32_t *pos;
    const float *cs;
    if ((st = lc_forward_positions(&p->keep, m, in, &pos, &cs))) return st;
    lc_tensor *x = lc_model_embed(&p->keep, m, in, pos);
    lc_tensor **ins = lc_arena_alloc(&p->keep.arena, sizeof *ins * (size_t)(L + 1));
    float *ping = lc_arena_alloc(&p->keep.arena, sizeof(float) * (size_t)N * C);
    float *pong = lc_arena_alloc(&p->keep.arena, sizeof(float) * (size_t)N * C);
    if (!x || !ins || !ping || !pong) return lc_graph_status(&p->keep);
    ins[0] = x; // the embeddings are frozen: no gradient flows into them

    // Forward. ins[l] is layer l's input; ins[L] the last layer's output.
    for (int l = 0; l < L; l++) {
        lc_graph *g = &p->layers[p->checkpointing ? 0 : l];
        lc_graph_reset(g);
        lc_block_ctx c = {g, m, lora, NULL, in, pos, cs};
        if (!p->checkpointing) {
            if (!(ins[l + 1] = lc_block_forward(&c, l, ins[l]))) return status_of(p, g);
            continue;
        }
        // Checkpointing: run without a tape, keep only the output.
        g->record = false;
        lc_tensor *y = lc_block_forward(&c, l, ins[l]);
        g->record = true;
        lc_tensor *kept = lc_tensor_new(&p->keep, N, C);
        if (!y || !kept) return status_of(p, g);
        memcpy(kept->data, y->data, sizeof(float) * (size_t)N * C);
        kept->requires_grad = true;
        ins[l + 1] = kept;
    }

    // Head: final norm and cross-entropy; its backward seeds the residual gradient.
    lc_graph_reset(&p->head);
    lc_tensor *top = ins[L];
    lc_tensor *xn = lc_model_norm(&p->head, m, &m->final_norm, top);
    if (!xn) return status_of(p, &p->head);
    if ((st = lc_op_cross_entropy_w(&p->head, xn, &m->lm_head, cfg->final_softcap, targets, norm,
                                  loss_sum, counted)))
        return st;
    if ((st = lc_graph_backward(&p->head))) return st;
    if (!top->grad) return LC_STATUS_OK; // no target in this micro-batch
    carry_gradient(p, top, ping);

    // Backward, last layer first.
    for (int l = L - 1; l >= 0; l--) {
        lc_graph *g = &p->layers[p->checkpointing ? 0 : l];
        lc_tensor *out = ins[l + 1];
        if (p->checkpointing) {
            // Record the layer again from its kept input, then hand the
            // incoming gradient to the recorded output.
            lc_graph_reset(g);
            lc_block_ctx c = {g, m, lora, NULL, in, pos, cs};
            lc_tensor *y = lc_block_forward(&c, l, ins[l]);
            if (!y) return status_of(p, g);
            y->grad = out->grad;
            out = y;
        }
        if ((st = lc_graph_backward(g))) return st;
        if (l > 0) {
            if (!ins[l]->grad) return LC_STATUS_OK;
            float *dst = ins[l + 1]->grad == ping ? pong : ping;
            carry_gradient(p, ins[l], dst);
        }
    }
    return LC_STATUS_OK;
}
