// The transformer forward pass, one implementation for generation (KV cache,
// no tape) and training (tape recorded for the reverse pass, LoRA adapters).
#ifndef LC_FORWARD_H
#define LC_FORWARD_H

#include <stdint.h>

#include "autograd/graph.h"
#include "common/status.h"
#include "model/lora.h"
#include "model/model.h"

// Keys and values of past positions, [L, B, Tcap, KVH*D] each.
typedef struct lc_kv_cache {
    int max_batch, max_tokens; // B, Tcap
    float *k, *v;
} lc_kv_cache;

typedef struct lc_forward_input {
    const int32_t *tokens;    // [B, T], ids checked against the vocabulary
    int B, T;
    const int32_t *pos;       // [B, T] rotary positions, or NULL for pos0 + t
    const int32_t *seg_start; // [B, T] first row each token may attend to, or NULL
    int pos0;                 // cache position of the first token (0 without cache)
} lc_forward_input;

// Runs embedding and every block; returns the final RMSNorm output [B*T, C]
// in g. With a cache, the new keys/values are stored at pos0.. and attention
// reads the cache; without, it attends within the batch. lora may be NULL.
// When g does not record, each block's activations are released as it ends.
lc_status lc_model_forward_hidden(lc_graph *g, const lc_model *m, const lc_lora *lora, lc_kv_cache *cache,
                                  const lc_forward_input *in, lc_tensor **out);

// One transformer block on g (recording when g records): the building block
// shared by the forward above and the per-layer training pass.
typedef struct lc_block_ctx {
    lc_graph *g;
    const lc_model *m;
    const lc_lora *lora;
    lc_kv_cache *cache; // NULL: attend within the batch
    const lc_forward_input *in;
    const int32_t *pos; // [B*T] rotary positions
    const float *rope_cs; // [B*T, rope_dim] their cos/sin (lc_forward_positions), NULL without rope
} lc_block_ctx;

lc_tensor *lc_block_forward(const lc_block_ctx *c, int layer, lc_tensor *x);
// The embeddings of in's tokens (scaled, with learned positions and the
// embedding norm where the family has them) as a new tensor of g.
lc_tensor *lc_model_embed(lc_graph *g, const lc_model *m, const lc_forward_input *in, const int32_t *pos);
// A norm of the model's kind (RMS or layer norm) with parameters n.
lc_tensor *lc_model_norm(lc_graph *g, const lc_model *m, const lc_norm *n, lc_tensor *x);
// The positions of in's tokens (pos0 + t when in->pos is NULL) and, for a
// rope model, their cos/sin table shared by every layer (else NULL), both in
// g's arena.
lc_status lc_forward_positions(lc_graph *g, const lc_model *m, const lc_forward_input *in, const int32_t **pos,
                               const float **rope_cs);
lc_status lc_forward_check_tokens(const lc_model *m, const lc_forward_input *in);

// Generation state: a graph without tape, the KV cache, and the logits.
typedef struct lc_forward_state {
    lc_graph graph;
    lc_kv_cache cache;
    int max_rows;       // most token rows one call processes (B x T)
    int logits_rows;    // rows of logits kept: B for LAST, B*T for ALL
    float *logits;      // [logits_rows, V]
    const lc_lora *lora; // adapter applied during generation, or NULL
} lc_forward_state;

// Plans for up to max_batch sequences of max_tokens positions, at most
// max_rows token rows per call, and at most logits_rows rows of logits.
lc_status lc_forward_state_init(lc_forward_state *s, const lc_model *m, int max_batch, int max_tokens, int max_rows,
                                int logits_rows);
void lc_forward_state_free(lc_forward_state *s);

typedef enum lc_logits_mode {
    LC_LOGITS_MODE_LAST, // one row per sequence: the last position (generation)
    LC_LOGITS_MODE_ALL,  // every position
} lc_logits_mode;

// Runs tokens [B, T] at positions pos0..pos0+T-1 of each sequence, appending
// their keys and values to the cache, and writes logits to s->logits
// ([B, V] for LAST, [B*T, V] for ALL).
lc_status lc_forward(lc_forward_state *s, const lc_model *m, const int32_t *tokens, int B, int T, int pos0,
                     lc_logits_mode mode);
// The same with every field of in: per-token rotary positions and the first
// cache position each token may attend to (seg_start), as batched decoding
// of left-padded prompts needs.
lc_status lc_forward_input_run(lc_forward_state *s, const lc_model *m, const lc_forward_input *in,
                               lc_logits_mode mode);

#endif
