// The training config (SPEC "Training config"): one JSON file per run, with
// --set key=value overrides (dotted keys). Unknown and duplicate keys are errors.
#ifndef LC_TRAIN_CONFIG_H
#define LC_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cJSON.h>

#include "autograd/weight.h"
#include "common/status.h"
#include "model/lora.h"
#include "optim/adamw.h"

typedef struct lc_train_config {
    char model[4096];
    char train_data[4096];
    char valid_data[4096]; // "" when valid_split or no validation
    double valid_split;    // 0: none
    char output_dir[4096];
    char init_adapter[4096]; // "" for a fresh adapter
    char chat_template[4096]; // a .jinja file for chat data instead of the model's template; "" for the model's
    lc_lora_config lora;
    float lr;
    lc_adamw_config adamw;
    lc_schedule schedule; // lr copied in; total_steps set once the data is known
    int batch_size, grad_accum, max_seq_len;
    int64_t steps;  // 0 when epochs decide
    int epochs;     // 0 when steps decide
    float max_grad_norm;
    uint64_t seed;
    bool packing, mask_prompt;
    bool skip_nonfinite;
    bool activation_checkpointing; // keep only layer inputs; recompute each layer in the backward
    bool bf16_weights;             // frozen linear weights kept in bf16 (half the memory)
    lc_compute compute;            // how the frozen-weight and head products multiply ("compute")
    int eval_every, save_every, keep_checkpoints, threads;
    int eval_max_examples; // evaluations read the first this many validation examples; 0: all
    int log_every;         // without a terminal, a progress line every this many steps; 0: about 50 a run
    // "eval_generate": task accuracy on the validation data every `every`
    // steps (0: off), over its first `limit` examples (0: all).
    struct {
        int every, limit, max_tokens;
        int metric; // lc_metric
    } eval_generate;
    // "early_stopping": stop after `patience` evaluations (0: off) without an
    // improvement of more than min_delta, in eval accuracy when eval_generate
    // runs, else in eval loss.
    struct {
        int patience;
        float min_delta;
    } early_stopping;
    char *json; // the full config after overrides, as written to checkpoints
    char path[4096]; // the config file, for messages ("" when parsed from text)
    char notes[8192]; // lines for stderr about how the config was read (inputs found beside it); "" for none
} lc_train_config;

// Reads path, applies overrides ("key=value", dotted keys; the whole value
// parsed as JSON when it is valid JSON, else taken as a string, and always as
// a string for a string key; an empty value removes the key), validates, and
// fills cfg; an error about a value an override gave names "--set key=value".
// Relative paths in the config are taken relative to the current folder.
lc_status lc_train_config_load(lc_train_config *cfg, const char *path, const char *const *overrides, int n_overrides);
// The same from a JSON text (checkpoints store it); `what` names it in errors.
lc_status lc_train_config_parse(lc_train_config *cfg, const char *text, const char *what);
void lc_train_config_free(lc_train_config *cfg);
// Every config key with its default and meaning, a line each (lora train --help).
void lc_train_config_describe(FILE *out);

#endif
