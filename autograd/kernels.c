#include "autograd/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "autograd/simd.h"

// Row-wise and element-wise kernels split their rows over lc_parallel_for's
// threads when there is enough work to pay for waking them
// (LC_PARALLEL_MIN_WORK elements; a decoding step of one token stays on the
// caller's thread). A job names its arrays by role; each kernel's row
// function reads the ones it uses.
typedef struct rows_job rows_job;
typedef void (*rows_fn)(const rows_job *j, size_t r0, size_t r1);
struct rows_job {
    rows_fn fn;
    float *out, *out2;                  // results (out2: per-row statistics, a second gradient)
    const float *x, *dy, *w, *b, *aux;  // inputs, parameters, saved statistics
    const int32_t *ints;                // positions
    float f;                            // eps, rotation sign
    int act, C, H, D, rot, flag;        // sizes, activation, overwrite (write, not add, the result)
    size_t rows, align;
    int n_tasks;
};

static void rows_task(void *ctx, int task, int thread) {
    (void)thread;
    const rows_job *j = ctx;
    size_t r0, r1;
    lc_parallel_range(j->rows, task, j->n_tasks, j->align, &r0, &r1);
    if (r0 < r1) j->fn(j, r0, r1);
}

// Runs j->fn over rows [0, rows) of row_elems elements each; chunks start at
// multiples of align rows (a cache line for flat element-wise kernels).
static void rows_run(rows_job *j, size_t rows, size_t row_elems, size_t align) {
    j->rows = rows;
    j->align = align;
    j->n_tasks = (double)rows * row_elems >= LC_PARALLEL_MIN_WORK ? lc_parallel_threads() : 1;
    if (j->n_tasks == 1) j->fn(j, 0, rows);
    else lc_parallel_for(j->n_tasks, rows_task, j);
}

void lc_matmul_forward(float *out, const float *x, const float *w, const float *bias, int N, int n_in, int n_out) {
    if (N == 1) {
        // One row (incremental decoding): sgemv avoids sgemm's packing cost.
        lc_blas_sgemv(n_out, n_in, 1.0f, w, n_in, x, 0.0f, out);
    } else {
        lc_blas_sgemm(false, true, N, n_out, n_in, 1.0f, x, n_in, w, n_in, 0.0f, out, n_out);
    }
    if (bias) {
        for (int n = 0; n < N; n++) {
            float *row = out + (size_t)n * n_out;
            for (int o = 0; o < n_out; o++) row[o] += bias[o];
        }
    }
}

void lc_matmul_backward(float *dx, const float *dy, const float *w, bool overwrite, int N, int n_in, int n_out) {
    lc_blas_sgemm(false, false, N, n_in, n_out, 1.0f, dy, n_out, w, n_in,
                overwrite ? 0.0f : 1.0f, dx, n_in);
}

LC_VECTOR_CLONES
static void rmsnorm_forward_rows(const rows_job *j, size_t r0, size_t r1) {
    int C = j->C;
    for (size_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * C;
        float *orow = j->out + n * C;
        double ss = 0.0; // double: the mean of squares must not lose the small rows
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + j->f));
        if (j->out2) j->out2[n] = r;
        for (int c = 0; c < C; c++) orow[c] = xr[c] * r * j->w[c];
    }
}

void lc_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, float eps, int N, int C) {
    rows_job j = {.fn = rmsnorm_forward_rows, .out = out, .out2 = rstd, .x = x, .w = w, .f = eps, .C = C};
    rows_run(&j, (size_t)N, (size_t)C, 1);
}

LC_VECTOR_CLONES
static void rmsnorm_backward_rows(const rows_job *j, size_t r0, size_t r1) {
    int C = j->C;
    const float *w = j->w;
    for (size_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * C, *dyr = j->dy + n * C;
        float *dxr = j->out + n * C;
        float r = j->aux[n];
        // dx = r·w·dy − r³·x·mean(w·dy·x)
        double dot = 0.0;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += (double)w[c] * dyr[c] * xr[c];
        float k = (float)(dot / C) * r * r * r;
        for (int c = 0; c < C; c++) dxr[c] = (j->flag ? 0.0f : dxr[c]) + r * w[c] * dyr[c] - k * xr[c];
    }
}

void lc_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, const float *rstd, bool overwrite,
                         int N, int C) {
    rows_job j = {.fn = rmsnorm_backward_rows, .out = dx, .dy = dy, .x = x, .w = w, .aux = rstd, .C = C,
                  .flag = overwrite};
    rows_run(&j, (size_t)N, (size_t)C, 1);
}

LC_VECTOR_CLONES
static void layernorm_forward_rows(const rows_job *j, size_t r0, size_t r1) {
    int C = j->C;
    const float *w = j->w, *b = j->b;
    for (size_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * C;
        float *orow = j->out + n * C;
        double sum = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++) sum += xr[c];
        float mean = (float)(sum / C);
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += (double)(xr[c] - mean) * (xr[c] - mean);
        float r = (float)(1.0 / sqrt(ss / C + j->f));
        if (j->out2) {
            j->out2[2 * n] = mean;
            j->out2[2 * n + 1] = r;
        }
        for (int c = 0; c < C; c++) {
            float v = (xr[c] - mean) * r;
            orow[c] = (w ? v * w[c] : v) + (b ? b[c] : 0.0f);
        }
    }
}

void lc_layernorm_forward(float *out, float *stats, const float *x, const float *w, const float *b, float eps, int N,
                          int C) {
    rows_job j = {.fn = layernorm_forward_rows, .out = out, .out2 = stats, .x = x, .w = w, .b = b, .f = eps, .C = C};
    rows_run(&j, (size_t)N, (size_t)C, 1);
}

LC_VECTOR_CLONES
static void layernorm_backward_rows(const rows_job *j, size_t r0, size_t r1) {
    int C = j->C;
    const float *w = j->w;
    for (size_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * C, *dyr = j->dy + n * C;
        float *dxr = j->out + n * C;
        float mean = j->aux[2 * n], r = j->aux[2 * n + 1];
        // With g = w·dy and xh = (x − mean)·r: dx = r·(g − mean(g) − xh·mean(g·xh)).
        double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int c = 0; c < C; c++) {
            float g = w ? w[c] * dyr[c] : dyr[c];
            sg += g;
            sgx += (double)g * (xr[c] - mean) * r;
        }
        float mg = (float)(sg / C), mgx = (float)(sgx / C);
        for (int c = 0; c < C; c++) {
            float g = w ? w[c] * dyr[c] : dyr[c];
            dxr[c] = (j->flag ? 0.0f : dxr[c]) + r * (g - mg - (xr[c] - mean) * r * mgx);
        }
    }
}

void lc_layernorm_backward(float *dx, const float *dy, const float *x, const float *w, const float *stats,
                           bool overwrite, int N, int C) {
    rows_job j = {.fn = layernorm_backward_rows, .out = dx, .dy = dy, .x = x, .w = w, .aux = stats, .C = C,
                  .flag = overwrite};
    rows_run(&j, (size_t)N, (size_t)C, 1);
}

LC_VECTOR_CLONES
static void rope_table_rows(const rows_job *j, size_t r0, size_t r1) {
    int half = j->rot / 2;
    for (size_t n = r0; n < r1; n++) {
        float *cs = j->out + n * j->rot;
        for (int i = 0; i < half; i++) {
            // Angles in float, as PyTorch computes position * inv_freq in fp32.
            float angle = (float)j->ints[n] * j->w[i];
            cs[i] = cosf(angle);
            cs[half + i] = sinf(angle);
        }
    }
}

void lc_rope_table(float *cs, const int32_t *pos, const float *inv_freq, int N, int rot) {
    rows_job j = {.fn = rope_table_rows, .out = cs, .ints = pos, .w = inv_freq, .rot = rot};
    rows_run(&j, (size_t)N, (size_t)rot * 8, 1); // a sin and cos cost some eight element-wise ops
}

// Rotates each (i, i + rot/2) pair of x's rows by ± the table's angle into
// out (adding to it unless flag is set). The backward is the inverse rotation.
// In place (out == x) the simd loop is still right: iteration i alone reads
// and writes elements i and i + rot/2.
LC_VECTOR_CLONES
static void rope_rows(const rows_job *j, size_t r0, size_t r1) {
    int H = j->H, D = j->D, rot = j->rot, half = rot / 2;
    bool ow = j->flag;
    const float *src = j->x;
    float *dst = j->out, sign = j->f;
    for (size_t n = r0; n < r1; n++) {
        const float *cosv = j->w + n * rot, *sinv = cosv + half;
        for (int h = 0; h < H; h++) {
            size_t o = (n * H + h) * D;
            const float *a = src + o, *b = src + o + half;
            float *da = dst + o, *db = dst + o + half;
            // Dimensions past `rot` pass through unrotated (in place: already there).
            if (src != dst)
                for (int i = rot; i < D; i++) dst[o + i] = (ow ? 0.0f : dst[o + i]) + src[o + i];
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float c = cosv[i], s = sign * sinv[i], ai = a[i], bi = b[i];
                da[i] = (ow ? 0.0f : da[i]) + ai * c - bi * s;
                db[i] = (ow ? 0.0f : db[i]) + bi * c + ai * s;
            }
        }
    }
}

static void rope_rotate(float *dst, const float *src, const float *cs, int N, int H, int D, int rot, float sign,
                        bool overwrite) {
    rows_job j = {.fn = rope_rows, .out = dst, .x = src, .w = cs, .f = sign, .H = H, .D = D, .rot = rot,
                  .flag = overwrite};
    rows_run(&j, (size_t)N, (size_t)H * D, 1);
}

void lc_rope_forward(float *x, const float *cs, int N, int H, int D, int rot) {
    rope_rotate(x, x, cs, N, H, D, rot, 1.0f, true);
}

void lc_rope_backward(float *dx, const float *dy, const float *cs, bool overwrite, int N, int H, int D, int rot) {
    rope_rotate(dx, dy, cs, N, H, D, rot, -1.0f, overwrite);
}

static inline float silu_glu(float g, float u) { return g / (1.0f + fast_expf(-g)) * u; }

// SwiGLU's gradients (the common case, without the activation switch).
// ow: overwrite the gradients instead of adding to them (a select, so
// whatever an unset buffer holds, NaN included, is not read into the result).
static inline void silu_glu_grad(float *dg, float *du, float d, float g, float u, bool ow) {
    float sig = 1.0f / (1.0f + fast_expf(-g));
    *du = (ow ? 0.0f : *du) + d * g * sig;
    *dg = (ow ? 0.0f : *dg) + d * u * sig * (1.0f + g * (1.0f - sig));
}

// Activation values and derivatives. The tanh GELU is HF's gelu_new /
// gelu_pytorch_tanh; the exact GELU uses erf.
static inline float act_value(lc_act_kind act, float x) {
    switch (act) {
    case LC_ACT_KIND_SILU: return x / (1.0f + fast_expf(-x));
    case LC_ACT_KIND_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + fast_tanhf(u));
    }
    case LC_ACT_KIND_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case LC_ACT_KIND_RELU: return x > 0.0f ? x : 0.0f;
    }
    return x;
}

static inline float act_grad(lc_act_kind act, float x) {
    switch (act) {
    case LC_ACT_KIND_SILU: {
        float sig = 1.0f / (1.0f + fast_expf(-x));
        return sig * (1.0f + x * (1.0f - sig));
    }
    case LC_ACT_KIND_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        float th = fast_tanhf(u);
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608028654f * (1.0f + 0.134145f * x * x);
    }
    case LC_ACT_KIND_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
        return cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
    }
    case LC_ACT_KIND_RELU: return x > 0.0f ? 1.0f : 0.0f;
    }
    return 1.0f;
}

// Flat element-wise kernels run as rows of one element, split at multiples
// of 16 (a cache line of floats).
#define LC_FLAT_ALIGN 16

LC_VECTOR_CLONES
static void act_forward_rows(const rows_job *j, size_t i0, size_t i1) {
    lc_act_kind act = (lc_act_kind)j->act;
    for (size_t i = i0; i < i1; i++) j->out[i] = act_value(act, j->x[i]);
}

void lc_act_forward(float *out, const float *x, lc_act_kind act, size_t n) {
    rows_job j = {.fn = act_forward_rows, .out = out, .x = x, .act = (int)act};
    rows_run(&j, n, 1, LC_FLAT_ALIGN);
}

LC_VECTOR_CLONES
static void act_backward_rows(const rows_job *j, size_t i0, size_t i1) {
    lc_act_kind act = (lc_act_kind)j->act;
    bool ow = j->flag;
    for (size_t i = i0; i < i1; i++) j->out[i] = (ow ? 0.0f : j->out[i]) + j->dy[i] * act_grad(act, j->x[i]);
}

void lc_act_backward(float *dx, const float *dout, const float *x, lc_act_kind act, bool overwrite, size_t n) {
    rows_job j = {.fn = act_backward_rows, .out = dx, .dy = dout, .x = x, .act = (int)act, .flag = overwrite};
    rows_run(&j, n, 1, LC_FLAT_ALIGN);
}

// act(gate)·up over n elements.
static inline void glu_forward_span(float *out, const float *gate, const float *up, lc_act_kind act, size_t n) {
    if (act == LC_ACT_KIND_SILU)
        for (size_t i = 0; i < n; i++) out[i] = silu_glu(gate[i], up[i]);
    else
        for (size_t i = 0; i < n; i++) out[i] = act_value(act, gate[i]) * up[i];
}

static inline void glu_backward_span(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                     lc_act_kind act, bool ow, size_t n) {
    if (act == LC_ACT_KIND_SILU) {
        for (size_t i = 0; i < n; i++) silu_glu_grad(&dgate[i], &dup[i], dout[i], gate[i], up[i], ow);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        dup[i] = (ow ? 0.0f : dup[i]) + dout[i] * act_value(act, gate[i]);
        dgate[i] = (ow ? 0.0f : dgate[i]) + dout[i] * up[i] * act_grad(act, gate[i]);
    }
}

// Flat GLU: x is the gate, b the up projection (out2, dx of up).
LC_VECTOR_CLONES
static void glu_forward_rows(const rows_job *j, size_t i0, size_t i1) {
    glu_forward_span(j->out + i0, j->x + i0, j->b + i0, (lc_act_kind)j->act, i1 - i0);
}

LC_VECTOR_CLONES
static void glu_backward_rows(const rows_job *j, size_t i0, size_t i1) {
    glu_backward_span(j->out + i0, j->out2 + i0, j->dy + i0, j->x + i0, j->b + i0, (lc_act_kind)j->act, j->flag,
                      i1 - i0);
}

void lc_glu_forward(float *out, const float *gate, const float *up, lc_act_kind act, size_t n) {
    rows_job j = {.fn = glu_forward_rows, .out = out, .x = gate, .b = up, .act = (int)act};
    rows_run(&j, n, 1, LC_FLAT_ALIGN);
}

void lc_glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, lc_act_kind act,
                     bool overwrite, size_t n) {
    rows_job j = {.fn = glu_backward_rows, .out = dgate, .out2 = dup, .dy = dout, .x = gate, .b = up, .act = (int)act,
                  .flag = overwrite};
    rows_run(&j, n, 1, LC_FLAT_ALIGN);
}

// Packed GLU rows [gate | up] of 2F (C = F).
LC_VECTOR_CLONES
static void glu_packed_forward_rows(const rows_job *j, size_t r0, size_t r1) {
    size_t F = (size_t)j->C;
    for (size_t n = r0; n < r1; n++) {
        const float *row = j->x + n * 2 * F;
        glu_forward_span(j->out + n * F, row, row + F, (lc_act_kind)j->act, F);
    }
}

LC_VECTOR_CLONES
static void glu_packed_backward_rows(const rows_job *j, size_t r0, size_t r1) {
    size_t F = (size_t)j->C;
    for (size_t n = r0; n < r1; n++) {
        const float *row = j->x + n * 2 * F;
        float *drow = j->out + n * 2 * F;
        glu_backward_span(drow, drow + F, j->dy + n * F, row, row + F, (lc_act_kind)j->act, j->flag, F);
    }
}

void lc_glu_packed_forward(float *out, const float *gu, lc_act_kind act, int N, int F) {
    rows_job j = {.fn = glu_packed_forward_rows, .out = out, .x = gu, .act = (int)act, .C = F};
    rows_run(&j, (size_t)N, (size_t)F, 1);
}

void lc_glu_packed_backward(float *dgu, const float *dout, const float *gu, lc_act_kind act, bool overwrite, int N,
                            int F) {
    rows_job j = {.fn = glu_packed_backward_rows, .out = dgu, .dy = dout, .x = gu, .act = (int)act, .C = F,
                  .flag = overwrite};
    rows_run(&j, (size_t)N, (size_t)F, 1);
}

void lc_clamp_forward(float *out, const float *x, float limit, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] < -limit ? -limit : x[i] > limit ? limit : x[i];
}

void lc_clamp_backward(float *dx, const float *dout, const float *x, float limit, size_t n) {
    // As torch.clamp: the gradient passes where -limit <= x <= limit.
    for (size_t i = 0; i < n; i++)
        if (x[i] >= -limit && x[i] <= limit) dx[i] += dout[i];
}

void lc_gather_cols_forward(float *out, const float *x, const int32_t *cols, int N, int n_in, int n_out) {
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * n_in;
        float *o = out + (size_t)r * n_out;
        for (int j = 0; j < n_out; j++) o[j] = xr[cols[j]];
    }
}

void lc_gather_cols_backward(float *dx, const float *dout, const int32_t *cols, int N, int n_in, int n_out) {
    for (int r = 0; r < N; r++) {
        float *dxr = dx + (size_t)r * n_in;
        const float *d = dout + (size_t)r * n_out;
        for (int j = 0; j < n_out; j++) dxr[cols[j]] += d[j];
    }
}

LC_VECTOR_CLONES
static void add_rows(const rows_job *j, size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) j->out[i] += j->x[i];
}

void lc_add_forward(float *acc, const float *x, size_t n) {
    rows_job j = {.fn = add_rows, .out = acc, .x = x};
    rows_run(&j, n, 1, LC_FLAT_ALIGN);
}

void lc_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, sizeof(float) * (size_t)C);
}

int lc_dropout_keep(uint64_t mask_seed, size_t i, float p) {
    uint64_t z = mask_seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

void lc_lora_forward(float *y, int ldy, float *u, float *xd, const float *x, const float *A, const float *B,
                     float scale, float p, uint64_t mask_seed, int N, int n_in, int n_out, int r) {
    const float *src = x;
    if (p > 0.0f) {
        float keep_scale = 1.0f / (1.0f - p);
        size_t n = (size_t)N * n_in;
        for (size_t i = 0; i < n; i++) xd[i] = lc_dropout_keep(mask_seed, i, p) ? x[i] * keep_scale : 0.0f;
        src = xd;
    }
    lc_blas_sgemm(false, true, N, r, n_in, 1.0f, src, n_in, A, n_in, 0.0f, u, r);
    lc_blas_sgemm(false, true, N, n_out, r, scale, u, r, B, r, 1.0f, y, ldy);
}

void lc_lora_backward(float *dA, float *dB, float *dx, float *du, const float *dy, int ldy, const float *x,
                      const float *xd, const float *u, const float *A, const float *B, float scale, float p,
                      uint64_t mask_seed, int N, int n_in, int n_out, int r) {
    // dB += scale · dyᵀ·u ; du = scale · dy·B ; dA += duᵀ·xd ; dx += dropout'(du·A)
    lc_blas_sgemm(true, false, n_out, r, N, scale, dy, ldy, u, r, 1.0f, dB, r);
    lc_blas_sgemm(false, false, N, r, n_out, scale, dy, ldy, B, r, 0.0f, du, r);
    const float *src = p > 0.0f ? xd : x;
    lc_blas_sgemm(true, false, r, n_in, N, 1.0f, du, r, src, n_in, 1.0f, dA, n_in);
    if (!dx) return;
    if (p <= 0.0f) {
        lc_blas_sgemm(false, false, N, n_in, r, 1.0f, du, r, A, n_in, 1.0f, dx, n_in);
        return;
    }
    float keep_scale = 1.0f / (1.0f - p);
    for (int n = 0; n < N; n++) {
        float *dxr = dx + (size_t)n * n_in;
        const float *dur = du + (size_t)n * r;
        for (int i = 0; i < n_in; i++) {
            if (!lc_dropout_keep(mask_seed, (size_t)n * n_in + i, p)) continue;
            float acc = 0.0f;
            for (int j = 0; j < r; j++) acc += dur[j] * A[(size_t)j * n_in + i];
            dxr[i] += acc * keep_scale;
        }
    }
}

LC_VECTOR_CLONES
void lc_softcap_forward(float *x, float *grad, float cap, int n) {
    float inv = 1.0f / cap;
    for (int j = 0; j < n; j++) {
        float th = fast_tanhf(x[j] * inv);
        x[j] = cap * th;
        if (grad) grad[j] = 1.0f - th * th;
    }
}

// Σ exp(x[j] − m) over a row, writing the exponentials back: float partial
// sums over blocks of 1024 (vectorized), added in double across blocks,
// since a vocabulary row has tens of thousands of terms.
static inline double exp_sum_row(float *x, float m, int n) {
    double sum = 0.0;
    for (int j0 = 0; j0 < n; j0 += 1024) {
        int j1 = j0 + 1024 < n ? j0 + 1024 : n;
        sum += row_exp_sum(x + j0, m, j1 - j0);
    }
    return sum;
}

typedef struct ce_job {
    float *logits, *capgrad;
    double *row_loss;
    const int32_t *targets, *rows;
    float norm, softcap;
    int V, grad;
} ce_job;

// One row of a chunk: loss, and (grad) the logits replaced by
// norm · d(loss)/d(logits) = norm · (softmax − onehot), through the cap.
LC_VECTOR_CLONES
static void ce_row_task(void *ctx, int i, int thread) {
    const ce_job *j = ctx;
    int V = j->V, tgt = j->targets[j->rows[i]];
    float *lr = j->logits + (size_t)i * V;
    float *capgrad = j->capgrad ? j->capgrad + (size_t)thread * V : NULL;
    if (j->softcap > 0.0f) lc_softcap_forward(lr, capgrad, j->softcap, V);
    float maxv = row_max(lr, V), target_logit = lr[tgt];
    double sum = exp_sum_row(lr, maxv, V);
    j->row_loss[i] = maxv + log(sum) - target_logit;
    if (!j->grad) return;
    float k = (float)(j->norm / sum);
    for (int c = 0; c < V; c++) lr[c] *= k;
    lr[tgt] -= j->norm;
    if (capgrad)
        for (int c = 0; c < V; c++) lr[c] *= capgrad[c];
}

void lc_cross_entropy_forward(double *loss_sum, int *n_counted, float *dx, float *logits, float *xrows,
                              float *capgrad, const float *x, const lc_weight *head, lc_compute compute, const int32_t *targets, float norm,
                              float softcap, int N, int C, int V, int chunk) {
    int rows[chunk];
    double row_loss[chunk];
    ce_job job = {logits, capgrad, row_loss, targets, rows, norm, softcap, V, dx != NULL};
    int n = 0;
    for (int start = 0; start <= N; start++) {
        // Gather rows that have a target; compute a chunk when full or at the end.
        if (start < N && targets[start] >= 0) {
            memcpy(xrows + (size_t)n * C, x + (size_t)start * C, sizeof(float) * (size_t)C);
            rows[n++] = start;
            if (n < chunk) continue;
        } else if (start < N || n == 0) {
            continue;
        }
        lc_weight_matmul_forward(logits, xrows, head, n, compute);
        lc_parallel_for_work(n, ce_row_task, &job, (double)n * V);
        for (int i = 0; i < n; i++) *loss_sum += row_loss[i]; // in row order: the same sum on any thread count
        *n_counted += n;
        if (dx) {
            // Gradient rows go back through the frozen head into the gathered rows.
            lc_weight_matmul_backward(xrows, logits, head, true, n, compute);
            for (int i = 0; i < n; i++) {
                float *d = dx + (size_t)rows[i] * C;
                const float *g = xrows + (size_t)i * C;
                for (int c = 0; c < C; c++) d[c] += g[c];
            }
        }
        n = 0;
    }
}
