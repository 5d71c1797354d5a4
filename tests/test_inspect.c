// Issue 21.7 and 21.10: the training time carried across resumes (metrics,
// the end line, checkpoints old and new) and `lora inspect` of a run folder
// and of a checkpoint in one, on short runs of stories260K this test trains;
// odd run folders (a run going on, cut-short metrics, garbage files).
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"

static char *tmp;
static char cfg_path[4200];

static void setup(void) {
    tmp = lc_test_tmpdir();
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\", \"valid_split\": 0.2,\n"
                     " \"lora\": {\"r\": 2, \"alpha\": 4}, \"optimizer\": {\"lr\": 3e-3}, \"packing\": true,\n"
                     " \"schedule\": {\"type\": \"linear\", \"warmup_steps\": 2},\n"
                     " \"batch_size\": 2, \"max_seq_len\": 128, \"steps\": 3, \"seed\": 1,\n"
                     " \"save_every\": 2, \"eval_every\": 2}\n",
                     MODEL_DIR, DATA, tmp);
    lc_test_write(tmp, "cfg.json", text, (size_t)n);
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.json", tmp);
}

static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// `lora train --config cfg.json [--set steps=N]`; its stderr's last line (the caller frees it).
static char *train(int steps) {
    char set[32];
    snprintf(set, sizeof set, "steps=%d", steps);
    const char *args[] = {"train", "--config", cfg_path, "--set", set, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    size_t len = strlen(r.err);
    while (len && r.err[len - 1] == '\n') r.err[--len] = '\0';
    char *last = strrchr(r.err, '\n');
    char *line = strdup(last ? last + 1 : r.err);
    lc_test_run_free(&r);
    return line;
}

static char *inspect(const char *path) {
    const char *args[] = {"inspect", path, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char *out = r.out;
    r.out = NULL;
    lc_test_run_free(&r);
    return out;
}

// out holds `line` as one whole line.
static void assert_line(const char *out, const char *line) {
    size_t n = strlen(line);
    for (const char *p = out; (p = strstr(p, line)); p++)
        if ((p == out || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return;
    ck_abort_msg("no line \"%s\" in:\n%s", line, out);
}

static void checkpoint_path(char *out, size_t cap, int step) {
    snprintf(out, cap, "%s/run/checkpoint-%d.h5", tmp, step);
}

static lc_checkpoint_info read_info(int step) {
    char path[4300];
    checkpoint_path(path, sizeof path, step);
    lc_checkpoint_info info;
    ck_assert_msg(lc_checkpoint_read_info(path, &info) == 0, "%s", lc_error_message());
    return info;
}

// metrics.jsonl's value of `key` in the row of `step` that has it (NaN: none).
static double metric(int step, const char *key) {
    char path[4300], want[64];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *text = lc_test_read(path, NULL);
    char pattern[64];
    snprintf(want, sizeof want, "{\"step\": %d, ", step);
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    double v = NAN;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *k;
        if (strncmp(line, want, strlen(want)) == 0 && (k = strstr(line, pattern))) v = strtod(k + strlen(pattern), NULL);
    }
    free(text);
    return v;
}

START_TEST(test_time_carries_across_a_resume) {
    char *line = train(3);
    double t1, t2, all;
    char want[4600];
    ck_assert_msg(sscanf(line, "lora train: 3 steps in %lf s;", &t1) == 1, "%s", line);
    snprintf(want, sizeof want, "lora train: 3 steps in %.1f s; adapter saved to %s/run/checkpoint-3.h5", t1, tmp);
    ck_assert_str_eq(line, want);
    free(line);
    lc_checkpoint_info c3 = read_info(3);
    ck_assert_msg(c3.elapsed_s > 0 && c3.elapsed_s >= metric(3, "elapsed_s") - 1e-3, "%g", c3.elapsed_s);

    line = train(5);
    ck_assert_msg(sscanf(line, "lora train: 2 steps (4 to 5) in %lf s, 5 in all in %lf s;", &t2, &all) == 2, "%s",
                  line);
    snprintf(want, sizeof want, "lora train: 2 steps (4 to 5) in %.1f s, 5 in all in %.1f s; adapter saved to "
             "%s/run/checkpoint-5.h5", t2, all, tmp);
    ck_assert_str_eq(line, want);
    free(line);
    // The whole run's time goes on from the checkpoint's; this invocation's alone is its own.
    ck_assert_msg(all + 0.05 >= c3.elapsed_s + t2 - 0.1, "in all %g, before %g, now %g", all, c3.elapsed_s, t2);
    ck_assert_msg(metric(4, "elapsed_s") >= metric(3, "elapsed_s"), "elapsed_s restarted: %g after %g",
                  metric(4, "elapsed_s"), metric(3, "elapsed_s"));
    lc_checkpoint_info c5 = read_info(5);
    ck_assert_msg(c5.elapsed_s >= metric(5, "elapsed_s") - 1e-3 && c5.elapsed_s > c3.elapsed_s, "%g", c5.elapsed_s);

    char dir[4300], row[256];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    char *out = inspect(dir);
    snprintf(want, sizeof want, "lora.c run folder %s", dir);
    assert_line(out, want);
    snprintf(want, sizeof want, "  base model     %s (fingerprint %s)", MODEL_DIR, c5.base_fingerprint);
    assert_line(out, want);
    snprintf(want, sizeof want, "  data           %s; validation 20%% split off", DATA);
    assert_line(out, want);
    assert_line(out, "  schedule       lr 0.003, linear, warmup 2 steps");
    assert_line(out, "  batch          2 x 1 (batch_size x grad_accum), max_seq_len 128, packed");
    assert_line(out, "  length         5 steps");
    snprintf(want, sizeof want, "  elapsed        %.1f s of training to step 5", c5.elapsed_s);
    assert_line(out, want);
    assert_line(out, "  status         finished");
    // Checkpoints 3 (the first run's last), 4 and 5: keep_checkpoints 3 pruned 2.
    const int steps[] = {5, 4, 3};
    for (int i = 0; i < 3; i++) {
        snprintf(row, sizeof row, "  %12d  %10.4f  %10.4f  %9s%s", steps[i], metric(steps[i], "loss"),
                 metric(steps[i], "eval_loss"), "-", i == 0 ? "  newest" : "");
        assert_line(out, row);
    }
    free(out);

    // Early stopping's best checkpoint, as the run index names it.
    lc_run_dir rd;
    ck_assert_int_eq(lc_run_dir_open(&rd, dir), 0);
    ck_assert_int_eq(lc_run_dir_set_best(&rd, 4), 0);
    lc_run_dir_close(&rd);
    out = inspect(dir);
    assert_line(out, "  best           checkpoint-4.h5 (early stopping)");
    snprintf(row, sizeof row, "  %12d  %10.4f  %10.4f  %9s  best", 4, metric(4, "loss"), metric(4, "eval_loss"), "-");
    assert_line(out, row);
    free(out);

    // A checkpoint: the run's settings as they were when it was written.
    char path[4300];
    checkpoint_path(path, sizeof path, 3);
    out = inspect(path);
    snprintf(want, sizeof want, "  base model     %s (fingerprint %s)", MODEL_DIR, c3.base_fingerprint);
    assert_line(out, want);
    assert_line(out, "  length         3 steps");
    snprintf(want, sizeof want, "  elapsed        %.1f s of training to step 3", c3.elapsed_s);
    assert_line(out, want);
    snprintf(want, sizeof want, "  last losses    1: %.4f, 2: %.4f, 3: %.4f", metric(1, "loss"), metric(2, "loss"),
             metric(3, "loss"));
    assert_line(out, want);
    snprintf(want, sizeof want, "  eval loss      %.4f at step 3", metric(3, "eval_loss"));
    assert_line(out, want);
    free(out);
    lc_checkpoint_info_free(&c3);
    lc_checkpoint_info_free(&c5);
}
END_TEST

// checkpoint-<step>.h5 written again with config (NULL: its own) and without
// elapsed_s or total_steps, as lora.c wrote it before it recorded them.
static void rewrite(int64_t step, const char *config) {
    char path[4300];
    checkpoint_path(path, sizeof path, (int)step);
    lc_checkpoint_info info = read_info((int)step);
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), 0);
    lc_lora l;
    lc_adamw o;
    lc_adamw_config oc = {0.9f, 0.999f, 1e-8f, 0.0f};
    ck_assert_int_eq(lc_lora_init(&l, &m, &info.lora, 0, false), 0);
    ck_assert_int_eq(lc_adamw_init(&o, l.n_params, &oc), 0);
    ck_assert_int_eq(lc_checkpoint_load(path, &m, &l, &o), 0);
    lc_checkpoint_meta meta = {info.step, info.epoch,          info.data_index, info.rng_state,
                               config ? config : info.config_json, info.base_fingerprint, -1, 0};
    ck_assert_msg(lc_checkpoint_save(path, &m, &l, &o, &meta) == 0, "%s", lc_error_message());
    lc_adamw_free(&o);
    lc_lora_free(&l);
    lc_model_free(&m);
    lc_checkpoint_info_free(&info);
}

START_TEST(test_checkpoint_without_time_resumes) {
    free(train(3));
    rewrite(3, NULL);
    lc_checkpoint_info c3 = read_info(3);
    ck_assert(c3.elapsed_s < 0);
    lc_checkpoint_info_free(&c3);
    char set[32] = "steps=4";
    const char *args[] = {"train", "--config", cfg_path, "--set", set, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char want[4600];
    snprintf(want, sizeof want, "lora train: note: %s/run/checkpoint-3.h5 does not record the training time before it "
             "(an older lora.c wrote it); elapsed_s in metrics.jsonl counts from this resume", tmp);
    assert_line(r.err, want);
    double t;
    const char *end = strstr(r.err, "lora train: 1 step (4) in ");
    ck_assert_msg(end && sscanf(end, "lora train: 1 step (4) in %lf s", &t) == 1, "%s", r.err);
    snprintf(want, sizeof want, "lora train: 1 step (4) in %.1f s, 4 in all; adapter saved to %s/run/checkpoint-4.h5",
             t, tmp);
    assert_line(r.err, want);
    lc_test_run_free(&r);
    // Unknown stays unknown: the new checkpoint does not pass this run's time off as the whole.
    char path[4300];
    checkpoint_path(path, sizeof path, 4);
    char *out = inspect(path);
    assert_line(out, "  elapsed        unknown (checkpoint-4.h5 was written by an older lora.c, or resumed from one)");
    free(out);
}
END_TEST

// An epochs run's last checkpoint reads as finished (its checkpoint records
// the counted steps); the best checkpoint named only while present; a
// config.json kept beside a run; metrics.jsonl that cannot be read; text
// from the checkpoint escaped.
START_TEST(test_epochs_run_finished) {
    const char *args[] = {"train", "--config", cfg_path, "--set", "steps=", "--set", "epochs=1", "--set",
                          "batch_size=8", "--set", "eval_every=0", NULL}; // 3 steps, no evaluations: quick
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    char dir[4300], path[4400];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    lc_test_write(dir, "config.json", "{\"lr\": 1}", 10); // the user's training config, not a model's
    lc_run_dir rd;
    ck_assert_int_eq(lc_run_dir_open(&rd, dir), 0);
    ck_assert_int_eq(lc_run_dir_set_best(&rd, 1), 0); // pruned long ago, say
    int64_t last = rd.entries[rd.n - 1].step;
    lc_run_dir_close(&rd);
    char *out = inspect(dir);
    assert_line(out, "  length         1 epoch");
    assert_line(out, "  status         finished");
    assert_line(out, "  best           checkpoint-1.h5 (early stopping; no longer present)");
    ck_assert_msg(!strstr(out, "best\n"), "%s", out);
    free(out);
    // A FIFO must not hang the reader; the rest still shows.
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    out = inspect(dir);
    assert_line(out, "  metrics        not read: not a regular file");
    assert_line(out, "  status         finished");
    free(out);
    // The stored config's strings, decoded, carry control characters.
    lc_checkpoint_info info = read_info((int)last);
    char *config = malloc(strlen(info.config_json) + 64), *at = strstr(info.config_json, MODEL_DIR);
    ck_assert_ptr_nonnull(at);
    at += strlen(MODEL_DIR);
    sprintf(config, "%.*s\\u001b[2J\\n%s", (int)(at - info.config_json), info.config_json, at);
    rewrite(last, config);
    free(config);
    out = inspect(dir);
    char want[4400];
    snprintf(want, sizeof want, "  base model     %s\\x1b[2J\\n (fingerprint %s)", MODEL_DIR, info.base_fingerprint);
    assert_line(out, want);
    free(out);
    lc_checkpoint_info_free(&info);
}
END_TEST

START_TEST(test_inspect_odd_run_folders) {
    char dir[4300], want[4600];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    lc_test_write(dir, "train.lock", "", 0);
    // A run that holds its lock (this process, for the test), a line that is
    // not a row, a last line cut short, a garbage checkpoint and index.
    const char *metrics = "{\"step\": 1, \"loss\": 2.5, \"lr\": 0.001, \"elapsed_s\": 0.25}\nnot json\n"
                          "{\"step\": 2, \"loss\": 2.4";
    lc_test_write(dir, "metrics.jsonl", metrics, strlen(metrics));
    lc_test_write(dir, "checkpoint-9.h5", "garbage\n", 8);
    lc_test_write(dir, "checkpoints.json", "{\"checkpoints\": [", 17);
    char lock[4400];
    snprintf(lock, sizeof lock, "%s/train.lock", dir);
    int fd = open(lock, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    ck_assert_int_eq(fcntl(fd, F_SETLK, &lk), 0);
    char *out = inspect(dir);
    snprintf(want, sizeof want, "  status         running (process %ld), at step 1; metrics.jsonl's last line is cut "
             "short", (long)getpid());
    assert_line(out, want);
    assert_line(out, "  config         unknown until the first checkpoint (checkpoint-N.h5 stores it)");
    assert_line(out, "  last step      1: loss 2.5000, 0.2 s in");
    assert_line(out, "  metrics.jsonl  1 line skipped (not metrics rows)");
    ck_assert_msg(strstr(out, "\n             9           -           -          -  unreadable: not a lora.c "
                              "checkpoint: ") != NULL, "%s", out);
    free(out);
    close(fd); // the run ended
    out = inspect(dir);
    assert_line(out, "  status         no readable checkpoint; metrics.jsonl's last line is cut short");
    free(out);
    // A folder with only the lock a run that failed at once could leave: still a run.
    snprintf(dir, sizeof dir, "%s/empty", tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    lc_test_write(dir, "train.lock", "", 0);
    out = inspect(dir);
    assert_line(out, "  status         no checkpoint yet");
    assert_line(out, "  checkpoints    none yet");
    free(out);
    // A FIFO for the lock: not opened blocking, and nothing said of the run.
    snprintf(lock, sizeof lock, "%s/train.lock", dir);
    ck_assert_int_eq(unlink(lock), 0);
    ck_assert_int_eq(mkfifo(lock, 0644), 0);
    out = inspect(dir);
    assert_line(out, "  status         unknown (train.lock is not a regular file)");
    free(out);
    // Neither a model, an adapter nor a run.
    snprintf(dir, sizeof dir, "%s/nothing", tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const char *args[] = {"inspect", dir, NULL};
    lc_test_run r = lc_test_lora(args);
    snprintf(want, sizeof want, "%s: not a model, adapter or run folder (no config.json, adapter_config.json, "
             "checkpoints or metrics.jsonl)", dir);
    ck_assert_msg(r.status != 0 && strstr(r.err, want), "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("inspect");
    TCase *tc = tcase_create("run");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_time_carries_across_a_resume);
    tcase_add_test(tc, test_checkpoint_without_time_resumes);
    tcase_add_test(tc, test_epochs_run_finished);
    tcase_add_test(tc, test_inspect_odd_run_folders);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
