// The mixture-of-experts ops of the graph (autograd/moe.c's kernels):
// routing, per-expert row gathers, the weighted combination and the sigmoid
// row gate.
#include <string.h>

#include "autograd/graph.h"
#include "autograd/graph_internal.h"

lc_tensor *lc_op_moe_route(lc_graph *g, lc_tensor *logits, int k, bool renorm, const lc_moe_routing **rp) {
    *rp = NULL;
    if (!logits) return NULL;
    int N = logits->rows, E = logits->cols;
    lc_moe_routing *r = lc_arena_alloc(&g->arena, sizeof *r);
    lc_tensor *w = lc_tensor_new(g, N, k);
    float *p = lc_arena_alloc(&g->arena, sizeof(float) * (size_t)N * E);
    int32_t *ints = lc_arena_alloc(&g->arena, sizeof(int32_t) * ((size_t)3 * N * k + 2 * (size_t)E + 1));
    if (!r || !w || !p || !ints) return NULL;
    size_t nk = (size_t)N * k;
    *r = (lc_moe_routing){N, E, k, ints, ints + nk, ints + nk + E + 1, ints + 2 * nk + E + 1, ints + 3 * nk + E + 1};
    lc_moe_route_forward(w->data, p, r, logits->data, renorm);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_MOE_ROUTE, w, logits, &e)) return NULL;
    if (e) {
        e->saved[0] = p;
        e->aux = r;
        e->dims[0] = renorm;
    }
    *rp = r;
    return w;
}

lc_tensor *lc_op_gather_rows(lc_graph *g, lc_tensor *x, const int32_t *rows, int n) {
    if (!x) return NULL;
    lc_tensor *y = lc_tensor_new(g, n, x->cols);
    if (!y) return NULL;
    lc_gather_rows_forward(y->data, x->data, rows, n, x->cols);
    lc_tape_entry *e;
    if (!lc_graph_record_unary(g, LC_OP_GATHER_ROWS, y, x, &e)) return NULL;
    if (e) e->ints = rows;
    return y;
}

typedef struct moe_combine {
    const lc_moe_routing *r;
    lc_tensor **ys; // [E]
} moe_combine;

lc_tensor *lc_op_moe_combine(lc_graph *g, lc_tensor *w, const lc_moe_routing *r, lc_tensor *const *ys, int C) {
    if (!w || !r) return NULL;
    lc_tensor *y = lc_tensor_new(g, r->N, C);
    moe_combine *mc = lc_arena_alloc(&g->arena, sizeof *mc);
    lc_tensor **kept = lc_arena_alloc(&g->arena, sizeof *kept * (size_t)r->E);
    if (!y || !mc || !kept) return NULL;
    memset(y->data, 0, sizeof(float) * (size_t)r->N * C);
    bool grad = w->requires_grad;
    for (int e = 0; e < r->E; e++) {
        kept[e] = ys[e];
        if (!ys[e]) continue;
        lc_moe_combine_forward(y->data, ys[e]->data, w->data, r, e, C);
        grad |= ys[e]->requires_grad;
    }
    y->requires_grad = grad;
    if (g->record && grad) {
        lc_tape_entry *t = lc_graph_tape_push(g, LC_OP_MOE_COMBINE, y);
        if (!t) return NULL;
        *mc = (moe_combine){r, kept};
        t->in[0] = w;
        t->aux = mc;
    }
    return y;
}

lc_tensor *lc_op_sigmoid_gate(lc_graph *g, lc_tensor *y, lc_tensor *s) {
    if (!y || !s) return NULL;
    lc_tensor *out = lc_tensor_new(g, y->rows, y->cols);
    if (!out) return NULL;
    lc_sigmoid_gate_forward(out->data, y->data, s->data, y->rows, y->cols);
    out->requires_grad = y->requires_grad || s->requires_grad;
    if (g->record && out->requires_grad) {
        lc_tape_entry *e = lc_graph_tape_push(g, LC_OP_SIGMOID_GATE, out);
        if (!e) return NULL;
        e->in[0] = y;
        e->in[1] = s;
    }
    return out;
}

// The mixture-of-experts ops of the tape (called by lc_graph_backward).
void lc_graph_moe_backward(lc_graph *g, lc_tape_entry *e) {
    lc_tensor *x = e->in[0];
    const float *dy = e->out->grad;
    switch (e->op) {
    case LC_OP_MOE_ROUTE: {
        bool fresh;
        float *dx = lc_graph_grad_fresh(g, x, &fresh);
        if (dx) lc_moe_route_backward(dx, dy, e->out->data, e->saved[0], e->aux, e->dims[0], fresh);
        break;
    }
    case LC_OP_GATHER_ROWS: {
        float *dx = lc_tensor_grad(g, x);
        if (dx) lc_gather_rows_backward(dx, dy, e->ints, e->out->rows, e->out->cols);
        break;
    }
    case LC_OP_MOE_COMBINE: {
        const moe_combine *mc = e->aux;
        float *dw = x->requires_grad ? lc_tensor_grad(g, x) : NULL;
        if (x->requires_grad && !dw) break;
        for (int ex = 0; ex < mc->r->E; ex++) {
            lc_tensor *ye = mc->ys[ex];
            if (!ye) continue;
            float *dye = NULL;
            bool fresh = false;
            if (ye->requires_grad && !(dye = lc_graph_grad_fresh(g, ye, &fresh))) break;
            lc_moe_combine_backward(dye, dw, dy, ye->data, x->data, mc->r, ex, e->out->cols, fresh);
        }
        break;
    }
    case LC_OP_SIGMOID_GATE: {
        lc_tensor *s = e->in[1];
        float *dyg = x->requires_grad ? lc_tensor_grad(g, x) : NULL;
        float *ds = s->requires_grad ? lc_tensor_grad(g, s) : NULL;
        lc_sigmoid_gate_backward(dyg, ds, dy, x->data, s->data, x->rows, x->cols);
        break;
    }
    default: break;
    }
}
