// The loss plot: `lora train` writes output_dir/loss.svg with one point per
// logged step; `lora plot` draws one run, several runs, a run still being
// written and accuracy rows; the SVG renders with a real renderer
// (rsvg-convert, Debian's librsvg2-bin) to a PNG of the declared size.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"

static char *tmp;

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// Points of the first polyline whose class is `cls` (-1 when there is none).
static int polyline_points(const char *svg, const char *cls) {
    char key[64];
    snprintf(key, sizeof key, "class=\"%s\" points=\"", cls);
    const char *p = strstr(svg, key);
    if (!p) return -1;
    p += strlen(key);
    int n = 0;
    for (const char *q = p; *q && *q != '"'; q++) n += *q == ',';
    return n;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

// Renders path with rsvg-convert and checks the PNG's signature and size.
static void assert_renders(const char *svg_path, int width) {
    char png[4300], cmd[9000];
    snprintf(png, sizeof png, "%s/render.png", tmp);
    snprintf(cmd, sizeof cmd, "rsvg-convert '%s' -o '%s'", svg_path, png);
    ck_assert_msg(system(cmd) == 0, "rsvg-convert failed on %s", svg_path);
    size_t n;
    unsigned char *b = (unsigned char *)lc_test_read(png, &n);
    ck_assert_msg(n > 24 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0, "not a PNG");
    int w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19];
    ck_assert_int_eq(w, width);
    free(b);
}

START_TEST(test_train_writes_plot) {
    char cfg[8192], path[4300];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\", \"valid_split\": 0.1,\n"
                     " \"lora\": {\"r\": 4, \"alpha\": 8}, \"optimizer\": {\"lr\": 3e-3},\n"
                     " \"schedule\": {\"type\": \"cosine\", \"warmup_steps\": 2}, \"eval_every\": 4,\n"
                     " \"batch_size\": 4, \"max_seq_len\": 128, \"steps\": 13, \"seed\": 5}\n", MODEL_DIR, DATA, tmp);
    lc_test_write(tmp, "cfg.json", cfg, (size_t)n);
    snprintf(path, sizeof path, "%s/cfg.json", tmp);
    const char *args[] = {"train", "--config", path, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    snprintf(path, sizeof path, "%s/run/loss.svg", tmp);
    char *svg = lc_test_read(path, NULL);
    // 13 steps, evaluations at 4, 8, 12 and the end (13).
    ck_assert_int_eq(polyline_points(svg, "loss"), 13);
    ck_assert_int_eq(polyline_points(svg, "smoothed"), 13);
    ck_assert_int_eq(polyline_points(svg, "lr"), 13);
    ck_assert_int_eq(polyline_points(svg, "eval"), 4);
    ck_assert_int_eq(polyline_points(svg, "accuracy"), -1);
    ck_assert_msg(strstr(svg, ">run</text>") != NULL, "the title is not the run's name");
    ck_assert_msg(strstr(svg, ">step</text>") && strstr(svg, "learning rate</text>"), "axis labels missing");
    free(svg);
    assert_renders(path, 960);
}
END_TEST

// A hand-written history: two runs compared, a half-written last line, rows
// of another kind, eval accuracy.
START_TEST(test_plot_runs) {
    char dir[8800], text[16384];
    int len = 0;
    for (int s = 1; s <= 30; s++) {
        len += snprintf(text + len, sizeof text - (size_t)len,
                        "{\"step\": %d, \"loss\": %.3f, \"lr\": %g, \"grad_norm\": 1.0, \"tokens_per_s\": 10.0, "
                        "\"elapsed_s\": %d.0}\n", s, 3.0 - 0.05 * s, 1e-4 * (s < 5 ? s : 5), s);
        if (s % 10 == 0)
            len += snprintf(text + len, sizeof text - (size_t)len,
                            "{\"step\": %d, \"eval_loss\": %.3f, \"eval_ppl\": 9.0}\n{\"step\": %d, "
                            "\"eval_accuracy\": %.2f}\n", s, 2.9 - 0.04 * s, s, 0.01 * s);
    }
    len += snprintf(text + len, sizeof text - (size_t)len, "{\"step\": 31, \"skipped\": \"non-finite\"}\n");
    len += snprintf(text + len, sizeof text - (size_t)len, "{\"step\": 32, \"loss\": 1.2"); // being written
    snprintf(dir, sizeof dir, "%s/a", tmp);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/a' '%s/b<&>'", tmp, tmp);
    ck_assert_int_eq(system(cmd), 0);
    lc_test_write(dir, "metrics.jsonl", text, (size_t)len);
    snprintf(dir, sizeof dir, "%s/b<&>", tmp);
    lc_test_write(dir, "metrics.jsonl", text, 400); // a few steps in

    char a[4300], b[4300], out[4300];
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b<&>", tmp);
    snprintf(out, sizeof out, "%s/compare.svg", tmp);
    const char *one[] = {"plot", a, NULL};
    lc_test_run r = lc_test_lora(one);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    snprintf(dir, sizeof dir, "%s/a/loss.svg", tmp);
    char *svg = lc_test_read(dir, NULL);
    ck_assert_int_eq(polyline_points(svg, "loss"), 30);
    ck_assert_int_eq(polyline_points(svg, "eval"), 3);
    ck_assert_int_eq(polyline_points(svg, "accuracy"), 3);
    ck_assert_msg(strstr(svg, "eval accuracy</text>") != NULL, "no accuracy axis");
    free(svg);
    assert_renders(dir, 960);

    const char *two[] = {"plot", a, b, "--out", out, NULL};
    r = lc_test_lora(two);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    svg = lc_test_read(out, NULL);
    ck_assert_int_eq(count(svg, "class=\"loss\""), 2);
    ck_assert_msg(strstr(svg, "b&lt;&amp;&gt;: training loss") != NULL, "the second run's name is not escaped");
    ck_assert_msg(strstr(svg, "a vs b&lt;&amp;&gt;") != NULL, "title");
    free(svg);
    assert_renders(out, 960);
    // A pipe at --out stays a pipe (the file is written beside it and
    // renamed over: that would replace it, or /dev/null); one line, exit 2.
    char fifo[4200], want[4400];
    snprintf(fifo, sizeof fifo, "%s/pipe.svg", tmp);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    const char *to_fifo[] = {"plot", a, "--out", fifo, NULL};
    r = lc_test_lora(to_fifo);
    snprintf(want, sizeof want, "lora plot: %s: not a regular file (a device, pipe, socket or folder); give the path of "
             "a file to write\n", fifo);
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);
    struct stat sb;
    ck_assert(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));

    // Losses closer than their precision (1e20 apart by one ulp) draw in
    // bounded time; a folder name that is not UTF-8 still makes valid XML.
    char close[4300], bad[4300];
    snprintf(close, sizeof close, "%s/close", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/bad\xff'", close, tmp);
    ck_assert_int_eq(system(cmd), 0);
    const char *rows = "{\"step\": 1, \"loss\": 1e20}\n{\"step\": 2, \"loss\": 100000000000000032768}\n";
    lc_test_write(close, "metrics.jsonl", rows, strlen(rows));
    snprintf(bad, sizeof bad, "%s/bad\xff", tmp);
    lc_test_write(bad, "metrics.jsonl", rows, strlen(rows));
    const char *close_args[] = {"plot", close, NULL};
    r = lc_test_lora(close_args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    snprintf(dir, sizeof dir, "%s/loss.svg", close);
    assert_renders(dir, 960);
    const char *bad_args[] = {"plot", bad, NULL};
    r = lc_test_lora(bad_args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    snprintf(dir, sizeof dir, "%s/loss.svg", bad);
    assert_renders(dir, 960);

    // Refusals: several runs without --out; a folder without metrics.
    const char *no_out[] = {"plot", a, b, NULL};
    r = lc_test_lora(no_out);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "2 runs: give --out FILE.svg") && lc_test_count_lines(r.err) == 1, "%s", r.err);
    lc_test_run_free(&r);
    const char *missing[] = {"plot", tmp, NULL};
    r = lc_test_lora(missing);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "metrics.jsonl: no such file") && lc_test_count_lines(r.err) == 1, "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("plot");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_train_writes_plot);
    tcase_add_test(tc, test_plot_runs);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
