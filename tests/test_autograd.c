// Gradient tests of the autograd (autograd/graph.c, autograd/kernels.c):
// linear/LoRA, RMSNorm, RoPE, attention, SwiGLU, add, cross-entropy, a
// composed block and the arena. The newer ops (LayerNorm, activations, GLU
// variants, clamp, gather, partial RoPE, soft-capped cross-entropy) are in
// test_autograd_ops.c.
//
// Each op runs through a recording graph; the output's gradient is seeded with
// a fixed random projection R, so the backward computes the gradient of the
// scalar L = sum(y * R) (cross-entropy seeds itself: L = loss_sum * norm).
// Every element of that gradient is compared with central differences of L
// computed two ways (grad_check.h):
//   - on a double-precision reference of the op written here (step GC_H_REF,
//     tolerance GC_TOL_REF): checks the math of the backward kernels;
//   - by re-running the op's own fp32 forward (step GC_H_F32, tolerance GC_TOL_F32):
//     checks the backward matches the forward actually run (same dropout mask,
//     same attention mask, same chunking).
// Error metric (both): max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-6).
// The step actually taken is computed from the rounded float inputs, so the
// quotient is exact in the step. The fp32 forwards are also compared with the
// references (same metric, GC_TOL_FWD).
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "grad_check.h"
#include "test_util.h"
#include "autograd/graph.h"
#include "autograd/kernels.h"

#define EPS 1e-5f

// ------------------------------------------------------ double references

static void ref_linear(double *y, const double *x, const float *w, const float *bias, int N, int n_in, int n_out) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < n_out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < n_in; i++) s += x[(size_t)n * n_in + i] * w[(size_t)o * n_in + i];
            y[(size_t)n * n_out + o] = s;
        }
}

// y += scale * dropout(x) · Aᵀ · Bᵀ, the mask from lc_dropout_keep.
static void ref_lora(double *y, const double *x, const lc_lora_ref *l, float p, int N, int n_in, int n_out) {
    int r = l->r;
    double *u = gc_dbuf((size_t)N * r);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double s = 0.0;
            for (int i = 0; i < n_in; i++) {
                size_t idx = (size_t)n * n_in + i;
                double xv = x[idx];
                if (p > 0.0f) xv = lc_dropout_keep(l->mask_seed, idx, p) ? xv / (1.0 - (double)p) : 0.0;
                s += xv * l->A[(size_t)j * n_in + i];
            }
            u[(size_t)n * r + j] = s;
        }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < n_out; o++) {
            double s = 0.0;
            for (int j = 0; j < r; j++) s += u[(size_t)n * r + j] * l->B[(size_t)o * r + j];
            y[(size_t)n * n_out + o] += l->scale * s;
        }
    free(u);
}

static void ref_rmsnorm(double *y, const double *x, const float *w, float eps, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) y[(size_t)n * C + c] = xr[c] * r * w[c];
    }
}

// Naive masked softmax attention: query t of sequence b (at position
// q_pos0 + t) may see key s iff seg_start <= s <= q_pos0 + t and, with a
// window, q_pos0 + t - s < window. Every key is visited; masked ones are
// excluded from the softmax.
static void ref_attention(double *out, const double *q, const double *k, const double *v, const int32_t *seg, int B,
                          int T, int Tk, int H, int KVH, int D, int q_pos0, const lc_attention_opts *o) {
    int group = H / KVH;
    int window = o ? o->window : 0;
    double scale = o && o->scale > 0.0f ? o->scale : 1.0 / sqrt((double)D);
    double cap = o ? o->softcap : 0.0;
    double *sc = gc_dbuf((size_t)Tk);
    char *ok = calloc((size_t)Tk, 1);
    ck_assert(ok != NULL);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int p = q_pos0 + t, s0 = seg ? seg[b * T + t] : 0;
            for (int h = 0; h < H; h++) {
                int kh = h / group;
                const double *qh = q + (((size_t)b * T + t) * H + h) * D;
                double m = -INFINITY;
                for (int s = 0; s < Tk; s++) {
                    ok[s] = s <= p && s >= s0 && (window <= 0 || p - s < window);
                    if (!ok[s]) continue;
                    const double *kr = k + (((size_t)b * Tk + s) * KVH + kh) * D;
                    double d = 0.0;
                    for (int i = 0; i < D; i++) d += qh[i] * kr[i];
                    sc[s] = d * scale;
                    if (cap > 0.0) sc[s] = cap * tanh(sc[s] / cap);
                    if (o && o->alibi) sc[s] += o->alibi[h] * (double)(s - p);
                    if (sc[s] > m) m = sc[s];
                }
                double sum = 0.0;
                for (int s = 0; s < Tk; s++)
                    if (ok[s]) sum += exp(sc[s] - m);
                double *oh = out + (((size_t)b * T + t) * H + h) * D;
                for (int i = 0; i < D; i++) oh[i] = 0.0;
                for (int s = 0; s < Tk; s++) {
                    if (!ok[s]) continue;
                    const double *vr = v + (((size_t)b * Tk + s) * KVH + kh) * D;
                    double a = exp(sc[s] - m) / sum;
                    for (int i = 0; i < D; i++) oh[i] += a * vr[i];
                }
            }
        }
    free(sc);
    free(ok);
}

static void ref_swiglu(double *y, const double *gate, const double *up, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = gate[i] / (1.0 + exp(-gate[i])) * up[i];
}

// Sum over rows with a target of logsumexp(logits) - logits[target].
// ------------------------------------------------------------------ linear

typedef struct lin_ctx {
    int N, n_in, n_out;
    float *x, *w, *bias, *R;
    lc_lora_ref lora; // A == NULL: no adapter
    lc_graph g;       // records when the adapter has dropout (dropout only applies in training)
} lin_ctx;

static double lin_loss_ref(void *p) {
    lin_ctx *c = p;
    double *x = gc_to_d(c->x, (size_t)c->N * c->n_in), *y = gc_dbuf((size_t)c->N * c->n_out);
    ref_linear(y, x, c->w, c->bias, c->N, c->n_in, c->n_out);
    if (c->lora.A) ref_lora(y, x, &c->lora, c->lora.dropout, c->N, c->n_in, c->n_out);
    double L = gc_dot_dR(y, c->R, (size_t)c->N * c->n_out);
    free(x);
    free(y);
    return L;
}

static lc_tensor *lin_run(lc_graph *g, lin_ctx *c, bool x_rg) {
    lc_tensor *x = gc_tensor_of(g, c->x, c->N, c->n_in, x_rg);
    lc_tensor *y = lc_op_linear(g, x, c->w, c->bias, c->n_out, c->lora.A ? &c->lora : NULL);
    ck_assert(y != NULL);
    ck_assert_int_eq(lc_graph_status(g), LC_STATUS_OK);
    return y;
}

static double lin_loss_f32(void *p) {
    lin_ctx *c = p;
    lc_graph_reset(&c->g);
    lc_tensor *y = lin_run(&c->g, c, false);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->n_out);
}

static void lin_setup(lin_ctx *c, int N, int n_in, int n_out, bool bias, int r, float dropout) {
    memset(c, 0, sizeof *c);
    c->N = N;
    c->n_in = n_in;
    c->n_out = n_out;
    c->x = gc_rand_buf((size_t)N * n_in, -1.0f, 1.0f);
    c->w = gc_rand_buf((size_t)n_out * n_in, -0.5f, 0.5f);
    c->bias = bias ? gc_rand_buf((size_t)n_out, -0.5f, 0.5f) : NULL;
    c->R = gc_rand_buf((size_t)N * n_out, -1.0f, 1.0f);
    if (r > 0) {
        c->lora.A = gc_rand_buf((size_t)r * n_in, -0.5f, 0.5f);
        c->lora.B = gc_rand_buf((size_t)n_out * r, -0.5f, 0.5f); // non-zero, so dA is non-trivial
        c->lora.dA = gc_zero_buf((size_t)r * n_in);
        c->lora.dB = gc_zero_buf((size_t)n_out * r);
        c->lora.r = r;
        c->lora.scale = 2.0f;
        c->lora.dropout = dropout;
        c->lora.mask_seed = 0x5eed1234abcdull;
    }
    lc_graph_init(&c->g, r > 0);
}

static void lin_free(lin_ctx *c) {
    free(c->x);
    free(c->w);
    free(c->bias);
    free(c->R);
    free(c->lora.A);
    free(c->lora.B);
    free(c->lora.dA);
    free(c->lora.dB);
    lc_graph_free(&c->g);
}

// Runs forward + backward on a recording graph; returns dx (or NULL when the
// graph computed none); the adapter's dA and dB are zeroed first.
static float *lin_backward(lin_ctx *c, bool x_rg, int *n_tape) {
    lc_graph g;
    lc_graph_init(&g, true);
    if (c->lora.A) {
        memset(c->lora.dA, 0, sizeof(float) * (size_t)c->lora.r * c->n_in);
        memset(c->lora.dB, 0, sizeof(float) * (size_t)c->n_out * c->lora.r);
    }
    lc_tensor *x = gc_tensor_of(&g, c->x, c->N, c->n_in, x_rg);
    lc_tensor *y = lc_op_linear(&g, x, c->w, c->bias, c->n_out, c->lora.A ? &c->lora : NULL);
    ck_assert(y != NULL);
    if (n_tape) *n_tape = g.n_tape;
    if (y->requires_grad) {
        gc_seed_grad(&g, y, c->R);
        ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    }
    float *dx = gc_grad_copy(x);
    lc_graph_free(&g);
    return dx;
}

START_TEST(test_linear_frozen) {
    static const int rows[] = {4, 1}; // 1 takes the sgemv path of the forward
    for (int bi = 0; bi < 2; bi++)
        for (int ri = 0; ri < 2; ri++) {
            gc_rng_seed(100 + bi * 2 + ri);
            lin_ctx c;
            lin_setup(&c, rows[ri], 5, 3, bi == 1, 0, 0.0f);
            float *w0 = malloc(sizeof(float) * 15);
            memcpy(w0, c.w, sizeof(float) * 15);
            char name[64];

            // Forward against the reference.
            lc_graph_reset(&c.g);
            lc_tensor *y = lin_run(&c.g, &c, false);
            double *xd = gc_to_d(c.x, (size_t)c.N * 5), *yr = gc_dbuf((size_t)c.N * 3);
            ref_linear(yr, xd, c.w, c.bias, c.N, 5, 3);
            snprintf(name, sizeof name, "linear N=%d bias=%d", c.N, bi);
            gc_check_forward(name, y->data, yr, (size_t)c.N * 3);

            int n_tape = -1;
            float *dx = lin_backward(&c, true, &n_tape);
            ck_assert_int_eq(n_tape, 1);
            snprintf(name, sizeof name, "linear N=%d bias=%d dx", c.N, bi);
            gc_check_grad(name, dx, c.x, (size_t)c.N * 5, &c, lin_loss_ref, lin_loss_f32, GC_TOL_REF);
            ck_assert(memcmp(w0, c.w, sizeof(float) * 15) == 0); // the frozen weight is only read

            // Nothing to differentiate: no tape entry, no gradient.
            float *none = lin_backward(&c, false, &n_tape);
            ck_assert_int_eq(n_tape, 0);
            ck_assert(none == NULL);

            free(dx);
            free(w0);
            free(xd);
            free(yr);
            lin_free(&c);
        }
}
END_TEST

// ------------------------------------------------------------------- LoRA

START_TEST(test_linear_lora) {
    static const float drop[] = {0.0f, 0.3f};
    for (int di = 0; di < 2; di++) {
        gc_rng_seed(200 + di);
        lin_ctx c;
        lin_setup(&c, 6, 10, 5, true, 3, drop[di]);
        size_t nA = (size_t)3 * c.n_in, nB = (size_t)c.n_out * 3;
        char name[96];

        if (drop[di] > 0.0f) {
            // The mask of this test must drop something and keep something.
            int kept = 0, n = c.N * c.n_in;
            for (int i = 0; i < n; i++) kept += lc_dropout_keep(c.lora.mask_seed, (size_t)i, drop[di]);
            ck_assert_msg(kept > 0 && kept < n, "mask keeps %d of %d", kept, n);
        }

        // Training forward (recording graph) against the reference, with the mask.
        lc_graph_reset(&c.g);
        lc_tensor *y = lin_run(&c.g, &c, false);
        double *xd = gc_to_d(c.x, (size_t)c.N * c.n_in), *yr = gc_dbuf((size_t)c.N * c.n_out);
        ref_linear(yr, xd, c.w, c.bias, c.N, c.n_in, c.n_out);
        ref_lora(yr, xd, &c.lora, c.lora.dropout, c.N, c.n_in, c.n_out);
        snprintf(name, sizeof name, "lora p=%.1f forward (train)", drop[di]);
        gc_check_forward(name, y->data, yr, (size_t)c.N * c.n_out);

        // Evaluation (no tape): no dropout.
        lc_graph ge;
        lc_graph_init(&ge, false);
        lc_tensor *ye = lin_run(&ge, &c, false);
        ref_linear(yr, xd, c.w, c.bias, c.N, c.n_in, c.n_out);
        ref_lora(yr, xd, &c.lora, 0.0f, c.N, c.n_in, c.n_out);
        snprintf(name, sizeof name, "lora p=%.1f forward (eval, no dropout)", drop[di]);
        gc_check_forward(name, ye->data, yr, (size_t)c.N * c.n_out);
        lc_graph_free(&ge);

        for (int xg = 1; xg >= 0; xg--) {
            float *dx = lin_backward(&c, xg, NULL);
            float *dA = malloc(sizeof(float) * nA), *dB = malloc(sizeof(float) * nB);
            memcpy(dA, c.lora.dA, sizeof(float) * nA);
            memcpy(dB, c.lora.dB, sizeof(float) * nB);
            if (xg) {
                snprintf(name, sizeof name, "lora p=%.1f dx", drop[di]);
                gc_check_grad(name, dx, c.x, (size_t)c.N * c.n_in, &c, lin_loss_ref, lin_loss_f32, GC_TOL_REF);
            } else {
                ck_assert_msg(dx == NULL, "x without requires_grad received a gradient");
            }
            snprintf(name, sizeof name, "lora p=%.1f dA (x grad %s)", drop[di], xg ? "on" : "off");
            gc_check_grad(name, dA, c.lora.A, nA, &c, lin_loss_ref, lin_loss_f32, GC_TOL_REF);
            snprintf(name, sizeof name, "lora p=%.1f dB (x grad %s)", drop[di], xg ? "on" : "off");
            gc_check_grad(name, dB, c.lora.B, nB, &c, lin_loss_ref, lin_loss_f32, GC_TOL_REF);
            free(dx);
            free(dA);
            free(dB);
        }
        free(xd);
        free(yr);
        lin_free(&c);
    }
}
END_TEST

START_TEST(test_dropout_mask) {
    // Counter-based: the same (seed, index) always gives the same answer; the
    // kept fraction is about 1 - p; another seed gives another mask.
    int kept = 0, same = 0, n = 100000;
    for (int i = 0; i < n; i++) {
        int k = lc_dropout_keep(42, (size_t)i, 0.3f);
        ck_assert_int_eq(k, lc_dropout_keep(42, (size_t)i, 0.3f));
        kept += k;
        same += k == lc_dropout_keep(43, (size_t)i, 0.3f);
    }
    ck_assert_msg(kept > 0.69 * n && kept < 0.71 * n, "kept %d of %d at p=0.3", kept, n);
    ck_assert_msg(same < 0.65 * n, "seeds 42 and 43 agree on %d of %d", same, n);
    for (int i = 0; i < 1000; i++) ck_assert(lc_dropout_keep(7, (size_t)i, 0.0f));
}
END_TEST

// ----------------------------------------------------------------- RMSNorm
// (RoPE: test_rope_partial in test_autograd_ops.c, full rotation included.)

static void rms_ref(double *y, const double *x, const gc_un_ctx *c) { ref_rmsnorm(y, x, c->w, EPS, c->N, c->C); }

static lc_tensor *rms_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) { return lc_op_rmsnorm(g, x, c->w, EPS); }

START_TEST(test_rmsnorm) {
    gc_rng_seed(300);
    enum { N = 4, C = 8 };
    size_t n = (size_t)N * C;
    float *x = gc_rand_buf(n, -2.0f, 2.0f);
    for (int i = 0; i < C; i++) x[3 * C + i] *= 0.02f; // a small row: eps matters there
    float *w = gc_rand_buf((size_t)C, 0.5f, 1.5f), *R = gc_rand_buf(n, -1.0f, 1.0f);
    gc_un_ctx c = {.N = N, .C = C, .out_cols = C, .x = x, .R = R, .ref = rms_ref, .op = rms_op, .w = w};
    // Step 1e-4: the curvature of the small row is ~1/|x|^2 (|x| ~ 0.02). The
    // fp32 FD runs on the normal rows only: on the small row a step of
    // GC_H_F32 is not small against |x| ~ 0.02.
    gc_un_result r = gc_un_run(&c, "rmsnorm", 1e-4, (size_t)3 * C);
    gc_un_result_free(&r);
    free(x);
    free(w);
    free(R);
}
END_TEST

// --------------------------------------------------------------- attention

typedef struct att_ctx {
    int B, T, H, KVH, D;
    lc_attention_opts opts;
    const int32_t *seg;
    float *q, *k, *v, *R;
    lc_graph g;
} att_ctx;

static double att_loss_ref(void *p) {
    att_ctx *c = p;
    size_t nq = (size_t)c->B * c->T * c->H * c->D, nk = (size_t)c->B * c->T * c->KVH * c->D;
    double *q = gc_to_d(c->q, nq), *k = gc_to_d(c->k, nk), *v = gc_to_d(c->v, nk), *o = gc_dbuf(nq);
    ref_attention(o, q, k, v, c->seg, c->B, c->T, c->T, c->H, c->KVH, c->D, 0, &c->opts);
    double L = gc_dot_dR(o, c->R, nq);
    free(q);
    free(k);
    free(v);
    free(o);
    return L;
}

static lc_tensor *att_run(lc_graph *g, att_ctx *c, bool rg, lc_tensor **q, lc_tensor **k, lc_tensor **v) {
    int N = c->B * c->T;
    *q = gc_tensor_of(g, c->q, N, c->H * c->D, rg);
    *k = gc_tensor_of(g, c->k, N, c->KVH * c->D, rg);
    *v = gc_tensor_of(g, c->v, N, c->KVH * c->D, rg);
    lc_tensor *y = lc_op_attention(g, *q, *k, *v, c->seg, c->B, c->T, c->T, c->H, c->KVH, c->D, 0, &c->opts);
    ck_assert(y != NULL);
    return y;
}

static double att_loss_f32(void *p) {
    att_ctx *c = p;
    lc_tensor *q, *k, *v;
    lc_graph_reset(&c->g);
    lc_tensor *y = att_run(&c->g, c, false, &q, &k, &v);
    return gc_dot_fR(y->data, c->R, (size_t)c->B * c->T * c->H * c->D);
}

static void attention_case(const char *label, const int32_t *seg, lc_attention_opts opts) {
    att_ctx c = {.B = 2, .T = 5, .H = 4, .KVH = 2, .D = 4, .opts = opts, .seg = seg};
    size_t nq = (size_t)c.B * c.T * c.H * c.D, nk = (size_t)c.B * c.T * c.KVH * c.D;
    c.q = gc_rand_buf(nq, -1.5f, 1.5f);
    c.k = gc_rand_buf(nk, -1.5f, 1.5f);
    c.v = gc_rand_buf(nk, -1.0f, 1.0f);
    c.R = gc_rand_buf(nq, -1.0f, 1.0f);
    lc_graph_init(&c.g, false);
    char name[96];

    lc_tensor *q, *k, *v;
    lc_tensor *y = att_run(&c.g, &c, false, &q, &k, &v);
    double *qd = gc_to_d(c.q, nq), *kd = gc_to_d(c.k, nk), *vd = gc_to_d(c.v, nk), *yr = gc_dbuf(nq);
    ref_attention(yr, qd, kd, vd, seg, c.B, c.T, c.T, c.H, c.KVH, c.D, 0, &opts);
    snprintf(name, sizeof name, "attention %s", label);
    gc_check_forward(name, y->data, yr, nq);

    lc_graph g;
    lc_graph_init(&g, true);
    y = att_run(&g, &c, true, &q, &k, &v);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dq = gc_grad_copy(q), *dk = gc_grad_copy(k), *dv = gc_grad_copy(v);
    snprintf(name, sizeof name, "attention %s dq", label);
    gc_check_grad(name, dq, c.q, nq, &c, att_loss_ref, att_loss_f32, GC_TOL_REF);
    snprintf(name, sizeof name, "attention %s dk", label);
    gc_check_grad(name, dk, c.k, nk, &c, att_loss_ref, att_loss_f32, GC_TOL_REF);
    snprintf(name, sizeof name, "attention %s dv", label);
    gc_check_grad(name, dv, c.v, nk, &c, att_loss_ref, att_loss_f32, GC_TOL_REF);

    lc_graph_free(&g);
    lc_graph_free(&c.g);
    free(dq);
    free(dk);
    free(dv);
    free(qd);
    free(kd);
    free(vd);
    free(yr);
    free(c.q);
    free(c.k);
    free(c.v);
    free(c.R);
}

START_TEST(test_attention_causal) {
    gc_rng_seed(500);
    attention_case("causal", NULL, (lc_attention_opts){0});
}
END_TEST

START_TEST(test_attention_packed) {
    gc_rng_seed(501);
    // Row 0: segments [0,3) and [3,5); row 1: [0,1), [1,4), [4,5).
    static const int32_t seg[] = {0, 0, 0, 3, 3, 0, 1, 1, 1, 4};
    attention_case("packed", seg, (lc_attention_opts){0});
}
END_TEST

START_TEST(test_attention_window) {
    gc_rng_seed(502);
    attention_case("window=2", NULL, (lc_attention_opts){.window = 2});
    static const int32_t seg[] = {0, 0, 0, 3, 3, 0, 1, 1, 1, 4};
    attention_case("packed+window=2", seg, (lc_attention_opts){.window = 2});
}
END_TEST

// Gemma 2's soft-capped scores with its own scale, and Bloom's ALiBi biases
// (slopes as for 4 heads), alone and together with packing.
START_TEST(test_attention_variants) {
    gc_rng_seed(503);
    static const float slopes[4] = {0.25f, 0.0625f, 0.015625f, 0.00390625f};
    static const int32_t seg[] = {0, 0, 0, 3, 3, 0, 1, 1, 1, 4};
    attention_case("softcap=1.5 scale=0.8", NULL, (lc_attention_opts){.scale = 0.8f, .softcap = 1.5f});
    attention_case("alibi", NULL, (lc_attention_opts){.alibi = slopes});
    attention_case("packed+alibi+softcap+window", seg,
                   (lc_attention_opts){.softcap = 2.0f, .alibi = slopes, .window = 3});
}
END_TEST

START_TEST(test_attention_forward_decode) {
    // Queries after a cache (q_pos0 > 0, Tk > T): forward only.
    gc_rng_seed(503);
    int B = 2, T = 2, Tk = 7, H = 4, KVH = 2, D = 4, q_pos0 = 5;
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * Tk * KVH * D;
    float *q = gc_rand_buf(nq, -1.5f, 1.5f), *k = gc_rand_buf(nk, -1.5f, 1.5f), *v = gc_rand_buf(nk, -1.0f, 1.0f);
    float *out = malloc(sizeof(float) * nq), *scratch = malloc(sizeof(float) * lc_attention_scratch_floats(T, Tk, H, KVH, D));
    double *qd = gc_to_d(q, nq), *kd = gc_to_d(k, nk), *vd = gc_to_d(v, nk), *yr = gc_dbuf(nq);
    static const int32_t seg[] = {0, 0, 2, 2};
    for (int w = 0; w <= 3; w += 3)
        for (int si = 0; si < 2; si++) {
            const int32_t *s = si ? seg : NULL;
            lc_attention_forward(out, NULL, q, k, v, s, scratch, B, T, Tk, H, KVH, D, q_pos0,
                                 &(lc_attention_opts){.window = w});
            ref_attention(yr, qd, kd, vd, s, B, T, Tk, H, KVH, D, q_pos0, &(lc_attention_opts){.window = w});
            char name[64];
            snprintf(name, sizeof name, "attention decode window=%d seg=%d", w, si);
            gc_check_forward(name, out, yr, nq);
        }
    // Large scores (|q·k|/sqrt(D) up to ~1e3): softmax must subtract its max.
    for (size_t i = 0; i < nq; i++) q[i] *= 30.0f;
    for (size_t i = 0; i < nk; i++) k[i] *= 30.0f;
    free(qd);
    free(kd);
    qd = gc_to_d(q, nq);
    kd = gc_to_d(k, nk);
    lc_attention_forward(out, NULL, q, k, v, NULL, scratch, B, T, Tk, H, KVH, D, q_pos0, NULL);
    ref_attention(yr, qd, kd, vd, NULL, B, T, Tk, H, KVH, D, q_pos0, NULL);
    gc_check_forward("attention decode large scores", out, yr, nq);
    free(q);
    free(k);
    free(v);
    free(out);
    free(scratch);
    free(qd);
    free(kd);
    free(vd);
    free(yr);
}
END_TEST

// ------------------------------------------------------------ SwiGLU, add

typedef struct bin_ctx {
    int N, C;
    float *a, *b, *R;
    lc_graph g;
} bin_ctx;

static double swiglu_loss_ref(void *p) {
    bin_ctx *c = p;
    size_t n = (size_t)c->N * c->C;
    double *a = gc_to_d(c->a, n), *b = gc_to_d(c->b, n), *y = gc_dbuf(n);
    ref_swiglu(y, a, b, n);
    double L = gc_dot_dR(y, c->R, n);
    free(a);
    free(b);
    free(y);
    return L;
}

static double swiglu_loss_f32(void *p) {
    bin_ctx *c = p;
    lc_graph_reset(&c->g);
    lc_tensor *y = lc_op_glu(&c->g, gc_tensor_of(&c->g, c->a, c->N, c->C, false),
                             gc_tensor_of(&c->g, c->b, c->N, c->C, false), LC_ACT_KIND_SILU);
    ck_assert(y != NULL);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->C);
}

START_TEST(test_swiglu) {
    gc_rng_seed(600);
    bin_ctx c = {.N = 3, .C = 8};
    size_t n = (size_t)c.N * c.C;
    c.a = gc_rand_buf(n, -3.0f, 3.0f);
    static const float big[] = {8.0f, -8.0f, 12.0f, -12.0f, 20.0f, -20.0f, 0.0f, 1e-4f};
    memcpy(c.a + 2 * c.C, big, sizeof big); // saturated gates in the last row
    c.b = gc_rand_buf(n, -2.0f, 2.0f);
    c.R = gc_rand_buf(n, -1.0f, 1.0f);
    lc_graph_init(&c.g, false);

    lc_tensor *y =
        lc_op_glu(&c.g, gc_tensor_of(&c.g, c.a, c.N, c.C, false), gc_tensor_of(&c.g, c.b, c.N, c.C, false),
                  LC_ACT_KIND_SILU);
    double *ad = gc_to_d(c.a, n), *bd = gc_to_d(c.b, n), *yr = gc_dbuf(n);
    ref_swiglu(yr, ad, bd, n);
    gc_check_forward("swiglu", y->data, yr, n);

    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *gate = gc_tensor_of(&g, c.a, c.N, c.C, true), *up = gc_tensor_of(&g, c.b, c.N, c.C, true);
    y = lc_op_glu(&g, gate, up, LC_ACT_KIND_SILU);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dg = gc_grad_copy(gate), *du = gc_grad_copy(up);
    gc_check_grad("swiglu dgate", dg, c.a, n, &c, swiglu_loss_ref, swiglu_loss_f32, GC_TOL_REF);
    gc_check_grad("swiglu dup", du, c.b, n, &c, swiglu_loss_ref, swiglu_loss_f32, GC_TOL_REF);
    // Saturated gates, element by element (relative to each element's own size):
    // d/dg silu(g)·u -> u for g >> 0 and -> 0 for g << 0.
    for (int i = 0; i < 8; i++) {
        size_t j = (size_t)2 * c.C + i;
        double gv = c.a[j], s = 1.0 / (1.0 + exp(-gv));
        double want = c.R[j] * c.b[j] * s * (1.0 + gv * (1.0 - s));
        ck_assert_msg(fabs(dg[j] - want) <= 1e-5 * fabs(want) + 1e-12, "dgate at g=%g: %g vs %g", gv, dg[j], want);
    }

    lc_graph_free(&g);
    lc_graph_free(&c.g);
    free(dg);
    free(du);
    free(ad);
    free(bd);
    free(yr);
    free(c.a);
    free(c.b);
    free(c.R);
}
END_TEST

static double add_loss_ref(void *p) {
    bin_ctx *c = p;
    size_t n = (size_t)c->N * c->C;
    double L = 0.0;
    for (size_t i = 0; i < n; i++) L += ((double)c->a[i] + c->b[i]) * c->R[i];
    return L;
}

static double add_loss_f32(void *p) {
    bin_ctx *c = p;
    lc_graph_reset(&c->g);
    lc_tensor *y =
        lc_op_add(&c->g, gc_tensor_of(&c->g, c->a, c->N, c->C, false), gc_tensor_of(&c->g, c->b, c->N, c->C, false),
                  false);
    ck_assert(y != NULL);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->C);
}

START_TEST(test_add) {
    gc_rng_seed(700);
    bin_ctx c = {.N = 3, .C = 5};
    size_t n = (size_t)c.N * c.C;
    c.a = gc_rand_buf(n, -1.0f, 1.0f);
    c.b = gc_rand_buf(n, -1.0f, 1.0f);
    c.R = gc_rand_buf(n, -1.0f, 1.0f);
    lc_graph_init(&c.g, false);

    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *a = gc_tensor_of(&g, c.a, c.N, c.C, true), *b = gc_tensor_of(&g, c.b, c.N, c.C, true);
    lc_tensor *y = lc_op_add(&g, a, b, false);
    for (size_t i = 0; i < n; i++) ck_assert(y->data[i] == c.a[i] + c.b[i]);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *da = gc_grad_copy(a), *db = gc_grad_copy(b);
    gc_check_grad("add da", da, c.a, n, &c, add_loss_ref, add_loss_f32, GC_TOL_REF);
    gc_check_grad("add db", db, c.b, n, &c, add_loss_ref, add_loss_f32, GC_TOL_REF);
    free(da);
    free(db);
    lc_graph_free(&g);

    // One input without requires_grad gets no gradient.
    lc_graph_init(&g, true);
    a = gc_tensor_of(&g, c.a, c.N, c.C, true);
    b = gc_tensor_of(&g, c.b, c.N, c.C, false);
    y = lc_op_add(&g, a, b, false);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    ck_assert(b->grad == NULL);
    for (size_t i = 0; i < n; i++) ck_assert(a->grad[i] == c.R[i]);
    lc_graph_free(&g);

    // The same tensor on both sides: y = x + x, dx = 2R.
    lc_graph_init(&g, true);
    a = gc_tensor_of(&g, c.a, c.N, c.C, true);
    y = lc_op_add(&g, a, a, false);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    for (size_t i = 0; i < n; i++) ck_assert(a->grad[i] == 2.0f * c.R[i]);
    lc_graph_free(&g);

    lc_graph_free(&c.g);
    free(c.a);
    free(c.b);
    free(c.R);
}
END_TEST

// Fan-out: y = add(linear(x), x), so dx = R·W + R gathers both paths.
typedef struct fan_ctx {
    int N, C;
    float *x, *w, *R;
    lc_graph g;
} fan_ctx;

static double fan_loss_ref(void *p) {
    fan_ctx *c = p;
    size_t n = (size_t)c->N * c->C;
    double *x = gc_to_d(c->x, n), *y = gc_dbuf(n);
    ref_linear(y, x, c->w, NULL, c->N, c->C, c->C);
    for (size_t i = 0; i < n; i++) y[i] += x[i];
    double L = gc_dot_dR(y, c->R, n);
    free(x);
    free(y);
    return L;
}

static lc_tensor *fan_run(lc_graph *g, fan_ctx *c, bool rg, lc_tensor **x) {
    *x = gc_tensor_of(g, c->x, c->N, c->C, rg);
    lc_tensor *y = lc_op_add(g, lc_op_linear(g, *x, c->w, NULL, c->C, NULL), *x, false);
    ck_assert(y != NULL);
    return y;
}

static double fan_loss_f32(void *p) {
    fan_ctx *c = p;
    lc_tensor *x;
    lc_graph_reset(&c->g);
    lc_tensor *y = fan_run(&c->g, c, false, &x);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->C);
}

START_TEST(test_fan_out) {
    gc_rng_seed(800);
    fan_ctx c = {.N = 4, .C = 6};
    size_t n = (size_t)c.N * c.C;
    c.x = gc_rand_buf(n, -1.0f, 1.0f);
    c.w = gc_rand_buf((size_t)c.C * c.C, -0.5f, 0.5f);
    c.R = gc_rand_buf(n, -1.0f, 1.0f);
    lc_graph_init(&c.g, false);

    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *x;
    lc_tensor *y = fan_run(&g, &c, true, &x);
    ck_assert_int_eq(g.n_tape, 2);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dx = gc_grad_copy(x);
    gc_check_grad("fan-out add(linear(x), x) dx", dx, c.x, n, &c, fan_loss_ref, fan_loss_f32, GC_TOL_REF);
    lc_graph_free(&g);

    lc_graph_free(&c.g);
    free(dx);
    free(c.x);
    free(c.w);
    free(c.R);
}
END_TEST

// ------------------------------------------------------------ cross-entropy

START_TEST(test_cross_entropy) {
    gc_rng_seed(900);
    // 300 rows: more than two chunks of 128 counted rows when the kernel is run
    // with chunks of 128 below (the op itself takes them in one chunk).
    gc_ce_ctx c = {.N = 300, .C = 6, .V = 7};
    size_t n = (size_t)c.N * c.C;
    c.x = gc_rand_buf(n, -1.0f, 1.0f);
    c.head = gc_rand_buf((size_t)c.V * c.C, -1.5f, 1.5f);
    int32_t *tg = malloc(sizeof(int32_t) * c.N);
    c.tg = tg;
    int n_targets = 0;
    for (int i = 0; i < c.N; i++) {
        tg[i] = (i % 10 == 3 || i == 0 || i == c.N - 1) ? -1 : (int32_t)(gc_rng_u01() * c.V);
        n_targets += c.tg[i] >= 0;
    }
    ck_assert(n_targets > 2 * 128);
    c.norm = 1.0f / (float)n_targets;
    lc_graph_init(&c.g, false);

    double *xd = gc_to_d(c.x, n);
    int ref_cnt = 0;
    double ref_loss = gc_ref_ce(xd, c.head, c.tg, 0.0, c.N, c.C, c.V, &ref_cnt);

    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *x = gc_tensor_of(&g, c.x, c.N, c.C, true);
    double ls = 0.0;
    int cnt = 0;
    ck_assert_int_eq(lc_op_cross_entropy(&g, x, c.head, c.V, 0.0f, c.tg, c.norm, &ls, &cnt), LC_STATUS_OK);
    ck_assert_int_eq(cnt, n_targets);
    ck_assert_int_eq(ref_cnt, n_targets);
    double le = fabs(ls - ref_loss) / fabs(ref_loss);
    fprintf(stderr, "  %-44s n=%5d loss %.6f ref %.6f rel err %.2e\n", "cross-entropy loss_sum", c.N, ls, ref_loss,
            le);
    ck_assert_msg(le <= 1e-6, "loss_sum %.9g vs reference %.9g", ls, ref_loss);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dx = gc_grad_copy(x);
    ck_assert(dx != NULL);
    for (int i = 0; i < c.N; i++)
        if (c.tg[i] < 0)
            for (int j = 0; j < c.C; j++) ck_assert_msg(dx[(size_t)i * c.C + j] == 0.0f, "skipped row %d has a gradient", i);
    gc_check_grad("cross-entropy dx (N=300)", dx, c.x, n, &c, gc_ce_loss_ref, gc_ce_loss_f32, GC_TOL_REF);

    // The kernel with other chunk sizes (1, 7, 128, all) gives the same loss and dx.
    static const int chunks[] = {1, 7, 128, 300};
    float *dxk = malloc(sizeof(float) * n), *logits = malloc(sizeof(float) * 300 * c.V),
          *xrows = malloc(sizeof(float) * 300 * c.C);
    for (int k = 0; k < 4; k++) {
        memset(dxk, 0, sizeof(float) * n);
        double lk = 0.0;
        int ck = 0;
        lc_cross_entropy_forward(&lk, &ck, dxk, logits, xrows, NULL, c.x, &(lc_weight){LC_WTYPE_F32, c.head, c.V, c.C}, LC_COMPUTE_FP32, c.tg, c.norm, 0.0f, c.N, c.C, c.V, chunks[k]);
        ck_assert_int_eq(ck, n_targets);
        ck_assert_msg(fabs(lk - ref_loss) <= 1e-6 * fabs(ref_loss), "chunk %d: loss %.9g vs %.9g", chunks[k], lk,
                      ref_loss);
        double m = 0.0, d = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (fabsf(dx[i]) > m) m = fabsf(dx[i]);
            double e = fabs((double)dxk[i] - dx[i]);
            if (!(e <= d)) d = e;
        }
        ck_assert_msg(d <= 1e-5 * m, "chunk %d: dx differs by %g (max %g)", chunks[k], d, m);
    }
    // Accumulating: a second call adds to loss, count and dx.
    memset(dxk, 0, sizeof(float) * n);
    double l2 = 0.0;
    int c2 = 0;
    for (int rep = 0; rep < 2; rep++)
        lc_cross_entropy_forward(&l2, &c2, dxk, logits, xrows, NULL, c.x, &(lc_weight){LC_WTYPE_F32, c.head, c.V, c.C}, LC_COMPUTE_FP32, c.tg, c.norm, 0.0f, c.N, c.C, c.V, 128);
    ck_assert_int_eq(c2, 2 * n_targets);
    ck_assert(fabs(l2 - 2.0 * ref_loss) <= 2e-6 * fabs(ref_loss));
    for (size_t i = 0; i < n; i++) ck_assert(fabsf(dxk[i] - 2.0f * dx[i]) <= 1e-5f * (fabsf(dx[i]) + 1e-3f));

    // Two losses on the same tensor (another target set): the backward adds both.
    int32_t *tg2 = malloc(sizeof(int32_t) * c.N);
    for (int i = 0; i < c.N; i++) tg2[i] = i % 4 == 0 ? -1 : (c.tg[i] + 1 + i % 3) % c.V;
    lc_graph_reset(&g);
    x = gc_tensor_of(&g, c.x, c.N, c.C, true);
    ls = 0.0;
    cnt = 0;
    ck_assert_int_eq(lc_op_cross_entropy(&g, x, c.head, c.V, 0.0f, c.tg, c.norm, &ls, &cnt), LC_STATUS_OK);
    ck_assert_int_eq(lc_op_cross_entropy(&g, x, c.head, c.V, 0.0f, tg2, 0.5f * c.norm, &ls, &cnt), LC_STATUS_OK);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    memcpy(dxk, dx, sizeof(float) * n);
    double l3 = 0.0;
    int c3 = 0;
    lc_cross_entropy_forward(&l3, &c3, dxk, logits, xrows, NULL, c.x, &(lc_weight){LC_WTYPE_F32, c.head, c.V, c.C}, LC_COMPUTE_FP32, tg2, 0.5f * c.norm, 0.0f, c.N, c.C, c.V, 128);
    ck_assert(x->grad != NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(x->grad[i] - dxk[i]) <= 1e-5f * (fabsf(dxk[i]) + 1e-3f), "two losses: dx[%zu] %g vs %g",
                      i, x->grad[i], dxk[i]);
    free(tg2);

    // Large logits (beyond exp's range): the log-sum-exp must stay finite.
    {
        int N = 4, C = 3, V = 5;
        float xb[12], hb[15];
        for (int i = 0; i < 12; i++) xb[i] = (float)(gc_rng_u01() - 0.5) * 80.0f;
        for (int i = 0; i < 15; i++) hb[i] = (float)(gc_rng_u01() - 0.5) * 80.0f;
        static const int32_t tb[] = {0, 4, 2, -1};
        double *xbd = gc_to_d(xb, 12), top = 0.0;
        for (int n = 0; n < 3; n++) // the largest logit of a counted row is beyond exp's range
            for (int j = 0; j < V; j++) {
                double l = 0.0;
                for (int k = 0; k < C; k++) l += xbd[n * C + k] * hb[j * C + k];
                if (l > top) top = l;
            }
        ck_assert_msg(top > 800.0, "largest logit %g", top);
        double lb_ref = gc_ref_ce(xbd, hb, tb, 0.0, N, C, V, NULL), lb = 0.0;
        int cb = 0;
        float dxb[12] = {0}, lgb[20], xrb[12];
        lc_cross_entropy_forward(&lb, &cb, dxb, lgb, xrb, NULL, xb, &(lc_weight){LC_WTYPE_F32, hb, V, C}, LC_COMPUTE_FP32, tb, 1.0f, 0.0f, N, C, V, 2);
        fprintf(stderr, "  %-44s loss %.6f ref %.6f\n", "cross-entropy large logits", lb, lb_ref);
        ck_assert_msg(isfinite(lb) && fabs(lb - lb_ref) <= 1e-5 * fabs(lb_ref), "loss %g vs %g", lb, lb_ref);
        for (int i = 0; i < 12; i++) ck_assert(isfinite(dxb[i]));
        free(xbd);
    }

    free(dxk);
    free(logits);
    free(xrows);
    lc_graph_free(&g);
    lc_graph_free(&c.g);
    free(dx);
    free(xd);
    free(c.x);
    free(c.head);
    free(tg);
}
END_TEST

// ---------------------------------------------- backward kernels accumulate

// Each backward kernel adds into its outputs (see gc_acc_new in grad_check.h).
START_TEST(test_backward_kernels_accumulate) {
    gc_rng_seed(950);
    int N = 5, C = 8, O = 6, H = 2, D = 4, r = 3;
    float *x = gc_rand_buf((size_t)N * C, -1.0f, 1.0f), *w = gc_rand_buf((size_t)O * C, -0.5f, 0.5f);
    float *dyO = gc_rand_buf((size_t)N * O, -1.0f, 1.0f), *dyC = gc_rand_buf((size_t)N * C, -1.0f, 1.0f);
    float *wc = gc_rand_buf((size_t)C, 0.5f, 1.5f), *rstd = malloc(sizeof(float) * N), *tmp = malloc(sizeof(float) * N * C);
    lc_rmsnorm_forward(tmp, rstd, x, wc, EPS, N, C);

    gc_acc_buf b = gc_acc_new((size_t)N * C);
    lc_matmul_backward(b.zero, dyO, w, false, N, C, O);
    lc_matmul_backward(b.acc, dyO, w, false, N, C, O);
    lc_matmul_backward(b.over, dyO, w, true, N, C, O);
    gc_over_check("matmul dx", &b);
    gc_acc_check("matmul dx", &b);

    b = gc_acc_new((size_t)N * C);
    lc_rmsnorm_backward(b.zero, dyC, x, wc, rstd, false, N, C);
    lc_rmsnorm_backward(b.acc, dyC, x, wc, rstd, false, N, C);
    lc_rmsnorm_backward(b.over, dyC, x, wc, rstd, true, N, C);
    gc_over_check("rmsnorm dx", &b);
    gc_acc_check("rmsnorm dx", &b);

    static const int32_t pos[] = {0, 5, 17, 3, 9};
    float *inv_freq = gc_rope_inv_freq(D, 10000.0);
    float *cs = malloc(sizeof(float) * (size_t)N * D);
    lc_rope_table(cs, pos, inv_freq, N, D);
    b = gc_acc_new((size_t)N * C);
    lc_rope_backward(b.zero, dyC, cs, false, N, H, D, D);
    lc_rope_backward(b.acc, dyC, cs, false, N, H, D, D);
    lc_rope_backward(b.over, dyC, cs, true, N, H, D, D);
    free(cs);
    gc_over_check("rope dx", &b);
    gc_acc_check("rope dx", &b);

    gc_acc_buf bg = gc_acc_new((size_t)N * C), bu = gc_acc_new((size_t)N * C);
    lc_glu_backward(bg.zero, bu.zero, dyC, x, tmp, LC_ACT_KIND_SILU, false, (size_t)N * C);
    lc_glu_backward(bg.acc, bu.acc, dyC, x, tmp, LC_ACT_KIND_SILU, false, (size_t)N * C);
    lc_glu_backward(bg.over, bu.over, dyC, x, tmp, LC_ACT_KIND_SILU, true, (size_t)N * C);
    gc_over_check("swiglu dgate", &bg);
    gc_over_check("swiglu dup", &bu);
    gc_acc_check("swiglu dgate", &bg);
    gc_acc_check("swiglu dup", &bu);

    // Attention: B=1, T=N, H=2 over KVH=1, D=4.
    {
        int T = N, KVH = 1;
        float *q = gc_rand_buf((size_t)T * H * D, -1.0f, 1.0f), *k = gc_rand_buf((size_t)T * KVH * D, -1.0f, 1.0f);
        float *v = gc_rand_buf((size_t)T * KVH * D, -1.0f, 1.0f), *dout = gc_rand_buf((size_t)T * H * D, -1.0f, 1.0f);
        float *out = malloc(sizeof(float) * T * H * D), *lse = malloc(sizeof(float) * T * H), *sc = malloc(sizeof(float) * lc_attention_scratch_floats(T, T, H, KVH, D));
        lc_attention_forward(out, lse, q, k, v, NULL, sc, 1, T, T, H, KVH, D, 0, NULL);
        gc_acc_buf bq = gc_acc_new((size_t)T * H * D), bk = gc_acc_new((size_t)T * KVH * D);
        gc_acc_buf bv = gc_acc_new((size_t)T * KVH * D);
        lc_attention_backward(bq.zero, bk.zero, bv.zero, dout, q, k, v, out, lse, NULL, sc, 1, T, H, KVH, D, NULL);
        lc_attention_backward(bq.acc, bk.acc, bv.acc, dout, q, k, v, out, lse, NULL, sc, 1, T, H, KVH, D, NULL);
        gc_acc_check("attention dq", &bq);
        gc_acc_check("attention dk", &bk);
        gc_acc_check("attention dv", &bv);
        free(q);
        free(k);
        free(v);
        free(dout);
        free(out);
        free(lse);
        free(sc);
    }

    // LoRA, without and with dropout.
    for (int pi = 0; pi < 2; pi++) {
        float p = pi ? 0.3f : 0.0f;
        float *A = gc_rand_buf((size_t)r * C, -0.5f, 0.5f), *B = gc_rand_buf((size_t)O * r, -0.5f, 0.5f);
        float *y = gc_zero_buf((size_t)N * O), *u = malloc(sizeof(float) * N * r), *xd = malloc(sizeof(float) * N * C);
        float *du = malloc(sizeof(float) * N * r);
        lc_lora_forward(y, O, u, pi ? xd : NULL, x, A, B, 2.0f, p, 99, N, C, O, r);
        gc_acc_buf bA = gc_acc_new((size_t)r * C), bB = gc_acc_new((size_t)O * r), bx = gc_acc_new((size_t)N * C);
        lc_lora_backward(bA.zero, bB.zero, bx.zero, du, dyO, O, x, pi ? xd : NULL, u, A, B, 2.0f, p, 99, N, C, O, r);
        lc_lora_backward(bA.acc, bB.acc, bx.acc, du, dyO, O, x, pi ? xd : NULL, u, A, B, 2.0f, p, 99, N, C, O, r);
        gc_acc_check(pi ? "lora dA (p=0.3)" : "lora dA", &bA);
        gc_acc_check(pi ? "lora dB (p=0.3)" : "lora dB", &bB);
        gc_acc_check(pi ? "lora dx (p=0.3)" : "lora dx", &bx);
        free(A);
        free(B);
        free(y);
        free(u);
        free(xd);
        free(du);
    }
    // Cross-entropy dx: test_new_backward_kernels_accumulate (test_autograd_ops.c).

    free(x);
    free(w);
    free(dyO);
    free(dyC);
    free(wc);
    free(rstd);
    free(tmp);
    free(inv_freq);
}
END_TEST

// Gradient accumulation over micro-batches: two backward passes into the same
// adapter gradients without zeroing give twice one pass.
START_TEST(test_lora_grad_accumulation) {
    gc_rng_seed(960);
    lin_ctx c;
    lin_setup(&c, 4, 6, 5, false, 3, 0.3f);
    size_t nA = (size_t)3 * c.n_in, nB = (size_t)c.n_out * 3;
    float *dx = lin_backward(&c, true, NULL); // zeroes dA, dB first
    float *dA = malloc(sizeof(float) * nA), *dB = malloc(sizeof(float) * nB);
    memcpy(dA, c.lora.dA, sizeof(float) * nA);
    memcpy(dB, c.lora.dB, sizeof(float) * nB);
    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *y = lc_op_linear(&g, gc_tensor_of(&g, c.x, c.N, c.n_in, false), c.w, NULL, c.n_out, &c.lora);
    gc_seed_grad(&g, y, c.R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    lc_graph_free(&g);
    for (size_t i = 0; i < nA; i++) ck_assert(fabsf(c.lora.dA[i] - 2.0f * dA[i]) <= 1e-5f * (fabsf(dA[i]) + 1e-3f));
    for (size_t i = 0; i < nB; i++) ck_assert(fabsf(c.lora.dB[i] - 2.0f * dB[i]) <= 1e-5f * (fabsf(dB[i]) + 1e-3f));
    free(dx);
    free(dA);
    free(dB);
    lin_free(&c);
}
END_TEST

// ----------------------------------------------------------- composed graph

// rmsnorm -> q (LoRA), k, v (LoRA with dropout) -> rope -> attention (packed)
// -> o -> residual add -> rmsnorm -> gate (LoRA), up -> swiglu -> down
// -> residual add -> cross-entropy.
enum { CB = 2, CT = 4, CN = CB * CT, CC = 8, CH = 2, CKVH = 1, CD = 4, CF = 12, CV = 11, CR = 2 };

typedef struct comp_ctx {
    float *x, *wn1, *wn2, *wq, *wk, *wv, *wo, *wg, *wu, *wd, *head, *inv_freq;
    int32_t pos[CN], seg[CN], tg[CN];
    lc_lora_ref lq, lv, lg;
    float norm;
    lc_graph g; // recording, so the fp32 re-runs use the training dropout mask
} comp_ctx;

static void lora_init(lc_lora_ref *l, int n_in, int n_out, float dropout, uint64_t seed) {
    l->A = gc_rand_buf((size_t)CR * n_in, -0.5f, 0.5f);
    l->B = gc_rand_buf((size_t)n_out * CR, -0.5f, 0.5f);
    l->dA = gc_zero_buf((size_t)CR * n_in);
    l->dB = gc_zero_buf((size_t)n_out * CR);
    l->r = CR;
    l->scale = 2.0f;
    l->dropout = dropout;
    l->mask_seed = seed;
}

static void lora_zero(lc_lora_ref *l, int n_in, int n_out) {
    memset(l->dA, 0, sizeof(float) * (size_t)l->r * n_in);
    memset(l->dB, 0, sizeof(float) * (size_t)n_out * l->r);
}

static void lora_release(lc_lora_ref *l) {
    free(l->A);
    free(l->B);
    free(l->dA);
    free(l->dB);
}

static void comp_setup(comp_ctx *c) {
    memset(c, 0, sizeof *c);
    c->x = gc_rand_buf(CN * CC, -1.0f, 1.0f);
    c->wn1 = gc_rand_buf(CC, 0.7f, 1.3f);
    c->wn2 = gc_rand_buf(CC, 0.7f, 1.3f);
    c->wq = gc_rand_buf(CH * CD * CC, -0.5f, 0.5f);
    c->wk = gc_rand_buf(CKVH * CD * CC, -0.5f, 0.5f);
    c->wv = gc_rand_buf(CKVH * CD * CC, -0.5f, 0.5f);
    c->wo = gc_rand_buf(CC * CH * CD, -0.5f, 0.5f);
    c->wg = gc_rand_buf(CF * CC, -0.5f, 0.5f);
    c->wu = gc_rand_buf(CF * CC, -0.5f, 0.5f);
    c->wd = gc_rand_buf(CC * CF, -0.3f, 0.3f);
    c->head = gc_rand_buf(CV * CC, -1.0f, 1.0f);
    c->inv_freq = gc_rope_inv_freq(CD, 10000.0);
    // Sequence 0 packs two examples ([0,2) and [2,4)); sequence 1 is one.
    static const int32_t seg[CN] = {0, 0, 2, 2, 0, 0, 0, 0}, pos[CN] = {0, 1, 0, 1, 0, 1, 2, 3};
    static const int32_t tg[CN] = {3, -1, 7, 1, 10, 0, -1, 5};
    memcpy(c->seg, seg, sizeof seg);
    memcpy(c->pos, pos, sizeof pos);
    memcpy(c->tg, tg, sizeof tg);
    c->norm = 1.0f / 6.0f;
    lora_init(&c->lq, CC, CH * CD, 0.0f, 11);
    lora_init(&c->lv, CC, CKVH * CD, 0.3f, 0x1234567ull);
    lora_init(&c->lg, CC, CF, 0.0f, 13);
    lc_graph_init(&c->g, true);
}

static void comp_free(comp_ctx *c) {
    float *bufs[] = {c->x, c->wn1, c->wn2, c->wq, c->wk, c->wv, c->wo, c->wg, c->wu, c->wd, c->head, c->inv_freq};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    lora_release(&c->lq);
    lora_release(&c->lv);
    lora_release(&c->lg);
    lc_graph_free(&c->g);
}

static double comp_forward(lc_graph *g, comp_ctx *c, bool x_rg, lc_tensor **xt) {
    lc_tensor *x = gc_tensor_of(g, c->x, CN, CC, x_rg);
    lc_tensor *h = lc_op_rmsnorm(g, x, c->wn1, EPS);
    lc_tensor *q = lc_op_linear(g, h, c->wq, NULL, CH * CD, &c->lq);
    lc_tensor *k = lc_op_linear(g, h, c->wk, NULL, CKVH * CD, NULL);
    lc_tensor *v = lc_op_linear(g, h, c->wv, NULL, CKVH * CD, &c->lv);
    // In place, as the model does: the projections' outputs feed only rope and the adds.
    const float *cs = lc_graph_rope_table(g, c->pos, c->inv_freq, CN, CD);
    q = lc_op_rope(g, q, cs, CD, CD, true);
    k = lc_op_rope(g, k, cs, CD, CD, true);
    lc_tensor *a = lc_op_attention(g, q, k, v, c->seg, CB, CT, CT, CH, CKVH, CD, 0, NULL);
    lc_tensor *x2 = lc_op_add(g, x, lc_op_linear(g, a, c->wo, NULL, CC, NULL), true);
    lc_tensor *h2 = lc_op_rmsnorm(g, x2, c->wn2, EPS);
    lc_tensor *gt = lc_op_linear(g, h2, c->wg, NULL, CF, &c->lg);
    lc_tensor *up = lc_op_linear(g, h2, c->wu, NULL, CF, NULL);
    lc_tensor *x3 = lc_op_add(g, x2, lc_op_linear(g, lc_op_glu(g, gt, up, LC_ACT_KIND_SILU), c->wd, NULL, CC, NULL), true);
    ck_assert(x3 != NULL);
    double ls = 0.0;
    int cnt = 0;
    ck_assert_int_eq(lc_op_cross_entropy(g, x3, c->head, CV, 0.0f, c->tg, c->norm, &ls, &cnt), LC_STATUS_OK);
    ck_assert_int_eq(cnt, 6);
    if (xt) *xt = x;
    return ls * c->norm;
}

static double comp_loss_f32(void *p) {
    comp_ctx *c = p;
    lc_graph_reset(&c->g);
    return comp_forward(&c->g, c, true, NULL);
}

static double comp_loss_ref(void *p) {
    comp_ctx *c = p;
    double x[CN * CC], h[CN * CC], q[CN * CH * CD], k[CN * CKVH * CD], v[CN * CKVH * CD];
    double qr[CN * CH * CD], kr[CN * CKVH * CD], a[CN * CH * CD], o[CN * CC], x2[CN * CC], h2[CN * CC];
    double gt[CN * CF], up[CN * CF], s[CN * CF], d[CN * CC];
    for (int i = 0; i < CN * CC; i++) x[i] = c->x[i];
    ref_rmsnorm(h, x, c->wn1, EPS, CN, CC);
    ref_linear(q, h, c->wq, NULL, CN, CC, CH * CD);
    ref_lora(q, h, &c->lq, c->lq.dropout, CN, CC, CH * CD);
    ref_linear(k, h, c->wk, NULL, CN, CC, CKVH * CD);
    ref_linear(v, h, c->wv, NULL, CN, CC, CKVH * CD);
    ref_lora(v, h, &c->lv, c->lv.dropout, CN, CC, CKVH * CD);
    gc_ref_rope(qr, q, c->pos, c->inv_freq, CN, CH, CD, CD);
    gc_ref_rope(kr, k, c->pos, c->inv_freq, CN, CKVH, CD, CD);
    ref_attention(a, qr, kr, v, c->seg, CB, CT, CT, CH, CKVH, CD, 0, NULL);
    ref_linear(o, a, c->wo, NULL, CN, CH * CD, CC);
    for (int i = 0; i < CN * CC; i++) x2[i] = x[i] + o[i];
    ref_rmsnorm(h2, x2, c->wn2, EPS, CN, CC);
    ref_linear(gt, h2, c->wg, NULL, CN, CC, CF);
    ref_lora(gt, h2, &c->lg, c->lg.dropout, CN, CC, CF);
    ref_linear(up, h2, c->wu, NULL, CN, CC, CF);
    ref_swiglu(s, gt, up, CN * CF);
    ref_linear(d, s, c->wd, NULL, CN, CF, CC);
    for (int i = 0; i < CN * CC; i++) x2[i] += d[i];
    return gc_ref_ce(x2, c->head, c->tg, 0.0, CN, CC, CV, NULL) * c->norm;
}

typedef struct comp_grads {
    float *dx, *d[6]; // dA, dB of q, v, gate
} comp_grads;

// One training step on g (reset first): forward, backward; copies the gradients.
static comp_grads comp_step(lc_graph *g, comp_ctx *c, double *loss) {
    lora_zero(&c->lq, CC, CH * CD);
    lora_zero(&c->lv, CC, CKVH * CD);
    lora_zero(&c->lg, CC, CF);
    lc_graph_reset(g);
    lc_tensor *x;
    double L = comp_forward(g, c, true, &x);
    if (loss) *loss = L;
    ck_assert_int_eq(lc_graph_backward(g), LC_STATUS_OK);
    comp_grads r = {.dx = gc_grad_copy(x)};
    lc_lora_ref *ls[3] = {&c->lq, &c->lv, &c->lg};
    int n_out[3] = {CH * CD, CKVH * CD, CF};
    for (int i = 0; i < 3; i++) {
        size_t nA = (size_t)CR * CC, nB = (size_t)n_out[i] * CR;
        r.d[2 * i] = malloc(sizeof(float) * nA);
        r.d[2 * i + 1] = malloc(sizeof(float) * nB);
        memcpy(r.d[2 * i], ls[i]->dA, sizeof(float) * nA);
        memcpy(r.d[2 * i + 1], ls[i]->dB, sizeof(float) * nB);
    }
    return r;
}

static void comp_grads_free(comp_grads *r) {
    free(r->dx);
    for (int i = 0; i < 6; i++) free(r->d[i]);
}

START_TEST(test_composed) {
    gc_rng_seed(1000);
    comp_ctx c;
    comp_setup(&c);
    lc_graph g;
    lc_graph_init(&g, true);
    double L = 0.0;
    comp_grads r = comp_step(&g, &c, &L);
    double Lref = comp_loss_ref(&c);
    fprintf(stderr, "  %-44s loss %.7f ref %.7f\n", "composed", L, Lref);
    ck_assert_msg(fabs(L - Lref) <= 1e-5 * fabs(Lref), "loss %.9g vs reference %.9g", L, Lref);

    gc_check_grad("composed dx", r.dx, c.x, CN * CC, &c, comp_loss_ref, comp_loss_f32, GC_TOL_REF_COMPOSED);
    lc_lora_ref *ls[3] = {&c.lq, &c.lv, &c.lg};
    static const char *names[3] = {"q", "v (dropout 0.3)", "gate"};
    int n_out[3] = {CH * CD, CKVH * CD, CF};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "composed lora %s dA", names[i]);
        gc_check_grad(name, r.d[2 * i], ls[i]->A, (size_t)CR * CC, &c, comp_loss_ref, comp_loss_f32,
                      GC_TOL_REF_COMPOSED);
        snprintf(name, sizeof name, "composed lora %s dB", names[i]);
        gc_check_grad(name, r.d[2 * i + 1], ls[i]->B, (size_t)n_out[i] * CR, &c, comp_loss_ref, comp_loss_f32,
                   GC_TOL_REF_COMPOSED);
    }
    comp_grads_free(&r);
    lc_graph_free(&g);
    comp_free(&c);
}
END_TEST

// ------------------------------------------------------------------- arena

START_TEST(test_arena_reuse) {
    lc_arena a;
    lc_arena_init(&a, 4096);
    static const size_t sizes[] = {1, 100, 64, 3000, 5000, 63, 65, 0, 2000, 4096, 10000, 7, 129};
    enum { NS = sizeof sizes / sizeof *sizes, SPLIT = 5 };
    unsigned char *first[NS];
    size_t held = 0;
    int64_t maps = 0;
    lc_arena_mark m0 = lc_arena_get_mark(&a);
    // The first pass spans several chunks; the reset after it makes them one,
    // and from the second pass on every allocation stays in place.
    for (int rep = 0; rep < 4; rep++) {
        lc_arena_reset(&a, m0);
        if (rep > 0) ck_assert_int_eq(a.n_chunks, 1);
        unsigned char *p[NS];
        for (int i = 0; i < NS; i++) {
            p[i] = lc_arena_alloc(&a, sizes[i]);
            ck_assert(p[i] != NULL);
            ck_assert_msg((uintptr_t)p[i] % 64 == 0, "allocation %d at %p is not 64-byte aligned", i, (void *)p[i]);
            memset(p[i], i + 1, sizes[i]);
            if (rep == 1)
                first[i] = p[i];
            else if (rep > 1)
                ck_assert_msg(p[i] == first[i], "rep %d: allocation %d moved", rep, i);
        }
        for (int i = 0; i < NS; i++) // no two allocations overlap
            for (size_t j = 0; j < sizes[i]; j++) ck_assert_int_eq(p[i][j], i + 1);
        if (rep == 0) ck_assert_int_gt(a.n_chunks, 1);
        if (rep == 1) {
            held = a.held_bytes;
            maps = a.n_maps;
            ck_assert(held >= 4096 + 5000 + 10000);
        } else if (rep > 1) {
            ck_assert_msg(a.held_bytes == held, "rep %d: held %zu, first %zu", rep, a.held_bytes, held);
            ck_assert_int_eq(a.n_maps, maps);
        }
    }
    // A mark in the middle: the tail repeats in the same place.
    lc_arena_reset(&a, m0);
    for (int i = 0; i < SPLIT; i++) ck_assert(lc_arena_alloc(&a, sizes[i]) == first[i]);
    lc_arena_mark m = lc_arena_get_mark(&a);
    for (int rep = 0; rep < 2; rep++) {
        lc_arena_reset(&a, m);
        for (int i = SPLIT; i < NS; i++) ck_assert(lc_arena_alloc(&a, sizes[i]) == first[i]);
    }
    ck_assert(a.held_bytes == held && a.n_maps == maps);
    ck_assert(!a.failed);

    // An allocation that cannot be served fails (NULL, failed set) without
    // losing the arena; a reset clears the failure and the sequence repeats.
    // (Under AddressSanitizer run with ASAN_OPTIONS=allocator_may_return_null=1.)
    ck_assert(lc_arena_alloc(&a, (size_t)1 << 60) == NULL);
    ck_assert(a.failed);
    lc_arena_reset(&a, m0);
    ck_assert(!a.failed);
    for (int i = 0; i < NS; i++) ck_assert(lc_arena_alloc(&a, sizes[i]) == first[i]);
    ck_assert(a.held_bytes == held && a.n_maps == maps);
    lc_arena_free(&a);

    // The graph reports a failed allocation.
    lc_graph g;
    lc_graph_init(&g, false);
    ck_assert(lc_tensor_new(&g, 4, 4) != NULL);
    ck_assert_int_eq(lc_graph_status(&g), LC_STATUS_OK);
    ck_assert(lc_tensor_new(&g, 1 << 30, 1 << 28) == NULL);
    ck_assert_int_ne(lc_graph_status(&g), LC_STATUS_OK);
    lc_graph_reset(&g);
    ck_assert_int_eq(lc_graph_status(&g), LC_STATUS_OK);
    lc_graph_free(&g);
}
END_TEST

// Steps whose request sizes vary, as packed batches of different lengths
// make them: once the largest step has run (and the reset after it has made
// the arena one chunk), no step maps anything and the arena holds one chunk
// of at most 1.25 times the largest step plus a page, whatever the order of
// sizes. (Chunks sized for one step's requests used to pile up instead.)
START_TEST(test_arena_varying_steps) {
    static const size_t sizes[] = {40000, 3000, 150000, 64, 90000, 7000, 220000, 100};
    enum { NS = sizeof sizes / sizeof *sizes, STEPS = 60, LARGEST = 9 };
    lc_arena a;
    lc_arena_init(&a, 16384);
    unsigned seed = 7;
    size_t largest = 0, held = 0;
    int64_t maps = 0;
    for (int step = 0; step < STEPS; step++) {
        lc_arena_reset(&a, (lc_arena_mark){0});
        // Scale 0.3 .. 0.99 of the full sizes, 1 at step LARGEST.
        double f = step == LARGEST ? 1.0 : 0.3 + 0.69 * (double)rand_r(&seed) / RAND_MAX;
        size_t step_bytes = 0;
        for (int i = 0; i < NS; i++) {
            size_t n = (size_t)(f * (double)sizes[i]);
            unsigned char *p = lc_arena_alloc(&a, n);
            ck_assert(p != NULL);
            memset(p, 1, n);
            step_bytes += (n + 63) / 64 * 64;
        }
        if (step_bytes > largest) largest = step_bytes;
        if (step == LARGEST + 1) {
            held = a.held_bytes;
            maps = a.n_maps;
        } else if (step > LARGEST + 1) {
            ck_assert_msg(a.n_maps == maps, "step %d: %lld chunks mapped, %lld after the largest step", step,
                          (long long)a.n_maps, (long long)maps);
            ck_assert_msg(a.held_bytes == held, "step %d: %zu bytes held, %zu after the largest step", step,
                          a.held_bytes, held);
            ck_assert_int_eq(a.n_chunks, 1);
        }
    }
    ck_assert_uint_le(held, largest + largest / 4 + 4096);
    lc_arena_free(&a);
}
END_TEST

// A reset to the start makes a fresh chunk whose pages are not yet in
// memory; lc_arena_prefault brings in exactly those the largest step used.
START_TEST(test_arena_prefault) {
    lc_arena a;
    lc_arena_init(&a, 1 << 16);
    for (int i = 0; i < 8; i++) ck_assert(lc_arena_alloc(&a, 100000) != NULL); // several chunks
    lc_arena_reset(&a, (lc_arena_mark){0});
    ck_assert_int_eq(a.n_chunks, 1);
    size_t page = 4096, pages = (a.high + page - 1) / page, all = a.chunks[0].size / page;
    unsigned char *vec = malloc(all);
    ck_assert_int_eq(mincore(a.chunks[0].base, all * page, vec), 0);
    size_t resident = 0;
    for (size_t i = 0; i < all; i++) resident += vec[i] & 1;
    ck_assert_uint_eq(resident, 0);
    lc_arena_prefault(&a);
    ck_assert_int_eq(mincore(a.chunks[0].base, all * page, vec), 0);
    for (size_t i = 0; i < pages; i++) ck_assert_msg(vec[i] & 1, "page %zu of %zu not in memory", i, pages);
    free(vec);
    lc_arena_free(&a);
}
END_TEST

START_TEST(test_graph_step_reuse) {
    // Whole training steps on one graph: after the first (whose chunks the
    // next reset makes one), nothing new is allocated and the gradients are
    // the same.
    gc_rng_seed(1100);
    comp_ctx c;
    comp_setup(&c);
    lc_graph g;
    lc_graph_init(&g, true);
    g.arena.chunk_size = 4096; // small chunks, so a step spans several
    double L0 = 0.0;
    comp_grads r0 = comp_step(&g, &c, &L0);
    ck_assert(g.arena.n_chunks > 1);
    size_t held = 0;
    int64_t maps = 0;
    for (int rep = 0; rep < 3; rep++) {
        double L = 0.0;
        comp_grads r = comp_step(&g, &c, &L);
        if (rep == 0) {
            held = g.arena.held_bytes;
            maps = g.arena.n_maps;
        }
        ck_assert_msg(g.arena.held_bytes == held, "step %d: held %zu, second %zu", rep + 2, g.arena.held_bytes, held);
        ck_assert_int_eq(g.arena.n_maps, maps);
        ck_assert_int_eq(g.arena.n_chunks, 1);
        ck_assert(L == L0);
        ck_assert(memcmp(r.dx, r0.dx, sizeof(float) * CN * CC) == 0);
        ck_assert(memcmp(r.d[3], r0.d[3], sizeof(float) * CKVH * CD * CR) == 0);
        comp_grads_free(&r);
    }
    ck_assert_int_eq(lc_graph_status(&g), LC_STATUS_OK);
    comp_grads_free(&r0);
    lc_graph_free(&g);
    comp_free(&c);
}
END_TEST

static Suite *autograd_suite(void) {
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_linear_frozen);
    tcase_add_test(tc, test_linear_lora);
    tcase_add_test(tc, test_dropout_mask);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_attention_causal);
    tcase_add_test(tc, test_attention_packed);
    tcase_add_test(tc, test_attention_window);
    tcase_add_test(tc, test_attention_variants);
    tcase_add_test(tc, test_attention_forward_decode);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_fan_out);
    tcase_add_test(tc, test_cross_entropy);
    tcase_add_test(tc, test_backward_kernels_accumulate);
    tcase_add_test(tc, test_lora_grad_accumulation);
    tcase_add_test(tc, test_composed);
    suite_add_tcase(s, tc);
    TCase *ta = tcase_create("arena");
    tcase_add_test(ta, test_arena_reuse);
    tcase_add_test(ta, test_arena_varying_steps);
    tcase_add_test(ta, test_arena_prefault);
    tcase_add_test(ta, test_graph_step_reuse);
    suite_add_tcase(s, ta);
    return s;
}

int main(void) {
    return lc_test_run_suite(autograd_suite());
}
