// Whether a run may continue from a checkpoint written with another config:
// the checkpoint's stored config (attribute "config") against the current
// one, key by key.
#ifndef LC_RESUME_CHECK_H
#define LC_RESUME_CHECK_H

#include <stddef.h>

#include "common/status.h"
#include "train/train_config.h"

// Compares stored_json (read from checkpoint `path`, not trusted) with now.
// A key that changes the data, its order, the model, the LoRA or the
// optimization (model, train_data, valid_*, lora.*, optimizer.*, schedule.*,
// batch_size, grad_accum, max_seq_len, max_grad_norm, seed, packing,
// mask_prompt, bf16_weights) is an LC_STATUS_INPUT error listing every such
// key with both values and what to do. Keys that only change how long, how
// often or where (steps, epochs, eval_every, save_every, keep_checkpoints,
// threads, skip_nonfinite, activation_checkpointing, output_dir,
// init_adapter) are allowed: `note` gets them with both values ("" if none).
// lora.targets are compared within target_mask (the model's kinds: "all" and
// the full list are the same adapter), lora.layers as the layers of a model
// of n_layers layers ({"last": 2} of 4 is [2, 3]).
lc_status lc_resume_check_config(const char *path, const char *stored_json, const lc_train_config *now,
                                 unsigned target_mask, int n_layers, char *note, size_t note_cap);

#endif
