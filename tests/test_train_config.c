// lc_train_config_load: the config file and its --set overrides, checked
// before anything is trained (no model is read here).
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "test_util.h"
#include "train/train_config.h"

static char *tmp;
static char cfg_path[4200];

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// Writes tmp/c.json: the required keys plus `extra` JSON members.
static const char *write_config(const char *extra) {
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"m\", \"train_data\": \"t.jsonl\", \"output_dir\": \"out\"%s%s}\n",
                     extra[0] ? ", " : "", extra);
    lc_test_write(tmp, "c.json", text, (size_t)n);
    snprintf(cfg_path, sizeof cfg_path, "%s/c.json", tmp);
    return cfg_path;
}

// Loads `extra` with the overrides (NULL-terminated); returns the status.
static lc_status load(lc_train_config *cfg, const char *extra, const char *const *sets) {
    int n = 0;
    while (sets && sets[n]) n++;
    return lc_train_config_load(cfg, write_config(extra), sets, n);
}

// Expects the load to fail with status `want` and a one-line message that
// holds every needle (NULL-terminated).
static void expect_error(const char *extra, const char *const *sets, lc_status want, const char *const *needles) {
    lc_train_config cfg;
    lc_status st = load(&cfg, extra, sets);
    const char *msg = lc_error_message();
    ck_assert_msg(st == want, "status %d, wanted %d: %s", st, want, msg);
    ck_assert_msg(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "message \"%s\" lacks \"%s\"", msg, needles[i]);
}

START_TEST(test_duplicate_keys_refused) {
    // First-wins would train 3 steps; Python's json takes 6. Neither is a safe guess.
    expect_error("\"steps\": 3, \"seed\": 1, \"steps\": 6", NULL, LC_STATUS_INPUT,
                 (const char *[]){cfg_path, "duplicate key \"steps\"", NULL});
    expect_error("\"steps\": 3, \"lora\": {\"r\": 4, \"alpha\": 8, \"r\": 8}", NULL, LC_STATUS_INPUT,
                 (const char *[]){cfg_path, "duplicate key \"lora.r\"", NULL});
    expect_error("\"steps\": 3, \"lora\": {\"r\": 4}, \"lora\": {\"r\": 8}", NULL, LC_STATUS_INPUT,
                 (const char *[]){cfg_path, "duplicate key \"lora\"", NULL});
    // An override does not hide the duplicate (it would replace only the first).
    expect_error("\"steps\": 3, \"steps\": 6", (const char *[]){"steps=4", NULL}, LC_STATUS_INPUT,
                 (const char *[]){cfg_path, "duplicate key \"steps\"", NULL});
    // The same key in two different objects is no duplicate.
    lc_train_config cfg;
    ck_assert_msg(load(&cfg, "\"steps\": 3, \"lora\": {\"r\": 4}, \"optimizer\": {\"lr\": 0.01}, \"seed\": 2", NULL) ==
                      LC_STATUS_OK,
                  "%s", lc_error_message());
    ck_assert_int_eq(cfg.steps, 3);
    ck_assert_int_eq(cfg.lora.r, 4);
    ck_assert_int_eq((int)cfg.seed, 2);
    lc_train_config_free(&cfg);
}
END_TEST

START_TEST(test_set_value_checked_whole) {
    // cJSON_Parse took a valid prefix: each of these trained.
    expect_error("\"steps\": 3", (const char *[]){"optimizer.lr=0.01abc", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set optimizer.lr=0.01abc: \"optimizer.lr\" must be a number", NULL});
    expect_error("\"steps\": 3", (const char *[]){"seed=1", "steps=10x", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set steps=10x: \"steps\" must be an integer", NULL});
    expect_error("\"steps\": 3", (const char *[]){"lora.r=4 5", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set lora.r=4 5: \"lora.r\" must be an integer", NULL});
    expect_error("\"steps\": 3", (const char *[]){"packing=yes", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set packing=yes: \"packing\" must be true or false", NULL});
    expect_error("\"steps\": 3", (const char *[]){"lora.targets=q_proj", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set lora.targets=q_proj: lora.targets: \"q_proj\" is not \"all-linear\"; name "
                                  "modules in a list",
                                  NULL});
    expect_error("\"steps\": 3", (const char *[]){"lora.targets=3", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set lora.targets=3: \"lora.targets\" must be a string or a list of strings", NULL});
    // Valid JSON of the wrong type or out of range names the --set, not the file.
    expect_error("\"steps\": 3", (const char *[]){"steps=1.5", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set steps=1.5: \"steps\" must be an integer", NULL});
    expect_error("\"steps\": 3", (const char *[]){"lora.r=0", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set lora.r=0: \"lora.r\" is 0, outside 1..4096", NULL});
    expect_error("\"steps\": 3", (const char *[]){"lora={\"r\": \"x\"}", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set lora={\"r\": \"x\"}: \"lora.r\" must be an integer", NULL});
    expect_error("\"steps\": 3", (const char *[]){"schedule.min_lr=1", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set schedule.min_lr=1: ", NULL});
    // A later --set of the same key is the one named.
    expect_error("\"steps\": 3", (const char *[]){"steps=x", "steps=-1", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set steps=-1: \"steps\" is -1", NULL});
    // A bad value from the file still names the file.
    expect_error("\"steps\": 3, \"lora\": {\"r\": 0}", (const char *[]){"lora.alpha=4", NULL}, LC_STATUS_INPUT,
                 (const char *[]){cfg_path, "\"lora.r\" is 0", NULL});
    lc_train_config cfg;
    lc_status st = load(&cfg, "\"steps\": 3", (const char *[]){"optimizer.lr=0.01", "lora.r= 5 ", "packing=true", NULL});
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(cfg.lr == 0.01f && cfg.lora.r == 5 && cfg.packing);
    lc_train_config_free(&cfg);
}
END_TEST

START_TEST(test_set_strings) {
    // Text that is not JSON is a string (paths); so is any non-string JSON
    // given to a string key (output_dir=2024 is a folder name).
    lc_train_config cfg;
    lc_status st = load(&cfg, "\"steps\": 3",
                        (const char *[]){"output_dir=runs/x y", "train_data=2024", "model=\"quoted\"", NULL});
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_str_eq(cfg.output_dir, "runs/x y");
    ck_assert_str_eq(cfg.train_data, "2024");
    ck_assert_str_eq(cfg.model, "quoted");
    lc_train_config_free(&cfg);
    expect_error("\"steps\": 3", (const char *[]){"schedule.type=step", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set schedule.type=step: schedule.type \"step\"", NULL});
    // "compute": fp32 unless bf16 is asked for; nothing else.
    st = load(&cfg, "\"steps\": 3", NULL);
    ck_assert_msg(st == LC_STATUS_OK && cfg.compute == LC_COMPUTE_FP32, "%s", lc_error_message());
    lc_train_config_free(&cfg);
    st = load(&cfg, "\"steps\": 3, \"compute\": \"fp32\"", (const char *[]){"compute=bf16", NULL});
    ck_assert_msg(st == LC_STATUS_OK && cfg.compute == LC_COMPUTE_BF16, "%s", lc_error_message());
    lc_train_config_free(&cfg);
    expect_error("\"steps\": 3", (const char *[]){"compute=fp16", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set compute=fp16: \"compute\" \"fp16\" is not fp32 or bf16", NULL});
}
END_TEST

START_TEST(test_set_empty_unsets) {
    lc_train_config cfg;
    // Switching a steps config to epochs needs steps removed.
    lc_status st = load(&cfg, "\"steps\": 3, \"lora\": {\"r\": 4}", (const char *[]){"steps=", "epochs=1", NULL});
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(cfg.steps, 0);
    ck_assert_int_eq(cfg.epochs, 1);
    ck_assert_int_eq(cfg.lora.r, 4);
    ck_assert_msg(strstr(cfg.json, "\"steps\"") == NULL, "%s", cfg.json); // gone from the recorded config
    lc_train_config_free(&cfg);
    // Unsetting falls back to the default; an absent key (or parent) is no error.
    st = load(&cfg, "\"steps\": 3, \"lora\": {\"r\": 4}",
              (const char *[]){"lora.r=", "optimizer.lr=", "valid_data=", "lora=", "lora.alpha=", NULL});
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(cfg.lora.r, 16);
    ck_assert_msg(strstr(cfg.json, "\"lora\"") == NULL, "%s", cfg.json); // no empty object made
    lc_train_config_free(&cfg);
    // Unsetting a required key leaves it missing.
    expect_error("\"steps\": 3", (const char *[]){"model=", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"\"model\" is required", NULL});
    // Both given: the message names the --set that made it so.
    expect_error("\"steps\": 3", (const char *[]){"epochs=1", NULL}, LC_STATUS_INPUT,
                 (const char *[]){"--set epochs=1: give exactly one of \"steps\" and \"epochs\"", NULL});
    expect_error("\"steps\": 3", (const char *[]){"nope=", NULL}, LC_STATUS_USAGE,
                 (const char *[]){"unknown key \"nope\"", NULL});
}
END_TEST

// Text after the config's object (a second object, a stray brace) was
// dropped unseen; Python's json refuses it too.
START_TEST(test_text_after_the_object_refused) {
    const char *texts[] = {"{\"model\": \"m\"} {\"steps\": 3}\n", "{\"model\": \"m\"}}\n", "{\"model\": \"m\"} x"};
    for (int i = 0; i < 3; i++) {
        lc_test_write(tmp, "c.json", texts[i], strlen(texts[i]));
        snprintf(cfg_path, sizeof cfg_path, "%s/c.json", tmp);
        lc_train_config cfg;
        ck_assert_int_eq(lc_train_config_load(&cfg, cfg_path, NULL, 0), LC_STATUS_INPUT);
        ck_assert_msg(strstr(lc_error_message(), "unexpected text after the JSON value") &&
                          strstr(lc_error_message(), cfg_path),
                      "%s", lc_error_message());
    }
}
END_TEST

// The error message of loading `extra`, which must be refused (a copy).
static char *refusal(const char *extra) {
    lc_train_config cfg;
    ck_assert_int_eq(load(&cfg, extra, NULL), LC_STATUS_INPUT);
    return strdup(lc_error_message());
}

static void expect_exact(const char *extra, const char *want_after_path) {
    char *msg = refusal(extra), want[4600];
    snprintf(want, sizeof want, "%s: %s", cfg_path, want_after_path);
    ck_assert_str_eq(msg, want);
    free(msg);
}

START_TEST(test_targets_all_linear) {
    // PEFT's "all-linear", as the value or the only entry, is what leaving
    // lora.targets out means: every linear of the blocks (lc_lora_init keeps
    // those the model has; the output head is never one).
    const char *forms[] = {"\"steps\": 3", "\"steps\": 3, \"lora\": {\"targets\": \"all-linear\"}",
                           "\"steps\": 3, \"lora\": {\"targets\": [\"all-linear\"]}"};
    for (int i = 0; i < 3; i++) {
        lc_train_config cfg;
        ck_assert_msg(load(&cfg, forms[i], NULL) == LC_STATUS_OK, "%s", lc_error_message());
        ck_assert_uint_eq(cfg.lora.targets, LC_LINEAR_KIND_ALL);
        lc_train_config_free(&cfg);
    }
    lc_train_config cfg;
    cfg.lora.targets = 0;
    ck_assert_msg(load(&cfg, "\"steps\": 3, \"lora\": {\"targets\": [\"q_proj\"]}",
                       (const char *[]){"lora.targets=all-linear", NULL}) == LC_STATUS_OK,
                  "%s", lc_error_message());
    ck_assert_uint_eq(cfg.lora.targets, LC_LINEAR_KIND_ALL);
    lc_train_config_free(&cfg);
    expect_exact("\"steps\": 3, \"lora\": {\"targets\": [\"q_proj\", \"all-linear\"]}",
                 "lora.targets: \"all-linear\" must be the only entry");
    expect_exact("\"steps\": 3, \"lora\": {\"targets\": \"all\"}",
                 "lora.targets: \"all\" is not \"all-linear\"; name modules in a list");
}
END_TEST

START_TEST(test_layers_forms) {
    lc_train_config cfg;
    ck_assert_msg(load(&cfg, "\"steps\": 3, \"lora\": {\"layers\": [5, 0, 2]}", NULL) == LC_STATUS_OK, "%s",
                  lc_error_message());
    ck_assert_int_eq(cfg.lora.layers_last, 0);
    ck_assert_uint_eq(cfg.lora.layers[0], (1u << 0) | (1u << 2) | (1u << 5));
    for (int w = 1; w < LC_LORA_MAX_LAYERS / 64; w++) ck_assert_uint_eq(cfg.lora.layers[w], 0);
    lc_train_config_free(&cfg);
    ck_assert_msg(load(&cfg, "\"steps\": 3", (const char *[]){"lora.layers={\"last\": 3}", NULL}) == LC_STATUS_OK, "%s",
                  lc_error_message());
    ck_assert_int_eq(cfg.lora.layers_last, 3);
    ck_assert_uint_eq(cfg.lora.layers[0], 0);
    // Resolved for a model of 5 layers: the last 3 are 2, 3, 4.
    ck_assert_int_eq(lc_lora_layers_resolve(&cfg.lora, 5), LC_STATUS_OK);
    ck_assert_int_eq(cfg.lora.layers_last, 0);
    ck_assert_uint_eq(cfg.lora.layers[0], (1u << 2) | (1u << 3) | (1u << 4));
    lc_train_config_free(&cfg);
    // Whether an index fits is known once the model is.
    ck_assert_msg(load(&cfg, "\"steps\": 3", (const char *[]){"lora.layers=[1000]", NULL}) == LC_STATUS_OK, "%s",
                  lc_error_message());
    ck_assert_int_eq(lc_lora_layers_resolve(&cfg.lora, 5), LC_STATUS_INPUT);
    ck_assert_str_eq(lc_error_message(), "lora.layers: layer 1000 is out of range: the model has 5 layers (0..4)");
    lc_train_config_free(&cfg);
    // "all", the --help default, and as --set lora.layers=all: every layer, as absent.
    const char *all[] = {"lora.layers=all", "lora.layers=\"all\"", NULL};
    for (int i = 0; all[i]; i++) {
        ck_assert_msg(load(&cfg, "\"steps\": 3", (const char *[]){all[i], NULL}) == LC_STATUS_OK, "%s",
                      lc_error_message());
        ck_assert_int_eq(cfg.lora.layers_last, 0);
        ck_assert_uint_eq(cfg.lora.layers[0], 0);
        lc_train_config_free(&cfg);
    }
    ck_assert_msg(load(&cfg, "\"steps\": 3, \"lora\": {\"layers\": {\"last\": 6}}", NULL) == LC_STATUS_OK, "%s",
                  lc_error_message());
    ck_assert_int_eq(lc_lora_layers_resolve(&cfg.lora, 5), LC_STATUS_INPUT);
    ck_assert_str_eq(lc_error_message(), "lora.layers: last 6 is more than the model's 5 layers");
    lc_train_config_free(&cfg);
}
END_TEST

START_TEST(test_layers_refused) {
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": []}", "\"lora.layers\" is empty");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": [1, 3, 1]}", "lora.layers: layer 1 is listed twice");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": [0, -1]}", "lora.layers: layer -1 is out of range (0..1023)");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": [1.5]}",
                 "\"lora.layers\" must be a list of layer indices, {\"last\": N} or \"all\"");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": \"some\"}",
                 "\"lora.layers\" must be a list of layer indices, {\"last\": N} or \"all\"");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": {\"last\": 0}}",
                 "\"lora.layers\" as an object must be {\"last\": N}, N in 1..1024");
    expect_exact("\"steps\": 3, \"lora\": {\"layers\": {\"first\": 2}}",
                 "\"lora.layers\" as an object must be {\"last\": N}, N in 1..1024");
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_config");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_duplicate_keys_refused);
    tcase_add_test(tc, test_set_value_checked_whole);
    tcase_add_test(tc, test_set_strings);
    tcase_add_test(tc, test_set_empty_unsets);
    tcase_add_test(tc, test_text_after_the_object_refused);
    tcase_add_test(tc, test_targets_all_linear);
    tcase_add_test(tc, test_layers_forms);
    tcase_add_test(tc, test_layers_refused);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
