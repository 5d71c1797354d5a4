// `lora train`: the loop over steps, with evaluation, metrics and checkpoints.

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "autograd/bf16_gemm.h"
#include "train/base.h"
#include "autograd/parallel.h"
#include "common/file.h"
#include "common/hash.h"
#include "model/forward.h"
#include "optim/adamw.h"
#include "train/adapter.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/early_stop.h"
#include "train/eval_generate.h"
#include "train/plot.h"
#include "train/resume_check.h"
#include "train/run_dir.h"
#include "train/trainer.h"
#include "train/trainer_internal.h"

static void format_duration(char *out, size_t cap, double s) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, cap, "%lds", t);
}

// Micro-batches an epoch-based run takes. The batcher is bounded to the
// epochs, so each epoch trains every example once (its last batch ends short
// rather than taking the next epoch's examples), and it counts them: packed
// rows depend on each epoch's shuffled order, not the file's.
static lc_status epoch_run_batches(trainer *t, int64_t *n) {
    lc_batcher_set_epochs(&t->it, t->cfg->epochs);
    return lc_batcher_count_batches(&t->it, t->cfg->epochs, n);
}

// Sizes the training pass for the largest micro-batch this run can make
// (batch_size rows, as the batcher fills them across epochs, of the longest
// example, or of max_seq_len when packing), so memory is flat from the first
// step and a run too large for the machine fails now, not at the batch that
// first reaches that length.
static lc_status plan_memory(trainer *t) {
    const lc_train_config *cfg = t->cfg;
    int64_t T = 0;
    for (int i = 0; i < t->train.n_examples; i++)
        if (t->train.examples[i].n > T) T = t->train.examples[i].n;
    if (cfg->packing) T = cfg->max_seq_len;
    // A rank takes at most its share of a step's rows from one micro-batch.
    int64_t share = ((int64_t)cfg->batch_size * cfg->grad_accum + lc_dist_size() - 1) / lc_dist_size();
    int B = share < cfg->batch_size ? (int)share : cfg->batch_size;
    if (T < 1 || B < 1) return LC_STATUS_OK;
    lc_status st = lc_train_pass_plan(&t->pass, &t->model, &t->lora, B, (int)T);
    if (st == LC_STATUS_RUNTIME)
        lc_error_prefix("planning memory for batches of %d x %lld tokens (batch_size x the longest %s)", B,
                        (long long)T, cfg->packing ? "packed row" : "example");
    return st;
}

double lc_trainer_elapsed(const trainer *t) {
    return t->elapsed_before < 0 ? -1 : t->elapsed_before + (lc_now_s() - t->loop_start);
}

// Rank 0 writes; the others only note the step.
lc_status lc_trainer_save_checkpoint(trainer *t, int64_t step) {
    if (lc_dist_rank() != 0) {
        t->saved_step = step;
        return LC_STATUS_OK;
    }
    char path[4200];
    lc_status st = lc_run_dir_checkpoint_path(path, sizeof path, t->cfg->output_dir, step);
    if (st) return st;
    // The time is only reported, never used by training: a resumed run's
    // adapter stays the uninterrupted one's.
    lc_checkpoint_meta meta = {step, t->it.epoch, t->it.index, t->cfg->seed, t->cfg->json, t->fingerprint,
                               lc_trainer_elapsed(t), t->sched.total_steps};
    if ((st = lc_checkpoint_save(path, &t->model, &t->lora, &t->opt, &meta))) return st;
    t->saved_step = step;
    // The checkpoint is complete; an index that cannot be updated (full disk)
    // only stops pruning, which deletes nothing the index does not list.
    if ((st = lc_run_dir_add(&t->run, step)) || (st = lc_run_dir_prune(&t->run, t->cfg->keep_checkpoints))) {
        if (t->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "lora train: warning: %s; older checkpoints are kept\n", lc_error_message());
    }
    return LC_STATUS_OK;
}

lc_status lc_trainer_save_step(trainer *t, int64_t step) {
    return lc_dist_agree(t->saved_step != step ? lc_trainer_save_checkpoint(t, step) : LC_STATUS_OK);
}

// A checkpoint on the way (not the run's last) that cannot be written, as on a
// full disk, costs only that save: the previous one is kept and training goes on.
static void save_or_warn(trainer *t, int64_t step) {
    if (!lc_trainer_save_checkpoint(t, step)) return;
    if (t->tty) fprintf(stderr, "\r\033[K");
    if (t->saved_step > 0)
        fprintf(stderr, "lora train: warning: %s; %s/checkpoint-%lld.h5 is kept; training goes on\n",
                lc_error_message(), t->cfg->output_dir, (long long)t->saved_step);
    else
        fprintf(stderr, "lora train: warning: %s; training goes on\n", lc_error_message());
}

// Set by a stop signal; the loop finishes its step, saves and stops. Besides
// SIGINT and SIGTERM: SIGHUP (the terminal or ssh session closed) and SIGPIPE
// (`lora train ... 2>&1 | head` whose reader went away; the write then fails
// instead of killing the run) stop it the same way, so none loses the steps
// since the last checkpoint.
// A second signal abandons an evaluation under way (the checkpoint is
// written first, so nothing trained is lost).
volatile sig_atomic_t lc_stop_signal = 0, lc_stop_count = 0;

static void on_stop_signal(int sig) {
    lc_stop_signal = sig;
    lc_stop_count++;
}

int lc_trainer_eval_abandoned(void *user) {
    (void)user;
    return lc_stop_count >= 2;
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
#define N_STOP_SIGNALS ((int)(sizeof stop_signals / sizeof stop_signals[0]))

static void install_stop_handlers(struct sigaction old[N_STOP_SIGNALS]) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    lc_stop_signal = lc_stop_count = 0;
    for (int i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &sa, &old[i]);
}

// After a stop SIGPIPE stays ignored: when the reader of stderr went away,
// the run's last message goes to the same dead pipe and must fail there
// rather than kill the process before it exits 130.
static void restore_stop_handlers(const struct sigaction old[N_STOP_SIGNALS]) {
    for (int i = 0; i < N_STOP_SIGNALS; i++) {
        if (stop_signals[i] == SIGPIPE && lc_stop_count > 0)
            signal(SIGPIPE, SIG_IGN);
        else
            sigaction(stop_signals[i], &old[i], NULL);
    }
}

// Keeps the rows of metrics.jsonl up to `step` (a resumed run rewrites the
// ones after its checkpoint) and opens the file for appending. The kept rows
// go to a temporary file renamed over the old one, so a run killed or out of
// disk space meanwhile leaves the history whole.
static lc_status open_metrics(trainer *t, int64_t step) {
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, t->cfg->output_dir, "metrics.jsonl");
    if (st) return st;
    char *text = NULL, *kept = NULL;
    size_t len = 0, n_kept = 0;
    if (step > 0 && lc_file_exists(path) && (st = lc_file_read(path, (size_t)1 << 30, &text, &len))) return st;
    if (text && !(kept = malloc(len + 1))) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (char *line = kept ? text : NULL; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        long long row_step;
        if (sscanf(line, "{\"step\": %lld", &row_step) == 1 && row_step <= step && nl) {
            memcpy(kept + n_kept, line, n);
            n_kept += n;
            const char *eval = strstr(line, "\"eval_loss\"");
            if (row_step == step && eval && eval < line + n) t->eval_recorded = 1;
            const char *acc = strstr(line, "\"eval_accuracy\"");
            if (row_step == step && acc && acc < line + n) t->gen_recorded = 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (!st) st = lc_file_write_atomic(path, kept ? kept : "", n_kept);
    // Early stopping's state is a function of the kept evaluations.
    if (!st && kept && t->es.patience) {
        kept[n_kept] = 0;
        lc_early_stop_replay(&t->es, kept);
    }
    free(text);
    free(kept);
    if (st) return st;
    if (!(t->metrics = fopen(path, "a")))
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot write: %s", path, strerror(errno));
    return LC_STATUS_OK;
}

// Checks one checkpoint of output_dir for resume() and loads it: damage
// (an unreadable file) is skipped in favour of an older checkpoint, while a
// checkpoint of another base or LoRA shape ends the search.
static lc_status try_resume(void *ctx, const char *path, int *skip) {
    trainer *t = ctx;
    const lc_train_config *cfg = t->cfg;
    lc_checkpoint_info info;
    lc_status st = lc_checkpoint_read_info(path, &info);
    if (st) {
        *skip = st == LC_STATUS_INPUT; // damage; not a failure to read (memory, processes)
        return st;
    }
    lc_adapter_identity have, want;
    char changed[1024] = "";
    lc_adapter_identity_set(&have, &info.lora, info.base_fingerprint, NULL);
    lc_adapter_identity_set(&want, &t->lora.cfg, t->fingerprint, cfg->model);
    // Its layers as indices of this model (an older checkpoint records none: every layer).
    if ((st = lc_lora_layers_resolve(&have.lora, t->model.cfg.n_layers))) lc_error_prefix("%s", path);
    if (!st) st = lc_adapter_identity_check(path, &have, &want, LC_ADAPTER_USE_RESUME, NULL);
    if (!st && !info.has_optimizer)
        st = lc_error(LC_STATUS_INPUT, "%s: holds an adapter without optimizer state, which cannot be resumed; "
                      "use another output_dir", path);
    if (!st)
        st = lc_resume_check_config(path, info.config_json, cfg, lc_model_linear_kinds(&t->model.cfg),
                                    t->model.cfg.n_layers, changed, sizeof changed);
    if (st) {
        // refused: ends the search
    } else if (info.data_index < 0 || info.data_index > t->train.n_examples || info.epoch < 0 || info.step < 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: data position (epoch %lld, index %lld) does not fit %s", path,
                      (long long)info.epoch, (long long)info.data_index, cfg->train_data);
    } else if ((st = lc_checkpoint_load(path, &t->model, &t->lora, &t->opt))) {
        *skip = st == LC_STATUS_INPUT; // damage; not a failure to read (memory, processes)
    } else {
        if (changed[0]) fprintf(stderr, "lora train: note: continuing with changed %s\n", changed);
        lc_batcher_seek(&t->it, info.epoch, (int)info.data_index);
        t->resumed_step = info.step;
        t->elapsed_before = info.elapsed_s;
        fprintf(stderr, "lora train: resuming from %s (step %lld)\n", path, (long long)info.step);
        if (info.elapsed_s < 0)
            fprintf(stderr, "lora train: note: %s does not record the training time before it (an older lora.c "
                    "wrote it); elapsed_s in metrics.jsonl counts from this resume\n", path);
    }
    lc_checkpoint_info_free(&info);
    return st;
}

// Continues from the newest readable checkpoint in output_dir, if any.
// Returns the step to start from in *start (0 for a fresh run).
static lc_status resume(trainer *t, int64_t *start) {
    const lc_train_config *cfg = t->cfg;
    int64_t found;
    int n_skipped;
    *start = 0;
    t->resumed_step = 0;
    lc_status st = lc_run_dir_find(cfg->output_dir, &t->run, try_resume, t, &found, &n_skipped);
    if (st) return st;
    // Listed checkpoints newer than the one taken did not read: they no
    // longer count as complete (their files stay for inspection).
    for (int i = t->run.n - 1; i >= 0; i--)
        if (t->run.entries[i].step > found && (st = lc_run_dir_forget(&t->run, t->run.entries[i].step))) return st;
    if (found) {
        *start = t->resumed_step;
        t->saved_step = found;
        // Read back whole: complete, so it counts (once listed) for pruning.
        lc_status listed = lc_run_dir_add(&t->run, found);
        if (listed) fprintf(stderr, "lora train: warning: %s\n", lc_error_message());
    } else if (n_skipped) {
        // Every checkpoint was unreadable: start over from the initial adapter.
        fprintf(stderr, "lora train: warning: no readable checkpoint in %s; starting from step 0\n", cfg->output_dir);
        lc_adamw_free(&t->opt);
        st = lc_adamw_init(&t->opt, t->lora.n_params, &cfg->adamw);
    }
    return st;
}

// init_adapter: a new run starting from an existing adapter's weights, as
// the model the adapter was trained as (alpha and rsLoRA may be the run's own).
static lc_status load_init_adapter(trainer *t) {
    const lc_train_config *cfg = t->cfg;
    lc_lora init;
    lc_adapter_identity want;
    unsigned differ;
    lc_adapter_identity_set(&want, &t->lora.cfg, t->fingerprint, cfg->model);
    lc_status st = lc_adapter_load(cfg->init_adapter, &t->model, &want, LC_ADAPTER_USE_INIT, &init, &differ);
    if (st) return st;
    if (init.n_params != t->lora.n_params) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: adapter holds %zu parameters, the run %zu", cfg->init_adapter,
                      init.n_params, t->lora.n_params);
    } else {
        memcpy(t->lora.params, init.params, sizeof(float) * init.n_params);
        float factor;
        if ((differ & (LC_ADAPTER_ALPHA | LC_ADAPTER_RSLORA)) &&
            !(st = lc_adapter_rescale(&t->lora, &t->model, &init.cfg, cfg->init_adapter, &factor)))
            fprintf(stderr, "lora train: the adapter was trained with alpha %g%s, this run has alpha %g%s: its B is "
                    "multiplied by %g so the run starts from the adapter's model\n", init.cfg.alpha,
                    init.cfg.rslora ? " (rsLoRA)" : "", cfg->lora.alpha, cfg->lora.rslora ? " (rsLoRA)" : "", factor);
        if (!st)
            fprintf(stderr, "lora train: starting from the adapter %s%s\n", cfg->init_adapter,
                    differ & LC_ADAPTER_BASE ? " (trained on a different base model)" : "");
    }
    lc_lora_free(&init);
    return st;
}

// One step of the run: the next micro-batches, then lc_train_step; a
// non-finite loss stops the run unless skip_nonfinite.
static lc_status train_step(trainer *t, int64_t step, double *loss, float *grad_norm, int *n_tokens, int *skipped) {
    const lc_train_config *cfg = t->cfg;
    for (int a = 0; a < cfg->grad_accum; a++) lc_batcher_next(&t->it, &t->batches[a]);
    lc_step_ctx ctx = {&t->model, &t->lora, &t->opt, &t->pass, cfg->max_grad_norm, cfg->seed};
    lc_step_result r;
    lc_status st = lc_train_step(&ctx, t->batches, cfg->grad_accum, step, lc_schedule_lr(&t->sched, step), &r);
    if (st) return st;
    *loss = r.loss;
    *grad_norm = r.grad_norm;
    *n_tokens = r.n_tokens;
    *skipped = 0;
    if (r.nonfinite) {
        if (cfg->skip_nonfinite) {
            *skipped = 1;
            return LC_STATUS_OK;
        }
        // Every rank has the same summed loss, so every rank stops here.
        if (t->saved_step > 0)
            st = lc_error(LC_STATUS_RUNTIME, "step %lld: loss %g, gradient norm %g: training diverged; stopped, "
                          "%s/checkpoint-%lld.h5 is the last good checkpoint (lower the learning rate, or set "
                          "\"skip_nonfinite\": true to skip such batches)", (long long)step + 1, r.loss,
                          r.grad_norm, cfg->output_dir, (long long)t->saved_step);
        else
            st = lc_error(LC_STATUS_RUNTIME, "step %lld: loss %g, gradient norm %g: training diverged; stopped before "
                          "any checkpoint (lower the learning rate, or set \"skip_nonfinite\": true to skip such "
                          "batches)", (long long)step + 1, r.loss, r.grad_norm);
        return lc_dist_error_shared(st);
    }
    return LC_STATUS_OK;
}

// The progress line: on a terminal one line rewritten every step; else a
// line every log_every steps (and for the first and last of this run) with
// the mean loss and the speed over the steps since the last line.
static void report_progress(trainer *t, int64_t step, int64_t first, int64_t total, double loss, float lr,
                            int n_tokens, double dt, const char *eta) {
    if (t->tty) {
        fprintf(stderr, "\r\033[Kstep %lld/%lld | loss %.4f | lr %.2e | %.0f tokens/s | ETA %s", (long long)step + 1,
                (long long)total, loss, lr, dt > 0 ? n_tokens / dt : 0.0, eta);
        return;
    }
    if (!isnan(loss)) { // a skipped batch has its own line
        t->log_loss += loss;
        t->log_steps++;
    }
    t->log_tokens += n_tokens;
    t->log_seconds += dt;
    if (step != first && step + 1 != total && (step + 1) % t->log_every) return;
    if (t->log_steps) {
        fprintf(stderr, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tokens/s | ETA %s\n", (long long)step + 1,
                (long long)total, t->log_loss / (double)t->log_steps, lr,
                t->log_seconds > 0 ? (double)t->log_tokens / t->log_seconds : 0.0, eta);
    }
    t->log_loss = t->log_seconds = 0.0;
    t->log_steps = t->log_tokens = 0;
}

static lc_status train_loop(trainer *t, int64_t first) {
    const lc_train_config *cfg = t->cfg;
    int64_t total = t->sched.total_steps;
    double start = lc_now_s();
    t->loop_start = start;
    lc_status st = LC_STATUS_OK;
    t->log_every = cfg->log_every ? cfg->log_every : total > 50 ? (total + 49) / 50 : 1; // about 50 lines a run
    if (t->es.stopped_at) {
        fprintf(stderr, "lora train: %s: early stopping ended this run at step %lld; its best checkpoint is "
                "checkpoint-%lld.h5; nothing to train (use another output_dir for a new run)\n", cfg->output_dir,
                (long long)t->es.stopped_at, (long long)t->es.best_step);
        return LC_STATUS_OK;
    }
    // The checkpoint is saved before its step's evaluations: a run killed
    // during them resumes here without them, so they run first (and may
    // end the run, as they would have).
    bool loss_due = t->has_valid && (first == total || (cfg->eval_every && first % cfg->eval_every == 0));
    bool gen_due = cfg->eval_generate.every && (first == total || first % cfg->eval_generate.every == 0);
    loss_due = loss_due && !t->eval_recorded;
    gen_due = gen_due && !t->gen_recorded;
    if (first > 0 && first <= total && (loss_due || gen_due)) {
        fprintf(stderr, "lora train: step %lld: its evaluation is missing from metrics.jsonl; evaluating first\n",
                (long long)first);
        if (loss_due && (st = lc_trainer_run_eval(t, first))) return st;
        if (t->eval_stopped)
            return lc_error(LC_STATUS_INTERRUPTED, "stopped by signal %d in the evaluation of step %lld; %s/"
                            "checkpoint-%lld.h5 is kept", (int)lc_stop_signal, (long long)first, cfg->output_dir,
                            (long long)first);
        if (gen_due && (st = lc_trainer_run_eval_generate(t, first))) return st;
        lc_trainer_write_plot(t);
        if (first < total && lc_early_stop_due(&t->es)) {
            lc_trainer_early_stop_report(t, first, true);
            return LC_STATUS_OK;
        }
    }
    if (first == total) {
        fprintf(stderr, "lora train: %s/checkpoint-%lld.h5 is already this run's final adapter; nothing to train\n",
                cfg->output_dir, (long long)total);
        return LC_STATUS_OK;
    }
    if (first > total)
        return lc_dist_error_shared(lc_error(LC_STATUS_INPUT, "%s/checkpoint-%lld.h5 is already %lld steps in, past "
                                             "this config's %lld steps: raise \"steps\" to train on, or use another "
                                             "output_dir for a new run", cfg->output_dir, (long long)first,
                                             (long long)first, (long long)total));
    for (int64_t step = first; step < total && !st; step++) {
        double t0 = lc_now_s();
        double loss;
        float gnorm;
        int n_tokens, skipped;
        float lr = lc_schedule_lr(&t->sched, step);
        if ((st = train_step(t, step, &loss, &gnorm, &n_tokens, &skipped))) {
            if (st == LC_STATUS_INPUT) lc_error_prefix("%s", cfg->train_data);
            break;
        }
        // elapsed: this invocation's time (the ETA); the rows carry the run's.
        double dt = lc_now_s() - t0, elapsed = lc_now_s() - start;
        double run_elapsed = (t->elapsed_before > 0 ? t->elapsed_before : 0) + elapsed;
        double tps = dt > 0 ? n_tokens / dt : 0.0;
        if (skipped) {
            t->n_skipped++;
            if (t->metrics)
                fprintf(t->metrics,
                        "{\"step\": %lld, \"skipped\": \"non-finite loss or gradient\", \"elapsed_s\": %.3f}\n",
                    (long long)step + 1, run_elapsed);
            if (t->tty) fprintf(stderr, "\r\033[K");
            fprintf(stderr, "lora train: step %lld: loss %g, gradient norm %g: batch skipped (%lld so far)\n",
                    (long long)step + 1, loss, gnorm, (long long)t->n_skipped);
        } else if (t->metrics) {
            fprintf(t->metrics,
                    "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6f, \"tokens_per_s\": %.1f, "
                    "\"elapsed_s\": %.3f}\n",
                    (long long)step + 1, loss, lr, gnorm, tps, run_elapsed);
        }
        if (t->metrics && (fflush(t->metrics) != 0 || ferror(t->metrics)) && !t->metrics_failed) {
            t->metrics_failed = 1;
            fprintf(stderr, "lora train: warning: %s/metrics.jsonl: write failed: %s; training goes on\n",
                    cfg->output_dir, strerror(errno));
        }
        char eta[32];
        format_duration(eta, sizeof eta, elapsed / (double)(step + 1 - first) * (double)(total - step - 1));
        report_progress(t, step, first, total, skipped ? NAN : loss, lr, n_tokens, dt, eta);
        int64_t done = step + 1;
        // Saved before evaluating: an evaluation that fails or is stopped
        // costs no training.
        if (cfg->save_every && done % cfg->save_every == 0 && done < total) save_or_warn(t, done);
        if (done < total) st = lc_trainer_evaluate_step(t, done, false);
        if (!st && lc_early_stop_due(&t->es) && done < total) {
            st = lc_trainer_save_step(t, done);
            if (!st) lc_trainer_early_stop_report(t, done, true);
            return st;
        }
        // Every rank stops after the same step, on the agreed value alone (a
        // signal arriving after the exchange counts at the next step).
        int sig = lc_stop_signal;
        if (!st) st = lc_dist_max_int(&sig);
        if (!st && sig && done < total) {
            st = lc_trainer_save_step(t, done);
            if (t->tty) fprintf(stderr, "\n");
            if (!st)
                st = lc_dist_error_shared(lc_error(LC_STATUS_INTERRUPTED, "stopped by signal %d after step %lld; saved "
                              "%s/checkpoint-%lld.h5; run the same command to continue", sig,
                              (long long)done, cfg->output_dir, (long long)done));
            return st;
        }
    }
    if (t->tty) fprintf(stderr, "\n");
    if (!st && (st = lc_dist_agree(lc_trainer_save_checkpoint(t, total))) && t->saved_step > 0) {
        char reason[1024];
        snprintf(reason, sizeof reason, "%s", lc_error_message());
        st = lc_error(st, "%s; %s/checkpoint-%lld.h5 (step %lld) is kept", reason, cfg->output_dir,
                      (long long)t->saved_step, (long long)t->saved_step);
    }
    if (!st) st = lc_trainer_evaluate_step(t, total, true);
    if (!st && !t->eval_stopped && t->es.patience && t->es.best_step) lc_trainer_early_stop_report(t, total, false);
    if (!st && t->eval_stopped)
        return lc_error(LC_STATUS_INTERRUPTED, "stopped by signal %d in the final evaluation; the adapter is saved to "
                        "%s/checkpoint-%lld.h5", (int)lc_stop_signal, cfg->output_dir, (long long)total);
    if (!st) {
        // A resumed run says what this invocation did, then the whole run.
        double all = lc_trainer_elapsed(t);
        char whole[96] = "";
        if (first > 0 && all >= 0)
            snprintf(whole, sizeof whole, ", %lld in all in %.1f s", (long long)total, all);
        else if (first > 0)
            snprintf(whole, sizeof whole, ", %lld in all", (long long)total);
        char range[64] = "";
        if (first > 0 && first + 1 < total)
            snprintf(range, sizeof range, " (%lld to %lld)", (long long)first + 1, (long long)total);
        else if (first > 0)
            snprintf(range, sizeof range, " (%lld)", (long long)total);
        fprintf(stderr, "lora train: %lld step%s%s in %.1f s%s; adapter saved to %s/checkpoint-%lld.h5\n",
                (long long)(total - first), total - first == 1 ? "" : "s", range, lc_now_s() - start, whole,
                cfg->output_dir, (long long)total);
    }
    if (!st && t->n_skipped)
        fprintf(stderr, "lora train: %lld of %lld batches skipped for a non-finite loss or gradient\n",
                (long long)t->n_skipped, (long long)(total - first));
    return st;
}

// 16 hex digits of the config as every rank must share it: all but where
// rank 0 writes and how many threads a rank runs.
static void config_fingerprint(const lc_train_config *cfg, char out[17]) {
    cJSON *root = cJSON_Parse(cfg->json);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "output_dir");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "threads");
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    const char *s = text ? text : cfg->json;
    lc_hash_hex(lc_hash_bytes(LC_HASH_INIT, s, strlen(s)), out);
    cJSON_free(text);
    cJSON_Delete(root);
}

// Every rank read the same base and data: their fingerprints are exchanged
// and a rank whose copy differs from rank 0's stops the job, named.
static lc_status check_ranks_agree(trainer *t) {
    typedef struct {
        char fp[4][17]; // base, training data, validation data, config
    } prints;
    int size = lc_dist_size();
    if (size == 1) return LC_STATUS_OK;
    prints mine;
    memset(&mine, 0, sizeof mine);
    memcpy(mine.fp[0], t->fingerprint, 17);
    lc_dataset_fingerprint(&t->train, mine.fp[1]);
    if (t->has_valid) lc_dataset_fingerprint(&t->valid, mine.fp[2]);
    config_fingerprint(t->cfg, mine.fp[3]);
    prints *all = calloc((size_t)size, sizeof *all);
    if (!all) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    lc_status st = lc_dist_allgather(&mine, all, sizeof mine);
    const lc_train_config *cfg = t->cfg;
    const char *names[4] = {cfg->model, cfg->train_data, cfg->valid_data[0] ? cfg->valid_data : cfg->train_data,
                            cfg->path[0] ? cfg->path : "the config"};
    const char *what[4] = {"weights", "tokenized examples", "tokenized examples", "settings other than output_dir and "
                           "threads, after --set"};
    for (int r = 1; !st && r < size; r++)
        for (int k = 0; !st && k < 4; k++)
            if (memcmp(all[r].fp[k], all[0].fp[k], 17))
                st = lc_dist_error_shared(lc_error(LC_STATUS_INPUT, "rank %d: %s differs from rank 0's (%s "
                                                   "fingerprint %s, rank 0 %s); every rank must read the same files",
                                                   r, names[k], what[k], all[r].fp[k], all[0].fp[k]));
    free(all);
    return st;
}

// Rank 0 resumed (or started) the run: the others take its adapter,
// optimizer state and data position.
static lc_status share_state(trainer *t, int64_t *first) {
    if (lc_dist_size() == 1) return LC_STATUS_OK;
    int64_t head[7] = {*first, t->it.epoch, t->it.index, t->saved_step, t->eval_recorded, t->opt.step,
                       t->gen_recorded};
    lc_status es = lc_dist_bcast(&t->es, sizeof t->es); // rebuilt from metrics.jsonl on rank 0
    if (es) return es;
    // Rank 0 alone reports and saves the time; every rank holds the same.
    if ((es = lc_dist_bcast(&t->elapsed_before, sizeof t->elapsed_before))) return es;
    lc_status st;
    if ((st = lc_dist_bcast(head, sizeof head)) ||
        (st = lc_dist_bcast(t->lora.params, sizeof(float) * t->lora.n_params)) ||
        (st = lc_dist_bcast(t->opt.m, sizeof(float) * t->opt.n)) ||
        (st = lc_dist_bcast(t->opt.v, sizeof(float) * t->opt.n)))
        return st;
    if (lc_dist_rank() != 0) {
        *first = head[0];
        lc_batcher_seek(&t->it, head[1], (int)head[2]);
        t->saved_step = head[3];
        t->eval_recorded = (int)head[4];
        t->gen_recorded = (int)head[6];
        t->opt.step = head[5];
    }
    return LC_STATUS_OK;
}

// Ranks other than 0 report only their own failure (main prints it): while
// training their stderr goes to /dev/null.
static int silence_stderr(void) {
    if (lc_dist_rank() == 0) return -1;
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) dup2(null, 2);
    if (null >= 0) close(null);
    return saved;
}

static void restore_stderr(int saved) {
    if (saved < 0) return;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

// After a resume: the best evaluation the history names must have its
// checkpoint (early stopping added to a run that kept none counts afresh).
static lc_status early_stop_check_best(trainer *t) {
    char path[4200];
    lc_status st = lc_run_dir_checkpoint_path(path, sizeof path, t->cfg->output_dir, t->es.best_step);
    if (st) return st;
    if (!lc_file_exists(path)) {
        fprintf(stderr, "lora train: note: early stopping counts from step %lld on: the best evaluation so far (step "
                "%lld) has no checkpoint\n", (long long)t->resumed_step, (long long)t->es.best_step);
        lc_early_stop_init(&t->es, t->es.patience, t->es.min_delta, t->es.higher_better);
        return LC_STATUS_OK;
    }
    if (t->run.best != t->es.best_step && lc_run_dir_set_best(&t->run, t->es.best_step))
        fprintf(stderr, "lora train: warning: %s\n", lc_error_message());
    return LC_STATUS_OK;
}

// The base, its tokenizer and the data.
static lc_status load_inputs(trainer *t, int *model_loaded) {
    const lc_train_config *cfg = t->cfg;
    lc_status st = lc_model_load_opts(&t->model, cfg->model, cfg->bf16_weights);
    if (st) return st;
    *model_loaded = 1;
    lc_train_warn_model("lora train", cfg->model, &t->model);
    lc_model_fingerprint(&t->model, t->fingerprint);
    if ((st = lc_base_load_tokenizer(&t->tok, cfg->model))) return st;
    return lc_trainer_load_data(t);
}

// The adapter, optimizer, batcher and training pass of a fresh run.
static lc_status build_run(trainer *t) {
    const lc_train_config *cfg = t->cfg;
    lc_status st;
    lc_early_stop_init(&t->es, cfg->early_stopping.patience, cfg->early_stopping.min_delta,
                       cfg->eval_generate.every > 0);
    if (cfg->eval_generate.every && (st = lc_trainer_load_generation(t))) return st;
    if ((st = lc_train_pass_init(&t->pass, &t->model, cfg->activation_checkpointing))) return st;
    lc_train_pass_set_compute(&t->pass, cfg->compute);
    if (cfg->compute == LC_COMPUTE_BF16 && lc_compute_effective(cfg->compute) != LC_COMPUTE_BF16)
        fprintf(stderr, "lora train: note: \"compute\": \"bf16\": %s\n", lc_bf16_kernel_describe());
    if ((st = lc_lora_init(&t->lora, &t->model, &cfg->lora, cfg->seed, true))) {
        if (st == LC_STATUS_INPUT && cfg->path[0]) lc_error_prefix("%s", cfg->path); // a target the family lacks
        return st;
    }
    if ((st = lc_adamw_init(&t->opt, t->lora.n_params, &cfg->adamw))) return st;
    t->sched = cfg->schedule;
    if ((st = lc_batcher_init(&t->it, &t->train, cfg->batch_size, cfg->max_seq_len, cfg->packing, true, cfg->seed)))
        return st;
    t->sched.total_steps = cfg->steps;
    if (cfg->epochs > 0) {
        // The last step may be short of grad_accum micro-batches: the bounded
        // batcher gives it empty ones rather than examples past the last epoch.
        int64_t n_batches;
        if ((st = epoch_run_batches(t, &n_batches))) return st;
        t->sched.total_steps = (n_batches + cfg->grad_accum - 1) / cfg->grad_accum;
    }
    t->batches = calloc((size_t)cfg->grad_accum, sizeof *t->batches);
    if (!t->batches) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (int a = 0; a < cfg->grad_accum; a++)
        if ((st = lc_batch_init(&t->batches[a], cfg->batch_size, cfg->max_seq_len))) return st;
    return LC_STATUS_OK;
}

lc_status lc_train_run(const lc_train_config *cfg) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.run.lock_fd = -1;
    t.cfg = cfg;
    int rank = lc_dist_rank(), size = lc_dist_size();
    int saved_stderr = silence_stderr();
    t.tty = isatty(2);
    lc_status st;
    int model_loaded = 0;
    // threads 0: the machine's cores shared among the ranks on it.
    if (cfg->threads > 0) lc_parallel_set_threads(cfg->threads);
    else if (lc_dist_local_size() > 1) lc_parallel_set_threads(lc_parallel_threads() / lc_dist_local_size());
    if (size > 1 && (int64_t)cfg->batch_size * cfg->grad_accum % size) {
        st = lc_dist_error_shared(lc_error(LC_STATUS_INPUT, "%s: batch_size %d x grad_accum %d = %lld sequences a "
                                           "step do not divide among %d ranks", cfg->path[0] ? cfg->path : "config",
                                           cfg->batch_size, cfg->grad_accum,
                                           (long long)cfg->batch_size * cfg->grad_accum, size));
        goto done;
    }

    // The folder is locked before anything else: a second run on it is
    // refused at once, not after loading the model and data. Rank 0 alone
    // writes it.
    if ((st = lc_dist_agree(rank == 0 ? lc_run_dir_open(&t.run, cfg->output_dir) : LC_STATUS_OK))) goto done;
    // Each phase ends with every rank learning whether any failed, so a
    // failure one rank meets (a file missing on one machine) or all meet (a
    // wrong path) is reported once and ends every rank at the same point.
    if ((st = lc_dist_agree(load_inputs(&t, &model_loaded)))) goto done;
    if ((st = check_ranks_agree(&t))) goto done;
    if ((st = lc_dist_agree(build_run(&t)))) goto done;

    int64_t first = 0;
    if (rank == 0) {
        st = resume(&t, &first);
        if (!st && first == 0 && cfg->init_adapter[0]) st = load_init_adapter(&t);
        if (!st) st = open_metrics(&t, first);
        if (!st && t.es.best_step) st = early_stop_check_best(&t);
    }
    if ((st = lc_dist_agree(st)) || (st = share_state(&t, &first))) goto done;
    // lora.layers: which layers, when not all (" (layers 0,3)").
    char list[LC_LORA_MAX_LAYERS * 5 + 1], layers[sizeof list + 16] = "";
    bool some = false;
    for (int l = 0; l < t.model.cfg.n_layers; l++)
        some |= !lc_lora_layer_selected(&t.lora.cfg, t.model.cfg.n_layers, l);
    lc_lora_layers_string(list, sizeof list, &t.lora.cfg);
    if (some) snprintf(layers, sizeof layers, " (layers %s)", list);
    fprintf(stderr, "lora train: %s (%s, %d layers), LoRA r %d alpha %g on %zu parameters%s, %lld steps of %d x %d\n",
            cfg->model, t.model.cfg.model_type, t.model.cfg.n_layers, cfg->lora.r, cfg->lora.alpha, t.lora.n_params,
            layers, (long long)t.sched.total_steps, cfg->batch_size, cfg->grad_accum);
    if (size > 1)
        fprintf(stderr, "lora train: %d ranks x %d threads; each takes %lld of the %lld sequences of a step\n", size,
                lc_parallel_threads(), (long long)cfg->batch_size * cfg->grad_accum / size,
                (long long)cfg->batch_size * cfg->grad_accum);
    if ((st = lc_dist_agree(first < t.sched.total_steps ? plan_memory(&t) : LC_STATUS_OK))) goto done;
    struct sigaction old_handlers[N_STOP_SIGNALS];
    install_stop_handlers(old_handlers);
    st = train_loop(&t, first);
    restore_stop_handlers(old_handlers);
done:
    if (t.metrics) fclose(t.metrics);
    if (st && st != LC_STATUS_INTERRUPTED) lc_run_dir_close_failed(&t.run);
    else lc_run_dir_close(&t.run);
    if (t.batches)
        for (int a = 0; a < cfg->grad_accum; a++) lc_batch_free(&t.batches[a]);
    free(t.batches);
    lc_batcher_free(&t.it);
    lc_adamw_free(&t.opt);
    lc_lora_free(&t.lora);
    lc_gen_eval_refs_free(t.valid_refs, t.valid.n_examples); // before the dataset it counts
    lc_dataset_free(&t.train);
    lc_dataset_free(&t.valid);
    lc_tokenizer_free(t.tok);
    lc_chat_free(t.chat);
    lc_train_pass_free(&t.pass);
    if (model_loaded) lc_model_free(&t.model);
    restore_stderr(saved_stderr);
    return st;
}
