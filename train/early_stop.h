// Early stopping: the best evaluation so far and how many evaluations since
// have not improved on it. Its state is a function of the run's evaluation
// history, so a resumed run rebuilds it from metrics.jsonl.
#ifndef LC_EARLY_STOP_H
#define LC_EARLY_STOP_H

#include <stdbool.h>
#include <stdint.h>


typedef struct lc_early_stop {
    int patience;         // evaluations without improvement that stop the run
    double min_delta;     // an improvement must exceed it
    bool higher_better;   // accuracy; else loss
    double best;
    int64_t best_step;    // 0: no evaluation yet
    int bad;              // evaluations since the best
    int64_t stopped_at;   // the step the run stopped at (0: not stopped)
} lc_early_stop;

void lc_early_stop_init(lc_early_stop *e, int patience, double min_delta, bool higher_better);
// Records an evaluation; true when it is the new best.
bool lc_early_stop_update(lc_early_stop *e, int64_t step, double value);
// patience evaluations in a row without improvement.
bool lc_early_stop_due(const lc_early_stop *e);
// The metrics row key of the value watched: "eval_accuracy" or "eval_loss".
const char *lc_early_stop_key(const lc_early_stop *e);
// Replays the evaluations (and an early stop) recorded in `metrics`, the
// rows of metrics.jsonl a resumed run keeps. Rows that do not parse are
// passed over.
void lc_early_stop_replay(lc_early_stop *e, const char *metrics);

#endif
