// What trainer.c and trainer_eval.c share: the state of one `lora train`
// run and the functions of each that the other calls.
#ifndef LC_TRAINER_INTERNAL_H
#define LC_TRAINER_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data/chat.h"
#include "data/dataset.h"
#include "model/train_pass.h"
#include "optim/adamw.h"
#include "train/early_stop.h"
#include "train/run_dir.h"
#include "train/trainer.h"

typedef struct trainer {
    const lc_train_config *cfg;
    lc_model model;
    lc_tokenizer *tok;
    lc_chat *chat;          // the model's chat template (NULL: none, or unreadable: chat_error)
    char chat_error[512];
    lc_dataset train, valid;
    int has_valid;
    lc_lora lora;
    lc_adamw opt;
    lc_schedule sched;
    lc_train_pass pass;
    lc_batcher it;
    lc_batch *batches; // [grad_accum]
    FILE *metrics;
    char fingerprint[17];
    int tty;
    // Progress without a terminal: a line every log_every steps, over the
    // steps since the last one.
    int64_t log_every;
    double log_loss, log_seconds;
    int64_t log_steps, log_tokens;
    lc_run_dir run;     // output_dir: its lock and checkpoint index
    int64_t saved_step; // step of the newest checkpoint written or resumed from
    int64_t resumed_step;
    // Training time before this invocation, from the checkpoint resumed
    // (0 fresh, < 0 unknown: an older checkpoint), and when this one's loop began.
    double elapsed_before, loop_start;
    int64_t n_skipped;  // batches skipped for a non-finite loss (skip_nonfinite)
    int metrics_failed; // a metrics.jsonl write failed (reported once)
    int eval_stopped;   // an evaluation was abandoned on a second stop signal
    int eval_recorded;  // metrics.jsonl holds an evaluation of the step resumed from
    int gen_recorded;   // ... and its eval_generate row
    int plot_failed;    // loss.svg could not be written (reported once)
    lc_early_stop es;   // early_stopping (patience 0: off)
    char **valid_refs;  // eval_generate: the validation examples' reference answers
    bool valid_chat;    // the validation data is chat data
    int32_t gen_stop[16];
    int n_gen_stop;
} trainer;

// trainer_data.c: the data sets (and the chat template) of a run.
lc_status lc_trainer_load_data(trainer *t);

// trainer.c
extern volatile sig_atomic_t lc_stop_signal, lc_stop_count;
// Writes checkpoint-<step>.h5 (rank 0; the other ranks note the step).
lc_status lc_trainer_save_checkpoint(trainer *t, int64_t step);
// That checkpoint unless this step has one, every rank agreeing on the outcome.
lc_status lc_trainer_save_step(trainer *t, int64_t step);
// Whether a second stop signal asks to abandon the evaluation under way.
int lc_trainer_eval_abandoned(void *user);

// Seconds of training up to now over every invocation of the run (< 0: unknown).
double lc_trainer_elapsed(const trainer *t);

// trainer_eval.c
// The evaluations due after step `done` (at the last step, all of them).
lc_status lc_trainer_evaluate_step(trainer *t, int64_t done, bool last);
lc_status lc_trainer_run_eval(trainer *t, int64_t step);
lc_status lc_trainer_run_eval_generate(trainer *t, int64_t step);
void lc_trainer_write_plot(trainer *t);
void lc_trainer_early_stop_report(trainer *t, int64_t step, bool stopped);
lc_status lc_trainer_load_generation(trainer *t);

#endif
