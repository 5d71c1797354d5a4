// GGUF bases: dequantization bit for bit against ggml's own output (the
// fixtures' *.dequant.safetensors), the F32 GGUF against the Hugging Face
// folder it was converted from (logits), each quantized file against the fp32
// path run on its dequantized weights, the panel products forward and
// backward against fp32 GEMMs, and malformed files.
#include <check.h>
#include <cJSON.h>
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
#include "model/train_pass.h"
#include "export/export.h"
#include "export/gguf.h"
#include "model/lora.h"
#include "data/tokenizer.h"
#include "family_fixture.h"
#include "weight_fixture.h"
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

// The row dequantizer's fp16 conversion (branch-free, vectorized) against
// the reference conversion for all 65536 halves (NaNs: both NaN).
START_TEST(test_f16_rows_exact) {
    uint16_t *h = malloc(sizeof(uint16_t) * 65536);
    float *f = malloc(sizeof(float) * 65536);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    lc_wtype_dequant_row(f, LC_WTYPE_F16, h, 65536);
    for (int i = 0; i < 65536; i++) {
        float want = lc_f16_to_f32((uint16_t)i);
        if (want != want) ck_assert_msg(f[i] != f[i], "0x%04x: %g, want NaN", i, f[i]);
        else ck_assert_msg(!memcmp(&f[i], &want, 4), "0x%04x: %a, want %a", i, f[i], want);
    }
    free(h);
    free(f);
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
        test_weight_random(data, types[t], rows, cols, &state);
        lc_weight w = {types[t], data, rows, cols};
        lc_weight_dequant(wf, &w, 0, rows, 0, cols, cols);
        for (int N = 1; N <= 37; N += 36) {
            float *x = malloc(sizeof(float) * N * cols), *y = malloc(sizeof(float) * N * rows);
            float *yr = malloc(sizeof(float) * N * rows), *dx = malloc(sizeof(float) * N * cols);
            float *dxr = malloc(sizeof(float) * N * cols);
            for (int i = 0; i < N * cols; i++) x[i] = (float)((i * 7919) % 101 - 50) / 50.0f;
            lc_weight_matmul_forward(y, x, &w, N, LC_COMPUTE_FP32);
            lc_matmul_forward(yr, x, wf, NULL, N, cols, rows);
            double scale, d = max_abs_diff(yr, y, (size_t)N * rows, &scale);
            ck_assert_msg(scale > 0 && d <= 1e-5 * scale, "%s forward N=%d: %g (scale %g)", lc_wtype_name(types[t]), N,
                          d, scale);
            // dy = y (any values); backward adds onto dx unless overwriting.
            for (int i = 0; i < N * cols; i++) dx[i] = dxr[i] = 1.0f;
            lc_weight_matmul_backward(dx, yr, &w, false, N, LC_COMPUTE_FP32);
            lc_matmul_backward(dxr, yr, wf, false, N, cols, rows);
            d = max_abs_diff(dxr, dx, (size_t)N * cols, &scale);
            ck_assert_msg(d <= 1e-5 * scale, "%s backward N=%d: %g (scale %g)", lc_wtype_name(types[t]), N, d, scale);
            lc_weight_matmul_backward(dx, yr, &w, true, N, LC_COMPUTE_FP32);
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

#define TINY_Q4K GGUF_DIR "/tiny-llama-256-q4_k_m.gguf"
#define ALL_TARGETS 0x7Fu // q, k, v, o, gate, up, down

// A LoRA of rank 4 on every projection with B random too (not zero), so
// every product contributes.
static void random_lora(lc_lora *lora, const lc_model *m, bool grads) {
    lc_lora_config cfg = {.r = 4, .alpha = 8.0f, .targets = ALL_TARGETS};
    ck_assert_msg(lc_lora_init(lora, m, &cfg, 3, grads) == LC_STATUS_OK, "%s", lc_error_message());
    uint64_t state = 11;
    for (size_t i = 0; i < lora->n_params; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        lora->params[i] = ((float)(state >> 40) / 16777216.0f - 0.5f) * 0.2f;
    }
}

// Loss (mean over targets) and LoRA gradients of one batch of 2 x 24 tokens.
static double loss_and_grads(const lc_model *m, const lc_lora *lora) {
    enum { B = 2, T = 24 };
    int32_t tokens[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)((i * 37 + 11) % m->cfg.vocab_size);
    for (int i = 0; i < B * T; i++) targets[i] = (i % T == T - 1) ? -1 : tokens[i + 1];
    memset(lora->grads, 0, sizeof(float) * lora->n_params);
    lc_train_pass p;
    ck_assert_int_eq(lc_train_pass_init(&p, m, false), LC_STATUS_OK);
    double loss = 0.0;
    int counted = 0;
    lc_forward_input in = {tokens, B, T, NULL, NULL, 0};
    ck_assert_msg(lc_train_pass_run(&p, m, lora, &in, targets, 1.0f / (B * (T - 1)), &loss, &counted) == LC_STATUS_OK,
                  "%s", lc_error_message());
    lc_train_pass_free(&p);
    return loss / counted;
}

// LoRA gradients through a Q4_K_M base: equal to the fp32 path's on the same
// weights dequantized (that path is checked against PyTorch), and the largest
// against central finite differences of the loss.
START_TEST(test_lora_grads_quantized_base) {
    lc_model m, w;
    ck_assert_msg(lc_model_load(&m, TINY_Q4K) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_model_load(&w, TINY_Q4K) == LC_STATUS_OK, "%s", lc_error_message());
    void **bufs = widen_linears(&w);
    lc_lora a, b;
    random_lora(&a, &m, true);
    random_lora(&b, &w, true);
    double la = loss_and_grads(&m, &a), lb = loss_and_grads(&w, &b);
    ck_assert_msg(fabs(la - lb) <= 1e-5 * fabs(lb), "loss %g vs %g", la, lb);
    double gmax = 0, dmax = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        gmax = fmax(gmax, fabs(b.grads[i]));
        dmax = fmax(dmax, fabs((double)a.grads[i] - b.grads[i]));
    }
    ck_assert_msg(gmax > 0 && dmax <= 1e-4 * gmax, "gradients differ by %g (max %g)", dmax, gmax);
    // Finite differences on the 6 largest gradients (fp32 losses: a loose bound).
    float *g = malloc(sizeof(float) * a.n_params);
    memcpy(g, a.grads, sizeof(float) * a.n_params);
    for (int pick = 0; pick < 6; pick++) {
        size_t best = 0;
        for (size_t i = 0; i < a.n_params; i++)
            if (fabsf(g[i]) > fabsf(g[best])) best = i;
        double h = 1e-2, x = a.params[best];
        a.params[best] = (float)(x + h);
        double up = loss_and_grads(&m, &a);
        a.params[best] = (float)(x - h);
        double down = loss_and_grads(&m, &a);
        a.params[best] = (float)x;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - g[best]) <= 0.03 * fabs(g[best]), "param %zu: analytic %g, finite differences %g", best,
                      g[best], fd);
        g[best] = 0;
    }
    free(g);
    lc_lora_free(&a);
    lc_lora_free(&b);
    for (int i = 0; i < w.cfg.n_layers * LC_LINEAR_KIND_COUNT; i++) free(bufs[i]);
    free(bufs);
    lc_model_free(&w);
    lc_model_free(&m);
}
END_TEST

static const lc_gguf_tensor *must_find(const lc_gguf_file *f, const char *name) {
    const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
    ck_assert_msg(t != NULL, "%s: %s missing", f->path, name);
    return t;
}

// gguf-lora from a quantized GGUF base, read back with the reader: alpha / r
// is the adapter's scale, lora_a holds A, and applying it as llama.cpp does
// (W + alpha / r * B A on the file's own weights) gives the merged weight in
// the file's row order.
START_TEST(test_gguf_lora_round_trip) {
    lc_model m;
    ck_assert_msg(lc_model_load(&m, TINY_Q4K) == LC_STATUS_OK, "%s", lc_error_message());
    lc_lora lora;
    random_lora(&lora, &m, false);
    char out[4096];
    snprintf(out, sizeof out, "%s/adapter.gguf", tmp);
    ck_assert_msg(lc_export_gguf_lora(out, TINY_Q4K, &m, &lora) == LC_STATUS_OK, "%s", lc_error_message());
    lc_gguf_file f, base;
    ck_assert_msg(lc_gguf_open(&f, out) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(lc_gguf_open(&base, TINY_Q4K) == LC_STATUS_OK);
    lc_gguf_str s;
    ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&f, "general.type"), 0, &s) && s.len == 7 && !memcmp(s.s, "adapter", 7));
    ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&f, "adapter.type"), 0, &s) && s.len == 4 && !memcmp(s.s, "lora", 4));
    ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&f, "general.architecture"), 0, &s) && s.len == 5 && !memcmp(s.s, "llama", 5));
    ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&f, "general.name"), 0, &s) && s.len == strlen("tiny-llama-256-q4_k_m") &&
              !memcmp(s.s, "tiny-llama-256-q4_k_m", s.len));
    const lc_gguf_kv *alpha = lc_gguf_find_kv(&f, "adapter.lora.alpha");
    ck_assert(alpha && alpha->type == LC_GGUF_F32);
    double av;
    ck_assert(lc_gguf_kv_float(alpha, 0, &av));
    ck_assert_int_eq((int)f.n_tensors, 2 * 7 * m.cfg.n_layers);
    static const char *const names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k < 7; k++) {
            const lc_lora_ref *ref = lc_lora_get(&lora, l, (lc_linear_kind)k);
            const lc_linear *lin = &m.layers[l].lin[k];
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, names[k]);
            const lc_gguf_tensor *ta = must_find(&f, name);
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, names[k]);
            const lc_gguf_tensor *tb = must_find(&f, name);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            const lc_gguf_tensor *tw = must_find(&base, name);
            // llama.cpp's shape checks: W.ne0 == a.ne0, W.ne1 == b.ne1, a.ne1 == b.ne0; scale alpha / b.ne0.
            ck_assert(ta->type == 0 && tb->type == 0);
            ck_assert(ta->ne[0] == tw->ne[0] && tb->ne[1] == tw->ne[1] && ta->ne[1] == tb->ne[0]);
            ck_assert_float_eq_tol((float)(av / (double)tb->ne[0]), ref->scale, 1e-6f * ref->scale);
            ck_assert(!memcmp(ta->data, ref->A, ta->nbytes));
            int rows = lin->out, cols = lin->in, r = ref->r;
            float *w = malloc(sizeof(float) * rows * cols), *merged = malloc(sizeof(float) * rows * cols);
            float *gguf_order = malloc(sizeof(float) * rows * cols);
            ck_assert(lc_gguf_tensor_to_f32(&base, tw, w) == LC_STATUS_OK);
            const float *A = (const float *)ta->data, *Bm = (const float *)tb->data;
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++) {
                    double acc = 0;
                    for (int j = 0; j < r; j++) acc += (double)Bm[o * r + j] * A[(size_t)j * cols + i];
                    w[(size_t)o * cols + i] += (float)(av / r * acc);
                }
            lc_export_merge_linear(merged, &m, &lora, l, (lc_linear_kind)k);
            bool qk = k <= LC_LINEAR_KIND_K;
            if (qk)
                lc_gguf_permute_rows(gguf_order, merged, k == 0 ? m.cfg.n_heads : m.cfg.n_kv_heads, m.cfg.head_dim,
                                     sizeof(float) * cols, true);
            else
                memcpy(gguf_order, merged, sizeof(float) * rows * cols);
            double d = max_abs_diff(gguf_order, w, (size_t)rows * cols, NULL);
            ck_assert_msg(d <= 1e-5, "layer %d %s: llama.cpp's application differs by %g", l, names[k], d);
            free(w);
            free(merged);
            free(gguf_order);
        }
    lc_gguf_close(&f);
    lc_gguf_close(&base);
    lc_lora_free(&lora);
    lc_model_free(&m);
}
END_TEST

// Merged GGUF from a quantized base at q8_0: the adapted weights are Q8_0
// within its rounding of the fp32 merge, every other tensor and key is the
// source's, byte for byte, and the file loads back as a base.
START_TEST(test_merged_q8_0_from_gguf_base) {
    lc_model m;
    ck_assert_msg(lc_model_load(&m, TINY_Q4K) == LC_STATUS_OK, "%s", lc_error_message());
    lc_lora lora;
    random_lora(&lora, &m, false);
    char out[4096];
    snprintf(out, sizeof out, "%s/merged.gguf", tmp);
    ck_assert_msg(lc_export_gguf(out, TINY_Q4K, &m, &lora, NULL, (lc_dtype)LC_WTYPE_Q8_0) == LC_STATUS_OK, "%s",
                  lc_error_message());
    lc_gguf_file f;
    ck_assert_msg(lc_gguf_open(&f, out) == LC_STATUS_OK, "%s", lc_error_message());
    const lc_gguf_file *src = m.gguf;
    ck_assert_int_eq(f.n_kvs, src->n_kvs);
    ck_assert_int_eq(f.n_tensors, src->n_tensors);
    for (size_t i = 0; i < src->n_kvs; i++) ck_assert_str_eq(f.kvs[i].key, src->kvs[i].key);
    lc_model back;
    ck_assert_msg(lc_model_load(&back, out) == LC_STATUS_OK, "%s", lc_error_message());
    int merged = 0;
    for (size_t i = 0; i < src->n_tensors; i++) {
        const lc_gguf_tensor *a = &src->tensors[i], *b = &f.tensors[i];
        ck_assert_str_eq(a->name, b->name);
        bool adapted = strstr(a->name, "blk.") == a->name && strstr(a->name, "norm") == NULL && a->n_dims == 2;
        if (!adapted) {
            ck_assert_msg(a->type == b->type && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "%s",
                          a->name);
            continue;
        }
        ck_assert_msg(b->type == 8, "%s is %s", b->name, lc_ggml_type_name(b->type));
        merged++;
    }
    ck_assert_int_eq(merged, 7 * m.cfg.n_layers);
    // Loaded back (q/k in Hugging Face order again), each adapted weight is the fp32 merge to Q8_0 precision.
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k < 7; k++) {
            const lc_linear *lin = &back.layers[l].lin[k];
            ck_assert_int_eq(lin->w.type, LC_WTYPE_Q8_0);
            size_t n = (size_t)lin->out * lin->in;
            float *q = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
            lc_weight_dequant(q, &lin->w, 0, lin->out, 0, lin->in, lin->in);
            lc_export_merge_linear(ref, &m, &lora, l, (lc_linear_kind)k);
            for (size_t i = 0; i < n; i += 32) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(ref[i + j]));
                for (int j = 0; j < 32; j++)
                    // |q d16 - x| <= d/2 + 127 |d16 - d| <= d (1/2 + 127 * 2^-11)
                    ck_assert_msg(fabsf(q[i + j] - ref[i + j]) <= amax / 127.0f * 0.563f + 1e-7f,
                                  "layer %d kind %d [%zu]: %g vs %g", l, k, i + j, q[i + j], ref[i + j]);
            }
            free(q);
            free(ref);
        }
    lc_model_free(&back);
    lc_gguf_close(&f);
    lc_lora_free(&lora);
    lc_model_free(&m);
}
END_TEST

// A Hugging Face folder exported from the F32 GGUF (no adapter) is the
// folder the GGUF was converted from: the same tensors, bit for bit, the
// same configuration, and a tokenizer that encodes alike.
START_TEST(test_hf_export_from_gguf_base) {
    lc_model g, h, orig;
    ck_assert_msg(lc_model_load(&g, TINY_F32) == LC_STATUS_OK, "%s", lc_error_message());
    char out[4096];
    snprintf(out, sizeof out, "%s/hf", tmp);
    ck_assert_msg(lc_export_hf(out, TINY_F32, &g, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_model_load(&h, out) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_model_load(&orig, TINY_HF) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(h.st.n_tensors, orig.st.n_tensors);
    for (int i = 0; i < orig.st.n_tensors; i++) {
        const lc_st_tensor *a = &orig.st.tensors[i], *b = lc_st_set_find(&h.st, a->name);
        ck_assert_msg(b != NULL, "%s missing", a->name);
        ck_assert_msg(a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "%s differs", a->name);
    }
    ck_assert_float_eq(h.cfg.norm_eps, orig.cfg.norm_eps);
    ck_assert_int_eq(h.cfg.n_kv_heads, orig.cfg.n_kv_heads);
    char fa[17], fb[17];
    lc_model_fingerprint(&h, fa);
    lc_model_fingerprint(&orig, fb);
    ck_assert_str_eq(fa, fb);
    lc_model_free(&g);
    lc_model_free(&h);
    lc_model_free(&orig);
}
END_TEST

// The vocabulary of llama.cpp's own stories260K.gguf encodes real text as the
// Hugging Face tokenizer.json does (SentencePiece scores turned into merges).
START_TEST(test_gguf_tokenizer_equals_hf) {
    const char *ggufs[2] = {LC_SHARED_DIR "/models/stories260K.gguf", TINY_F32};
    const char *dirs[2] = {LC_SHARED_DIR "/models/stories260K", TINY_HF};
    lc_gguf_file f;
    ck_assert(lc_gguf_open(&f, ggufs[_i]) == LC_STATUS_OK);
    cJSON *tj, *cj;
    ck_assert_msg(lc_gguf_tokenizer_json(&f, &tj, &cj) == LC_STATUS_OK, "%s", lc_error_message());
    lc_tokenizer *a, *b;
    ck_assert_msg(lc_tokenizer_load_json(&a, tj, cj, ggufs[_i]) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(lc_tokenizer_load_dir(&b, dirs[_i]) == LC_STATUS_OK);
    ck_assert_int_eq(lc_tokenizer_bos(a), lc_tokenizer_bos(b));
    ck_assert_int_eq(lc_tokenizer_eos(a), lc_tokenizer_eos(b));
    ck_assert_int_eq(lc_tokenizer_adds_bos(a), lc_tokenizer_adds_bos(b));
    FILE *fp = fopen(LC_SHARED_DIR "/data/gsm8k_train.jsonl", "r");
    ck_assert(fp != NULL);
    char line[16384];
    int32_t *ia = NULL, *ib = NULL;
    size_t ca = 0, cb = 0, na, nb;
    int n = 0;
    while (n < 300 && fgets(line, sizeof line, fp)) {
        size_t len = strlen(line);
        ck_assert(lc_tokenizer_encode(a, line, len, true, &ia, &ca, &na) == LC_STATUS_OK);
        ck_assert(lc_tokenizer_encode(b, line, len, true, &ib, &cb, &nb) == LC_STATUS_OK);
        ck_assert_msg(na == nb && !memcmp(ia, ib, na * sizeof *ia), "line %d encodes differently", n);
        n++;
    }
    ck_assert_int_eq(n, 300);
    fclose(fp);
    free(ia);
    free(ib);
    lc_tokenizer_free(a);
    lc_tokenizer_free(b);
    cJSON_Delete(tj);
    cJSON_Delete(cj);
    lc_gguf_close(&f);
}
END_TEST

// Logits [T, V] of m (with lora, may be NULL) over tokens.
static float *logits_lora(const lc_model *m, const lc_lora *lora, const int32_t *tokens, int T) {
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, m, 1, T, T, T), LC_STATUS_OK);
    s.lora = lora;
    ck_assert_msg(lc_forward(&s, m, tokens, 1, T, 0, LC_LOGITS_MODE_ALL) == LC_STATUS_OK, "%s", lc_error_message());
    size_t n = (size_t)T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, s.logits, sizeof(float) * n);
    lc_forward_state_free(&s);
    return out;
}

// Every family through GGUF and back: its tiny fixture with the PEFT adapter
// merged, exported as llama.cpp's converter lays it out, loaded as a GGUF
// base, gives the logits of the Hugging Face folder with the adapter. The
// PEFT export from the GGUF base reads back as the adapter it came from.
// The dense families, then the mixture-of-experts ones llama.cpp holds as the
// fixtures are (qwen2_moe's fixture has a dense layer, which llama.cpp's
// qwen2moe lacks: its export is refused, test_families).
static const char *round_trip_family(int i) {
    static const char *const moe[] = {"mixtral", "olmoe"};
    int n = 0;
    while (lc_family_names[n]) n++;
    return i < n ? lc_family_names[i] : moe[i - n];
}

START_TEST(test_family_gguf_round_trip) {
    const char *fam = round_trip_family(_i);
    lc_family_fixture f;
    lc_family_fixture_load(&f, fam, tmp);
    lc_model m, g;
    lc_lora lora;
    ck_assert_msg(lc_model_load(&m, f.model_dir) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_msg(lc_peft_load(f.adapter_dir, &m, &lora) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    char out[4096];
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, fam);
    ck_assert_msg(lc_export_gguf(out, f.model_dir, &m, &lora, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    bool readable = true; // every family lora.c trains reads back
    lc_status st = lc_model_load(&g, out);
    if (!readable) {
        ck_assert_msg(st == LC_STATUS_INPUT && strstr(lc_error_message(), "is not supported"), "%s: %s", fam,
                      lc_error_message());
    } else {
        ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        ck_assert_int_eq(g.cfg.n_layers, m.cfg.n_layers);
        ck_assert_int_eq(g.cfg.head_dim, m.cfg.head_dim);
        ck_assert_int_eq(g.cfg.rope_dim, m.cfg.rope_dim);
        // What GGUF cannot say, llama.cpp does not do either: Mistral is its
        // llama architecture with no sliding window, and Gemma 2's query scale
        // is 1/sqrt(head_dim) whatever query_pre_attn_scalar was (the
        // fixture's 24 is not the released models' 256 = head_dim).
        if (!strcmp(fam, "mistral") || !strcmp(fam, "mixtral")) m.cfg.sliding_window = 0;
        if (!strcmp(fam, "gemma2")) m.cfg.attn_scale = 1.0f / sqrtf((float)m.cfg.head_dim);
        ck_assert_int_eq(g.cfg.sliding_window, m.cfg.sliding_window);
        ck_assert_float_eq_tol(g.cfg.attn_scale, m.cfg.attn_scale, 1e-7f);
        int T = f.T;
        float *a = logits_lora(&m, &lora, f.tokens, T), *b = logits_lora(&g, NULL, f.tokens, T);
        double scale, d = max_abs_diff(a, b, (size_t)T * m.cfg.vocab_size, &scale);
        ck_assert_msg(d <= 1e-4 * scale, "%s: logits differ by %g (scale %g)", fam, d, scale);
        free(a);
        free(b);
        // PEFT from the GGUF base: the adapter read back onto the Hugging Face
        // folder is the same; refused where llama.cpp reordered fused rows.
        char peft[4200];
        snprintf(peft, sizeof peft, "%s/%s-peft", tmp, fam);
        st = lc_export_peft(peft, out, &g, &lora, LC_DTYPE_F32);
        bool reordered = !strcmp(fam, "bloom") || (!strncmp(fam, "falcon", 6) && m.cfg.n_kv_heads > 1);
        if (reordered) {
            ck_assert_msg(st == LC_STATUS_USAGE && strstr(lc_error_message(), "reordered"), "%s: %s", fam,
                          lc_error_message());
            // Nor does a Hugging Face adapter of the fused rows apply to it.
            lc_lora hf;
            st = lc_peft_load(f.adapter_dir, &g, &hf);
            ck_assert_msg(st == LC_STATUS_INPUT && strstr(lc_error_message(), "a PEFT adapter on a GGUF"), "%s: %s", fam,
                          lc_error_message());
        } else {
            ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
            lc_lora back;
            ck_assert_msg(lc_peft_load(peft, &m, &back) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
            ck_assert_int_eq(back.n_params, lora.n_params);
            ck_assert(!memcmp(back.params, lora.params, sizeof(float) * lora.n_params));
            lc_lora_free(&back);
        }
        // Its vocabulary loads (every family's pre-tokenizer, Falcon's included).
        lc_gguf_file gf;
        cJSON *tj, *cj;
        lc_tokenizer *tok;
        ck_assert(lc_gguf_open(&gf, out) == LC_STATUS_OK);
        ck_assert_msg(lc_gguf_tokenizer_json(&gf, &tj, &cj) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        ck_assert_msg(lc_tokenizer_load_json(&tok, tj, cj, out) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        lc_tokenizer_free(tok);
        cJSON_Delete(tj);
        cJSON_Delete(cj);
        lc_gguf_close(&gf);
        lc_model_free(&g);
    }
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_family_fixture_free(&f);
}
END_TEST

// A mixture-of-experts GGUF whose expert metadata or stacked tensors do not
// fit is refused in one line: the olmoe fixture exported, then copied with
// one key left out or the expert count changed.
static void copy_gguf_except(const char *src, const char *dst, const char *skip_key, const char *set_key, uint32_t v,
                             const char *dup_tensor, const char *dup_name) {
    lc_gguf_file f;
    ck_assert(lc_gguf_open(&f, src) == LC_STATUS_OK);
    lc_gguf_writer *w;
    ck_assert(lc_gguf_writer_new(&w, dst) == LC_STATUS_OK);
    for (size_t i = 0; i < f.n_kvs; i++) {
        if (!strcmp(f.kvs[i].key, skip_key) || !strcmp(f.kvs[i].key, set_key)) continue;
        ck_assert(lc_gguf_copy_kv(w, &f.kvs[i]) == LC_STATUS_OK);
    }
    if (*set_key) ck_assert(lc_gguf_set_u32(w, set_key, v) == LC_STATUS_OK);
    const lc_gguf_tensor *dup = dup_tensor ? lc_gguf_find_tensor(&f, dup_tensor) : NULL;
    for (size_t i = 0; i <= f.n_tensors; i++) {
        const lc_gguf_tensor *t = i < f.n_tensors ? &f.tensors[i] : dup;
        if (!t) continue;
        int64_t shape[LC_GGUF_MAX_DIMS];
        for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
        ck_assert(lc_gguf_add_tensor(w, i < f.n_tensors ? t->name : dup_name, t->type, t->n_dims, shape) ==
                  LC_STATUS_OK);
    }
    ck_assert(lc_gguf_write_header(w) == LC_STATUS_OK);
    for (size_t i = 0; i <= f.n_tensors; i++) {
        const lc_gguf_tensor *t = i < f.n_tensors ? &f.tensors[i] : dup;
        if (t) ck_assert(lc_gguf_write_tensor_data(w, t->data, t->nbytes) == LC_STATUS_OK);
    }
    ck_assert(lc_gguf_writer_finish(w) == LC_STATUS_OK);
    lc_gguf_writer_free(w);
    lc_gguf_close(&f);
}

START_TEST(test_moe_gguf_base_checked) {
    lc_family_fixture f;
    lc_family_fixture_load(&f, "olmoe", tmp);
    lc_model m, g;
    lc_lora lora;
    ck_assert(lc_model_load(&m, f.model_dir) == LC_STATUS_OK);
    ck_assert(lc_peft_load(f.adapter_dir, &m, &lora) == LC_STATUS_OK);
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/olmoe.gguf", tmp);
    snprintf(dst, sizeof dst, "%s/olmoe-bad.gguf", tmp);
    ck_assert_msg(lc_export_gguf(src, f.model_dir, &m, &lora, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s",
                  lc_error_message());
    copy_gguf_except(src, dst, "olmoe.expert_used_count", "", 0, NULL, NULL);
    ck_assert_int_eq(lc_model_load(&g, dst), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "metadata key olmoe.expert_used_count is missing"), "%s",
                  lc_error_message());
    copy_gguf_except(src, dst, "", "olmoe.expert_count", 6, NULL, NULL);
    ck_assert_int_eq(lc_model_load(&g, dst), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "tensor blk.0.ffn_gate_exps.weight is not [in, out, 6 experts]"), "%s",
                  lc_error_message());
    // A second stack of a layer's experts under another spelling of its
    // number ("blk.00."): refused by name, not written past the views.
    for (int k = 0; k < 12; k++) {
        char alias[96];
        snprintf(alias, sizeof alias, "blk.%.*s0.ffn_gate_exps.weight", k + 1, "000000000000");
        copy_gguf_except(src, dst, "", "", 0, "blk.0.ffn_gate_exps.weight", alias);
        ck_assert_int_eq(lc_model_load(&g, dst), LC_STATUS_INPUT);
        ck_assert_msg(strstr(lc_error_message(), "is not part of lora.c's olmoe model"), "%s", lc_error_message());
    }
    // Grouped-query attention: llama.cpp's olmoe norms k over the hidden size.
    m.cfg.n_kv_heads = 2;
    ck_assert_int_eq(lc_export_gguf(dst, f.model_dir, &m, &lora, NULL, LC_DTYPE_F32), LC_STATUS_USAGE);
    ck_assert_msg(strstr(lc_error_message(), "llama.cpp's olmoe has no grouped-query attention"), "%s",
                  lc_error_message());
    m.cfg.n_kv_heads = m.cfg.n_heads;
    ck_assert(lc_model_load(&g, src) == LC_STATUS_OK);
    // The Hugging Face export from it splits the stacked experts back into
    // per-expert tensors, each merged with its adapter.
    char hf[600];
    snprintf(hf, sizeof hf, "%s/olmoe-hf", tmp);
    ck_assert_msg(lc_export_hf(hf, src, &g, &lora, LC_DTYPE_F32) == LC_STATUS_OK, "%s", lc_error_message());
    lc_model h;
    ck_assert_msg(lc_model_load(&h, hf) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(h.cfg.arch, LC_ARCH_OLMOE);
    ck_assert_int_eq(h.cfg.n_experts, m.cfg.n_experts);
    float *a = logits_lora(&g, &lora, f.tokens, f.T), *b = logits_lora(&h, NULL, f.tokens, f.T);
    double scale, d = max_abs_diff(a, b, (size_t)f.T * m.cfg.vocab_size, &scale);
    ck_assert_msg(d <= 1e-4 * scale, "logits differ by %g (scale %g)", d, scale);
    free(a);
    free(b);
    lc_model_free(&h);
    lc_model_free(&g);
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_family_fixture_free(&f);
}
END_TEST

// A mixture-of-experts model for the llama.cpp adapter tests: a family
// fixture with a random adapter on every projection (some experts left
// without one), or (qwen2_moe) a random model of the fixture's shape with
// every layer sparse, as llama.cpp's qwen2moe holds it, so its shared expert
// goes through GGUF too.
static const char *const moe_lora_families[] = {"mixtral", "olmoe", "qwen2_moe"};

static void moe_lora_model(lc_model *m, lc_lora *lora, const char *fam, const lc_family_fixture *f) {
    lc_model fixture;
    ck_assert_msg(lc_model_load(&fixture, f->model_dir) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    if (!strcmp(fam, "qwen2_moe")) {
        lc_model_config cfg = fixture.cfg;
        cfg.moe_step = 1;
        memset(cfg.moe_dense, 0, sizeof cfg.moe_dense);
        ck_assert_int_gt(cfg.shared_ff, 0);
        lc_model_free(&fixture);
        ck_assert_msg(lc_model_init_random(m, &cfg, 5, LC_WTYPE_F32) == LC_STATUS_OK, "%s", lc_error_message());
    } else {
        *m = fixture;
    }
    random_lora(lora, m, false);
    // Experts 1 of layer 0's gate and up projections without an adapter:
    // their slices of the stacked adapter are zeros.
    for (int p = 0; p < 2; p++) lora->expert_refs[1 * LC_EXPERT_PROJ_COUNT + p].A = NULL;
    ck_assert(!lc_lora_get_expert(lora, 0, 1, LC_EXPERT_PROJ_GATE) && lc_lora_get_expert(lora, 0, 0, LC_EXPERT_PROJ_GATE));
}

// Sets every adapter's scale to sign x the adapter's own (lora.scale): 0
// for alpha 0, -1 for a negated alpha, 1 to restore.
static void set_all_scales(lc_lora *lora, float sign) {
    for (int i = 0; i < lora->n_layers * LC_LINEAR_KIND_COUNT; i++) lora->refs[i].scale = sign * lora->scale;
    for (int i = 0; i < lora->n_layers * lora->expert_slots; i++) lora->expert_refs[i].scale = sign * lora->scale;
}

static const lc_gguf_tensor *find_or_fail(const lc_gguf_file *f, const char *name) {
    const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", f->path, name);
    return t;
}

// Applies the llama.cpp adapter to the base file as llama.cpp does, from the
// files alone: each pair X.lora_a / X.lora_b passes llama-adapter.cpp's
// shape checks against the base's X (W.ne0 == a.ne0, W.ne1 == b.ne1,
// a.ne1 == b.ne0; stacked experts: ne2 of all three the expert count) and
// W + alpha / b.ne0 * B A, slice by slice as build_lora_mm_id multiplies
// them, is the merged file's X within rounding. Every tensor the adapter
// does not name is the base's, byte for byte. Returns the number of pairs.
static int check_llama_cpp_application(const char *adapter, const char *base, const char *merged) {
    lc_gguf_file a, b, mg;
    ck_assert_msg(lc_gguf_open(&a, adapter) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_gguf_open(&b, base) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_gguf_open(&mg, merged) == LC_STATUS_OK, "%s", lc_error_message());
    double alpha;
    ck_assert(lc_gguf_kv_float(lc_gguf_find_kv(&a, "adapter.lora.alpha"), 0, &alpha));
    ck_assert_int_eq((int)mg.n_tensors, (int)b.n_tensors);
    int pairs = 0;
    for (size_t i = 0; i < b.n_tensors; i++) {
        const lc_gguf_tensor *w = &b.tensors[i], *out = find_or_fail(&mg, w->name);
        char name[160];
        snprintf(name, sizeof name, "%s.lora_a", w->name);
        const lc_gguf_tensor *ta = lc_gguf_find_tensor(&a, name);
        if (!ta) {
            ck_assert_msg(out->type == w->type && out->nbytes == w->nbytes && !memcmp(out->data, w->data, w->nbytes),
                          "%s: not adapted, yet changed", w->name);
            continue;
        }
        snprintf(name, sizeof name, "%s.lora_b", w->name);
        const lc_gguf_tensor *tb = find_or_fail(&a, name);
        pairs++;
        ck_assert(ta->type == LC_GGML_TYPE_F32 && tb->type == LC_GGML_TYPE_F32);
        ck_assert_int_eq(ta->n_dims, w->n_dims);
        ck_assert_int_eq(tb->n_dims, w->n_dims);
        ck_assert_msg(w->ne[0] == ta->ne[0] && w->ne[1] == tb->ne[1] && ta->ne[1] == tb->ne[0], "%s: shapes", w->name);
        int64_t in = w->ne[0], rows = w->ne[1], r = tb->ne[0], E = w->n_dims == 3 ? w->ne[2] : 1;
        if (w->n_dims == 3) ck_assert(ta->ne[2] == E && tb->ne[2] == E);
        size_t n = (size_t)(in * rows * E);
        float *want = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        ck_assert(lc_gguf_tensor_to_f32(&b, w, want) == LC_STATUS_OK);
        ck_assert(lc_gguf_tensor_to_f32(&mg, out, got) == LC_STATUS_OK);
        const float *A = (const float *)ta->data, *B = (const float *)tb->data;
        double big = 0, worst = 0;
        for (int64_t x = 0; x < E; x++)
            for (int64_t o = 0; o < rows; o++)
                for (int64_t k = 0; k < in; k++) {
                    double acc = 0;
                    for (int64_t j = 0; j < r; j++) acc += (double)B[(x * rows + o) * r + j] * A[(x * r + j) * in + k];
                    size_t at = (size_t)((x * rows + o) * in + k);
                    double v = want[at] + alpha / (double)r * acc;
                    if (fabs(v) > big) big = fabs(v);
                    if (fabs(v - got[at]) > worst) worst = fabs(v - got[at]);
                }
        ck_assert_msg(worst <= 1e-5 * big, "%s: llama.cpp's application differs from the merge by %g (scale %g)",
                      w->name, worst, big);
        free(want);
        free(got);
    }
    ck_assert_int_eq(pairs * 2, (int)a.n_tensors); // no pair names a tensor the base lacks
    lc_gguf_close(&a);
    lc_gguf_close(&b);
    lc_gguf_close(&mg);
    return pairs;
}

// Experts' adapters for llama.cpp, from a Hugging Face folder and from a MoE
// GGUF base: the base exported without the adapter, loaded, and merged with
// it (f32, then q8_0) gives the logits of the folder with the adapter; the
// llama.cpp adapter applied to that base as llama.cpp applies it is the
// merged file; the adapter written from the folder and from the GGUF base are
// the same tensors.
START_TEST(test_moe_llama_cpp_adapter) {
    const char *fam = moe_lora_families[_i];
    lc_family_fixture f;
    lc_family_fixture_load(&f, fam, tmp);
    lc_model m, g, h;
    lc_lora lora;
    moe_lora_model(&m, &lora, fam, &f);
    char base[600], merged[600], adapter[600], adapter2[600];
    snprintf(base, sizeof base, "%s/%s-base.gguf", tmp, fam);
    snprintf(merged, sizeof merged, "%s/%s-merged.gguf", tmp, fam);
    snprintf(adapter, sizeof adapter, "%s/%s-adapter.gguf", tmp, fam);
    snprintf(adapter2, sizeof adapter2, "%s/%s-adapter2.gguf", tmp, fam);
    ck_assert_msg(lc_export_gguf(base, f.model_dir, &m, NULL, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    ck_assert_msg(lc_export_gguf_lora(adapter, f.model_dir, &m, &lora) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    ck_assert_msg(lc_model_load(&g, base) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_msg(lc_export_gguf(merged, base, &g, &lora, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    ck_assert_msg(lc_export_gguf_lora(adapter2, base, &g, &lora) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    // Pairs: the adapted attention and each layer's three expert stacks, plus the shared expert's three.
    int want = 0;
    for (int l = 0; l < m.cfg.n_layers; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) want += lc_lora_get(&lora, l, (lc_linear_kind)k) != NULL;
        want += 3 + (m.cfg.shared_ff ? 3 : 0);
    }
    ck_assert_int_eq(check_llama_cpp_application(adapter, base, merged), want);
    lc_gguf_file a1, a2;
    ck_assert(lc_gguf_open(&a1, adapter) == LC_STATUS_OK && lc_gguf_open(&a2, adapter2) == LC_STATUS_OK);
    ck_assert_int_eq((int)a1.n_tensors, (int)a2.n_tensors);
    for (size_t i = 0; i < a1.n_tensors; i++) {
        const lc_gguf_tensor *t = &a1.tensors[i], *u = find_or_fail(&a2, t->name);
        ck_assert_msg(t->nbytes == u->nbytes && !memcmp(t->data, u->data, t->nbytes), "%s: %s differs", fam, t->name);
    }
    // A stacked adapter with zeros where expert 1 has none.
    const lc_gguf_tensor *ga = find_or_fail(&a1, "blk.0.ffn_gate_exps.weight.lora_a");
    const float *slice = (const float *)ga->data + ga->ne[0] * ga->ne[1];
    for (int64_t i = 0; i < ga->ne[0] * ga->ne[1]; i++) ck_assert(slice[i] == 0.0f);
    lc_gguf_close(&a1);
    lc_gguf_close(&a2);
    // What llama.cpp's one alpha and stacked experts cannot hold is refused
    // in one line: experts of one stack with different ranks, a scale x rank
    // unlike the others', a scale of 0 (alpha 0 is "no alpha" to llama.cpp).
    lc_lora_ref *x0 = &lora.expert_refs[0 * LC_EXPERT_PROJ_COUNT + LC_EXPERT_PROJ_DOWN];
    lc_lora_ref saved = *x0;
    x0->r = saved.r - 1;
    x0->scale = saved.scale * (float)saved.r / (float)x0->r;
    ck_assert_int_eq(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora), LC_STATUS_USAGE);
    ck_assert_msg(strstr(lc_error_message(), "the experts' adapters of blk.0.ffn_down_exps have different ranks"),
                  "%s: %s", fam, lc_error_message());
    *x0 = saved;
    x0->scale = saved.scale * 2.0f;
    ck_assert_int_eq(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora), LC_STATUS_USAGE);
    ck_assert_msg(strstr(lc_error_message(), "scale x rank differs between tensors"), "%s: %s", fam,
                  lc_error_message());
    x0->scale = 0.0f;
    ck_assert_int_eq(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora), LC_STATUS_USAGE);
    ck_assert_msg(strstr(lc_error_message(), "scale is 0, which llama.cpp's adapter.lora.alpha cannot express"),
                  "%s: %s", fam, lc_error_message());
    x0->scale = 3e38f;
    ck_assert_int_eq(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora), LC_STATUS_USAGE);
    ck_assert_msg(strstr(lc_error_message(), "overflows adapter.lora.alpha's f32"), "%s: %s", fam,
                  lc_error_message());
    *x0 = saved;
    // Every scale 0 (lora.alpha 0) is refused the same way; every scale
    // negated (a negative alpha, which llama.cpp applies as given) is written.
    set_all_scales(&lora, 0.0f);
    ck_assert_int_eq(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora), LC_STATUS_USAGE);
    set_all_scales(&lora, -1.0f);
    ck_assert_msg(lc_export_gguf_lora(adapter2, f.model_dir, &m, &lora) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    lc_gguf_file neg;
    double nalpha;
    ck_assert(lc_gguf_open(&neg, adapter2) == LC_STATUS_OK);
    ck_assert(lc_gguf_kv_float(lc_gguf_find_kv(&neg, "adapter.lora.alpha"), 0, &nalpha));
    ck_assert_msg(fabs(nalpha + saved.scale * saved.r) <= 1e-5 * saved.scale * saved.r, "%s: alpha %g", fam, nalpha);
    lc_gguf_close(&neg);
    set_all_scales(&lora, 1.0f);
    // The merged file is the model with the adapter; so is the q8_0 merge, within Q8_0's rounding.
    if (!strcmp(fam, "mixtral")) m.cfg.sliding_window = 0; // llama.cpp's llama has none
    float *want_logits = logits_lora(&m, &lora, f.tokens, f.T);
    size_t nl = (size_t)f.T * m.cfg.vocab_size;
    for (int q = 0; q < 2; q++) {
        if (q) {
            ck_assert_msg(lc_export_gguf(merged, base, &g, &lora, NULL, (lc_dtype)LC_WTYPE_Q8_0) == LC_STATUS_OK,
                          "%s: %s", fam, lc_error_message());
        }
        ck_assert_msg(lc_model_load(&h, merged) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        float *got = logits_lora(&h, NULL, f.tokens, f.T);
        double scale, d = max_abs_diff(want_logits, got, nl, &scale);
        ck_assert_msg(d <= (q ? 2e-2 : 1e-4) * scale, "%s (%s): logits differ by %g (scale %g)", fam, q ? "q8_0" : "f32",
                      d, scale);
        if (q) { // the experts' stacks are Q8_0 now
            lc_gguf_file mf;
            ck_assert(lc_gguf_open(&mf, merged) == LC_STATUS_OK);
            for (int p = 0; p < 3; p++) { // F16 where a row is not whole Q8_0 blocks, as the converter falls back
                static const char *const stacks[3] = {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight",
                                                      "blk.0.ffn_down_exps.weight"};
                const lc_gguf_tensor *t = find_or_fail(&mf, stacks[p]);
                ck_assert_int_eq(t->type, lc_wtype_ggml(t->ne[0] % 32 ? LC_WTYPE_F16 : LC_WTYPE_Q8_0));
            }
            lc_gguf_close(&mf);
        }
        free(got);
        lc_model_free(&h);
    }
    free(want_logits);
    lc_model_free(&g);
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_family_fixture_free(&f);
}
END_TEST


int main(void) {
    Suite *s = suite_create("gguf_model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_dequant_matches_ggml, 0, N_QUANT);
    tcase_add_test(tc, test_f32_gguf_equals_hf_folder);
    tcase_add_test(tc, test_f16_rows_exact);
    tcase_add_loop_test(tc, test_quantized_logits_equal_dequantized_path, 0, N_QUANT);
    tcase_add_test(tc, test_panel_products);
    tcase_add_test(tc, test_stories260k_gguf_equals_hf);
    tcase_add_test(tc, test_lora_grads_quantized_base);
    tcase_add_test(tc, test_gguf_lora_round_trip);
    tcase_add_test(tc, test_merged_q8_0_from_gguf_base);
    tcase_add_test(tc, test_hf_export_from_gguf_base);
    tcase_add_loop_test(tc, test_gguf_tokenizer_equals_hf, 0, 2);
    int n_fam = 0;
    while (lc_family_names[n_fam]) n_fam++;
    tcase_add_loop_test(tc, test_family_gguf_round_trip, 0, n_fam + 2);
    tcase_add_test(tc, test_moe_gguf_base_checked);
    tcase_add_loop_test(tc, test_moe_llama_cpp_adapter, 0, 3);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
