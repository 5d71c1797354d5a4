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

int main(void) {
    Suite *s = suite_create("train_config");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_duplicate_keys_refused);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
