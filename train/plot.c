// metrics.jsonl to SVG: hand-written, no plotting library; the layout is a
// fixed 960-wide canvas with a loss panel (learning rate on its right axis)
// and, when any run logged accuracy, an accuracy panel below it.

#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/file.h"
#include "train/plot.h"

#define W 960
#define LEFT 78
#define RIGHT 90
#define TOP 56
#define LOSS_H 340
#define ACC_H 150
#define GAP 46
#define BOTTOM 58

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"};
#define N_COLORS ((int)(sizeof palette / sizeof palette[0]))

// ---- reading ----

static lc_status push(lc_plot_point **a, size_t *n, size_t *cap, int64_t step, double v) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        lc_plot_point *p = realloc(*a, c * sizeof *p);
        if (!p) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        *a = p;
        *cap = c;
    }
    (*a)[(*n)++] = (lc_plot_point){step, v};
    return LC_STATUS_OK;
}

static int number(const cJSON *row, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return 0;
    *out = v->valuedouble;
    return 1;
}

lc_status lc_plot_run_load(lc_plot_run *run, const char *run_dir) {
    memset(run, 0, sizeof *run);
    size_t len = strlen(run_dir);
    while (len > 1 && run_dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && run_dir[start - 1] != '/') start--;
    snprintf(run->name, sizeof run->name, "%.*s", (int)(len - start), run_dir + start);
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, run_dir, "metrics.jsonl");
    if (st) return st;
    if (!lc_file_exists(path)) return lc_error(LC_STATUS_INPUT, "%s: no such file (is %s a training run's output_dir?)",
                                               path, run_dir);
    char *text;
    size_t n_text;
    if ((st = lc_file_read(path, (size_t)1 << 30, &text, &n_text))) return st;
    size_t cap_loss = 0, cap_lr = 0, cap_eval = 0, cap_acc = 0, n_lr = 0;
    for (char *line = text; !st && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *row = nl ? cJSON_Parse(line) : NULL; // a last line without newline may be half written
        double step, v;
        if (row && number(row, "step", &step) && step >= 0 && step < 9e15) {
            if (number(row, "loss", &v)) {
                double lr = NAN; // one per loss point: NAN where the row has none
                number(row, "lr", &lr);
                st = push(&run->lr, &n_lr, &cap_lr, (int64_t)step, lr);
                if (!st) st = push(&run->loss, &run->n_loss, &cap_loss, (int64_t)step, v);
            }
            if (!st && number(row, "eval_loss", &v)) st = push(&run->eval, &run->n_eval, &cap_eval, (int64_t)step, v);
            if (!st && number(row, "eval_accuracy", &v))
                st = push(&run->acc, &run->n_acc, &cap_acc, (int64_t)step, v);
        }
        cJSON_Delete(row);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (st) lc_plot_run_free(run);
    return st;
}

void lc_plot_run_free(lc_plot_run *run) {
    free(run->loss);
    free(run->lr);
    free(run->eval);
    free(run->acc);
    memset(run, 0, sizeof *run);
}

// ---- the SVG text ----

typedef struct svg {
    char *buf;
    size_t len, cap;
    int failed;
} svg;

static void out(svg *s, const char *fmt, ...) {
    if (s->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->failed = 1;
            return;
        }
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t c = (s->cap ? s->cap : 4096) * 2;
        while (c < s->len + (size_t)n + 1) c *= 2;
        char *b = realloc(s->buf, c);
        if (!b) {
            s->failed = 1;
            return;
        }
        s->buf = b;
        s->cap = c;
    }
}

// Text from a file or folder name, escaped for XML.
static void out_text(svg *s, const char *t) {
    for (; *t; t++) {
        switch (*t) {
        case '&': out(s, "&amp;"); break;
        case '<': out(s, "&lt;"); break;
        case '>': out(s, "&gt;"); break;
        case '"': out(s, "&quot;"); break;
        default: {
            unsigned char c = (unsigned char)*t;
            int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
            for (int i = 1; i < len; i++)
                if (((unsigned char)t[i] & 0xC0) != 0x80) len = 0;
            if (len == 0) out(s, "?"); // not UTF-8 (a folder name can be anything): XML needs it
            else if (c >= 0x20) out(s, "%.*s", len, t);
            if (len > 1) t += len - 1;
        }
        }
    }
}

// Ticks at 1, 2 or 5 times a power of ten, about `want` of them over [lo, hi].
static double tick_step(double lo, double hi, int want) {
    double span = hi - lo;
    if (!(span > 0)) return 1.0;
    double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

// As many decimals as the tick step needs, so neighbouring labels differ.
static void fmt_tick(char *o, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < 1e9 && decimals <= 9) snprintf(o, cap, "%.*f", decimals, v);
    else snprintf(o, cap, "%.*e", decimals > 0 && fabs(v) >= 1e9 ? 6 : 2, v);
}

// Tick k * step for k in [*k0, *k1]: false when there are too many to draw
// (a range narrower than the values' precision).
static bool tick_range(double lo, double hi, double step, long long *k0, long long *k1) {
    double a = ceil(lo / step - 1e-9), b = floor(hi / step + 1e-9);
    if (!isfinite(a) || !isfinite(b) || b - a > 40 || b < a) return false;
    *k0 = (long long)a;
    *k1 = (long long)b;
    return true;
}

typedef struct axis {
    double lo, hi;  // data range
    double p0, p1;  // pixels of lo and hi
} axis;

static double map(const axis *a, double v) { return a->p0 + (v - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0); }

// Widens [lo, hi] to whole ticks (and a flat series to a visible band).
static void nice_range(double *lo, double *hi, int want) {
    if (!(*hi - *lo > 1e-9 * fmax(fabs(*lo), fabs(*hi)))) {
        double pad = fabs(*lo) > 0 ? fabs(*lo) * 0.05 : 1.0;
        *lo -= pad;
        *hi += pad;
    }
    double st = tick_step(*lo, *hi, want);
    *lo = floor(*lo / st) * st;
    *hi = ceil(*hi / st) * st;
}

static void polyline(svg *s, const axis *x, const axis *y, const lc_plot_point *p, size_t n, const char *style) {
    out(s, "<polyline fill=\"none\" %s points=\"", style);
    for (size_t i = 0; i < n; i++)
        if (isfinite(p[i].value)) out(s, "%s%.1f,%.1f", i ? " " : "", map(x, (double)p[i].step), map(y, p[i].value));
    out(s, "\"/>\n");
}

static void markers(svg *s, const axis *x, const axis *y, const lc_plot_point *p, size_t n, const char *color) {
    for (size_t i = 0; i < n; i++)
        out(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" stroke=\"white\" stroke-width=\"1\"/>\n",
            map(x, (double)p[i].step), map(y, p[i].value), color);
}

static void y_ticks(svg *s, const axis *y, double x_left, double x_right, int right_side, const char *color) {
    double st = tick_step(y->lo, y->hi, 6);
    long long k0, k1;
    if (!tick_range(y->lo, y->hi, st, &k0, &k1)) return;
    for (long long k = k0; k <= k1; k++) {
        double v = (double)k * st;
        char t[48];
        fmt_tick(t, sizeof t, v, st);
        double py = map(y, v);
        if (!right_side)
            out(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x_left, py, x_right,
                py);
        out(s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"%s\" text-anchor=\"%s\">%s</text>\n",
            right_side ? x_right + 6 : x_left - 6, py + 4, color, right_side ? "start" : "end", t);
    }
}

static void x_ticks(svg *s, const axis *x, double y_bottom) {
    double st = tick_step(x->lo, x->hi, 8);
    if (st < 1) st = 1;
    long long k0, k1;
    if (!tick_range(x->lo, x->hi, st, &k0, &k1)) return;
    for (long long k = k0; k <= k1; k++) {
        double v = (double)k * st;
        char t[48];
        fmt_tick(t, sizeof t, v, st);
        double px = map(x, v);
        out(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", px, y_bottom, px,
            y_bottom + 5);
        out(s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n", px, y_bottom + 19, t);
    }
}

// A centered moving average over `half` points each side (fewer at the
// ends): it follows the curve without the lag of an exponential average.
static void smooth(lc_plot_point *o, const lc_plot_point *p, size_t n, size_t half) {
    double sum = 0;
    size_t lo = 0, hi = 0; // the window is p[lo, hi)
    for (size_t i = 0; i < n; i++) {
        size_t want_lo = i > half ? i - half : 0, want_hi = i + half + 1 < n ? i + half + 1 : n;
        while (hi < want_hi) sum += p[hi++].value;
        while (lo < want_lo) sum -= p[lo++].value;
        o[i] = (lc_plot_point){p[i].step, sum / (double)(hi - lo)};
    }
}

static void legend_row(svg *s, double x, double y, const char *color, const char *dash, double width, double opacity,
                       int marker, const char *run, const char *label) {
    out(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\" "
        "stroke-opacity=\"%.2f\"%s%s%s/>\n", x, y, x + 26, y, color, width, opacity, dash ? " stroke-dasharray=\"" : "",
        dash ? dash : "", dash ? "\"" : "");
    if (marker) out(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x + 13, y, color);
    out(s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 32, y + 4);
    if (run) {
        out_text(s, run);
        out(s, ": ");
    }
    out(s, "%s</text>\n", label);
}

lc_status lc_plot_write(const char *out_path, const lc_plot_run *runs, int n_runs) {
    double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY, lr_hi = 0;
    int any_acc = 0, any_lr = 0;
    size_t most = 0;
    for (int r = 0; r < n_runs; r++) {
        const lc_plot_run *u = &runs[r];
        if (u->n_loss == 0)
            return lc_error(LC_STATUS_INPUT, "%s: no training step logged yet in metrics.jsonl", u->name);
        if (u->n_loss > most) most = u->n_loss;
        for (size_t i = 0; i < u->n_loss; i++) {
            x_lo = fmin(x_lo, (double)u->loss[i].step);
            x_hi = fmax(x_hi, (double)u->loss[i].step);
            y_lo = fmin(y_lo, u->loss[i].value);
            y_hi = fmax(y_hi, u->loss[i].value);
            if (isfinite(u->lr[i].value)) {
                lr_hi = fmax(lr_hi, u->lr[i].value);
                any_lr = 1;
            }
        }
        for (size_t i = 0; i < u->n_eval; i++) {
            x_hi = fmax(x_hi, (double)u->eval[i].step);
            y_lo = fmin(y_lo, u->eval[i].value);
            y_hi = fmax(y_hi, u->eval[i].value);
        }
        any_acc |= u->n_acc > 0;
    }
    x_lo = x_lo > 0 ? x_lo - 1 : 0; // step 1 starts one step in
    if (!(x_hi > x_lo)) x_hi = x_lo + 1;
    nice_range(&y_lo, &y_hi, 6);
    double lr_lo = 0;
    if (!(lr_hi > 0)) lr_hi = 1;
    nice_range(&lr_lo, &lr_hi, 6);
    double plot_w = W - LEFT - RIGHT, height = TOP + LOSS_H + (any_acc ? GAP + ACC_H : 0) + BOTTOM;
    axis x = {x_lo, x_hi, LEFT, LEFT + plot_w};
    axis y = {y_lo, y_hi, TOP + LOSS_H, TOP};
    axis ylr = {lr_lo, lr_hi, TOP + LOSS_H, TOP};
    lc_plot_point *sm = malloc((most ? most : 1) * sizeof *sm);
    if (!sm) return lc_error(LC_STATUS_RUNTIME, "out of memory");

    svg s = {0};
    out(&s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\" "
        "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n", W, height, W, height);
    out(&s, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    out(&s, "<text x=\"%d\" y=\"28\" font-size=\"17\" font-weight=\"bold\" text-anchor=\"middle\">", W / 2);
    for (int r = 0; r < n_runs; r++) {
        if (r) out(&s, " vs ");
        out_text(&s, runs[r].name);
    }
    out(&s, "</text>\n");

    // Loss panel: grid and left ticks, the learning rate's ticks on the right.
    y_ticks(&s, &y, LEFT, LEFT + plot_w, 0, "#222");
    if (any_lr) y_ticks(&s, &ylr, LEFT, LEFT + plot_w, 1, "#777");
    out(&s, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" fill=\"none\" stroke=\"#555\"/>\n", LEFT, TOP, plot_w,
        LOSS_H);
    out(&s, "<text transform=\"translate(22,%d) rotate(-90)\" font-size=\"13\" text-anchor=\"middle\">loss "
        "(cross-entropy)</text>\n", TOP + LOSS_H / 2);
    if (any_lr)
        out(&s, "<text transform=\"translate(%d,%d) rotate(90)\" font-size=\"13\" fill=\"#777\" "
            "text-anchor=\"middle\">learning rate</text>\n", W - 18, TOP + LOSS_H / 2);
    for (int r = 0; r < n_runs; r++) {
        const lc_plot_run *u = &runs[r];
        const char *c = palette[r % N_COLORS];
        char style[160];
        if (any_lr) {
            snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"1.2\" stroke-dasharray=\"2 3\" "
                     "stroke-opacity=\"0.8\" class=\"lr\"", n_runs == 1 ? "#777" : c);
            polyline(&s, &x, &ylr, u->lr, u->n_loss, style);
        }
        snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"1\" stroke-opacity=\"0.3\" class=\"loss\"", c);
        polyline(&s, &x, &y, u->loss, u->n_loss, style);
        smooth(sm, u->loss, u->n_loss, u->n_loss / 40);
        snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"2.2\" class=\"smoothed\"", c);
        polyline(&s, &x, &y, sm, u->n_loss, style);
        if (u->n_eval) {
            snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"1.8\" stroke-dasharray=\"7 4\" "
                     "class=\"eval\"", c);
            polyline(&s, &x, &y, u->eval, u->n_eval, style);
            markers(&s, &x, &y, u->eval, u->n_eval, c);
        }
    }
    double y_axis_bottom = TOP + LOSS_H;
    if (any_acc) {
        // Accuracy panel under the loss panel, on the same steps.
        double top = TOP + LOSS_H + GAP;
        axis ya = {0, 1, top + ACC_H, top};
        y_ticks(&s, &ya, LEFT, LEFT + plot_w, 0, "#222");
        out(&s, "<rect x=\"%d\" y=\"%.0f\" width=\"%.0f\" height=\"%d\" fill=\"none\" stroke=\"#555\"/>\n", LEFT, top,
            plot_w, ACC_H);
        out(&s, "<text transform=\"translate(22,%.0f) rotate(-90)\" font-size=\"13\" text-anchor=\"middle\">eval "
            "accuracy</text>\n", top + ACC_H / 2);
        for (int r = 0; r < n_runs; r++) {
            const lc_plot_run *u = &runs[r];
            if (!u->n_acc) continue;
            char style[128];
            snprintf(style, sizeof style, "stroke=\"%s\" stroke-width=\"2\" class=\"accuracy\"", palette[r % N_COLORS]);
            polyline(&s, &x, &ya, u->acc, u->n_acc, style);
            markers(&s, &x, &ya, u->acc, u->n_acc, palette[r % N_COLORS]);
        }
        x_ticks(&s, &x, top + ACC_H);
        y_axis_bottom = top + ACC_H;
    } else {
        x_ticks(&s, &x, y_axis_bottom);
    }
    out(&s, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\" text-anchor=\"middle\">step</text>\n", LEFT + plot_w / 2,
        y_axis_bottom + 42);

    // Legend in the loss panel's top right corner, on a white card.
    int rows = 0;
    for (int r = 0; r < n_runs; r++)
        rows += 2 + (runs[r].n_eval > 0) + (runs[r].n_acc > 0) + (any_lr && (n_runs > 1 || r == 0));
    double lx = LEFT + plot_w - 300, ly = TOP + 10;
    out(&s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"292\" height=\"%d\" fill=\"white\" fill-opacity=\"0.85\" "
        "stroke=\"#ccc\"/>\n", lx, ly, rows * 18 + 8);
    double row_y = ly + 15;
    for (int r = 0; r < n_runs; r++) {
        const lc_plot_run *u = &runs[r];
        const char *c = palette[r % N_COLORS], *name = n_runs > 1 ? u->name : NULL;
        legend_row(&s, lx + 8, row_y, c, NULL, 1, 0.3, 0, name, "training loss");
        row_y += 18;
        legend_row(&s, lx + 8, row_y, c, NULL, 2.2, 1, 0, name, "training loss, smoothed");
        row_y += 18;
        if (u->n_eval) {
            legend_row(&s, lx + 8, row_y, c, "7 4", 1.8, 1, 1, name, "eval loss");
            row_y += 18;
        }
        if (any_lr && (n_runs > 1 || r == 0)) {
            legend_row(&s, lx + 8, row_y, n_runs == 1 ? "#777" : c, "2 3", 1.2, 0.8, 0, name,
                       "learning rate (right axis)");
            row_y += 18;
        }
        if (u->n_acc) {
            legend_row(&s, lx + 8, row_y, c, NULL, 2, 1, 1, name, "eval accuracy (lower panel)");
            row_y += 18;
        }
    }
    out(&s, "</svg>\n");
    free(sm);
    if (s.failed) {
        free(s.buf);
        return lc_error(LC_STATUS_RUNTIME, "out of memory drawing %s", out_path);
    }
    lc_status st = lc_file_write_atomic(out_path, s.buf, s.len);
    free(s.buf);
    return st;
}

lc_status lc_plot_run_dir(const char *run_dir, const char *out_path) {
    lc_plot_run run;
    lc_status st = lc_plot_run_load(&run, run_dir);
    if (st) return st;
    st = lc_plot_write(out_path, &run, 1);
    lc_plot_run_free(&run);
    return st;
}
