// HDF5 checkpoints: the LoRA tensors, AdamW moments, step, data position,
// RNG state, the full config as JSON and a fingerprint of the base model.
// Written under a temporary name and renamed only when complete.
//
// Layout (readable with h5dump / h5py; every group and dataset carries a
// "description" attribute):
//   /                 attrs: format ("lora.c checkpoint"), format_version (1), step, epoch,
//                            data_index, rng_state, config (JSON text), base_fingerprint,
//                            elapsed_s (float64 seconds of training so far; absent: unknown),
//                            total_steps (the run's length in steps; absent in older files)
//   /lora             attrs: r, alpha, dropout, rslora (0/1), scale, targets ("q_proj,k_proj,..."),
//                            layers ("0,2,5-9": the adapted layers; absent in older files: every layer)
//   /lora/<module>/A  float32 [r, in]     e.g. /lora/model.layers.0.self_attn.q_proj/A
//   /lora/<module>/B  float32 [out, r]
//   /optimizer        attrs: step, beta1, beta2, eps, weight_decay
//   /optimizer/exp_avg/<module>/A|B, /optimizer/exp_avg_sq/<module>/A|B  (same shapes)
#ifndef LC_CHECKPOINT_H
#define LC_CHECKPOINT_H

#include <stdint.h>

#include "common/status.h"
#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"

typedef struct lc_checkpoint_meta {
    int64_t step;         // optimizer updates done
    int64_t epoch;        // data position: epoch ...
    int64_t data_index;   // ... and index into that epoch's shuffled order
    uint64_t rng_state;
    const char *config_json;      // full training config
    const char *base_fingerprint; // lc_model_fingerprint of the base
    double elapsed_s;             // training time up to this step over every run of it; < 0: unknown (not written)
    int64_t total_steps;          // the run's length in steps (an epochs run's is counted); 0: not written
} lc_checkpoint_meta;

// Writes path (via path + ".tmp", fsync, rename). opt may be NULL (adapter only).
lc_status lc_checkpoint_save(const char *path, const lc_model *m, const lc_lora *lora, const lc_adamw *opt,
                             const lc_checkpoint_meta *meta);

// What a checkpoint holds, read from its attributes. Strings are heap copies
// freed by lc_checkpoint_info_free.
typedef struct lc_checkpoint_info {
    lc_lora_config lora;
    int64_t step, epoch, data_index;
    uint64_t rng_state;
    char *config_json;
    char *base_fingerprint;
    int has_optimizer;
    double elapsed_s; // < 0: unknown (a checkpoint written before lora.c recorded it, or by a run resumed from one)
    int64_t total_steps; // the run's length in steps; 0: unknown (written before lora.c recorded it)
} lc_checkpoint_info;

lc_status lc_checkpoint_read_info(const char *path, lc_checkpoint_info *info);
void lc_checkpoint_info_free(lc_checkpoint_info *info);

// Reads the LoRA tensors into lora (already initialized by the caller with
// info.lora for model m) and, when opt is not NULL, the AdamW moments and
// step into opt (initialized for lora->n_params). Every dataset's shape is
// checked against the model; a mismatch names the dataset.
lc_status lc_checkpoint_load(const char *path, const lc_model *m, lc_lora *lora, lc_adamw *opt);

// Calls fn for each adapted module in /lora with the shapes of its A and B
// (for `lora inspect`, which has no model to check them against).
typedef void (*lc_checkpoint_module_fn)(void *user, const char *module, const int64_t a_shape[2],
                                        const int64_t b_shape[2]);
lc_status lc_checkpoint_list_modules(const char *path, lc_checkpoint_module_fn fn, void *user);

#endif
