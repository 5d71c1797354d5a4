// `mpirun -np 2 lora train` against one process on stories260K and GSM8K (its
// first 400 problems):
// the same losses and adapter (within 1e-5 relative), a SIGKILLed job that
// resumes to the uninterrupted job's bytes, a 2-rank checkpoint continued by
// one process, and the refusals (data that differs on a rank, a batch that
// does not divide). Built only when MPI is found; mpirun runs 2 ranks on
// this machine (--oversubscribe, and --allow-run-as-root as root).
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "checkpoint_compare.h"
#include "test_util.h"
#include "train/checkpoint.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/gsm8k_train.jsonl"
#define VALID LC_SHARED_DIR "/data/gsm8k_test.jsonl"

static char *tmp;
static char data[4300]; // the first 400 problems of GSM8K's training set: each run tokenizes its data

static void setup(void) {
    tmp = lc_test_tmpdir();
    snprintf(data, sizeof data, "%s/gsm8k.jsonl", tmp);
    char cmd[8800];
    snprintf(cmd, sizeof cmd, "head -n 400 '%s' > '%s'", DATA, data);
    ck_assert_int_eq(system(cmd), 0);
}
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// Writes tmp/name.json: stories260K on GSM8K, grad_accum 2, dropout on.
static const char *write_config_batch(const char *name, const char *run, int steps, int batch, int accum,
                                      const char *extra) {
    static char path[4200];
    char text[8192];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/%s\",\n"
                     " \"lora\": {\"r\": 4, \"alpha\": 8, \"dropout\": 0.1}, \"optimizer\": {\"lr\": 2e-3},\n"
                     " \"schedule\": {\"type\": \"constant\", \"warmup_steps\": 0},\n"
                     " \"batch_size\": %d, \"grad_accum\": %d, \"max_seq_len\": 512, \"steps\": %d, \"seed\": 7,\n"
                     " \"save_every\": 2, \"keep_checkpoints\": 2, \"threads\": 1%s%s}\n",
                     MODEL_DIR, data, tmp, run, batch, accum, steps, extra[0] ? ", " : "", extra);
    snprintf(path, sizeof path, "%s.json", name);
    lc_test_write(tmp, path, text, (size_t)n);
    snprintf(path, sizeof path, "%s/%s.json", tmp, name);
    return path;
}

static const char *write_config(const char *name, const char *run, int steps, const char *extra) {
    return write_config_batch(name, run, steps, 4, 2, extra);
}

// Open MPI keeps allocations past MPI_Finalize, which LeakSanitizer (in the
// sanitized build) reports as leaks: ranks run without leak checks; the
// one-process runs keep them.
static void ranks_without_leak_checks(void) {
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && asan[0] ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

// mpirun with 2 ranks (or none: ranks 0) of `lora train --config cfg`; stderr
// to tmp/err.txt. Returns the pid; `finish` waits for it.
static pid_t start(int ranks, const char *cfg) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        setsid(); // the job's session: mpirun and its ranks (each rank has its own process group)
        char err[4300];
        snprintf(err, sizeof err, "%s/err.txt", tmp);
        if (!freopen(err, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        if (ranks > 0) ranks_without_leak_checks();
        if (ranks == 0) {
            execl(LC_LORA_BIN, LC_LORA_BIN, "train", "--config", cfg, (char *)NULL);
        } else {
            char np[16];
            snprintf(np, sizeof np, "%d", ranks);
            execl(LC_MPIEXEC, LC_MPIEXEC, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", np,
                   LC_LORA_BIN, "train", "--config", cfg, (char *)NULL);
        }
        _exit(127);
    }
    return pid;
}

// SIGKILLs every process of session `sid` and waits until none is left
// alive. Open MPI puts each rank in a process group of its own, so a kill of
// mpirun's group leaves the ranks to notice their launcher's end on their
// own, which can take a moment: a rerun started before then finds the run
// folder locked (a zombie holds no lock).
static void kill_session(pid_t sid) {
    for (int round = 0; round < 6000; round++) {
        int alive = 0;
        DIR *proc = opendir("/proc");
        ck_assert(proc != NULL);
        for (struct dirent *e; (e = readdir(proc));) {
            char path[300], line[1024];
            long pid = strtol(e->d_name, NULL, 10);
            if (pid <= 0) continue;
            snprintf(path, sizeof path, "/proc/%ld/stat", pid);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            size_t n = fread(line, 1, sizeof line - 1, f);
            fclose(f);
            line[n] = 0;
            char *end = strrchr(line, ')'), state;
            long ppid, pgrp, session;
            if (!end || sscanf(end + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &session) != 4) continue;
            if (session != sid || state == 'Z' || state == 'X') continue;
            alive++;
            kill((pid_t)pid, SIGKILL);
        }
        closedir(proc);
        if (!alive) return;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("processes of the killed job still run after 60 s");
}

static int finish(pid_t pid) {
    int wst;
    ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
    return WIFEXITED(wst) ? WEXITSTATUS(wst) : -WTERMSIG(wst);
}

static char *err_log(void) {
    char path[4300];
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    return lc_test_read(path, NULL);
}

// The end of a log, short enough for a Check message.
static const char *tail(const char *log) {
    size_t n = strlen(log);
    return n > 1500 ? log + n - 1500 : log;
}

static void train_ok(int ranks, const char *cfg) {
    int rc = finish(start(ranks, cfg));
    char *log = err_log();
    ck_assert_msg(rc == 0, "%d ranks: exit %d: %s", ranks, rc, tail(log));
    free(log);
}

// The "loss" of each step row of run/metrics.jsonl, in order.
static int read_losses(const char *run, double *loss, int cap) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, run);
    char *text = lc_test_read(path, NULL);
    int n = 0;
    for (char *p = text; (p = strstr(p, "\"loss\": ")) && n < cap; p++) loss[n++] = strtod(p + 8, NULL);
    free(text);
    return n;
}

// The adapter parameters of run/checkpoint-<step>.h5.
static float *read_adapter(const char *run, int step, size_t *n) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/checkpoint-%d.h5", tmp, run, step);
    lc_checkpoint_info info;
    ck_assert_int_eq(lc_checkpoint_read_info(path, &info), 0);
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), 0);
    lc_lora l;
    ck_assert_int_eq(lc_lora_init(&l, &m, &info.lora, 0, false), 0);
    ck_assert_int_eq(lc_checkpoint_load(path, &m, &l, NULL), 0);
    float *p = malloc(sizeof(float) * l.n_params);
    memcpy(p, l.params, sizeof(float) * l.n_params);
    *n = l.n_params;
    lc_lora_free(&l);
    lc_model_free(&m);
    lc_checkpoint_info_free(&info);
    return p;
}

// ||a - b|| / ||a|| over the whole adapter (2-norms). Elementwise, an entry
// whose gradient nearly cancels can move by a larger fraction: AdamW's
// update divides by the gradient's own size, so a last-bit difference in a
// near-zero gradient becomes a visible one in that entry.
static double adapter_difference(const char *run_a, const char *run_b, int step) {
    size_t na, nb;
    float *a = read_adapter(run_a, step, &na), *b = read_adapter(run_b, step, &nb);
    ck_assert_uint_eq(na, nb);
    double diff = 0.0, scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < na; i++) {
        double d = (double)a[i] - b[i];
        diff += d * d;
        scale += (double)a[i] * a[i];
        worst = fmax(worst, fabs(d));
    }
    fprintf(stderr, "test_mpi: %s vs %s: adapters differ by %.3g relative (2-norm), at most %.3g in one entry\n",
            run_a, run_b, sqrt(diff / scale), worst);
    free(a);
    free(b);
    ck_assert(scale > 0.0);
    return sqrt(diff / scale);
}

static void assert_same_losses(const char *run_a, const char *run_b, int steps) {
    double la[64], lb[64];
    ck_assert_int_eq(read_losses(run_a, la, 64), steps);
    ck_assert_int_eq(read_losses(run_b, lb, 64), steps);
    for (int i = 0; i < steps; i++)
        ck_assert_msg(fabs(la[i] - lb[i]) <= 1e-5 * fabs(la[i]), "step %d: loss %.6f (%s) vs %.6f (%s)", i + 1, la[i],
                      run_a, lb[i], run_b);
}

// 2 ranks and 1 process take the same sequences each step: the losses of
// every step and the final adapter agree within 1e-5 relative, with packing
// off and on (and dropout, whose masks follow the row, not the rank).
static void check_equivalence(const char *packing) {
    char extra[256];
    snprintf(extra, sizeof extra, "\"packing\": %s, \"valid_split\": 0.05, \"eval_every\": 4", packing);
    train_ok(0, write_config("one", "one", 8, extra));
    train_ok(2, write_config("two", "two", 8, extra));
    assert_same_losses("one", "two", 8);
    double d = adapter_difference("one", "two", 8);
    ck_assert_msg(d <= 1e-5, "adapters differ by %g relative", d);
    // The evaluation is split over the ranks and summed: the same eval loss.
    double ea[4], eb[4];
    char path[4300];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, k ? "two" : "one");
        char *text = lc_test_read(path, NULL);
        int n = 0;
        for (char *p = text; (p = strstr(p, "\"eval_loss\": ")) && n < 4; p++)
            (k ? eb : ea)[n++] = strtod(p + 13, NULL);
        ck_assert_int_eq(n, 2);
        free(text);
    }
    for (int i = 0; i < 2; i++) ck_assert_msg(fabs(ea[i] - eb[i]) <= 1e-5 * ea[i], "eval %g vs %g", ea[i], eb[i]);
}

START_TEST(test_two_ranks_match_one_process) { check_equivalence("false"); }
END_TEST

START_TEST(test_two_ranks_match_one_process_packed) { check_equivalence("true"); }
END_TEST

// grad_accum 1: each micro-batch's rows are split between the ranks, and the
// dropout masks of rank 1's rows are those of rows 2 and 3 of the batch.
START_TEST(test_two_ranks_split_one_batch) {
    train_ok(0, write_config_batch("one", "one", 6, 4, 1, "\"packing\": false"));
    train_ok(2, write_config_batch("two", "two", 6, 4, 1, "\"packing\": false"));
    assert_same_losses("one", "two", 6);
    double d = adapter_difference("one", "two", 6);
    ck_assert_msg(d <= 1e-5, "adapters differ by %g relative", d);
}
END_TEST

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// A SIGKILL of the whole job once checkpoint 4 exists, then the same command:
// it resumes and ends with the training state of an uninterrupted 2-rank job.
START_TEST(test_sigkill_resume_two_ranks) {
    const char *cfg = write_config("cfg", "run", 12, "\"packing\": true");
    train_ok(2, cfg);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/checkpoint-12.h5", tmp);
    // Kept as a file: checkpoints are compared by content (checkpoint_compare.h).
    char ref[4300];
    snprintf(ref, sizeof ref, "%s/ref.h5", tmp);
    ck_assert_int_eq(rename(path, ref), 0);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/run'", tmp);
    ck_assert_int_eq(system(cmd), 0);

    pid_t pid = start(2, cfg);
    char want[4300];
    snprintf(want, sizeof want, "%s/run/checkpoint-4.h5", tmp);
    for (int i = 0; i < 60000 && !file_exists(want); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(file_exists(want), "checkpoint 4 never appeared");
    kill_session(pid);
    finish(pid);
    ck_assert_msg(!file_exists(path), "the job finished before it was killed");
    train_ok(2, cfg);
    char *log = err_log();
    ck_assert_msg(strstr(log, "resuming from") != NULL, "did not resume: %s", tail(log));
    free(log);
    lc_test_assert_same_checkpoint(path, ref, MODEL_DIR, "resumed vs uninterrupted 2-rank job");
}
END_TEST

// A checkpoint written by 2 ranks continues in one process as it would have
// in one process all along.
START_TEST(test_two_rank_checkpoint_resumed_by_one_process) {
    train_ok(2, write_config("two", "run", 4, "\"packing\": true"));
    train_ok(0, write_config("one", "run", 8, "\"packing\": true"));
    char *log = err_log();
    ck_assert_msg(strstr(log, "resuming from") != NULL, "did not resume: %s", tail(log));
    free(log);
    train_ok(0, write_config("ref", "ref", 8, "\"packing\": true"));
    assert_same_losses("ref", "run", 8);
    double d = adapter_difference("ref", "run", 8);
    ck_assert_msg(d <= 1e-5, "adapters differ by %g relative", d);
}
END_TEST

// Exactly one line of lora's own on stderr holds `needle` (mpirun may add
// its own notice after it).
static void expect_refused_two_ranks(const char *cfg, int status, const char *needle) {
    int rc = finish(start(2, cfg));
    char *log = err_log();
    ck_assert_msg(rc == status, "exit %d, wanted %d: %s", rc, status, tail(log));
    const char *hit = strstr(log, needle);
    ck_assert_msg(hit != NULL, "stderr lacks \"%s\": %s", needle, tail(log));
    ck_assert_msg(strstr(hit + 1, needle) == NULL, "reported twice: %s", tail(log));
    int lora_lines = 0;
    for (const char *p = log; (p = strstr(p, "lora train: ")); p++) lora_lines++;
    ck_assert_msg(lora_lines == 1, "%d lines from lora: %s", lora_lines, tail(log));
    free(log);
}

START_TEST(test_indivisible_batch_refused) {
    expect_refused_two_ranks(write_config_batch("cfg", "run", 4, 3, 1, ""), 2,
                             "batch_size 3 x grad_accum 1 = 3 sequences a step do not divide among 2 ranks");
    char run[4300];
    snprintf(run, sizeof run, "%s/run", tmp);
    ck_assert_msg(!file_exists(run), "a refused run left %s", run);
}
END_TEST

// 2 ranks of `lora train --config cfg`, rank 0 in tmp/a and rank 1 in
// tmp/b, so relative paths name different files on each.
static pid_t start_split(const char *cfg) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        char err[4300], script[8800];
        snprintf(err, sizeof err, "%s/err.txt", tmp);
        if (!freopen(err, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        ranks_without_leak_checks();
        snprintf(script, sizeof script, "cd '%s'/$([ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && echo b || echo a) && exec '%s' "
                 "train --config %s", tmp, LC_LORA_BIN, cfg);
        execl(LC_MPIEXEC, LC_MPIEXEC, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", "2", "sh",
              "-c", script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

// Rank 1 reads another file at the same (relative) path: every rank stops
// and one line names the rank and the file.
START_TEST(test_mismatched_data_refused) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/a' '%s/b' && head -n 200 '%s' > '%s/a/data.jsonl' && "
             "head -n 201 '%s' | tail -n 200 > '%s/b/data.jsonl'", tmp, tmp, DATA, tmp, DATA, tmp);
    ck_assert_int_eq(system(cmd), 0);
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"data.jsonl\", \"output_dir\": \"%s/run\",\n"
                     " \"batch_size\": 2, \"max_seq_len\": 512, \"steps\": 2}\n", MODEL_DIR, tmp);
    lc_test_write(tmp, "cfg.json", text, (size_t)n);
    pid_t pid = start_split("../cfg.json");
    int rc = finish(pid);
    char *log = err_log();
    ck_assert_msg(rc == 2, "exit %d: %s", rc, tail(log));
    ck_assert_msg(strstr(log, "lora train: rank 1: data.jsonl differs from rank 0's (tokenized examples fingerprint") !=
                      NULL, "%s", tail(log));
    const char *hit = strstr(log, "differs from rank 0");
    ck_assert_msg(strstr(hit + 1, "differs from rank 0") == NULL, "reported twice: %s", tail(log));
    free(log);
}
END_TEST

// needle said once in the log (by one rank); the job ended
// (no rank waits for another) with `status`.
static void expect_one_line(pid_t pid, int status, const char *needle) {
    int rc = finish(pid);
    char *log = err_log();
    ck_assert_msg(rc == status, "exit %d: %s", rc, tail(log));
    ck_assert_msg(strstr(log, needle) != NULL, "lacks \"%s\": %s", needle, tail(log));
    int lines = 0;
    for (const char *p = log; (p = strstr(p, needle)); p++) lines++;
    ck_assert_msg(lines == 1, "said %d times: %s", lines, tail(log));
    free(log);
}

// A config that differs on one rank (a setting, or the file itself missing
// there), and a failure every rank meets: one line each, nothing left over.
START_TEST(test_config_disagreements) {
    char cmd[4400], text[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/a' '%s/b'", tmp, tmp);
    ck_assert_int_eq(system(cmd), 0);
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\",\n"
                     " \"batch_size\": 2, \"max_seq_len\": 512, \"steps\": %%d, \"threads\": 1}\n", MODEL_DIR, data, tmp);
    ck_assert(n > 0);
    char a[4200], b[4200];
    int na = snprintf(a, sizeof a, text, 4), nb = snprintf(b, sizeof b, text, 6);
    snprintf(cmd, sizeof cmd, "%s/a", tmp);
    lc_test_write(cmd, "run.json", a, (size_t)na);
    snprintf(cmd, sizeof cmd, "%s/b", tmp);
    lc_test_write(cmd, "run.json", b, (size_t)nb);
    expect_one_line(start_split("run.json"), 2, "rank 1: run.json differs from rank 0's (settings other than");
    snprintf(cmd, sizeof cmd, "rm '%s/b/run.json'", tmp);
    ck_assert_int_eq(system(cmd), 0);
    expect_one_line(start_split("run.json"), 2, "rank 1: run.json: cannot open");
    // A model path that does not exist, on every rank.
    snprintf(cmd, sizeof cmd, "sed 's|stories260K|no-such-model|' '%s/a/run.json' > '%s/b/run.json' && "
             "cp '%s/b/run.json' '%s/a/run.json'", tmp, tmp, tmp, tmp);
    ck_assert_int_eq(system(cmd), 0);
    expect_one_line(start_split("run.json"), 2, "no-such-model");
    char run[4300];
    snprintf(run, sizeof run, "%s/run", tmp);
    ck_assert_msg(!file_exists(run), "a refused job left %s", run);
}
END_TEST

int main(void) {
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpi");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_two_ranks_match_one_process);
    tcase_add_test(tc, test_two_ranks_match_one_process_packed);
    tcase_add_test(tc, test_two_ranks_split_one_batch);
    tcase_add_test(tc, test_sigkill_resume_two_ranks);
    tcase_add_test(tc, test_two_rank_checkpoint_resumed_by_one_process);
    tcase_add_test(tc, test_indivisible_batch_refused);
    tcase_add_test(tc, test_mismatched_data_refused);
    tcase_add_test(tc, test_config_disagreements);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
