// Model loading: dtype conversions, F16/BF16/sharded folders, and hostile or
// inconsistent files, each refused with LC_STATUS_INPUT and a message naming
// the file and tensor.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"

static char *tmp;

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

START_TEST(test_f16_round_trip_all_values) {
    // Every finite half converts to float and back to the same bits.
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; // NaN payloads
        float f = lc_f16_to_f32((uint16_t)h);
        ck_assert_msg(lc_f32_to_f16(f) == h, "half 0x%04x -> %g -> 0x%04x", h, f, lc_f32_to_f16(f));
    }
    ck_assert_float_eq(lc_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(lc_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(lc_f16_to_f32(0x7bff), 65504.0f);
    ck_assert_float_eq(lc_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    ck_assert(isinf(lc_f16_to_f32(0x7c00)));
    ck_assert_uint_eq(lc_f32_to_f16(1e6f), 0x7c00);              // overflow to inf
    ck_assert_uint_eq(lc_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); // tie to even
    ck_assert_uint_eq(lc_f32_to_f16(ldexpf(1.0f, -26)), 0x0000);
}
END_TEST

START_TEST(test_bf16_conversions) {
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
        ck_assert_uint_eq(lc_f32_to_bf16(lc_bf16_to_f32((uint16_t)h)), h);
    }
    ck_assert_float_eq(lc_bf16_to_f32(0x3f80), 1.0f);
    ck_assert_uint_eq(lc_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80); // tie to even
    ck_assert_uint_eq(lc_f32_to_bf16(1.0f + ldexpf(5.0f, -10)), 0x3f81); // 0.625 ulp rounds up
    ck_assert_uint_eq(lc_f32_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82);  // 1.5 ulp: tie to even
}
END_TEST

// Writes the stories260K tensors into `dir` in `dtype`, split across
// `n_shards` files (with an index when more than one).
static void write_model_copy(const char *dir, lc_dtype dtype, int n_shards) {
    lc_st_set src;
    ck_assert_int_eq(lc_st_set_open_dir(&src, MODEL_DIR), LC_STATUS_OK);
    lc_test_copy(MODEL_DIR "/config.json", dir, "config.json");
    int n = src.n_tensors;
    lc_st_entry *e = calloc((size_t)n, sizeof *e);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const lc_st_tensor *t = &src.tensors[i];
        float *f = malloc(sizeof(float) * (size_t)t->n_elements);
        lc_st_tensor_to_f32(t, f);
        e[i].name = t->name;
        e[i].dtype = dtype;
        e[i].n_dims = t->n_dims;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        if (dtype == LC_DTYPE_F32) {
            bufs[i] = f;
        } else {
            uint16_t *h = malloc(2 * (size_t)t->n_elements);
            for (int64_t j = 0; j < t->n_elements; j++)
                h[j] = dtype == LC_DTYPE_F16 ? lc_f32_to_f16(f[j]) : lc_f32_to_bf16(f[j]);
            free(f);
            bufs[i] = h;
        }
        e[i].data = bufs[i];
        e[i].nbytes = lc_dtype_size(dtype) * (size_t)t->n_elements;
    }
    char path[4096], index[65536];
    if (n_shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ck_assert_int_eq(lc_st_write(path, e, n, NULL, 0), LC_STATUS_OK);
    } else {
        size_t len = (size_t)snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
        int per = (n + n_shards - 1) / n_shards;
        for (int s = 0; s < n_shards; s++) {
            int lo = s * per, hi = lo + per < n ? lo + per : n;
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            ck_assert_int_eq(lc_st_write(path, e + lo, hi - lo, NULL, 0), LC_STATUS_OK);
            for (int i = lo; i < hi; i++)
                len += (size_t)snprintf(index + len, sizeof index - len, "%s\"%s\": \"%s\"", i ? ", " : "",
                                        e[i].name, name);
        }
        len += (size_t)snprintf(index + len, sizeof index - len, "}}");
        lc_test_write(dir, "model.safetensors.index.json", index, len);
    }
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(e);
    lc_st_set_free(&src);
}

// Loads dir and compares every layer weight with the original within rel_tol.
static void check_weights_close(const char *dir, float rel_tol) {
    lc_model a, b;
    lc_status st = lc_model_load(&a, MODEL_DIR);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    st = lc_model_load(&b, dir);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    const lc_model_config *c = &a.cfg;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *x = &a.layers[l].lin[k], *y = &b.layers[l].lin[k];
            ck_assert_int_eq(x->in, y->in);
            ck_assert_int_eq(x->out, y->out);
            ck_assert(x->w.type == LC_WTYPE_F32 && y->w.type == LC_WTYPE_F32); // F16/BF16 files widen to fp32
            const float *xw = x->w.data, *yw = y->w.data;
            for (int i = 0; i < x->in * x->out; i++)
                ck_assert_msg(fabsf(xw[i] - yw[i]) <= rel_tol * fabsf(xw[i]) + 1e-7f, "layer %d %s[%d]: %g vs %g", l,
                              lc_linear_kind_name(k), i, xw[i], yw[i]);
        }
    }
    ck_assert_ptr_eq(b.lm_head.data, b.embed.data); // tied head stays tied
    lc_model_free(&a);
    lc_model_free(&b);
}

START_TEST(test_load_f16) {
    write_model_copy(tmp, LC_DTYPE_F16, 1);
    check_weights_close(tmp, 1.0f / 1024);
}
END_TEST

START_TEST(test_load_bf16) {
    write_model_copy(tmp, LC_DTYPE_BF16, 1);
    check_weights_close(tmp, 1.0f / 128);
}
END_TEST

START_TEST(test_load_sharded_f32_is_exact) {
    write_model_copy(tmp, LC_DTYPE_F32, 3);
    check_weights_close(tmp, 0.0f);
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, tmp), LC_STATUS_OK);
    ck_assert_int_eq(m.st.n_files, 3);
    lc_model_free(&m);
}
END_TEST

START_TEST(test_bf16_weight_storage) {
    // Linear weights kept in bf16: the same logits within bf16 rounding, and
    // exactly the logits of a model whose fp32 weights were rounded to bf16.
    lc_model a, b;
    ck_assert_int_eq(lc_model_load(&a, MODEL_DIR), LC_STATUS_OK);
    ck_assert_int_eq(lc_model_load_opts(&b, MODEL_DIR, true), LC_STATUS_OK);
    ck_assert_int_eq(b.layers[0].lin[LC_LINEAR_KIND_Q].w.type, LC_WTYPE_BF16);
    write_model_copy(tmp, LC_DTYPE_BF16, 1);
    lc_model c;
    ck_assert_int_eq(lc_model_load(&c, tmp), LC_STATUS_OK); // bf16 file, widened to fp32
    int32_t ids[8] = {1, 403, 407, 261, 378, 442, 303, 271};
    float *logits[3];
    lc_model *models[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        lc_forward_state s;
        ck_assert_int_eq(lc_forward_state_init(&s, models[i], 1, 8, 8, 8), LC_STATUS_OK);
        ck_assert_int_eq(lc_forward(&s, models[i], ids, 1, 8, 0, LC_LOGITS_MODE_ALL), LC_STATUS_OK);
        logits[i] = malloc(sizeof(float) * 8 * 512);
        memcpy(logits[i], s.logits, sizeof(float) * 8 * 512);
        lc_forward_state_free(&s);
    }
    float max_ab = 0.0f, max_bc = 0.0f, scale = 0.0f;
    for (int i = 0; i < 8 * 512; i++) {
        scale = fmaxf(scale, fabsf(logits[0][i]));
        max_ab = fmaxf(max_ab, fabsf(logits[0][i] - logits[1][i]));
        // c also rounds the norms and embeddings; b rounds only the linears.
        max_bc = fmaxf(max_bc, fabsf(logits[1][i] - logits[2][i]));
    }
    // bf16 keeps 8 significant bits (0.4 %); five layers of it stay within 2 % of the logits' scale.
    ck_assert_msg(max_ab > 0.0f && max_ab < 0.02f * scale, "bf16 storage moved logits by %g (scale %g)", max_ab, scale);
    ck_assert_msg(max_bc < 0.02f * scale, "bf16 storage vs bf16 file: %g (scale %g)", max_bc, scale);
    for (int i = 0; i < 3; i++) free(logits[i]);
    lc_model_free(&a);
    lc_model_free(&b);
    lc_model_free(&c);
}
END_TEST

// Asserts that loading dir fails with LC_STATUS_INPUT and a message holding `needle`.
static void expect_load_error(const char *dir, const char *needle) {
    lc_model m;
    lc_status st = lc_model_load(&m, dir);
    ck_assert_int_eq(st, LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), needle) != NULL, "message \"%s\" lacks \"%s\"", lc_error_message(),
                  needle);
    ck_assert_ptr_null(strchr(lc_error_message(), '\n'));
}

static char *read_model_file(size_t *len) { return lc_test_read(MODEL_DIR "/model.safetensors", len); }

START_TEST(test_truncated_safetensors) {
    size_t len;
    char *buf = read_model_file(&len);
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    lc_test_write(tmp, "model.safetensors", buf, len / 2);
    expect_load_error(tmp, "model.safetensors: tensor ");
    expect_load_error(tmp, "outside the");
    lc_test_write(tmp, "model.safetensors", buf, 5);
    expect_load_error(tmp, "truncated");
    free(buf);
}
END_TEST

START_TEST(test_header_length_past_end) {
    size_t len;
    char *buf = read_model_file(&len);
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    buf[6] = 0x10; // header length now ~2^52
    lc_test_write(tmp, "model.safetensors", buf, len);
    expect_load_error(tmp, "header length");
    free(buf);
}
END_TEST

// Replaces the first occurrence of `from` in the header with `to` (same length).
static void patch_header(char *buf, const char *from, const char *to) {
    ck_assert_uint_eq(strlen(from), strlen(to));
    char *p = strstr(buf + 8, from);
    ck_assert_ptr_nonnull(p);
    memcpy(p, to, strlen(to));
}

START_TEST(test_offsets_past_end) {
    size_t len;
    char *buf = read_model_file(&len);
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    // embed_tokens is [0, 131072): point its end far beyond the file.
    patch_header(buf, "\"data_offsets\":[0,131072]", "\"data_offsets\":[0,1.3e72]");
    lc_test_write(tmp, "model.safetensors", buf, len);
    expect_load_error(tmp, "tensor model.embed_tokens.weight: data_offsets");
    free(buf);
}
END_TEST

START_TEST(test_overlapping_and_mis_sized_tensors) {
    size_t len;
    char *buf = read_model_file(&len);
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    char *copy = malloc(len);
    memcpy(copy, buf, len);
    // input_layernorm of layer 0 moved onto the embedding's bytes.
    patch_header(copy, "[131072,131328]", "[000000,000256]");
    lc_test_write(tmp, "model.safetensors", copy, len);
    expect_load_error(tmp, "overlap");
    memcpy(copy, buf, len);
    patch_header(copy, "\"shape\":[512,64]", "\"shape\":[512,65]");
    lc_test_write(tmp, "model.safetensors", copy, len);
    expect_load_error(tmp, "tensor model.embed_tokens.weight: ");
    free(copy);
    free(buf);
}
END_TEST

START_TEST(test_config_disagrees_with_tensors) {
    size_t len;
    char *cfg = lc_test_read(MODEL_DIR "/config.json", &len);
    char *p = strstr(cfg, "\"intermediate_size\": 172");
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\"intermediate_size\": 128", 24);
    lc_test_write(tmp, "config.json", cfg, len);
    lc_test_copy(MODEL_DIR "/model.safetensors", tmp, "model.safetensors");
    expect_load_error(tmp, "tensor model.layers.0.mlp.gate_proj.weight has shape [172, 64], config.json implies [128, 64]");
    free(cfg);
}
END_TEST

START_TEST(test_config_errors) {
    const char *unsupported = "{\"model_type\": \"mamba\", \"hidden_size\": 8}";
    lc_test_write(tmp, "config.json", unsupported, strlen(unsupported));
    expect_load_error(tmp, "model_type \"mamba\" is not supported (supported: llama, mistral, qwen2, gemma, gemma2, "
                           "phi3, gpt2, falcon, olmo, bloom, mixtral, olmoe, qwen2_moe)");
    // Mixture-of-experts keys in range.
    const char *topk = "{\"model_type\": \"mixtral\", \"hidden_size\": 8, \"intermediate_size\": 8, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 10, "
                       "\"num_local_experts\": 4, \"num_experts_per_tok\": 5}";
    lc_test_write(tmp, "config.json", topk, strlen(topk));
    expect_load_error(tmp, "config.json: \"num_experts_per_tok\" is 5, outside 1..4");
    const char *only = "{\"model_type\": \"qwen2_moe\", \"hidden_size\": 8, \"intermediate_size\": 8, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 10, "
                       "\"num_experts\": 4, \"mlp_only_layers\": [2]}";
    lc_test_write(tmp, "config.json", only, strlen(only));
    expect_load_error(tmp, "config.json: \"mlp_only_layers\" must list layers of 0..1");
    const char *heads = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 8, "
                        "\"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"num_key_value_heads\": 3, "
                        "\"vocab_size\": 10}";
    lc_test_write(tmp, "config.json", heads, strlen(heads));
    expect_load_error(tmp, "not a multiple of the 3 key/value heads");
    const char *huge = "{\"model_type\": \"llama\", \"hidden_size\": 1e12}";
    lc_test_write(tmp, "config.json", huge, strlen(huge));
    expect_load_error(tmp, "config.json: \"hidden_size\" is 1000000000000, outside 1..65536");
    lc_test_write(tmp, "config.json", "{\"model_type\": ", 15);
    expect_load_error(tmp, "config.json: invalid JSON");
    // eos_token_id lists: every id checked, their number bounded; generation_config.json's too.
    size_t len;
    char *cfg = lc_test_read(MODEL_DIR "/config.json", &len), text[2048];
    const char *key = "\"eos_token_id\": 2";
    char *at = strstr(cfg, key);
    ck_assert_ptr_nonnull(at);
    static const struct {
        const char *eos, *needle;
    } bad[] = {
        {"[2, \"x\"]", "config.json: \"eos_token_id\" must be a token id or a list of them"},
        {"[2, -1]", "config.json: \"eos_token_id\" must be a token id or a list of them"},
        {"[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]",
         "config.json: \"eos_token_id\" lists 17 ids (at most 16)"},
    };
    lc_test_copy(MODEL_DIR "/model.safetensors", tmp, "model.safetensors");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = snprintf(text, sizeof text, "%.*s\"eos_token_id\": %s%s", (int)(at - cfg), cfg, bad[i].eos,
                         at + strlen(key));
        lc_test_write(tmp, "config.json", text, (size_t)n);
        expect_load_error(tmp, bad[i].needle);
        lc_test_write(tmp, "config.json", cfg, len);
        n = snprintf(text, sizeof text, "{\"eos_token_id\": %s}", bad[i].eos);
        lc_test_write(tmp, "generation_config.json", text, (size_t)n);
        expect_load_error(tmp, "generation_config.json: \"eos_token_id\"");
        remove(strcat(strcpy(text, tmp), "/generation_config.json"));
    }
    free(cfg);
}
END_TEST

// tie_word_embeddings as transformers reads it: each family's default when
// absent (LlamaConfig untied, Gemma tied, GPT-2, Falcon and Bloom
// PretrainedConfig's tied), and the file's value when present.
START_TEST(test_tie_word_embeddings_defaults) {
    static const struct {
        const char *sizes;
        bool absent;
    } fam[] = {
        {"\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1, "
         "\"num_attention_heads\": 2",
         false},
        {"\"model_type\": \"gemma\", \"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1, "
         "\"num_attention_heads\": 2, \"head_dim\": 4",
         true},
        {"\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2", true},
        {"\"model_type\": \"falcon\", \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2", true},
        {"\"model_type\": \"bloom\", \"hidden_size\": 8, \"n_layer\": 1, \"n_head\": 2", true},
    };
    static const char *const tie[] = {"", ", \"tie_word_embeddings\": false", ", \"tie_word_embeddings\": true"};
    char text[512], path[4200];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++)
        for (int k = 0; k < 3; k++) {
            int len = snprintf(text, sizeof text, "{%s, \"vocab_size\": 10%s}", fam[f].sizes, tie[k]);
            lc_test_write(tmp, "config.json", text, (size_t)len);
            lc_model_config c;
            ck_assert_msg(lc_config_load(&c, path) == LC_STATUS_OK, "%s", lc_error_message());
            bool want = k == 0 ? fam[f].absent : k == 2;
            ck_assert_msg(c.tie_word_embeddings == want, "%s: tied %d, want %d", text, c.tie_word_embeddings, want);
        }
}
END_TEST

START_TEST(test_shard_path_leaving_folder) {
    lc_test_copy(MODEL_DIR "/config.json", tmp, "config.json");
    const char *index = "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}";
    lc_test_write(tmp, "model.safetensors.index.json", index, strlen(index));
    expect_load_error(tmp, "shard \"../model.safetensors\" is not a file name in the model folder");
    const char *abs = "{\"weight_map\": {\"model.norm.weight\": \"/etc/passwd\"}}";
    lc_test_write(tmp, "model.safetensors.index.json", abs, strlen(abs));
    expect_load_error(tmp, "is not a file name in the model folder");
}
END_TEST

START_TEST(test_missing_tensor) {
    write_model_copy(tmp, LC_DTYPE_F32, 2);
    // Drop the second shard: its tensors are named by the index but absent.
    char path[4096];
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", tmp);
    ck_assert_int_eq(remove(path), 0);
    expect_load_error(tmp, "model-00002-of-00002.safetensors: cannot open");
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *conv = tcase_create("conversions");
    tcase_add_test(conv, test_f16_round_trip_all_values);
    tcase_add_test(conv, test_bf16_conversions);
    suite_add_tcase(s, conv);
    TCase *load = tcase_create("load");
    tcase_add_checked_fixture(load, setup, teardown);
    tcase_add_test(load, test_load_f16);
    tcase_add_test(load, test_load_bf16);
    tcase_add_test(load, test_load_sharded_f32_is_exact);
    tcase_add_test(load, test_bf16_weight_storage);
    tcase_add_test(load, test_truncated_safetensors);
    tcase_add_test(load, test_header_length_past_end);
    tcase_add_test(load, test_offsets_past_end);
    tcase_add_test(load, test_overlapping_and_mis_sized_tensors);
    tcase_add_test(load, test_config_disagrees_with_tensors);
    tcase_add_test(load, test_config_errors);
    tcase_add_test(load, test_tie_word_embeddings_defaults);
    tcase_add_test(load, test_shard_path_leaving_folder);
    tcase_add_test(load, test_missing_tensor);
    suite_add_tcase(s, load);
    return lc_test_run_suite(s);
}
