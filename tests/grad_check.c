// Gradient-check machinery shared by the autograd tests; see grad_check.h.
#include "grad_check.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

void gc_rng_seed(uint64_t s) { rng_state = s; }

double gc_rng_u01(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

float *gc_rand_buf(size_t n, float lo, float hi) {
    float *b = malloc(sizeof(float) * (n ? n : 1));
    ck_assert(b != NULL);
    for (size_t i = 0; i < n; i++) b[i] = lo + (hi - lo) * (float)gc_rng_u01();
    return b;
}

float *gc_zero_buf(size_t n) {
    float *b = calloc(n ? n : 1, sizeof(float));
    ck_assert(b != NULL);
    return b;
}

double *gc_dbuf(size_t n) {
    double *b = calloc(n ? n : 1, sizeof(double));
    ck_assert(b != NULL);
    return b;
}

double *gc_to_d(const float *x, size_t n) {
    double *b = gc_dbuf(n);
    for (size_t i = 0; i < n; i++) b[i] = x[i];
    return b;
}

double gc_dot_fR(const float *y, const float *R, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * R[i];
    return s;
}

double gc_dot_dR(const double *y, const float *R, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += y[i] * R[i];
    return s;
}

lc_tensor *gc_tensor_of(lc_graph *g, const float *src, int rows, int cols, bool rg) {
    lc_tensor *t = lc_tensor_new(g, rows, cols);
    ck_assert(t != NULL);
    memcpy(t->data, src, sizeof(float) * (size_t)rows * cols);
    t->requires_grad = rg;
    return t;
}

void gc_seed_grad(lc_graph *g, lc_tensor *y, const float *R) {
    ck_assert(y != NULL);
    float *d = lc_tensor_grad(g, y);
    ck_assert(d != NULL);
    memcpy(d, R, sizeof(float) * (size_t)y->rows * y->cols);
}

float *gc_grad_copy(const lc_tensor *t) {
    if (!t->grad) return NULL;
    size_t n = (size_t)t->rows * t->cols;
    float *c = malloc(sizeof(float) * n);
    ck_assert(c != NULL);
    memcpy(c, t->grad, sizeof(float) * n);
    return c;
}

double gc_rel_err(const float *a, const double *n, size_t cnt, double *max_ref) {
    double m = 0.0, d = 0.0;
    for (size_t i = 0; i < cnt; i++) {
        double e = fabs((double)a[i] - n[i]);
        if (!(e <= d)) d = e;
        if (fabs(n[i]) > m) m = fabs(n[i]);
    }
    if (max_ref) *max_ref = m;
    return d / (m > 1e-6 ? m : 1e-6);
}

void gc_numeric_grad(double *num, float *p, size_t n, gc_loss_fn f, void *ctx, double h) {
    for (size_t i = 0; i < n; i++) {
        float x0 = p[i];
        float xp = (float)(x0 + h), xm = (float)(x0 - h);
        p[i] = xp;
        double lp = f(ctx);
        p[i] = xm;
        double lm = f(ctx);
        p[i] = x0;
        num[i] = (lp - lm) / ((double)xp - (double)xm);
    }
}

void gc_check_grad_h(const char *what, const float *analytic, float *p, size_t n, void *ctx, gc_loss_fn ref,
                     gc_loss_fn f32, double tol_ref, double h_ref) {
    ck_assert_msg(analytic != NULL, "%s: no gradient was computed", what);
    double *num = gc_dbuf(n);
    double e_ref = -1.0, e_f32 = -1.0, mag = 0.0;
    if (ref) {
        gc_numeric_grad(num, p, n, ref, ctx, h_ref);
        e_ref = gc_rel_err(analytic, num, n, &mag);
        ck_assert_msg(mag > 1e-6, "%s: numeric gradient is ~0 (%g), the check is vacuous", what, mag);
    }
    if (f32) {
        gc_numeric_grad(num, p, n, f32, ctx, GC_H_F32);
        e_f32 = gc_rel_err(analytic, num, n, &mag);
        ck_assert_msg(mag > 1e-6, "%s: numeric gradient is ~0 (%g), the check is vacuous", what, mag);
    }
    free(num);
    fprintf(stderr, "  %-44s n=%5zu |g|max=%.3g  err ref %.2e  f32 %.2e\n", what, n, mag, e_ref, e_f32);
    if (ref) ck_assert_msg(e_ref <= tol_ref, "%s: error vs double reference %g > %g", what, e_ref, tol_ref);
    if (f32) ck_assert_msg(e_f32 <= GC_TOL_F32, "%s: error vs fp32 forward %g > %g", what, e_f32, GC_TOL_F32);
}

void gc_check_grad(const char *what, const float *analytic, float *p, size_t n, void *ctx, gc_loss_fn ref,
                   gc_loss_fn f32, double tol_ref) {
    gc_check_grad_h(what, analytic, p, n, ctx, ref, f32, tol_ref, GC_H_REF);
}

void gc_check_forward(const char *what, const float *y, const double *ref, size_t n) {
    double e = gc_rel_err(y, ref, n, NULL);
    fprintf(stderr, "  %-44s n=%5zu forward err %.2e\n", what, n, e);
    ck_assert_msg(e <= GC_TOL_FWD, "%s: forward differs from the reference: %g > %g", what, e, GC_TOL_FWD);
}

gc_acc_buf gc_acc_new(size_t n) {
    gc_acc_buf b = {n, gc_zero_buf(n), gc_rand_buf(n, -1.0f, 1.0f), malloc(sizeof(float) * (n ? n : 1)),
                    malloc(sizeof(float) * (n ? n : 1))};
    ck_assert(b.acc != NULL && b.over != NULL);
    memcpy(b.acc, b.base, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) b.over[i] = NAN;
    return b;
}

void gc_over_check(const char *what, const gc_acc_buf *b) {
    for (size_t i = 0; i < b->n; i++)
        ck_assert_msg(b->over[i] == b->zero[i], "%s[%zu] with overwrite: %g, want %g", what, i, b->over[i],
                      b->zero[i]);
}

void gc_acc_check(const char *what, gc_acc_buf *b) {
    for (size_t i = 0; i < b->n; i++) {
        float want = b->base[i] + b->zero[i];
        ck_assert_msg(fabsf(b->acc[i] - want) <= 1e-5f * (fabsf(b->base[i]) + fabsf(b->zero[i]) + 1e-6f),
                      "%s[%zu]: %g, want %g + %g (does the kernel overwrite?)", what, i, b->acc[i], b->base[i],
                      b->zero[i]);
    }
    free(b->zero);
    free(b->base);
    free(b->acc);
    free(b->over);
}

float *gc_rope_inv_freq(int rot, double theta) {
    float *f = malloc(sizeof(float) * (size_t)(rot / 2 > 0 ? rot / 2 : 1));
    ck_assert(f != NULL);
    for (int i = 0; i < rot / 2; i++) f[i] = (float)(1.0 / pow(theta, (double)(2 * i) / rot));
    return f;
}

double gc_ref_ce(const double *x, const float *head, const int32_t *tg, double cap, int N, int C, int V,
                 int *n_counted) {
    double loss = 0.0;
    double *z = gc_dbuf((size_t)V);
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        if (tg[n] < 0) continue;
        double m = -INFINITY;
        for (int j = 0; j < V; j++) {
            double s = 0.0;
            for (int k = 0; k < C; k++) s += x[(size_t)n * C + k] * head[(size_t)j * C + k];
            z[j] = cap > 0.0 ? cap * tanh(s / cap) : s;
            if (z[j] > m) m = z[j];
        }
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += exp(z[j] - m);
        loss += m + log(sum) - z[tg[n]];
        cnt++;
    }
    free(z);
    if (n_counted) *n_counted = cnt;
    return loss;
}

double gc_ce_loss_ref(void *ctx) {
    gc_ce_ctx *c = ctx;
    double *x = gc_to_d(c->x, (size_t)c->N * c->C);
    double L = gc_ref_ce(x, c->head, c->tg, c->cap, c->N, c->C, c->V, NULL) * c->norm;
    free(x);
    return L;
}

double gc_ce_loss_f32(void *ctx) {
    gc_ce_ctx *c = ctx;
    lc_graph_reset(&c->g);
    double ls = 0.0;
    int cnt = 0;
    lc_tensor *x = gc_tensor_of(&c->g, c->x, c->N, c->C, false);
    ck_assert_int_eq(lc_op_cross_entropy(&c->g, x, c->head, c->V, c->cap, c->tg, c->norm, &ls, &cnt), LC_STATUS_OK);
    return ls * c->norm;
}

static double un_loss_ref(void *p) {
    gc_un_ctx *c = p;
    size_t ny = (size_t)c->N * c->out_cols;
    double *x = gc_to_d(c->x, (size_t)c->N * c->C), *y = gc_dbuf(ny);
    c->ref(y, x, c);
    double L = gc_dot_dR(y, c->R, ny);
    free(x);
    free(y);
    return L;
}

static double un_loss_f32(void *p) {
    gc_un_ctx *c = p;
    lc_graph_reset(&c->g);
    lc_tensor *y = c->op(&c->g, gc_tensor_of(&c->g, c->x, c->N, c->C, false), c);
    ck_assert(y != NULL);
    ck_assert_int_eq(lc_graph_status(&c->g), LC_STATUS_OK);
    return gc_dot_fR(y->data, c->R, (size_t)c->N * c->out_cols);
}

gc_un_result gc_un_run(gc_un_ctx *c, const char *label, double h_ref, size_t n_f32) {
    size_t nx = (size_t)c->N * c->C, ny = (size_t)c->N * c->out_cols;
    char name[128];
    gc_un_result r;
    lc_graph_init(&c->g, false);

    lc_tensor *xt = gc_tensor_of(&c->g, c->x, c->N, c->C, false);
    lc_tensor *y = c->op(&c->g, xt, c);
    ck_assert(y != NULL);
    ck_assert_int_eq(y->rows, c->N);
    ck_assert_int_eq(y->cols, c->out_cols);
    ck_assert(!y->requires_grad);
    if (!c->reuse) ck_assert(memcmp(xt->data, c->x, sizeof(float) * nx) == 0); // the input is only read
    r.y = malloc(sizeof(float) * ny);
    ck_assert(r.y != NULL);
    memcpy(r.y, y->data, sizeof(float) * ny);
    double *xd = gc_to_d(c->x, nx), *yr = gc_dbuf(ny);
    c->ref(yr, xd, c);
    gc_check_forward(label, r.y, yr, ny);
    free(xd);
    free(yr);

    // Nothing to differentiate: no tape entry.
    lc_graph g;
    lc_graph_init(&g, true);
    y = c->op(&g, gc_tensor_of(&g, c->x, c->N, c->C, false), c);
    ck_assert(y != NULL && !y->requires_grad);
    ck_assert_int_eq(g.n_tape, 0);
    lc_graph_reset(&g);

    lc_tensor *x = gc_tensor_of(&g, c->x, c->N, c->C, true);
    y = c->op(&g, x, c);
    ck_assert(y != NULL && y->requires_grad);
    ck_assert_int_eq(g.n_tape, 1);
    gc_seed_grad(&g, y, c->R);
    ck_assert_int_eq(lc_graph_backward(&g), LC_STATUS_OK);
    r.dx = gc_grad_copy(x);
    lc_graph_free(&g);

    snprintf(name, sizeof name, "%s dx", label);
    if (n_f32 < nx) snprintf(name, sizeof name, "%s dx (first %zu)", label, n_f32);
    gc_check_grad_h(name, r.dx, c->x, n_f32, c, un_loss_ref, un_loss_f32, GC_TOL_REF, h_ref);
    if (n_f32 < nx) {
        snprintf(name, sizeof name, "%s dx (last %zu, ref only)", label, nx - n_f32);
        gc_check_grad_h(name, r.dx + n_f32, c->x + n_f32, nx - n_f32, c, un_loss_ref, NULL, GC_TOL_REF, h_ref);
    }
    lc_graph_free(&c->g);
    return r;
}

void gc_un_result_free(gc_un_result *r) {
    free(r->y);
    free(r->dx);
}

void gc_ref_rope(double *y, const double *x, const int32_t *pos, const float *inv_freq, int N, int H, int D,
                 int rot) {
    int half = rot / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            const double *xh = x + ((size_t)n * H + h) * D;
            double *yh = y + ((size_t)n * H + h) * D;
            for (int i = rot; i < D; i++) yh[i] = xh[i];
            for (int i = 0; i < half; i++) {
                double angle = (double)((float)pos[n] * inv_freq[i]);
                double c = cos(angle), s = sin(angle);
                yh[i] = xh[i] * c - xh[i + half] * s;
                yh[i + half] = xh[i + half] * c + xh[i] * s;
            }
        }
}
