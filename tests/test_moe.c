// Gradient tests of the mixture-of-experts ops (autograd/moe.c through
// autograd/graph.c): routing (softmax, top k, with and without
// renormalization), row gathers per expert, the weighted combination and
// qwen2_moe's sigmoid-gated shared expert, composed as a sparse MLP layer
// (frozen router and experts). As in test_autograd_ops.c (grad_check.h): the
// gradient of L = sum(y * R) with respect to the input rows is compared with
// central differences of a double-precision reference written here and of the
// ops' own fp32 forward; the forward against the reference; each backward
// kernel is checked to accumulate.
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad_check.h"
#include "test_util.h"
#include "autograd/graph.h"
#include "autograd/moe.h"

enum { MN = 7, MC = 6, ME = 5, MF = 4 };

typedef struct moe_ctx {
    int k;
    bool renorm, shared;
    float *x, *R;                  // [MN, MC]
    float *router;                 // [ME, MC]
    float *w[ME + 1][3];           // gate, up [MF, MC]; down [MC, MF]; expert ME is the shared one
    float *shared_gate;            // [1, MC]
    lc_graph g;
} moe_ctx;

static double dsilu(double v) { return v / (1.0 + exp(-v)); }

// One expert on a row in double.
static void ref_expert(double *out, const double *x, float *const *w) {
    double a[MF];
    for (int f = 0; f < MF; f++) {
        double gt = 0.0, up = 0.0;
        for (int c = 0; c < MC; c++) {
            gt += (double)w[0][f * MC + c] * x[c];
            up += (double)w[1][f * MC + c] * x[c];
        }
        a[f] = dsilu(gt) * up;
    }
    for (int c = 0; c < MC; c++) {
        out[c] = 0.0;
        for (int f = 0; f < MF; f++) out[c] += (double)w[2][c * MF + f] * a[f];
    }
}

// The chosen experts of a row of probabilities: descending, the lower expert
// first on ties (as the kernel picks).
static void ref_topk(int *idx, const double *p, int k) {
    for (int s = 0; s < k; s++) {
        int best = -1;
        for (int e = 0; e < ME; e++) {
            bool taken = false;
            for (int t = 0; t < s; t++) taken |= idx[t] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        idx[s] = best;
    }
}

static void ref_moe(double *y, const double *x, const moe_ctx *c) {
    for (int n = 0; n < MN; n++) {
        const double *xn = x + (size_t)n * MC;
        double p[ME], mx = -INFINITY, sum = 0.0;
        for (int e = 0; e < ME; e++) {
            p[e] = 0.0;
            for (int cc = 0; cc < MC; cc++) p[e] += (double)c->router[e * MC + cc] * xn[cc];
            mx = fmax(mx, p[e]);
        }
        for (int e = 0; e < ME; e++) sum += p[e] = exp(p[e] - mx);
        for (int e = 0; e < ME; e++) p[e] /= sum;
        int idx[ME];
        ref_topk(idx, p, c->k);
        double total = 0.0, out[MC];
        for (int s = 0; s < c->k; s++) total += p[idx[s]];
        double *yn = y + (size_t)n * MC;
        for (int cc = 0; cc < MC; cc++) yn[cc] = 0.0;
        for (int s = 0; s < c->k; s++) {
            ref_expert(out, xn, c->w[idx[s]]);
            double wgt = c->renorm ? p[idx[s]] / total : p[idx[s]];
            for (int cc = 0; cc < MC; cc++) yn[cc] += wgt * out[cc];
        }
        if (c->shared) {
            ref_expert(out, xn, c->w[ME]);
            double s = 0.0;
            for (int cc = 0; cc < MC; cc++) s += (double)c->shared_gate[cc] * xn[cc];
            double gate = 1.0 / (1.0 + exp(-s));
            for (int cc = 0; cc < MC; cc++) yn[cc] += gate * out[cc];
        }
    }
}

static lc_tensor *frozen(lc_graph *g, lc_tensor *x, const float *w, int out) {
    return lc_op_linear(g, x, w, NULL, out, NULL);
}

static lc_tensor *op_expert(lc_graph *g, lc_tensor *x, float *const *w) {
    lc_tensor *a = lc_op_glu(g, frozen(g, x, w[0], MF), frozen(g, x, w[1], MF), LC_ACT_KIND_SILU);
    return frozen(g, a, w[2], MC);
}

// The sparse layer through the graph ops, as model/forward.c composes them.
static lc_tensor *op_moe(lc_graph *g, lc_tensor *x, const moe_ctx *c, const lc_moe_routing **rp) {
    const lc_moe_routing *r;
    lc_tensor *w = lc_op_moe_route(g, frozen(g, x, c->router, ME), c->k, c->renorm, &r);
    ck_assert_ptr_nonnull(w);
    lc_tensor *ys[ME];
    for (int e = 0; e < ME; e++) {
        int n = r->start[e + 1] - r->start[e];
        ys[e] = n ? op_expert(g, lc_op_gather_rows(g, x, r->rows + r->start[e], n), c->w[e]) : NULL;
    }
    lc_tensor *y = lc_op_moe_combine(g, w, r, ys, MC);
    if (c->shared) {
        lc_tensor *s = frozen(g, x, c->shared_gate, 1);
        y = lc_op_add(g, y, lc_op_sigmoid_gate(g, op_expert(g, x, c->w[ME]), s), true);
    }
    if (rp) *rp = r;
    return y;
}

static double loss_ref(void *ctx) {
    moe_ctx *c = ctx;
    double *x = gc_to_d(c->x, (size_t)MN * MC), *y = gc_dbuf((size_t)MN * MC);
    ref_moe(y, x, c);
    double l = gc_dot_dR(y, c->R, (size_t)MN * MC);
    free(x);
    free(y);
    return l;
}

static double loss_f32(void *ctx) {
    moe_ctx *c = ctx;
    lc_graph_reset(&c->g);
    lc_tensor *y = op_moe(&c->g, gc_tensor_of(&c->g, c->x, MN, MC, false), c, NULL);
    return gc_dot_fR(y->data, c->R, (size_t)MN * MC);
}

// The smallest gap between the k-th and (k+1)-th probability of any row: a
// finite-difference step must not change which experts a row picks.
static double topk_margin(const moe_ctx *c) {
    double *x = gc_to_d(c->x, (size_t)MN * MC), worst = INFINITY;
    for (int n = 0; n < MN; n++) {
        double p[ME], mx = -INFINITY, sum = 0.0;
        for (int e = 0; e < ME; e++) {
            p[e] = 0.0;
            for (int cc = 0; cc < MC; cc++) p[e] += (double)c->router[e * MC + cc] * x[n * MC + cc];
            mx = fmax(mx, p[e]);
        }
        for (int e = 0; e < ME; e++) sum += p[e] = exp(p[e] - mx);
        int idx[ME];
        ref_topk(idx, p, c->k + 1);
        worst = fmin(worst, (p[idx[c->k - 1]] - p[idx[c->k]]) / sum);
    }
    free(x);
    return worst;
}

static void run_case(int k, bool renorm, bool shared, uint64_t seed) {
    char label[96];
    snprintf(label, sizeof label, "moe k %d%s%s", k, renorm ? " renormalized" : "", shared ? " + shared expert" : "");
    moe_ctx c = {.k = k, .renorm = renorm, .shared = shared};
    // Seeds are tried until every row's top k is clear of the next expert by
    // more than a finite-difference step can move it.
    for (;; seed++) {
        gc_rng_seed(seed);
        c.x = gc_rand_buf((size_t)MN * MC, -1.0f, 1.0f);
        c.router = gc_rand_buf((size_t)ME * MC, -1.5f, 1.5f);
        if (topk_margin(&c) > 0.02) break;
        free(c.x);
        free(c.router);
    }
    c.R = gc_rand_buf((size_t)MN * MC, -1.0f, 1.0f);
    for (int e = 0; e <= ME; e++)
        for (int j = 0; j < 3; j++) c.w[e][j] = gc_rand_buf((size_t)MF * MC, -0.7f, 0.7f);
    c.shared_gate = gc_rand_buf(MC, -1.0f, 1.0f);
    lc_graph_init(&c.g, false);

    // Forward against the reference, and the routing's bookkeeping.
    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *x = gc_tensor_of(&g, c.x, MN, MC, true);
    const lc_moe_routing *r;
    lc_tensor *y = op_moe(&g, x, &c, &r);
    double *xd = gc_to_d(c.x, (size_t)MN * MC), *yref = gc_dbuf((size_t)MN * MC);
    ref_moe(yref, xd, &c);
    gc_check_forward(label, y->data, yref, (size_t)MN * MC);
    ck_assert_int_eq(r->start[0], 0);
    ck_assert_int_eq(r->start[ME], MN * k);
    for (int e = 0; e < ME; e++)
        for (int i = r->start[e]; i < r->start[e + 1]; i++) {
            ck_assert_int_eq(r->idx[r->order[i]], e);
            ck_assert_int_eq(r->rows[i], r->order[i] / k);
            if (i > r->start[e]) ck_assert_int_lt(r->rows[i - 1], r->rows[i]); // token order within an expert
        }

    // Gradient with respect to the input rows (through the routing weights,
    // the experts and the shared expert).
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dx = gc_grad_copy(x);
    ck_assert_ptr_nonnull(dx);
    gc_check_grad(label, dx, c.x, (size_t)MN * MC, &c, loss_ref, loss_f32, GC_TOL_REF_COMPOSED);

    free(dx);
    free(xd);
    free(yref);
    lc_graph_free(&g);
    lc_graph_free(&c.g);
    free(c.x);
    free(c.R);
    free(c.router);
    free(c.shared_gate);
    for (int e = 0; e <= ME; e++)
        for (int j = 0; j < 3; j++) free(c.w[e][j]);
}

START_TEST(test_moe_layer_gradients) {
    run_case(2, true, false, 100);  // Mixtral: top 2, renormalized
    run_case(3, false, false, 200); // OLMoE: top k softmax weights as they are
    run_case(2, false, true, 300);  // Qwen2-MoE: plus the gated shared expert
    run_case(1, true, false, 400);  // one expert: its weight is 1, the router gets no gradient through it
}
END_TEST

// The routing's backward alone against finite differences of the weights
// it returns, and every backward kernel accumulating into its output.
START_TEST(test_moe_kernels_accumulate) {
    gc_rng_seed(900);
    int N = 4, E = 5, k = 2, C = 3;
    float *logits = gc_rand_buf((size_t)N * E, -2.0f, 2.0f), *dw = gc_rand_buf((size_t)N * k, -1.0f, 1.0f);
    float w[8], p[20];
    // Exactly the arrays the routing needs (N k = 8 entries, E = 5 experts),
    // each its own allocation so ASan sees an overrun of any of them.
    int32_t *idx = malloc(sizeof(int32_t) * 8), *start = malloc(sizeof(int32_t) * 6);
    int32_t *order = malloc(sizeof(int32_t) * 8), *rows = malloc(sizeof(int32_t) * 8), *fill = malloc(sizeof(int32_t) * 5);
    lc_moe_routing r = {N, E, k, idx, start, order, rows, fill};
    for (int renorm = 0; renorm < 2; renorm++) {
        lc_moe_route_forward(w, p, &r, logits, renorm);
        gc_acc_buf b = gc_acc_new((size_t)N * E);
        lc_moe_route_backward(b.zero, dw, w, p, &r, renorm, false);
        lc_moe_route_backward(b.over, dw, w, p, &r, renorm, true);
        lc_moe_route_backward(b.acc, dw, w, p, &r, renorm, false);
        // d(sum dw · w)/d logits by central differences of the forward.
        for (int i = 0; i < N * E; i++) {
            float keep = logits[i];
            double sum[2];
            for (int side = 0; side < 2; side++) {
                logits[i] = keep + (side ? 1e-3f : -1e-3f);
                float w2[8], p2[20];
                int32_t ints2[3 * 8 + 6 + 5];
                lc_moe_routing r2 = {N, E, k, ints2, ints2 + 8, ints2 + 8 + 6, ints2 + 16 + 6, ints2 + 24 + 6};
                lc_moe_route_forward(w2, p2, &r2, logits, renorm);
                sum[side] = 0.0;
                for (int j = 0; j < N * k; j++) sum[side] += (double)dw[j] * w2[j];
            }
            double h = (double)(keep + 1e-3f) - (double)(keep - 1e-3f);
            logits[i] = keep;
            double num = (sum[1] - sum[0]) / h;
            ck_assert_msg(fabs(num - b.zero[i]) <= 2e-3, "route%s logit %d: %g vs %g", renorm ? " renorm" : "", i,
                          b.zero[i], num);
        }
        gc_over_check("moe_route_backward", &b);
        gc_acc_check("moe_route_backward", &b);
    }
    float *x = gc_rand_buf((size_t)N * C, -1.0f, 1.0f), *y = gc_rand_buf((size_t)N * k * C, -1.0f, 1.0f);
    float *dout = gc_rand_buf((size_t)N * C, -1.0f, 1.0f);
    gc_acc_buf b = gc_acc_new((size_t)N * C);
    lc_gather_rows_backward(b.zero, y, r.rows, N * k, C);
    lc_gather_rows_backward(b.acc, y, r.rows, N * k, C);
    gc_acc_check("gather_rows_backward", &b);
    int e = r.idx[0], ne = r.start[e + 1] - r.start[e];
    b = gc_acc_new((size_t)N * k);
    lc_moe_combine_backward(NULL, b.zero, dout, y, w, &r, e, C, false);
    lc_moe_combine_backward(NULL, b.acc, dout, y, w, &r, e, C, false);
    ck_assert_int_gt(ne, 0);
    gc_acc_check("moe_combine_backward dw", &b);
    b = gc_acc_new((size_t)ne * C);
    lc_moe_combine_backward(b.zero, NULL, dout, y, w, &r, e, C, false);
    lc_moe_combine_backward(b.over, NULL, dout, y, w, &r, e, C, true);
    lc_moe_combine_backward(b.acc, NULL, dout, y, w, &r, e, C, false);
    gc_over_check("moe_combine_backward dy", &b);
    gc_acc_check("moe_combine_backward dy", &b);
    float *s = gc_rand_buf((size_t)N, -1.0f, 1.0f);
    b = gc_acc_new((size_t)N * C);
    lc_sigmoid_gate_backward(b.zero, NULL, dout, x, s, N, C);
    lc_sigmoid_gate_backward(b.acc, NULL, dout, x, s, N, C);
    gc_acc_check("sigmoid_gate_backward dy", &b);
    b = gc_acc_new((size_t)N);
    lc_sigmoid_gate_backward(NULL, b.zero, dout, x, s, N, C);
    lc_sigmoid_gate_backward(NULL, b.acc, dout, x, s, N, C);
    gc_acc_check("sigmoid_gate_backward ds", &b);
    // One token and more experts than entries (a decoding step of OLMoE):
    // the counting sort's scratch is its own.
    float lg1[5] = {0.1f, -0.3f, 0.7f, 0.2f, -1.0f}, w1[2], p1[5];
    int32_t *idx1 = malloc(sizeof(int32_t) * 2), *start1 = malloc(sizeof(int32_t) * 6);
    int32_t *order1 = malloc(sizeof(int32_t) * 2), *rows1 = malloc(sizeof(int32_t) * 2), *fill1 = malloc(sizeof(int32_t) * 5);
    lc_moe_routing r1 = {1, 5, 2, idx1, start1, order1, rows1, fill1};
    lc_moe_route_forward(w1, p1, &r1, lg1, true);
    ck_assert(idx1[0] == 2 && idx1[1] == 3 && start1[5] == 2 && start1[2] == 0 && start1[3] == 1 && order1[0] == 0 && order1[1] == 1);
    ck_assert_float_eq_tol(w1[0] + w1[1], 1.0f, 1e-6f);
    int32_t *bufs1[] = {idx1, start1, order1, rows1, fill1, idx, start, order, rows, fill};
    for (size_t i = 0; i < sizeof bufs1 / sizeof *bufs1; i++) free(bufs1[i]);
    free(logits);
    free(dw);
    free(x);
    free(y);
    free(dout);
    free(s);
}
END_TEST

static Suite *moe_suite(void) {
    Suite *s = suite_create("moe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_moe_layer_gradients);
    tcase_add_test(tc, test_moe_kernels_accumulate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(moe_suite());
}
