// Gradient tests of the newer autograd ops and kernels (autograd/graph.c,
// autograd/kernels.c): LayerNorm (with and without weight and bias), the
// element-wise activations (SiLU, tanh GELU, erf GELU, ReLU), the gated units
// (GeGLU in both GELUs, SwiGLU through lc_op_glu), clamp (OLMo's clip_qkv),
// column gathers (splitting a fused projection, Bloom's per-head layout),
// partial rotary embeddings and soft-capped cross-entropy (Gemma 2). The
// older ops are in test_autograd.c.
//
// As there (grad_check.h): each op runs through a recording graph with its
// output gradient seeded by a random projection R; the backward's gradient of
// L = sum(y * R) is compared element by element with central differences of L
// on a double-precision reference written here and on the op's own fp32
// forward. The forwards are compared with the references; every backward
// kernel is also checked to accumulate (+=) into its output.
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
#include "autograd/kernels.h"
#include "autograd/parallel.h"

#define EPS 1e-5f
#define PI 3.14159265358979323846

static const char *const act_names[] = {"silu", "gelu_tanh", "gelu", "relu"};

// ------------------------------------------------------ double references

static void ref_layernorm(double *y, const double *x, const float *w, const float *b, double eps, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) mean += xr[c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
        double r = 1.0 / sqrt(var / C + eps);
        for (int c = 0; c < C; c++)
            y[(size_t)n * C + c] = (xr[c] - mean) * r * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
    }
}

static double ref_act(lc_act_kind act, double x) {
    switch (act) {
    case LC_ACT_KIND_SILU: return x / (1.0 + exp(-x));
    case LC_ACT_KIND_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / PI) * (x + 0.044715 * x * x * x)));
    case LC_ACT_KIND_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case LC_ACT_KIND_RELU: return x > 0.0 ? x : 0.0;
    }
    ck_abort_msg("unknown activation %d", (int)act);
    return 0.0;
}

// The derivative, for element-wise checks where finite differences are too coarse.
static double ref_act_grad(lc_act_kind act, double x) {
    switch (act) {
    case LC_ACT_KIND_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }
    case LC_ACT_KIND_GELU_TANH: {
        double k = sqrt(2.0 / PI), th = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case LC_ACT_KIND_GELU: return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * PI);
    case LC_ACT_KIND_RELU: return x > 0.0 ? 1.0 : 0.0;
    }
    ck_abort_msg("unknown activation %d", (int)act);
    return 0.0;
}


// --------------------------------------------------------------- LayerNorm

static void ln_ref(double *y, const double *x, const gc_un_ctx *c) { ref_layernorm(y, x, c->w, c->b, EPS, c->N, c->C); }

static lc_tensor *ln_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) { return lc_op_layernorm(g, x, c->w, c->b, EPS); }

START_TEST(test_layernorm) {
    gc_rng_seed(1300);
    enum { N = 5, C = 8 };
    float *x = gc_rand_buf((size_t)N * C, -2.0f, 2.0f);
    for (int i = 0; i < C; i++) x[3 * C + i] = 3.0f + 0.25f * x[3 * C + i]; // the mean dominates
    for (int i = 0; i < C; i++) x[4 * C + i] *= 0.01f;                      // a small row: eps matters there
    float *w = gc_rand_buf(C, 0.5f, 1.5f), *b = gc_rand_buf(C, -0.5f, 0.5f);
    float *R = gc_rand_buf((size_t)N * C, -1.0f, 1.0f);
    static const char *labels[] = {"layernorm w,b", "layernorm w=b=NULL", "layernorm w, b=NULL"};
    for (int k = 0; k < 3; k++) {
        gc_un_ctx c = {.N = N, .C = C, .out_cols = C, .x = x, .R = R, .ref = ln_ref, .op = ln_op};
        c.w = k == 1 ? NULL : w;
        c.b = k == 0 ? b : NULL;
        // Step 1e-4 for the reference: the curvature of the small row is ~1/|x|^2.
        // The fp32 FD is run on the other rows only: on the small row a step
        // of GC_H_F32 is not small against |x| ~ 0.01 (checked on its own
        // against the reference).
        gc_un_result r = gc_un_run(&c, labels[k], 1e-4, (size_t)4 * C);
        // Shifting a row does not change its normalized output: each row of dx sums to 0.
        for (int n = 0; n < N; n++) {
            double s = 0.0, m = 0.0;
            for (int i = 0; i < C; i++) {
                s += r.dx[n * C + i];
                m = fmax(m, fabs(r.dx[n * C + i]));
            }
            ck_assert_msg(fabs(s) <= 1e-5 * m, "%s: row %d of dx sums to %g", labels[k], n, s);
        }
        gc_un_result_free(&r);
    }
    free(x);
    free(w);
    free(b);
    free(R);
}
END_TEST

// ------------------------------------------------------------- activations

static void act_ref(double *y, const double *x, const gc_un_ctx *c) {
    for (size_t i = 0; i < (size_t)c->N * c->C; i++) y[i] = ref_act(c->act, x[i]);
}

static lc_tensor *act_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) { return lc_op_act(g, x, c->act); }

// Rows 0-1 random in [-4, 4], row 2 near 0, row 3 saturated.
enum { ACT_N = 4, ACT_C = 10 };
static const float act_near0[ACT_C] = {0.0f, 1e-3f, -1e-3f, 0.02f, -0.02f, 0.3f, -0.3f, 5e-5f, -5e-5f, 0.1f};
// ReLU: nothing within the fp32 step (GC_H_F32) of the kink.
static const float act_near0_relu[ACT_C] = {0.03f, -0.03f, 0.02f, -0.02f, 0.05f, -0.05f, 0.3f, -0.3f, 0.1f, -0.1f};
static const float act_saturated[ACT_C] = {8.0f, -8.0f, 12.0f, -12.0f, 20.0f, -20.0f, 30.0f, -30.0f, 6.0f, -6.0f};

START_TEST(test_act) {
    for (int k = 0; k < 4; k++) {
        lc_act_kind act = (lc_act_kind)k;
        gc_rng_seed(1400 + k);
        size_t n = (size_t)ACT_N * ACT_C;
        float *x = gc_rand_buf(n, -4.0f, 4.0f), *R = gc_rand_buf(n, -1.0f, 1.0f);
        memcpy(x + 2 * ACT_C, act == LC_ACT_KIND_RELU ? act_near0_relu : act_near0, sizeof act_near0);
        memcpy(x + 3 * ACT_C, act_saturated, sizeof act_saturated);
        if (act == LC_ACT_KIND_RELU)
            for (size_t i = 0; i < n; i++)
                if (fabsf(x[i]) < 0.02f) x[i] = x[i] < 0.0f ? -0.02f : 0.02f;
        gc_un_ctx c = {.N = ACT_N, .C = ACT_C, .out_cols = ACT_C, .x = x, .R = R,
                    .ref = act_ref, .op = act_op, .act = act};
        char label[64];
        snprintf(label, sizeof label, "act %s", act_names[k]);
        gc_un_result r = gc_un_run(&c, label, GC_H_REF, n);
        // Element by element near 0 and saturated (relative to each element's
        // own size, where the max-normalized FD error would not see it).
        for (size_t i = 2 * ACT_C; i < n; i++) {
            double want = R[i] * ref_act_grad(act, x[i]), yw = ref_act(act, x[i]);
            ck_assert_msg(fabs(r.dx[i] - want) <= 1e-4 * fabs(want) + 1e-7, "%s: dx at x=%g: %g, want %g", label,
                          x[i], r.dx[i], want);
            ck_assert_msg(fabs(r.y[i] - yw) <= 1e-5 * fabs(yw) + 1e-7, "%s: y at x=%g: %g, want %g", label, x[i],
                          r.y[i], yw);
        }
        gc_un_result_free(&r);
        free(x);
        free(R);
    }
    // ReLU at exactly 0: value 0, gradient 0 (as torch.relu).
    float z[2] = {0.0f, -0.0f}, y[2] = {1.0f, 1.0f}, d[2] = {0.0f, 0.0f}, one[2] = {1.0f, 1.0f};
    lc_act_forward(y, z, LC_ACT_KIND_RELU, 2);
    lc_act_backward(d, one, z, LC_ACT_KIND_RELU, false, 2);
    ck_assert(y[0] == 0.0f && y[1] == 0.0f && d[0] == 0.0f && d[1] == 0.0f);
}
END_TEST

// -------------------------------------------------------------------- GLU

typedef struct glu_ctx {
    int N, C;
    float *a, *b, *R; // gate, up, projection
    lc_act_kind act;
    lc_graph g;
} glu_ctx;

static void glu_ref(double *y, const float *a, const float *b, lc_act_kind act, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ref_act(act, a[i]) * (double)b[i];
}

static double glu_loss_ref(void *p) {
    glu_ctx *c = p;
    size_t n = (size_t)c->N * c->C;
    double *y = gc_dbuf(n);
    glu_ref(y, c->a, c->b, c->act, n);
    double L = gc_dot_dR(y, c->R, n);
    free(y);
    return L;
}

static double glu_loss_f32(void *p) {
    glu_ctx *c = p;
    lc_graph_reset(&c->g);
    lc_tensor *y = lc_op_glu(&c->g, gc_tensor_of(&c->g, c->a, c->N, c->C, false),
                             gc_tensor_of(&c->g, c->b, c->N, c->C, false), c->act);
    ck_assert(y != NULL);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->C);
}

START_TEST(test_glu) {
    static const lc_act_kind acts[] = {LC_ACT_KIND_GELU_TANH, LC_ACT_KIND_GELU, LC_ACT_KIND_SILU};
    for (int k = 0; k < 3; k++) {
        gc_rng_seed(1500 + k);
        glu_ctx c = {.N = 3, .C = 8, .act = acts[k]};
        size_t n = (size_t)c.N * c.C;
        c.a = gc_rand_buf(n, -3.0f, 3.0f);
        static const float big[] = {8.0f, -8.0f, 12.0f, -12.0f, 20.0f, -20.0f, 0.0f, 1e-4f};
        memcpy(c.a + 2 * c.C, big, sizeof big); // saturated gates (and 0) in the last row
        c.b = gc_rand_buf(n, -2.0f, 2.0f);
        c.R = gc_rand_buf(n, -1.0f, 1.0f);
        lc_graph_init(&c.g, false);
        char name[64];

        lc_tensor *gt = gc_tensor_of(&c.g, c.a, c.N, c.C, false), *ut = gc_tensor_of(&c.g, c.b, c.N, c.C, false);
        lc_tensor *y = lc_op_glu(&c.g, gt, ut, c.act);
        double *yr = gc_dbuf(n);
        glu_ref(yr, c.a, c.b, c.act, n);
        snprintf(name, sizeof name, "glu %s", act_names[acts[k]]);
        gc_check_forward(name, y->data, yr, n);
        // The kernel directly gives the same values.
        float *yk = malloc(sizeof(float) * n);
        lc_glu_forward(yk, c.a, c.b, c.act, n);
        ck_assert(memcmp(yk, y->data, sizeof(float) * n) == 0);

        lc_graph g;
        lc_graph_init(&g, true);
        lc_tensor *gate = gc_tensor_of(&g, c.a, c.N, c.C, true), *up = gc_tensor_of(&g, c.b, c.N, c.C, true);
        y = lc_op_glu(&g, gate, up, c.act);
        ck_assert_int_eq(g.n_tape, 1);
        gc_seed_grad(&g, y, c.R);
        ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
        float *dg = gc_grad_copy(gate), *du = gc_grad_copy(up);
        snprintf(name, sizeof name, "glu %s dgate", act_names[acts[k]]);
        gc_check_grad(name, dg, c.a, n, &c, glu_loss_ref, glu_loss_f32, GC_TOL_REF);
        snprintf(name, sizeof name, "glu %s dup", act_names[acts[k]]);
        gc_check_grad(name, du, c.b, n, &c, glu_loss_ref, glu_loss_f32, GC_TOL_REF);
        // Saturated gates, element by element: d/dg act(g)·u -> u for g >> 0, -> 0 for g << 0.
        for (int i = 0; i < c.C; i++) {
            size_t j = (size_t)2 * c.C + i;
            double want = c.R[j] * c.b[j] * ref_act_grad(c.act, c.a[j]);
            ck_assert_msg(fabs(dg[j] - want) <= 1e-4 * fabs(want) + 1e-7, "%s at g=%g: %g vs %g", name, c.a[j],
                          dg[j], want);
        }

        lc_graph_free(&g);
        lc_graph_free(&c.g);
        free(dg);
        free(du);
        free(yr);
        free(yk);
        free(c.a);
        free(c.b);
        free(c.R);
    }
}
END_TEST

// ------------------------------------------------------------------- clamp

static void clamp_ref(double *y, const double *x, const gc_un_ctx *c) {
    double l = c->limit;
    for (size_t i = 0; i < (size_t)c->N * c->C; i++) y[i] = x[i] < -l ? -l : x[i] > l ? l : x[i];
}

static lc_tensor *clamp_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) { return lc_op_clamp(g, x, c->limit); }

START_TEST(test_clamp) {
    gc_rng_seed(1600);
    const float limit = 1.5f;
    enum { N = 4, C = 8 };
    size_t n = (size_t)N * C;
    float *x = gc_rand_buf(n, -3.0f, 3.0f), *R = gc_rand_buf(n, -1.0f, 1.0f);
    // Just inside and just outside both limits, and far on each side.
    static const float edge[C] = {-1.6f, -1.45f, 1.45f, 1.6f, -2.9f, 2.9f, 0.0f, -0.5f};
    memcpy(x + 3 * C, edge, sizeof edge);
    // Nothing within a few fp32 steps (GC_H_F32) of ±limit, where the FD would straddle the kink.
    for (size_t i = 0; i < n; i++)
        if (fabsf(fabsf(x[i]) - limit) < 0.04f) x[i] += x[i] < 0.0f ? -0.1f : 0.1f;
    int inside = 0, above = 0, below = 0;
    for (size_t i = 0; i < n; i++) {
        inside += fabsf(x[i]) < limit;
        above += x[i] > limit;
        below += x[i] < -limit;
    }
    ck_assert_msg(inside > 0 && above > 0 && below > 0, "inside %d above %d below %d", inside, above, below);

    gc_un_ctx c = {.N = N, .C = C, .out_cols = C, .x = x, .R = R, .ref = clamp_ref, .op = clamp_op, .limit = limit};
    gc_un_result r = gc_un_run(&c, "clamp limit=1.5", GC_H_REF, n);
    for (size_t i = 0; i < n; i++) {
        float want = x[i] < -limit ? -limit : x[i] > limit ? limit : x[i];
        ck_assert_msg(r.y[i] == want, "clamp(%g) = %g", x[i], r.y[i]);
        ck_assert_msg(r.dx[i] == (fabsf(x[i]) <= limit ? R[i] : 0.0f), "dx at x=%g: %g (R %g)", x[i], r.dx[i], R[i]);
    }
    gc_un_result_free(&r);

    // At the limits exactly the gradient passes (torch.clamp: -limit <= x <= limit);
    // one float beyond, it does not.
    float xb[6] = {-limit, limit, nextafterf(limit, 0.0f), nextafterf(-limit, 0.0f), nextafterf(limit, 10.0f),
                   nextafterf(-limit, -10.0f)};
    static const float pass[6] = {1, 1, 1, 1, 0, 0};
    float yb[6], db[6] = {0}, ones[6] = {1, 1, 1, 1, 1, 1};
    lc_clamp_forward(yb, xb, limit, 6);
    lc_clamp_backward(db, ones, xb, limit, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(db[i] == pass[i], "clamp gradient at x=%.9g (limit %g): %g, want %g", xb[i], limit, db[i],
                      pass[i]);
        ck_assert(fabsf(yb[i]) <= limit);
        if (pass[i] != 0.0f) ck_assert(yb[i] == xb[i]);
    }
    free(x);
    free(R);
}
END_TEST

// ------------------------------------------------------------- gather_cols

static void gather_ref(double *y, const double *x, const gc_un_ctx *c) {
    for (int r = 0; r < c->N; r++)
        for (int j = 0; j < c->out_cols; j++) y[(size_t)r * c->out_cols + j] = x[(size_t)r * c->C + c->cols[j]];
}

static lc_tensor *gather_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) {
    return lc_op_gather_cols(g, x, c->cols, c->out_cols);
}

// Bloom's fused query_key_value output: per head h, [q_h | k_h | v_h], D each.
enum { GH = 3, GD = 2, GN = 4, GC = 3 * GH * GD };

static void bloom_cols(int32_t *cols, int part) { // part 0: q, 1: k, 2: v
    for (int h = 0; h < GH; h++)
        for (int d = 0; d < GD; d++) cols[h * GD + d] = h * 3 * GD + part * GD + d;
}

START_TEST(test_gather_cols) {
    gc_rng_seed(1700);
    size_t n = (size_t)GN * GC;
    float *x = gc_rand_buf(n, -1.0f, 1.0f);

    // One gather, a permuted non-contiguous subset: unused columns get no gradient.
    static const int32_t perm[] = {14, 3, 9, 0, 17, 5, 11, 6};
    enum { NP = sizeof perm / sizeof *perm };
    float *R = gc_rand_buf((size_t)GN * NP, -1.0f, 1.0f);
    gc_un_ctx c = {.N = GN, .C = GC, .out_cols = NP, .x = x, .R = R, .ref = gather_ref, .op = gather_op, .cols = perm};
    gc_un_result r = gc_un_run(&c, "gather_cols permuted subset", GC_H_REF, n);
    for (int row = 0; row < GN; row++) {
        for (int j = 0; j < NP; j++) ck_assert(r.y[row * NP + j] == x[row * GC + perm[j]]);
        for (int col = 0; col < GC; col++) {
            float want = 0.0f;
            for (int j = 0; j < NP; j++)
                if (perm[j] == col) want = R[row * NP + j];
            ck_assert_msg(r.dx[row * GC + col] == want, "row %d col %d: %g, want %g", row, col, r.dx[row * GC + col],
                          want);
        }
    }
    gc_un_result_free(&r);
    free(R);

    // Bloom's split into q, k, v (three gathers of one tensor, gradients summed).
    int32_t cols[3][GH * GD];
    float *Rs[3];
    for (int p = 0; p < 3; p++) {
        bloom_cols(cols[p], p);
        Rs[p] = gc_rand_buf((size_t)GN * GH * GD, -1.0f, 1.0f);
    }
    ck_assert_int_eq(cols[0][GD], 3 * GD); // q of head 1 starts after head 0's q, k, v
    ck_assert_int_eq(cols[2][0], 2 * GD);
    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *xt = gc_tensor_of(&g, x, GN, GC, true);
    for (int p = 0; p < 3; p++) {
        lc_tensor *y = lc_op_gather_cols(&g, xt, cols[p], GH * GD);
        ck_assert(y != NULL);
        for (int row = 0; row < GN; row++)
            for (int j = 0; j < GH * GD; j++) ck_assert(y->data[row * GH * GD + j] == x[row * GC + cols[p][j]]);
        gc_seed_grad(&g, y, Rs[p]);
    }
    ck_assert_int_eq(g.n_tape, 3);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    for (int row = 0; row < GN; row++)
        for (int h = 0; h < GH; h++)
            for (int p = 0; p < 3; p++)
                for (int d = 0; d < GD; d++) {
                    float got = xt->grad[row * GC + h * 3 * GD + p * GD + d];
                    float want = Rs[p][row * GH * GD + h * GD + d];
                    ck_assert_msg(got == want, "bloom split row %d head %d part %d dim %d: %g, want %g", row, h, p, d,
                                  got, want);
                }
    fprintf(stderr, "  %-44s n=%5zu exact\n", "gather_cols bloom q/k/v split dx", n);
    lc_graph_free(&g);
    for (int p = 0; p < 3; p++) free(Rs[p]);
    free(x);
}
END_TEST

// ---------------------------------------------------------- partial RoPE

static void rope_ref(double *y, const double *x, const gc_un_ctx *c) {
    gc_ref_rope(y, x, c->pos, c->inv_freq, c->N, c->C / c->head_dim, c->head_dim, c->rot);
}

static lc_tensor *rope_op(lc_graph *g, lc_tensor *x, const gc_un_ctx *c) {
    return lc_op_rope(g, x, lc_graph_rope_table(g, c->pos, c->inv_freq, c->N, c->rot), c->head_dim, c->rot, c->reuse);
}

START_TEST(test_rope_partial) {
    static const int32_t pos[] = {0, 5, 17, 3};
    enum { N = 4, H = 2 };
    // Head 64 runs the rotation's vector loop on whole registers.
    static const struct {
        int D, rot;
        bool reuse;
    } cases[] = {{8, 8, false}, {8, 4, false}, {8, 4, true}, {8, 6, false}, {64, 64, true}, {64, 48, false}};
    for (int k = 0; k < (int)(sizeof cases / sizeof *cases); k++) {
        gc_rng_seed(1800 + k);
        int rot = cases[k].rot, D = cases[k].D;
        size_t n = (size_t)N * H * D;
        float *inv_freq = gc_rope_inv_freq(rot, 10000.0);
        float *x = gc_rand_buf(n, -1.0f, 1.0f), *R = gc_rand_buf(n, -1.0f, 1.0f);
        gc_un_ctx c = {.N = N, .C = H * D, .out_cols = H * D, .x = x, .R = R, .ref = rope_ref, .op = rope_op,
                    .pos = pos, .inv_freq = inv_freq, .head_dim = D, .rot = rot, .reuse = cases[k].reuse};
        char label[64];
        snprintf(label, sizeof label, "rope D=%d rot=%d%s", D, rot, cases[k].reuse ? " in place" : "");
        gc_un_result r = gc_un_run(&c, label, GC_H_REF, n);
        int rotated = 0;
        for (int row = 0; row < N; row++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < D; i++) {
                    size_t j = ((size_t)row * H + h) * D + i;
                    if (i >= rot || pos[row] == 0) {
                        // Untouched dims (and position 0) pass through both ways, exactly.
                        ck_assert_msg(r.y[j] == x[j], "%s: y row %d head %d dim %d changed", label, row, h, i);
                        ck_assert_msg(r.dx[j] == R[j], "%s: dx row %d head %d dim %d: %g, want %g", label, row, h, i,
                                      r.dx[j], R[j]);
                    } else {
                        rotated += r.y[j] != x[j];
                    }
                }
        ck_assert_msg(rotated > N * H * rot / 2, "%s: only %d rotated values changed", label, rotated);
        gc_un_result_free(&r);
        free(inv_freq);
        free(x);
        free(R);
    }
}
END_TEST

// ------------------------------------------------ soft-capped cross-entropy

START_TEST(test_cross_entropy_softcap) {
    gc_rng_seed(1900);
    static const int32_t tg[] = {2, -1, 6, 0, 3, 3, -1, 5, 1, 4, 0, 6};
    gc_ce_ctx c = {.N = 12, .C = 6, .V = 7, .tg = tg, .cap = 3.0f};
    size_t n = (size_t)c.N * c.C;
    c.x = gc_rand_buf(n, -1.5f, 1.5f);
    c.head = gc_rand_buf((size_t)c.V * c.C, -1.5f, 1.5f);
    double *xd = gc_to_d(c.x, n);
    int n_targets = 0;
    double ref_loss = gc_ref_ce(xd, c.head, tg, c.cap, c.N, c.C, c.V, &n_targets);
    ck_assert_int_eq(n_targets, 10);
    c.norm = 1.0f / (float)n_targets;

    // The cap bites: logits well beyond it, and the loss differs from the uncapped one.
    double top = 0.0;
    for (int i = 0; i < c.N; i++)
        for (int j = 0; j < c.V; j++) {
            double l = 0.0;
            for (int k = 0; k < c.C; k++) l += xd[i * c.C + k] * c.head[j * c.C + k];
            top = fmax(top, fabs(l));
        }
    double uncapped = gc_ref_ce(xd, c.head, tg, 0.0, c.N, c.C, c.V, NULL);
    fprintf(stderr, "  %-44s max|logit| %.3g cap %g, loss %.6f uncapped %.6f\n", "cross-entropy softcap", top, c.cap,
            ref_loss, uncapped);
    ck_assert_msg(top > 1.5 * c.cap, "largest |logit| %g does not reach past the cap %g", top, c.cap);
    ck_assert_msg(fabs(uncapped - ref_loss) > 0.05 * fabs(ref_loss), "capped %g vs uncapped %g", ref_loss, uncapped);

    lc_graph_init(&c.g, false);
    lc_graph g;
    lc_graph_init(&g, true);
    lc_tensor *x = gc_tensor_of(&g, c.x, c.N, c.C, true);
    double ls = 0.0;
    int cnt = 0;
    ck_assert_int_eq(lc_op_cross_entropy(&g, x, c.head, c.V, c.cap, tg, c.norm, &ls, &cnt), LC_STATUS_OK);
    ck_assert_int_eq(cnt, n_targets);
    double le = fabs(ls - ref_loss) / fabs(ref_loss);
    fprintf(stderr, "  %-44s loss %.7f ref %.7f rel err %.2e\n", "cross-entropy softcap loss_sum", ls, ref_loss, le);
    ck_assert_msg(le <= 1e-6, "loss_sum %.9g vs reference %.9g", ls, ref_loss);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    float *dx = gc_grad_copy(x);
    ck_assert(dx != NULL);
    for (int i = 0; i < c.N; i++)
        if (tg[i] < 0)
            for (int j = 0; j < c.C; j++) ck_assert_msg(dx[i * c.C + j] == 0.0f, "skipped row %d has a gradient", i);
    gc_check_grad("cross-entropy softcap=3 dx", dx, c.x, n, &c, gc_ce_loss_ref, gc_ce_loss_f32, GC_TOL_REF);

    // Other chunk sizes give the same loss and dx (capgrad is reused per row
    // of each thread).
    static const int chunks[] = {1, 3, 12};
    float *dxk = malloc(sizeof(float) * n), *logits = malloc(sizeof(float) * (size_t)c.N * c.V);
    float *xrows = malloc(sizeof(float) * n), *capgrad = malloc(sizeof(float) * (size_t)c.V * lc_parallel_threads());
    for (int k = 0; k < 3; k++) {
        memset(dxk, 0, sizeof(float) * n);
        double lk = 0.0;
        int ck = 0;
        lc_cross_entropy_forward(&lk, &ck, dxk, logits, xrows, capgrad, c.x, &(lc_weight){LC_WTYPE_F32, c.head, c.V, c.C}, LC_COMPUTE_FP32, tg, c.norm, c.cap, c.N, c.C, c.V,
                                 chunks[k]);
        ck_assert_int_eq(ck, n_targets);
        ck_assert_msg(fabs(lk - ref_loss) <= 1e-6 * fabs(ref_loss), "chunk %d: loss %.9g vs %.9g", chunks[k], lk,
                      ref_loss);
        double m = 0.0, d = 0.0;
        for (size_t i = 0; i < n; i++) {
            m = fmax(m, fabsf(dx[i]));
            double e = fabs((double)dxk[i] - dx[i]);
            if (!(e <= d)) d = e;
        }
        ck_assert_msg(d <= 1e-5 * m, "chunk %d: dx differs by %g (max %g)", chunks[k], d, m);
    }
    // Without a gradient (dx NULL) the loss is the same.
    double l0 = 0.0;
    int c0 = 0;
    lc_cross_entropy_forward(&l0, &c0, NULL, logits, xrows, capgrad, c.x, &(lc_weight){LC_WTYPE_F32, c.head, c.V, c.C}, LC_COMPUTE_FP32, tg, c.norm, c.cap, c.N, c.C, c.V, 5);
    ck_assert(fabs(l0 - ref_loss) <= 1e-6 * fabs(ref_loss));

    free(dxk);
    free(logits);
    free(xrows);
    free(capgrad);
    lc_graph_free(&g);
    lc_graph_free(&c.g);
    free(dx);
    free(xd);
    free(c.x);
    free(c.head);
}
END_TEST

// ---------------------------------------------- backward kernels accumulate

// gc_acc_check, after making sure the gradient itself is not all zero (an
// identity that adds nothing would pass vacuously).
static void acc_check_nz(const char *what, gc_acc_buf *b) {
    double m = 0.0;
    for (size_t i = 0; i < b->n; i++) m = fmax(m, fabsf(b->zero[i]));
    ck_assert_msg(m > 1e-6, "%s: the gradient is all zero", what);
    gc_acc_check(what, b);
}

START_TEST(test_new_backward_kernels_accumulate) {
    gc_rng_seed(1950);
    enum { N = 5, C = 8, H = 2, D = 4 };
    size_t n = (size_t)N * C;
    float *x = gc_rand_buf(n, -2.5f, 2.5f), *dy = gc_rand_buf(n, -1.0f, 1.0f), *up = gc_rand_buf(n, -2.0f, 2.0f);
    float *w = gc_rand_buf(C, 0.5f, 1.5f), *b = gc_rand_buf(C, -0.5f, 0.5f);
    float *stats = malloc(sizeof(float) * 2 * N), *tmp = malloc(sizeof(float) * n);
    char name[64];

    for (int k = 0; k < 2; k++) {
        const float *wk = k ? NULL : w;
        lc_layernorm_forward(tmp, stats, x, wk, k ? NULL : b, EPS, N, C);
        gc_acc_buf a = gc_acc_new(n);
        lc_layernorm_backward(a.zero, dy, x, wk, stats, false, N, C);
        lc_layernorm_backward(a.acc, dy, x, wk, stats, false, N, C);
        lc_layernorm_backward(a.over, dy, x, wk, stats, true, N, C);
        gc_over_check("layernorm dx", &a);
        acc_check_nz(k ? "layernorm dx (w NULL)" : "layernorm dx", &a);
    }

    for (int k = 0; k < 4; k++) {
        gc_acc_buf a = gc_acc_new(n);
        lc_act_backward(a.zero, dy, x, (lc_act_kind)k, false, n);
        lc_act_backward(a.acc, dy, x, (lc_act_kind)k, false, n);
        lc_act_backward(a.over, dy, x, (lc_act_kind)k, true, n);
        snprintf(name, sizeof name, "act %s dx", act_names[k]);
        gc_over_check(name, &a);
        acc_check_nz(name, &a);
    }

    for (int k = 0; k < 3; k++) {
        gc_acc_buf ag = gc_acc_new(n), au = gc_acc_new(n);
        lc_glu_backward(ag.zero, au.zero, dy, x, up, (lc_act_kind)k, false, n);
        lc_glu_backward(ag.acc, au.acc, dy, x, up, (lc_act_kind)k, false, n);
        lc_glu_backward(ag.over, au.over, dy, x, up, (lc_act_kind)k, true, n);
        snprintf(name, sizeof name, "glu %s dgate", act_names[k]);
        gc_over_check(name, &ag);
        gc_over_check(name, &au);
        acc_check_nz(name, &ag);
        snprintf(name, sizeof name, "glu %s dup", act_names[k]);
        acc_check_nz(name, &au);
    }

    for (int k = 0; k < 3; k++) {
        // Packed rows [gate | up] of x: the flat kernel's gradients, in the rows' halves.
        enum { F = C / 2 };
        float gate[N * F], upv[N * F], dg[N * F], du[N * F];
        for (int r = 0; r < N; r++)
            for (int f = 0; f < F; f++) {
                gate[r * F + f] = x[r * C + f];
                upv[r * F + f] = x[r * C + F + f];
                dg[r * F + f] = du[r * F + f] = 0.0f;
            }
        lc_glu_backward(dg, du, dy, gate, upv, (lc_act_kind)k, false, N * F);
        gc_acc_buf a = gc_acc_new(n);
        lc_glu_packed_backward(a.zero, dy, x, (lc_act_kind)k, false, N, F);
        lc_glu_packed_backward(a.acc, dy, x, (lc_act_kind)k, false, N, F);
        lc_glu_packed_backward(a.over, dy, x, (lc_act_kind)k, true, N, F);
        snprintf(name, sizeof name, "packed glu %s dgu", act_names[k]);
        for (int r = 0; r < N; r++)
            for (int f = 0; f < F; f++) {
                ck_assert_msg(a.zero[r * C + f] == dg[r * F + f], "%s: gate row %d col %d", name, r, f);
                ck_assert_msg(a.zero[r * C + F + f] == du[r * F + f], "%s: up row %d col %d", name, r, f);
            }
        gc_over_check(name, &a);
        acc_check_nz(name, &a);
    }

    {
        gc_acc_buf a = gc_acc_new(n);
        lc_clamp_backward(a.zero, dy, x, 1.5f, n);
        lc_clamp_backward(a.acc, dy, x, 1.5f, n);
        acc_check_nz("clamp dx", &a);
    }

    {
        static const int32_t cols[] = {7, 2, 4, 0, 5};
        enum { NO = sizeof cols / sizeof *cols };
        gc_acc_buf a = gc_acc_new(n);
        lc_gather_cols_backward(a.zero, dy, cols, N, C, NO);
        lc_gather_cols_backward(a.acc, dy, cols, N, C, NO);
        acc_check_nz("gather_cols dx", &a);
    }

    {
        static const int32_t pos[] = {0, 5, 17, 3, 9};
        float *inv_freq = gc_rope_inv_freq(2, 10000.0);
        float cs[5 * 2];
        lc_rope_table(cs, pos, inv_freq, N, 2);
        gc_acc_buf a = gc_acc_new(n);
        lc_rope_backward(a.zero, dy, cs, false, N, H, D, 2);
        lc_rope_backward(a.acc, dy, cs, false, N, H, D, 2);
        lc_rope_backward(a.over, dy, cs, true, N, H, D, 2);
        gc_over_check("rope dx (D=4 rot=2)", &a); // the unrotated dims are copied
        acc_check_nz("rope dx (D=4 rot=2)", &a);
        free(inv_freq);
    }

    for (int capped = 0; capped < 2; capped++) {
        // Plain, and soft-capped (with its per-thread scratch).
        enum { V = 7 };
        float *head = gc_rand_buf((size_t)V * C, -1.5f, 1.5f), lg[N * V], xr[N * C];
        float *cg = capped ? malloc(sizeof(float) * V * (size_t)lc_parallel_threads()) : NULL;
        float cap = capped ? 2.0f : 0.0f;
        static const int32_t tg[] = {1, -1, 6, 0, 3};
        double ls = 0.0;
        int cnt = 0;
        gc_acc_buf a = gc_acc_new(n);
        lc_cross_entropy_forward(&ls, &cnt, a.zero, lg, xr, cg, x, &(lc_weight){LC_WTYPE_F32, head, V, C}, LC_COMPUTE_FP32, tg, 0.25f, cap, N, C, V, 2);
        lc_cross_entropy_forward(&ls, &cnt, a.acc, lg, xr, cg, x, &(lc_weight){LC_WTYPE_F32, head, V, C}, LC_COMPUTE_FP32, tg, 0.25f, cap, N, C, V, 2);
        acc_check_nz(capped ? "cross-entropy softcap dx" : "cross-entropy dx", &a);
        free(head);
        free(cg);
    }

    free(x);
    free(dy);
    free(up);
    free(w);
    free(b);
    free(stats);
    free(tmp);
}
END_TEST

static Suite *autograd_ops_suite(void) {
    Suite *s = suite_create("autograd_ops");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_act);
    tcase_add_test(tc, test_glu);
    tcase_add_test(tc, test_clamp);
    tcase_add_test(tc, test_gather_cols);
    tcase_add_test(tc, test_rope_partial);
    tcase_add_test(tc, test_cross_entropy_softcap);
    tcase_add_test(tc, test_new_backward_kernels_accumulate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(autograd_ops_suite());
}
