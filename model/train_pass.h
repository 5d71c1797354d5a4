// The training pass of one micro-batch: forward, cross-entropy, and the
// reverse pass into the LoRA gradients, one layer at a time.
//
// Each layer records on its own graph and activation gradients live in one
// shared arena that is rewound after every layer, so only one layer's
// gradients exist at a time (the residual gradient crosses layers in a
// ping-pong pair). With checkpointing only the layer inputs are kept in the
// forward, and each layer is recorded again during the backward.
#ifndef LC_TRAIN_PASS_H
#define LC_TRAIN_PASS_H

#include <stdbool.h>

#include "autograd/graph.h"
#include "model/forward.h"

typedef struct lc_train_pass {
    int n_layers;
    bool checkpointing;
    lc_graph *layers;   // [n_layers] recording graphs (one, for re-recording, with checkpointing)
    lc_graph keep;      // embeddings, positions, layer inputs (checkpointing), residual gradients
    lc_graph head;      // final norm and cross-entropy
    lc_arena grads;     // activation gradients of the layer being differentiated
    lc_transient transient; // the MLP activation of one layer at a time (recomputed in the backward)
} lc_train_pass;

lc_status lc_train_pass_init(lc_train_pass *p, const lc_model *m, bool checkpointing);
// How every graph of the pass multiplies its frozen weights (FP32 after init).
void lc_train_pass_set_compute(lc_train_pass *p, lc_compute c);
void lc_train_pass_free(lc_train_pass *p);

// Memory the pass holds for activations and their gradients: the bytes of
// every arena's chunks, and how many chunks were mapped so far (constant from
// step to step once the largest batch shape has been seen).
typedef struct lc_train_pass_memory {
    size_t held_bytes;
    int64_t n_maps;
    int n_chunks;
} lc_train_pass_memory;

lc_train_pass_memory lc_train_pass_get_memory(const lc_train_pass *p);

// Plans the pass's memory for micro-batches of up to B x T tokens: runs it
// once on such a batch (token 0 everywhere, every position a target) and
// leaves each arena one chunk sized for it, so the steps that follow map
// nothing new whatever their shapes, and a run that cannot fit in memory
// fails before its first step instead of hours in. The adapter's gradient
// buffers are zeroed after (nothing else changes).
lc_status lc_train_pass_plan(lc_train_pass *p, const lc_model *m, lc_lora *lora, int B, int T);

// Adds the summed cross-entropy over targets >= 0 to *loss_sum (and the
// count to *counted) and norm-scaled LoRA gradients into the adapter's
// gradient buffers (norm: 1 / target tokens of the whole accumulated batch).
lc_status lc_train_pass_run(lc_train_pass *p, const lc_model *m, const lc_lora *lora, const lc_forward_input *in,
                            const int32_t *targets, float norm, double *loss_sum, int *counted);

#endif
