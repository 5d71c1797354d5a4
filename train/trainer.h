// Training and evaluation runs over the model, LoRA, data and optimizer.
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include <stdint.h>

#include "common/status.h"
#include "data/dataset.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/train_pass.h"
#include "train/train_config.h"

typedef struct lc_eval_result {
    double loss;       // mean cross-entropy over target tokens
    double loss_sum;   // their sum
    int64_t n_targets; // tokens the mean is over
} lc_eval_result;

// Asked between batches; nonzero abandons the evaluation.
typedef int (*lc_eval_stop_fn)(void *user);

// Mean cross-entropy of ds (completion tokens, as the dataset masked them)
// in file order, batch_size sequences at a time, the frozen-weight products
// multiplied as `compute` says. lora may be NULL. Of the batches with
// targets, this call scores those whose index % n_shards is shard (0 of 1:
// all); a shard may score none. When
// stop (may be NULL) answers nonzero the evaluation ends with
// LC_STATUS_INTERRUPTED and no result.
lc_status lc_evaluate(const lc_model *m, const lc_lora *lora, const lc_dataset *ds, int batch_size, int max_seq_len,
                      lc_compute compute, int shard, int n_shards, lc_eval_stop_fn stop, void *stop_user,
                      lc_eval_result *out);

// Checks a dataset read from `path` against the model before any step, so a
// mismatch is reported naming FILE:LINE instead of mid-run from a kernel:
// every token id inside the model's vocabulary (a tokenizer larger than the
// embedding table), and with a learned position table every example within
// it (`limit_name` is the setting that bounds example length, as
// "max_seq_len" or "--max-seq-len"). Examples beyond a rotary model's
// max_position_embeddings only warn, once: rotary positions extrapolate.
lc_status lc_train_check_dataset(const lc_dataset *ds, const char *path, const lc_model *m, const char *limit_name,
                                 int limit);

// The chat template of a model folder for chat data: override (a .jinja
// file) or the folder's own. A folder template that cannot be read is no
// error here (*chat NULL, the reason in err) since only chat data needs it.
lc_status lc_train_load_chat(const char *model_dir, const char *override, lc_chat **chat, char *err, size_t cap);

// Target tokens of ds (positions with a loss): zero means nothing to evaluate.
int64_t lc_train_count_targets(const lc_dataset *ds);

// Warns on stderr ("CMD: warning: ...") about what loading m from dir left
// unused: a stored head that tie_word_embeddings overrides.
void lc_train_warn_model(const char *cmd, const char *dir, const lc_model *m);

// One optimizer step over accumulated micro-batches: forward and backward of
// each (loss normalized by the target tokens of all of them together, not
// per micro-batch), clipping, and the AdamW update at lr. Shared by `lora
// train` and bench/. A non-finite loss or gradient norm sets *nonfinite and
// leaves the parameters and moments untouched.
typedef struct lc_step_ctx {
    const lc_model *model;
    lc_lora *lora; // with gradients
    lc_adamw *opt;
    lc_train_pass *pass;
    float max_grad_norm;
    uint64_t seed;   // dropout masks derive from (seed, step, micro-batch)
} lc_step_ctx;

typedef struct lc_step_result {
    double loss;
    float grad_norm;
    int n_tokens, n_targets;
    int nonfinite;
} lc_step_result;

lc_status lc_train_step(const lc_step_ctx *c, const lc_batch *batches, int n_batches, int64_t step, float lr,
                        lc_step_result *out);

// The whole of `lora train`: progress on stderr, metrics.jsonl and
// checkpoints in cfg->output_dir.
lc_status lc_train_run(const lc_train_config *cfg);

#endif
