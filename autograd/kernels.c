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

void lc_attention_forward(float *out, const float *q, const float *k, const float *v, float *scratch,
                          int B, int T, int Tk, int H, int KVH, int D, int q_pos0, int window) {
    int group = H / KVH;
    float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            int p = q_pos0 + t;
            int s0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
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

void lc_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void lc_add_forward(float *acc, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
}

void lc_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, sizeof(float) * (size_t)C);
}
