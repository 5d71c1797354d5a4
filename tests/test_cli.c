// The `lora` executable end to end: generate, tokenize, inspect, and the
// exit status and one-line error of each failure.
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define STORY "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

START_TEST(test_generate_greedy_story) {
    const char *args[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "60", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strncmp(r.out, STORY, strlen(STORY)) == 0, "stdout: %s", r.out);
    ck_assert_msg(strstr(r.err, "tokens/s") != NULL, "speed note missing from stderr: %s", r.err);
    ck_assert_ptr_null(strstr(r.out, "tokens/s")); // stdout holds only text
    lc_test_run_free(&r);
}
END_TEST

START_TEST(test_generate_ids_and_bos_start) {
    const char *args[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "3", "--ids", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_int_eq(r.status, 0);
    // BOS, the four prompt tokens, then greedy ", there was" continues the story.
    ck_assert_msg(strncmp(r.out, "1 403 407 261 378 ", 18) == 0, "stdout: %s", r.out);
    lc_test_run_free(&r);

    const char *bos_only[] = {"generate", "--model", MODEL_DIR, "--temperature", "0", "--max-tokens", "1",
                              "--ids", NULL};
    r = lc_test_lora(bos_only);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strncmp(r.out, "1 ", 2) == 0, "stdout: %s", r.out);
    lc_test_run_free(&r);
}
END_TEST

START_TEST(test_generate_seeded_sampling_reproducible) {
    const char *a[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once", "--temperature", "1.0",
                       "--top-k", "0", "--top-p", "1", "--seed", "7", "--max-tokens", "40", NULL};
    const char *b[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once", "--temperature", "1.0",
                       "--top-k", "0", "--top-p", "1", "--seed", "8", "--max-tokens", "40", NULL};
    lc_test_run r1 = lc_test_lora(a), r2 = lc_test_lora(a), r3 = lc_test_lora(b);
    ck_assert_int_eq(r1.status, 0);
    ck_assert_str_eq(r1.out, r2.out);
    ck_assert_str_ne(r1.out, r3.out);
    lc_test_run_free(&r1);
    lc_test_run_free(&r2);
    lc_test_run_free(&r3);
}
END_TEST

START_TEST(test_top_k_one_is_greedy) {
    const char *greedy[] = {"generate", "--model", MODEL_DIR, "--prompt", "Lily", "--temperature", "0",
                            "--max-tokens", "30", NULL};
    const char *topk1[] = {"generate", "--model", MODEL_DIR, "--prompt", "Lily", "--temperature", "1.5",
                           "--top-k", "1", "--seed", "3", "--max-tokens", "30", NULL};
    lc_test_run r1 = lc_test_lora(greedy), r2 = lc_test_lora(topk1);
    ck_assert_int_eq(r1.status, 0);
    ck_assert_str_eq(r1.out, r2.out);
    lc_test_run_free(&r1);
    lc_test_run_free(&r2);
}
END_TEST

START_TEST(test_tokenize) {
    const char *args[] = {"tokenize", "--model", MODEL_DIR, "--text", "Once upon a time", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "1 403 407 261 378\n");
    lc_test_run_free(&r);
    const char *nobos[] = {"tokenize", "--tokenizer", MODEL_DIR "/tokenizer.json", "--text", "Once upon a time",
                           "--no-bos", NULL};
    r = lc_test_lora(nobos);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "403 407 261 378\n");
    lc_test_run_free(&r);
}
END_TEST

START_TEST(test_inspect) {
    const char *args[] = {"inspect", MODEL_DIR, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "architecture   llama"));
    ck_assert_ptr_nonnull(strstr(r.out, "heads          8 query, 4 key/value, head_dim 8"));
    ck_assert_ptr_nonnull(strstr(r.out, "model.layers.4.mlp.down_proj.weight"));
    lc_test_run_free(&r);
    const char *gguf[] = {"inspect", LC_SHARED_DIR "/models/stories260K.gguf", NULL};
    r = lc_test_lora(gguf);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "general.architecture"));
    ck_assert_ptr_nonnull(strstr(r.out, "\"llama\""));
    ck_assert_ptr_nonnull(strstr(r.out, "blk.4.ffn_down.weight"));
    lc_test_run_free(&r);
    const char *st[] = {"inspect", MODEL_DIR "/model.safetensors", NULL};
    r = lc_test_lora(st);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "model.embed_tokens.weight"));
    lc_test_run_free(&r);
}
END_TEST

// Asserts exit status `status` and a single stderr line containing `needle`.
// `lora generate --ids` greedily from "Once upon a time" for up to 10
// tokens on dir: the prompt's ids then the continuation's, into ids.
static int greedy_ids(const char *dir, int32_t *ids, int cap) {
    const char *args[] = {"generate", "--model", dir, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "10", "--ids", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    int n = 0;
    char *p = r.out, *end;
    for (long v = strtol(p, &end, 10); end != p && n < cap; v = strtol(p, &end, 10)) {
        ids[n++] = (int32_t)v;
        p = end;
    }
    lc_test_run_free(&r);
    return n;
}

// A new folder with stories260K's weights and tokenizer whose config.json
// says "eos_token_id": eos, plus a generation_config.json saying gen_eos
// unless NULL (caller removes it).
static char *eos_model(const char *eos, const char *gen_eos) {
    char *dir = lc_test_tmpdir(), text[4096];
    char *cfg = lc_test_read(MODEL_DIR "/config.json", NULL);
    const char *key = "\"eos_token_id\": 2";
    char *at = strstr(cfg, key);
    ck_assert_ptr_nonnull(at);
    int n = snprintf(text, sizeof text, "%.*s\"eos_token_id\": %s%s", (int)(at - cfg), cfg, eos, at + strlen(key));
    lc_test_write(dir, "config.json", text, (size_t)n);
    if (gen_eos) {
        n = snprintf(text, sizeof text, "{\"bos_token_id\": 1, \"eos_token_id\": %s}\n", gen_eos);
        lc_test_write(dir, "generation_config.json", text, (size_t)n);
    }
    lc_test_copy(MODEL_DIR "/model.safetensors", dir, "model.safetensors");
    lc_test_copy(MODEL_DIR "/tokenizer.json", dir, "tokenizer.json");
    lc_test_copy(MODEL_DIR "/tokenizer_config.json", dir, "tokenizer_config.json");
    free(cfg);
    return dir;
}

static bool occurs(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

// eos_token_id as a list (Llama 3 instruct: [128001, 128008, 128009]):
// generation stops at any of its ids, not only the first. The stop listed
// second is a token greedy decoding reaches a few steps in.
START_TEST(test_generate_stops_at_any_listed_eos) {
    enum { PROMPT = 5, NEW = 10 }; // BOS and the four prompt tokens, then the continuation
    int32_t base[32], got[32];
    ck_assert_int_eq(greedy_ids(MODEL_DIR, base, 32), PROMPT + NEW);
    // The first continuation token from the third on that has not come before.
    int k = 2;
    while (k < NEW && occurs(base + PROMPT, k, base[PROMPT + k])) k++;
    ck_assert_int_lt(k, NEW);
    char list[64];
    snprintf(list, sizeof list, "[2, %d]", base[PROMPT + k]);
    // config.json's eos_token_id, generation_config.json's (NULL: no file), and whether step k stops.
    const struct {
        const char *config, *generation;
        bool stops;
    } cases[] = {
        {list, NULL, true}, // config.json's list
        {"2", list, true},  // generation_config.json's, which generation reads
        {list, "2", false}, // instead of config.json's, as transformers does
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = eos_model(cases[c].config, cases[c].generation);
        int n = greedy_ids(dir, got, 32);
        int want = cases[c].stops ? PROMPT + k + 1 : PROMPT + NEW;
        ck_assert_msg(n == want, "case %zu: %d ids, want %d", c, n, want);
        ck_assert(memcmp(got, base, sizeof(int32_t) * (size_t)n) == 0);
        lc_test_rmdir(dir);
        free(dir);
    }
}
END_TEST

static void expect_failure(const char *const *args, int status, const char *needle) {
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == status, "exit %d, wanted %d: %s", r.status, status, r.err);
    ck_assert_msg(strstr(r.err, needle) != NULL, "stderr \"%s\" lacks \"%s\"", r.err, needle);
    ck_assert_msg(lc_test_count_lines(r.err) == 1, "stderr is not one line: %s", r.err);
    ck_assert_str_eq(r.out, "");
    lc_test_run_free(&r);
}

// The generated ids after the echoed prompt of `--ids` output; returns their count.
static int parse_ids(const char *out, int skip, int *ids, int cap) {
    int n = 0, k = 0, id, used;
    while (sscanf(out, "%d%n", &id, &used) == 1) {
        out += used;
        if (k++ >= skip && n < cap) ids[n++] = id;
    }
    return n;
}

START_TEST(test_generate_prompt_file_and_stdin) {
    // A multi-line prompt ending in a newline: --prompt-file and --prompt - keep its bytes as they are.
    const char *text = "Once upon a time\nthere was";
    char with_nl[64];
    snprintf(with_nl, sizeof with_nl, "%s\n", text);
    char *tmp = lc_test_tmpdir(), path[600];
    lc_test_write(tmp, "prompt.txt", with_nl, strlen(with_nl));
    snprintf(path, sizeof path, "%s/prompt.txt", tmp);
    const char *inline_args[] = {"generate", "--model", MODEL_DIR, "--prompt", with_nl, "--temperature", "0",
                                 "--max-tokens", "8", NULL};
    const char *file_args[] = {"generate", "--model", MODEL_DIR, "--prompt-file", path, "--temperature", "0",
                               "--max-tokens", "8", NULL};
    const char *stdin_args[] = {"generate", "--model", MODEL_DIR, "--prompt", "-", "--temperature", "0",
                                "--max-tokens", "8", NULL};
    const char *short_args[] = {"generate", "--model", MODEL_DIR, "--prompt", text, "--temperature", "0",
                                "--max-tokens", "8", NULL};
    lc_test_run a = lc_test_lora(inline_args), b = lc_test_lora(file_args), c = lc_test_lora_stdin(stdin_args, with_nl);
    lc_test_run d = lc_test_lora(short_args);
    ck_assert_msg(a.status == 0 && b.status == 0 && c.status == 0 && d.status == 0, "%s%s%s", a.err, b.err, c.err);
    ck_assert_msg(strncmp(a.out, with_nl, strlen(with_nl)) == 0 && strlen(a.out) > strlen(with_nl) + 1, "%s", a.out);
    ck_assert_str_eq(b.out, a.out);
    ck_assert_str_eq(c.out, a.out);
    ck_assert_str_ne(d.out, a.out); // the final newline is part of the prompt
    lc_test_run_free(&a);
    lc_test_run_free(&b);
    lc_test_run_free(&c);
    lc_test_run_free(&d);

    char missing[640], want[700];
    snprintf(missing, sizeof missing, "%s/none.txt", tmp);
    snprintf(want, sizeof want, "lora generate: %s: cannot open: No such file or directory\n", missing);
    lc_test_run r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--prompt-file", missing, NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    ck_assert_str_eq(r.out, "");
    lc_test_run_free(&r);
    // An empty prompt is refused rather than generating from BOS; invalid UTF-8 is refused naming its file.
    r = lc_test_lora_stdin((const char *[]){"generate", "--model", MODEL_DIR, "--prompt", "-", NULL}, "");
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "lora generate: --prompt -: stdin is empty\n");
    ck_assert_str_eq(r.out, "");
    lc_test_run_free(&r);
    lc_test_write(tmp, "empty.txt", "", 0);
    snprintf(missing, sizeof missing, "%s/empty.txt", tmp);
    snprintf(want, sizeof want, "lora generate: %s: is empty\n", missing);
    r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--prompt-file", missing, NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);
    lc_test_write(tmp, "bad.txt", "ab\xff", 3);
    snprintf(missing, sizeof missing, "%s/bad.txt", tmp);
    snprintf(want, sizeof want, "lora generate: %s: text is not valid UTF-8 (byte 2)\n", missing);
    r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--prompt-file", missing, "--seed", "1", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);
    r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--prompt", "x", "--prompt-file", path, NULL});
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "lora generate: give --prompt TEXT or --prompt-file FILE, not both\n");
    lc_test_run_free(&r);
    r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--prompt-file", path, "--chat", "Hi", NULL});
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "lora generate: give --prompt-file FILE or --chat TEXT, not both\n");
    lc_test_run_free(&r);
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_generate_stop_strings) {
    const char *prompt = "Once upon a time";
    const char *plain[] = {"generate", "--model", MODEL_DIR, "--prompt", prompt, "--temperature", "0",
                           "--max-tokens", "40", NULL};
    lc_test_run r = lc_test_lora(plain);
    ck_assert_int_eq(r.status, 0);
    // A stop string the greedy continuation is known to hold: 4 bytes from its middle.
    const char *cont = r.out + strlen(prompt);
    size_t n = strlen(cont) - 1; // without the final newline
    ck_assert_msg(n >= 20, "short continuation: %s", r.out);
    char stop[8] = {0}, tail[8] = {0};
    memcpy(stop, cont + n / 2, 4);
    memcpy(tail, cont + n - 3, 3); // the end of the text, then a byte it does not hold
    tail[3] = '\x01';
    size_t at = (size_t)(strstr(cont, stop) - cont);
    char want[512];
    snprintf(want, sizeof want, "%s%.*s\n", prompt, (int)at, cont);

    const char *stopped[] = {"generate", "--model", MODEL_DIR, "--prompt", prompt, "--temperature", "0",
                             "--max-tokens", "40", "--stop", "never there", "--stop", stop, NULL};
    lc_test_run s = lc_test_lora(stopped);
    ck_assert_int_eq(s.status, 0);
    ck_assert_str_eq(s.out, want);
    lc_test_run_free(&s);
    // A stop string the text only begins: what was held back is printed at the end.
    const char *held[] = {"generate", "--model", MODEL_DIR, "--prompt", prompt, "--temperature", "0",
                          "--max-tokens", "40", "--stop", tail, NULL};
    s = lc_test_lora(held);
    ck_assert_int_eq(s.status, 0);
    ck_assert_str_eq(s.out, r.out);
    lc_test_run_free(&s);
    lc_test_run_free(&r);

    // With --ids: the tokens before the one that reaches into the stop string.
    const char *ids_plain[] = {"generate", "--model", MODEL_DIR, "--prompt", prompt, "--temperature", "0",
                               "--max-tokens", "40", "--ids", NULL};
    const char *ids_stop[] = {"generate", "--model", MODEL_DIR, "--prompt", prompt, "--temperature", "0",
                              "--max-tokens", "40", "--ids", "--stop", stop, NULL};
    r = lc_test_lora(ids_plain);
    s = lc_test_lora(ids_stop);
    ck_assert_int_eq(s.status, 0);
    int all[64], cut[64];
    int n_all = parse_ids(r.out, 0, all, 64), n_cut = parse_ids(s.out, 0, cut, 64);
    ck_assert_int_lt(n_cut, n_all);
    for (int i = 0; i < n_cut; i++) ck_assert_int_eq(cut[i], all[i]);
    lc_test_run_free(&r);
    lc_test_run_free(&s);
    // " there" is the first token generated after "Once upon a time," (▁there, 383), its space
    // coming from the detokenizer primed with the prompt: text mode prints no token, and --ids
    // cuts at the same place, leaving exactly the prompt's ids.
    const char *p2 = "Once upon a time,";
    const char *t_stop[] = {"generate", "--model", MODEL_DIR, "--prompt", p2, "--temperature", "0",
                            "--max-tokens", "4", "--stop", " there", NULL};
    const char *i_all[] = {"generate", "--model", MODEL_DIR, "--prompt", p2, "--temperature", "0",
                           "--max-tokens", "4", "--ids", NULL};
    const char *i_stop[] = {"generate", "--model", MODEL_DIR, "--prompt", p2, "--temperature", "0",
                            "--max-tokens", "4", "--ids", "--stop", " there", NULL};
    lc_test_run t = lc_test_lora(t_stop);
    ck_assert_str_eq(t.out, "Once upon a time,\n");
    lc_test_run_free(&t);
    r = lc_test_lora(i_all);
    s = lc_test_lora(i_stop);
    ck_assert_int_eq(s.status, 0);
    int n_prompt = -1;
    const char *stats = strstr(r.err, "lora generate: ");
    ck_assert(stats && sscanf(stats, "lora generate: %d prompt tokens", &n_prompt) == 1);
    n_all = parse_ids(r.out, 0, all, 64);
    n_cut = parse_ids(s.out, 0, cut, 64);
    ck_assert_int_gt(n_all, n_prompt);
    ck_assert_int_eq(all[n_prompt], 383);
    ck_assert_int_eq(n_cut, n_prompt);
    for (int i = 0; i < n_cut; i++) ck_assert_int_eq(cut[i], all[i]);
    lc_test_run_free(&r);
    lc_test_run_free(&s);

    expect_failure((const char *[]){"generate", "--model", MODEL_DIR, "--stop", "", NULL}, 1,
                   "lora generate: --stop: the text is empty");
}
END_TEST

START_TEST(test_generate_repetition_penalty) {
    // Greedy stories260K repeats tokens within 60; a huge penalty makes every
    // token already in the context lose to any unseen one with a positive logit.
    const char *base[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "60", "--ids", NULL};
    const char *off[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once upon a time", "--temperature", "0",
                         "--max-tokens", "60", "--ids", "--repetition-penalty", "1", NULL};
    const char *huge[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "60", "--ids", "--repetition-penalty", "1000", NULL};
    lc_test_run a = lc_test_lora(base), b = lc_test_lora(off), c = lc_test_lora(huge);
    ck_assert_msg(a.status == 0 && b.status == 0 && c.status == 0, "%s%s", a.err, c.err);
    ck_assert_str_eq(b.out, a.out);
    int ids[128];
    int n = parse_ids(a.out, 0, ids, 128);
    int repeats = 0;
    for (int i = 5; i < n; i++)
        for (int j = 0; j < i; j++) repeats += ids[i] == ids[j];
    ck_assert_msg(repeats > 0, "the unpenalized run repeats nothing: %s", a.out);
    n = parse_ids(c.out, 0, ids, 128);
    ck_assert_int_eq(n, 5 + 60); // BOS and the 4 prompt tokens, then 60
    for (int i = 5; i < n; i++)
        for (int j = 0; j < i; j++)
            ck_assert_msg(ids[i] != ids[j], "token %d at %d repeats the one at %d: %s", ids[i], i, j, c.out);
    lc_test_run_free(&a);
    lc_test_run_free(&b);
    lc_test_run_free(&c);
    expect_failure((const char *[]){"generate", "--model", MODEL_DIR, "--repetition-penalty", "0", NULL}, 1,
                   "lora generate: --repetition-penalty: expected a number in 0.01..1000, got \"0\"");
}
END_TEST

START_TEST(test_version) {
    lc_test_run r = lc_test_lora((const char *[]){"--version", NULL});
    ck_assert_int_eq(r.status, 0);
    // The version CMake's project() declares; a commit in parentheses when built from a checkout.
    const char *want = "lora.c " LC_PROJECT_VERSION;
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    const char *rest = r.out + strlen(want);
    ck_assert_msg(strcmp(rest, "\n") == 0 || (strncmp(rest, " (commit ", 9) == 0 && strstr(rest, ")\n") &&
                                               lc_test_count_lines(r.out) == 1), "%s", r.out);
    ck_assert_str_eq(r.err, "");
    lc_test_run_free(&r);
}
END_TEST

#define PEFT_FIXTURE LC_SOURCE_DIR "/tests/fixtures/peft_stories260k"

static bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// base_model_name_or_path of dir/adapter_config.json (static buffer).
static const char *peft_base_name(const char *dir) {
    static char name[256];
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = lc_test_read(path, NULL);
    const char *key = strstr(text, "\"base_model_name_or_path\": \"");
    ck_assert_ptr_nonnull(key);
    key += strlen("\"base_model_name_or_path\": \"");
    size_t n = (size_t)(strchr(key, '"') - key);
    ck_assert_uint_lt(n, sizeof name);
    memcpy(name, key, n);
    name[n] = 0;
    free(text);
    return name;
}

static void export_peft_ok(const char *model, const char *out, const char *base_name) {
    const char *args[] = {"export", "--model", model, "--adapter", PEFT_FIXTURE, "--out", out, "--format", "peft",
                          base_name ? "--base-name" : NULL, base_name, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
}

START_TEST(test_export_peft_base_name) {
    char *tmp = lc_test_tmpdir(), out[600], model[600];
    // The model folder's name, not the path it was given by (here absolute, with a trailing slash).
    snprintf(out, sizeof out, "%s/plain", tmp);
    export_peft_ok(MODEL_DIR "/", out, NULL);
    ck_assert_str_eq(peft_base_name(out), "stories260K");
    // config.json's _name_or_path when it is a Hub id; a path there is not one.
    snprintf(model, sizeof model, "%s/my-model", tmp);
    ck_assert_int_eq(mkdir(model, 0777), 0);
    lc_test_copy(MODEL_DIR "/model.safetensors", model, "model.safetensors");
    lc_test_copy(MODEL_DIR "/tokenizer.json", model, "tokenizer.json");
    char *cfg = lc_test_read(MODEL_DIR "/config.json", NULL), *brace = strchr(cfg, '{');
    const char *names[] = {"karpathy/tinyllamas", "/home/me/models/llama", "../llama/x"};
    const char *want[] = {"karpathy/tinyllamas", "my-model", "my-model"};
    for (int i = 0; i < 3; i++) {
        char text[4096];
        snprintf(text, sizeof text, "{\"_name_or_path\": \"%s\", %s", names[i], brace + 1);
        lc_test_write(model, "config.json", text, strlen(text));
        snprintf(out, sizeof out, "%s/named%d", tmp, i);
        export_peft_ok(model, out, NULL);
        ck_assert_str_eq(peft_base_name(out), want[i]);
    }
    free(cfg);
    // --base-name is written as given; reading the folder back does not look at it.
    snprintf(out, sizeof out, "%s/given", tmp);
    export_peft_ok(MODEL_DIR, out, "/nowhere/Llama-2-7b-hf");
    ck_assert_str_eq(peft_base_name(out), "/nowhere/Llama-2-7b-hf");
    lc_test_run r = lc_test_lora((const char *[]){"generate", "--model", MODEL_DIR, "--adapter", out, "--prompt", "Hi",
                                                  "--max-tokens", "2", "--temperature", "0", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    expect_failure((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                    "--format", "hf", "--base-name", "x/y", NULL},
                   1, "lora export: --base-name is for --format peft only");
    expect_failure((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                    "--format", "peft", "--base-name", "bad\nname", NULL},
                   1, "lora export: --base-name: expected a name (UTF-8 text without control characters)");
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_export_missing_folders_and_failures) {
    char *tmp = lc_test_tmpdir(), out[4200], path[4300], want[4400];
    // Every format makes the folders --out needs, as mkdir -p does.
    const char *formats[] = {"peft", "hf", "gguf", "gguf-lora"};
    for (int i = 0; i < 4; i++) {
        snprintf(out, sizeof out, "%s/new%d/sub/%s", tmp, i, i < 2 ? "out" : "x.gguf");
        lc_test_run r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE,
                                                      "--out", out, "--format", formats[i], NULL});
        ck_assert_msg(r.status == 0, "%s: %s", formats[i], r.err);
        snprintf(path, sizeof path, i == 0 ? "%s/adapter_config.json" : i == 1 ? "%s/model.safetensors" : "%s", out);
        ck_assert_msg(path_exists(path), "%s missing", path);
        lc_test_run_free(&r);
    }
    // A file where a folder is needed is refused by its name.
    lc_test_write(tmp, "afile", "x", 1);
    snprintf(out, sizeof out, "%s/afile/x.gguf", tmp);
    snprintf(want, sizeof want, "lora export: %s/afile: exists and is not a folder\n", tmp);
    lc_test_run r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out",
                                                  out, "--format", "gguf", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);

    // A folder given for a file format, or a file for a folder format, is refused before any work:
    // nothing is made (no e/, no d.tmp).
    snprintf(path, sizeof path, "%s/afile", tmp);
    struct {
        const char *out, *format, *msg;
    } wrong[] = {{"new0", "gguf",
                  "lora export: %s/new0: is a folder; --format gguf writes a file (e.g. %s/new0/model.gguf)\n"},
                 {"e/", "gguf-lora",
                  "lora export: %s/e/: names a folder; --format gguf-lora writes a file (e.g. %s/e/adapter.gguf)\n"},
                 {"afile", "hf", "lora export: %s/afile: is a file; --format hf writes a folder\n"}};
    for (int i = 0; i < 3; i++) {
        snprintf(out, sizeof out, "%s/%s", tmp, wrong[i].out);
        snprintf(want, sizeof want, wrong[i].msg, tmp, tmp);
        r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                          "--format", wrong[i].format, NULL});
        ck_assert_int_eq(r.status, 2);
        ck_assert_str_eq(r.err, want);
        lc_test_run_free(&r);
    }
    snprintf(path, sizeof path, "%s/e", tmp);
    ck_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/new0.tmp", tmp);
    ck_assert(!path_exists(path));

    // A pipe (or a device: /dev/null) is not replaced by a regular file; a
    // link is (its target, perhaps the base itself, is left alone); --out
    // naming the base or the adapter file being read is refused.
    snprintf(path, sizeof path, "%s/pipe.gguf", tmp);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    char want_pipe[9000];
    snprintf(want_pipe, sizeof want_pipe, "lora export: %s: not a regular file (a device, pipe, socket or folder); "
             "give the path of a file to write\n", path);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", path,
                                      "--format", "gguf-lora", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want_pipe);
    lc_test_run_free(&r);
    struct stat sb;
    ck_assert(lstat(path, &sb) == 0 && S_ISFIFO(sb.st_mode));
    char link[4300], target[4300];
    snprintf(link, sizeof link, "%s/link.gguf", tmp);
    snprintf(target, sizeof target, "%s/kept.gguf", tmp);
    lc_test_write(tmp, "kept.gguf", "old", 3);
    ck_assert_int_eq(symlink(target, link), 0);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", link,
                                      "--format", "gguf-lora", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    ck_assert(lstat(link, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 3);
    ck_assert(stat(target, &sb) == 0 && sb.st_size == 3);
    // A merged GGUF as the base, and --out that same file: refused, kept.
    char merged_out[4300];
    snprintf(merged_out, sizeof merged_out, "%s/m.gguf", tmp);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", merged_out,
                                      "--format", "gguf", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    ck_assert(stat(merged_out, &sb) == 0);
    off_t merged_size = sb.st_size;
    snprintf(want_pipe, sizeof want_pipe, "lora export: %s: is the base model being read (%s); write the export "
             "elsewhere\n", merged_out, merged_out);
    r = lc_test_lora((const char *[]){"export", "--model", merged_out, "--adapter", PEFT_FIXTURE, "--out", merged_out,
                                      "--format", "gguf-lora", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want_pipe);
    lc_test_run_free(&r);
    ck_assert(stat(merged_out, &sb) == 0 && sb.st_size == merged_size);

    // A gguf that cannot be created (a name over 255 bytes): the message names it, not its
    // temporary file, and the folders made for it are gone: made by way of newg/.., and newg.
    char name[300];
    memset(name, 'n', 290);
    strcpy(name + 290, ".gguf");
    snprintf(out, sizeof out, "%s/newg/../made/%s", tmp, name);
    snprintf(want, sizeof want, "lora export: %s: cannot create: File name too long\n", out);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                      "--format", "gguf", NULL});
    ck_assert_int_eq(r.status, 3);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);
    snprintf(path, sizeof path, "%s/made", tmp);
    ck_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/newg", tmp);
    ck_assert(!path_exists(path));

    // hf into a new folder whose path leaves no room for tokenizer_config.json.tmp (4096 bytes): it fails
    // after model.safetensors and config.json are written, and every folder it made is removed.
    size_t len = (size_t)snprintf(out, sizeof out, "%s/deep", tmp);
    while (len < 4070 - 201) len += (size_t)snprintf(out + len, sizeof out - len, "/%0200d", 0);
    out[len++] = '/';
    memset(out + len, 'd', 4070 - len);
    out[4070] = 0;
    snprintf(want, sizeof want, "lora export: %s/tokenizer_config.json: path too long", out);
    strcpy(want + strlen("lora export: ") + 1023, "\n"); // lora.c's messages stop at 1023 bytes
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                      "--format", "hf", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strcmp(r.err, want) == 0, "unexpected message (%zu bytes)", strlen(r.err)); // too long to print
    lc_test_run_free(&r);
    snprintf(path, sizeof path, "%s/deep", tmp);
    ck_assert(!path_exists(path));

    // hf into a folder that was there, named by way of a new one: only what the export wrote
    // (newh and the files) is removed (config.json is a folder here, so it fails after writing
    // model.safetensors).
    snprintf(out, sizeof out, "%s/had", tmp);
    ck_assert_int_eq(mkdir(out, 0777), 0);
    lc_test_write(out, "keep.txt", "x", 1);
    snprintf(path, sizeof path, "%s/config.json", out);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    snprintf(out, sizeof out, "%s/newh/../had", tmp);
    snprintf(want, sizeof want, "lora export: %s/config.json: not a regular file (a device, pipe, socket or "
             "folder); give the path of a file to write\n", out);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                      "--format", "hf", NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, want);
    lc_test_run_free(&r);
    ck_assert(path_exists(path));
    snprintf(path, sizeof path, "%s/had/keep.txt", tmp); // by way of tmp: newh is gone
    ck_assert(path_exists(path));
    snprintf(path, sizeof path, "%s/had/model.safetensors", tmp);
    ck_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/had/config.json.tmp", tmp);
    ck_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/newh", tmp);
    ck_assert(!path_exists(path));
    // The same for a gguf that fails in a folder that was there.
    snprintf(out, sizeof out, "%s/newg/../had/%s", tmp, name);
    r = lc_test_lora((const char *[]){"export", "--model", MODEL_DIR, "--adapter", PEFT_FIXTURE, "--out", out,
                                      "--format", "gguf", NULL});
    ck_assert_int_eq(r.status, 3);
    lc_test_run_free(&r);
    snprintf(path, sizeof path, "%s/had/keep.txt", tmp);
    ck_assert(path_exists(path));
    snprintf(path, sizeof path, "%s/newg", tmp);
    ck_assert(!path_exists(path));
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

// chat --stop: the history keeps the reply's bytes as printed. Here the token after "Hel" is "lo,",
// reaching into the stop string: "Hel" is printed though the token is dropped, and the second
// turn's prompt is that history rendered and tokenized, token for token.
START_TEST(test_chat_stop_keeps_printed) {
    char *tmp = lc_test_tmpdir();
    const char *tpl = LC_SOURCE_DIR "/configs/chat_plain.jinja";
    lc_test_run r = lc_test_lora_stdin((const char *[]){"chat", "--model", MODEL_DIR, "--chat-template", tpl,
                                                        "--temperature", "0", "--max-tokens", "8", "--stop", "lo,",
                                                        NULL}, "Once upon a time\nhi\n");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strncmp(r.out, "\"Hel\n", 5) == 0, "%s", r.out);
    int p2 = -1;
    const char *t2 = strstr(r.err, "turn 2: ");
    ck_assert(t2 && sscanf(t2, "turn 2: %d prompt", &p2) == 1);
    lc_test_run_free(&r);
    const char *msgs = "[{\"role\": \"user\", \"content\": \"Once upon a time\"}, {\"role\": \"assistant\", "
                       "\"content\": \"\\\"Hel\"}, {\"role\": \"user\", \"content\": \"hi\"}]";
    lc_test_write(tmp, "m.json", msgs, strlen(msgs));
    char path[600];
    snprintf(path, sizeof path, "%s/m.json", tmp);
    r = lc_test_lora((const char *[]){"template", "--template", tpl, "--messages", path, "--add-generation-prompt",
                                      "--bos-token", "<s>", "--eos-token", "</s>", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run t = lc_test_lora((const char *[]){"tokenize", "--model", MODEL_DIR, "--no-bos", "--text", r.out, NULL});
    ck_assert_msg(t.status == 0, "%s", t.err);
    int ids[128];
    ck_assert_int_eq(parse_ids(t.out, 0, ids, 128), p2);
    lc_test_run_free(&t);
    lc_test_run_free(&r);
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_missing_tokenizer) {
    char *tmp = lc_test_tmpdir();
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    lc_test_copy(MODEL_DIR "/model.safetensors", tmp, "model.safetensors");
    const char *args[] = {"generate", "--model", tmp, "--prompt", "Once", NULL};
    expect_failure(args, 2, "tokenizer.json is missing");
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_truncated_model_cli) {
    char *tmp = lc_test_tmpdir();
    size_t len;
    char *buf = lc_test_read(MODEL_DIR "/model.safetensors", &len);
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    lc_test_copy(MODEL_DIR "/tokenizer.json", tmp, "tokenizer.json");
    lc_test_write(tmp, "model.safetensors", buf, len - 1000);
    const char *args[] = {"generate", "--model", tmp, "--prompt", "Once", NULL};
    expect_failure(args, 2, "model.safetensors: tensor ");
    const char *inspect[] = {"inspect", tmp, NULL};
    expect_failure(inspect, 2, "model.safetensors: tensor ");
    free(buf);
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_usage_errors) {
    const char *no_model[] = {"generate", "--prompt", "x", NULL};
    expect_failure(no_model, 1, "--model DIR|FILE.gguf is required");
    const char *bad_temp[] = {"generate", "--model", MODEL_DIR, "--temperature", "hot", NULL};
    expect_failure(bad_temp, 1, "--temperature");
    // A mistyped command or option gets one line, not the whole usage.
    const char *unknown[] = {"frobnicate", NULL};
    lc_test_run r = lc_test_lora(unknown);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "lora: unknown command \"frobnicate\" (see lora --help)\n");
    lc_test_run_free(&r);
    const char *unknown_opt[] = {"--frob", "train", NULL};
    r = lc_test_lora(unknown_opt);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "lora: unknown option --frob (see lora --help)\n");
    lc_test_run_free(&r);
    const char *missing_dir[] = {"generate", "--model", "/nonexistent/model", NULL};
    expect_failure(missing_dir, 2, "/nonexistent/model");
    const char *help[] = {"generate", "--help", NULL};
    r = lc_test_lora(help);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "--top-p"));
    lc_test_run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("lora");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_generate_greedy_story);
    tcase_add_test(tc, test_generate_ids_and_bos_start);
    tcase_add_test(tc, test_generate_seeded_sampling_reproducible);
    tcase_add_test(tc, test_top_k_one_is_greedy);
    tcase_add_test(tc, test_generate_stops_at_any_listed_eos);
    tcase_add_test(tc, test_tokenize);
    tcase_add_test(tc, test_inspect);
    tcase_add_test(tc, test_missing_tokenizer);
    tcase_add_test(tc, test_truncated_model_cli);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_generate_prompt_file_and_stdin);
    tcase_add_test(tc, test_generate_stop_strings);
    tcase_add_test(tc, test_generate_repetition_penalty);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_export_peft_base_name);
    tcase_add_test(tc, test_export_missing_folders_and_failures);
    tcase_add_test(tc, test_chat_stop_keeps_printed);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
