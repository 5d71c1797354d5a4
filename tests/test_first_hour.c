// What a new user meets first, end to end through `lora`: one-line hints for
// mistyped config keys (and other trainers' names), every key's default in
// `lora train --help` agreeing with what a run does, a config's relative
// paths found beside it, eval_max_examples, log_every without a terminal,
// and what `lora eval` scored, cut and left out.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define GSM8K LC_SHARED_DIR "/data/gsm8k_train.jsonl"

static char *tmp;

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// tmp/name: the first n lines of GSM8K's training set.
static const char *gsm8k_head(const char *name, int n) {
    static char path[4300];
    char cmd[9000];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    snprintf(cmd, sizeof cmd, "head -n %d '%s' > '%s'", n, GSM8K, path);
    ck_assert_int_eq(system(cmd), 0);
    return path;
}

// tmp/name.json holding `members` (a JSON object's inside).
static const char *write_config(const char *name, const char *members) {
    static char path[4300];
    char file[256];
    snprintf(file, sizeof file, "%s.json", name);
    char text[8192];
    int n = snprintf(text, sizeof text, "{%s}\n", members);
    lc_test_write(tmp, file, text, (size_t)n);
    snprintf(path, sizeof path, "%s/%s", tmp, file);
    return path;
}

// `lora train --config` on a config of `members` fails with exactly one line:
// "lora train: CONFIG: " + want.
static void expect_key_error(const char *members, const char *want) {
    const char *cfg = write_config("bad", members);
    const char *args[] = {"train", "--config", cfg, NULL};
    lc_test_run r = lc_test_lora(args);
    char line[8192];
    snprintf(line, sizeof line, "lora train: %s: %s\n", cfg, want);
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(r.err, line);
    lc_test_run_free(&r);
}

START_TEST(test_key_hints) {
    expect_key_error("\"lora\": {\"alhpa\": 8}", "unknown key \"lora.alhpa\" (did you mean \"lora.alpha\"?)");
    expect_key_error("\"bacth_size\": 2", "unknown key \"bacth_size\" (did you mean \"batch_size\"?)");
    // A key in the wrong object.
    expect_key_error("\"lr\": 1e-3", "unknown key \"lr\" (did you mean \"optimizer.lr\"?)");
    expect_key_error("\"warmup_steps\": 3", "unknown key \"warmup_steps\" (did you mean \"schedule.warmup_steps\"?)");
    // Other trainers' names, also mistyped.
    expect_key_error("\"lora\": {\"lora_alpha\": 8}",
                     "unknown key \"lora.lora_alpha\" (did you mean \"lora.alpha\"? lora_alpha is PEFT's name)");
    expect_key_error("\"target_modules\": [\"q_proj\"]",
                     "unknown key \"target_modules\" (did you mean \"lora.targets\"? target_modules is PEFT's name)");
    expect_key_error("\"lerning_rate\": 1e-3", "unknown key \"lerning_rate\" (did you mean \"optimizer.lr\"? "
                     "learning_rate is transformers' name)");
    expect_key_error("\"iters\": 100", "unknown key \"iters\" (did you mean \"steps\"? iters is MLX-LM's name)");
    expect_key_error("\"lora\": {\"layers_to_transform\": [1]}", "unknown key \"lora.layers_to_transform\" (did you "
                     "mean \"lora.layers\"? layers_to_transform is PEFT's name)");
    // Nothing near: no guess (short names get one edit, objects are no answer).
    expect_key_error("\"frobnicate\": 1", "unknown key \"frobnicate\"");
    expect_key_error("\"mask\": 1", "unknown key \"mask\"");
    expect_key_error("\"loss\": 1", "unknown key \"loss\"");
    expect_key_error("\"stop\": 1", "unknown key \"stop\"");
    // A name found whole in another object beats a near one in this.
    expect_key_error("\"lora\": {\"lr\": 1}", "unknown key \"lora.lr\" (did you mean \"optimizer.lr\"?)");
    // A dotted name as one key of the file would be read by nothing.
    expect_key_error("\"lora.r\": 4", "\"lora.r\" is not a key: write it nested, \"lora\": {\"r\": ...}");

    const char *args[] = {"train", "--config", write_config("ok", "\"model\": \"m\""), "--set", "lora.dropuot=0.1", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "lora train: --set: unknown key \"lora.dropuot\" (did you mean \"lora.dropout\"?)\n");
    lc_test_run_free(&r);
}
END_TEST

// The default `lora train --help` gives a key (the text after its name).
static void help_default(const char *help, const char *key, char *out, size_t cap) {
    char needle[128];
    snprintf(needle, sizeof needle, "\n  %s ", key);
    const char *p = strstr(help, needle);
    ck_assert_msg(p != NULL, "lora train --help lacks %s", key);
    p += strlen(needle);
    while (*p == ' ') p++;
    size_t n = strcspn(p, " ");
    ck_assert(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

// The value of "key" in the first metrics.jsonl row that has it.
static double first_metric(const char *metrics, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\": ", key);
    const char *p = strstr(metrics, needle);
    ck_assert_msg(p != NULL, "metrics.jsonl lacks %s", key);
    return strtod(p + strlen(needle), NULL);
}

// `lora train --help` lists every key with its default, and a run that sets
// none of them does what the list says.
START_TEST(test_help_defaults_are_the_defaults) {
    const char *help_args[] = {"train", "--help", NULL};
    lc_test_run h = lc_test_lora(help_args);
    ck_assert_int_eq(h.status, 0);
    const char *keys[] = {"model", "train_data", "output_dir", "lora.r", "lora.alpha", "lora.dropout", "optimizer.lr",
                          "optimizer.weight_decay", "schedule.type", "schedule.warmup_steps", "batch_size",
                          "grad_accum", "max_seq_len", "max_grad_norm", "seed", "packing", "mask_prompt",
                          "eval_every", "eval_max_examples", "save_every", "keep_checkpoints", "log_every", "threads",
                          "compute", "eval_generate.metric", "early_stopping.patience"};
    char def[64];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) help_default(h.out, keys[i], def, sizeof def);
    // Those a run reports.
    char r_def[64], lr_def[64], batch_def[64];
    help_default(h.out, "lora.r", r_def, sizeof r_def);
    help_default(h.out, "optimizer.lr", lr_def, sizeof lr_def);
    help_default(h.out, "batch_size", batch_def, sizeof batch_def);
    help_default(h.out, "lora.alpha", def, sizeof def);
    ck_assert_str_eq(def, "2"); // "2 x r"
    ck_assert_ptr_nonnull(strstr(h.out, "\n  lora.alpha                 2 x r "));

    char members[9000];
    snprintf(members, sizeof members, "\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\", "
             "\"steps\": 1, \"max_seq_len\": 512", MODEL_DIR, gsm8k_head("d.jsonl", 8), tmp);
    const char *args[] = {"train", "--config", write_config("defaults", members), NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char want[256];
    snprintf(want, sizeof want, "LoRA r %s alpha %g on ", r_def, 2.0 * atof(r_def));
    ck_assert_msg(strstr(r.err, want) != NULL, "stderr lacks \"%s\": %s", want, r.err);
    snprintf(want, sizeof want, " steps of %s x 1\n", batch_def);
    ck_assert_msg(strstr(r.err, want) != NULL, "stderr lacks \"%s\": %s", want, r.err);
    lc_test_run_free(&r);
    char path[4400];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *m = lc_test_read(path, NULL);
    // Cosine without warmup: step 1 runs at the peak rate.
    ck_assert_msg(fabs(first_metric(m, "lr") - atof(lr_def)) <= 1e-9, "lr %g, help says %s", first_metric(m, "lr"),
                  lr_def);
    free(m);

    // README's key table is this list, line for line (indented as code).
    char *readme = lc_test_read(LC_SOURCE_DIR "/README.md", NULL);
    const char *table = strstr(h.out, "\n  key ");
    ck_assert(table != NULL);
    int lines = 0;
    for (const char *p = table + 1; *p; lines++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        char want[512];
        ck_assert(n + 3 < sizeof want);
        snprintf(want, sizeof want, "\n  %.*s", (int)n, p);
        ck_assert_msg(strstr(readme, want) != NULL, "README.md lacks the --help line \"%.*s\"", (int)n - 1, p);
        p += n;
    }
    ck_assert_int_gt(lines, 40);
    free(readme);
    lc_test_run_free(&h);
}
END_TEST

// Relative paths that do not exist from the working directory are taken
// from beside the config file, with a note; --set values never are.
START_TEST(test_paths_beside_the_config) {
    char dir[4300], cmd[9000];
    snprintf(dir, sizeof dir, "%s/cfg", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && head -n 8 '%s' > '%s/first_hour_train.jsonl'", dir, GSM8K, dir);
    ck_assert_int_eq(system(cmd), 0);
    char members[9000];
    snprintf(members, sizeof members, "\"model\": \"%s\", \"train_data\": \"first_hour_train.jsonl\", "
             "\"output_dir\": \"%s/run\", \"steps\": 1, \"max_seq_len\": 256", MODEL_DIR, tmp);
    write_config("cfg/c", members);
    // From tmp, the config named relatively (Check runs each test in a
    // process of its own, so the folder change stays here).
    ck_assert_int_eq(chdir(tmp), 0);
    const char *args[] = {"train", "--config", "cfg/c.json", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char note[9000];
    snprintf(note, sizeof note, "lora train: train_data: first_hour_train.jsonl is not in the working directory; "
             "using %s/first_hour_train.jsonl, beside the config file\n", dir);
    ck_assert_msg(strncmp(r.err, note, strlen(note)) == 0, "stderr: %s", r.err);
    lc_test_run_free(&r);

    // The note waits for the config to be valid: a bad value is one line.
    const char *bad[] = {"train", "--config", "cfg/c.json", "--set", "batch_size=0", NULL};
    r = lc_test_lora(bad);
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "lora train: --set batch_size=0: \"batch_size\" is 0, outside 1..65536\n");
    lc_test_run_free(&r);

    const char *set[] = {"train", "--config", "cfg/c.json", "--set", "train_data=first_hour_train.jsonl", NULL};
    r = lc_test_lora(set);
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "lora train: first_hour_train.jsonl: cannot open: No such file or directory\n");
    lc_test_run_free(&r);

    // Resumed from the config's own folder, where the path needs no help:
    // the same file, so the same run.
    ck_assert_int_eq(chdir(dir), 0);
    const char *resume[] = {"train", "--config", "c.json", "--set", "steps=2", NULL};
    r = lc_test_lora(resume);
    ck_assert_msg(r.status == 0 && strstr(r.err, "resuming from"), "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
}
END_TEST

// The count of lines of `text` that begin with `prefix`.
static int count_prefixed(const char *text, const char *prefix) {
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

// eval_max_examples evaluates the validation set's first examples: the same
// loss as `lora eval --limit` on that file; log_every prints a line every N
// steps (and the first and last) with the mean loss since the last line.
START_TEST(test_eval_max_examples_and_log_every) {
    const char *train = gsm8k_head("train.jsonl", 40);
    char valid[4300], cmd[9000];
    snprintf(valid, sizeof valid, "%s/valid.jsonl", tmp);
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' > '%s'", GSM8K, valid);
    ck_assert_int_eq(system(cmd), 0);
    char members[9000];
    snprintf(members, sizeof members, "\"model\": \"%s\", \"train_data\": \"%s\", \"valid_data\": \"%s\", "
             "\"output_dir\": \"%s/run\", \"steps\": 8, \"max_seq_len\": 512, \"batch_size\": 2, "
             "\"lora\": {\"r\": 4}, \"eval_max_examples\": 5, \"log_every\": 3, \"save_every\": 8",
             MODEL_DIR, train, valid, tmp);
    const char *args[] = {"train", "--config", write_config("c", members), NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.err, "lora train: validation: 30 examples, the first 5 evaluated (eval_max_examples)\n"),
                  "%s", r.err);
    // Steps 1, 3, 6 and 8.
    ck_assert_msg(count_prefixed(r.err, "step ") == 4, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "\nstep 1/8 | "));
    ck_assert_ptr_nonnull(strstr(r.err, "\nstep 3/8 | "));
    ck_assert_ptr_nonnull(strstr(r.err, "\nstep 6/8 | "));
    ck_assert_ptr_nonnull(strstr(r.err, "\nstep 8/8 | "));
    // The line for step 6 averages steps 4..6 of metrics.jsonl.
    char path[4400];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *m = lc_test_read(path, NULL);
    double sum = 0.0;
    for (int s = 4; s <= 6; s++) {
        char row[64];
        snprintf(row, sizeof row, "{\"step\": %d, \"loss\": ", s);
        const char *p = strstr(m, row);
        ck_assert(p != NULL);
        sum += strtod(p + strlen(row), NULL);
    }
    double shown = atof(strstr(r.err, "\nstep 6/8 | loss ") + strlen("\nstep 6/8 | loss "));
    ck_assert_msg(fabs(shown - sum / 3) < 1e-4, "step 6 line %g, mean of rows %g", shown, sum / 3);
    // The final evaluation equals lora eval on the first 5 examples.
    const char *e = strstr(m, "\"eval_loss\": ");
    ck_assert(e != NULL);
    double eval_loss = strtod(e + 13, NULL);
    free(m);
    lc_test_run_free(&r);
    char ckpt[4400];
    snprintf(ckpt, sizeof ckpt, "%s/run/checkpoint-8.h5", tmp);
    const char *ev[] = {"eval", "--model", MODEL_DIR, "--adapter", ckpt, "--data", valid, "--max-seq-len", "512",
                        "--limit", "5", NULL};
    r = lc_test_lora(ev);
    ck_assert_msg(r.status == 0, "%s", r.err);
    double loss = atof(strstr(r.out, "\"loss\": ") + 8);
    ck_assert_msg(fabs(loss - eval_loss) <= 1e-5 * loss, "train's eval %g, lora eval --limit 5 %g", eval_loss, loss);
    ck_assert_msg(strstr(r.out, "\"examples\": 5, \"truncated\": "), "%s", r.out);
    lc_test_run_free(&r);
}
END_TEST

// lora eval says how many examples it scored, cut, and left out: a prompt
// longer than --max-seq-len leaves no completion token.
START_TEST(test_eval_counts) {
    char text[8192] = "{\"prompt\": \"Once upon a time\", \"completion\": \" there was a cat.\"}\n"
                      "{\"prompt\": \"Lily\", \"completion\": \"";
    for (int i = 0; i < 40; i++) strcat(text, " she played in the park");
    strcat(text, "\"}\n{\"prompt\": \"");
    for (int i = 0; i < 40; i++) strcat(text, " the dog ran");
    strcat(text, "\", \"completion\": \" home.\"}\n");
    lc_test_write(tmp, "counts.jsonl", text, strlen(text));
    char data[4300];
    snprintf(data, sizeof data, "%s/counts.jsonl", tmp);
    const char *args[] = {"eval", "--model", MODEL_DIR, "--data", data, "--max-seq-len", "32", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "\"examples\": 2, \"truncated\": 2, \"left_out\": 1}\n") != NULL, "%s", r.out);
    lc_test_run_free(&r);
}
END_TEST

// A wrong --model says what is wrong with it, the same in every command.
START_TEST(test_model_path_errors) {
    const char *cmds[][8] = {
        {"eval", "--data", GSM8K, "--model", NULL},
        {"generate", "--prompt", "x", "--model", NULL},
        {"template", "--messages", "m.json", "--model", NULL},
    };
    const char *paths[] = {"/nonexistent/model", MODEL_DIR "/model.safetensors"};
    const char *why[] = {"not a model folder or GGUF file (no such folder or file)",
                         "is a file, not a GGUF model: give the folder holding config.json or a .gguf file"};
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 2; p++) {
            const char *args[8];
            memcpy(args, cmds[c], sizeof args);
            args[4] = paths[p];
            lc_test_run r = lc_test_lora(args);
            char want[4400];
            snprintf(want, sizeof want, "lora %s: %s: %s\n", args[0], paths[p], why[p]);
            ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
            ck_assert_str_eq(r.err, want);
            lc_test_run_free(&r);
        }
}
END_TEST

int main(void) {
    Suite *s = suite_create("first_hour");
    TCase *tc = tcase_create("cli");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_key_hints);
    tcase_add_test(tc, test_help_defaults_are_the_defaults);
    tcase_add_test(tc, test_paths_beside_the_config);
    tcase_add_test(tc, test_eval_max_examples_and_log_every);
    tcase_add_test(tc, test_eval_counts);
    tcase_add_test(tc, test_model_path_errors);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
