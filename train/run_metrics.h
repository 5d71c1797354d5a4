// Reading a run's metrics.jsonl back (lora inspect): per step the training
// loss, evaluation results and elapsed time, tolerating what a live or
// killed run leaves (a half-written last line) and lines that are not rows.
#ifndef LC_RUN_METRICS_H
#define LC_RUN_METRICS_H

#include <stdint.h>

#include "common/status.h"

typedef struct lc_run_metrics_row {
    int64_t step;
    double loss, eval_loss, eval_accuracy, elapsed_s; // NaN where the file has none
} lc_run_metrics_row;

typedef struct lc_run_metrics {
    lc_run_metrics_row *rows; // [n] one per step, in file order
    int n, cap;
    int n_bad;             // lines that are not a metrics row (damage, foreign text)
    int partial;           // the last line has no newline: being written, or cut by a kill
    int64_t last_step;     // newest training row (0: none)
    int64_t early_stopped; // step early stopping ended the run at (0: it did not)
    int64_t best_step;     // best step early stopping recorded (0: none)
} lc_run_metrics;

// Reads path; a missing file gives no rows (not an error). Errors only for a
// file that cannot be read (not a regular file, over 1 GiB) or memory.
lc_status lc_run_metrics_read(const char *path, lc_run_metrics *m);
void lc_run_metrics_free(lc_run_metrics *m);
// The row of step, or NULL.
const lc_run_metrics_row *lc_run_metrics_find(const lc_run_metrics *m, int64_t step);

#endif
