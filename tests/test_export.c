// PEFT adapter export and import, merged Hugging Face export (stories260K,
// and every other family from tests/fixtures/families/).
// The fixture tests/fixtures/peft_stories260k/ was written by
// tests/reference/peft_reference.py from PEFT's documented layout, with the
// logits of a PyTorch forward that applies LoRA as PEFT's LoraLayer does.
// With LC_TEST_EXPORT_DUMP=<dir>, the round-trip test also leaves an exported
// adapter, a merged folder and their logits there for
// `peft_reference.py check <dir>/adapter <dir>/logits.bin <dir>/merged`.
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "common/status.h"
#include "export/export.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/sample.h"
#include "test_util.h"
#include "family_fixture.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define FIXTURE_DIR LC_SOURCE_DIR "/tests/fixtures/peft_stories260k"

static const int32_t ids[] = {1, 403, 407, 261, 378, 442, 303, 271, 294, 260, 454, 266, 425, 263, 350, 301, 39, 500, 3, 511};
#define T ((int)(sizeof ids / sizeof ids[0]))

static lc_model model;

static void setup(void) {
    lc_status st = lc_model_load(&model, MODEL_DIR);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
}

static void teardown(void) { lc_model_free(&model); }

#define ALL_TARGETS LC_LINEAR_KIND_ALL // every projection the model has
// The seven projections of a Llama-architecture model: what "all" adapts there.
#define LLAMA_TARGETS ((1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_K) | (1u << LC_LINEAR_KIND_V) | \
                       (1u << LC_LINEAR_KIND_O) | (1u << LC_LINEAR_KIND_GATE) | (1u << LC_LINEAR_KIND_UP) | \
                       (1u << LC_LINEAR_KIND_DOWN))
#define QV_TARGETS ((1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_V))

// An adapter with Kaiming A and random non-zero B, so every module matters.
static void make_lora(lc_lora *l, const lc_model *m, int r, float alpha, bool rslora, unsigned targets) {
    lc_lora_config cfg = {.r = r, .alpha = alpha, .dropout = 0.05f, .rslora = rslora, .targets = targets};
    ck_assert_int_eq(lc_lora_init(l, m, &cfg, 7, false), LC_STATUS_OK);
    lc_rng rng;
    lc_rng_seed(&rng, 99);
    for (int i = 0; i < l->n_layers * LC_LINEAR_KIND_COUNT; i++) {
        lc_lora_ref *ref = &l->refs[i];
        if (!ref->A) continue;
        int out = m->layers[i / LC_LINEAR_KIND_COUNT].lin[i % LC_LINEAR_KIND_COUNT].out;
        for (int j = 0; j < out * r; j++) ref->B[j] = (2.0f * lc_rng_uniform(&rng) - 1.0f) * 0.2f;
    }
}

// Logits [T, V] of the fixed sequence (caller frees).
static float *logits_of(const lc_model *m, const lc_lora *lora) {
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, m, 1, T, T, T), LC_STATUS_OK);
    s.lora = lora;
    lc_status st = lc_forward(&s, m, ids, 1, T, 0, LC_LOGITS_MODE_ALL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    size_t n = (size_t)T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, s.logits, sizeof(float) * n);
    lc_forward_state_free(&s);
    return out;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN propagates as a failure
    }
    return m;
}

static char *path_in(const char *dir, const char *name) {
    static char buf[4][4096];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

// Removes dir and the files in it, one level of subfolders deep.
static cJSON *parse_file(const char *path) {
    char *text = lc_test_read(path, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: invalid JSON", path);
    return j;
}

// lc_test_rmdir, and frees the name lc_test_tmpdir returned.
static void rm_tmp(char *dir) {
    lc_test_rmdir(dir);
    free(dir);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void write_logits(const char *path, const float *logits, int V) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    int32_t hdr[2] = {T, V};
    ck_assert_int_eq(fwrite(hdr, 4, 2, f), 2);
    ck_assert_int_eq(fwrite(ids, 4, T, f), T);
    ck_assert_uint_eq(fwrite(logits, 4, (size_t)T * V, f), (size_t)T * V);
    fclose(f);
}

START_TEST(test_peft_round_trip_f32) {
    lc_lora lora, back;
    make_lora(&lora, &model, 4, 8.0f, true, ALL_TARGETS);
    char *dir = lc_test_tmpdir();
    char *out = strdup(path_in(dir, "nested/adapter"));
    lc_status st = lc_export_peft(out, MODEL_DIR, &model, &lora, LC_DTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(count_files(out), 2); // no temporary files left

    // adapter_config.json in PEFT's field names and types.
    cJSON *cfg = parse_file(path_in(out, "adapter_config.json"));
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "LORA");
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "task_type")->valuestring, "CAUSAL_LM");
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "bias")->valuestring, "none");
    // the folder's name, not the path it was loaded by (meaningless on another machine)
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "base_model_name_or_path")->valuestring, "stories260K");
    ck_assert_int_eq(cJSON_GetObjectItem(cfg, "r")->valueint, 4);
    ck_assert(cJSON_GetObjectItem(cfg, "lora_alpha")->valuedouble == 8.0);
    ck_assert(cJSON_GetObjectItem(cfg, "lora_dropout")->valuedouble == 0.05); // shortest decimal, not 0.0500000007
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "use_rslora")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(cfg, "use_dora")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(cfg, "fan_in_fan_out")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cfg, "layers_to_transform")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cfg, "modules_to_save")));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cfg, "target_modules")), 7);
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(cfg, "target_modules"), 0)->valuestring, "q_proj");
    cJSON_Delete(cfg);

    // Safetensors keys, shapes and metadata as PEFT writes them.
    lc_st_set set = {0};
    ck_assert_int_eq(lc_st_set_add_file(&set, path_in(out, "adapter_model.safetensors")), LC_STATUS_OK);
    ck_assert_int_eq(set.n_tensors, 2 * 7 * model.cfg.n_layers);
    const lc_st_tensor *t = lc_st_set_find(&set, "base_model.model.model.layers.4.mlp.down_proj.lora_B.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, LC_DTYPE_F32);
    ck_assert(t->n_dims == 2 && t->shape[0] == 64 && t->shape[1] == 4);
    t = lc_st_set_find(&set, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
    ck_assert(t && t->n_dims == 2 && t->shape[0] == 4 && t->shape[1] == 64);
    lc_st_set_free(&set);
    char *raw = lc_test_read(path_in(out, "adapter_model.safetensors"), NULL);
    ck_assert_ptr_nonnull(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}"));
    free(raw);

    st = lc_peft_load(out, &model, &back);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(back.cfg.r, 4);
    ck_assert_uint_eq(lora.cfg.targets, LLAMA_TARGETS);
    ck_assert(back.cfg.alpha == 8.0f && back.cfg.rslora && back.cfg.targets == LLAMA_TARGETS);
    ck_assert(back.scale == lora.scale);
    ck_assert_uint_eq(back.n_params, lora.n_params);
    ck_assert_int_eq(memcmp(back.params, lora.params, sizeof(float) * lora.n_params), 0);

    float *before = logits_of(&model, &lora), *after = logits_of(&model, &back), *base = logits_of(&model, NULL);
    size_t n = (size_t)T * model.cfg.vocab_size;
    ck_assert_msg(max_abs_diff(before, after, n) <= 1e-5f, "diff %g", max_abs_diff(before, after, n));
    ck_assert_msg(max_abs_diff(before, base, n) > 0.1f, "the adapter should change the logits");

    const char *dump = getenv("LC_TEST_EXPORT_DUMP");
    if (dump && *dump) {
        ck_assert_int_eq(lc_export_peft(path_in(dump, "adapter"), MODEL_DIR, &model, &lora, LC_DTYPE_F32), 0);
        ck_assert_int_eq(lc_export_hf(path_in(dump, "merged"), MODEL_DIR, &model, &lora, LC_DTYPE_F32), 0);
        write_logits(path_in(dump, "logits.bin"), before, model.cfg.vocab_size);
    }
    free(before);
    free(after);
    free(base);
    lc_lora_free(&back);
    lc_lora_free(&lora);
    free(out);
    lc_test_rmdir(path_in(dir, "nested"));
    lc_test_rmdir(dir);
    free(dir);
}
END_TEST

static float round_to(lc_dtype d, float x) {
    return d == LC_DTYPE_F16 ? lc_f16_to_f32(lc_f32_to_f16(x)) : lc_bf16_to_f32(lc_f32_to_bf16(x));
}

START_TEST(test_peft_round_trip_half) {
    lc_dtype dtype = _i == 0 ? LC_DTYPE_F16 : LC_DTYPE_BF16;
    lc_lora lora, back;
    make_lora(&lora, &model, 3, 16.0f, false, QV_TARGETS | (1u << LC_LINEAR_KIND_UP));
    char *dir = lc_test_tmpdir();
    ck_assert_int_eq(lc_export_peft(dir, MODEL_DIR, &model, &lora, dtype), LC_STATUS_OK);
    lc_st_set set = {0};
    ck_assert_int_eq(lc_st_set_add_file(&set, path_in(dir, "adapter_model.safetensors")), LC_STATUS_OK);
    ck_assert_int_eq(set.tensors[0].dtype, dtype);
    lc_st_set_free(&set);
    lc_status st = lc_peft_load(dir, &model, &back);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(back.cfg.targets == lora.cfg.targets && back.cfg.r == 3 && back.scale == lora.scale);
    for (size_t i = 0; i < lora.n_params; i++)
        ck_assert_msg(back.params[i] == round_to(dtype, lora.params[i]), "param %zu: %g vs %g", i, back.params[i],
                      lora.params[i]);
    lc_lora_free(&back);
    lc_lora_free(&lora);
    rm_tmp(dir);
}
END_TEST

// Greedy continuation of a prompt, one token at a time through the KV cache.
static void greedy(const lc_model *m, const lc_lora *lora, int32_t *out, int steps) {
    lc_forward_state s;
    int prompt = 5, V = m->cfg.vocab_size;
    ck_assert_int_eq(lc_forward_state_init(&s, m, 1, prompt + steps, prompt, 1), LC_STATUS_OK);
    s.lora = lora;
    ck_assert_int_eq(lc_forward(&s, m, ids, 1, prompt, 0, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
    for (int i = 0; i < steps; i++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (s.logits[v] > s.logits[best]) best = v;
        out[i] = best;
        ck_assert_int_eq(lc_forward(&s, m, &out[i], 1, 1, prompt + i, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
    }
    lc_forward_state_free(&s);
}

START_TEST(test_hf_merged) {
    lc_lora lora;
    make_lora(&lora, &model, 4, 8.0f, false, ALL_TARGETS);
    char *dir = lc_test_tmpdir();
    lc_status st = lc_export_hf(dir, MODEL_DIR, &model, &lora, LC_DTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    // config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json
    ck_assert_int_eq(count_files(dir), 5);
    size_t a, b;
    char *x = lc_test_read(MODEL_DIR "/tokenizer.json", &a), *y = lc_test_read(path_in(dir, "tokenizer.json"), &b);
    ck_assert(a == b && memcmp(x, y, a) == 0);
    free(x);
    free(y);
    // The base already says float32: config.json is copied byte for byte (10000.0 stays 10000.0).
    x = lc_test_read(MODEL_DIR "/config.json", &a);
    y = lc_test_read(path_in(dir, "config.json"), &b);
    ck_assert(a == b && memcmp(x, y, a) == 0);
    free(x);
    free(y);

    lc_model merged;
    st = lc_model_load(&merged, dir);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    // Same tensor names and shapes; the head stays tied (no lm_head.weight).
    ck_assert_int_eq(merged.st.n_tensors, model.st.n_tensors);
    for (int i = 0; i < model.st.n_tensors; i++) {
        const lc_st_tensor *p = &model.st.tensors[i], *q = &merged.st.tensors[i];
        ck_assert_str_eq(p->name, q->name);
        ck_assert(p->n_dims == q->n_dims && memcmp(p->shape, q->shape, sizeof(int64_t) * p->n_dims) == 0);
    }
    ck_assert_ptr_null(lc_st_set_find(&merged.st, "lm_head.weight"));
    ck_assert_ptr_eq(merged.lm_head.data, merged.embed.data);
    // Unadapted tensors are copied bit for bit.
    ck_assert_int_eq(memcmp(merged.embed.data, model.embed.data, sizeof(float) * 512 * 64), 0);

    float *adapted = logits_of(&model, &lora), *plain = logits_of(&merged, NULL), *base = logits_of(&model, NULL);
    size_t n = (size_t)T * model.cfg.vocab_size;
    float d = max_abs_diff(adapted, plain, n);
    ck_assert_msg(d <= 1e-4f, "merged vs adapter logits: max abs diff %g", d);
    ck_assert(max_abs_diff(adapted, base, n) > 0.1f);

    int32_t g1[20], g2[20];
    greedy(&model, &lora, g1, 20);
    greedy(&merged, NULL, g2, 20);
    for (int i = 0; i < 20; i++) ck_assert_msg(g1[i] == g2[i], "greedy step %d: %d vs %d", i, g1[i], g2[i]);

    free(adapted);
    free(plain);
    free(base);
    lc_model_free(&merged);
    lc_lora_free(&lora);
    rm_tmp(dir);
}
END_TEST

START_TEST(test_hf_half_and_plain) {
    // BF16/F16 exports are the F32 merged export rounded; lora NULL is a plain conversion.
    lc_lora lora;
    make_lora(&lora, &model, 2, 4.0f, false, QV_TARGETS);
    char *d32 = lc_test_tmpdir(), *d16 = lc_test_tmpdir(), *dbf = lc_test_tmpdir(), *dplain = lc_test_tmpdir();
    ck_assert_int_eq(lc_export_hf(d32, MODEL_DIR, &model, &lora, LC_DTYPE_F32), LC_STATUS_OK);
    ck_assert_int_eq(lc_export_hf(d16, MODEL_DIR, &model, &lora, LC_DTYPE_F16), LC_STATUS_OK);
    ck_assert_int_eq(lc_export_hf(dbf, MODEL_DIR, &model, &lora, LC_DTYPE_BF16), LC_STATUS_OK);
    ck_assert_int_eq(lc_export_hf(dplain, MODEL_DIR, &model, NULL, LC_DTYPE_F32), LC_STATUS_OK);
    const char *dirs[2] = {d16, dbf};
    const lc_dtype dts[2] = {LC_DTYPE_F16, LC_DTYPE_BF16};
    const char *names[2] = {"float16", "bfloat16"};
    lc_st_set ref = {0};
    ck_assert_int_eq(lc_st_set_open_dir(&ref, d32), LC_STATUS_OK);
    for (int k = 0; k < 2; k++) {
        cJSON *cfg = parse_file(path_in(dirs[k], "config.json"));
        ck_assert_str_eq(cJSON_GetObjectItem(cfg, "torch_dtype")->valuestring, names[k]);
        cJSON_Delete(cfg);
        lc_st_set set = {0};
        ck_assert_int_eq(lc_st_set_open_dir(&set, dirs[k]), LC_STATUS_OK);
        ck_assert_int_eq(set.n_tensors, ref.n_tensors);
        for (int i = 0; i < set.n_tensors; i++) {
            const lc_st_tensor *p = &ref.tensors[i], *q = &set.tensors[i];
            ck_assert_int_eq(q->dtype, dts[k]);
            float *fp = malloc(sizeof(float) * p->n_elements), *fq = malloc(sizeof(float) * q->n_elements);
            lc_st_tensor_to_f32(p, fp);
            lc_st_tensor_to_f32(q, fq);
            for (int64_t j = 0; j < p->n_elements; j++)
                ck_assert_msg(fq[j] == round_to(dts[k], fp[j]), "%s[%lld]", q->name, (long long)j);
            free(fp);
            free(fq);
        }
        lc_st_set_free(&set);
        lc_model half;
        ck_assert_int_eq(lc_model_load(&half, dirs[k]), LC_STATUS_OK);
        lc_model_free(&half);
    }
    lc_st_set_free(&ref);
    // The plain conversion is the base, byte for byte in its tensors.
    lc_model plain;
    ck_assert_int_eq(lc_model_load(&plain, dplain), LC_STATUS_OK);
    for (int i = 0; i < model.st.n_tensors; i++) {
        ck_assert_uint_eq(plain.st.tensors[i].nbytes, model.st.tensors[i].nbytes);
        ck_assert_int_eq(memcmp(plain.st.tensors[i].data, model.st.tensors[i].data, model.st.tensors[i].nbytes), 0);
    }
    lc_model_free(&plain);
    // Never into the base folder itself.
    ck_assert_int_eq(lc_export_hf(MODEL_DIR, MODEL_DIR, &model, &lora, LC_DTYPE_F32), LC_STATUS_INPUT);
    lc_lora_free(&lora);
    rm_tmp(d32);
    rm_tmp(d16);
    rm_tmp(dbf);
    rm_tmp(dplain);
}
END_TEST

// stories260K (tie_word_embeddings true) with a stored lm_head.weight unlike
// its embeddings, written into dir with its tokenizer files.
static void write_stale_head_model(const char *dir) {
    int n = model.st.n_tensors;
    lc_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    for (int i = 0; i < n; i++) {
        const lc_st_tensor *t = &model.st.tensors[i];
        e[i] = (lc_st_entry){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .data = t->data,
                             .nbytes = t->nbytes};
        memcpy(e[i].shape, t->shape, sizeof t->shape);
    }
    size_t V = (size_t)model.cfg.vocab_size, C = (size_t)model.cfg.hidden_size;
    float *head = malloc(sizeof(float) * V * C);
    for (size_t i = 0; i < V * C; i++) head[i] = -2.0f * ((const float *)model.embed.data)[i]; // greedy would pick the least likely token
    e[n] = (lc_st_entry){.name = "lm_head.weight", .dtype = LC_DTYPE_F32, .n_dims = 2,
                         .shape = {(int64_t)V, (int64_t)C}, .data = head, .nbytes = sizeof(float) * V * C};
    ck_assert_int_eq(lc_st_write(path_in(dir, "model.safetensors"), e, n + 1, NULL, 0), LC_STATUS_OK);
    static const char *const files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) lc_test_copy(path_in(MODEL_DIR, files[i]), dir, files[i]);
    free(head);
    free(e);
}

// Greedy ids of `lora generate` on dir (stdout; *err gets stderr, caller frees).
static char *generate_ids(const char *dir, char **err) {
    const char *args[] = {"generate", "--model", dir, "--prompt", "Once upon a time", "--temperature", "0",
                          "--max-tokens", "12", "--ids", NULL};
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char *out = r.out;
    r.out = NULL;
    if (err) {
        *err = r.err;
        r.err = NULL;
    }
    lc_test_run_free(&r);
    return out;
}

// tie_word_embeddings true: the head IS the embedding matrix (as in
// transformers) even when the file also stores an lm_head.weight, in the
// forward pass, `lora generate` and the merged export, which must not carry
// the stale head into a folder transformers would load it from.
START_TEST(test_tied_config_ignores_stored_head) {
    char *dir = lc_test_tmpdir(), *out = lc_test_tmpdir();
    write_stale_head_model(dir);
    lc_model tied;
    lc_status st = lc_model_load(&tied, dir);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    size_t n = (size_t)T * model.cfg.vocab_size;
    float *want = logits_of(&model, NULL), *got = logits_of(&tied, NULL);
    ck_assert_msg(memcmp(want, got, sizeof(float) * n) == 0, "logits differ from the model without lm_head.weight");
    free(got);

    st = lc_export_hf(out, dir, &tied, NULL, LC_DTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    lc_model merged;
    ck_assert_int_eq(lc_model_load(&merged, out), LC_STATUS_OK);
    ck_assert_ptr_null(lc_st_set_find(&merged.st, "lm_head.weight"));
    ck_assert_int_eq(merged.st.n_tensors, model.st.n_tensors);
    got = logits_of(&merged, NULL);
    ck_assert(memcmp(want, got, sizeof(float) * n) == 0);
    free(got);
    lc_model_free(&merged);
    lc_model_free(&tied);

    char *err, *base_ids = generate_ids(MODEL_DIR, NULL), *tied_ids = generate_ids(dir, &err);
    ck_assert_str_eq(tied_ids, base_ids);
    const char *warn = strstr(err, "stored lm_head.weight is ignored");
    ck_assert_msg(warn && !strstr(warn + 1, "stored lm_head.weight is ignored"), "stderr: %s", err);
    free(err);
    free(base_ids);
    free(tied_ids);
    free(want);
    rm_tmp(dir);
    rm_tmp(out);
}
END_TEST

// Exports a base whose config.json is `config` (the stories260K weights) as
// F16 and returns the exported config.json text (caller frees).
static char *exported_config(const char *config) {
    char *base = lc_test_tmpdir(), *out = lc_test_tmpdir();
    lc_test_write(base, "config.json", config, strlen(config));
    lc_test_copy(MODEL_DIR "/model.safetensors", base, "model.safetensors");
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, base), LC_STATUS_OK);
    lc_status st = lc_export_hf(out, base, &m, NULL, LC_DTYPE_F16);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    lc_model_free(&m);
    char *text = lc_test_read(path_in(out, "config.json"), NULL);
    ck_assert_int_eq(count_files(out), 2); // no tokenizer files to copy
    rm_tmp(base);
    rm_tmp(out);
    return text;
}

START_TEST(test_hf_config_dtype) {
    char *orig = lc_test_read(MODEL_DIR "/config.json", NULL);
    // torch_dtype replaced in place, every other byte kept.
    char *got = exported_config(orig);
    char *want = malloc(strlen(orig) + 8), *at = strstr(orig, "\"float32\"");
    ck_assert_ptr_nonnull(at);
    sprintf(want, "%.*s\"float16\"%s", (int)(at - orig), orig, at + 9);
    ck_assert_str_eq(got, want);
    free(got);
    // Missing: added as a last member. "dtype" (newer transformers) is set too.
    char *cut = strstr(orig, ",\n  \"torch_dtype\"");
    ck_assert_ptr_nonnull(cut);
    char *edited = malloc(strlen(orig) + 128);
    sprintf(edited, "%.*s,\n  \"dtype\": \"bfloat16\", \"nested\": {\"torch_dtype\": [1, \"}\"]}\n}\n",
            (int)(cut - orig), orig);
    got = exported_config(edited);
    free(edited);
    cJSON *cfg = cJSON_Parse(got);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "torch_dtype")->valuestring, "float16");
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "dtype")->valuestring, "float16");
    ck_assert(cJSON_IsArray(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "nested"), "torch_dtype")));
    ck_assert_ptr_nonnull(strstr(got, "\"rope_theta\": 10000.0,"));
    cJSON_Delete(cfg);
    free(got);
    free(want);
    free(orig);
}
END_TEST

START_TEST(test_merge_linear) {
    // out = W + scale · B · A, by hand for one weight; unadapted modules are copies.
    lc_lora lora;
    make_lora(&lora, &model, 2, 3.0f, false, QV_TARGETS);
    const lc_linear *lin = &model.layers[2].lin[LC_LINEAR_KIND_V];
    const lc_lora_ref *ref = lc_lora_get(&lora, 2, LC_LINEAR_KIND_V);
    float *out = malloc(sizeof(float) * lin->out * lin->in);
    lc_export_merge_linear(out, &model, &lora, 2, LC_LINEAR_KIND_V);
    for (int o = 0; o < lin->out; o++)
        for (int i = 0; i < lin->in; i++) {
            double want = ((const float *)lin->w.data)[o * lin->in + i];
            for (int k = 0; k < 2; k++) want += 1.5 * ref->B[o * 2 + k] * ref->A[k * lin->in + i];
            ck_assert_msg(fabs(out[o * lin->in + i] - want) <= 1e-6, "[%d, %d]", o, i);
        }
    lc_export_merge_linear(out, &model, &lora, 2, LC_LINEAR_KIND_K);
    ck_assert_int_eq(memcmp(out, model.layers[2].lin[LC_LINEAR_KIND_K].w.data, sizeof(float) * 32 * 64), 0);
    lc_export_merge_linear(out, &model, NULL, 2, LC_LINEAR_KIND_V);
    ck_assert_int_eq(memcmp(out, lin->w.data, sizeof(float) * lin->out * lin->in), 0);
    free(out);
    lc_lora_free(&lora);
}
END_TEST

START_TEST(test_peft_fixture_from_pytorch) {
    // A folder laid out as PEFT save_pretrained writes it (every field of a
    // recent LoraConfig), with logits from PyTorch applying LoRA as PEFT does.
    FILE *f = fopen(FIXTURE_DIR "/expected_logits.bin", "rb");
    ck_assert_ptr_nonnull(f);
    int32_t hdr[2];
    ck_assert_int_eq(fread(hdr, 4, 2, f), 2);
    ck_assert(hdr[0] == T && hdr[1] == model.cfg.vocab_size);
    int32_t fids[T];
    ck_assert_int_eq(fread(fids, 4, T, f), T);
    ck_assert_int_eq(memcmp(fids, ids, sizeof ids), 0);
    size_t n = (size_t)T * hdr[1];
    float *want = malloc(sizeof(float) * n);
    ck_assert_uint_eq(fread(want, 4, n, f), n);
    fclose(f);

    lc_lora lora;
    lc_status st = lc_peft_load(FIXTURE_DIR, &model, &lora);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(lora.cfg.r == 2 && lora.cfg.targets == QV_TARGETS && lora.scale == 2.0f && !lora.cfg.rslora);
    float *got = logits_of(&model, &lora);
    float d = max_abs_diff(got, want, n);
    ck_assert_msg(d <= 1e-4f, "max abs diff %g against PyTorch", d);
    free(got);
    free(want);
    lc_lora_free(&lora);
}
END_TEST

// ---------------------------------------------------------------------------
// Bad input: each refused as LC_STATUS_INPUT with the file or tensor named.

// An exported q_proj+v_proj r=4 adapter in a fresh folder.
static char *bad_dir(void) {
    lc_lora lora;
    make_lora(&lora, &model, 4, 8.0f, false, QV_TARGETS);
    char *dir = lc_test_tmpdir();
    ck_assert_int_eq(lc_export_peft(dir, MODEL_DIR, &model, &lora, LC_DTYPE_F32), LC_STATUS_OK);
    lc_lora_free(&lora);
    return dir;
}

static void edit_config(const char *dir, const char *key, cJSON *value) {
    cJSON *cfg = parse_file(path_in(dir, "adapter_config.json"));
    ck_assert_ptr_nonnull(cfg);
    if (cJSON_GetObjectItem(cfg, key)) cJSON_ReplaceItemInObject(cfg, key, value);
    else cJSON_AddItemToObject(cfg, key, value);
    char *text = cJSON_Print(cfg);
    lc_test_write(dir, "adapter_config.json", text, strlen(text));
    free(text);
    cJSON_Delete(cfg);
}

static void expect_refusal(const char *dir, const char *const *needles) {
    lc_lora lora;
    memset(&lora, 0xab, sizeof lora);
    lc_status st = lc_peft_load(dir, &model, &lora);
    const char *msg = lc_error_message();
    ck_assert_msg(st == LC_STATUS_INPUT, "status %d: %s", st, msg);
    for (int i = 0; needles[i]; i++) ck_assert_msg(strstr(msg, needles[i]), "\"%s\" not in: %s", needles[i], msg);
    ck_assert_ptr_null(lora.params); // left empty
}

static cJSON *names(const char *a, const char *b, const char *c) {
    const char *v[3] = {a, b, c};
    return cJSON_CreateStringArray(v, c ? 3 : b ? 2 : 1);
}

START_TEST(test_peft_bad_rank) {
    char *dir = bad_dir();
    edit_config(dir, "r", cJSON_CreateNumber(8));
    expect_refusal(dir, (const char *[]){"adapter_config.json says r=8 but",
                                         "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                         "has shape [4, 64]", NULL});
    rm_tmp(dir);
}
END_TEST

START_TEST(test_peft_target_without_tensors) {
    char *dir = bad_dir();
    edit_config(dir, "target_modules", names("q_proj", "k_proj", "v_proj"));
    expect_refusal(dir, (const char *[]){"adapter_config.json lists k_proj in target_modules",
                                         "adapter_model.safetensors has no tensors", NULL});
    rm_tmp(dir);
}
END_TEST

START_TEST(test_peft_tensor_not_targeted) {
    char *dir = bad_dir();
    edit_config(dir, "target_modules", names("q_proj", NULL, NULL));
    expect_refusal(dir, (const char *[]){"adapter_model.safetensors",
                                         "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
                                         "does not list in target_modules", NULL});
    rm_tmp(dir);
}
END_TEST

START_TEST(test_peft_config_refusals) {
    struct {
        const char *key;
        cJSON *value;
        const char *needle;
    } cases[] = {
        {"peft_type", cJSON_CreateString("PREFIX_TUNING"), "peft_type is \"PREFIX_TUNING\""},
        {"target_modules", cJSON_CreateString(".*\\.(q|v)_proj"), "regular expression"},
        {"target_modules", names("q_proj", "lm_head", NULL), "\"lm_head\", which is not supported (supported: q_proj"},
        {"target_modules", cJSON_CreateArray(), "target_modules is missing or empty"},
        {"use_dora", cJSON_CreateTrue(), "use_dora"},
        {"fan_in_fan_out", cJSON_CreateTrue(), "fan_in_fan_out"},
        {"bias", cJSON_CreateString("all"), "bias is \"all\""},
        // The adapter has tensors on every layer: those of layer 2 are outside the list.
        {"layers_to_transform", cJSON_CreateIntArray((const int[]){0, 1}, 2), "is for layer 2, which"},
        {"r", cJSON_CreateString("4"), "\"r\" must be an integer"},
        {"lora_dropout", cJSON_CreateNumber(1.5), "lora_dropout must be in [0, 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = bad_dir();
        edit_config(dir, cases[i].key, cases[i].value);
        expect_refusal(dir, (const char *[]){"adapter_config.json", cases[i].needle, NULL});
        rm_tmp(dir);
    }
}
END_TEST

START_TEST(test_peft_bad_files) {
    char *dir = bad_dir();
    lc_test_write(dir, "adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 4,", 30);
    expect_refusal(dir, (const char *[]){"adapter_config.json", "invalid JSON", NULL});
    rm_tmp(dir);

    // A tensor of the right rank but the wrong input size; a missing tensor.
    dir = bad_dir();
    float zeros[4 * 64] = {0};
    lc_st_entry e[3] = {
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", LC_DTYPE_F32, 2, {4, 32}, zeros, 4 * 32 * 4},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", LC_DTYPE_F32, 2, {64, 4}, zeros, 64 * 4 * 4},
        {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", LC_DTYPE_F32, 2, {4, 64}, zeros, 4 * 64 * 4},
    };
    ck_assert_int_eq(lc_st_write(path_in(dir, "adapter_model.safetensors"), e, 3, NULL, 0), LC_STATUS_OK);
    expect_refusal(dir, (const char *[]){"layers.0.self_attn.q_proj.lora_A.weight has shape [4, 32], expected [4, 64]",
                                         NULL});
    e[0].shape[1] = 64;
    e[0].nbytes = 4 * 64 * 4;
    ck_assert_int_eq(lc_st_write(path_in(dir, "adapter_model.safetensors"), e, 3, NULL, 0), LC_STATUS_OK);
    expect_refusal(dir, (const char *[]){"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight is missing",
                                         NULL});
    // A stray tensor that is no LoRA weight.
    lc_st_entry stray = {"base_model.model.lm_head.weight", LC_DTYPE_F32, 1, {4}, zeros, 16};
    ck_assert_int_eq(lc_st_write(path_in(dir, "adapter_model.safetensors"), &stray, 1, NULL, 0), LC_STATUS_OK);
    expect_refusal(dir, (const char *[]){"unexpected tensor base_model.model.lm_head.weight", NULL});
    // Keys with the adapter name ("lora_A.default.weight") are read too.
    lc_lora lora, back;
    make_lora(&lora, &model, 1, 1.0f, false, 1u << LC_LINEAR_KIND_Q);
    lc_st_entry def[10];
    char keys[10][128];
    for (int l = 0; l < 5; l++) {
        const lc_lora_ref *ref = lc_lora_get(&lora, l, LC_LINEAR_KIND_Q);
        for (int ab = 0; ab < 2; ab++) {
            snprintf(keys[2 * l + ab], 128, "base_model.model.model.layers.%d.self_attn.q_proj.lora_%c.default.weight",
                     l, ab ? 'B' : 'A');
            def[2 * l + ab] = (lc_st_entry){keys[2 * l + ab], LC_DTYPE_F32, 2, {ab ? 64 : 1, ab ? 1 : 64},
                                            ab ? ref->B : ref->A, 64 * 4};
        }
    }
    ck_assert_int_eq(lc_st_write(path_in(dir, "adapter_model.safetensors"), def, 10, NULL, 0), LC_STATUS_OK);
    edit_config(dir, "r", cJSON_CreateNumber(1));
    edit_config(dir, "lora_alpha", cJSON_CreateNumber(1));
    edit_config(dir, "target_modules", names("q_proj", NULL, NULL));
    lc_status st = lc_peft_load(dir, &model, &back);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(memcmp(back.params, lora.params, sizeof(float) * lora.n_params), 0);
    lc_lora_free(&back);
    lc_lora_free(&lora);
    rm_tmp(dir);

    ck_assert_int_eq(lc_peft_load("/nonexistent/adapter", &model, &back), LC_STATUS_INPUT);
    ck_assert_ptr_nonnull(strstr(lc_error_message(), "/nonexistent/adapter"));
}
END_TEST


// ---------------------------------------------------------------------------
// Other families, from the fixtures of tests/reference/families_reference.py
// (family_fixture.c): a model folder in the family's own checkpoint layout
// and a PEFT adapter laid out as PEFT writes it for that family.
#undef T // the stories260K sequence length above; fixtures have their own (f->T)

static int n_families(void) {
    int n = 0;
    while (lc_family_names[n]) n++;
    return n;
}

typedef struct family_case {
    lc_family_fixture f;
    char *tmp;
    lc_model m;
    lc_lora lora; // the fixture's PEFT adapter
} family_case;

static void family_open(family_case *c, const char *family) {
    c->tmp = lc_test_tmpdir();
    lc_family_fixture_load(&c->f, family, c->tmp);
    lc_status st = lc_model_load(&c->m, c->f.model_dir);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    st = lc_peft_load(c->f.adapter_dir, &c->m, &c->lora);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", family, lc_error_message());
}

static void family_close(family_case *c) {
    lc_lora_free(&c->lora);
    lc_model_free(&c->m);
    lc_family_fixture_free(&c->f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->tmp);
    ck_assert_int_eq(system(cmd), 0);
    free(c->tmp);
}

static int json_has_string(const cJSON *array, const char *s) {
    for (const cJSON *e = array ? array->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return 1;
    return 0;
}

// Logits of the fixture's first sequence (caller frees).
static float *family_logits(const lc_model *m, const lc_lora *lora, const lc_family_fixture *f) {
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, m, 1, f->T, f->T, f->T), LC_STATUS_OK);
    s.lora = lora;
    lc_status st = lc_forward(&s, m, f->tokens, 1, f->T, 0, LC_LOGITS_MODE_ALL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    size_t n = (size_t)f->T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, s.logits, sizeof(float) * n);
    lc_forward_state_free(&s);
    return out;
}

START_TEST(test_family_peft_as_peft_writes_it) {
    // Read the adapter PEFT wrote and write it back: the same keys, shapes and
    // bytes, the same target_modules (as a set) and fan_in_fan_out.
    const char *fam = lc_family_names[_i];
    family_case c;
    family_open(&c, fam);
    const cJSON *fl = cJSON_GetObjectItem(c.f.root, "lora");
    ck_assert_uint_eq(c.lora.cfg.targets, lc_model_linear_kinds(&c.m.cfg)); // fixtures adapt every projection
    char out[700];
    snprintf(out, sizeof out, "%s/exported", c.tmp);
    lc_status st = lc_export_peft(out, c.f.model_dir, &c.m, &c.lora, LC_DTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());

    lc_st_set want = {0}, got = {0};
    ck_assert_int_eq(lc_st_set_add_file(&want, path_in(c.f.adapter_dir, "adapter_model.safetensors")), 0);
    ck_assert_int_eq(lc_st_set_add_file(&got, path_in(out, "adapter_model.safetensors")), 0);
    ck_assert_int_eq(got.n_tensors, want.n_tensors);
    for (int i = 0; i < want.n_tensors; i++) {
        const lc_st_tensor *w = &want.tensors[i], *g = lc_st_set_find(&got, w->name);
        ck_assert_msg(g != NULL, "%s: %s not written", fam, w->name);
        ck_assert(g->dtype == LC_DTYPE_F32 && g->n_dims == 2 && g->shape[0] == w->shape[0] &&
                  g->shape[1] == w->shape[1]);
        ck_assert_msg(memcmp(g->data, w->data, w->nbytes) == 0, "%s: %s differs", fam, w->name);
    }
    lc_st_set_free(&want);
    lc_st_set_free(&got);

    cJSON *cfg = parse_file(path_in(out, "adapter_config.json"));
    const cJSON *tm = cJSON_GetObjectItem(cfg, "target_modules"), *wm = cJSON_GetObjectItem(fl, "target_modules");
    ck_assert_int_eq(cJSON_GetArraySize(tm), cJSON_GetArraySize(wm));
    for (const cJSON *e = wm->child; e; e = e->next)
        ck_assert_msg(json_has_string(tm, e->valuestring), "%s: target_modules lacks %s", fam, e->valuestring);
    ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "fan_in_fan_out")),
                     cJSON_IsTrue(cJSON_GetObjectItem(fl, "fan_in_fan_out")));
    ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "fan_in_fan_out")), c.m.cfg.weights_transposed);
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "task_type")->valuestring, "CAUSAL_LM");
    ck_assert_str_eq(cJSON_GetObjectItem(cfg, "base_model_name_or_path")->valuestring, strrchr(c.f.model_dir, '/') + 1);
    ck_assert_int_eq(cJSON_GetObjectItem(cfg, "r")->valueint, cJSON_GetObjectItem(fl, "r")->valueint);
    ck_assert(cJSON_GetObjectItem(cfg, "lora_alpha")->valuedouble == cJSON_GetObjectItem(fl, "alpha")->valuedouble);
    cJSON_Delete(cfg);

    lc_lora back;
    st = lc_peft_load(out, &c.m, &back);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_uint_eq(back.cfg.targets, c.lora.cfg.targets);
    ck_assert_int_eq(memcmp(back.params, c.lora.params, sizeof(float) * c.lora.n_params), 0);
    lc_lora_free(&back);
    family_close(&c);
}
END_TEST

START_TEST(test_family_hf_merged) {
    // The merged folder is the family's own checkpoint: the source's names (and
    // key prefix) in its order; adapted weights W + s·B·A in the source's
    // layout (Conv1D [in, out] for GPT-2); everything else the source's bytes
    // (Gemma's norms as stored, not 1 + w); config.json as it was.
    const char *fam = lc_family_names[_i];
    family_case c;
    family_open(&c, fam);
    char out[700];
    snprintf(out, sizeof out, "%s/merged", c.tmp);
    lc_status st = lc_export_hf(out, c.f.model_dir, &c.m, &c.lora, LC_DTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    size_t a, b;
    char *x = lc_test_read(path_in(c.f.model_dir, "config.json"), &a);
    char *y = lc_test_read(path_in(out, "config.json"), &b);
    ck_assert_msg(a == b && memcmp(x, y, a) == 0, "%s: config.json changed", fam);
    free(x);
    free(y);

    lc_st_set set = {0};
    ck_assert_int_eq(lc_st_set_open_dir(&set, out), LC_STATUS_OK);
    const lc_st_set *src = &c.m.st;
    ck_assert_int_eq(set.n_tensors, src->n_tensors);
    int n_merged = 0;
    for (int i = 0; i < src->n_tensors; i++) {
        const lc_st_tensor *p = &src->tensors[i], *q = &set.tensors[i];
        ck_assert_str_eq(q->name, p->name);
        ck_assert(q->dtype == p->dtype && q->n_dims == p->n_dims);
        ck_assert(memcmp(q->shape, p->shape, sizeof(int64_t) * (size_t)p->n_dims) == 0);
        int layer;
        lc_linear_kind kind;
        const char *rest = lc_export_match_module(&c.m.cfg, p->name, true, &layer, &kind);
        const lc_lora_ref *ref = rest && strcmp(rest, ".weight") == 0 ? lc_lora_get(&c.lora, layer, kind) : NULL;
        if (!ref) {
            ck_assert_msg(memcmp(q->data, p->data, p->nbytes) == 0, "%s: %s is not the source's", fam, p->name);
            continue;
        }
        // Element [o, i] of the linear sits at [o, i] or, Conv1D, at [i, o].
        const lc_linear *lin = &c.m.layers[layer].lin[kind];
        const float *w = (const float *)p->data, *g = (const float *)q->data;
        int tr = c.m.cfg.weights_transposed;
        ck_assert(p->shape[0] == (tr ? lin->in : lin->out) && p->shape[1] == (tr ? lin->out : lin->in));
        for (int o = 0; o < lin->out; o++)
            for (int in = 0; in < lin->in; in++) {
                size_t at = tr ? (size_t)in * lin->out + o : (size_t)o * lin->in + in;
                double want = w[at];
                for (int r = 0; r < ref->r; r++)
                    want += (double)ref->scale * ref->B[o * ref->r + r] * ref->A[r * lin->in + in];
                ck_assert_msg(fabs(g[at] - want) <= 1e-5 * (1.0 + fabs(want)), "%s: %s[%d, %d] %g, want %g", fam,
                              p->name, o, in, g[at], want);
            }
        n_merged++;
    }
    ck_assert_int_eq(n_merged, c.m.cfg.n_layers * __builtin_popcount(c.lora.cfg.targets));
    lc_st_set_free(&set);

    // It loads as the same family and gives the logits of base + adapter.
    lc_model merged;
    st = lc_model_load(&merged, out);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_int_eq(merged.cfg.arch, c.m.cfg.arch);
    float *with = family_logits(&c.m, &c.lora, &c.f), *plain = family_logits(&merged, NULL, &c.f);
    float *base = family_logits(&c.m, NULL, &c.f);
    size_t n = (size_t)c.f.T * c.m.cfg.vocab_size;
    ck_assert_msg(max_abs_diff(with, plain, n) <= 1e-4f, "%s: merged vs adapter logits differ by %g", fam,
                  max_abs_diff(with, plain, n));
    ck_assert_msg(max_abs_diff(with, base, n) > 1e-3f, "%s: the adapter should change the logits", fam);
    free(with);
    free(plain);
    free(base);
    lc_model_free(&merged);

    // Without an adapter: the source's tensors byte for byte.
    snprintf(out, sizeof out, "%s/plain", c.tmp);
    ck_assert_int_eq(lc_export_hf(out, c.f.model_dir, &c.m, NULL, LC_DTYPE_F32), LC_STATUS_OK);
    ck_assert_int_eq(lc_st_set_open_dir(&set, out), LC_STATUS_OK);
    for (int i = 0; i < src->n_tensors; i++)
        ck_assert(set.tensors[i].nbytes == src->tensors[i].nbytes &&
                  memcmp(set.tensors[i].data, src->tensors[i].data, src->tensors[i].nbytes) == 0);
    lc_st_set_free(&set);
    family_close(&c);
}
END_TEST

START_TEST(test_match_module) {
    family_case c;
    family_open(&c, "gpt2");
    const lc_model_config *g = &c.m.cfg;
    int l;
    lc_linear_kind k;
    const char *rest = lc_export_match_module(g, "h.1.attn.c_proj.weight", true, &l, &k);
    ck_assert(rest && strcmp(rest, ".weight") == 0 && l == 1 && k == LC_LINEAR_KIND_O);
    ck_assert_ptr_null(lc_export_match_module(g, "h.1.attn.c_proj.weight", false, &l, &k));
    rest = lc_export_match_module(g, "transformer.h.0.mlp.c_proj", false, &l, &k);
    ck_assert(rest && *rest == '\0' && l == 0 && k == LC_LINEAR_KIND_DOWN);
    rest = lc_export_match_module(g, "transformer.h.0.attn.c_attn.bias", true, &l, &k);
    ck_assert(rest && strcmp(rest, ".bias") == 0 && k == LC_LINEAR_KIND_QKV);
    ck_assert_ptr_null(lc_export_match_module(g, "transformer.h.01.mlp.c_proj", false, &l, &k));
    ck_assert_ptr_null(lc_export_match_module(g, "transformer.h.0.mlp.c_projx", false, &l, &k));
    ck_assert_ptr_null(lc_export_match_module(g, "transformer.h.0.ln_1.weight", true, &l, &k));
    ck_assert_ptr_null(lc_export_match_module(g, "model.layers.0.self_attn.q_proj", true, &l, &k));
    // A Llama has no fused projection.
    ck_assert_ptr_null(lc_export_match_module(&model.cfg, "model.layers.0.self_attn.qkv_proj", false, &l, &k));
    rest = lc_export_match_module(&model.cfg, "model.layers.4.self_attn.q_proj.lora_A", false, &l, &k);
    ck_assert(rest && l == 4 && k == LC_LINEAR_KIND_Q);
    family_close(&c);
}
END_TEST

// Writes adapter_config.json of dir with key set to value.
static void gpt2_adapter_with(const family_case *c, const char *dir, const char *key, cJSON *value) {
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/* '%s'/", dir, c->f.adapter_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    edit_config(dir, key, value);
}

START_TEST(test_gpt2_peft_names) {
    family_case c;
    family_open(&c, "gpt2");
    unsigned O = 1u << LC_LINEAR_KIND_O, DOWN = 1u << LC_LINEAR_KIND_DOWN, QKV = 1u << LC_LINEAR_KIND_QKV;
    // GPT-2's c_proj is the attention output and the MLP output: one name for
    // both, "attn.c_proj" or "mlp.c_proj" (matched by PEFT as a suffix) for one.
    const struct {
        unsigned targets;
        int n;
        const char *names[2];
        const char *key;
    } cases[] = {
        {O, 1, {"attn.c_proj"}, "base_model.model.transformer.h.1.attn.c_proj.lora_B.weight"},
        {DOWN, 1, {"mlp.c_proj"}, "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight"},
        {O | DOWN | QKV, 2, {"c_proj", "c_attn"}, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lc_lora l, back;
        make_lora(&l, &c.m, 2, 4.0f, false, cases[i].targets);
        char out[700];
        snprintf(out, sizeof out, "%s/names%zu", c.tmp, i);
        ck_assert_int_eq(lc_export_peft(out, c.f.model_dir, &c.m, &l, LC_DTYPE_F32), LC_STATUS_OK);
        cJSON *cfg = parse_file(path_in(out, "adapter_config.json"));
        const cJSON *tm = cJSON_GetObjectItem(cfg, "target_modules");
        ck_assert_int_eq(cJSON_GetArraySize(tm), cases[i].n);
        for (int j = 0; j < cases[i].n; j++) ck_assert(json_has_string(tm, cases[i].names[j]));
        ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "fan_in_fan_out")));
        cJSON_Delete(cfg);
        lc_st_set set = {0};
        ck_assert_int_eq(lc_st_set_add_file(&set, path_in(out, "adapter_model.safetensors")), 0);
        ck_assert_ptr_nonnull(lc_st_set_find(&set, cases[i].key));
        ck_assert_int_eq(set.n_tensors, 2 * c.m.cfg.n_layers * __builtin_popcount(cases[i].targets));
        lc_st_set_free(&set);
        lc_status st = lc_peft_load(out, &c.m, &back);
        ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
        ck_assert_uint_eq(back.cfg.targets, cases[i].targets);
        ck_assert_int_eq(memcmp(back.params, l.params, sizeof(float) * l.n_params), 0);
        lc_lora_free(&back);
        lc_lora_free(&l);
    }

    // target_modules as PEFT matches them: a name, or a path suffix; "all-linear".
    char dir[700];
    lc_lora back;
    snprintf(dir, sizeof dir, "%s/suffixes", c.tmp);
    const char *v[4] = {"attn.c_proj", "mlp.c_proj", "attn.c_attn", "c_fc"};
    gpt2_adapter_with(&c, dir, "target_modules", cJSON_CreateStringArray(v, 4));
    ck_assert_msg(lc_peft_load(dir, &c.m, &back) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(back.cfg.targets, c.lora.cfg.targets);
    lc_lora_free(&back);
    snprintf(dir, sizeof dir, "%s/all_linear", c.tmp);
    gpt2_adapter_with(&c, dir, "target_modules", cJSON_CreateString("all-linear"));
    ck_assert_msg(lc_peft_load(dir, &c.m, &back) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(back.cfg.targets, lc_model_linear_kinds(&c.m.cfg));
    lc_lora_free(&back);
    // fan_in_fan_out false: PEFT sets it itself for Conv1D; the tensors mean the same.
    snprintf(dir, sizeof dir, "%s/no_fan", c.tmp);
    gpt2_adapter_with(&c, dir, "fan_in_fan_out", cJSON_CreateFalse());
    ck_assert_msg(lc_peft_load(dir, &c.m, &back) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(memcmp(back.params, c.lora.params, sizeof(float) * c.lora.n_params), 0);
    lc_lora_free(&back);

    // Names GPT-2 does not have are refused with its own names listed.
    snprintf(dir, sizeof dir, "%s/llama_names", c.tmp);
    gpt2_adapter_with(&c, dir, "target_modules", names("c_attn", "q_proj", NULL));
    lc_lora bad;
    ck_assert_int_eq(lc_peft_load(dir, &c.m, &bad), LC_STATUS_INPUT);
    const char *msg = lc_error_message();
    ck_assert_msg(strstr(msg, "adapter_config.json") && strstr(msg, "\"q_proj\", which is not supported") &&
                      strstr(msg, "c_proj, c_fc, c_attn") && strstr(msg, "gpt2"),
                  "%s", msg);
    // A Llama key in a GPT-2 adapter.
    snprintf(dir, sizeof dir, "%s/llama_key", c.tmp);
    gpt2_adapter_with(&c, dir, "r", cJSON_CreateNumber(4));
    float zeros[4 * 48] = {0};
    lc_st_entry e = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", LC_DTYPE_F32, 2, {4, 48},
                     zeros, sizeof zeros};
    ck_assert_int_eq(lc_st_write(path_in(dir, "adapter_model.safetensors"), &e, 1, NULL, 0), LC_STATUS_OK);
    ck_assert_int_eq(lc_peft_load(dir, &c.m, &bad), LC_STATUS_INPUT);
    msg = lc_error_message();
    ck_assert_msg(strstr(msg, "unexpected tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") &&
                      strstr(msg, "base_model.model.transformer.h.<layer>.<module>") && strstr(msg, "attn.c_attn"),
                  "%s", msg);
    family_close(&c);
}
END_TEST

static Suite *export_suite(void) {
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_peft_round_trip_f32);
    tcase_add_loop_test(tc, test_peft_round_trip_half, 0, 2);
    tcase_add_test(tc, test_hf_merged);
    tcase_add_test(tc, test_hf_half_and_plain);
    tcase_add_test(tc, test_hf_config_dtype);
    tcase_add_test(tc, test_tied_config_ignores_stored_head);
    tcase_add_test(tc, test_merge_linear);
    tcase_add_test(tc, test_peft_fixture_from_pytorch);
    tcase_add_test(tc, test_peft_bad_rank);
    tcase_add_test(tc, test_peft_target_without_tensors);
    tcase_add_test(tc, test_peft_tensor_not_targeted);
    tcase_add_test(tc, test_peft_config_refusals);
    tcase_add_test(tc, test_peft_bad_files);
    tcase_add_loop_test(tc, test_family_peft_as_peft_writes_it, 0, n_families());
    tcase_add_loop_test(tc, test_family_hf_merged, 0, n_families());
    tcase_add_test(tc, test_match_module);
    tcase_add_test(tc, test_gpt2_peft_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(export_suite());
}
