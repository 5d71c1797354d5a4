// Forward kernels of the transformer. Each is one half of a forward/backward
// pair (the backward halves arrive with training): outputs first, sizes last,
// a shape comment on every pointer. Row-major throughout; N is the number of
// token rows (batch x time).
#ifndef LC_KERNELS_H
#define LC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// out = x · wᵀ (+ bias). BLAS sgemm; a frozen weight is only read.
void lc_matmul_forward(float *out,        // [N, n_out]
                       const float *x,    // [N, n_in]
                       const float *w,    // [n_out, n_in]
                       const float *bias, // [n_out] or NULL
                       int N, int n_in, int n_out);

// out = x / rms(x) * w, per row; rstd (saved for backward) may be NULL.
void lc_rmsnorm_forward(float *out,     // [N, C]
                        float *rstd,    // [N] or NULL
                        const float *x, // [N, C]
                        const float *w, // [C]
                        float eps, int N, int C);

// Rotary embedding in the Hugging Face rotate-half layout, in place:
// pairs (i, i + D/2) of each head rotate by angle pos * inv_freq[i].
void lc_rope_forward(float *x,               // [N, H, D] in/out
                     const int32_t *pos,     // [N]
                     const float *inv_freq,  // [D/2]
                     int N, int H, int D);

// Causal grouped-query attention. Query t of sequence b sits at position
// q_pos0 + t and sees keys 0..q_pos0+t of its own sequence (only the last
// `window` of them when window > 0). Heads h share KV head h / (H / KVH).
void lc_attention_forward(float *out,     // [B, T, H, D]
                          const float *q, // [B, T, H, D]
                          const float *k, // [B, Tk, KVH, D]
                          const float *v, // [B, Tk, KVH, D]
                          float *scratch, // [Tk] scores of one query
                          int B, int T, int Tk, int H, int KVH, int D, int q_pos0, int window);

// out = silu(gate) * up, element-wise.
void lc_swiglu_forward(float *out,        // [n]
                       const float *gate, // [n]
                       const float *up,   // [n]
                       size_t n);

// acc += x, element-wise (residual connection).
void lc_add_forward(float *acc,     // [n] in/out
                    const float *x, // [n]
                    size_t n);

// out[i] = table[ids[i]]; ids are checked by the caller against V.
void lc_embedding_forward(float *out,           // [N, C]
                          const int32_t *ids,   // [N]
                          const float *table,   // [V, C]
                          int N, int C);

#endif
