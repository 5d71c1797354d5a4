#include "autograd/moe.h"

#include <math.h>
#include <string.h>

void lc_moe_route_forward(float *w, float *p, lc_moe_routing *r, const float *logits, bool renorm) {
    int N = r->N, E = r->E, k = r->k;
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * E;
        float *pn = p + (size_t)n * E, mx = l[0];
        for (int e = 1; e < E; e++) mx = fmaxf(mx, l[e]);
        float sum = 0.0f;
        for (int e = 0; e < E; e++) sum += pn[e] = expf(l[e] - mx);
        for (int e = 0; e < E; e++) pn[e] /= sum;
        // Top k by selection: k is small (2 to 8).
        int32_t *idx = r->idx + (size_t)n * k;
        float *wn = w + (size_t)n * k, total = 0.0f;
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int t = 0; t < s && !taken; t++) taken = idx[t] == e;
                if (!taken && (best < 0 || pn[e] > pn[best])) best = e;
            }
            idx[s] = best;
            total += wn[s] = pn[best];
        }
        if (renorm)
            for (int s = 0; s < k; s++) wn[s] /= total;
    }
    // Counting sort of the entries by expert, keeping token order.
    memset(r->start, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int i = 0; i < N * k; i++) r->start[r->idx[i] + 1]++;
    for (int e = 0; e < E; e++) r->start[e + 1] += r->start[e];
    int32_t *fill = r->fill; // the running position of each expert
    memcpy(fill, r->start, sizeof(int32_t) * (size_t)E);
    for (int i = 0; i < N * k; i++) r->order[fill[r->idx[i]]++] = i;
    for (int i = 0; i < N * k; i++) r->rows[i] = r->order[i] / k;
}

void lc_moe_route_backward(float *dlogits, const float *dw, const float *w, const float *p, const lc_moe_routing *r,
                           bool renorm, bool overwrite) {
    int N = r->N, E = r->E, k = r->k;
    for (int n = 0; n < N; n++) {
        const int32_t *idx = r->idx + (size_t)n * k;
        const float *dwn = dw + (size_t)n * k, *wn = w + (size_t)n * k, *pn = p + (size_t)n * E;
        float *dl = dlogits + (size_t)n * E;
        // d p at the chosen experts: w = p / S with S the chosen p's sum gives
        // dp_i = (dw_i − Σ_j dw_j w_j) / S; without renormalization dp_i = dw_i.
        float dp[1024], shift = 0.0f, scale = 1.0f;
        if (renorm) {
            float S = 0.0f;
            for (int s = 0; s < k; s++) {
                shift += dwn[s] * wn[s];
                S += pn[idx[s]];
            }
            scale = 1.0f / S;
        }
        // Softmax backward: dl_e = p_e (dp_e − Σ_i dp_i p_i).
        float dot = 0.0f;
        for (int s = 0; s < k; s++) {
            dp[s] = (dwn[s] - shift) * scale;
            dot += dp[s] * pn[idx[s]];
        }
        for (int e = 0; e < E; e++) {
            float g = -pn[e] * dot;
            if (overwrite) dl[e] = g;
            else dl[e] += g;
        }
        for (int s = 0; s < k; s++) dl[idx[s]] += pn[idx[s]] * dp[s];
    }
}

void lc_gather_rows_forward(float *out, const float *x, const int32_t *rows, int n, int C) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * C, x + (size_t)rows[i] * C, sizeof(float) * (size_t)C);
}

void lc_gather_rows_backward(float *dx, const float *dout, const int32_t *rows, int n, int C) {
    for (int i = 0; i < n; i++) {
        float *d = dx + (size_t)rows[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

void lc_moe_combine_forward(float *out, const float *y, const float *w, const lc_moe_routing *r, int e, int C) {
    for (int i = r->start[e]; i < r->start[e + 1]; i++) {
        float wi = w[r->order[i]], *o = out + (size_t)r->rows[i] * C;
        const float *yi = y + (size_t)(i - r->start[e]) * C;
        for (int c = 0; c < C; c++) o[c] += wi * yi[c];
    }
}

void lc_moe_combine_backward(float *dy, float *dw, const float *dout, const float *y, const float *w,
                             const lc_moe_routing *r, int e, int C, bool overwrite) {
    for (int i = r->start[e]; i < r->start[e + 1]; i++) {
        const float *d = dout + (size_t)r->rows[i] * C, *yi = y + (size_t)(i - r->start[e]) * C;
        float wi = w[r->order[i]];
        if (dy) {
            float *dyi = dy + (size_t)(i - r->start[e]) * C;
            if (overwrite)
                for (int c = 0; c < C; c++) dyi[c] = wi * d[c];
            else
                for (int c = 0; c < C; c++) dyi[c] += wi * d[c];
        }
        if (dw) {
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)yi[c] * d[c];
            dw[r->order[i]] += (float)dot;
        }
    }
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void lc_sigmoid_gate_forward(float *out, const float *y, const float *s, int N, int C) {
    for (int n = 0; n < N; n++) {
        float g = sigmoid(s[n]);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = y[(size_t)n * C + c] * g;
    }
}

void lc_sigmoid_gate_backward(float *dy, float *ds, const float *dout, const float *y, const float *s, int N, int C) {
    for (int n = 0; n < N; n++) {
        float g = sigmoid(s[n]);
        const float *d = dout + (size_t)n * C, *yn = y + (size_t)n * C;
        if (dy)
            for (int c = 0; c < C; c++) dy[(size_t)n * C + c] += d[c] * g;
        if (ds) {
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)d[c] * yn[c];
            ds[n] += (float)(dot * g * (1.0f - g));
        }
    }
}
