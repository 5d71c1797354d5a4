// Dataset tests: loading the shared JSONL files with the stories260K
// tokenizer (prompt mask, EOS, truncation), bad files reported as FILE:LINE,
// the seeded batcher (order, seek, padding, packing) and the split.
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "data/dataset.h"
#include "data/tokenizer.h"
#include "test_util.h"

// Check's ck_assert records a mark point (a write) even when it passes; in
// loops over millions of tokens assert only on failure.
#define EXPECT_EQ(a, b)                                                                                          \
    do {                                                                                                         \
        long long x_ = (long long)(a), y_ = (long long)(b);                                                      \
        if (x_ != y_) ck_abort_msg("%s == %s failed: %lld != %lld", #a, #b, x_, y_);                             \
    } while (0)
#define EXPECT(c)                                                                                                \
    do {                                                                                                         \
        if (!(c)) ck_abort_msg("%s failed", #c);                                                                 \
    } while (0)

#define DATA LC_SHARED_DIR "/data/"
#define GSM8K DATA "gsm8k_train.jsonl"
#define TOK_DIR LC_SHARED_DIR "/models/stories260K/"

// Loaded once in the parent (unchecked fixture) and shared by the forked tests.
static lc_tokenizer *tok;
static lc_dataset gsm;      // max_seq_len 256, mask_prompt
static lc_dataset gsm_full; // max_seq_len 4096: nothing truncated
static double gsm_load_s;

static void load_ok(lc_dataset *ds, const char *path, int max_seq_len, bool mask) {
    lc_dataset_options opt = {.max_seq_len = max_seq_len, .mask_prompt = mask};
    lc_status st = lc_dataset_load(ds, path, tok, &opt);
    ck_assert_msg(st == LC_STATUS_OK, "load %s: %s", path, lc_error_message());
}

static void global_setup(void) {
    ck_assert_int_eq(lc_tokenizer_load(&tok, TOK_DIR "tokenizer.json", TOK_DIR "tokenizer_config.json"),
                     LC_STATUS_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    load_ok(&gsm, GSM8K, 256, true);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    gsm_load_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "gsm8k_train: %d examples, %lld tokens in %.3f s (%.0f tokens/s, prompt tokenized twice)\n",
            gsm.n_examples, (long long)gsm.n_tokens, gsm_load_s, (double)gsm.n_tokens / gsm_load_s);
    load_ok(&gsm_full, GSM8K, 4096, true);
}

static void global_teardown(void) {
    lc_dataset_free(&gsm);
    lc_dataset_free(&gsm_full);
    lc_tokenizer_free(tok);
}

static size_t encode(const char *s, bool special, int32_t **ids, size_t *cap) {
    size_t n;
    ck_assert_int_eq(lc_tokenizer_encode(tok, s, strlen(s), special, ids, cap, &n), LC_STATUS_OK);
    return n;
}

static char *decode(const int32_t *ids, size_t n, bool skip) {
    char *out;
    size_t len;
    ck_assert_int_eq(lc_tokenizer_decode(tok, ids, n, skip, &out, &len), LC_STATUS_OK);
    return out;
}

// Line `line` (1-based) of a JSONL file, parsed.
static cJSON *read_record(const char *path, int line) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < line; i++) ck_assert_int_gt(getline(&buf, &cap, f), 0);
    fclose(f);
    cJSON *obj = cJSON_Parse(buf);
    free(buf);
    ck_assert_ptr_nonnull(obj);
    return obj;
}

// ---------------------------------------------------------------------------
// Loading

START_TEST(test_gsm8k_load) {
    ck_assert_int_eq(gsm.n_examples, 7473);
    ck_assert_int_eq(lc_tokenizer_bos(tok), 1);
    ck_assert_int_eq(lc_tokenizer_eos(tok), 2);
    int64_t total = 0;
    int truncated = 0;
    for (int i = 0; i < gsm.n_examples; i++) {
        const lc_example *e = &gsm.examples[i];
        EXPECT_EQ(e->line, i + 1);
        EXPECT((e->n) <= (256));
        EXPECT_EQ(e->ids[0], 1);
        EXPECT((e->n_prompt) >= (1));
        EXPECT((e->n_prompt) <= (e->n));
        if (!e->truncated) {
            EXPECT_EQ(e->ids[e->n - 1], 2);
        } else {
            EXPECT_EQ(e->n, 256);
            EXPECT((e->ids[e->n - 1]) != (2));
        }
        // Ids live in the one storage block, in file order.
        EXPECT(e->ids == gsm.storage + total);
        total += e->n;
        truncated += e->truncated;
    }
    ck_assert_int_eq(total, gsm.n_tokens);
    ck_assert_int_eq(truncated, gsm.n_truncated);
    ck_assert_int_gt(gsm.n_truncated, 0); // the 512-piece vocabulary makes long sequences

    // Hand checks: the prompt part is exactly encode(prompt), the completion
    // part decodes back to the completion, and EOS closes it.
    const int lines[] = {1, 2, 100, 5000, 7473};
    int32_t *pre = NULL;
    size_t pre_cap = 0;
    for (size_t k = 0; k < sizeof lines / sizeof *lines; k++) {
        const lc_example *e = &gsm_full.examples[lines[k] - 1];
        cJSON *rec = read_record(GSM8K, lines[k]);
        const char *prompt = cJSON_GetObjectItem(rec, "prompt")->valuestring;
        const char *completion = cJSON_GetObjectItem(rec, "completion")->valuestring;
        size_t n_pre = encode(prompt, true, &pre, &pre_cap);
        ck_assert_int_eq(e->n_prompt, (int)n_pre);
        ck_assert_mem_eq(e->ids, pre, n_pre * sizeof *pre);
        ck_assert_int_eq(e->ids[e->n - 1], 2);
        // SentencePiece decode drops the one leading space of the fragment
        // (every gsm8k completion starts with " ").
        ck_assert_int_eq(completion[0], ' ');
        char *comp = decode(e->ids + e->n_prompt, (size_t)(e->n - e->n_prompt), false);
        char want[8192];
        snprintf(want, sizeof want, "%s</s>", completion + 1);
        ck_assert_str_eq(comp, want);
        free(comp);
        // And the whole example is prompt + completion.
        char *all = decode(e->ids, (size_t)e->n, true);
        snprintf(want, sizeof want, "%s%s", prompt, completion);
        ck_assert_str_eq(all, want);
        free(all);
        cJSON_Delete(rec);
    }
    free(pre);
}
END_TEST

START_TEST(test_other_shared_files_load) {
    const struct {
        const char *name;
        int n;
    } files[] = {{"alpaca_tiny.jsonl", 100}, {"mgsm_es.jsonl", 250}, {"humaneval.jsonl", 164}};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char path[4096];
        snprintf(path, sizeof path, DATA "%s", files[k].name);
        lc_dataset ds;
        load_ok(&ds, path, 512, true);
        ck_assert_int_eq(ds.n_examples, files[k].n);
        for (int i = 0; i < ds.n_examples; i++) {
            ck_assert_int_eq(ds.examples[i].ids[0], 1);
            ck_assert(ds.examples[i].truncated || ds.examples[i].ids[ds.examples[i].n - 1] == 2);
        }
        lc_dataset_free(&ds);
    }
}
END_TEST

START_TEST(test_mask_targets) {
    lc_batcher it;
    lc_batch b;
    ck_assert_int_eq(lc_batcher_init(&it, &gsm_full, 1, 2048, false, false, 0), LC_STATUS_OK);
    ck_assert_int_eq(lc_batch_init(&b, 1, 2048), LC_STATUS_OK);
    for (int k = 0; k < 3; k++) {
        lc_batcher_next(&it, &b);
        const lc_example *e = &gsm_full.examples[k];
        ck_assert_int_gt(e->n_prompt, 10); // "Question: ..." is long
        ck_assert_int_eq(b.B, 1);
        ck_assert_int_eq(b.T, e->n);
        for (int t = 0; t < e->n_prompt - 1; t++) EXPECT_EQ(b.targets[t], -1);
        EXPECT_EQ(b.targets[e->n_prompt - 1], e->ids[e->n_prompt]);
        for (int t = e->n_prompt; t < e->n - 1; t++) EXPECT_EQ(b.targets[t], e->ids[t + 1]);
        EXPECT_EQ(b.targets[e->n - 1], -1);
        EXPECT_EQ(b.targets[e->n - 2], 2); // learns to stop
        ck_assert_int_eq(b.n_targets, e->n - e->n_prompt);
        ck_assert_int_eq(b.n_tokens, e->n);
    }
    lc_batch_free(&b);
    lc_batcher_free(&it);

    // mask_prompt off: every token after BOS is a target.
    lc_dataset ds;
    load_ok(&ds, DATA "alpaca_tiny.jsonl", 512, false);
    for (int i = 0; i < ds.n_examples; i++) ck_assert_int_eq(ds.examples[i].n_prompt, 1);
    lc_dataset_free(&ds);
}
END_TEST

START_TEST(test_truncation_count) {
    ck_assert_int_eq(gsm_full.n_truncated, 0);
    lc_dataset small;
    load_ok(&small, GSM8K, 32, true);
    int expect_trunc = 0, expect_no_targets = 0;
    int64_t expect_tokens = 0;
    for (int i = 0; i < gsm_full.n_examples; i++) {
        const lc_example *f = &gsm_full.examples[i], *s = &small.examples[i];
        bool cut = f->n > 32;
        expect_trunc += cut;
        int n = cut ? 32 : f->n;
        expect_tokens += n;
        expect_no_targets += f->n_prompt >= n;
        EXPECT_EQ(s->n, n);
        EXPECT_EQ(s->truncated, cut);
        EXPECT_EQ(s->n_prompt, f->n_prompt < n ? f->n_prompt : n);
        ck_assert_mem_eq(s->ids, f->ids, (size_t)n * sizeof *s->ids); // the beginning is kept
    }
    ck_assert_int_gt(expect_trunc, 7000);
    ck_assert_int_eq(small.n_truncated, expect_trunc);
    ck_assert_int_gt(expect_no_targets, 0); // most prompts are longer than 32 tokens
    ck_assert_int_eq(small.n_no_targets, expect_no_targets);
    ck_assert_int_eq(small.n_tokens, expect_tokens);
    lc_dataset_free(&small);
}
END_TEST

START_TEST(test_text_records) {
    char *dir = lc_test_tmpdir();
    const char *body = "{\"text\": \"Once upon a time\"}\r\n\n   \n{\"text\": \"\", \"extra_spaces\": null}\n";
    lc_test_write(dir, "t.jsonl", body, strlen(body));
    char path[4096];
    snprintf(path, sizeof path, "%s/t.jsonl", dir);
    lc_dataset ds;
    lc_dataset_options opt = {.max_seq_len = 64, .mask_prompt = true};
    // Unknown keys are refused even when null.
    ck_assert_int_eq(lc_dataset_load(&ds, path, tok, &opt), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), ":4: unexpected key \"extra_spaces\""), "%s", lc_error_message());

    body = "{\"text\": \"Once upon a time\"}\r\n\n   \n{\"text\": \"\"}\n{\"text\": \"\\\\u0000\"}";
    lc_test_write(dir, "t.jsonl", body, strlen(body));
    load_ok(&ds, path, 64, true);
    ck_assert_int_eq(ds.n_examples, 3);
    ck_assert_int_gt(ds.examples[2].n, 7); // the literal text \u0000 (escaped backslash) loads
    int32_t *ids = NULL;
    size_t cap = 0, n = encode("Once upon a time", true, &ids, &cap);
    ck_assert_int_eq(ds.examples[0].n, (int)n + 1);
    ck_assert_mem_eq(ds.examples[0].ids, ids, n * sizeof *ids);
    ck_assert_int_eq(ds.examples[0].ids[n], 2);
    ck_assert_int_eq(ds.examples[0].n_prompt, 1);
    ck_assert_int_eq(ds.examples[0].line, 1);
    ck_assert_int_eq(ds.examples[1].line, 4);
    ck_assert_int_eq(ds.examples[1].n, 2); // BOS EOS
    ck_assert_int_eq(ds.n_no_targets, 0);
    free(ids);
    lc_dataset_free(&ds);
    lc_test_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_boundary_merge) {
    // "ti" + "me": the prompt's last piece merges with the completion, so the
    // boundary is the common prefix and the merged piece is a target.
    char *dir = lc_test_tmpdir();
    const char *body = "{\"prompt\": \"Once upon a ti\", \"completion\": \"me\"}\n";
    lc_test_write(dir, "m.jsonl", body, strlen(body));
    char path[4096];
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    int32_t *full = NULL, *pre = NULL;
    size_t full_cap = 0, pre_cap = 0;
    size_t n_full = encode("Once upon a time", true, &full, &full_cap);
    size_t n_pre = encode("Once upon a ti", true, &pre, &pre_cap);
    size_t common = 0;
    while (common < n_pre && common < n_full && full[common] == pre[common]) common++;
    ck_assert_uint_lt(common, n_pre); // the merge really happens with this vocabulary
    lc_dataset ds;
    load_ok(&ds, path, 64, true);
    const lc_example *e = &ds.examples[0];
    ck_assert_int_eq(e->n, (int)n_full + 1);
    ck_assert_mem_eq(e->ids, full, n_full * sizeof *full);
    ck_assert_int_eq(e->n_prompt, (int)common);
    ck_assert_int_eq(ds.n_no_targets, 0);
    lc_dataset_free(&ds);
    free(full);
    free(pre);
    lc_test_rmdir(dir);
    free(dir);
}
END_TEST

// Writes body to dir/bad.jsonl, expects LC_STATUS_INPUT with a message
// starting "PATH<suffix>" and containing `has`.
static void expect_bad(const char *dir, const char *body, size_t len, const char *suffix, const char *has) {
    char path[4096], want[4200];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    lc_test_write(dir, "bad.jsonl", body, len);
    lc_dataset ds;
    lc_dataset_options opt = {.max_seq_len = 64, .mask_prompt = true};
    lc_status st = lc_dataset_load(&ds, path, tok, &opt);
    ck_assert_msg(st == LC_STATUS_INPUT, "%s: status %d", body, st);
    snprintf(want, sizeof want, "%s%s", path, suffix);
    const char *msg = lc_error_message();
    ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "got \"%s\", want prefix \"%s\"", msg, want);
    ck_assert_msg(strstr(msg, has), "got \"%s\", want \"%s\"", msg, has);
    ck_assert_ptr_null(ds.examples);
    ck_assert_ptr_null(ds.storage);
}

#define OK_LINE "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
#define BAD(body, suffix, has) expect_bad(dir, body, strlen(body), suffix, has)

START_TEST(test_bad_files) {
    char *dir = lc_test_tmpdir();
    BAD(OK_LINE OK_LINE "{\"prompt\": \"a\", \"completion\": \"b\"\n", ":3: ", "invalid JSON");
    BAD(OK_LINE "{\"prompt\": \"a\"}\n" OK_LINE, ":2: ", "missing \"completion\"");
    BAD("{\"completion\": \"a\"}\n", ":1: ", "missing \"prompt\"");
    BAD("", ": ", "no examples");
    BAD("\n  \n\t\r\n", ": ", "no examples");
    BAD(OK_LINE "\n\n{\"prompt\": \"a\", \"completion\": \"b\", \"answer\": \"c\"}\n", ":4: ",
        "unexpected key \"answer\" (expected prompt/completion, text or messages)");
    BAD("{\"prompt\": 1, \"completion\": \"b\"}\n", ":1: ", "\"prompt\" must be a string");
    BAD("{\"text\": null}\n", ":1: ", "\"text\" must be a string");
    BAD("{\"prompt\": \"a\", \"completion\": \"b\", \"text\": \"c\"}\n", ":1: ", "cannot be combined");
    BAD("[\"prompt\", \"completion\"]\n", ":1: ", "expected a JSON object");
    BAD("\"text\"\n", ":1: ", "expected a JSON object");
    BAD("{}\n", ":1: ", "expected \"prompt\" and \"completion\", \"text\", or \"messages\"");
    BAD("{\"text\": \"a\"} {\"text\": \"b\"}\n", ":1: ", "invalid JSON");
    BAD("{\"text\": \"a\", \"text\": \"b\"}\n", ":1: ", "duplicate key");
    BAD(OK_LINE "{\"text\": \"\xff\"}\n", ":2: ", "invalid UTF-8");
    BAD("{\"text\": \"\xed\xa0\x80\"}\n", ":1: ", "invalid UTF-8"); // encoded surrogate
    expect_bad(dir, "{\"text\": \"a\"}\0\n", 15, ":1: ", "NUL byte");
    BAD("{\"text\": \"a\\u0000b\"}\n", ":1: ", "\\u0000");
    BAD("{\"te\\nxt\": \"a\"}\n", ":1: ", "unexpected key \"te?xt\"");

    // A runaway line is refused at the cap, not buffered whole.
    size_t big = ((size_t)16 << 20) + 100;
    char *huge = malloc(big + 64);
    memcpy(huge, OK_LINE "{\"text\": \"", strlen(OK_LINE) + 10);
    memset(huge + strlen(OK_LINE) + 10, 'x', big);
    memcpy(huge + strlen(OK_LINE) + 10 + big, "\"}\n", 3);
    expect_bad(dir, huge, strlen(OK_LINE) + 13 + big, ":2: ", "line longer than 16 MiB");
    free(huge);

    lc_dataset ds;
    lc_dataset_options opt = {.max_seq_len = 64, .mask_prompt = true};
    ck_assert_int_eq(lc_dataset_load(&ds, DATA "no_such_file.jsonl", tok, &opt), LC_STATUS_INPUT);
    ck_assert_ptr_nonnull(strstr(lc_error_message(), "no_such_file.jsonl: cannot open"));
    ck_assert_int_eq(lc_dataset_load(&ds, dir, tok, &opt), LC_STATUS_INPUT); // a folder
    opt.max_seq_len = 1;
    ck_assert_int_eq(lc_dataset_load(&ds, GSM8K, tok, &opt), LC_STATUS_INPUT);
    lc_test_rmdir(dir);
    free(dir);
}
END_TEST

// ---------------------------------------------------------------------------
// Batcher, on a synthetic dataset whose tokens name their example:
// example i has ids [1000*i + t] and n = 2 + i % 11, n_prompt = 1 + i % 3.

#define SYN_N 53
static lc_dataset syn;

static void syn_setup(void) {
    memset(&syn, 0, sizeof syn);
    syn.examples = calloc(SYN_N, sizeof *syn.examples);
    syn.storage = malloc(SYN_N * 16 * sizeof *syn.storage);
    syn.target_storage = malloc(SYN_N * 16);
    size_t off = 0;
    for (int i = 0; i < SYN_N; i++) {
        lc_example *e = &syn.examples[i];
        e->n = 2 + i % 11;
        e->n_prompt = 1 + i % 3;
        e->line = i + 1;
        e->ids = syn.storage + off;
        e->target = syn.target_storage + off;
        for (int t = 0; t < e->n; t++) e->ids[t] = 1000 * (i + 1) + t;
        for (int t = 0; t < e->n; t++) e->target[t] = t >= e->n_prompt;
        off += (size_t)e->n;
    }
    syn.n_examples = SYN_N;
    syn.n_tokens = (int64_t)off;
}

static void syn_teardown(void) { lc_dataset_free(&syn); }

// Example index of a real token of the synthetic set.
static int syn_example(int32_t token) { return token / 1000 - 1; }

static void check_unpacked(const lc_batch *b) {
    int T = 0, n_tokens = 0, n_targets = 0;
    for (int r = 0; r < b->B; r++) {
        int i = syn_example(b->tokens[r * b->T]);
        const lc_example *e = &syn.examples[i];
        if (e->n > T) T = e->n;
        for (int t = 0; t < b->T; t++) {
            int k = r * b->T + t;
            if (t < e->n) {
                EXPECT_EQ(b->tokens[k], e->ids[t]);
                EXPECT_EQ(b->pos[k], t);
                int32_t want = t + 1 < e->n && t + 1 >= e->n_prompt ? e->ids[t + 1] : -1;
                EXPECT_EQ(b->targets[k], want);
                n_tokens++;
                n_targets += want != -1;
            } else {
                EXPECT_EQ(b->tokens[k], 0);
                EXPECT_EQ(b->targets[k], -1);
                EXPECT_EQ(b->pos[k], 0);
            }
            EXPECT_EQ(b->seg_start[k], 0);
        }
    }
    EXPECT_EQ(b->T, T);
    EXPECT_EQ(b->n_tokens, n_tokens);
    EXPECT_EQ(b->n_targets, n_targets);
}

START_TEST(test_batcher_epochs) {
    const int B = 4;
    lc_batcher a, c, d;
    lc_batch b;
    ck_assert_int_eq(lc_batcher_init(&a, &syn, B, 16, false, true, 42), LC_STATUS_OK);
    ck_assert_int_eq(lc_batcher_init(&c, &syn, B, 16, false, true, 42), LC_STATUS_OK);
    ck_assert_int_eq(lc_batcher_init(&d, &syn, B, 16, false, true, 43), LC_STATUS_OK);
    ck_assert_int_eq(lc_batch_init(&b, B, 16), LC_STATUS_OK);
    ck_assert_mem_eq(a.order, c.order, SYN_N * sizeof(int));
    ck_assert(memcmp(a.order, d.order, SYN_N * sizeof(int)) != 0); // seed matters
    int ep0[SYN_N];
    memcpy(ep0, a.order, sizeof ep0);
    bool identity = true;
    for (int i = 0; i < SYN_N; i++) identity &= ep0[i] == i;
    ck_assert(!identity);

    // Three epochs served through batches that straddle the epoch ends
    // (53 = 13*4 + 1): each epoch serves every example once, in its order.
    int seen[3][SYN_N] = {{0}}, served = 0;
    int orders[3][SYN_N];
    while (served < 3 * SYN_N) {
        int64_t epoch_before = a.epoch;
        int index_before = a.index;
        lc_batcher_next(&a, &b);
        ck_assert_int_eq(b.B, B);
        check_unpacked(&b);
        for (int r = 0; r < B && served < 3 * SYN_N; r++, served++) {
            int ep = served / SYN_N, i = syn_example(b.tokens[r * b.T]);
            seen[ep][i]++;
            orders[ep][served % SYN_N] = i;
        }
        // Seeking to the saved position replays the same batch.
        lc_batch b2;
        ck_assert_int_eq(lc_batch_init(&b2, B, 16), LC_STATUS_OK);
        lc_batcher_seek(&c, epoch_before, index_before);
        lc_batcher_next(&c, &b2);
        ck_assert_int_eq(b2.T, b.T);
        ck_assert_mem_eq(b2.tokens, b.tokens, (size_t)(B * b.T) * sizeof(int32_t));
        ck_assert_mem_eq(b2.targets, b.targets, (size_t)(B * b.T) * sizeof(int32_t));
        ck_assert_int_eq(c.epoch, a.epoch);
        ck_assert_int_eq(c.index, a.index);
        lc_batch_free(&b2);
    }
    for (int ep = 0; ep < 3; ep++)
        for (int i = 0; i < SYN_N; i++) ck_assert_int_eq(seen[ep][i], 1);
    ck_assert_mem_eq(orders[0], ep0, sizeof ep0);
    ck_assert(memcmp(orders[0], orders[1], sizeof ep0) != 0); // reshuffled each epoch
    ck_assert(memcmp(orders[1], orders[2], sizeof ep0) != 0);
    lc_batcher_seek(&c, 1, 0);
    ck_assert_mem_eq(c.order, orders[1], sizeof ep0);
    lc_batcher_seek(&c, 2, 5);
    ck_assert_mem_eq(c.order, orders[2], sizeof ep0);
    lc_batch_free(&b);
    lc_batcher_free(&a);
    lc_batcher_free(&c);
    lc_batcher_free(&d);
}
END_TEST

START_TEST(test_batcher_eval_in_file_order) {
    lc_batcher it;
    lc_batch b;
    ck_assert_int_eq(lc_batcher_init(&it, &syn, 5, 16, false, false, 7), LC_STATUS_OK);
    ck_assert_int_eq(lc_batch_init(&b, 5, 16), LC_STATUS_OK);
    int next = 0, calls = 0;
    while (lc_batcher_next_in_epoch(&it, &b)) {
        calls++;
        ck_assert_int_eq(b.B, next + 5 <= SYN_N ? 5 : SYN_N - next);
        check_unpacked(&b);
        for (int r = 0; r < b.B; r++) ck_assert_int_eq(syn_example(b.tokens[r * b.T]), next++);
    }
    ck_assert_int_eq(calls, 11); // 10 full + 3
    ck_assert_int_eq(next, SYN_N);
    ck_assert_int_eq(b.B, 0);
    ck_assert_int_eq(b.n_tokens, 0);
    ck_assert(!lc_batcher_next_in_epoch(&it, &b));
    // The next full batch after a partial one uses all B rows again.
    lc_batcher_seek(&it, 0, 0);
    lc_batcher_next(&it, &b);
    ck_assert_int_eq(b.B, 5);
    lc_batch_free(&b);
    lc_batcher_free(&it);
}
END_TEST

// Checks packed-batch invariants and appends (token, target) pairs of real
// tokens to pairs[]. Returns the number of pairs added.
static int check_packed(const lc_batch *b, int L, int64_t *pairs, int64_t vocab) {
    int added = 0, n_targets = 0;
    EXPECT((b->T) <= (L));
    int longest = 0;
    for (int r = 0; r < b->B; r++) {
        const int32_t *tok_r = b->tokens + r * b->T, *tgt = b->targets + r * b->T;
        const int32_t *pos = b->pos + r * b->T, *seg = b->seg_start + r * b->T;
        int len = 0;
        for (int t = 0; t < b->T; t++) {
            bool real = t == 0 || pos[t] != 0 || seg[t] != 0;
            if (!real) {
                EXPECT_EQ(tok_r[t], 0);
                EXPECT_EQ(tgt[t], -1);
                continue;
            }
            EXPECT_EQ(len, t); // padding only at the end
            len = t + 1;
            EXPECT_EQ(pos[t], t - seg[t]); // positions restart per example
            if (pos[t] == 0) EXPECT_EQ(seg[t], t);
            else EXPECT_EQ(seg[t], seg[t - 1]);
            if (tgt[t] != -1) {
                // Target is the next token of the same example.
                EXPECT((t + 1) < (b->T));
                EXPECT_EQ(seg[t + 1], seg[t]);
                EXPECT_EQ(pos[t + 1], pos[t] + 1);
                EXPECT_EQ(tgt[t], tok_r[t + 1]);
                n_targets++;
            }
            pairs[added++] = (int64_t)tok_r[t] * (vocab + 1) + (tgt[t] + 1);
        }
        if (len > longest) longest = len;
    }
    EXPECT_EQ(b->T, longest);
    EXPECT_EQ(b->n_tokens, added);
    EXPECT_EQ(b->n_targets, n_targets);
    return added;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_packing_matches_unpacked) {
    // Untruncated gsm8k (up to ~1100 tokens an example) packed into 2048.
    const lc_dataset *ds = &gsm_full;
    const int B = 3, L = 2048;
    const int64_t vocab = lc_tokenizer_vocab_size(tok);
    size_t n_pairs = (size_t)ds->n_tokens;
    int64_t *packed = malloc(n_pairs * sizeof *packed), *plain = malloc(n_pairs * sizeof *plain);
    lc_batch b;
    ck_assert_int_eq(lc_batch_init(&b, B, L), LC_STATUS_OK);

    lc_batcher it;
    ck_assert_int_eq(lc_batcher_init(&it, ds, B, L, true, false, 1), LC_STATUS_OK);
    size_t np = 0;
    int packed_rows = 0;
    while (lc_batcher_next_in_epoch(&it, &b)) {
        ck_assert_uint_le(np + (size_t)b.n_tokens, n_pairs);
        np += (size_t)check_packed(&b, L, packed + np, vocab);
        packed_rows += b.B;
    }
    lc_batcher_free(&it);
    ck_assert_uint_eq(np, n_pairs);
    ck_assert_int_lt(packed_rows, ds->n_examples / 3); // examples really share rows

    ck_assert_int_eq(lc_batcher_init(&it, ds, B, L, false, false, 1), LC_STATUS_OK);
    size_t nu = 0;
    while (lc_batcher_next_in_epoch(&it, &b)) {
        for (int r = 0; r < b.B; r++)
            for (int t = 0; t < b.T; t++) {
                int k = r * b.T + t;
                if (t > 0 && b.pos[k] == 0) break; // padding
                plain[nu++] = (int64_t)b.tokens[k] * (vocab + 1) + (b.targets[k] + 1);
            }
    }
    lc_batcher_free(&it);
    ck_assert_uint_eq(nu, n_pairs);
    qsort(packed, n_pairs, sizeof *packed, cmp_i64);
    qsort(plain, n_pairs, sizeof *plain, cmp_i64);
    ck_assert_mem_eq(packed, plain, n_pairs * sizeof *packed);
    free(packed);
    free(plain);
    lc_batch_free(&b);
}
END_TEST

START_TEST(test_packing_seek_and_rows) {
    // Synthetic: rows hold whole examples in epoch order while they fit
    // (greedy), batches run on across epochs, and seeking to a saved
    // position replays the same packed batch.
    enum { B = 2, L = 20, EPOCHS = 8 };
    lc_batcher a, c;
    lc_batch b, b2;
    ck_assert_int_eq(lc_batcher_init(&a, &syn, B, L, true, true, 9), LC_STATUS_OK);
    ck_assert_int_eq(lc_batcher_init(&c, &syn, B, L, true, true, 9), LC_STATUS_OK);
    ck_assert_int_eq(lc_batch_init(&b, B, L), LC_STATUS_OK);
    ck_assert_int_eq(lc_batch_init(&b2, B, L), LC_STATUS_OK);
    static int orders[EPOCHS][SYN_N];
    for (int e = 0; e < EPOCHS; e++) {
        lc_batcher_seek(&c, e, 0);
        memcpy(orders[e], c.order, sizeof orders[e]);
    }
    int64_t *pairs = malloc((size_t)B * L * sizeof *pairs);
    int ep = 0, op = 0; // next expected example: orders[ep][op]
    for (int step = 0; step < 60; step++) {
        int64_t e0 = a.epoch;
        int i0 = a.index;
        lc_batcher_next(&a, &b);
        ck_assert_int_eq(b.B, B);
        check_packed(&b, L, pairs, 1 << 20);
        for (int r = 0; r < B; r++) {
            int used = 0;
            for (int t = 0; t < b.T; t++) {
                int k = r * b.T + t;
                if (t > 0 && b.pos[k] == 0 && b.seg_start[k] == 0) break; // padding
                if (b.pos[k] != 0) continue;
                ck_assert_int_lt(ep, EPOCHS);
                int want = orders[ep][op];
                if (++op == SYN_N) op = 0, ep++;
                ck_assert_int_eq(syn_example(b.tokens[k]), want);
                used = t + syn.examples[want].n;
            }
            ck_assert_int_gt(used + syn.examples[orders[ep][op]].n, L); // the next did not fit
        }
        lc_batcher_seek(&c, e0, i0);
        lc_batcher_next(&c, &b2);
        ck_assert_int_eq(b2.T, b.T);
        ck_assert_mem_eq(b2.tokens, b.tokens, (size_t)(B * b.T) * sizeof(int32_t));
        ck_assert_mem_eq(b2.seg_start, b.seg_start, (size_t)(B * b.T) * sizeof(int32_t));
        ck_assert_mem_eq(b2.targets, b.targets, (size_t)(B * b.T) * sizeof(int32_t));
        ck_assert_mem_eq(b2.pos, b.pos, (size_t)(B * b.T) * sizeof(int32_t));
    }
    ck_assert_int_ge(ep, 2);
    free(pairs);
    lc_batch_free(&b);
    lc_batch_free(&b2);
    lc_batcher_free(&a);
    lc_batcher_free(&c);
}
END_TEST

// Appends the examples of b (syn indices, in batch order) to out; returns how many.
static int syn_batch_examples(const lc_batch *b, int *out) {
    int n = 0;
    for (int r = 0; r < b->B; r++)
        for (int t = 0; t < b->T; t++) {
            int k = r * b->T + t;
            if (t > 0 && b->pos[k] == 0 && b->seg_start[k] == 0) break; // padding
            if (b->pos[k] == 0) out[n++] = syn_example(b->tokens[k]);
        }
    return n;
}

// An epoch-based walk (96 examples in batches of 7 ended at epoch 1 index 2):
// every example exactly once an epoch, in that epoch's order, no batch
// spanning two epochs, nothing after the last, and as many batches as
// lc_batcher_count_batches says, packed or not. 53 examples divide by none
// of the batch sizes.
START_TEST(test_batcher_epoch_bound) {
    const int L = 16, sizes[] = {1, 4, 7};
    int64_t packed_counts[3] = {0};
    for (int packing = 0; packing < 2; packing++)
        for (int si = 0; si < 3; si++)
            for (int64_t E = 1; E <= 3; E++) {
                const int B = sizes[si];
                lc_batcher a, c;
                lc_batch b, b2;
                ck_assert_int_eq(lc_batcher_init(&a, &syn, B, L, packing, true, 11), LC_STATUS_OK);
                ck_assert_int_eq(lc_batcher_init(&c, &syn, B, L, packing, true, 11), LC_STATUS_OK);
                ck_assert_int_eq(lc_batch_init(&b, B, L), LC_STATUS_OK);
                ck_assert_int_eq(lc_batch_init(&b2, B, L), LC_STATUS_OK);
                lc_batcher_set_epochs(&a, E);
                lc_batcher_set_epochs(&c, E);
                int64_t want_batches;
                ck_assert_int_eq(lc_batcher_count_batches(&a, E, &want_batches), LC_STATUS_OK);
                static int orders[3][SYN_N];
                for (int e = 0; e < E; e++) {
                    lc_batcher_seek(&c, e, 0);
                    memcpy(orders[e], c.order, sizeof orders[e]);
                }
                int seen[3][SYN_N] = {{0}}, served = 0, ids[16 * 8];
                int64_t batches = 0, per_epoch[3] = {0};
                int64_t pairs[16 * 8];
                for (;;) {
                    int64_t e0 = a.epoch;
                    int i0 = a.index;
                    lc_batcher_next(&a, &b);
                    if (b.B == 0) break;
                    ck_assert_int_le(b.B, B);
                    if (packing) check_packed(&b, L, pairs, 1 << 20);
                    else check_unpacked(&b);
                    int n = syn_batch_examples(&b, ids);
                    int ep = served / SYN_N;
                    ck_assert_int_lt(ep, E);
                    ck_assert_int_le(served % SYN_N + n, SYN_N); // within one epoch
                    for (int k = 0; k < n; k++, served++) {
                        ck_assert_int_eq(ids[k], orders[ep][served % SYN_N]);
                        seen[ep][ids[k]]++;
                    }
                    batches++;
                    per_epoch[ep]++;
                    // A resumed run replays the same batch from the saved position.
                    lc_batcher_seek(&c, e0, i0);
                    lc_batcher_next(&c, &b2);
                    ck_assert_int_eq(b2.B, b.B);
                    ck_assert_int_eq(b2.T, b.T);
                    ck_assert_mem_eq(b2.tokens, b.tokens, (size_t)(b.B * b.T) * sizeof(int32_t));
                    ck_assert_mem_eq(b2.targets, b.targets, (size_t)(b.B * b.T) * sizeof(int32_t));
                    ck_assert_int_eq(c.epoch, a.epoch);
                    ck_assert_int_eq(c.index, a.index);
                }
                ck_assert_int_eq(served, E * SYN_N);
                for (int e = 0; e < E; e++)
                    for (int i = 0; i < SYN_N; i++) ck_assert_int_eq(seen[e][i], 1);
                ck_assert_int_eq(batches, want_batches);
                ck_assert_int_eq(a.epoch, E - 1); // ends exactly at the last epoch's end
                ck_assert_int_eq(a.index, SYN_N);
                ck_assert_int_eq(b.n_targets, 0);
                ck_assert_int_eq(b.n_tokens, 0);
                lc_batcher_next(&a, &b); // and stays there
                ck_assert_int_eq(b.B, 0);
                ck_assert_int_eq(a.epoch, E - 1);
                if (!packing) ck_assert_int_eq(per_epoch[E - 1], (SYN_N + B - 1) / B);
                if (packing && E == 3 && B == 1) memcpy(packed_counts, per_epoch, sizeof packed_counts);
                lc_batch_free(&b);
                lc_batch_free(&b2);
                lc_batcher_free(&a);
                lc_batcher_free(&c);
            }
    // Packed rows follow each epoch's own order: here (B 1) the epochs'
    // batch counts differ, so no one order counts them all.
    ck_assert(packed_counts[0] != packed_counts[1] || packed_counts[1] != packed_counts[2]);
}
END_TEST

START_TEST(test_batcher_refuses_long_examples) {
    lc_batcher it;
    ck_assert_int_eq(lc_batcher_init(&it, &syn, 2, 8, false, false, 0), LC_STATUS_INPUT);
    ck_assert_int_eq(lc_batcher_init(&it, &syn, 0, 16, false, false, 0), LC_STATUS_INPUT);
    lc_batch b;
    ck_assert_int_eq(lc_batch_init(&b, INT_MAX, 1024), LC_STATUS_INPUT);
}
END_TEST

// ---------------------------------------------------------------------------
// Split

static void check_split(const lc_dataset *all, const lc_dataset *tr, const lc_dataset *va, int n_valid) {
    ck_assert_int_eq(va->n_examples, n_valid);
    ck_assert_int_eq(tr->n_examples + va->n_examples, all->n_examples);
    ck_assert_int_eq(tr->n_tokens + va->n_tokens, all->n_tokens);
    ck_assert_int_eq(tr->n_truncated + va->n_truncated, all->n_truncated);
    ck_assert_int_eq(tr->n_no_targets + va->n_no_targets, all->n_no_targets);
    char *where = calloc((size_t)all->n_examples + 1, 1);
    const lc_dataset *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++) {
        int64_t off = 0;
        for (int i = 0; i < parts[p]->n_examples; i++) {
            const lc_example *e = &parts[p]->examples[i];
            if (i > 0) ck_assert_int_gt(e->line, parts[p]->examples[i - 1].line); // file order kept
            ck_assert_int_eq(where[e->line], 0);                                  // disjoint
            where[e->line] = 1;
            const lc_example *o = &all->examples[e->line - 1];
            ck_assert_int_eq(e->n, o->n);
            ck_assert_int_eq(e->n_prompt, o->n_prompt);
            ck_assert_mem_eq(e->ids, o->ids, (size_t)e->n * sizeof *e->ids);
            ck_assert_ptr_eq(e->ids, parts[p]->storage + off); // owns its storage
            off += e->n;
        }
    }
    free(where);
}

START_TEST(test_split) {
    lc_dataset ref, a, b, tr, va, tr2, va2;
    load_ok(&ref, DATA "mgsm_es.jsonl", 64, true);
    load_ok(&a, DATA "mgsm_es.jsonl", 64, true);
    ck_assert_int_gt(ref.n_truncated, 0);
    ck_assert_int_eq(lc_dataset_split(&a, 0.1, 5, &tr, &va), LC_STATUS_OK);
    ck_assert_ptr_null(a.examples); // consumed
    check_split(&ref, &tr, &va, 25);

    // Same seed, same split; train may alias the input.
    load_ok(&b, DATA "mgsm_es.jsonl", 64, true);
    ck_assert_int_eq(lc_dataset_split(&b, 0.1, 5, &b, &va2), LC_STATUS_OK);
    ck_assert_int_eq(b.n_examples, tr.n_examples);
    for (int i = 0; i < va.n_examples; i++) ck_assert_int_eq(va.examples[i].line, va2.examples[i].line);
    lc_dataset_free(&b);
    lc_dataset_free(&va2);

    // Another seed, another split.
    load_ok(&b, DATA "mgsm_es.jsonl", 64, true);
    ck_assert_int_eq(lc_dataset_split(&b, 0.1, 6, &tr2, &va2), LC_STATUS_OK);
    check_split(&ref, &tr2, &va2, 25);
    bool same = true;
    for (int i = 0; i < va.n_examples; i++) same &= va.examples[i].line == va2.examples[i].line;
    ck_assert(!same);
    lc_dataset_free(&tr2);
    lc_dataset_free(&va2);
    lc_dataset_free(&tr);
    lc_dataset_free(&va);

    // Tiny fractions still give one example each side.
    load_ok(&b, DATA "mgsm_es.jsonl", 64, true);
    ck_assert_int_eq(lc_dataset_split(&b, 0.0001, 1, &tr, &va), LC_STATUS_OK);
    check_split(&ref, &tr, &va, 1);
    lc_dataset_free(&tr);
    lc_dataset_free(&va);
    load_ok(&b, DATA "mgsm_es.jsonl", 64, true);
    ck_assert_int_eq(lc_dataset_split(&b, 0.9999, 1, &tr, &va), LC_STATUS_OK);
    check_split(&ref, &tr, &va, 249);
    lc_dataset_free(&tr);
    lc_dataset_free(&va);

    // Bad fractions and a one-example set are refused; the input is consumed
    // either way and the outputs are empty.
    const double bad[] = {0.0, 1.0, -0.5, NAN};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        load_ok(&b, DATA "mgsm_es.jsonl", 64, true);
        ck_assert_int_eq(lc_dataset_split(&b, bad[k], 1, &tr, &va), LC_STATUS_INPUT);
        ck_assert_ptr_null(b.examples);
        ck_assert_ptr_null(tr.examples);
        ck_assert_ptr_null(va.storage);
    }
    char *dir = lc_test_tmpdir(), path[4096];
    lc_test_write(dir, "one.jsonl", OK_LINE, strlen(OK_LINE));
    snprintf(path, sizeof path, "%s/one.jsonl", dir);
    load_ok(&b, path, 64, true);
    ck_assert_int_eq(lc_dataset_split(&b, 0.5, 1, &tr, &va), LC_STATUS_INPUT);
    ck_assert_ptr_nonnull(strstr(lc_error_message(), "cannot split 1 example"));
    lc_test_rmdir(dir);
    free(dir);
    lc_dataset_free(&ref);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dataset");
    TCase *load = tcase_create("load");
    tcase_add_unchecked_fixture(load, global_setup, global_teardown);
    tcase_set_timeout(load, 120);
    tcase_add_test(load, test_gsm8k_load);
    tcase_add_test(load, test_other_shared_files_load);
    tcase_add_test(load, test_mask_targets);
    tcase_add_test(load, test_truncation_count);
    tcase_add_test(load, test_text_records);
    tcase_add_test(load, test_boundary_merge);
    tcase_add_test(load, test_bad_files);
    tcase_add_test(load, test_packing_matches_unpacked);
    tcase_add_test(load, test_split);
    suite_add_tcase(s, load);
    TCase *batch = tcase_create("batcher");
    tcase_add_checked_fixture(batch, syn_setup, syn_teardown);
    tcase_add_test(batch, test_batcher_epochs);
    tcase_add_test(batch, test_batcher_eval_in_file_order);
    tcase_add_test(batch, test_packing_seek_and_rows);
    tcase_add_test(batch, test_batcher_refuses_long_examples);
    tcase_add_test(batch, test_batcher_epoch_bound);
    suite_add_tcase(s, batch);
    return lc_test_run_suite(s);
}
