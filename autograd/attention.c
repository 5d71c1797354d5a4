#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/parallel.h"
#include "autograd/simd.h"

// Attention runs per (sequence, KV head) over blocks of LC_ATT_BLOCK
// queries. The query heads that share the KV head are gathered into one
// [G·M, D] matrix, so the block's scores against the keys it can see are
// one sgemm for the whole group (K and V packed once, not once per head),
// the masked softmax a row loop, and the weighted values another sgemm.
// Only one block's scores exist at a time, per thread.
#define LC_ATT_BLOCK 64

size_t lc_attention_scratch_floats(int T, int Tk, int H, int KVH, int D) {
    size_t rows = (size_t)(T < LC_ATT_BLOCK ? T : LC_ATT_BLOCK) * (size_t)(H / KVH);
    // Two [rows, Tk] score matrices, three [rows, D] gathered matrices and
    // one value per row.
    return (2 * rows * (size_t)Tk + 3 * rows * (size_t)D + rows) * (size_t)lc_parallel_threads();
}

// Copies rows [t0, t0 + M) of the G heads h0.. of x [.., ld] into dst
// [G·M, D], head-major; scatter adds them back.
static void att_gather(float *dst, const float *x, int ld, int t0, int M, int h0, int G, int D) {
    for (int g = 0; g < G; g++)
        for (int i = 0; i < M; i++)
            memcpy(dst + ((size_t)g * M + i) * D, x + (size_t)(t0 + i) * ld + (size_t)(h0 + g) * D,
                   sizeof(float) * (size_t)D);
}

// scale (may be NULL) multiplies row i of src by scale[i] on the way.
static void att_scatter(float *x, const float *src, const float *scale, int ld, int t0, int M, int h0, int G, int D,
                        bool add) {
    for (int g = 0; g < G; g++)
        for (int i = 0; i < M; i++) {
            float *row = x + (size_t)(t0 + i) * ld + (size_t)(h0 + g) * D;
            const float *s = src + ((size_t)g * M + i) * D;
            float k = scale ? scale[(size_t)g * M + i] : 1.0f;
            if (add)
                for (int d = 0; d < D; d++) row[d] += s[d];
            else
                for (int d = 0; d < D; d++) row[d] = k * s[d];
        }
}

// Keys visible from query row p: [lo, p].
static int att_first_key(const int32_t *seg_start, int idx, int p, int window) {
    int lo = seg_start ? seg_start[idx] : 0;
    if (window > 0 && p - window + 1 > lo) lo = p - window + 1;
    return lo;
}

// Soft-capping and ALiBi of one row of scaled scores over keys [lo, hi]
// (absolute key position of element j: k0 + j; query position p).
static void att_transform_row(float *row, int lo, int hi, int k0, int p, float softcap, float slope) {
    if (softcap > 0.0f) {
        float inv = 1.0f / softcap;
        for (int j = lo; j <= hi; j++) row[j] = softcap * fast_tanhf(row[j] * inv);
    }
    if (slope != 0.0f)
        for (int j = lo; j <= hi; j++) row[j] += slope * (float)(k0 + j - p);
}

// What every attention task shares.
typedef struct att_job {
    float *out, *lse, *dq, *dk, *dv, *scratch;
    const float *q, *k, *v, *dout, *o;
    const int32_t *seg_start;
    int B, T, Tk, H, KVH, D, q_pos0;
    float scale;
    lc_attention_opts opts;
    size_t scratch_per_thread;
} att_job;

// Query rows [t0, t1) of sequence b see keys [k0, t1 + q_pos0) at most.
static int att_block_first_key(const att_job *j, const int32_t *seg, int t0, int t1) {
    int k0 = j->Tk;
    for (int t = t0; t < t1; t++) {
        int lo = att_first_key(seg, t, j->q_pos0 + t, j->opts.window);
        if (lo < k0) k0 = lo;
    }
    return k0;
}

// Forward task: one (sequence, KV head), all its query blocks.
LC_VECTOR_CLONES
static void att_forward_task(void *ctx, int task, int thread) {
    const att_job *j = ctx;
    int G = j->H / j->KVH, b = task / j->KVH, kh = task % j->KVH, h0 = kh * G, D = j->D, T = j->T;
    int q_pos0 = j->q_pos0, ldq = j->H * D, ldk = j->KVH * D, window = j->opts.window;
    float softcap = j->opts.softcap;
    const int32_t *seg = j->seg_start ? j->seg_start + (size_t)b * T : NULL;
    const float *qs = j->q + (size_t)b * T * ldq;
    size_t rows = (size_t)G * (T < LC_ATT_BLOCK ? T : LC_ATT_BLOCK);
    float *S = j->scratch + (size_t)thread * j->scratch_per_thread; // [G·M, N]
    float *Qg = S + rows * j->Tk;                                   // [G·M, D], then the output
    float *inv_sum = Qg + rows * D;                                 // [G·M]
    for (int t0 = 0; t0 < T; t0 += LC_ATT_BLOCK) {
        int t1 = t0 + LC_ATT_BLOCK < T ? t0 + LC_ATT_BLOCK : T, M = t1 - t0;
        int k0 = att_block_first_key(j, seg, t0, t1), N = q_pos0 + t1 - k0; // keys [k0, q_pos0 + t1)
        const float *kb = j->k + ((size_t)b * j->Tk + k0) * ldk + (size_t)kh * D;
        const float *vb = j->v + ((size_t)b * j->Tk + k0) * ldk + (size_t)kh * D;
        att_gather(Qg, qs, ldq, t0, M, h0, G, D);
        lc_blas_sgemm(false, true, G * M, N, D, j->scale, Qg, D, kb, ldk, 0.0f, S, N);
        for (int g = 0; g < G; g++) {
            float slope = j->opts.alibi ? j->opts.alibi[h0 + g] : 0.0f;
            for (int i = 0; i < M; i++) {
                int p = q_pos0 + t0 + i;
                int lo = att_first_key(seg, t0 + i, p, window) - k0, hi = p - k0; // visible [lo, hi]
                float *row = S + ((size_t)g * M + i) * N;
                att_transform_row(row, lo, hi, k0, p, softcap, slope);
                float maxv = row_max(row + lo, hi - lo + 1);
                for (int c = 0; c < lo; c++) row[c] = 0.0f;
                float sum = row_exp_sum(row + lo, maxv, hi - lo + 1);
                for (int c = hi + 1; c < N; c++) row[c] = 0.0f;
                // Rows stay unnormalized; the output is scaled instead (D values, not N).
                inv_sum[(size_t)g * M + i] = 1.0f / sum;
                if (j->lse) j->lse[((size_t)b * T + t0 + i) * j->H + h0 + g] = maxv + logf(sum);
            }
        }
        lc_blas_sgemm(false, false, G * M, D, N, 1.0f, S, N, vb, ldk, 0.0f, Qg, D);
        att_scatter(j->out + (size_t)b * T * ldq, Qg, inv_sum, ldq, t0, M, h0, G, D, false);
    }
}

void lc_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, float *scratch, int B, int T, int Tk, int H, int KVH, int D,
                          int q_pos0, const lc_attention_opts *opts) {
    att_job j = {.out = out, .lse = lse, .scratch = scratch, .q = q, .k = k, .v = v, .seg_start = seg_start,
                 .B = B, .T = T, .Tk = Tk, .H = H, .KVH = KVH, .D = D, .q_pos0 = q_pos0,
                 .opts = opts ? *opts : (lc_attention_opts){0},
                 .scratch_per_thread = lc_attention_scratch_floats(T, Tk, H, KVH, D) / (size_t)lc_parallel_threads()};
    j.scale = j.opts.scale > 0.0f ? j.opts.scale : 1.0f / sqrtf((float)D);
    lc_parallel_for_work(B * KVH, att_forward_task, &j, (double)B * T * Tk * H * D);
}

// Backward task: one (sequence, KV head) with every query head that reads
// it, so no two tasks add into the same rows of dk and dv.
LC_VECTOR_CLONES
static void att_backward_task(void *ctx, int task, int thread) {
    const att_job *j = ctx;
    int G = j->H / j->KVH, b = task / j->KVH, kh = task % j->KVH, h0 = kh * G, D = j->D, T = j->T;
    int ldq = j->H * D, ldk = j->KVH * D, window = j->opts.window;
    float scale = j->scale, cap = j->opts.softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
    const int32_t *seg = j->seg_start ? j->seg_start + (size_t)b * T : NULL;
    size_t seq = (size_t)b * T * ldq;
    size_t rows = (size_t)G * (T < LC_ATT_BLOCK ? T : LC_ATT_BLOCK);
    float *P = j->scratch + (size_t)thread * j->scratch_per_thread; // [G·M, N]
    float *dP = P + rows * T, *Qg = dP + rows * T;                  // [G·M, N], [G·M, D]
    float *dOg = Qg + rows * D, *dQg = dOg + rows * D;              // [G·M, D] each
    float *delta = dQg + rows * D;                                  // [G·M]
    for (int t0 = 0; t0 < T; t0 += LC_ATT_BLOCK) {
        int t1 = t0 + LC_ATT_BLOCK < T ? t0 + LC_ATT_BLOCK : T, M = t1 - t0;
        int k0 = att_block_first_key(j, seg, t0, t1), N = t1 - k0;
        size_t koff = ((size_t)b * T + k0) * ldk + (size_t)kh * D;
        att_gather(Qg, j->q + seq, ldq, t0, M, h0, G, D);
        att_gather(dOg, j->dout + seq, ldq, t0, M, h0, G, D);
        // softmax backward needs Σ P·dP per row, which is dout·out: taken in one
        // pass here, where the loads of out's rows can overlap.
        for (int g = 0; g < G; g++)
            for (int i = 0; i < M; i++)
                delta[(size_t)g * M + i] = row_dot(dOg + ((size_t)g * M + i) * D,
                                                   j->o + seq + (size_t)(t0 + i) * ldq + (size_t)(h0 + g) * D, D);
        // Recompute probabilities from the saved log-sum-exp.
        lc_blas_sgemm(false, true, G * M, N, D, scale, Qg, D, j->k + koff, ldk, 0.0f, P, N);
        lc_blas_sgemm(false, true, G * M, N, D, 1.0f, dOg, D, j->v + koff, ldk, 0.0f, dP, N);
        for (int g = 0; g < G; g++) {
            int h = h0 + g;
            float slope = j->opts.alibi ? j->opts.alibi[h] : 0.0f;
            for (int i = 0; i < M; i++) {
                int t = t0 + i;
                int lo = att_first_key(seg, t, t, window) - k0, hi = t - k0;
                float m = j->lse[((size_t)b * T + t) * j->H + h];
                // softmax backward: dS = P ⊙ (dP − Σ P·dP).
                float dl = delta[(size_t)g * M + i];
                float *restrict pr = P + ((size_t)g * M + i) * N, *restrict dpr = dP + ((size_t)g * M + i) * N;
                for (int c = 0; c < lo; c++) pr[c] = dpr[c] = 0.0f;
                if (cap > 0.0f || slope != 0.0f) {
                    for (int c = lo; c <= hi; c++) {
                        // Through the cap: d(cap·tanh(s/cap))/ds = 1 − tanh².
                        float th = cap > 0.0f ? fast_tanhf(pr[c] * inv_cap) : 0.0f;
                        float sc = cap > 0.0f ? cap * th : pr[c];
                        float p = fast_expf(sc + slope * (float)(k0 + c - t) - m);
                        pr[c] = p;
                        dpr[c] = p * (dpr[c] - dl) * scale * (cap > 0.0f ? 1.0f - th * th : 1.0f);
                    }
                } else {
                    for (int c = lo; c <= hi; c++) {
                        float p = fast_expf(pr[c] - m);
                        pr[c] = p;
                        dpr[c] = p * (dpr[c] - dl) * scale;
                    }
                }
                for (int c = hi + 1; c < N; c++) pr[c] = dpr[c] = 0.0f;
            }
        }
        // dV += Pᵀ·dout ; dQ += dS·K ; dK += dSᵀ·Q, each over the whole group.
        lc_blas_sgemm(true, false, N, D, G * M, 1.0f, P, N, dOg, D, 1.0f, j->dv + koff, ldk);
        lc_blas_sgemm(false, false, G * M, D, N, 1.0f, dP, N, j->k + koff, ldk, 0.0f, dQg,
                    D);
        lc_blas_sgemm(true, false, N, D, G * M, 1.0f, dP, N, Qg, D, 1.0f, j->dk + koff, ldk);
        att_scatter(j->dq + seq, dQg, NULL, ldq, t0, M, h0, G, D, true);
    }
}

void lc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, const int32_t *seg_start,
                           float *scratch, int B, int T, int H, int KVH, int D, const lc_attention_opts *opts) {
    att_job j = {.lse = (float *)lse, .dq = dq, .dk = dk, .dv = dv, .scratch = scratch, .q = q, .k = k, .v = v,
                 .dout = dout, .o = out, .seg_start = seg_start, .B = B, .T = T, .Tk = T, .H = H, .KVH = KVH,
                 .D = D, .opts = opts ? *opts : (lc_attention_opts){0},
                 .scratch_per_thread = lc_attention_scratch_floats(T, T, H, KVH, D) / (size_t)lc_parallel_threads()};
    j.scale = j.opts.scale > 0.0f ? j.opts.scale : 1.0f / sqrtf((float)D);
    lc_parallel_for_work(B * KVH, att_backward_task, &j, (double)B * T * T * H * D);
}
