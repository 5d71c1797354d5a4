// `lora train`'s evaluations: eval loss, eval accuracy from generation,
// early stopping on either, and the loss plot.

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/file.h"
#include "train/dist.h"
#include "train/eval_generate.h"
#include "train/plot.h"
#include "train/trainer_internal.h"

// output_dir/loss.svg from metrics.jsonl so far; a plot that cannot be
// drawn costs nothing but a warning (once).
void lc_trainer_write_plot(trainer *t) {
    if (!t->metrics || t->plot_failed) return;
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, t->cfg->output_dir, "loss.svg");
    if (!st) st = lc_plot_run_dir(t->cfg->output_dir, path);
    if (!st) return;
    t->plot_failed = 1;
    if (t->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "lora train: warning: loss plot not written: %s\n", lc_error_message());
}

// An evaluation of the value early stopping watches: a new best is kept as
// a checkpoint (saved now when this step has none) and named in the index,
// which keeps it from pruning and gives it to --adapter RUN_DIR.
static lc_status early_stop_record(trainer *t, int64_t step, double value) {
    if (!t->es.patience || !lc_early_stop_update(&t->es, step, value)) return LC_STATUS_OK;
    lc_status st = lc_trainer_save_step(t, step);
    if (!st && lc_dist_rank() == 0 &&
        ((st = lc_run_dir_set_best(&t->run, step)) || (st = lc_run_dir_prune(&t->run, t->cfg->keep_checkpoints)))) {
        if (t->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "lora train: warning: %s; the best checkpoint may be pruned\n", lc_error_message());
        st = LC_STATUS_OK;
    }
    return st;
}

// The last metrics row of a run with early stopping names its best checkpoint.
void lc_trainer_early_stop_report(trainer *t, int64_t step, bool stopped) {
    const lc_early_stop *e = &t->es;
    if (t->tty) fprintf(stderr, "\r\033[K");
    if (stopped)
        fprintf(stderr, "lora train: early stopping after step %lld: %s has not improved by more than %g in %d "
                "evaluations\n", (long long)step, e->higher_better ? "eval accuracy" : "eval loss", e->min_delta,
                e->patience);
    fprintf(stderr, "lora train: best checkpoint %s/checkpoint-%lld.h5 (%s %.6g at step %lld); --adapter %s takes it\n",
            t->cfg->output_dir, (long long)e->best_step, e->higher_better ? "eval accuracy" : "eval loss", e->best,
            (long long)e->best_step, t->cfg->output_dir);
    if (t->metrics) {
        fprintf(t->metrics, "{\"step\": %lld, \"early_stopping\": \"%s\", \"best_checkpoint\": "
                "\"checkpoint-%lld.h5\", \"best_step\": %lld, \"best_%s\": %.6f}\n", (long long)step,
                stopped ? "stopped" : "finished", (long long)e->best_step, (long long)e->best_step,
                lc_early_stop_key(e), e->best);
        fflush(t->metrics);
    }
}

// eval_generate: accuracy of greedy answers on the validation data, by rank
// 0 (the others wait for its number).
lc_status lc_trainer_run_eval_generate(trainer *t, int64_t step) {
    const lc_train_config *cfg = t->cfg;
    double res[3] = {0, 0, 0}; // correct, n, seconds
    lc_status st = LC_STATUS_OK;
    if (lc_dist_rank() == 0) {
        lc_gen_eval_options o = {.metric = (lc_metric)cfg->eval_generate.metric,
                                 .max_tokens = cfg->eval_generate.max_tokens, .limit = cfg->eval_generate.limit,
                                 .batch = cfg->batch_size, .stop = t->gen_stop, .n_stop = t->n_gen_stop,
                                 .stop_blank_line = !t->valid_chat};
        lc_gen_eval_result r;
        st = lc_eval_generate(&t->model, &t->lora, t->tok, &t->valid, t->valid_refs, &o, &r);
        res[0] = r.correct;
        res[1] = r.n;
        res[2] = r.seconds;
    }
    if ((st = lc_dist_agree(st)) || (st = lc_dist_bcast(res, sizeof res))) return st;
    double acc = res[1] > 0 ? res[0] / res[1] : 0.0;
    if (t->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "lora train: step %lld: eval accuracy %.4f (%d of %d, %s) in %.1f s\n", (long long)step, acc,
            (int)res[0], (int)res[1], lc_metric_name((lc_metric)cfg->eval_generate.metric), res[2]);
    if (t->metrics) {
        fprintf(t->metrics, "{\"step\": %lld, \"eval_accuracy\": %.6f, \"eval_correct\": %d, \"eval_n\": %d}\n",
                (long long)step, acc, (int)res[0], (int)res[1]);
        fflush(t->metrics);
    }
    return t->es.higher_better ? early_stop_record(t, step, acc) : LC_STATUS_OK;
}

lc_status lc_trainer_run_eval(trainer *t, int64_t step) {
    if (!t->has_valid) return LC_STATUS_OK;
    lc_eval_result r;
    // Split over the ranks and summed. A second signal cannot abandon an
    // evaluation that other ranks would go on with.
    int size = lc_dist_size();
    double t0 = lc_now_s();
    lc_status st = lc_evaluate(&t->model, &t->lora, &t->valid, t->cfg->batch_size, t->cfg->max_seq_len,
                               t->cfg->compute, lc_dist_rank(), size, size > 1 ? NULL : lc_trainer_eval_abandoned, NULL, &r);
    if (size > 1 && !(st = lc_dist_agree(st))) {
        double sums[2] = {r.loss_sum, (double)r.n_targets};
        if ((st = lc_dist_sum_f64(sums, 2))) return st;
        r.loss = sums[0] / sums[1];
        r.n_targets = (int64_t)sums[1];
    }
    if (st == LC_STATUS_INTERRUPTED) {
        if (t->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "lora train: step %lld: evaluation stopped by a second signal\n", (long long)step);
        t->eval_stopped = 1;
        return LC_STATUS_OK; // the caller saves (if it has not) and stops
    }
    if (st == LC_STATUS_INPUT) lc_error_prefix("%s", t->cfg->valid_data[0] ? t->cfg->valid_data : t->cfg->train_data);
    if (st) return st;
    if (t->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "lora train: step %lld: eval loss %.4f, ppl %.3f over %lld tokens in %.1f s\n", (long long)step,
            r.loss, exp(r.loss), (long long)r.n_targets, lc_now_s() - t0);
    if (t->metrics) {
        fprintf(t->metrics, "{\"step\": %lld, \"eval_loss\": %.6f, \"eval_ppl\": %.6f}\n", (long long)step, r.loss,
                exp(r.loss));
        fflush(t->metrics);
    }
    return t->es.higher_better ? LC_STATUS_OK : early_stop_record(t, step, r.loss);
}

// The evaluations due after step `done` (the last step: all of them), then
// the plot, redrawn once for them.
lc_status lc_trainer_evaluate_step(trainer *t, int64_t done, bool last) {
    const lc_train_config *cfg = t->cfg;
    lc_status st = LC_STATUS_OK;
    bool loss = last || (cfg->eval_every && done % cfg->eval_every == 0);
    bool gen = cfg->eval_generate.every && (last || done % cfg->eval_generate.every == 0);
    if (loss) st = lc_trainer_run_eval(t, done);
    if (!st && !t->eval_stopped && gen) st = lc_trainer_run_eval_generate(t, done);
    if (!st && (loss || gen)) lc_trainer_write_plot(t);
    return st;
}

// eval_generate: the validation examples' references and the ids that end
// an answer.
lc_status lc_trainer_load_generation(trainer *t) {
    const lc_train_config *cfg = t->cfg;
    const char *path = cfg->valid_data[0] ? cfg->valid_data : cfg->train_data;
    lc_status st = lc_gen_eval_refs_load(path, &t->valid, &t->valid_refs, &t->valid_chat);
    if (st) return st;
    t->n_gen_stop = lc_gen_eval_stop_ids(&t->model, t->tok, t->valid_chat ? t->chat : NULL, t->gen_stop,
                                         (int)(sizeof t->gen_stop / sizeof *t->gen_stop));
    return LC_STATUS_OK;
}
