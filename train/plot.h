// Loss plots: a run's metrics.jsonl (or several runs') drawn as a plain SVG
// a browser opens: training loss per step (raw and smoothed), eval loss,
// eval accuracy when logged, and the learning rate on a second axis.
#ifndef LC_PLOT_H
#define LC_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lc_plot_point {
    int64_t step;
    double value;
} lc_plot_point;

// What one run logged, in file order.
typedef struct lc_plot_run {
    char name[256];     // the run folder's name, for the title and legend
    lc_plot_point *loss; // [n_loss] training loss of each step
    lc_plot_point *lr;   // [n_loss] its learning rate
    lc_plot_point *eval; // [n_eval] eval loss
    lc_plot_point *acc;  // [n_acc] eval accuracy (0..1)
    size_t n_loss, n_eval, n_acc;
} lc_plot_run;

// Reads run_dir/metrics.jsonl. Rows it does not know and a last line still
// being written are skipped; rows of a resumed run's rewritten steps are
// kept as the file holds them (it keeps only the newest).
lc_status lc_plot_run_load(lc_plot_run *run, const char *run_dir);
void lc_plot_run_free(lc_plot_run *run);

// Draws the runs into out_path (written whole under a temporary name, then
// renamed, so a browser never sees half a file). A run without any step is
// an error naming it.
lc_status lc_plot_write(const char *out_path, const lc_plot_run *runs, int n_runs);

// lc_plot_run_load of run_dir then lc_plot_write to out_path.
lc_status lc_plot_run_dir(const char *run_dir, const char *out_path);

#endif
