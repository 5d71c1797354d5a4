// Mixture-of-experts kernels: routing (softmax over the router's logits, the
// top k experts of each token, optionally renormalized), the grouping of
// token rows by expert so each expert runs one product over its rows, the
// weighted combination of the experts' outputs, and a row gate
// (qwen2_moe's sigmoid-scaled shared expert). Forward/backward pairs.
#ifndef LC_MOE_H
#define LC_MOE_H

#include <stdbool.h>
#include <stdint.h>

// Which experts each token chose and the tokens of each expert: slot s of
// token n (entry n * k + s of idx and of the weights) is row n of expert
// idx[n * k + s]. order lists the entries expert by expert, tokens in
// increasing order within an expert: expert e's entries are
// order[start[e] .. start[e + 1]).
typedef struct lc_moe_routing {
    int N, E, k;
    int32_t *idx;   // [N * k]
    int32_t *start; // [E + 1]
    int32_t *order; // [N * k] entries n * k + s
    int32_t *rows;  // [N * k] the token row of each entry of order
    int32_t *fill;  // [E] scratch of the forward's counting sort
} lc_moe_routing;

// p = softmax(logits) per row; w[n, s] = p[n, idx[n, s]] for the k largest
// (ties: the lower expert first), descending; divided by their sum when
// renorm. Fills r->idx, r->start, r->order and r->rows.
void lc_moe_route_forward(float *w,            // [N, k]
                          float *p,            // [N, E] kept for the backward
                          lc_moe_routing *r,   // its arrays allocated for N, E, k
                          const float *logits, // [N, E]
                          bool renorm);

// dlogits += d(w)/d(logits)ᵀ dw (or = when overwrite).
void lc_moe_route_backward(float *dlogits,         // [N, E]
                           const float *dw,        // [N, k]
                           const float *w,         // [N, k]
                           const float *p,         // [N, E]
                           const lc_moe_routing *r, bool renorm, bool overwrite);

// out[i] = x[rows[i]] (the rows of one expert).
void lc_gather_rows_forward(float *out,          // [n, C]
                            const float *x,      // [N, C]
                            const int32_t *rows, // [n]
                            int n, int C);
void lc_gather_rows_backward(float *dx,           // [N, C], accumulated
                             const float *dout,   // [n, C]
                             const int32_t *rows, // [n]
                             int n, int C);

// out[rows[i]] += w[entry i] · y[i] over expert e's entries i (of r).
void lc_moe_combine_forward(float *out,     // [N, C]
                            const float *y, // [n_e, C] expert e's outputs
                            const float *w, // [N, k]
                            const lc_moe_routing *r, int e, int C);
// dy[i] += w[entry i] · dout[rows[i]] (= when overwrite); dw[entry i] += y[i] · dout[rows[i]].
void lc_moe_combine_backward(float *dy,         // [n_e, C], or NULL
                             float *dw,         // [N, k] accumulated, or NULL
                             const float *dout, // [N, C]
                             const float *y,    // [n_e, C]
                             const float *w,    // [N, k]
                             const lc_moe_routing *r, int e, int C, bool overwrite);

// out[n] = y[n] · sigmoid(s[n]).
void lc_sigmoid_gate_forward(float *out,     // [N, C]
                             const float *y, // [N, C]
                             const float *s, // [N]
                             int N, int C);
// dy (may be NULL) and ds (may be NULL) accumulated.
void lc_sigmoid_gate_backward(float *dy,         // [N, C]
                              float *ds,         // [N]
                              const float *dout, // [N, C]
                              const float *y,    // [N, C]
                              const float *s,    // [N]
                              int N, int C);

#endif
