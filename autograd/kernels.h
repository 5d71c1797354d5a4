// Kernels of the transformer as forward/backward pairs: outputs first, sizes
// last, a shape comment on every pointer. Row-major throughout; N is the
// number of token rows (batch x time). Backward kernels accumulate (+=) into
// their gradient outputs, so a value used twice needs no special case. Those
// with an `overwrite` flag write (=) instead when it is set, so a gradient's
// first contribution needs neither a zeroed buffer nor a read of it.
#ifndef LC_KERNELS_H
#define LC_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/weight.h"

typedef enum lc_act_kind {
    LC_ACT_KIND_SILU,
    LC_ACT_KIND_GELU_TANH, // the tanh approximation (gelu_new, gelu_pytorch_tanh)
    LC_ACT_KIND_GELU,      // exact, with erf
    LC_ACT_KIND_RELU,
} lc_act_kind;

// Attention variants beyond plain causal softmax(q·kᵀ/√D). Zeroed means plain.
typedef struct lc_attention_opts {
    float scale;        // query-key scale; 0: 1/√D
    float softcap;      // scores → softcap · tanh(scores / softcap) before the mask; 0: none
    const float *alibi; // [H] ALiBi slopes: score += slope · (key position − query position); NULL: none
    int window;         // only the last `window` keys (the query's own included); 0: all
} lc_attention_opts;

// out = x · wᵀ (+ bias). BLAS sgemm; a frozen weight is only read.
void lc_matmul_forward(float *out,        // [N, n_out]
                       const float *x,    // [N, n_in]
                       const float *w,    // [n_out, n_in]
                       const float *bias, // [n_out] or NULL
                       int N, int n_in, int n_out);

// dx += dy · w: the input gradient through a weight (frozen: no weight
// gradient). With overwrite, dx = dy · w (dx need not be initialized).
void lc_matmul_backward(float *dx,       // [N, n_in]
                        const float *dy, // [N, n_out]
                        const float *w,  // [n_out, n_in]
                        bool overwrite, int N, int n_in, int n_out);

// out = (x − mean) / std · w + b per row; w, b may be NULL (1 and 0).
// stats (saved for backward) holds mean and 1/std per row and may be NULL.
void lc_layernorm_forward(float *out,       // [N, C]
                          float *stats,     // [N, 2] or NULL
                          const float *x,   // [N, C]
                          const float *w,   // [C] or NULL
                          const float *b,   // [C] or NULL
                          float eps, int N, int C);

void lc_layernorm_backward(float *dx,          // [N, C]
                           const float *dy,    // [N, C]
                           const float *x,     // [N, C]
                           const float *w,     // [C] or NULL
                           const float *stats, // [N, 2]
                           bool overwrite, int N, int C);

// out = x / rms(x) * w, per row; rstd (saved for backward) may be NULL.
void lc_rmsnorm_forward(float *out,     // [N, C]
                        float *rstd,    // [N] or NULL
                        const float *x, // [N, C]
                        const float *w, // [C]
                        float eps, int N, int C);

void lc_rmsnorm_backward(float *dx,         // [N, C]
                         const float *dy,   // [N, C]
                         const float *x,    // [N, C]
                         const float *w,    // [C]
                         const float *rstd, // [N]
                         bool overwrite, int N, int C);

// Rotary embedding in the Hugging Face rotate-half layout, in place:
// pairs (i, i + rot/2) of each head rotate by angle pos * inv_freq[i];
// dimensions rot..D-1 are left as they are (partial rotary). The cos and sin
// of the angles come from lc_rope_table, computed once per pass and shared by
// every layer's q and k, forward and backward.
void lc_rope_table(float *cs,              // [N, rot]: cos in [0, rot/2), sin in [rot/2, rot)
                   const int32_t *pos,     // [N]
                   const float *inv_freq,  // [rot/2]
                   int N, int rot);
void lc_rope_forward(float *x,               // [N, H, D] in/out
                     const float *cs,        // [N, rot] from lc_rope_table
                     int N, int H, int D, int rot);

// Causal grouped-query attention. Query t of sequence b sits at row
// q_pos0 + t and sees key rows seg_start[b*T+t]..q_pos0+t of its own sequence
// (only the last `window` of them when window > 0; seg_start NULL means 0:
// packed examples pass where theirs begins). Heads h share KV head
// h / (H / KVH). lse (may be NULL) keeps each row's log-sum-exp of scores so
// the backward can recompute probabilities instead of storing T x T.
void lc_attention_forward(float *out,               // [B, T, H, D]
                          float *lse,               // [B, T, H] or NULL
                          const float *q,           // [B, T, H, D]
                          const float *k,           // [B, Tk, KVH, D]
                          const float *v,           // [B, Tk, KVH, D]
                          const int32_t *seg_start, // [B, T] or NULL
                          float *scratch,           // [lc_attention_scratch_floats(T, Tk, H, KVH, D)]
                          int B, int T, int Tk, int H, int KVH, int D, int q_pos0,
                          const lc_attention_opts *opts); // NULL: plain

// Scratch floats the attention kernels need for T queries over Tk keys.
size_t lc_attention_scratch_floats(int T, int Tk, int H, int KVH, int D);

// Gradients of attention (T == Tk, q_pos0 == 0, as in training) from the
// saved out and lse: dq, dk, dv accumulate.
void lc_attention_backward(float *dq,                // [B, T, H, D]
                           float *dk,                // [B, T, KVH, D]
                           float *dv,                // [B, T, KVH, D]
                           const float *dout,        // [B, T, H, D]
                           const float *q,           // [B, T, H, D]
                           const float *k,           // [B, T, KVH, D]
                           const float *v,           // [B, T, KVH, D]
                           const float *out,         // [B, T, H, D]
                           const float *lse,         // [B, T, H]
                           const int32_t *seg_start, // [B, T] or NULL
                           float *scratch,           // [lc_attention_scratch_floats(T, T, H, KVH, D)]
                           int B, int T, int H, int KVH, int D, const lc_attention_opts *opts);

// dx += the inverse rotation of dy (rotation is orthogonal).
void lc_rope_backward(float *dx,              // [N, H, D]
                      const float *dy,        // [N, H, D]
                      const float *cs,        // [N, rot] from lc_rope_table
                      bool overwrite, int N, int H, int D, int rot);

// out = act(x), element-wise (ungated MLPs).
void lc_act_forward(float *out,     // [n]
                    const float *x, // [n]
                    lc_act_kind act, size_t n);

void lc_act_backward(float *dx,         // [n]
                     const float *dout, // [n]
                     const float *x,    // [n]
                     lc_act_kind act, bool overwrite, size_t n);

// out = act(gate) * up (SwiGLU for silu, GeGLU for the GELUs).
void lc_glu_forward(float *out,        // [n]
                    const float *gate, // [n]
                    const float *up,   // [n]
                    lc_act_kind act, size_t n);

void lc_glu_backward(float *dgate,      // [n]
                     float *dup,        // [n]
                     const float *dout, // [n]
                     const float *gate, // [n]
                     const float *up,   // [n]
                     lc_act_kind act, bool overwrite, size_t n);

// The same with gate and up as the two halves of each row of one tensor
// (a stacked or fused gate/up projection's output).
void lc_glu_packed_forward(float *out,      // [N, F]
                           const float *gu, // [N, 2F]: gate | up
                           lc_act_kind act, int N, int F);

void lc_glu_packed_backward(float *dgu,        // [N, 2F]
                            const float *dout, // [N, F]
                            const float *gu,   // [N, 2F]
                            lc_act_kind act, bool overwrite, int N, int F);

// out = x clamped to [-limit, limit] (OLMo's clip_qkv).
void lc_clamp_forward(float *out, const float *x /* [n] */, float limit, size_t n); // out [n]
void lc_clamp_backward(float *dx,         // [n]
                       const float *dout, // [n]
                       const float *x,    // [n]
                       float limit, size_t n);

// out[r][j] = x[r][cols[j]]: splits a fused projection's output.
void lc_gather_cols_forward(float *out,          // [N, n_out]
                            const float *x,      // [N, n_in]
                            const int32_t *cols, // [n_out], distinct
                            int N, int n_in, int n_out);

void lc_gather_cols_backward(float *dx,           // [N, n_in]
                             const float *dout,   // [N, n_out]
                             const int32_t *cols, // [n_out]
                             int N, int n_in, int n_out);

// x → cap · tanh(x / cap) in place; grad (may be NULL) receives the derivative.
void lc_softcap_forward(float *x,    // [n] in/out
                        float *grad, // [n] or NULL
                        float cap, int n);

// acc += x, element-wise (residual connection; also the add's backward).
void lc_add_forward(float *acc,     // [n] in/out
                    const float *x, // [n]
                    size_t n);

// out[i] = table[ids[i]]; ids are checked by the caller against V.
void lc_embedding_forward(float *out,           // [N, C]
                          const int32_t *ids,   // [N]
                          const float *table,   // [V, C]
                          int N, int C);

// LoRA branch of a linear layer, added to y = x·Wᵀ:
//   xd = dropout(x) (kept elements scaled by 1/(1-p), mask from `mask_seed`)
//   u  = xd · Aᵀ;  y += scale · u · Bᵀ
// u and xd are saved for the backward (xd only when p > 0). y may be columns
// of a wider output (one part of a stacked projection): its rows are ldy
// floats apart (ldy = n_out for a plain linear).
void lc_lora_forward(float *y, int ldy, // [N, ldy] in/out, columns [0, n_out) used
                     float *u,          // [N, r]
                     float *xd,         // [N, n_in] when p > 0, else NULL
                     const float *x,    // [N, n_in]
                     const float *A,    // [r, n_in]
                     const float *B,    // [n_out, r]
                     float scale, float p, uint64_t mask_seed, int N, int n_in, int n_out, int r);

// dA, dB and (when dx is not NULL) dx accumulate. du is scratch [N, r].
void lc_lora_backward(float *dA,                // [r, n_in]
                      float *dB,                // [n_out, r]
                      float *dx,                // [N, n_in] or NULL
                      float *du,                // [N, r] scratch
                      const float *dy, int ldy, // [N, ldy], columns [0, n_out) used
                      const float *x,           // [N, n_in]
                      const float *xd,          // [N, n_in] or NULL when p == 0
                      const float *u,           // [N, r]
                      const float *A,           // [r, n_in]
                      const float *B,           // [n_out, r]
                      float scale, float p, uint64_t mask_seed, int N, int n_in, int n_out, int r);

// Whether dropout keeps element i under mask_seed (counter-based, so the
// backward regenerates the mask instead of storing it).
int lc_dropout_keep(uint64_t mask_seed, size_t i, float p);

// Cross-entropy of the head's logits (x · headᵀ) against targets, computed in
// chunks of rows so the [N, V] logits never exist at once. Rows with target
// < 0 are skipped. Adds each counted row's loss to *loss_sum (double). When
// dx is not NULL it receives norm · d(loss_sum)/dx, the gradient of the loss
// normalized by `norm` (1 / target tokens of the whole accumulated batch).
// logits is scratch [chunk, V]; xrows scratch [chunk, C]. softcap > 0 caps
// the logits first (Gemma 2), with capgrad as scratch. The rows of a chunk
// run on lc_parallel_for's threads; the loss is summed in row order.
void lc_cross_entropy_forward(double *loss_sum,
                              int *n_counted,
                              float *dx,             // [N, C] or NULL
                              float *logits,         // [chunk, V] scratch
                              float *xrows,          // [chunk, C] scratch
                              float *capgrad,        // [lc_parallel_threads(), V] scratch when softcap > 0, else NULL
                              const float *x,        // [N, C]
                              const lc_weight *head, // [V, C], any stored type
                              lc_compute compute,    // how the head's two products multiply
                              const int32_t *targets, // [N]
                              float norm, float softcap, int N, int C, int V, int chunk);

#endif
