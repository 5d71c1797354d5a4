// `lora train` and `lora eval` end to end on stories260K: bad data and
// configs refused before training, a short run that learns, metrics rows,
// the adapter used by eval and generate, and bitwise determinism.
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "checkpoint_compare.h"
#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"

static char *tmp;

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
    free(tmp);
}

// Writes a config into tmp/name.json with the given data files and extra JSON members.
static char *write_config(const char *name, const char *train, const char *extra) {
    static char path[4200];
    char text[8192];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\",\n"
                     " \"lora\": {\"r\": 4, \"alpha\": 8}, \"optimizer\": {\"lr\": 3e-3},\n"
                     " \"schedule\": {\"type\": \"constant\", \"warmup_steps\": 0},\n"
                     " \"batch_size\": 4, \"max_seq_len\": 128, \"steps\": 12, \"seed\": 5%s%s}\n",
                     MODEL_DIR, train, tmp, extra[0] ? ", " : "", extra);
    snprintf(path, sizeof path, "%s.json", name);
    lc_test_write(tmp, path, text, (size_t)n);
    snprintf(path, sizeof path, "%s/%s.json", tmp, name);
    return path;
}

static int run_dir_has_checkpoint(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) found |= strncmp(e->d_name, "checkpoint-", 11) == 0;
    closedir(d);
    return found;
}

static void expect_refused(const char *const *args, int status, const char *needle) {
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == status, "exit %d, wanted %d: %s", r.status, status, r.err);
    ck_assert_msg(strstr(r.err, needle) != NULL, "stderr \"%s\" lacks \"%s\"", r.err, needle);
    ck_assert_msg(lc_test_count_lines(r.err) == 1, "stderr is not one line: %s", r.err);
    ck_assert_msg(!run_dir_has_checkpoint(), "a checkpoint was written");
    lc_test_run_free(&r);
}

START_TEST(test_bad_data_lines) {
    const char *good = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
    char text[512];
    char path[4200];
    snprintf(text, sizeof text, "%s%s{\"prompt\": \"x\", \"completion\": }\n", good, good);
    lc_test_write(tmp, "invalid.jsonl", text, strlen(text));
    snprintf(path, sizeof path, "%s/invalid.jsonl", tmp);
    const char *a1[] = {"train", "--config", write_config("c1", path, ""), NULL};
    char needle[4300];
    snprintf(needle, sizeof needle, "%s:3: ", path);
    expect_refused(a1, 2, needle);
    // The refused run leaves no output_dir behind (it made it, for its lock).
    char run[4300];
    snprintf(run, sizeof run, "%s/run", tmp);
    ck_assert_msg(access(run, F_OK) != 0, "a refused run left %s", run);

    snprintf(text, sizeof text, "%s{\"prompt\": \"only a prompt\"}\n", good);
    lc_test_write(tmp, "nocompletion.jsonl", text, strlen(text));
    snprintf(path, sizeof path, "%s/nocompletion.jsonl", tmp);
    const char *a2[] = {"train", "--config", write_config("c2", path, ""), NULL};
    snprintf(needle, sizeof needle, "%s:2: ", path);
    expect_refused(a2, 2, needle);
    expect_refused(a2, 2, "completion");

    lc_test_write(tmp, "empty.jsonl", "", 0);
    snprintf(path, sizeof path, "%s/empty.jsonl", tmp);
    const char *a3[] = {"train", "--config", write_config("c3", path, ""), NULL};
    expect_refused(a3, 2, "empty.jsonl");
}
END_TEST

START_TEST(test_bad_configs) {
    const char *a1[] = {"train", "--config", write_config("typo", DATA, "\"lerning_rate\": 1e-3"), NULL};
    expect_refused(a1, 2, "unknown key \"lerning_rate\"");
    // A typo inside an object; written whole, since write_config's own
    // "schedule" would make it a duplicate key.
    char nested[8192], nested_path[4200];
    int n = snprintf(nested, sizeof nested,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\", \"steps\": 12,\n"
                     " \"schedule\": {\"kind\": \"cosine\"}}\n", MODEL_DIR, DATA, tmp);
    lc_test_write(tmp, "nested.json", nested, (size_t)n);
    snprintf(nested_path, sizeof nested_path, "%s/nested.json", tmp);
    const char *a2[] = {"train", "--config", nested_path, NULL};
    expect_refused(a2, 2, "unknown key \"schedule.kind\"");
    const char *a3[] = {"train", "--config", write_config("ok", DATA, ""), "--set", "lora.rank=8", NULL};
    expect_refused(a3, 1, "unknown key \"lora.rank\"");
    const char *a4[] = {"train", "--config", write_config("target", DATA, ""), "--set", "lora.targets=[\"qproj\"]",
                        NULL};
    expect_refused(a4, 2, "unknown module \"qproj\"");
    // The names it accepts, of every family (the model is not loaded yet).
    expect_refused(a4, 2, "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama-style");
    expect_refused(a4, 2, "qkv_proj, gate_up_proj (Phi-3), c_attn, c_proj, c_fc (GPT-2), query_key_value, dense, "
                          "dense_h_to_4h, dense_4h_to_h (Falcon, Bloom)");
    // A name of another family: known, but not a module of this Llama.
    const char *a6[] = {"train", "--config", write_config("fused", DATA, ""), "--set", "lora.targets=[\"c_attn\"]",
                        NULL};
    lc_test_run r = lc_test_lora(a6);
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    const char *last = r.err;
    for (const char *p = r.err; *p; p++)
        if (p[0] == '\n' && p[1]) last = p + 1;
    ck_assert_msg(strstr(last, "lora train: ") == last && strstr(last, ".json: lora.targets: llama models have no qkv_proj/c_attn/query_key_value module") &&
                      strstr(last, "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj") &&
                      lc_test_count_lines(last) == 1,
                  "%s", r.err);
    ck_assert_msg(!run_dir_has_checkpoint(), "a checkpoint was written");
    lc_test_run_free(&r);
    const char *a5[] = {"train", "--config", write_config("both", DATA, "\"epochs\": 1"), NULL};
    expect_refused(a5, 2, "exactly one of \"steps\" and \"epochs\"");
}
END_TEST

// Reads the "loss" of training row `step` from metrics.jsonl (-1 if absent).
static double metric(const char *metrics, int step, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "{\"step\": %d, \"%s\": ", step, key);
    const char *p = strstr(metrics, pat);
    return p ? atof(p + strlen(pat)) : -1.0;
}

START_TEST(test_train_learns_and_adapter_is_used) {
    const char *cfg = write_config("run", DATA, "\"eval_every\": 6, \"valid_split\": 0.1");
    const char *args[] = {"train", "--config", cfg, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);

    char path[4200];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", tmp);
    char *m = lc_test_read(path, NULL);
    for (int s = 1; s <= 12; s++) {
        ck_assert_msg(metric(m, s, "loss") > 0, "no training row for step %d", s);
        char row[64];
        snprintf(row, sizeof row, "{\"step\": %d, \"loss\": ", s);
        const char *line = strstr(m, row);
        ck_assert(strstr(line, "\"lr\": ") && strstr(line, "\"grad_norm\": ") && strstr(line, "\"tokens_per_s\": ") &&
                  strstr(line, "\"elapsed_s\": "));
    }
    double first = metric(m, 1, "loss"), last = metric(m, 12, "loss");
    ck_assert_msg(last < first, "loss did not fall: %g -> %g", first, last);
    double e6 = metric(m, 6, "eval_loss"), e12 = metric(m, 12, "eval_loss");
    ck_assert_msg(e6 > 0 && e12 > 0 && e12 < e6, "eval rows: %g then %g", e6, e12);
    free(m);

    // The adapter lowers the loss on the training data (eval) and is accepted by generate.
    snprintf(path, sizeof path, "%s/run/checkpoint-12.h5", tmp);
    const char *base[] = {"eval", "--model", MODEL_DIR, "--data", DATA, "--max-seq-len", "128", NULL};
    const char *tuned[] = {"eval", "--model", MODEL_DIR, "--adapter", path, "--data", DATA, "--max-seq-len", "128", NULL};
    lc_test_run rb = lc_test_lora(base), rt = lc_test_lora(tuned);
    ck_assert_msg(rb.status == 0 && rt.status == 0, "%s %s", rb.err, rt.err);
    double lb = atof(strstr(rb.out, "\"loss\": ") + 8), lt = atof(strstr(rt.out, "\"loss\": ") + 8);
    ck_assert_msg(lt < lb, "adapter did not lower the loss: %g vs %g", lt, lb);
    ck_assert_ptr_nonnull(strstr(rt.out, "\"ppl\": "));
    ck_assert_ptr_nonnull(strstr(rt.out, "\"tokens\": "));
    lc_test_run_free(&rb);
    lc_test_run_free(&rt);

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    const char *gen[] = {"generate", "--model", MODEL_DIR, "--adapter", dir, "--prompt", "Once", "--temperature", "0",
                         "--max-tokens", "8", NULL};
    const char *gen_base[] = {"generate", "--model", MODEL_DIR, "--prompt", "Once", "--temperature", "0",
                              "--max-tokens", "8", NULL};
    lc_test_run g = lc_test_lora(gen), gb = lc_test_lora(gen_base);
    ck_assert_msg(g.status == 0, "%s", g.err);
    ck_assert(strncmp(g.out, "Once", 4) == 0);
    lc_test_run_free(&g);
    lc_test_run_free(&gb);
}
END_TEST

START_TEST(test_same_config_same_bytes) {
    const char *cfg = write_config("det", DATA, "\"packing\": true, \"grad_accum\": 2");
    const char *args[] = {"train", "--config", cfg, "--set", "lora.dropout=0.1", NULL};
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/run/checkpoint-12.h5", tmp);
    snprintf(b, sizeof b, "%s/first.h5", tmp);
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    ck_assert_int_eq(rename(a, b), 0);
    r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    // Everything but the time each run took (checkpoint_compare.h).
    lc_test_assert_same_checkpoint(a, b, MODEL_DIR, "two runs of one config");
}
END_TEST

START_TEST(test_init_adapter) {
    const char *first[] = {"train", "--config", write_config("first", DATA, ""), NULL};
    lc_test_run r = lc_test_lora(first);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char adapter[4300], out2[4300], out3[4300], set_init[4400];
    snprintf(adapter, sizeof adapter, "%s/run/checkpoint-12.h5", tmp);
    snprintf(set_init, sizeof set_init, "init_adapter=%s", adapter);
    snprintf(out2, sizeof out2, "output_dir=%s/second", tmp);
    snprintf(out3, sizeof out3, "output_dir=%s/fresh", tmp);
    // Same data order and seed: step 1 of a run started from the adapter sees
    // a lower loss than step 1 of a fresh run (B = 0, the base model).
    const char *second[] = {"train", "--config", write_config("second", DATA, ""), "--set", set_init, "--set", out2,
                            "--set", "steps=1", NULL};
    const char *fresh[] = {"train", "--config", write_config("fresh", DATA, ""), "--set", out3, "--set", "steps=1",
                           NULL};
    r = lc_test_lora(second);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "starting from the adapter"));
    lc_test_run_free(&r);
    r = lc_test_lora(fresh);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char path[4300];
    snprintf(path, sizeof path, "%s/second/metrics.jsonl", tmp);
    char *m2 = lc_test_read(path, NULL);
    snprintf(path, sizeof path, "%s/fresh/metrics.jsonl", tmp);
    char *m3 = lc_test_read(path, NULL);
    double l2 = metric(m2, 1, "loss"), l3 = metric(m3, 1, "loss");
    ck_assert_msg(l2 > 0 && l3 > 0 && l2 < l3, "init_adapter loss %g vs fresh %g", l2, l3);
    free(m2);
    free(m3);
    // A rank or targets that disagree with the adapter are refused, naming
    // the adapter's value and the config's.
    snprintf(out2, sizeof out2, "output_dir=%s/bad", tmp);
    const char *bad[] = {"train", "--config", write_config("bad", DATA, ""), "--set", set_init, "--set", out2,
                         "--set", "lora.r=8", NULL};
    r = lc_test_lora(bad);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "checkpoint-12.h5: the adapter has rank 4; the config has rank 8;") != NULL, "%s",
                  r.err);
    lc_test_run_free(&r);
    const char *bad_targets[] = {"train", "--config", write_config("bad", DATA, ""), "--set", set_init, "--set", out2,
                                 "--set", "lora.targets=[\"q_proj\",\"v_proj\"]", NULL};
    r = lc_test_lora(bad_targets);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "checkpoint-12.h5: the adapter has targets q_proj,k_proj,v_proj,o_proj,gate_proj,"
                                "up_proj,down_proj; the config has targets q_proj,v_proj;") != NULL,
                  "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// Loss of step 1 (before any update: the model the run starts from) of a
// one-step run from `adapter` with the given lora overrides.
static double init_start_loss(const char *adapter, const char *name, const char *alpha, const char *rslora,
                              char **err) {
    char set_init[4400], out[4300];
    snprintf(set_init, sizeof set_init, "init_adapter=%s", adapter);
    snprintf(out, sizeof out, "output_dir=%s/%s", tmp, name);
    const char *args[] = {"train", "--config", write_config(name, DATA, ""), "--set", set_init, "--set", out,
                          "--set", "steps=1", "--set", alpha, "--set", rslora, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    *err = r.err;
    free(r.out);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, name);
    char *m = lc_test_read(path, NULL);
    double loss = metric(m, 1, "loss");
    free(m);
    ck_assert(loss > 0);
    return loss;
}

// An adapter trained with alpha 8 started in runs with alpha 64, or with
// rsLoRA: B is rescaled so each starts from the adapter's model (the same
// first loss), and stderr says so naming both alphas.
START_TEST(test_init_adapter_other_alpha) {
    const char *first[] = {"train", "--config", write_config("first", DATA, ""), NULL};
    lc_test_run r = lc_test_lora(first);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char adapter[4300];
    snprintf(adapter, sizeof adapter, "%s/run/checkpoint-12.h5", tmp);
    char *e_same, *e_alpha, *e_rs;
    double same = init_start_loss(adapter, "same", "lora.alpha=8", "lora.rslora=false", &e_same);
    double alpha = init_start_loss(adapter, "alpha", "lora.alpha=64", "lora.rslora=false", &e_alpha);
    double rs = init_start_loss(adapter, "rs", "lora.alpha=8", "lora.rslora=true", &e_rs);
    ck_assert_msg(fabs(alpha - same) < 1e-5 && fabs(rs - same) < 1e-5, "first losses %.6f, alpha 64 %.6f, rsLoRA %.6f",
                  same, alpha, rs);
    ck_assert_msg(strstr(e_same, "multiplied") == NULL, "%s", e_same);
    ck_assert_msg(strstr(e_alpha, "trained with alpha 8, this run has alpha 64: its B is multiplied by 0.125") != NULL,
                  "%s", e_alpha);
    ck_assert_msg(strstr(e_rs, "trained with alpha 8, this run has alpha 8 (rsLoRA): its B is multiplied by 0.5") !=
                      NULL, "%s", e_rs);
    free(e_same);
    free(e_alpha);
    free(e_rs);
}
END_TEST

// An adapter trained with dropout keeps it: the PEFT export says
// lora_dropout 0.1, and evaluation, which applies no dropout, gives the same
// loss every time and whatever the adapter's dropout says.
START_TEST(test_dropout_kept_in_export) {
    const char *train[] = {"train", "--config", write_config("drop", DATA, ""), "--set", "lora.dropout=0.1", NULL};
    lc_test_run r = lc_test_lora(train);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char adapter[4300], peft[4300], cfg_path[4400];
    snprintf(adapter, sizeof adapter, "%s/run/checkpoint-12.h5", tmp);
    snprintf(peft, sizeof peft, "%s/peft", tmp);
    const char *exp[] = {"export", "--model", MODEL_DIR, "--adapter", adapter, "--out", peft, "--format", "peft", NULL};
    r = lc_test_lora(exp);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", peft);
    char *cfg = lc_test_read(cfg_path, NULL);
    ck_assert_msg(strstr(cfg, "\"lora_dropout\": 0.1,") != NULL, "%s", cfg);

    const char *ev_ckpt[] = {"eval", "--model", MODEL_DIR, "--adapter", adapter, "--data", DATA,
                             "--max-seq-len", "128", NULL};
    const char *ev_peft[] = {"eval", "--model", MODEL_DIR, "--adapter", peft, "--data", DATA,
                             "--max-seq-len", "128", NULL};
    lc_test_run e1 = lc_test_lora(ev_ckpt), e2 = lc_test_lora(ev_ckpt), e3 = lc_test_lora(ev_peft);
    ck_assert_msg(e1.status == 0 && e2.status == 0 && e3.status == 0, "%s %s %s", e1.err, e2.err, e3.err);
    ck_assert_str_eq(e1.out, e2.out);
    ck_assert_str_eq(e1.out, e3.out);
    // The same tensors with lora_dropout 0: the same loss.
    char *at = strstr(cfg, "\"lora_dropout\": 0.1,");
    memmove(at + 17, at + 19, strlen(at + 19) + 1); // "0.1," -> "0,"
    ck_assert_ptr_nonnull(strstr(cfg, "\"lora_dropout\": 0,"));
    lc_test_write(peft, "adapter_config.json", cfg, strlen(cfg));
    free(cfg);
    lc_test_run e4 = lc_test_lora(ev_peft);
    ck_assert_msg(e4.status == 0, "%s", e4.err);
    ck_assert_str_eq(e1.out, e4.out);
    lc_test_run_free(&e1);
    lc_test_run_free(&e2);
    lc_test_run_free(&e3);
    lc_test_run_free(&e4);
}
END_TEST

// stdout of a greedy --ids generation (caller frees).
static char *greedy_ids(const char *model, const char *adapter) {
    const char *args[] = {"generate", "--model", model, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "40", "--ids", adapter ? "--adapter" : NULL, adapter, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    free(r.err);
    return r.out;
}

START_TEST(test_export_round_trips) {
    const char *train[] = {"train", "--config", write_config("exp", DATA, ""), NULL};
    lc_test_run r = lc_test_lora(train);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    char adapter[4300], hf[4300], peft[4300], gguf[4300];
    snprintf(adapter, sizeof adapter, "%s/run/checkpoint-12.h5", tmp);
    snprintf(hf, sizeof hf, "%s/merged", tmp);
    snprintf(peft, sizeof peft, "%s/peft", tmp);
    snprintf(gguf, sizeof gguf, "%s/merged.gguf", tmp);
    const char *e1[] = {"export", "--model", MODEL_DIR, "--adapter", adapter, "--out", hf, "--format", "hf", NULL};
    const char *e2[] = {"export", "--model", MODEL_DIR, "--adapter", adapter, "--out", peft, "--format", "peft", NULL};
    const char *e3[] = {"export", "--model", MODEL_DIR, "--adapter", adapter, "--out", gguf, "--format", "gguf",
                        "--dtype", "f16", NULL};
    const char *const *exports[] = {e1, e2, e3};
    for (int i = 0; i < 3; i++) {
        r = lc_test_lora(exports[i]);
        ck_assert_msg(r.status == 0, "%s", r.err);
        lc_test_run_free(&r);
    }
    // The merged folder, the PEFT folder and the checkpoint generate the same greedy tokens.
    char *with_adapter = greedy_ids(MODEL_DIR, adapter), *merged = greedy_ids(hf, NULL);
    char *via_peft = greedy_ids(MODEL_DIR, peft), *base = greedy_ids(MODEL_DIR, NULL);
    ck_assert_str_eq(with_adapter, merged);
    ck_assert_str_eq(with_adapter, via_peft);
    ck_assert_str_ne(with_adapter, base); // the adapter changes what is generated
    free(with_adapter);
    free(merged);
    free(via_peft);
    free(base);
    const char *insp[] = {"inspect", peft, NULL};
    r = lc_test_lora(insp);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\"peft_type\": \"LORA\""));
    lc_test_run_free(&r);

    // A PEFT config whose rank disagrees with its tensors: exit 2, one line.
    char cfg_path[4400];
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", peft);
    char *cfg = lc_test_read(cfg_path, NULL);
    char *rpos = strstr(cfg, "\"r\": 4");
    ck_assert_ptr_nonnull(rpos);
    rpos[5] = '8';
    lc_test_write(peft, "adapter_config.json", cfg, strlen(cfg));
    free(cfg);
    const char *bad[] = {"generate", "--model", MODEL_DIR, "--adapter", peft, "--prompt", "Once", NULL};
    r = lc_test_lora(bad);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "r=8") != NULL && lc_test_count_lines(r.err) == 1, "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// Issue 20.3: a validation set with no target token (every completion cut
// by max_seq_len) is refused before the first step, naming the file, for a
// valid_data file and for a valid_split of the training data alike.
START_TEST(test_validation_without_targets_refused_at_start) {
    char path[4200], text[2048];
    int n = snprintf(text, sizeof text, "{\"prompt\": \"");
    for (int k = 0; k < 60; k++) n += snprintf(text + n, sizeof text - (size_t)n, "word ");
    n += snprintf(text + n, sizeof text - (size_t)n, "\", \"completion\": \"the end\"}\n");
    lc_test_write(tmp, "long_prompts.jsonl", text, (size_t)n);
    snprintf(path, sizeof path, "%s/long_prompts.jsonl", tmp);
    const char *shorts = "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"c\", \"completion\": \"d\"}\n";
    lc_test_write(tmp, "short.jsonl", shorts, strlen(shorts));
    char extra[4400], train[4200];
    snprintf(train, sizeof train, "%s/short.jsonl", tmp);
    snprintf(extra, sizeof extra, "\"valid_data\": \"%s\", \"eval_every\": 4", path);
    const char *a1[] = {"train", "--config", write_config("valid", train, extra), "--set", "max_seq_len=32", NULL};
    lc_test_run r = lc_test_lora(a1);
    char want[4300];
    snprintf(want, sizeof want, "%s: no validation example has a completion token within max_seq_len 32", path);
    ck_assert_msg(r.status == 2 && strstr(r.err, want) && !strstr(r.err, "step 1/"), "exit %d: %s", r.status, r.err);
    ck_assert_msg(!run_dir_has_checkpoint(), "a checkpoint was written");
    lc_test_run_free(&r);

    // Long prompts mixed into the training data: the split that takes only
    // those is found, whatever examples the seed sends to validation.
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fprintf(f, "%s%s", text, text);
    for (int k = 0; k < 4; k++) fprintf(f, "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    fclose(f);
    int refused = 0;
    for (int seed = 0; seed < 16 && !refused; seed++) {
        char set_seed[32];
        snprintf(set_seed, sizeof set_seed, "seed=%d", seed);
        const char *a2[] = {"train", "--config", write_config("split", path, "\"valid_split\": 0.3"), "--set",
                            "max_seq_len=32", "--set", set_seed, "--set", "steps=2", NULL};
        r = lc_test_lora(a2);
        if (r.status == 2) {
            snprintf(want, sizeof want, "%s: none of the 2 examples split off for validation (valid_split 0.3, "
                     "seed %d)", path, seed);
            ck_assert_msg(strstr(r.err, want) && !strstr(r.err, "step 1/"), "%s", r.err);
            ck_assert_msg(!run_dir_has_checkpoint(), "a checkpoint was written");
            refused = 1;
        } else {
            ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
            char cmd[4300];
            snprintf(cmd, sizeof cmd, "rm -rf '%s/run'", tmp);
            ck_assert_int_eq(system(cmd), 0);
        }
        lc_test_run_free(&r);
    }
    ck_assert_msg(refused, "no seed split off only the long examples");
}
END_TEST

// Issue 20.17: a token the model has no embedding for (a tokenizer with more
// tokens than the model) is reported naming FILE:LINE before training, and
// by `lora eval`.
START_TEST(test_token_outside_vocabulary_names_the_line) {
    char model[4200];
    snprintf(model, sizeof model, "%s/model", tmp);
    ck_assert_int_eq(mkdir(model, 0755), 0);
    lc_test_copy(MODEL_DIR "/config.json", model, "config.json");
    lc_test_copy(MODEL_DIR "/model.safetensors", model, "model.safetensors");
    size_t len;
    char *tok = lc_test_read(MODEL_DIR "/tokenizer.json", &len);
    const char *key = "\"added_tokens\": [";
    char *at = strstr(tok, key);
    ck_assert(at != NULL);
    at += strlen(key);
    char *grown = malloc(len + 256);
    int n = snprintf(grown, len + 256, "%.*s{\"id\": 600, \"content\": \"<|extra|>\", \"single_word\": false, "
                     "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}, %s",
                     (int)(at - tok), tok, at);
    lc_test_write(model, "tokenizer.json", grown, (size_t)n);
    free(grown);
    free(tok);
    const char *data = "{\"prompt\": \"hi\", \"completion\": \"ok\"}\n{\"prompt\": \"hi <|extra|>\", \"completion\": "
                       "\"ok\"}\n";
    lc_test_write(tmp, "extra.jsonl", data, strlen(data));
    char path[4300], set_model[4300], want[4400];
    snprintf(path, sizeof path, "%s/extra.jsonl", tmp);
    snprintf(set_model, sizeof set_model, "model=%s", model);
    snprintf(want, sizeof want, "%s:2: token id 600 is outside the model's vocabulary of 512", path);
    const char *train[] = {"train", "--config", write_config("vocab", path, ""), "--set", set_model, NULL};
    lc_test_run r = lc_test_lora(train);
    ck_assert_msg(r.status == 2 && strstr(r.err, want) && !strstr(r.err, "step 1/"), "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    const char *eval[] = {"eval", "--model", model, "--data", path, NULL};
    r = lc_test_lora(eval);
    ck_assert_msg(r.status == 2 && strstr(r.err, want) && lc_test_count_lines(r.err) == 1, "%s", r.err);
    lc_test_run_free(&r);
}
END_TEST

// Issue 20.18: a folder whose checkpoint is past the config's steps says what
// it holds and what to do (exit 2) instead of claiming a final checkpoint
// that does not exist; rerunning a finished run names its adapter (exit 0).
START_TEST(test_steps_below_existing_checkpoint) {
    const char *run[] = {"train", "--config", write_config("done", DATA, ""), NULL};
    lc_test_run r = lc_test_lora(run);
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    r = lc_test_lora(run);
    ck_assert_msg(r.status == 0 && strstr(r.err, "/run/checkpoint-12.h5 is already this run's final adapter"), "%s",
                  r.err);
    lc_test_run_free(&r);
    const char *fewer[] = {"train", "--config", write_config("done", DATA, ""), "--set", "steps=6", NULL};
    r = lc_test_lora(fewer);
    ck_assert_msg(r.status == 2 && strstr(r.err, "/run/checkpoint-12.h5 is already 12 steps in, past this config's 6 "
                                                 "steps: raise \"steps\""),
                  "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
}
END_TEST

// Runs an epoch-based config and checks it ends exactly at the last epoch's
// end: the final checkpoint's data position is (epochs - 1, every example),
// and every step trained something (an extra step would find the batcher
// spent). Returns the number of steps.
static long long run_epochs(const char *name, const char *extra, int batch_size, int max_seq_len, int epochs) {
    char set_out[4300], set_epochs[64], set_batch[64], set_len[64];
    snprintf(set_out, sizeof set_out, "output_dir=%s/%s", tmp, name);
    snprintf(set_epochs, sizeof set_epochs, "epochs=%d", epochs);
    snprintf(set_batch, sizeof set_batch, "batch_size=%d", batch_size);
    snprintf(set_len, sizeof set_len, "max_seq_len=%d", max_seq_len);
    const char *args[] = {"train", "--config", write_config(name, DATA, extra), "--set", set_out, "--set", "steps=",
                          "--set", set_epochs, "--set", set_batch, "--set", set_len, NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    const char *p = strstr(r.err, "training on ");
    ck_assert_ptr_nonnull(p);
    int n_examples = atoi(p + strlen("training on "));
    p = strstr(r.err, "adapter saved to ");
    ck_assert_ptr_nonnull(p);
    p = strstr(p, "/checkpoint-");
    long long steps = atoll(p + strlen("/checkpoint-"));
    char ckpt[4400];
    snprintf(ckpt, sizeof ckpt, "%s/%s/checkpoint-%lld.h5", tmp, name, steps);
    lc_test_run_free(&r);

    const char *insp[] = {"inspect", ckpt, NULL};
    r = lc_test_lora(insp);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char want[128];
    snprintf(want, sizeof want, "(data position: epoch %d, index %d)", epochs - 1, n_examples);
    ck_assert_msg(strstr(r.out, want) != NULL, "%s: %lld steps end at %s, not at %s", name, steps, r.out, want);
    lc_test_run_free(&r);

    char path[4400];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmp, name);
    char *m = lc_test_read(path, NULL);
    for (int s = 1; s <= steps; s++)
        ck_assert_msg(metric(m, s, "loss") > 0, "%s: step %d of %lld trained nothing", name, s, steps);
    ck_assert(metric(m, (int)steps + 1, "loss") < 0);
    free(m);
    return steps;
}

START_TEST(test_epochs_train_each_example_once) {
    // 96 examples (at max_seq_len 256) in batches of 7: the 14th batch of an
    // epoch holds 5, not 7 with 2 from the next epoch; grad_accum makes the
    // last step short of micro-batches.
    long long s1 = run_epochs("e1", "", 7, 256, 1);
    ck_assert_int_eq(s1, 14);
    long long s2 = run_epochs("e2", "\"grad_accum\": 3", 7, 256, 2);
    ck_assert_int_eq(s2, 10); // ceil(2 * 14 / 3)
    long long s3 = run_epochs("e3", "\"grad_accum\": 4", 7, 256, 1);
    ck_assert_int_eq(s3, 4); // ceil(14 / 4)
    // Packed, the rows (so the steps) follow each epoch's shuffled order: at
    // max_seq_len 512 the file order makes 81 rows, the first shuffle 79 (41
    // micro-batches of 2 counted, 40 made).
    run_epochs("p1", "\"packing\": true", 2, 512, 1);
    run_epochs("p2", "\"packing\": true, \"grad_accum\": 3", 2, 512, 2);
}
END_TEST

// One run of stories260K on GSM8K (all seven targets, 30 steps, evaluated at
// the end on the first 100 test problems) with the given "compute"; returns
// the metrics text (caller frees) and the run's stderr in *err (caller frees).
static char *run_compute(const char *name, const char *compute, char **err) {
    char text[8192], cfg[4200], test[4200], file[4300];
    snprintf(test, sizeof test, "%s/valid100.jsonl", tmp);
    if (access(test, F_OK) != 0) {
        FILE *in = fopen(LC_SHARED_DIR "/data/gsm8k_test.jsonl", "r"), *out = fopen(test, "w");
        ck_assert(in && out);
        char line[16384];
        for (int i = 0; i < 100 && fgets(line, sizeof line, in); i++) fputs(line, out);
        fclose(in);
        fclose(out);
    }
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"valid_data\": \"%s\", \"output_dir\": \"%s/%s\",\n"
                     " \"lora\": {\"r\": 16, \"alpha\": 32, \"targets\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\",\n"
                     " \"gate_proj\", \"up_proj\", \"down_proj\"]}, \"optimizer\": {\"lr\": 1e-3}, \"batch_size\": 8,\n"
                     " \"max_seq_len\": 256, \"steps\": 30, \"eval_every\": 30, \"seed\": 0, \"compute\": \"%s\"}\n",
                     MODEL_DIR, LC_SHARED_DIR "/data/gsm8k_train.jsonl", test, tmp, name, compute);
    snprintf(file, sizeof file, "%s.json", name);
    lc_test_write(tmp, file, text, (size_t)n);
    snprintf(cfg, sizeof cfg, "%s/%s.json", tmp, name);
    const char *train[] = {"train", "--config", cfg, NULL};
    lc_test_run r = lc_test_lora(train);
    ck_assert_msg(r.status == 0, "%s: exit %d: %s", name, r.status, r.err);
    *err = r.err;
    r.err = NULL;
    lc_test_run_free(&r);
    snprintf(file, sizeof file, "%s/%s/metrics.jsonl", tmp, name);
    return lc_test_read(file, NULL);
}

// "compute": "bf16" trains like fp32: the loss falls, the first step's loss
// and the final eval loss are within 1 % and 2 % of fp32's, and `lora eval
// --compute bf16` agrees with the run's own eval loss. With the kernel
// switched off (LC_BF16=off) a bf16 run says so in one line and is the fp32
// run bit for bit.
START_TEST(test_bf16_compute_trains_like_fp32) {
    char *e32, *e16, *eoff;
    char *m32 = run_compute("fp32", "fp32", &e32), *m16 = run_compute("bf16", "bf16", &e16);
    setenv("LC_BF16", "off", 1);
    char *moff = run_compute("bf16off", "bf16", &eoff);
    unsetenv("LC_BF16");
    double f32 = metric(m32, 1, "loss"), f16 = metric(m16, 1, "loss");
    double l32 = metric(m32, 30, "loss"), l16 = metric(m16, 30, "loss");
    double v32 = metric(m32, 30, "eval_loss"), v16 = metric(m16, 30, "eval_loss");
    ck_assert_msg(f32 > 0 && f16 > 0 && fabs(f16 - f32) < 0.01 * f32, "first loss fp32 %g, bf16 %g", f32, f16);
    ck_assert_msg(l16 < f16 - 0.5, "bf16 loss did not fall: %g -> %g (fp32 %g -> %g)", f16, l16, f32, l32);
    ck_assert_msg(v32 > 0 && v16 > 0 && fabs(v16 - v32) < 0.02 * v32, "eval loss fp32 %g, bf16 %g", v32, v16);
    ck_assert_msg(strstr(eoff, "\"compute\": \"bf16\": none (LC_BF16=off)") != NULL, "%s", eoff);
    ck_assert_msg(strstr(e16, "LC_BF16") == NULL, "%s", e16);
    for (int s = 1; s <= 30; s++)
        ck_assert_msg(metric(moff, s, "loss") == metric(m32, s, "loss"), "step %d: fallback %.9g, fp32 %.9g", s,
                      metric(moff, s, "loss"), metric(m32, s, "loss"));
    ck_assert(metric(moff, 30, "eval_loss") == v32);
    char run[4200], test[4200];
    snprintf(run, sizeof run, "%s/bf16", tmp);
    snprintf(test, sizeof test, "%s/valid100.jsonl", tmp);
    const char *eval[] = {"eval", "--model", MODEL_DIR, "--adapter", run, "--data", test, "--max-seq-len", "256",
                          "--compute", "bf16", NULL};
    lc_test_run r = lc_test_lora(eval);
    const char *p = strstr(r.out ? r.out : "", "\"loss\": ");
    ck_assert_msg(r.status == 0 && p, "exit %d: %s", r.status, r.err);
    ck_assert_msg(fabs(atof(p + 8) - v16) < 1e-4, "lora eval --compute bf16 %s vs the run's %g", p, v16);
    lc_test_run_free(&r);
    const char *bad[] = {"eval", "--model", MODEL_DIR, "--data", test, "--compute", "fp16", NULL};
    r = lc_test_lora(bad);
    ck_assert_msg(r.status == 1 && strstr(r.err, "--compute \"fp16\" is not fp32 or bf16"), "exit %d: %s", r.status,
                  r.err);
    lc_test_run_free(&r);
    free(m32);
    free(m16);
    free(moff);
    free(e32);
    free(e16);
    free(eoff);
}
END_TEST

// Training over a Q4_K_M GGUF base through the command line: the eval loss
// falls below the base's (lora eval with no adapter), lora eval with the run's
// adapter reports the run's own final eval loss, and the gguf-lora export of
// it is an adapter lora inspect recognizes.
START_TEST(test_train_on_quantized_gguf_base) {
    const char *base = LC_SHARED_DIR "/models/gguf/tiny-llama-256-q4_k_m.gguf";
    const char *train_data = LC_SHARED_DIR "/data/gsm8k_train.jsonl";
    char text[8192], cfg[4200], run[4200], test[4200];
    snprintf(run, sizeof run, "%s/q4k", tmp);
    // The first 100 problems of GSM8K's test set as validation data.
    FILE *in = fopen(LC_SHARED_DIR "/data/gsm8k_test.jsonl", "r");
    snprintf(test, sizeof test, "%s/valid.jsonl", tmp);
    FILE *out_f = fopen(test, "w");
    ck_assert(in && out_f);
    char line[16384];
    for (int i = 0; i < 100 && fgets(line, sizeof line, in); i++) fputs(line, out_f);
    fclose(in);
    fclose(out_f);
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"valid_data\": \"%s\", \"output_dir\": \"%s\",\n"
                     " \"lora\": {\"r\": 8, \"alpha\": 16}, \"optimizer\": {\"lr\": 3e-3}, \"batch_size\": 4,\n"
                     " \"max_seq_len\": 128, \"steps\": 40, \"eval_every\": 40, \"save_every\": 40, \"seed\": 0}\n",
                     base, train_data, test, run);
    lc_test_write(tmp, "q4k.json", text, (size_t)n);
    snprintf(cfg, sizeof cfg, "%s/q4k.json", tmp);
    const char *train[] = {"train", "--config", cfg, NULL};
    lc_test_run r = lc_test_lora(train);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    const char *eval_base[] = {"eval", "--model", base, "--data", test, "--max-seq-len", "128", NULL};
    r = lc_test_lora(eval_base);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    const char *p = strstr(r.out, "\"loss\": ");
    ck_assert_msg(p != NULL, "%s", r.out);
    double base_loss = atof(p + 8);
    lc_test_run_free(&r);
    char metrics_path[4300], *metrics;
    size_t len;
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", run);
    ck_assert((metrics = lc_test_read(metrics_path, &len)) != NULL);
    double tuned = metric(metrics, 40, "eval_loss");
    free(metrics);
    ck_assert_msg(tuned > 0 && tuned < base_loss - 0.5, "eval loss %g after training, %g before", tuned, base_loss);
    const char *eval_tuned[] = {"eval", "--model", base, "--adapter", run, "--data", test, "--max-seq-len", "128", NULL};
    r = lc_test_lora(eval_tuned);
    ck_assert_msg(r.status == 0 && (p = strstr(r.out, "\"loss\": ")), "exit %d: %s", r.status, r.err);
    ck_assert_msg(fabs(atof(p + 8) - tuned) < 1e-4, "lora eval %s vs the run's %g", p, tuned);
    lc_test_run_free(&r);
    char out[4300];
    snprintf(out, sizeof out, "%s/q4k-lora.gguf", tmp);
    const char *exp[] = {"export", "--model", base, "--adapter", run, "--out", out, "--format", "gguf-lora", NULL};
    r = lc_test_lora(exp);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    const char *insp[] = {"inspect", out, NULL};
    r = lc_test_lora(insp);
    ck_assert_msg(r.status == 0 && strstr(r.out, "a LoRA adapter") && strstr(r.out, "blk.1.ffn_down.weight.lora_b"),
                  "%s", r.out);
    lc_test_run_free(&r);
    // Merged into the Q4_K_M base at the default f32, the file grows several
    // times: a note says so and names q8_0; at q8_0 there is no note.
    snprintf(out, sizeof out, "%s/q4k-merged.gguf", tmp);
    const char *merge[] = {"export", "--model", base, "--adapter", run, "--out", out, "--format", "gguf", NULL};
    r = lc_test_lora(merge);
    ck_assert_msg(r.status == 0 && strstr(r.err, "lora export: note: ") &&
                      strstr(r.err, "MB: the merged weights are f32, the base's Q4_K; --dtype q8_0 writes them as "
                                    "Q8_0\n"),
                  "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    // An F16 base: the note names f16, which keeps the base's size exactly.
    char f16[4300];
    snprintf(f16, sizeof f16, "%s/f16.gguf", tmp);
    const char *to16[] = {"export", "--model", LC_SHARED_DIR "/models/gguf/tiny-llama-256", "--adapter", run, "--out",
                          f16, "--format", "gguf", "--dtype", "f16", NULL};
    r = lc_test_lora(to16);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    const char *merge16[] = {"export", "--model", f16, "--adapter", run, "--out", out, "--format", "gguf", NULL};
    r = lc_test_lora(merge16);
    ck_assert_msg(r.status == 0 && strstr(r.err, "the merged weights are f32, the base's F16; --dtype f16 writes them "
                                                 "as F16\n"),
                  "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
    const char *merge8[] = {"export", "--model", base, "--adapter", run, "--out", out, "--format", "gguf",
                            "--dtype", "q8_0", NULL};
    r = lc_test_lora(merge8);
    ck_assert_msg(r.status == 0 && !strstr(r.err, "note"), "exit %d: %s", r.status, r.err);
    lc_test_run_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_cli");
    TCase *tc = tcase_create("stories260K");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bad_data_lines);
    tcase_add_test(tc, test_bad_configs);
    tcase_add_test(tc, test_train_learns_and_adapter_is_used);
    tcase_add_test(tc, test_same_config_same_bytes);
    tcase_add_test(tc, test_init_adapter);
    tcase_add_test(tc, test_init_adapter_other_alpha);
    tcase_add_test(tc, test_export_round_trips);
    tcase_add_test(tc, test_validation_without_targets_refused_at_start);
    tcase_add_test(tc, test_token_outside_vocabulary_names_the_line);
    tcase_add_test(tc, test_steps_below_existing_checkpoint);
    tcase_add_test(tc, test_dropout_kept_in_export);
    tcase_add_test(tc, test_epochs_train_each_example_once);
    tcase_add_test(tc, test_train_on_quantized_gguf_base);
    tcase_add_test(tc, test_bf16_compute_trains_like_fp32);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
