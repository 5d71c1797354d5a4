// `lora inspect RUN_DIR` and the run-related part of `lora inspect
// checkpoint-N.h5`: the run's config, base, checkpoints with their losses
// (from metrics.jsonl), elapsed time and whether it is still going.
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "model/lora.h"
#include "train/checkpoint.h"
#include "train/cli.h"
#include "train/run_dir.h"
#include "train/run_metrics.h"
#include "train/train_config.h"

#define MAX_ROWS 12 // checkpoints listed for a run folder: one screen

static const char *schedule_name(lc_schedule_type t) {
    return t == LC_SCHEDULE_TYPE_LINEAR ? "linear" : t == LC_SCHEDULE_TYPE_COSINE ? "cosine" : "constant";
}

// One byte as the terminal may see it: a control character escaped.
static int escape_byte(char *out, unsigned char c, int keep_lines) {
    if ((c >= 0x20 && c != 0x7f) || (keep_lines && (c == '\n' || c == '\t'))) {
        out[0] = (char)c;
        return 1;
    }
    if (c == '\n' || c == '\t' || c == '\r') return snprintf(out, 3, "\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : 'r');
    return snprintf(out, 5, "\\x%02x", c);
}

void lc_inspect_print_text(const char *s, size_t n, int keep_lines) {
    char e[8];
    for (size_t i = 0; i < n; i++) fwrite(e, 1, (size_t)escape_byte(e, (unsigned char)s[i], keep_lines), stdout);
}

const char *lc_inspect_text(char *out, size_t cap, const char *s) {
    size_t len = 0;
    char e[8];
    for (; *s; s++) {
        int k = escape_byte(e, (unsigned char)*s, 0);
        if (len + (size_t)k + 1 > cap) break;
        memcpy(out + len, e, (size_t)k);
        len += (size_t)k;
    }
    if (cap) out[len] = '\0';
    return out;
}

static void print_text(const char *s) {
    lc_inspect_print_text(s, strlen(s), 0);
}

// A message without its leading "PATH: " (the row already names the file).
static const char *without_path(const char *msg, const char *path) {
    size_t n = strlen(path);
    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

// The base and the keys of the stored config that say what the run trained;
// with_lora for a run folder (a checkpoint's own lines already show it).
// *ended: 1 when the checkpoint is the run's last, 0 when not, -1 when that
// cannot be told (an epochs run's checkpoint from before lora.c recorded
// total_steps).
static void print_config(const char *path, const struct lc_checkpoint_info *info, int with_lora, int *ended) {
    *ended = 0;
    const char *fp = info->base_fingerprint ? info->base_fingerprint : "?";
    lc_train_config cfg;
    char what[4300];
    snprintf(what, sizeof what, "%s: config", path);
    if (!info->config_json || lc_train_config_parse(&cfg, info->config_json, what)) {
        printf("  base model     fingerprint ");
        print_text(fp);
        printf("\n  config         unreadable: ");
        print_text(info->config_json ? lc_error_message() : "none stored"); // may quote the file
        printf("\n");
        if (info->total_steps) *ended = info->step >= info->total_steps;
        return;
    }
    printf("  base model     ");
    print_text(cfg.model);
    printf(" (fingerprint ");
    print_text(fp);
    printf(")\n  data           ");
    print_text(cfg.train_data);
    if (cfg.valid_data[0]) {
        printf("; validation ");
        print_text(cfg.valid_data);
    }
    else if (cfg.valid_split > 0) printf("; validation %g%% split off", cfg.valid_split * 100);
    printf("\n");
    if (with_lora) {
        char targets[256];
        lc_lora_targets_string(targets, sizeof targets, info->lora.targets);
        printf("  LoRA           r %d, alpha %g, dropout %g%s; %s", info->lora.r, info->lora.alpha,
               info->lora.dropout, info->lora.rslora ? ", rsLoRA" : "", targets);
        char layers[LC_LORA_MAX_LAYERS * 5 + 1];
        lc_lora_layers_string(layers, sizeof layers, &info->lora);
        int some = cfg.lora.layers_last > 0; // the config says whether every layer: the file has the explicit set
        for (size_t i = 0; i < sizeof cfg.lora.layers / sizeof *cfg.lora.layers; i++) some |= cfg.lora.layers[i] != 0;
        if (some) printf("; layers %s", layers);
        printf("\n");
    }
    printf("  schedule       lr %g, %s, warmup %lld step%s", cfg.lr, schedule_name(cfg.schedule.type),
           (long long)cfg.schedule.warmup_steps, cfg.schedule.warmup_steps == 1 ? "" : "s");
    if (cfg.schedule.min_lr > 0) printf(", min_lr %g", cfg.schedule.min_lr);
    printf("\n  batch          %d x %d (batch_size x grad_accum), max_seq_len %d%s\n", cfg.batch_size, cfg.grad_accum,
           cfg.max_seq_len, cfg.packing ? ", packed" : "");
    if (cfg.epochs > 0) printf("  length         %d epoch%s\n", cfg.epochs, cfg.epochs == 1 ? "" : "s");
    else printf("  length         %lld steps\n", (long long)cfg.steps);
    int64_t steps = info->total_steps ? info->total_steps : cfg.epochs > 0 ? 0 : cfg.steps;
    // An epochs run's last position is the end of its last epoch, which only
    // the data's size tells: unknown unless the position is past it.
    *ended = steps ? info->step >= steps : info->epoch >= cfg.epochs ? 1 : -1;
    lc_train_config_free(&cfg);
}

static void print_elapsed(const struct lc_checkpoint_info *info, const char *name) {
    if (info->elapsed_s >= 0)
        printf("  elapsed        %.1f s of training to step %lld\n", info->elapsed_s, (long long)info->step);
    else
        printf("  elapsed        unknown (%s was written by an older lora.c, or resumed from one)\n", name);
}

// "  2.4567" or "       -" for a value metrics.jsonl lacks.
static void cell(char *out, size_t cap, int width, double v) {
    if (isnan(v)) snprintf(out, cap, "%*s", width, "-");
    else snprintf(out, cap, "%*.4f", width, v);
}

void lc_inspect_checkpoint_run(const char *path, const struct lc_checkpoint_info *info) {
    int ended;
    print_config(path, info, 0, &ended);
    char *copy = strdup(path), *name = copy ? strdup(path) : NULL;
    if (!copy || !name) {
        free(copy);
        printf("  metrics        not read: out of memory\n");
        return;
    }
    print_elapsed(info, basename(name));
    char metrics[4200];
    lc_run_metrics m;
    if (lc_path_join(metrics, sizeof metrics, dirname(copy), "metrics.jsonl") || lc_run_metrics_read(metrics, &m)) {
        printf("  metrics        not read: ");
        print_text(lc_error_message());
        printf("\n");
    } else if (!lc_file_exists(metrics)) {
        printf("  metrics        none beside it\n");
    } else {
        // The last training rows up to this checkpoint (a run resumed from
        // an older one rewrote those after it).
        int last[5], shown = 0;
        for (int i = m.n - 1; i >= 0 && shown < 5; i--)
            if (m.rows[i].step <= info->step && !isnan(m.rows[i].loss)) last[shown++] = i;
        printf("  last losses   ");
        for (int k = shown - 1; k >= 0; k--)
            printf(" %lld: %.4f%s", (long long)m.rows[last[k]].step, m.rows[last[k]].loss, k ? "," : "");
        if (!shown) printf(" none up to step %lld in metrics.jsonl", (long long)info->step);
        printf("\n");
        const lc_run_metrics_row *r = lc_run_metrics_find(&m, info->step);
        if (r && !isnan(r->eval_loss)) printf("  eval loss      %.4f at step %lld\n", r->eval_loss, (long long)info->step);
        if (r && !isnan(r->eval_accuracy))
            printf("  eval accuracy  %.4f at step %lld\n", r->eval_accuracy, (long long)info->step);
        lc_run_metrics_free(&m);
    }
    free(copy);
    free(name);
}

// dir/name exists, of any type (a FIFO or folder in a run file's place is
// still a run's, reported on by the reader).
static int exists_in(const char *dir, const char *name) {
    char path[4200];
    struct stat sb;
    return !lc_path_join(path, sizeof path, dir, name) && lstat(path, &sb) == 0;
}

lc_status lc_inspect_dir_kind(const char *dir, int *is_run) {
    *is_run = 1;
    int64_t *steps = NULL;
    int n = 0;
    lc_status st = lc_run_dir_checkpoints(dir, &steps, &n); // an unreadable folder fails here
    free(steps);
    if (st) return st;
    if (n > 0) return LC_STATUS_OK;
    // Run files win over a config.json kept beside them (the training config).
    if (exists_in(dir, "checkpoints.json") || exists_in(dir, "metrics.jsonl")) return LC_STATUS_OK;
    *is_run = 0;
    if (exists_in(dir, "config.json")) return LC_STATUS_OK;
    *is_run = 1; // a run that failed at once leaves only its lock
    if (exists_in(dir, "train.lock")) return LC_STATUS_OK;
    return lc_error(LC_STATUS_INPUT, "%s: not a model, adapter or run folder (no config.json, adapter_config.json, "
                    "checkpoints or metrics.jsonl)", dir);
}

// One checkpoint's row: its step, the training loss, eval loss and accuracy
// metrics.jsonl has for that step, and what it is to the run.
static void print_row(const char *dir, int64_t step, const lc_run_metrics *m, int newest, int64_t best) {
    char path[4200], loss[32], eval[32], acc[32];
    const lc_run_metrics_row *r = lc_run_metrics_find(m, step);
    cell(loss, sizeof loss, 10, r ? r->loss : NAN);
    cell(eval, sizeof eval, 10, r ? r->eval_loss : NAN);
    cell(acc, sizeof acc, 9, r ? r->eval_accuracy : NAN);
    printf("  %12lld  %s  %s  %s", (long long)step, loss, eval, acc);
    if (newest || step == best)
        printf("  %s%s%s", newest ? "newest" : "", newest && step == best ? ", " : "", step == best ? "best" : "");
    lc_checkpoint_info info;
    if (lc_run_dir_checkpoint_path(path, sizeof path, dir, step) || lc_checkpoint_read_info(path, &info)) {
        printf("  unreadable: ");
        print_text(without_path(lc_error_message(), path));
    } else {
        lc_checkpoint_info_free(&info);
    }
    printf("\n");
}

lc_status lc_inspect_run_dir(const char *dir) {
    int64_t *steps = NULL;
    int n = 0;
    lc_status st = lc_run_dir_checkpoints(dir, &steps, &n);
    if (st) return st;
    char path[4200], metrics_error[512] = "";
    lc_run_metrics m;
    // Unreadable metrics (a bad file, too big) cost the losses, not the rest.
    if (lc_path_join(path, sizeof path, dir, "metrics.jsonl") || lc_run_metrics_read(path, &m)) {
        snprintf(metrics_error, sizeof metrics_error, "%s", without_path(lc_error_message(), path));
        memset(&m, 0, sizeof m);
    }
    printf("lora.c run folder ");
    print_text(dir);
    printf("\n");
    // The newest readable checkpoint says what the run is (its config).
    lc_checkpoint_info info;
    int found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (!lc_run_dir_checkpoint_path(path, sizeof path, dir, steps[i]) && !lc_checkpoint_read_info(path, &info))
            found = i;
    long holder;
    char holder_error[512] = "";
    if (lc_run_dir_holder(dir, &holder)) snprintf(holder_error, sizeof holder_error, "%s", lc_error_message());
    int64_t best = lc_run_dir_read_best(dir);
    if (!best) best = m.best_step;
    // Named only while it is there: pruning or a hand may have removed it.
    int best_present = 0;
    for (int i = 0; i < n; i++) best_present |= best && steps[i] == best;
    int64_t newest = found >= 0 ? info.step : 0;
    int ended = 0;
    if (found >= 0) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%lld.h5", (long long)newest);
        print_config(name, &info, 1, &ended);
        print_elapsed(&info, name);
        lc_checkpoint_info_free(&info);
    } else {
        printf("  config         unknown until the first checkpoint (checkpoint-N.h5 stores it)\n");
    }
    printf("  status         ");
    if (holder_error[0]) {
        printf("unknown (");
        print_text(holder_error); // a run may be going on: nothing else can be said
        printf(")");
    } else if (holder > 0) {
        printf(m.last_step ? "running (process %ld), at step %lld" : "running (process %ld), no step logged yet",
               holder, (long long)m.last_step);
    } else if (m.early_stopped) {
        printf("ended by early stopping after step %lld", (long long)m.early_stopped);
    } else if (found >= 0 && ended > 0) {
        printf("finished");
    } else if (found >= 0 && ended < 0) {
        printf("finished or stopped at step %lld (an older lora.c did not record the run's length; the same lora "
               "train command continues it if there is more)", (long long)newest);
    } else if (found >= 0) {
        printf("stopped at step %lld (the same lora train command continues it)", (long long)newest);
    } else {
        printf(n ? "no readable checkpoint" : "no checkpoint yet");
    }
    if (m.partial) printf("; metrics.jsonl's last line is cut short");
    printf("\n");
    if (m.last_step && m.last_step != newest) { // a run going on, or killed, past its checkpoint
        const lc_run_metrics_row *r = lc_run_metrics_find(&m, m.last_step);
        printf("  last step      %lld", (long long)m.last_step);
        if (!isnan(r->loss)) printf(": loss %.4f", r->loss); // NaN: the step logged again without it (damage)
        if (!isnan(r->elapsed_s)) printf(", %.1f s in", r->elapsed_s);
        printf("\n");
    }
    if (m.n_bad)
        printf("  metrics.jsonl  %d line%s skipped (not metrics rows)\n", m.n_bad, m.n_bad == 1 ? "" : "s");
    if (metrics_error[0]) {
        printf("  metrics        not read: ");
        print_text(metrics_error);
        printf("\n");
    }
    if (best)
        printf("  best           checkpoint-%lld.h5 (early stopping%s)\n", (long long)best,
               best_present ? "" : "; no longer present");
    if (!best_present) best = 0;
    if (n == 0) {
        printf("  checkpoints    none yet\n");
    } else {
        printf("  checkpoints    %d\n  %12s  %10s  %10s  %9s\n", n, "step", "train loss", "eval loss", "eval acc");
        for (int i = 0; i < n && i < MAX_ROWS; i++) print_row(dir, steps[i], &m, i == found, best);
        if (n > MAX_ROWS) printf("  %12s  (%d older not listed)\n", "...", n - MAX_ROWS);
    }
    lc_run_metrics_free(&m);
    free(steps);
    return LC_STATUS_OK;
}
