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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"
#define STEPS 24

static char *tmp;
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

static char *final_adapter(size_t *len) {
    char path[4300];
    snprintf(path, sizeof path, "%s/run/checkpoint-%d.h5", tmp, STEPS);
    return lc_test_read(path, len);
}

static void clear_run(void) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/run'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

static char *reference_adapter(size_t *len) {
    ck_assert_int_eq(finish(start_training()), 0);
    char *ref = final_adapter(len);
    clear_run();
    return ref;
}

START_TEST(test_sigkill_at_several_points) {
    size_t ref_len, len;
    char *ref = reference_adapter(&ref_len);
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
    char *got = final_adapter(&len);
    ck_assert_uint_eq(len, ref_len);
    ck_assert_msg(memcmp(got, ref, len) == 0, "resumed adapter differs from the uninterrupted one");
    char err[4300];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    char *log = lc_test_read(err, NULL);
    ck_assert_msg(strstr(log, "resuming from") != NULL, "the last run did not resume: %s", log);
    free(log);
    free(got);
    free(ref);
}
END_TEST

// The run's final adapter holds exactly the reference bytes.
static void assert_final_adapter(const char *ref, size_t ref_len) {
    size_t len;
    char *got = final_adapter(&len);
    ck_assert_msg(len == ref_len && memcmp(got, ref, len) == 0, "resumed adapter differs from the uninterrupted one");
    free(got);
}

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
    size_t ref_len;
    char *ref = reference_adapter(&ref_len);
    const int sigs[] = {SIGINT, SIGHUP, SIGPIPE};
    for (int i = 0; i < 3; i++) stop_with(sigs[i], 4 + 4 * i);
    ck_assert_int_eq(finish(start_training()), 0);
    assert_final_adapter(ref, ref_len);
    free(ref);
}
END_TEST

// Started by a parent that ignores SIGCHLD, a resumed run still reads its
// checkpoint (in a child process) instead of waiting forever for it.
START_TEST(test_resume_with_sigchld_ignored) {
    size_t ref_len;
    char *ref = reference_adapter(&ref_len);
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
    assert_final_adapter(ref, ref_len);
    free(ref);
}
END_TEST

START_TEST(test_damaged_checkpoint_skipped) {
    size_t ref_len, len;
    char *ref = reference_adapter(&ref_len);
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
    char *got = final_adapter(&len);
    ck_assert(len == ref_len && memcmp(got, ref, len) == 0);
    free(got);
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

int main(void) {
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("stories260K");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sigkill_at_several_points);
    tcase_add_test(tc, test_stop_signals_save_and_exit_130);
    tcase_add_test(tc, test_resume_with_sigchld_ignored);
    tcase_add_test(tc, test_damaged_checkpoint_skipped);
    tcase_add_test(tc, test_other_base_refused);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
