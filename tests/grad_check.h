// Gradient-check machinery shared by the autograd tests (test_autograd.c,
// test_autograd_ops.c).
//
// A test runs an op through a recording graph and seeds the output's gradient
// with a fixed random projection R, so the backward computes the gradient of
// the scalar L = sum(y * R). gc_check_grad compares every element of that
// gradient with central differences of L computed two ways:
//   - on a double-precision reference of the op written in the test (step
//     GC_H_REF, tolerance given by the caller, usually GC_TOL_REF): checks the
//     math of the backward kernels;
//   - by re-running the op's own fp32 forward (step GC_H_F32, tolerance
//     GC_TOL_F32): checks the backward matches the forward actually run.
// Error metric (both): max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-6).
// The step actually taken is computed from the rounded float inputs, so the
// quotient is exact in the step. gc_check_forward compares an fp32 forward
// with a double reference (same metric, GC_TOL_FWD).
#ifndef LC_TEST_GRAD_CHECK_H
#define LC_TEST_GRAD_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/graph.h"

#define GC_TOL_REF 1e-4
#define GC_TOL_REF_COMPOSED 1e-3
#define GC_TOL_F32 1e-2
#define GC_TOL_FWD 1e-5
#define GC_H_REF 1e-3
#define GC_H_F32 1e-2

// The scalar loss of a test context (double reference or fp32 forward).
typedef double (*gc_loss_fn)(void *ctx);

// Deterministic generator (splitmix64), one stream per test process.
void gc_rng_seed(uint64_t s);
double gc_rng_u01(void); // [0, 1)

// malloc'd buffers; the tests abort on allocation failure.
float *gc_rand_buf(size_t n, float lo, float hi); // uniform in [lo, hi)
float *gc_zero_buf(size_t n);
double *gc_dbuf(size_t n); // zeroed
double *gc_to_d(const float *x, size_t n);

// sum(y * R) in double.
double gc_dot_fR(const float *y, const float *R, size_t n);
double gc_dot_dR(const double *y, const float *R, size_t n);

// A graph tensor holding a copy of src.
lc_tensor *gc_tensor_of(lc_graph *g, const float *src, int rows, int cols, bool rg);
// Sets y's gradient to R (the seed of the backward).
void gc_seed_grad(lc_graph *g, lc_tensor *y, const float *R);
// A malloc'd copy of t's gradient, or NULL when none was allocated.
float *gc_grad_copy(const lc_tensor *t);

// max|a - n| / max(max|n|, 1e-6); NaN in a propagates (and fails the check).
// max_ref (may be NULL) receives max|n|.
double gc_rel_err(const float *a, const double *n, size_t cnt, double *max_ref);

// num[i] = central difference of f in p[i] (p modified and restored in place).
void gc_numeric_grad(double *num, float *p, size_t n, gc_loss_fn f, void *ctx, double h);

// Compares an analytic gradient of parameter p (n elements, modified and
// restored in place) with central differences of `ref` (double reference,
// step h_ref, tolerance tol_ref) and `f32` (the op's own forward, step
// GC_H_F32, tolerance GC_TOL_F32); either may be NULL. Fails when the numeric
// gradient is ~0 (a vacuous check).
void gc_check_grad_h(const char *what, const float *analytic, float *p, size_t n, void *ctx, gc_loss_fn ref,
                     gc_loss_fn f32, double tol_ref, double h_ref);
// The same with h_ref = GC_H_REF.
void gc_check_grad(const char *what, const float *analytic, float *p, size_t n, void *ctx, gc_loss_fn ref,
                   gc_loss_fn f32, double tol_ref);
// An fp32 forward against its double reference (tolerance GC_TOL_FWD).
void gc_check_forward(const char *what, const float *y, const double *ref, size_t n);

// Backward kernels accumulate (+=) into their outputs: run a kernel once into
// `zero` (its gradient g) and once into `acc`, which starts as a copy of the
// random `base`; gc_acc_check then requires acc == base + g and frees the buffers.
// A kernel with an overwrite flag also runs with it into `over`, which starts
// as NaN; gc_over_check (before gc_acc_check) requires over == g.
typedef struct gc_acc_buf {
    size_t n;
    float *zero, *base, *acc, *over; // gradient from zero, initial contents, accumulated, overwritten
} gc_acc_buf;

gc_acc_buf gc_acc_new(size_t n);
void gc_over_check(const char *what, const gc_acc_buf *b);
void gc_acc_check(const char *what, gc_acc_buf *b);

// Reference cross-entropy of rows x [N, C] through head [V, C], the logits
// soft-capped (cap · tanh(z / cap)) when cap > 0, summed over the rows whose
// target is >= 0; *n_counted (may be NULL) receives their number.
double gc_ref_ce(const double *x, const float *head, const int32_t *tg, double cap, int N, int C, int V,
                 int *n_counted);

// Losses for gc_check_grad of lc_op_cross_entropy with respect to x:
// norm · gc_ref_ce, and norm · the op's own loss (through c->g).
typedef struct gc_ce_ctx {
    int N, C, V;
    float *x, *head;
    const int32_t *tg;
    float cap, norm;
    lc_graph g;
} gc_ce_ctx;
double gc_ce_loss_ref(void *ctx);
double gc_ce_loss_f32(void *ctx);

// RoPE inverse frequencies 1 / theta^(2i / rot), i < rot / 2 (rot = head_dim
// unless partial rotary).
float *gc_rope_inv_freq(int rot, double theta);

// One-input ops (norms, activations, rope, ...): an op callback run through
// the graph, a double reference of it, and the parameters they read.
typedef struct gc_un_ctx gc_un_ctx;
typedef void (*gc_un_ref_fn)(double *y, const double *x, const gc_un_ctx *c);
typedef lc_tensor *(*gc_un_op_fn)(lc_graph *g, lc_tensor *x, const gc_un_ctx *c);

struct gc_un_ctx {
    int N, C, out_cols; // x [N, C], y [N, out_cols]
    float *x, *R;       // R [N, out_cols]
    gc_un_ref_fn ref;
    gc_un_op_fn op;
    // Parameters of the op under test.
    const float *w, *b;   // layernorm
    lc_act_kind act;      // act
    float limit;          // clamp
    const int32_t *cols;  // gather_cols
    const int32_t *pos;   // rope
    const float *inv_freq;
    int head_dim, rot;
    bool reuse;
    lc_graph g; // not recording: the fp32 loss re-runs
};

typedef struct gc_un_result {
    float *y;  // the fp32 forward [N, out_cols]
    float *dx; // the backward's gradient [N, C]
} gc_un_result;

// Forward against the reference (the input left as it was unless c->reuse);
// no tape entry without a gradient to take, one with; dx against finite differences of the
// reference (step h_ref) and of the fp32 forward. The fp32 FD covers the
// first n_f32 elements of x (rows where a step of GC_H_F32 is small enough);
// the rest are checked on their own against the reference only, so their
// (larger) gradient does not dilute the error metric of the others.
gc_un_result gc_un_run(gc_un_ctx *c, const char *label, double h_ref, size_t n_f32);
void gc_un_result_free(gc_un_result *r);

// Rotate-half RoPE reference on the first `rot` dims of each head (pairs
// (i, i + rot/2)), the rest copied; angles as the kernel takes them
// (pos * inv_freq in fp32), the rotation in double.
void gc_ref_rope(double *y, const double *x, const int32_t *pos, const float *inv_freq, int N, int H, int D, int rot);

#endif
