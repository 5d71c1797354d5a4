// Training and evaluation runs over the model, LoRA, data and optimizer.
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include <stdint.h>

#include "common/status.h"
#include "data/dataset.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/train_config.h"

typedef struct lc_eval_result {
    double loss;       // mean cross-entropy over target tokens
    int64_t n_targets; // tokens the mean is over
} lc_eval_result;

// Mean cross-entropy of ds (completion tokens, as the dataset masked them)
// in file order, batch_size sequences at a time. lora may be NULL.
lc_status lc_evaluate(const lc_model *m, const lc_lora *lora, const lc_dataset *ds, int batch_size, int max_seq_len,
                      lc_eval_result *out);

// Loads an adapter for m from PATH: an HDF5 checkpoint written by `lora
// train`, a run's output folder (its newest checkpoint), or a PEFT adapter
// folder. *same_base is set to 0 when a checkpoint was trained on a
// different base (shapes still match).
lc_status lc_adapter_load(const char *path, const lc_model *m, lc_lora *lora, int *same_base);

// The whole of `lora train`: progress on stderr, metrics.jsonl and
// checkpoints in cfg->output_dir.
lc_status lc_train_run(const lc_train_config *cfg);

#endif
