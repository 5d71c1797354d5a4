// GGUF bases: dequantization bit for bit against ggml's own output (the
// fixtures' *.dequant.safetensors), the F32 GGUF against the Hugging Face
// folder it was converted from (logits), each quantized file against the fp32
// path run on its dequantized weights, the panel products forward and
// backward against fp32 GEMMs, and malformed files.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/kernels.h"
#include "autograd/weight.h"
#include "model/forward.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

#define GGUF_DIR LC_SHARED_DIR "/models/gguf"
#define TINY_HF GGUF_DIR "/tiny-llama-256"
#define TINY_F32 GGUF_DIR "/tiny-llama-256-f32.gguf"

static const char *const quant_files[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"};
#define N_QUANT (int)(sizeof quant_files / sizeof quant_files[0])

static char *tmp;
static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

// Every tensor of the reference file (ggml's dequantize_row_* output, keyed
// by GGUF name) equals our dequantization of the GGUF tensor, bit for bit.
START_TEST(test_dequant_matches_ggml) {
    const char *q = quant_files[_i];
    char gpath[512], rpath[512];
    snprintf(gpath, sizeof gpath, GGUF_DIR "/tiny-llama-256-%s.gguf", q);
    snprintf(rpath, sizeof rpath, GGUF_DIR "/tiny-llama-256-%s.dequant.safetensors", q);
    lc_gguf_file f;
    lc_st_set ref = {0};
    ck_assert_msg(lc_gguf_open(&f, gpath) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_st_set_add_file(&ref, rpath) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_ge(ref.n_tensors, 5);
    int quantized = 0;
    for (int i = 0; i < ref.n_tensors; i++) {
        const lc_st_tensor *r = &ref.tensors[i];
        const lc_gguf_tensor *t = lc_gguf_find_tensor(&f, r->name);
        ck_assert_msg(t != NULL, "%s: %s missing", q, r->name);
        ck_assert_int_eq(r->dtype, LC_DTYPE_F32);
        ck_assert_int_eq(t->n_elements, r->n_elements);
        ck_assert_int_eq(t->ne[0], r->shape[r->n_dims - 1]);
        float *v = malloc(sizeof(float) * (size_t)t->n_elements);
        ck_assert_msg(lc_gguf_tensor_to_f32(&f, t, v) == LC_STATUS_OK, "%s", lc_error_message());
        ck_assert_msg(memcmp(v, r->data, r->nbytes) == 0, "%s: %s (%s) differs from ggml's dequantization", q,
                      r->name, lc_ggml_type_name(t->type));
        quantized += t->type != 0;
        free(v);
    }
    ck_assert_msg(quantized > 0, "%s: the reference holds no quantized tensor", q);
    lc_st_set_free(&ref);
    lc_gguf_close(&f);
}
END_TEST

// Logits of a model over a fixed prompt (T tokens, B = 1) into a new buffer.
static float *logits_of(const lc_model *m, int T) {
    int32_t ids[16] = {1, 403, 407, 261, 378, 442, 303, 271, 290, 12, 301, 9, 400, 277, 318, 2};
    ck_assert_int_le(T, 16);
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, m, 1, T, T, T), LC_STATUS_OK);
    ck_assert_msg(lc_forward(&s, m, ids, 1, T, 0, LC_LOGITS_MODE_ALL) == LC_STATUS_OK, "%s", lc_error_message());
    size_t n = (size_t)T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, s.logits, sizeof(float) * n);
    lc_forward_state_free(&s);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    if (scale) *scale = s;
    return d;
}

// The F32 GGUF is the Hugging Face folder converted by llama.cpp: once its
// names and q/k rows are undone, the weights and so the logits are the same bits.
START_TEST(test_f32_gguf_equals_hf_folder) {
    lc_model hf, gg;
    ck_assert_msg(lc_model_load(&hf, TINY_HF) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_model_load(&gg, TINY_F32) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(gg.from_gguf && gg.gguf != NULL);
    ck_assert_int_eq(gg.cfg.arch, hf.cfg.arch);
    ck_assert_int_eq(gg.cfg.hidden_size, hf.cfg.hidden_size);
    ck_assert_int_eq(gg.cfg.n_kv_heads, hf.cfg.n_kv_heads);
    ck_assert_int_eq(gg.cfg.vocab_size, hf.cfg.vocab_size);
    ck_assert_int_eq(gg.cfg.tie_word_embeddings, hf.cfg.tie_word_embeddings);
    ck_assert_float_eq(gg.cfg.norm_eps, hf.cfg.norm_eps);
    ck_assert_float_eq(gg.cfg.rope_theta, hf.cfg.rope_theta);
    for (int l = 0; l < hf.cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *a = &hf.layers[l].lin[k], *b = &gg.layers[l].lin[k];
            if (!a->out) continue;
            ck_assert_int_eq(b->w.type, LC_WTYPE_F32);
            ck_assert_msg(!memcmp(a->w.data, b->w.data, sizeof(float) * (size_t)a->out * a->in), "layer %d %s", l,
                          lc_linear_kind_name(k));
        }
    float *la = logits_of(&hf, 16), *lb = logits_of(&gg, 16);
    ck_assert_msg(!memcmp(la, lb, sizeof(float) * 16 * (size_t)hf.cfg.vocab_size), "logits differ");
    free(la);
    free(lb);
    lc_model_free(&hf);
    lc_model_free(&gg);
}
END_TEST

// A copy of m's linear weights dequantized to fp32 (what the panel products
// must reproduce), installed in place of the typed ones.
static void **widen_linears(lc_model *m) {
    void **bufs = calloc((size_t)m->cfg.n_layers * LC_LINEAR_KIND_COUNT, sizeof *bufs);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            lc_linear *lin = &m->layers[l].lin[k];
            if (!lin->out) continue;
            float *w = malloc(sizeof(float) * (size_t)lin->out * lin->in);
            lc_weight_dequant(w, &lin->w, 0, lin->out, 0, lin->in, lin->in);
            bufs[l * LC_LINEAR_KIND_COUNT + k] = w;
            lin->w = (lc_weight){LC_WTYPE_F32, w, lin->out, lin->in};
        }
    return bufs;
}

// Each quantized file: weights stay in their type (no fp32 copy), and the
// logits equal those of the fp32 path on the same weights dequantized.
START_TEST(test_quantized_logits_equal_dequantized_path) {
    const char *q = quant_files[_i];
    char path[512];
    snprintf(path, sizeof path, GGUF_DIR "/tiny-llama-256-%s.gguf", q);
    lc_model m, w;
    ck_assert_msg(lc_model_load(&m, path) == LC_STATUS_OK, "%s: %s", q, lc_error_message());
    ck_assert_msg(lc_model_load(&w, path) == LC_STATUS_OK, "%s: %s", q, lc_error_message());
    int typed = 0;
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            typed += m.layers[l].lin[k].out && m.layers[l].lin[k].w.type > LC_WTYPE_BF16;
    ck_assert_msg(typed >= 7 * m.cfg.n_layers, "%s: %d linears quantized", q, typed);
    void **bufs = widen_linears(&w);
    float *a = logits_of(&m, 16), *b = logits_of(&w, 16);
    double scale, d = max_abs_diff(b, a, 16 * (size_t)m.cfg.vocab_size, &scale);
    // Only the GEMM blocking differs (panels against whole matrices): fp32 rounding.
    ck_assert_msg(d <= 1e-5 * scale, "%s: logits differ by %g (scale %g)", q, d, scale);
    free(a);
    free(b);
    for (int i = 0; i < w.cfg.n_layers * LC_LINEAR_KIND_COUNT; i++) free(bufs[i]);
    free(bufs);
    lc_model_free(&w);
    lc_model_free(&m);
}
END_TEST

// The panel products on every stored type against fp32 GEMMs on the
// dequantized matrix, with shapes that leave partial panels (rows not a
// multiple of 128, several column panels, N = 1 for decoding).
START_TEST(test_panel_products) {
    const lc_wtype types[] = {LC_WTYPE_F16, LC_WTYPE_BF16, LC_WTYPE_Q4_0, LC_WTYPE_Q4_1, LC_WTYPE_Q5_0,
                              LC_WTYPE_Q5_1, LC_WTYPE_Q8_0, LC_WTYPE_Q4_K, LC_WTYPE_Q5_K, LC_WTYPE_Q6_K};
    const int rows = 300, cols = 2304;
    uint64_t state = 42;
    size_t max_bytes = lc_wtype_row_bytes(LC_WTYPE_F16, cols) * rows;
    unsigned char *data = malloc(max_bytes);
    float *wf = malloc(sizeof(float) * rows * cols);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t bytes = lc_wtype_row_bytes(types[t], cols) * rows;
        // Random blocks with sane scales: random bytes, then each block's fp16 scale(s) set small.
        for (size_t i = 0; i < bytes; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            data[i] = (unsigned char)(state >> 56);
        }
        size_t bb = lc_wtype_block_bytes(types[t]);
        if (types[t] == LC_WTYPE_F16 || types[t] == LC_WTYPE_BF16) {
            for (size_t i = 0; i < bytes / 2; i++) {
                uint16_t h = types[t] == LC_WTYPE_F16 ? lc_f32_to_f16(((int)(data[2 * i] % 200) - 100) / 1000.0f)
                                                      : lc_f32_to_bf16(((int)(data[2 * i] % 200) - 100) / 1000.0f);
                memcpy(data + 2 * i, &h, 2);
            }
        } else {
            size_t at = types[t] == LC_WTYPE_Q6_K ? 208 : 0;
            int n_half = types[t] == LC_WTYPE_Q4_1 || types[t] == LC_WTYPE_Q5_1 || types[t] == LC_WTYPE_Q4_K ||
                                 types[t] == LC_WTYPE_Q5_K
                             ? 2
                             : 1;
            for (size_t b = 0; b < bytes / bb; b++)
                for (int h = 0; h < n_half; h++) {
                    uint16_t v = lc_f32_to_f16(0.001f * (float)(1 + (b + h) % 7));
                    memcpy(data + b * bb + at + 2 * h, &v, 2);
                }
        }
        lc_weight w = {types[t], data, rows, cols};
        lc_weight_dequant(wf, &w, 0, rows, 0, cols, cols);
        for (int N = 1; N <= 37; N += 36) {
            float *x = malloc(sizeof(float) * N * cols), *y = malloc(sizeof(float) * N * rows);
            float *yr = malloc(sizeof(float) * N * rows), *dx = malloc(sizeof(float) * N * cols);
            float *dxr = malloc(sizeof(float) * N * cols);
            for (int i = 0; i < N * cols; i++) x[i] = (float)((i * 7919) % 101 - 50) / 50.0f;
            lc_weight_matmul_forward(y, x, &w, N);
            lc_matmul_forward(yr, x, wf, NULL, N, cols, rows);
            double scale, d = max_abs_diff(yr, y, (size_t)N * rows, &scale);
            ck_assert_msg(scale > 0 && d <= 1e-5 * scale, "%s forward N=%d: %g (scale %g)", lc_wtype_name(types[t]), N,
                          d, scale);
            // dy = y (any values); backward adds onto dx unless overwriting.
            for (int i = 0; i < N * cols; i++) dx[i] = dxr[i] = 1.0f;
            lc_weight_matmul_backward(dx, yr, &w, false, N);
            lc_matmul_backward(dxr, yr, wf, false, N, cols, rows);
            d = max_abs_diff(dxr, dx, (size_t)N * cols, &scale);
            ck_assert_msg(d <= 1e-5 * scale, "%s backward N=%d: %g (scale %g)", lc_wtype_name(types[t]), N, d, scale);
            lc_weight_matmul_backward(dx, yr, &w, true, N);
            lc_matmul_backward(dxr, yr, wf, true, N, cols, rows);
            d = max_abs_diff(dxr, dx, (size_t)N * cols, &scale);
            ck_assert_msg(d <= 1e-5 * scale, "%s backward overwrite N=%d: %g", lc_wtype_name(types[t]), N, d);
            free(x);
            free(y);
            free(yr);
            free(dx);
            free(dxr);
        }
    }
    free(data);
    free(wf);
}
END_TEST

// llama.cpp's own stories260K.gguf and the Hugging Face folder of the same model.
START_TEST(test_stories260k_gguf_equals_hf) {
    lc_model hf, gg;
    ck_assert_msg(lc_model_load(&hf, LC_SHARED_DIR "/models/stories260K") == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_model_load(&gg, LC_SHARED_DIR "/models/stories260K.gguf") == LC_STATUS_OK, "%s",
                  lc_error_message());
    ck_assert_int_eq(gg.cfg.n_heads, hf.cfg.n_heads);
    ck_assert_int_eq(gg.cfg.n_kv_heads, hf.cfg.n_kv_heads);
    float *la = logits_of(&hf, 16), *lb = logits_of(&gg, 16);
    double scale, d = max_abs_diff(la, lb, 16 * (size_t)hf.cfg.vocab_size, &scale);
    ck_assert_msg(d <= 1e-5 * scale, "logits differ by %g (scale %g)", d, scale);
    free(la);
    free(lb);
    lc_model_free(&hf);
    lc_model_free(&gg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf_model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_dequant_matches_ggml, 0, N_QUANT);
    tcase_add_test(tc, test_f32_gguf_equals_hf_folder);
    tcase_add_loop_test(tc, test_quantized_logits_equal_dequantized_path, 0, N_QUANT);
    tcase_add_test(tc, test_panel_products);
    tcase_add_test(tc, test_stories260k_gguf_equals_hf);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
