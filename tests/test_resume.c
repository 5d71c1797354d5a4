// Resume: a run killed with SIGKILL at several points (or stopped by SIGINT,
// SIGHUP or SIGPIPE) and restarted ends with the same adapter bytes as an
// uninterrupted run; damaged checkpoints are skipped with a warning; another
// base is refused; a parent that ignores SIGCHLD does not hang a resume.
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint_compare.h"
#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"
#define STEPS 24

static char *tmp;
static char *run_log(void);
static char cfg_path[4200];

static void setup(void) {
    tmp = lc_test_tmpdir();
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\",\n"
                     " \"lora\": {\"r\": 4, \"alpha\": 8, \"dropout\": 0.1}, \"optimizer\": {\"lr\": 2e-3},\n"
                     " \"schedule\": {\"type\": \"cosine\", \"warmup_steps\": 3}, \"packing\": true,\n"
                     " \"batch_size\": 2, \"grad_accum\": 2, \"max_seq_len\": 128, \"steps\": %d, \"seed\": 3,\n"
                     " \"save_every\": 2, \"keep_checkpoints\": 2}\n",
                     MODEL_DIR, DATA, tmp, STEPS);
    lc_test_write(tmp, "cfg.json", text, (size_t)n);
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.json", tmp);
}

static void teardown(void) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
    free(tmp);
}

// Starts `lora train --config cfg_path` with stderr to tmp/err.txt; with
// ignore_sigchld, as a parent that ignores SIGCHLD would start it (an
// ignored signal stays ignored across exec).
static pid_t start_training_as(bool ignore_sigchld) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        if (ignore_sigchld) signal(SIGCHLD, SIG_IGN);
        char err[4300];
        snprintf(err, sizeof err, "%s/err.txt", tmp);
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execl(LC_LORA_BIN, LC_LORA_BIN, "train", "--config", cfg_path, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t start_training(void) { return start_training_as(false); }

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Waits until run/checkpoint-<step>.h5 exists (or the process ends).
static void wait_for_checkpoint(pid_t pid, int step) {
    char path[4300];
    snprintf(path, sizeof path, "%s/run/checkpoint-%d.h5", tmp, step);
    for (int i = 0; i < 20000 && !file_exists(path); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) ck_abort_msg("training ended before checkpoint %d", step);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(file_exists(path), "checkpoint %d never appeared", step);
}

static int finish(pid_t pid) {
    int wst;
    ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
    return WIFEXITED(wst) ? WEXITSTATUS(wst) : -WTERMSIG(wst);
}

static void final_path(char *out, size_t cap) { snprintf(out, cap, "%s/run/checkpoint-%d.h5", tmp, STEPS); }

static void clear_run(void) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/run'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

// An uninterrupted run's final checkpoint, moved to tmp/ref.h5; its path
// (the caller frees it).
static char *reference_adapter(void) {
    ck_assert_int_eq(finish(start_training()), 0);
    char from[4300], to[4300];
    final_path(from, sizeof from);
    snprintf(to, sizeof to, "%s/ref.h5", tmp);
    ck_assert_int_eq(rename(from, to), 0);
    clear_run();
    return strdup(to);
}

// The run's final checkpoint holds the reference's training state (its
// elapsed time differs: see checkpoint_compare.h).
static void assert_final_adapter(const char *ref) {
    char path[4300];
    final_path(path, sizeof path);
    lc_test_assert_same_checkpoint(path, ref, MODEL_DIR, "resumed vs uninterrupted run");
}

START_TEST(test_sigkill_at_several_points) {
    char *ref = reference_adapter();
    // Killed right after checkpoints 2, 10 and 16 appear (each kill lands
    // somewhere in the following steps or saves), then run to the end.
    const int kill_after[] = {2, 10, 16};
    for (int i = 0; i < 3; i++) {
        pid_t pid = start_training();
        wait_for_checkpoint(pid, kill_after[i]);
        kill(pid, SIGKILL);
        ck_assert_int_eq(finish(pid), -SIGKILL);
    }
    ck_assert_int_eq(finish(start_training()), 0);
    assert_final_adapter(ref);
    char err[4300];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    char *log = lc_test_read(err, NULL);
    ck_assert_msg(strstr(log, "resuming from") != NULL, "the last run did not resume: %s", log);
    free(log);
    free(ref);
}
END_TEST

// A run stopped by sig once checkpoint `after` exists: it finishes its step,
// saves and exits 130, naming the signal.
static void stop_with(int sig, int after) {
    pid_t pid = start_training();
    wait_for_checkpoint(pid, after);
    kill(pid, sig);
    ck_assert_int_eq(finish(pid), 130);
    char err[4300], want[64];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(want, sizeof want, "stopped by signal %d after step", sig);
    char *log = lc_test_read(err, NULL);
    ck_assert_msg(strstr(log, want) != NULL, "%s", log);
    free(log);
}

// SIGINT, SIGHUP (a closed terminal or ssh session) and SIGPIPE (a reader of
// its output that went away) each stop a run the same way; resumed after
// each, the run ends with the uninterrupted run's bytes.
START_TEST(test_stop_signals_save_and_exit_130) {
    char *ref = reference_adapter();
    const int sigs[] = {SIGINT, SIGHUP, SIGPIPE};
    for (int i = 0; i < 3; i++) stop_with(sigs[i], 4 + 4 * i);
    ck_assert_int_eq(finish(start_training()), 0);
    assert_final_adapter(ref);
    free(ref);
}
END_TEST

// A real broken pipe: stderr goes to a pipe whose reader closes it after
// step 3. The next write raises SIGPIPE, the run saves and exits 130 (its
// last message, written to the same dead pipe, must not kill it with
// SIGPIPE, 141), and a resume ends with the uninterrupted run's bytes.
START_TEST(test_closed_pipe_reader_saves_and_exits_130) {
    char *ref = reference_adapter();
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execl(LC_LORA_BIN, LC_LORA_BIN, "train", "--config", cfg_path, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char seen[65536];
    size_t n = 0;
    while (n + 1 < sizeof seen) {
        ssize_t got = read(fds[0], seen + n, sizeof seen - 1 - n);
        if (got <= 0) break;
        n += (size_t)got;
        seen[n] = 0;
        if (strstr(seen, "step 3/")) break;
    }
    seen[n] = 0;
    ck_assert_msg(strstr(seen, "step 3/") != NULL, "%s", seen);
    close(fds[0]);
    ck_assert_int_eq(finish(pid), 130);
    ck_assert_int_eq(finish(start_training()), 0);
    assert_final_adapter(ref);
    char *log = run_log();
    ck_assert_msg(strstr(log, "resuming from") != NULL, "%s", log);
    free(log);
    free(ref);
}
END_TEST

// Started by a parent that ignores SIGCHLD, a resumed run still reads its
// checkpoint (in a child process) instead of waiting forever for it.
START_TEST(test_resume_with_sigchld_ignored) {
    char *ref = reference_adapter();
    stop_with(SIGINT, 6);
    pid_t pid = start_training_as(true);
    int wst = 0;
    pid_t done = 0;
    for (int i = 0; i < 600 && done == 0; i++) { // 60 s
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        done = waitpid(pid, &wst, WNOHANG);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_abort_msg("a resumed run started with SIGCHLD ignored did not finish in 60 s");
    }
    ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_final_adapter(ref);
    free(ref);
}
END_TEST

START_TEST(test_damaged_checkpoint_skipped) {
    char *ref = reference_adapter();
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 8);
    kill(pid, SIGKILL);
    finish(pid);
    // A newer checkpoint that is cut short (as a crash or full disk could leave
    // it without our rename) and a temporary file must both be passed over.
    char src[4300], *half;
    size_t n;
    snprintf(src, sizeof src, "%s/run/checkpoint-8.h5", tmp);
    half = lc_test_read(src, &n);
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    lc_test_write(dir, "checkpoint-20.h5", half, n / 2);
    lc_test_write(dir, "checkpoint-22.h5.tmp", half, n);
    free(half);
    ck_assert_int_eq(finish(start_training()), 0);
    char err[4300];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    char *log = lc_test_read(err, NULL);
    ck_assert_msg(strstr(log, "warning: skipping") && strstr(log, "checkpoint-20.h5"), "%s", log);
    free(log);
    assert_final_adapter(ref);
    free(ref);
}
END_TEST

START_TEST(test_other_base_refused) {
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 2);
    kill(pid, SIGKILL);
    finish(pid);
    // The same folder resumed on a base whose weights differ.
    char *model = lc_test_tmpdir();
    lc_test_copy(MODEL_DIR "/config.json", model, "config.json");
    lc_test_copy(MODEL_DIR "/tokenizer.json", model, "tokenizer.json");
    size_t n;
    char *w = lc_test_read(MODEL_DIR "/model.safetensors", &n);
    w[n - 1] ^= 0x40;
    w[n / 2] ^= 0x40;
    lc_test_write(model, "model.safetensors", w, n);
    free(w);
    const char *args[] = {"train", "--config", cfg_path, "--set", NULL, NULL};
    char set[4300];
    snprintf(set, sizeof set, "model=%s", model);
    args[4] = set;
    lc_test_run r = lc_test_lora(args);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "different base model") != NULL, "%s", r.err);
    lc_test_run_free(&r);
    lc_test_rmdir(model);
    free(model);
}
END_TEST

// Replaces `from` (which must occur) by `to` in the run's config file.
static void edit_config(const char *from, const char *to) {
    char *text = lc_test_read(cfg_path, NULL);
    char *at = strstr(text, from);
    ck_assert_msg(at != NULL, "config lacks %s", from);
    char out[8192];
    int n = snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    lc_test_write(tmp, "cfg.json", out, (size_t)n);
    free(text);
}

static char *run_log(void) {
    char err[4300];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    return lc_test_read(err, NULL);
}

// Issue 20.1: with keep_checkpoints 1, a newer-numbered but damaged
// checkpoint in the folder must not make pruning delete the good ones: the
// checkpoint a stopped run names exists and the next run resumes from it;
// `--adapter RUN_DIR` passes over the damaged file as resume does.
START_TEST(test_damaged_newer_checkpoint_never_displaces_good_ones) {
    edit_config("\"keep_checkpoints\": 2", "\"keep_checkpoints\": 1");
    char *ref = reference_adapter();
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 6);
    kill(pid, SIGKILL);
    finish(pid);
    char dir[4300], good[4400];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    snprintf(good, sizeof good, "%s/checkpoint-6.h5", dir);
    size_t n;
    char *bytes = lc_test_read(good, &n);
    lc_test_write(dir, "checkpoint-30.h5", bytes, 1000); // newer number, cut short
    free(bytes);

    stop_with(SIGINT, 10);
    char *log = run_log();
    const char *saved = strstr(log, "saved ");
    ck_assert_msg(saved != NULL, "%s", log);
    char named[4300];
    ck_assert_int_eq(sscanf(saved, "saved %4299[^;]", named), 1);
    ck_assert_msg(access(named, R_OK) == 0, "the run said it saved %s, which is gone", named);
    free(log);

    // The folder as a reader sees it: the newest readable checkpoint.
    const char *args[] = {"eval", "--model", MODEL_DIR, "--adapter", dir, "--data", DATA, "--max-seq-len", "128", NULL};
    lc_test_run by_dir = lc_test_lora(args);
    ck_assert_msg(by_dir.status == 0, "%s", by_dir.err);
    ck_assert_msg(strstr(by_dir.err, "skipping") && strstr(by_dir.err, "checkpoint-30.h5"), "%s", by_dir.err);
    args[4] = named;
    lc_test_run by_file = lc_test_lora(args);
    ck_assert_msg(by_file.status == 0, "%s", by_file.err);
    ck_assert_str_eq(by_dir.out, by_file.out);
    lc_test_run_free(&by_dir);
    lc_test_run_free(&by_file);

    ck_assert_int_eq(finish(start_training()), 0);
    log = run_log();
    ck_assert_msg(strstr(log, "resuming from") != NULL && strstr(log, named) != NULL, "did not resume: %s", log);
    free(log);
    assert_final_adapter(ref);
    ck_assert_msg(access(good, F_OK) != 0, "checkpoint-6.h5 was never pruned");
    free(ref);
}
END_TEST

// Issue 20.2: a second run on a folder in use is refused with one line
// naming the holder; once the holder is killed (its lock dies with it) the
// folder is free again.
START_TEST(test_second_run_on_folder_refused) {
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 2);
    const char *args[] = {"train", "--config", cfg_path, NULL};
    lc_test_run r = lc_test_lora(args);
    char want[64];
    snprintf(want, sizeof want, "in use by another lora train (process %d)", (int)pid);
    ck_assert_msg(r.status == 2 && strstr(r.err, want) != NULL, "status %d: %s", r.status, r.err);
    ck_assert_int_eq(lc_test_count_lines(r.err), 1);
    lc_test_run_free(&r);
    kill(pid, SIGKILL);
    finish(pid);
    ck_assert_int_eq(finish(start_training()), 0);
    char *log = run_log();
    ck_assert_msg(strstr(log, "resuming from") != NULL, "%s", log);
    free(log);
}
END_TEST

// Waits until the run's stderr holds needle (or the process ends).
static void wait_for_log(pid_t pid, const char *needle) {
    char path[4300];
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    for (int i = 0; i < 60000; i++) {
        if (access(path, R_OK) == 0) { // the child may not have made it yet
            char *log = lc_test_read(path, NULL);
            int found = strstr(log, needle) != NULL;
            free(log);
            if (found) return;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) ck_abort_msg("training ended before \"%s\"", needle);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("\"%s\" never appeared", needle);
}

static void two_signals(pid_t pid) {
    kill(pid, SIGINT);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
}

// Issue 20.5: a second SIGINT abandons an evaluation under way: the step's
// checkpoint is written (before the evaluation), no evaluation row is
// recorded, and the run exits 130; the same in the final evaluation, after
// the final adapter is saved.
START_TEST(test_second_signal_stops_evaluation) {
    // Validation on GSM8K's training set takes seconds on this model.
    edit_config("\"keep_checkpoints\": 2", "\"keep_checkpoints\": 2, \"valid_data\": \"" LC_SHARED_DIR
                "/data/gsm8k_train.jsonl\", \"eval_every\": 4");
    pid_t pid = start_training();
    wait_for_log(pid, "step 4/");
    two_signals(pid);
    ck_assert_int_eq(finish(pid), 130);
    char *log = run_log();
    ck_assert_msg(strstr(log, "step 4: evaluation stopped by a second signal") &&
                      strstr(log, "saved ") && strstr(log, "/run/checkpoint-4.h5"),
                  "%s", log);
    free(log);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *metrics = lc_test_read(path, NULL);
    ck_assert_msg(strstr(metrics, "\"eval_loss\"") == NULL, "an abandoned evaluation was recorded: %s", metrics);
    free(metrics);

    edit_config("\"eval_every\": 4", "\"eval_every\": 0");
    pid = start_training();
    wait_for_log(pid, "step 24/24");
    two_signals(pid);
    ck_assert_int_eq(finish(pid), 130);
    log = run_log();
    ck_assert_msg(strstr(log, "in the final evaluation; the adapter is saved to") != NULL, "%s", log);
    free(log);
    snprintf(path, sizeof path, "%s/run/checkpoint-%d.h5", tmp, STEPS);
    ck_assert_msg(access(path, R_OK) == 0, "no final adapter");
}
END_TEST

// Counts the evaluation rows of run/metrics.jsonl for step.
static int eval_rows(int step) {
    char path[4300], want[64];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    snprintf(want, sizeof want, "{\"step\": %d, \"eval_loss\"", step);
    char *metrics = lc_test_read(path, NULL);
    int n = 0;
    for (const char *p = metrics; (p = strstr(p, want)); p++) n++;
    free(metrics);
    return n;
}

// The checkpoint is saved before its step's evaluation, so SIGKILL during
// the evaluation must not lose that evaluation: the resumed run evaluates
// the step first, mid-run and after the final step alike (where a rerun
// would otherwise find nothing to train), and records it once.
START_TEST(test_killed_during_evaluation_evaluates_on_resume) {
    edit_config("\"keep_checkpoints\": 2", "\"keep_checkpoints\": 2, \"valid_data\": \"" LC_SHARED_DIR
                "/data/gsm8k_train.jsonl\", \"eval_every\": 4");
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 4); // written just before the evaluation, which takes seconds
    kill(pid, SIGKILL);
    finish(pid);
    ck_assert_int_eq(eval_rows(4), 0);
    pid = start_training();
    wait_for_log(pid, "step 5/");
    kill(pid, SIGINT);
    ck_assert_int_eq(finish(pid), 130);
    char *log = run_log();
    ck_assert_msg(strstr(log, "step 4: its evaluation is missing") && strstr(log, "step 4: eval loss"), "%s", log);
    free(log);
    ck_assert_int_eq(eval_rows(4), 1);

    edit_config("\"eval_every\": 4", "\"eval_every\": 0");
    pid = start_training();
    wait_for_checkpoint(pid, STEPS);
    kill(pid, SIGKILL);
    finish(pid);
    ck_assert_int_eq(eval_rows(STEPS), 0);
    ck_assert_int_eq(finish(start_training()), 0);
    log = run_log();
    ck_assert_msg(strstr(log, "step 24: eval loss") && strstr(log, "nothing to train"), "%s", log);
    free(log);
    ck_assert_int_eq(eval_rows(STEPS), 1);
    ck_assert_int_eq(eval_rows(4), 1);
}
END_TEST

// Issue 20.7: the rewrite of metrics.jsonl on resume cannot lose the
// history: here every write beyond 200 bytes fails (RLIMIT_FSIZE), so the
// resumed run fails, and the file must still hold what it held.
START_TEST(test_metrics_history_survives_a_failed_rewrite) {
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 8);
    kill(pid, SIGKILL);
    finish(pid);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    size_t before_len, after_len;
    char *before = lc_test_read(path, &before_len);
    ck_assert_int_ge(lc_test_count_lines(before), 8);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {200, 200};
        setrlimit(RLIMIT_FSIZE, &lim);
        signal(SIGXFSZ, SIG_IGN); // a write past the limit fails with EFBIG instead
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execl(LC_LORA_BIN, LC_LORA_BIN, "train", "--config", cfg_path, (char *)NULL);
        _exit(127);
    }
    ck_assert_int_ne(finish(pid), 0);
    char *after = lc_test_read(path, &after_len);
    ck_assert_msg(after_len == before_len && memcmp(before, after, after_len) == 0,
                  "metrics.jsonl lost its history: %zu bytes before, %zu after", before_len, after_len);
    free(before);
    free(after);
}
END_TEST

// A run stopped after checkpoint 2, then `lora train` with the overrides:
// its result (the caller frees it).
static lc_test_run resume_with(const char *const *sets, int n_sets) {
    pid_t pid = start_training();
    wait_for_checkpoint(pid, 2);
    kill(pid, SIGKILL);
    finish(pid);
    const char *args[32] = {"train", "--config", cfg_path};
    int n = 3;
    for (int i = 0; i < n_sets && n < 30; i++) {
        args[n++] = "--set";
        args[n++] = sets[i];
    }
    args[n] = NULL;
    return lc_test_lora(args);
}

// The last line of stderr: the error, after the lines about the data.
static const char *last_line(const char *err) {
    const char *last = err;
    for (const char *p = err; *p; p++)
        if (p[0] == '\n' && p[1]) last = p + 1;
    return last;
}

// The checkpoint's LoRA must be the config's: another alpha or dropout is
// refused naming both values (it was only a note, and the run went on).
START_TEST(test_changed_lora_refused) {
    const char *sets[] = {"lora.alpha=16", "lora.dropout=0"};
    lc_test_run r = resume_with(sets, 2);
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    const char *err = last_line(r.err);
    ck_assert_msg(strstr(err, "checkpoint-2.h5: the checkpoint has alpha 8, dropout 0.1; the config has alpha 16, "
                              "dropout 0; use another output_dir") != NULL && strstr(err, "lora train: ") == err,
                  "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// Another train_data or learning rate is refused before any step, listing
// the keys with both values and what to do (it was a note, and the run went
// on from the old data position).
START_TEST(test_changed_config_refused) {
    lc_test_copy(DATA, tmp, "other.jsonl");
    char set_data[4300];
    snprintf(set_data, sizeof set_data, "train_data=%s/other.jsonl", tmp);
    const char *sets[] = {set_data, "optimizer.lr=0.1", "grad_accum=1", "steps=30"};
    lc_test_run r = resume_with(sets, 4);
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    const char *err = last_line(r.err);
    char want[4400];
    snprintf(want, sizeof want, "train_data \"%s\" -> \"%s/other.jsonl\", optimizer.lr 0.002 -> 0.1, grad_accum 2 -> 1",
             DATA, tmp);
    ck_assert_msg(strstr(err, "checkpoint-2.h5: was written with other values of train_data, optimizer.lr, "
                              "grad_accum; ") != NULL &&
                      strstr(err, "use another output_dir for a new run, or restore these keys") != NULL &&
                      strstr(err, want) != NULL && strstr(err, "steps") == NULL && strstr(err, "lora train: ") == err,
                  "%s", r.err);
    ck_assert_ptr_null(strstr(r.err, "resuming from"));
    lc_test_run_free(&r);
}
END_TEST

// Keys that change only the length of the run, how often it saves, or its
// threads, or how the frozen products multiply are allowed, named in one
// note; raising steps continues training.
START_TEST(test_harmless_changes_noted) {
    const char *sets[] = {"steps=28", "save_every=4", "threads=1", "activation_checkpointing=true", "compute=bf16"};
    lc_test_run r = resume_with(sets, 5);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "lora train: note: continuing with changed steps 24 -> 28, save_every 2 -> 4, "
                                "threads 0 -> 1, activation_checkpointing false -> true, compute \"fp32\" -> "
                                "\"bf16\"\n") != NULL &&
                      strstr(r.err, "resuming from") != NULL,
                  "%s", r.err);
    lc_test_run_free(&r);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/checkpoint-28.h5", tmp);
    ck_assert(file_exists(path));
}
END_TEST

// Another spelling of the same model folder and data file resumes: the base
// is checked by its weights, the data by the file it names; a new
// valid_data only changes evaluation, so it is noted, not refused.
START_TEST(test_same_files_other_spelling_resume) {
    char link[4300], model[4400], valid[4400];
    snprintf(link, sizeof link, "%s/model-link", tmp);
    ck_assert_int_eq(symlink(MODEL_DIR, link), 0);
    snprintf(model, sizeof model, "model=%s", link);
    snprintf(valid, sizeof valid, "valid_data=%s", DATA);
    const char *sets[] = {model, "train_data=" LC_SHARED_DIR "/models/../data/./alpaca_tiny.jsonl", valid};
    lc_test_run r = resume_with(sets, 3);
    ck_assert_msg(r.status == 0 && strstr(r.err, "resuming from") != NULL, "exit %d: %s", r.status, r.err);
    char want[4400];
    snprintf(want, sizeof want, "note: continuing with changed valid_data \"\" -> \"%s\"\n", DATA);
    ck_assert_msg(strstr(r.err, want) != NULL, "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("stories260K");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sigkill_at_several_points);
    tcase_add_test(tc, test_stop_signals_save_and_exit_130);
    tcase_add_test(tc, test_resume_with_sigchld_ignored);
    tcase_add_test(tc, test_closed_pipe_reader_saves_and_exits_130);
    tcase_add_test(tc, test_damaged_checkpoint_skipped);
    tcase_add_test(tc, test_other_base_refused);
    tcase_add_test(tc, test_damaged_newer_checkpoint_never_displaces_good_ones);
    tcase_add_test(tc, test_second_run_on_folder_refused);
    tcase_add_test(tc, test_second_signal_stops_evaluation);
    tcase_add_test(tc, test_killed_during_evaluation_evaluates_on_resume);
    tcase_add_test(tc, test_metrics_history_survives_a_failed_rewrite);
    tcase_add_test(tc, test_changed_lora_refused);
    tcase_add_test(tc, test_changed_config_refused);
    tcase_add_test(tc, test_harmless_changes_noted);
    tcase_add_test(tc, test_same_files_other_spelling_resume);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
