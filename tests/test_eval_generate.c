// Task accuracy from generation: the answer extractors on GSM8K and MGSM
// references and on hand-written predictions; `lora eval --generate` on
// stories260K against the PyTorch reference's own greedy continuations
// (tests/reference/greedy_reference.py): exact match 1.0, and 0.5 with half
// of them altered; batching changes no answer; chat data; refusals. In
// training: eval_generate rows, early stopping (where it stops, the best
// checkpoint kept and loaded by --adapter RUN_DIR, its state across a resume).
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "data/score.h"
#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define GREEDY LC_SOURCE_DIR "/tests/fixtures/greedy_stories260k.jsonl"

static char *tmp;
static const char *es_config(const char *extra);

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

static void expect_number(const char *text, bool reference, const char *want) {
    char got[128];
    bool found = lc_score_number(text, reference, got, sizeof got);
    if (!want) {
        ck_assert_msg(!found, "\"%s\": found %s, wanted none", text, got);
        return;
    }
    ck_assert_msg(found, "\"%s\": no number, wanted %s", text, want);
    ck_assert_msg(!strcmp(got, want), "\"%s\": %s, wanted %s", text, got, want);
}

START_TEST(test_number_extraction) {
    // Predictions: "####" first, then "answer is", then the last number.
    expect_number("She has 3 + 4 = 7 apples.\n#### 1,234", false, "1234");
    expect_number("#### -5", false, "-5");
    expect_number("The answer is 42.0, not 41", false, "42");
    expect_number("So THE ANSWER IS $1,000.50 today", false, "1000.5");
    expect_number("It costs $12 for 3 kg, 8 in all", false, "8");
    expect_number("8-3=5", false, "5");
    expect_number("The change is -3 degrees", false, "-3");
    expect_number("0.50 of 2", false, "2");
    expect_number("about 0.50", false, "0.5");
    expect_number("007 agents", false, "7");
    expect_number("100% sure", false, "100");
    expect_number("La respuesta es 70 000.", false, "70000");     // MGSM es groups with spaces
    expect_number("Die Antwort ist 70.000.", false, "70000");     // de with dots
    expect_number("Il paie 80\xc2\xa0" "000 euros", false, "80000"); // fr with a no-break space
    expect_number("Elle paie 2,5 dollars.", false, "2.5");        // a decimal comma
    expect_number("It is 1,234,567.89 in all", false, "1234567.89");
    expect_number("The numbers are 1,2,3", false, "3");
    expect_number("no number at all", false, NULL);
    expect_number("", false, NULL);
    // A reference ignores "answer is": only "####" or its last number count.
    expect_number("the answer is 3; 4 people", true, "4");
    expect_number("2,125", true, "2125");
    ck_assert(lc_score_match(LC_METRIC_NUMBER, "The answer is 18.", "... 9 * 2 = 18\n#### 18"));
    ck_assert(lc_score_match(LC_METRIC_NUMBER, "#### 42.00", "42"));
    ck_assert(!lc_score_match(LC_METRIC_NUMBER, "#### 41", "42"));
    ck_assert(!lc_score_match(LC_METRIC_NUMBER, "no idea", "42"));
    ck_assert(lc_score_match(LC_METRIC_EXACT, "  a b\n", "a b"));
    ck_assert(!lc_score_match(LC_METRIC_EXACT, "a  b", "a b"));
    ck_assert(lc_score_match(LC_METRIC_CONTAINS, "it is Paris, France", " Paris "));
    ck_assert(!lc_score_match(LC_METRIC_CONTAINS, "it is Lyon", "Paris"));
}
END_TEST

// Every reference of a real file: GSM8K's number is the text after "####"
// without thousands separators; MGSM's completion is the number itself.
static void check_file(const char *path, bool gsm8k) {
    char *text = lc_test_read(path, NULL);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        ck_assert_ptr_nonnull(row);
        const char *ref = cJSON_GetObjectItem(row, "completion")->valuestring;
        const char *from = gsm8k ? strstr(ref, "#### ") : ref;
        ck_assert_msg(from != NULL, "%s: no ####", ref);
        char want[128];
        size_t k = 0;
        for (const char *p = gsm8k ? from + 5 : from; *p && k + 1 < sizeof want; p++)
            if (*p != ',') want[k++] = *p;
        want[k] = 0;
        char got[128];
        ck_assert_msg(lc_score_number(ref, true, got, sizeof got), "%s: no number", ref);
        ck_assert_msg(!strcmp(got, want), "%s: %s, wanted %s", ref, got, want);
        ck_assert(lc_score_match(LC_METRIC_NUMBER, ref, ref));
        cJSON_Delete(row);
        n++;
    }
    ck_assert_int_gt(n, 200);
    free(text);
}

START_TEST(test_real_references) {
    check_file(LC_SHARED_DIR "/data/gsm8k_test.jsonl", true);
    check_file(LC_SHARED_DIR "/data/mgsm_es.jsonl", false);
    check_file(LC_SHARED_DIR "/data/mgsm_bn.jsonl", false);
}
END_TEST

static lc_test_run eval_generate(const char *data, const char *metric, const char *batch, const char *predictions) {
    const char *args[] = {"eval", "--generate", "--model", MODEL_DIR, "--data", data, "--metric", metric,
                          "--max-tokens", "24", "--batch-size", batch, "--predictions", predictions, NULL};
    return lc_test_lora(args);
}

START_TEST(test_reference_continuations) {
    char p1[4300], p3[4300], altered[4300];
    snprintf(p1, sizeof p1, "%s/p1.jsonl", tmp);
    snprintf(p3, sizeof p3, "%s/p3.jsonl", tmp);
    lc_test_run r = eval_generate(GREEDY, "exact", "1", p1);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "\"metric\": \"exact\", \"accuracy\": 1.000000, \"correct\": 8, \"n\": 8,"), "%s",
                  r.out);
    lc_test_run_free(&r);
    // Batches of 3 (the last short, prompts of different lengths left-padded)
    // give every answer unchanged.
    r = eval_generate(GREEDY, "exact", "3", p3);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char *a = lc_test_read(p1, NULL), *b = lc_test_read(p3, NULL);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(lc_test_count_lines(a), 8);
    free(a);
    free(b);

    // Half the completions altered: 0.5.
    char *text = lc_test_read(GREEDY, NULL), out[16384];
    size_t len = 0;
    int i = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), i++) {
        cJSON *row = cJSON_Parse(line);
        if (i % 2) {
            cJSON *c = cJSON_GetObjectItem(row, "completion");
            char changed[1024];
            snprintf(changed, sizeof changed, "%s and then", c->valuestring);
            cJSON_SetValuestring(c, changed);
        }
        char *s = cJSON_PrintUnformatted(row);
        len += (size_t)snprintf(out + len, sizeof out - len, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(row);
    }
    free(text);
    lc_test_write(tmp, "altered.jsonl", out, len);
    snprintf(altered, sizeof altered, "%s/altered.jsonl", tmp);
    r = eval_generate(altered, "exact", "4", p1);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "\"accuracy\": 0.500000, \"correct\": 4, \"n\": 8,"), "%s", r.out);
    lc_test_run_free(&r);
    a = lc_test_read(p1, NULL);
    ck_assert_int_eq(lc_test_count_lines(a), 8);
    ck_assert_msg(strstr(a, "\"line\":2,") && strstr(a, "\"correct\":false"), "%s", a);
    free(a);
    // contains: each altered reference is longer than the answer, so only the
    // unaltered half is contained.
    r = eval_generate(altered, "contains", "8", p1);
    ck_assert_msg(strstr(r.out, "\"accuracy\": 0.500000"), "%s", r.out);
    lc_test_run_free(&r);
}
END_TEST

// Chat data: scored on the last assistant turn, its reference the message.
START_TEST(test_chat_data) {
    char pred[4300];
    snprintf(pred, sizeof pred, "%s/chat.jsonl", tmp);
    const char *args[] = {"eval", "--generate", "--model", MODEL_DIR, "--data", LC_SHARED_DIR "/data/alpaca_tiny_chat.jsonl",
                          "--chat-template", LC_SOURCE_DIR "/configs/chat_plain.jinja", "--limit", "3",
                          "--metric", "contains", "--max-tokens", "8", "--predictions", pred, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "\"metric\": \"contains\"") && strstr(r.out, "\"n\": 3,"), "%s", r.out);
    lc_test_run_free(&r);
    char *text = lc_test_read(pred, NULL);
    ck_assert_int_eq(lc_test_count_lines(text), 3);
    ck_assert_msg(strstr(text, "\"reference\":\"1.Eat a balanced diet"), "%s", text);
    ck_assert_msg(strstr(text, "Assistant:\\n\",\"prediction\""), "the prompt does not end at the assistant turn: %s",
                  text);
    free(text);
}
END_TEST

static void expect_refused(const char *const *args, int status, const char *needle) {
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == status, "exit %d, wanted %d: %s", r.status, status, r.err);
    ck_assert_msg(strstr(r.err, needle) && lc_test_count_lines(r.err) == 1, "%s", r.err);
    lc_test_run_free(&r);
}

START_TEST(test_refusals) {
    const char *bad_metric[] = {"eval", "--generate", "--model", MODEL_DIR, "--data", GREEDY, "--metric", "f1", NULL};
    expect_refused(bad_metric, 1, "--metric \"f1\" is not exact, number or contains");
    const char *no_generate[] = {"eval", "--model", MODEL_DIR, "--data", GREEDY, "--max-tokens", "3", NULL};
    expect_refused(no_generate, 1, "--max-tokens needs --generate");
    const char *rows = "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"text\": \"once\"}\n";
    lc_test_write(tmp, "text.jsonl", rows, strlen(rows));
    char path[4300];
    snprintf(path, sizeof path, "%s/text.jsonl", tmp);
    const char *text_rows[] = {"eval", "--generate", "--model", MODEL_DIR, "--data", path, NULL};
    expect_refused(text_rows, 2, "text.jsonl:2: no reference answer to score");
    const char *cfg = es_config("\"eval_generate\": {\"every\": 2}, \"mask_prompt\": false, \"steps\": 4");
    const char *no_mask[] = {"train", "--config", cfg, NULL};
    expect_refused(no_mask, 2, "\"eval_generate\" needs \"mask_prompt\": true");
}
END_TEST

// A run whose eval loss never improves by min_delta 10 after its first
// evaluation: evaluations at 2 (best), 4 and 6 stop it after step 6 with
// patience 2; the best checkpoint survives keep_checkpoints 1 and is what
// --adapter RUN_DIR loads.
static const char *es_config(const char *extra) {
    static char path[4300];
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\",\n"
                     " \"valid_split\": 0.2, \"lora\": {\"r\": 4, \"alpha\": 8}, \"optimizer\": {\"lr\": 3e-3},\n"
                     " \"schedule\": {\"type\": \"constant\"}, \"batch_size\": 4, \"max_seq_len\": 128, \"seed\": 5,\n"
                     " \"eval_every\": 2, \"save_every\": 3, \"keep_checkpoints\": 1%s%s}\n",
                     MODEL_DIR, LC_SHARED_DIR "/data/alpaca_tiny.jsonl", tmp, extra[0] ? ", " : "", extra);
    lc_test_write(tmp, "es.json", text, (size_t)n);
    snprintf(path, sizeof path, "%s/es.json", tmp);
    return path;
}

static lc_test_run train(const char *cfg, const char *set1, const char *set2) {
    const char *args[] = {"train", "--config", cfg, "--set", set1, "--set", set2, NULL};
    return lc_test_lora(args);
}

static bool run_has(const char *name) {
    char path[4300];
    snprintf(path, sizeof path, "%s/run/%s", tmp, name);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static char *eval_out(const char *adapter) {
    const char *args[] = {"eval", "--model", MODEL_DIR, "--adapter", adapter, "--data",
                          LC_SHARED_DIR "/data/alpaca_tiny.jsonl", "--max-seq-len", "128", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *out = strdup(r.out);
    lc_test_run_free(&r);
    return out;
}

START_TEST(test_early_stopping) {
    const char *cfg = es_config("\"early_stopping\": {\"patience\": 2, \"min_delta\": 10}");
    lc_test_run r = train(cfg, "steps=20", "threads=0");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.err, "early stopping after step 6: eval loss has not improved by more than 10 in 2 "
                               "evaluations"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "best checkpoint") && strstr(r.err, "checkpoint-2.h5 (eval loss"), "%s", r.err);
    lc_test_run_free(&r);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *metrics = lc_test_read(path, NULL);
    const char *last = metrics + strlen(metrics) - 2;
    while (last > metrics && last[-1] != '\n') last--;
    const char *want = "{\"step\": 6, \"early_stopping\": \"stopped\", \"best_checkpoint\": \"checkpoint-2.h5\", "
                       "\"best_step\": 2, \"best_eval_loss\": ";
    ck_assert_msg(!strncmp(last, want, strlen(want)), "%s", last);
    ck_assert_msg(!strstr(metrics, "{\"step\": 7,"), "trained past the stop");
    free(metrics);
    // keep_checkpoints 1 keeps the newest (6) and the best (2); 3 is gone.
    ck_assert(run_has("checkpoint-2.h5") && run_has("checkpoint-6.h5") && !run_has("checkpoint-3.h5"));
    char run[4300], best[4300], newest[4300];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(best, sizeof best, "%s/run/checkpoint-2.h5", tmp);
    snprintf(newest, sizeof newest, "%s/run/checkpoint-6.h5", tmp);
    char *a = eval_out(run), *b = eval_out(best), *c = eval_out(newest);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
    free(a);
    free(b);
    free(c);
    // The same command again trains nothing.
    r = train(cfg, "steps=20", "threads=0");
    ck_assert_msg(r.status == 0 && strstr(r.err, "early stopping ended this run at step 6"), "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// Resumed, the run keeps its counters: 2 (best) and 4 before the resume, 6
// and 8 after it stop it at 8 with patience 3 (a run that forgot them would
// take 6 as a new best and go on to 12).
START_TEST(test_early_stopping_resume) {
    const char *cfg = es_config("\"early_stopping\": {\"patience\": 3, \"min_delta\": 10}");
    lc_test_run r = train(cfg, "steps=4", "threads=0");
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    r = train(cfg, "steps=20", "threads=0");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.err, "resuming from") && strstr(r.err, "early stopping after step 8:"), "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// A run killed during the evaluation that stops it resumes, evaluates that
// step first and stops there, as the uninterrupted run did (simulated: the
// evaluation and stop rows removed from metrics.jsonl).
START_TEST(test_early_stopping_missing_evaluation) {
    const char *cfg = es_config("\"early_stopping\": {\"patience\": 2, \"min_delta\": 10}");
    lc_test_run r = train(cfg, "eval_every=3", "steps=20");
    ck_assert_msg(r.status == 0 && strstr(r.err, "early stopping after step 9:"), "%s", r.err);
    lc_test_run_free(&r);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cd '%s/run' && grep -v '\"step\": 9, \"eval_loss\"\\|early_stopping' metrics.jsonl > m && "
             "mv m metrics.jsonl", tmp);
    ck_assert_int_eq(system(cmd), 0);
    r = train(cfg, "eval_every=3", "steps=20");
    ck_assert_msg(r.status == 0 && strstr(r.err, "step 9: its evaluation is missing") &&
                  strstr(r.err, "early stopping after step 9:"), "%s", r.err);
    lc_test_run_free(&r);
    ck_assert(!run_has("checkpoint-10.h5"));
}
END_TEST

// eval_generate adds accuracy rows on the validation data.
START_TEST(test_eval_generate_during_training) {
    const char *cfg = es_config("\"eval_generate\": {\"every\": 3, \"limit\": 5, \"metric\": \"contains\", "
                                "\"max_tokens\": 8}");
    lc_test_run r = train(cfg, "steps=6", "threads=0");
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char path[4300];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *metrics = lc_test_read(path, NULL);
    ck_assert_msg(strstr(metrics, "{\"step\": 3, \"eval_accuracy\": ") &&
                  strstr(metrics, "{\"step\": 6, \"eval_accuracy\": ") && strstr(metrics, "\"eval_n\": 5}"),
                  "%s", metrics);
    free(metrics);
    snprintf(path, sizeof path, "%s/run/loss.svg", tmp);
    char *svg = lc_test_read(path, NULL);
    ck_assert_msg(strstr(svg, "class=\"accuracy\""), "no accuracy in the plot");
    free(svg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("eval_generate");
    TCase *tc = tcase_create("eval_generate");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_number_extraction);
    tcase_add_test(tc, test_real_references);
    tcase_add_test(tc, test_reference_continuations);
    tcase_add_test(tc, test_chat_data);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_early_stopping);
    tcase_add_test(tc, test_early_stopping_resume);
    tcase_add_test(tc, test_early_stopping_missing_evaluation);
    tcase_add_test(tc, test_eval_generate_during_training);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
