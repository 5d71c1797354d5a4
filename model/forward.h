// The transformer forward pass, shared by generation and (later) training.
// Buffers are planned once for a (batch, length) shape and reused.
#ifndef LC_FORWARD_H
#define LC_FORWARD_H

#include <stdint.h>

#include "common/status.h"
#include "model/model.h"

typedef struct lc_forward_state {
    int max_batch;  // B
    int max_tokens; // Tcap: KV cache length per sequence
    int max_rows;   // most token rows one call processes (B x T)
    float *x;       // [rows, C] residual stream
    float *xn;      // [rows, C] normalized input of a sub-block
    float *q;       // [rows, H*D]
    float *kv_new;  // [rows, KVH*D] keys or values before they enter the cache
    float *att;     // [rows, H*D]
    float *gate;    // [rows, F]
    float *up;      // [rows, F]
    float *k_cache; // [L, B, Tcap, KVH*D]
    float *v_cache; // [L, B, Tcap, KVH*D]
    float *scores;  // [Tcap]
    int32_t *pos;   // [rows]
    float *logits;  // [rows, V]
} lc_forward_state;

// Plans buffers for up to max_batch sequences of max_tokens positions, of
// which at most max_rows token rows go through one forward call.
lc_status lc_forward_state_init(lc_forward_state *s, const lc_model *m, int max_batch, int max_tokens, int max_rows);
void lc_forward_state_free(lc_forward_state *s);

typedef enum lc_logits_mode {
    LC_LOGITS_MODE_LAST, // one row per sequence: the last position (generation)
    LC_LOGITS_MODE_ALL,  // every position
} lc_logits_mode;

// Runs tokens [B, T] at positions pos0..pos0+T-1 of each sequence, appending
// their keys and values to the cache, and writes logits to s->logits
// ([B, V] for LAST, [B*T, V] for ALL). Token ids must be < vocab_size.
lc_status lc_forward(lc_forward_state *s, const lc_model *m, const int32_t *tokens, int B, int T, int pos0,
                     lc_logits_mode mode);

#endif
