#include "train/early_stop.h"

#include <math.h>
#include <string.h>

#include <cJSON.h>

void lc_early_stop_init(lc_early_stop *e, int patience, double min_delta, bool higher_better) {
    memset(e, 0, sizeof *e);
    e->patience = patience;
    e->min_delta = min_delta;
    e->higher_better = higher_better;
}

bool lc_early_stop_update(lc_early_stop *e, int64_t step, double value) {
    bool better = e->best_step == 0 ||
                  (e->higher_better ? value > e->best + e->min_delta : value < e->best - e->min_delta);
    if (better) {
        e->best = value;
        e->best_step = step;
        e->bad = 0;
    } else {
        e->bad++;
    }
    return better;
}

bool lc_early_stop_due(const lc_early_stop *e) { return e->patience > 0 && e->bad >= e->patience; }

const char *lc_early_stop_key(const lc_early_stop *e) { return e->higher_better ? "eval_accuracy" : "eval_loss"; }

void lc_early_stop_replay(lc_early_stop *e, const char *metrics) {
    const char *key = lc_early_stop_key(e);
    for (const char *line = metrics; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *row = cJSON_ParseWithLength(line, n);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(row, "step");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(row, "early_stopping");
        if (cJSON_IsNumber(step)) {
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
                lc_early_stop_update(e, (int64_t)step->valuedouble, v->valuedouble);
            if (cJSON_IsString(stop) && !strcmp(stop->valuestring, "stopped"))
                e->stopped_at = (int64_t)step->valuedouble;
        }
        cJSON_Delete(row);
        line = nl ? nl + 1 : NULL;
    }
}
