#include "autograd/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void lc_matmul_forward(float *out, const float *x, const float *w, const float *bias, int N, int n_in, int n_out) {
    if (N == 1) {
        // One row (incremental decoding): sgemv avoids sgemm's packing cost.
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1, 0.0f, out, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, n_out, n_in, 1.0f, x, n_in, w, n_in, 0.0f, out, n_out);
    }
    if (bias) {
        for (int n = 0; n < N; n++) {
            float *row = out + (size_t)n * n_out;
            for (int o = 0; o < n_out; o++) row[o] += bias[o];
        }
    }
}

void lc_matmul_backward(float *dx, const float *dy, const float *w, int N, int n_in, int n_out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, n_out, 1.0f, dy, n_out, w, n_in, 1.0f, dx, n_in);
}

void lc_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, float eps, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *orow = out + (size_t)n * C;
        double ss = 0.0; // double: the mean of squares must not lose the small rows
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[n] = r;
        for (int c = 0; c < C; c++) orow[c] = xr[c] * r * w[c];
    }
}

void lc_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, const float *rstd, int N,
                         int C) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float r = rstd[n];
        // dx = r·w·dy − r³·x·mean(w·dy·x)
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)w[c] * dyr[c] * xr[c];
        float k = (float)(dot / C) * r * r * r;
        for (int c = 0; c < C; c++) dxr[c] += r * w[c] * dyr[c] - k * xr[c];
    }
}

void lc_rope_forward(float *x, const int32_t *pos, const float *inv_freq, int N, int H, int D) {
    int half = D / 2;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            // Angles in float, as PyTorch computes position * inv_freq in fp32.
            float angle = (float)pos[n] * inv_freq[i];
            float c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < H; h++) {
                float *head = x + ((size_t)n * H + h) * D;
                float a = head[i], b = head[i + half];
                head[i] = a * c - b * s;
                head[i + half] = b * c + a * s;
            }
        }
    }
}

void lc_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *seg_start, float *scratch, int B, int T, int Tk, int H, int KVH, int D,
                          int q_pos0, int window) {
    int group = H / KVH;
    float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            int p = q_pos0 + t;
            int s0 = seg_start ? seg_start[b * T + t] : 0;
            if (window > 0 && p - window + 1 > s0) s0 = p - window + 1;
            for (int h = 0; h < H; h++) {
                int kh = h / group;
                const float *qh = q + (((size_t)b * T + t) * H + h) * D;
                float maxv = -INFINITY;
                for (int s = s0; s <= p; s++) {
                    const float *kr = k + (((size_t)b * Tk + s) * KVH + kh) * D;
                    float dot = 0.0f;
                    for (int d = 0; d < D; d++) dot += qh[d] * kr[d];
                    dot *= scale;
                    scratch[s] = dot;
                    if (dot > maxv) maxv = dot;
                }
                float sum = 0.0f;
                for (int s = s0; s <= p; s++) {
                    scratch[s] = expf(scratch[s] - maxv);
                    sum += scratch[s];
                }
                float inv = 1.0f / sum;
                if (lse) lse[((size_t)b * T + t) * H + h] = maxv + logf(sum);
                float *oh = out + (((size_t)b * T + t) * H + h) * D;
                memset(oh, 0, sizeof(float) * (size_t)D);
                for (int s = s0; s <= p; s++) {
                    const float *vr = v + (((size_t)b * Tk + s) * KVH + kh) * D;
                    float a = scratch[s] * inv;
                    for (int d = 0; d < D; d++) oh[d] += a * vr[d];
                }
            }
        }
    }
}

void lc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, const int32_t *seg_start, int B,
                           int T, int H, int KVH, int D, int window) {
    int group = H / KVH;
    float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            int s0 = seg_start ? seg_start[b * T + t] : 0;
            if (window > 0 && t - window + 1 > s0) s0 = t - window + 1;
            for (int h = 0; h < H; h++) {
                int kh = h / group;
                size_t row = ((size_t)b * T + t) * H + h;
                const float *qh = q + row * D, *oh = out + row * D, *doh = dout + row * D;
                float *dqh = dq + row * D;
                float m = lse[row];
                // softmax backward: ds = p * (dp - sum_s p*dp), and sum_s p*dp = do·o.
                float delta = 0.0f;
                for (int d = 0; d < D; d++) delta += doh[d] * oh[d];
                for (int s = s0; s <= t; s++) {
                    size_t krow = (((size_t)b * T + s) * KVH + kh) * D;
                    const float *kr = k + krow, *vr = v + krow;
                    float dot = 0.0f, dp = 0.0f;
                    for (int d = 0; d < D; d++) {
                        dot += qh[d] * kr[d];
                        dp += doh[d] * vr[d];
                    }
                    float p = expf(dot * scale - m);
                    float ds = p * (dp - delta) * scale;
                    float *dkr = dk + krow, *dvr = dv + krow;
                    for (int d = 0; d < D; d++) {
                        dvr[d] += p * doh[d];
                        dqh[d] += ds * kr[d];
                        dkr[d] += ds * qh[d];
                    }
                }
            }
        }
    }
}

void lc_rope_backward(float *dx, const float *dy, const int32_t *pos, const float *inv_freq, int N, int H, int D) {
    int half = D / 2;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)pos[n] * inv_freq[i];
            float c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < H; h++) {
                size_t o = ((size_t)n * H + h) * D;
                float a = dy[o + i], b = dy[o + i + half];
                dx[o + i] += a * c + b * s;
                dx[o + i + half] += b * c - a * s;
            }
        }
    }
}

void lc_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void lc_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + expf(-g));
        float silu = g * sig;
        dup[i] += dout[i] * silu;
        dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
}

void lc_add_forward(float *acc, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
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

void lc_lora_forward(float *y, float *u, float *xd, const float *x, const float *A, const float *B, float scale,
                     float p, uint64_t mask_seed, int N, int n_in, int n_out, int r) {
    const float *src = x;
    if (p > 0.0f) {
        float keep_scale = 1.0f / (1.0f - p);
        size_t n = (size_t)N * n_in;
        for (size_t i = 0; i < n; i++) xd[i] = lc_dropout_keep(mask_seed, i, p) ? x[i] * keep_scale : 0.0f;
        src = xd;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, n_in, 1.0f, src, n_in, A, n_in, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, n_out, r, scale, u, r, B, r, 1.0f, y, n_out);
}

void lc_lora_backward(float *dA, float *dB, float *dx, float *du, const float *dy, const float *x, const float *xd,
                      const float *u, const float *A, const float *B, float scale, float p, uint64_t mask_seed,
                      int N, int n_in, int n_out, int r) {
    // dB += scale · dyᵀ·u ; du = scale · dy·B ; dA += duᵀ·xd ; dx += dropout'(du·A)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, r, N, scale, dy, n_out, u, r, 1.0f, dB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, n_out, scale, dy, n_out, B, r, 0.0f, du, r);
    const float *src = p > 0.0f ? xd : x;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n_in, N, 1.0f, du, r, src, n_in, 1.0f, dA, n_in);
    if (!dx) return;
    if (p <= 0.0f) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, r, 1.0f, du, r, A, n_in, 1.0f, dx, n_in);
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

void lc_cross_entropy_forward(double *loss_sum, int *n_counted, float *dx, float *logits, float *xrows,
                              const float *x, const float *head, const int32_t *targets, float norm, int N, int C,
                              int V, int chunk) {
    int rows[chunk];
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, C, 1.0f, xrows, C, head, C, 0.0f, logits, V);
        for (int i = 0; i < n; i++) {
            float *lr = logits + (size_t)i * V;
            int tgt = targets[rows[i]];
            float maxv = lr[0];
            for (int j = 1; j < V; j++)
                if (lr[j] > maxv) maxv = lr[j];
            double sum = 0.0;
            for (int j = 0; j < V; j++) sum += exp((double)(lr[j] - maxv));
            double lse = maxv + log(sum);
            *loss_sum += lse - lr[tgt];
            (*n_counted)++;
            if (dx) {
                // d(loss)/d(logits) = softmax − onehot, scaled by the normalizer.
                for (int j = 0; j < V; j++) lr[j] = (float)exp((double)lr[j] - lse) * norm;
                lr[tgt] -= norm;
            }
        }
        if (dx) {
            // Gradient rows go back through the frozen head into the gathered rows.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, V, 1.0f, logits, V, head, C, 0.0f, xrows,
                        C);
            for (int i = 0; i < n; i++) {
                float *d = dx + (size_t)rows[i] * C;
                const float *g = xrows + (size_t)i * C;
                for (int c = 0; c < C; c++) d[c] += g[c];
            }
        }
        n = 0;
    }
}
