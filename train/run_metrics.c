// Reading metrics.jsonl back; see run_metrics.h.
#include "train/run_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "common/file.h"

#define MAX_METRICS_BYTES ((size_t)1 << 30)
#define MAX_STEP 1e15 // beyond any real run; keeps the int64 conversion defined

void lc_run_metrics_free(lc_run_metrics *m) {
    free(m->rows);
    memset(m, 0, sizeof *m);
}

const lc_run_metrics_row *lc_run_metrics_find(const lc_run_metrics *m, int64_t step) {
    // Newest first: a step written twice (rows a resume rewrote) counts as its last.
    for (int i = m->n - 1; i >= 0; i--)
        if (m->rows[i].step == step) return &m->rows[i];
    return NULL;
}

static lc_run_metrics_row *row_for(lc_run_metrics *m, int64_t step) {
    // Rows of a step are written together, so only the newest is looked at.
    if (m->n && m->rows[m->n - 1].step == step) return &m->rows[m->n - 1];
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 256;
        lc_run_metrics_row *rows = realloc(m->rows, sizeof *rows * (size_t)cap);
        if (!rows) return NULL;
        m->rows = rows;
        m->cap = cap;
    }
    lc_run_metrics_row *r = &m->rows[m->n++];
    *r = (lc_run_metrics_row){step, NAN, NAN, NAN, NAN};
    return r;
}

static double number(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

// One line; 0 when it is not a metrics row, -1 out of memory.
static int take_line(lc_run_metrics *m, const char *line, size_t len) {
    cJSON *row = cJSON_ParseWithLength(line, len);
    double step = row ? number(row, "step") : NAN;
    int ok = cJSON_IsObject(row) && step >= 1 && step <= MAX_STEP && step == floor(step);
    if (ok) {
        lc_run_metrics_row *r = row_for(m, (int64_t)step);
        if (!r) {
            cJSON_Delete(row);
            return -1;
        }
        double v;
        if (!isnan(v = number(row, "loss"))) {
            r->loss = v;
            m->last_step = r->step;
        }
        if (!isnan(v = number(row, "elapsed_s"))) r->elapsed_s = v;
        if (!isnan(v = number(row, "eval_loss"))) r->eval_loss = v;
        if (!isnan(v = number(row, "eval_accuracy"))) r->eval_accuracy = v;
        const cJSON *es = cJSON_GetObjectItemCaseSensitive(row, "early_stopping");
        if (cJSON_IsString(es)) {
            if (strcmp(es->valuestring, "stopped") == 0) m->early_stopped = r->step;
            double best = number(row, "best_step");
            if (best >= 1 && best <= MAX_STEP) m->best_step = (int64_t)best;
        }
    }
    cJSON_Delete(row);
    return ok;
}

lc_status lc_run_metrics_read(const char *path, lc_run_metrics *m) {
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) return LC_STATUS_OK;
    // Checked before opening: a FIFO would block the open.
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return lc_error(LC_STATUS_INPUT, "%s: not a regular file", path);
    char *text;
    size_t len;
    lc_status st = lc_file_read(path, MAX_METRICS_BYTES, &text, &len);
    if (st) return st;
    for (size_t at = 0; at < len;) {
        const char *line = text + at, *nl = memchr(line, '\n', len - at);
        size_t n = nl ? (size_t)(nl - line) : len - at;
        at += n + 1;
        if (!nl) {
            m->partial = 1; // cut short: not read, even when it parses
            break;
        }
        if (n == 0) continue;
        int got = take_line(m, line, n);
        if (got < 0) {
            free(text);
            lc_run_metrics_free(m);
            return lc_error(LC_STATUS_RUNTIME, "out of memory");
        }
        if (!got) m->n_bad++;
    }
    free(text);
    return LC_STATUS_OK;
}
