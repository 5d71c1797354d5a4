// GGUF: the reader on llama.cpp's own stories260K.gguf, the export of the
// same model (from its Hugging Face folder) compared tensor by tensor and key
// by key with that file, F16 export, a LoRA merge round trip with the q/k
// row permutation derived independently, the tokenizer metadata against
// llama.cpp's vocab GGUFs, every model family's export (tests/fixtures/
// families: architecture, metadata, the exact tensor set, each tensor against
// the checkpoint with the PEFT adapter merged and the layout llama.cpp's
// converter gives it), configurations that are refused, and hostile files.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "export/export.h"
#include "export/gguf.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "family_fixture.h"
#include "test_util.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define REF_GGUF LC_SHARED_DIR "/models/stories260K.gguf"
#define VECTORS LC_SHARED_DIR "/tokenizers/llamacpp-vectors"

static char *tmp;
static char path_buf[4096];

static void setup(void) { tmp = lc_test_tmpdir(); }
static void teardown(void) {
    lc_test_rmdir(tmp);
    free(tmp);
}

static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", tmp, name);
    return path_buf;
}

static void load_model(lc_model *m, lc_tokenizer **tok) {
    ck_assert_msg(lc_model_load(m, MODEL_DIR) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_tokenizer_load(tok, MODEL_DIR "/tokenizer.json", MODEL_DIR "/tokenizer_config.json") ==
                      LC_STATUS_OK,
                  "%s", lc_error_message());
}

// Exports stories260K (lora may be NULL) to tmp/name and opens the result.
static void export_to(const char *name, const lc_model *m, const lc_lora *lora, const lc_tokenizer *tok,
                      lc_dtype dtype, lc_gguf_file *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    lc_status st = lc_export_gguf(path, MODEL_DIR, m, lora, tok, dtype);
    ck_assert_msg(st == LC_STATUS_OK, "export: %s", lc_error_message());
    char t[4200];
    snprintf(t, sizeof t, "%s.tmp", path);
    ck_assert_msg(access(t, F_OK) != 0, "%s left behind", t);
    ck_assert_msg(lc_gguf_open(out, path) == LC_STATUS_OK, "%s", lc_error_message());
}

static int64_t kv_int(const lc_gguf_file *f, const char *key) {
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    int64_t v = 0;
    ck_assert_msg(kv && kv->type != LC_GGUF_ARRAY && lc_gguf_kv_int(kv, 0, &v), "%s: no integer %s", f->path, key);
    return v;
}

static void assert_kv_str(const lc_gguf_file *f, const char *key, const char *want) {
    lc_gguf_str s;
    ck_assert_msg(lc_gguf_kv_str(lc_gguf_find_kv(f, key), 0, &s), "%s: no string %s", f->path, key);
    ck_assert_msg(s.len == strlen(want) && !memcmp(s.s, want, s.len), "%s: %s = \"%.*s\", want \"%s\"", f->path, key,
                  (int)s.len, s.s, want);
}

// Both files hold key with the same type and identical bytes/strings.
static void assert_kv_same(const lc_gguf_file *a, const lc_gguf_file *b, const char *key) {
    const lc_gguf_kv *x = lc_gguf_find_kv(a, key), *y = lc_gguf_find_kv(b, key);
    ck_assert_msg(x && y, "%s missing (%s: %d, %s: %d)", key, a->path, x != NULL, b->path, y != NULL);
    ck_assert_msg(x->type == y->type && x->item_type == y->item_type && x->n == y->n, "%s: type or count differs (%u/%u %llu vs %u/%u %llu)",
                  key, x->type, x->item_type, (unsigned long long)x->n, y->type, y->item_type, (unsigned long long)y->n);
    for (uint64_t i = 0; i < x->n; i++) {
        lc_gguf_str s, t;
        if (lc_gguf_kv_str(x, i, &s)) {
            ck_assert(lc_gguf_kv_str(y, i, &t));
            ck_assert_msg(s.len == t.len && !memcmp(s.s, t.s, s.len), "%s[%llu]: \"%.*s\" vs \"%.*s\"", key,
                          (unsigned long long)i, (int)s.len, s.s, (int)t.len, t.s);
        }
    }
    if (x->item_type != LC_GGUF_STRING) {
        size_t sz = x->item_type == LC_GGUF_F64 || x->item_type >= LC_GGUF_U64 ? 8
                    : x->item_type == LC_GGUF_U8 || x->item_type == LC_GGUF_I8 || x->item_type == LC_GGUF_BOOL ? 1
                    : x->item_type == LC_GGUF_U16 || x->item_type == LC_GGUF_I16                             ? 2
                                                                                                               : 4;
        for (uint64_t i = 0; i < x->n; i++) // bitwise: -0.0 and 0.0 scores must not be confused
            ck_assert_msg(!memcmp(x->data + i * sz, y->data + i * sz, sz), "%s[%llu] differs", key,
                          (unsigned long long)i);
    }
}

// ---------------------------------------------------------------- (a) reader

START_TEST(test_read_llamacpp_file) {
    lc_gguf_file f;
    ck_assert_msg(lc_gguf_open(&f, REF_GGUF) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(f.version, 3);
    ck_assert_uint_eq(f.n_kvs, 19);
    ck_assert_uint_eq(f.n_tensors, 48);
    ck_assert_uint_eq(f.alignment, 32);
    ck_assert_uint_eq(f.data_offset, 14176);
    assert_kv_str(&f, "general.architecture", "llama");
    assert_kv_str(&f, "tokenizer.ggml.model", "llama");
    ck_assert_int_eq(kv_int(&f, "llama.embedding_length"), 64);
    ck_assert_int_eq(kv_int(&f, "llama.block_count"), 5);
    ck_assert_int_eq(kv_int(&f, "llama.attention.head_count_kv"), 4);
    double eps;
    ck_assert(lc_gguf_kv_float(lc_gguf_find_kv(&f, "llama.attention.layer_norm_rms_epsilon"), 0, &eps));
    ck_assert_float_eq((float)eps, 1e-5f);
    const lc_gguf_kv *tokens = lc_gguf_find_kv(&f, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tokens);
    ck_assert_uint_eq(tokens->n, 512);
    lc_gguf_str s;
    ck_assert(lc_gguf_kv_str(tokens, 1, &s) && s.len == 3 && !memcmp(s.s, "<s>", 3));
    ck_assert(!lc_gguf_kv_str(tokens, 512, &s));
    int64_t tt;
    ck_assert(lc_gguf_kv_int(lc_gguf_find_kv(&f, "tokenizer.ggml.token_type"), 3, &tt) && tt == 6);

    const lc_gguf_tensor *e = lc_gguf_find_tensor(&f, "token_embd.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->type, LC_GGML_TYPE_F32);
    ck_assert_int_eq(e->n_dims, 2);
    ck_assert_int_eq(e->ne[0], 64);
    ck_assert_int_eq(e->ne[1], 512);
    ck_assert_uint_eq(e->nbytes, 512 * 64 * 4);
    ck_assert_ptr_eq(e->data, f.map.data + f.data_offset);
    const lc_gguf_tensor *k = lc_gguf_find_tensor(&f, "blk.0.attn_k.weight");
    ck_assert(k && k->n_dims == 2 && k->ne[0] == 64 && k->ne[1] == 32 && k->offset == 278784);
    const lc_gguf_tensor *n = lc_gguf_find_tensor(&f, "blk.4.ffn_norm.weight");
    ck_assert(n && n->n_dims == 1 && n->ne[0] == 64 && n->ne[1] == 1);
    ck_assert_ptr_null(lc_gguf_find_tensor(&f, "blk.5.ffn_norm.weight"));

    // Values agree with the Hugging Face copy where no permutation applies.
    lc_model m;
    ck_assert(lc_model_load(&m, MODEL_DIR) == LC_STATUS_OK);
    float *v = malloc(e->n_elements * sizeof *v);
    ck_assert(lc_gguf_tensor_to_f32(&f, e, v) == LC_STATUS_OK);
    ck_assert(!memcmp(v, m.embed.data, e->nbytes));
    ck_assert(lc_gguf_tensor_to_f32(&f, n, v) == LC_STATUS_OK);
    ck_assert(!memcmp(v, m.layers[4].mlp_norm.w, 64 * sizeof(float)));
    free(v);
    lc_model_free(&m);
    lc_gguf_close(&f);
}
END_TEST

// ---------------------------------------------------------------- (b) export = llama.cpp's file

START_TEST(test_export_f32_matches_llamacpp) {
    lc_model m;
    lc_tokenizer *tok;
    load_model(&m, &tok);
    lc_gguf_file ours, ref;
    export_to("f32.gguf", &m, NULL, tok, LC_DTYPE_F32, &ours);
    ck_assert(lc_gguf_open(&ref, REF_GGUF) == LC_STATUS_OK);

    // Tensors: every one of ours is in llama.cpp's file, same shape, type and bytes.
    ck_assert_uint_eq(ours.n_tensors, 47);
    for (size_t i = 0; i < ours.n_tensors; i++) {
        const lc_gguf_tensor *a = &ours.tensors[i], *b = lc_gguf_find_tensor(&ref, a->name);
        ck_assert_msg(b != NULL, "%s: not in llama.cpp's file", a->name);
        ck_assert_msg(a->type == b->type && a->n_dims == b->n_dims, "%s: type/dims differ", a->name);
        for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) ck_assert_msg(a->ne[d] == b->ne[d], "%s: ne[%d] differs", a->name, d);
        ck_assert_uint_eq(a->nbytes, b->nbytes);
        ck_assert_msg(!memcmp(a->data, b->data, a->nbytes), "%s: values differ from llama.cpp's", a->name);
        ck_assert_uint_eq(a->offset % 32, 0);
    }
    // ... and the reverse: the only tensor we leave out is output.weight, a
    // copy of token_embd there (tied embeddings: llama.cpp falls back to it).
    for (size_t i = 0; i < ref.n_tensors; i++) {
        const lc_gguf_tensor *b = &ref.tensors[i];
        if (!strcmp(b->name, "output.weight")) {
            ck_assert_ptr_null(lc_gguf_find_tensor(&ours, b->name));
            const lc_gguf_tensor *e = lc_gguf_find_tensor(&ours, "token_embd.weight");
            ck_assert(!memcmp(b->data, e->data, e->nbytes));
            continue;
        }
        ck_assert_msg(lc_gguf_find_tensor(&ours, b->name) != NULL, "%s: missing from the export", b->name);
    }
    // The permutation is not the identity here: the HF q rows differ from llama.cpp's.
    const lc_gguf_tensor *q = lc_gguf_find_tensor(&ours, "blk.0.attn_q.weight");
    ck_assert(memcmp(q->data, m.layers[0].lin[LC_LINEAR_KIND_Q].w.data, q->nbytes) != 0);

    // Metadata shared with llama.cpp's file: identical type and value.
    static const char *const same[] = {
        "general.architecture", "llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
        "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) assert_kv_same(&ours, &ref, same[i]);
    // Known differences (llama.cpp's file came from llama2.c's converter, not from this HF folder).
    assert_kv_str(&ref, "general.name", "llama");
    assert_kv_str(&ours, "general.name", "stories260K");
    ck_assert_int_eq(kv_int(&ref, "llama.context_length"), 2048);
    ck_assert_int_eq(kv_int(&ours, "llama.context_length"), 512); // config.json max_position_embeddings
    ck_assert_ptr_null(lc_gguf_find_kv(&ours, "tokenizer.ggml.seperator_token_id")); // -1 there: none
    ck_assert_ptr_null(lc_gguf_find_kv(&ours, "tokenizer.ggml.padding_token_id"));   // -1 there: none
    ck_assert_int_eq(kv_int(&ref, "tokenizer.ggml.padding_token_id"), 0xFFFFFFFFll);
    // Keys convert_hf_to_gguf.py adds that llama.cpp's file lacks (its defaults agree).
    double base;
    ck_assert(lc_gguf_kv_float(lc_gguf_find_kv(&ours, "llama.rope.freq_base"), 0, &base) && base == 10000.0);
    ck_assert_int_eq(kv_int(&ours, "general.file_type"), 0);
    ck_assert_int_eq(kv_int(&ours, "llama.vocab_size"), 512);
    ck_assert_int_eq(kv_int(&ours, "tokenizer.ggml.add_bos_token"), 1);
    ck_assert_int_eq(kv_int(&ours, "tokenizer.ggml.add_eos_token"), 0);
    ck_assert_int_eq(kv_int(&ours, "general.quantization_version"), 2);
    assert_kv_str(&ours, "general.type", "model");
    assert_kv_str(&ours, "tokenizer.ggml.pre", "default");
    ck_assert_ptr_null(lc_gguf_find_kv(&ours, "tokenizer.ggml.merges")); // SPM vocabularies carry scores instead
    ck_assert_ptr_null(lc_gguf_find_kv(&ours, "llama.attention.key_length")); // head_dim == hidden / heads
    // Every key of ours is accounted for above.
    ck_assert_uint_eq(ours.n_kvs, sizeof same / sizeof same[0] + 10);

    lc_gguf_close(&ours);
    lc_gguf_close(&ref);
    lc_tokenizer_free(tok);
    lc_model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- (c) F16

START_TEST(test_export_f16) {
    lc_model m;
    lc_tokenizer *tok;
    load_model(&m, &tok);
    lc_gguf_file a, b;
    export_to("f32.gguf", &m, NULL, tok, LC_DTYPE_F32, &a);
    export_to("f16.gguf", &m, NULL, tok, LC_DTYPE_F16, &b);
    ck_assert_int_eq(kv_int(&b, "general.file_type"), 1);
    ck_assert_uint_eq(a.n_tensors, b.n_tensors);
    int n_half = 0;
    for (size_t i = 0; i < a.n_tensors; i++) {
        const lc_gguf_tensor *x = &a.tensors[i], *y = lc_gguf_find_tensor(&b, x->name);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(x->n_dims, y->n_dims);
        for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) ck_assert_int_eq(x->ne[d], y->ne[d]);
        if (x->n_dims == 1) { // norms stay F32
            ck_assert_msg(y->type == LC_GGML_TYPE_F32, "%s should stay F32", y->name);
            ck_assert(!memcmp(x->data, y->data, x->nbytes));
            continue;
        }
        ck_assert_msg(y->type == LC_GGML_TYPE_F16, "%s should be F16", y->name);
        ck_assert_uint_eq(y->nbytes, x->nbytes / 2);
        n_half++;
        for (int64_t j = 0; j < x->n_elements; j++) {
            float f;
            uint16_t h;
            memcpy(&f, x->data + 4 * j, 4);
            memcpy(&h, y->data + 2 * j, 2);
            ck_assert_msg(h == lc_f32_to_f16(f), "%s[%lld]: 0x%04x, want 0x%04x", y->name, (long long)j, h,
                          lc_f32_to_f16(f));
        }
    }
    ck_assert_int_eq(n_half, 1 + 5 * 7);
    // Metadata is the same apart from the file type.
    for (size_t i = 0; i < a.n_kvs; i++)
        if (strcmp(a.kvs[i].key, "general.file_type")) assert_kv_same(&a, &b, a.kvs[i].key);
    lc_gguf_close(&a);
    lc_gguf_close(&b);
    lc_tokenizer_free(tok);
    lc_model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- (d) LoRA merge round trip

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) { // [-1, 1)
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

// The GGUF row of Hugging Face row r of a q/k matrix with heads of D rows,
// derived from the two layouts: HF keeps the rotated pair (i, i + D/2) of a
// head; llama.cpp rotates adjacent rows (2i, 2i + 1).
static int gguf_row(int r, int D) {
    int h = r / D, i = r % D;
    return i < D / 2 ? h * D + 2 * i : h * D + 2 * (i - D / 2) + 1;
}

START_TEST(test_lora_merge_round_trip) {
    lc_model m;
    lc_tokenizer *tok;
    load_model(&m, &tok);
    lc_lora lora;
    lc_lora_config cfg = {.r = 4, .alpha = 8.0f, .targets = LC_LINEAR_KIND_ALL};
    ck_assert_msg(lc_lora_init(&lora, &m, &cfg, 1234, false) == LC_STATUS_OK, "%s", lc_error_message());
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k <= LC_LINEAR_KIND_DOWN; k++) {
            const lc_lora_ref *ref = lc_lora_get(&lora, l, (lc_linear_kind)k);
            ck_assert_ptr_nonnull(ref);
            for (int i = 0; i < m.layers[l].lin[k].out * ref->r; i++) ref->B[i] = 0.05f * urand();
        }
    lc_gguf_file f;
    export_to("lora.gguf", &m, &lora, tok, LC_DTYPE_F32, &f);
    const int D = m.cfg.head_dim;
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k <= LC_LINEAR_KIND_DOWN; k++) {
            static const char *const names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            const lc_gguf_tensor *t = lc_gguf_find_tensor(&f, name);
            const lc_linear *lin = &m.layers[l].lin[k];
            const lc_lora_ref *ref = lc_lora_get(&lora, l, (lc_linear_kind)k);
            ck_assert_ptr_nonnull(t);
            ck_assert(t->ne[0] == lin->in && t->ne[1] == lin->out);
            const float *g = (const float *)t->data;
            double max_delta = 0;
            for (int r = 0; r < lin->out; r++) {
                int gr = k <= LC_LINEAR_KIND_K ? gguf_row(r, D) : r;
                for (int c = 0; c < lin->in; c++) {
                    double want = ((const float *)lin->w.data)[(size_t)r * lin->in + c];
                    double delta = 0;
                    for (int j = 0; j < ref->r; j++) delta += (double)ref->B[r * ref->r + j] * ref->A[(size_t)j * lin->in + c];
                    want += ref->scale * delta;
                    if (fabs(delta) > max_delta) max_delta = fabs(delta);
                    float got;
                    memcpy(&got, g + (size_t)gr * lin->in + c, 4);
                    ck_assert_msg(fabs(got - want) <= 1e-6 + 1e-5 * fabs(want), "%s[%d][%d]: %g, want %g", name, gr,
                                  c, got, want);
                }
            }
            ck_assert_msg(max_delta > 1e-4, "%s: the adapter changed nothing", name);
        }
    lc_gguf_close(&f);
    lc_lora_free(&lora);
    lc_tokenizer_free(tok);
    lc_model_free(&m);
}
END_TEST

// The permutation keeps attention scores: rotate-half rotary on the HF rows
// equals llama.cpp's adjacent-pair rotary on the exported rows.
START_TEST(test_permutation_preserves_rope) {
    lc_model m;
    lc_tokenizer *tok;
    load_model(&m, &tok);
    lc_gguf_file f;
    export_to("base.gguf", &m, NULL, tok, LC_DTYPE_F32, &f);
    const int C = m.cfg.hidden_size, D = m.cfg.head_dim, H = m.cfg.n_heads;
    const lc_gguf_tensor *t = lc_gguf_find_tensor(&f, "blk.2.attn_q.weight");
    const float *wg = (const float *)t->data, *wh = m.layers[2].lin[LC_LINEAR_KIND_Q].w.data;
    float x[64], qh[64], qg[64], rh[64], rg[64];
    ck_assert_int_le(C, 64);
    for (int i = 0; i < C; i++) x[i] = urand();
    for (int r = 0; r < H * D; r++) {
        qh[r] = qg[r] = 0;
        for (int c = 0; c < C; c++) {
            qh[r] += wh[r * C + c] * x[c];
            qg[r] += wg[r * C + c] * x[c];
        }
    }
    const int pos = 7;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < D / 2; i++) {
            double th = pos * pow(m.cfg.rope_theta, -2.0 * i / D);
            float cs = (float)cos(th), sn = (float)sin(th);
            const float *a = qh + h * D, *b = qg + h * D;
            rh[h * D + i] = a[i] * cs - a[i + D / 2] * sn; // HF rotate_half
            rh[h * D + i + D / 2] = a[i + D / 2] * cs + a[i] * sn;
            rg[h * D + 2 * i] = b[2 * i] * cs - b[2 * i + 1] * sn; // llama.cpp rope (normal mode)
            rg[h * D + 2 * i + 1] = b[2 * i + 1] * cs + b[2 * i] * sn;
        }
    // The rotated HF head equals the rotated llama.cpp head, row for row through the permutation.
    for (int r = 0; r < H * D; r++)
        ck_assert_msg(fabsf(rh[r] - rg[gguf_row(r, D)]) < 1e-5f, "row %d: %g vs %g", r, rh[r], rg[gguf_row(r, D)]);
    lc_gguf_close(&f);
    lc_tokenizer_free(tok);
    lc_model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- other configurations

// An HF folder in tmp/name: stories260K's weights and tokenizer under the
// given config.json text, plus random biases for the kinds in bias_mask.
static void make_variant(const char *name, const char *config, unsigned bias_mask) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    lc_test_write(dir, "config.json", config, strlen(config));
    lc_test_copy(MODEL_DIR "/tokenizer.json", dir, "tokenizer.json");
    lc_test_copy(MODEL_DIR "/tokenizer_config.json", dir, "tokenizer_config.json");
    lc_st_set src = {0};
    ck_assert(lc_st_set_open_dir(&src, MODEL_DIR) == LC_STATUS_OK);
    int n_max = src.n_tensors + 5 * LC_LINEAR_KIND_COUNT;
    lc_st_entry *e = calloc(n_max, sizeof *e);
    char (*names)[96] = calloc(n_max, sizeof *names);
    float *bias = calloc((size_t)n_max * 256, sizeof *bias);
    int n = 0;
    for (int i = 0; i < src.n_tensors; i++) {
        const lc_st_tensor *t = &src.tensors[i];
        e[n] = (lc_st_entry){t->name, t->dtype, t->n_dims, {0}, t->data, t->nbytes};
        memcpy(e[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    static const int outs[LC_LINEAR_KIND_COUNT] = {64, 32, 32, 64, 172, 172, 64};
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            if (!(bias_mask >> k & 1)) continue;
            float *b = bias + (size_t)n * 256;
            for (int i = 0; i < outs[k]; i++) b[i] = urand();
            snprintf(names[n], sizeof names[n], "model.layers.%d.%s.%s.bias", l,
                     lc_linear_kind_parent((lc_linear_kind)k), lc_linear_kind_name((lc_linear_kind)k));
            e[n] = (lc_st_entry){names[n], LC_DTYPE_F32, 1, {outs[k]}, b, (size_t)outs[k] * sizeof(float)};
            n++;
        }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(lc_st_write(path, e, n, NULL, 0) == LC_STATUS_OK, "%s", lc_error_message());
    lc_st_set_free(&src);
    free(e);
    free(names);
    free(bias);
}

static void export_variant(const char *name, lc_model *m, lc_gguf_file *f) {
    char dir[4096], out[4200];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, name);
    ck_assert_msg(lc_model_load(m, dir) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_export_gguf(out, dir, m, NULL, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_msg(lc_gguf_open(f, out) == LC_STATUS_OK, "%s", lc_error_message());
}

#define VARIANT_CONFIG(type, extra)                                                                                  \
    "{\"model_type\": \"" type "\", \"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 5,"     \
    "\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"max_position_embeddings\": 512,"                     \
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, \"vocab_size\": 512,"        \
    "\"bos_token_id\": 1, \"eos_token_id\": 2" extra "}"

static const float *tensor_f32(const lc_gguf_file *f, const char *name, int64_t n_elements) {
    const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", f->path, name);
    ck_assert_msg(t->type == LC_GGML_TYPE_F32 && t->n_elements == n_elements, "%s: %s has type %u, %lld elements",
                  f->path, name, t->type, (long long)t->n_elements);
    return (const float *)t->data;
}

START_TEST(test_export_qwen2_keeps_rows_and_biases) {
    // Qwen2 runs llama.cpp's NeoX (rotate-half) rope: no permutation, and its q/k/v biases.
    make_variant("qwen2", VARIANT_CONFIG("qwen2", ""), 7u);
    lc_model m;
    lc_gguf_file f;
    export_variant("qwen2", &m, &f);
    assert_kv_str(&f, "general.architecture", "qwen2");
    ck_assert_int_eq(kv_int(&f, "qwen2.block_count"), 5);
    ck_assert_int_eq(kv_int(&f, "qwen2.attention.head_count_kv"), 4);
    ck_assert_ptr_null(lc_gguf_find_kv(&f, "llama.block_count"));
    for (int l = 0; l < 5; l++)
        for (int k = 0; k <= LC_LINEAR_KIND_DOWN; k++) {
            static const char *const names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
            const lc_linear *lin = &m.layers[l].lin[k];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            ck_assert(!memcmp(tensor_f32(&f, name, (int64_t)lin->out * lin->in), lin->w.data, (size_t)lin->out * lin->in * 4));
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, names[k]);
            if (k > LC_LINEAR_KIND_V) {
                ck_assert_ptr_null(lc_gguf_find_tensor(&f, name));
                continue;
            }
            ck_assert_ptr_nonnull(lin->bias);
            ck_assert(!memcmp(tensor_f32(&f, name, lin->out), lin->bias, (size_t)lin->out * 4));
        }
    ck_assert_uint_eq(f.n_tensors, 2 + 5 * 12);
    lc_gguf_close(&f);
    lc_model_free(&m);
}
END_TEST

START_TEST(test_export_llama_bias_llama3_rope_and_mistral) {
    // Llama with attention_bias: q/k biases permuted like their rows, o bias too, v/o kept.
    make_variant("llama3", VARIANT_CONFIG("llama", ", \"attention_bias\": true, \"rope_scaling\": {\"rope_type\": \"llama3\","
                           " \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                           " \"original_max_position_embeddings\": 1024}"), 15u);
    lc_model m;
    lc_gguf_file f;
    export_variant("llama3", &m, &f);
    assert_kv_str(&f, "general.architecture", "llama");
    for (int l = 0; l < 5; l++)
        for (int k = 0; k <= LC_LINEAR_KIND_O; k++) {
            static const char *const names[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
            const lc_linear *lin = &m.layers[l].lin[k];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, names[k]);
            const float *b = tensor_f32(&f, name, lin->out);
            for (int r = 0; r < lin->out; r++)
                ck_assert_msg(b[k <= LC_LINEAR_KIND_K ? gguf_row(r, 8) : r] == lin->bias[r], "%s[%d]", name, r);
        }
    // rope_freqs: llama.cpp divides each frequency by its factor; our own rope agrees.
    const float *rf = tensor_f32(&f, "rope_freqs.weight", 4);
    float inv[4];
    lc_config_rope_inv_freq(&m.cfg, inv);
    int n_scaled = 0, n_smooth = 0;
    for (int i = 0; i < 4; i++) {
        float base = 1.0f / powf(10000.0f, (float)(2 * i) / 8.0f);
        ck_assert_msg(fabsf(base / rf[i] - inv[i]) <= 1e-5f * inv[i], "freq %d: %g / %g vs %g", i, base, rf[i], inv[i]);
        n_scaled += rf[i] == 8.0f;
        n_smooth += rf[i] > 1.0f && rf[i] < 8.0f;
    }
    ck_assert(n_scaled == 1 && n_smooth == 1 && rf[0] == 1.0f);
    lc_gguf_close(&f);
    lc_model_free(&m);

    // Mistral is the llama architecture to llama.cpp, and its q/k rows are permuted alike.
    make_variant("mistral", VARIANT_CONFIG("mistral", ", \"sliding_window\": 4096"), 0u);
    export_variant("mistral", &m, &f);
    assert_kv_str(&f, "general.architecture", "llama");
    lc_gguf_file ref;
    ck_assert(lc_gguf_open(&ref, REF_GGUF) == LC_STATUS_OK);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_gguf_tensor *a = &f.tensors[i], *b = lc_gguf_find_tensor(&ref, a->name);
        ck_assert_msg(b && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "%s differs", a->name);
    }
    lc_gguf_close(&ref);
    lc_gguf_close(&f);
    lc_model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- tokenizer vs llama.cpp's vocab files

static void write_vocab(const char *path, const lc_tokenizer *tok, const char *json, int32_t n_vocab, int32_t bos,
                        int32_t eos) {
    lc_gguf_writer *w;
    ck_assert(lc_gguf_writer_new(&w, path) == LC_STATUS_OK);
    ck_assert_msg(lc_gguf_add_vocab(w, tok, json, n_vocab, bos, eos, -1) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(lc_gguf_writer_finish(w) == LC_STATUS_OK);
    lc_gguf_writer_free(w);
}

START_TEST(test_vocab_gpt2_matches_llamacpp) {
    const char *json = LC_SHARED_DIR "/tokenizers/gpt2/tokenizer.json";
    lc_tokenizer *tok;
    ck_assert_msg(lc_tokenizer_load(&tok, json, NULL) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(lc_tokenizer_get_style(tok), LC_TOKENIZER_BYTE_LEVEL);
    write_vocab(tmp_path("gpt2.gguf"), tok, json, 50257, 50256, 50256);
    lc_gguf_file a, b;
    ck_assert(lc_gguf_open(&a, tmp_path("gpt2.gguf")) == LC_STATUS_OK);
    ck_assert(lc_gguf_open(&b, VECTORS "/ggml-vocab-gpt-2.gguf") == LC_STATUS_OK);
    static const char *const same[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                                       "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                                       "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) assert_kv_same(&a, &b, same[i]);
    ck_assert_ptr_null(lc_gguf_find_kv(&a, "tokenizer.ggml.scores"));
    lc_gguf_close(&a);
    lc_gguf_close(&b);
    lc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_vocab_llama2_matches_sentencepiece_scores) {
    const char *json = LC_SHARED_DIR "/tokenizers/llama2/tokenizer.json";
    lc_tokenizer *tok;
    ck_assert_msg(lc_tokenizer_load(&tok, json, LC_SHARED_DIR "/tokenizers/llama2/tokenizer_config.json") ==
                      LC_STATUS_OK,
                  "%s", lc_error_message());
    ck_assert_int_eq(lc_tokenizer_get_style(tok), LC_TOKENIZER_SENTENCEPIECE);
    write_vocab(tmp_path("spm.gguf"), tok, json, 32000, -1, -1);
    lc_gguf_file a, b;
    ck_assert(lc_gguf_open(&a, tmp_path("spm.gguf")) == LC_STATUS_OK);
    ck_assert(lc_gguf_open(&b, VECTORS "/ggml-vocab-llama-spm.gguf") == LC_STATUS_OK);
    static const char *const same[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.token_type",
                                       "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                       "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
                                       "tokenizer.ggml.add_eos_token"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) assert_kv_same(&a, &b, same[i]);
    // Tokens: the same, except four pieces this tokenizer.json holds with a
    // plain space where Meta's SentencePiece model has U+00A0.
    const lc_gguf_kv *ta = lc_gguf_find_kv(&a, "tokenizer.ggml.tokens"), *tb = lc_gguf_find_kv(&b, "tokenizer.ggml.tokens");
    ck_assert(ta->n == 32000 && tb->n == 32000);
    int n_diff = 0;
    for (uint64_t i = 0; i < 32000; i++) {
        lc_gguf_str x, y;
        ck_assert(lc_gguf_kv_str(ta, i, &x) && lc_gguf_kv_str(tb, i, &y));
        n_diff += x.len != y.len || memcmp(x.s, y.s, x.len);
    }
    ck_assert_int_eq(n_diff, 4);
    // Scores: Meta's are -(position); ours come from the merge ranks. Every
    // pair of normal pieces is ordered alike, except 16 runs of '▁' Meta
    // scores -1e9 (user-defined there, merged last here).
    const lc_gguf_kv *sa = lc_gguf_find_kv(&a, "tokenizer.ggml.scores"), *sb = lc_gguf_find_kv(&b, "tokenizer.ggml.scores");
    const lc_gguf_kv *types = lc_gguf_find_kv(&b, "tokenizer.ggml.token_type");
    double prev_a = INFINITY, prev_b = INFINITY;
    int n_checked = 0, n_low = 0;
    for (uint64_t i = 0; i < 32000; i++) { // Meta's scores fall with the id among normal pieces
        int64_t t;
        double x, y;
        ck_assert(lc_gguf_kv_int(types, i, &t) && lc_gguf_kv_float(sa, i, &x) && lc_gguf_kv_float(sb, i, &y));
        if (t != 1) {
            ck_assert_msg(x == 0 && y == 0, "token %llu: special/byte score %g vs %g", (unsigned long long)i, x, y);
            continue;
        }
        if (y < -1e8) {
            n_low++;
            continue;
        }
        ck_assert_msg(y < prev_b && x < prev_a, "token %llu: scores out of order (%g after %g; %g after %g)",
                      (unsigned long long)i, x, prev_a, y, prev_b);
        prev_a = x;
        prev_b = y;
        n_checked++;
    }
    ck_assert_int_eq(n_low, 16);
    ck_assert_int_eq(n_checked, 31741 - 16);
    lc_gguf_close(&a);
    lc_gguf_close(&b);
    lc_tokenizer_free(tok);
}
END_TEST

// ---------------------------------------------------------------- every family (tests/fixtures/families)

// How a GGUF tensor is made from the checkpoint, written from llama.cpp's
// converter (convert_hf_to_gguf.py) independently of the exporter.
enum xform {
    X_COPY,
    X_PLUS1,      // Gemma's norms: 1 + w
    X_T,          // GPT-2's Conv1D weights stored [in, out]
    X_PERM_Q,     // LlamaModel.permute(w, n_head, n_head)
    X_PERM_K,     // LlamaModel.permute(w, n_head, n_kv)
    X_BLOOM_QKV,  // w.reshape(n_head, 3, hd, -1): cat(w[:, 0], w[:, 1], w[:, 2])
    X_FALCON_QKV, // w.view(nkv, n_head/nkv + 2, hd, -1): cat(q = [:, :-2], k = [:, -2], v = [:, -1])
};

typedef struct tensor_map {
    const char *gguf; // "%d" is the block
    const char *hf;   // checkpoint tensor
    enum xform x;
    const char *lora; // PEFT module path of the adapter merged into it, or NULL
} tensor_map;

typedef struct key_expect {
    const char *key;
    lc_gguf_vtype type; // LC_GGUF_VTYPE_COUNT: must be absent
    double num;
    const char *str;
} key_expect;

#define KU(k, v) {k, LC_GGUF_U32, v, NULL}
#define KF(k, v) {k, LC_GGUF_F32, v, NULL}
#define KS(k, v) {k, LC_GGUF_STRING, 0, v}
#define KNONE(k) {k, LC_GGUF_VTYPE_COUNT, 0, NULL}

typedef struct family_expect {
    const char *family, *arch;
    int n_head, n_kv, head_dim;
    key_expect keys[24];
    tensor_map tensors[24];
} family_expect;

#define LLAMA_NAMES(prefix)                                                                                          \
    {"token_embd.weight", prefix "embed_tokens.weight", X_COPY, NULL},                                             \
        {"blk.%d.attn_v.weight", prefix "layers.%d.self_attn.v_proj.weight", X_COPY,                               \
         "model.layers.%d.self_attn.v_proj"},                                                                      \
        {"blk.%d.attn_output.weight", prefix "layers.%d.self_attn.o_proj.weight", X_COPY,                          \
         "model.layers.%d.self_attn.o_proj"},                                                                      \
        {"blk.%d.ffn_gate.weight", prefix "layers.%d.mlp.gate_proj.weight", X_COPY,                                \
         "model.layers.%d.mlp.gate_proj"},                                                                         \
        {"blk.%d.ffn_up.weight", prefix "layers.%d.mlp.up_proj.weight", X_COPY, "model.layers.%d.mlp.up_proj"},   \
        {"blk.%d.ffn_down.weight", prefix "layers.%d.mlp.down_proj.weight", X_COPY, "model.layers.%d.mlp.down_proj"}

#define FALCON_NAMES                                                                                                 \
    {"token_embd.weight", "transformer.word_embeddings.weight", X_COPY, NULL},                                     \
        {"output_norm.weight", "transformer.ln_f.weight", X_COPY, NULL},                                           \
        {"output_norm.bias", "transformer.ln_f.bias", X_COPY, NULL}, {"output.weight", "lm_head.weight", X_COPY, NULL}, \
        {"blk.%d.attn_qkv.weight", "transformer.h.%d.self_attention.query_key_value.weight", X_FALCON_QKV,         \
         "transformer.h.%d.self_attention.query_key_value"},                                                       \
        {"blk.%d.attn_output.weight", "transformer.h.%d.self_attention.dense.weight", X_COPY,                      \
         "transformer.h.%d.self_attention.dense"},                                                                 \
        {"blk.%d.ffn_up.weight", "transformer.h.%d.mlp.dense_h_to_4h.weight", X_COPY,                              \
         "transformer.h.%d.mlp.dense_h_to_4h"},                                                                    \
        {"blk.%d.ffn_down.weight", "transformer.h.%d.mlp.dense_4h_to_h.weight", X_COPY,                            \
         "transformer.h.%d.mlp.dense_4h_to_h"}

// In lc_family_names order; values from the fixtures' config.json.
static const family_expect family_expects[] = {
    {"mistral", "llama", 4, 2, 8,
     {KU("llama.block_count", 2), KU("llama.context_length", 128), KU("llama.embedding_length", 32),
      KU("llama.feed_forward_length", 96), KU("llama.attention.head_count", 4), KU("llama.attention.head_count_kv", 2),
      KU("llama.rope.dimension_count", 8), KF("llama.rope.freq_base", 10000), KU("llama.vocab_size", 32000),
      KF("llama.attention.layer_norm_rms_epsilon", 1e-5), KNONE("llama.attention.key_length"),
      KS("tokenizer.ggml.model", "llama"), KS("tokenizer.ggml.pre", "default"), KU("tokenizer.ggml.bos_token_id", 1),
      KU("tokenizer.ggml.eos_token_id", 2), KNONE("tokenizer.ggml.add_space_prefix")},
     {LLAMA_NAMES("model."),
      {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", X_PERM_Q, "model.layers.%d.self_attn.q_proj"},
      {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", X_PERM_K, "model.layers.%d.self_attn.k_proj"},
      {"output_norm.weight", "model.norm.weight", X_COPY, NULL},
      {"output.weight", "lm_head.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", X_COPY, NULL},
      {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", X_COPY, NULL}}},
    {"qwen2", "qwen2", 4, 2, 8,
     {KU("qwen2.block_count", 2), KU("qwen2.context_length", 128), KU("qwen2.embedding_length", 32),
      KU("qwen2.feed_forward_length", 96), KU("qwen2.attention.head_count", 4), KU("qwen2.attention.head_count_kv", 2),
      KU("qwen2.rope.dimension_count", 8), KF("qwen2.rope.freq_base", 1e6),
      KF("qwen2.attention.layer_norm_rms_epsilon", 1e-6), KS("tokenizer.ggml.model", "gpt2"),
      KS("tokenizer.ggml.pre", "gpt-2"), KU("tokenizer.ggml.eos_token_id", 50256)},
     {LLAMA_NAMES("model."),
      {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", X_COPY, "model.layers.%d.self_attn.q_proj"},
      {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", X_COPY, "model.layers.%d.self_attn.k_proj"},
      {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", X_COPY, NULL},
      {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", X_COPY, NULL},
      {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", X_COPY, NULL},
      {"output_norm.weight", "model.norm.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", X_COPY, NULL},
      {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", X_COPY, NULL}}},
    {"gemma", "gemma", 4, 1, 16,
     {KU("gemma.block_count", 2), KU("gemma.context_length", 128), KU("gemma.embedding_length", 32),
      KU("gemma.feed_forward_length", 64), KU("gemma.attention.head_count", 4), KU("gemma.attention.head_count_kv", 1),
      KU("gemma.attention.key_length", 16), KU("gemma.attention.value_length", 16),
      KF("gemma.attention.layer_norm_rms_epsilon", 1e-6), KU("gemma.rope.dimension_count", 16),
      KS("tokenizer.ggml.model", "llama"), KS("tokenizer.ggml.pre", "default")},
     {LLAMA_NAMES("model."),
      {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", X_COPY, "model.layers.%d.self_attn.q_proj"},
      {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", X_COPY, "model.layers.%d.self_attn.k_proj"},
      {"output_norm.weight", "model.norm.weight", X_PLUS1, NULL},
      {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", X_PLUS1, NULL},
      {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", X_PLUS1, NULL}}},
    {"gemma2", "gemma2", 4, 2, 16,
     {KU("gemma2.block_count", 2), KU("gemma2.context_length", 128), KU("gemma2.embedding_length", 32),
      KU("gemma2.feed_forward_length", 64), KU("gemma2.attention.head_count", 4),
      KU("gemma2.attention.head_count_kv", 2), KU("gemma2.attention.key_length", 16),
      KU("gemma2.attention.value_length", 16), KF("gemma2.attention.layer_norm_rms_epsilon", 1e-6),
      KF("gemma2.attn_logit_softcapping", 3.0), KF("gemma2.final_logit_softcapping", 2.0),
      KU("gemma2.attention.sliding_window", 4), KS("tokenizer.ggml.model", "llama")},
     {LLAMA_NAMES("model."),
      {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", X_COPY, "model.layers.%d.self_attn.q_proj"},
      {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", X_COPY, "model.layers.%d.self_attn.k_proj"},
      {"output_norm.weight", "model.norm.weight", X_PLUS1, NULL},
      {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", X_PLUS1, NULL},
      {"blk.%d.post_attention_norm.weight", "model.layers.%d.post_attention_layernorm.weight", X_PLUS1, NULL},
      {"blk.%d.ffn_norm.weight", "model.layers.%d.pre_feedforward_layernorm.weight", X_PLUS1, NULL},
      {"blk.%d.post_ffw_norm.weight", "model.layers.%d.post_feedforward_layernorm.weight", X_PLUS1, NULL}}},
    {"phi3", "phi3", 4, 2, 8,
     {KU("phi3.block_count", 2), KU("phi3.context_length", 4096), KU("phi3.embedding_length", 32),
      KU("phi3.feed_forward_length", 64), KU("phi3.attention.head_count", 4), KU("phi3.attention.head_count_kv", 2),
      KU("phi3.rope.dimension_count", 8), KF("phi3.rope.freq_base", 10000),
      KF("phi3.attention.layer_norm_rms_epsilon", 1e-5), KU("phi3.attention.sliding_window", 2047),
      KU("phi3.rope.scaling.original_context_length", 4096), KNONE("phi3.rope.scaling.type"),
      KS("tokenizer.ggml.model", "llama"), KS("tokenizer.ggml.pre", "default"), KU("tokenizer.ggml.eos_token_id", 32000)},
     {{"token_embd.weight", "model.embed_tokens.weight", X_COPY, NULL},
      {"output_norm.weight", "model.norm.weight", X_COPY, NULL},
      {"output.weight", "lm_head.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", X_COPY, NULL},
      {"blk.%d.attn_qkv.weight", "model.layers.%d.self_attn.qkv_proj.weight", X_COPY, "model.layers.%d.self_attn.qkv_proj"},
      {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", X_COPY, "model.layers.%d.self_attn.o_proj"},
      {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", X_COPY, NULL},
      {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.gate_up_proj.weight", X_COPY, "model.layers.%d.mlp.gate_up_proj"},
      {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", X_COPY, "model.layers.%d.mlp.down_proj"}}},
    {"gpt2", "gpt2", 4, 4, 12,
     {KU("gpt2.block_count", 2), KU("gpt2.context_length", 32), KU("gpt2.embedding_length", 48),
      KU("gpt2.feed_forward_length", 128), KU("gpt2.attention.head_count", 4), KU("gpt2.attention.head_count_kv", 4),
      KF("gpt2.attention.layer_norm_epsilon", 1e-5), KNONE("gpt2.attention.layer_norm_rms_epsilon"),
      KNONE("gpt2.rope.dimension_count"), KNONE("gpt2.rope.freq_base"), KS("tokenizer.ggml.model", "gpt2"),
      KS("tokenizer.ggml.pre", "gpt-2"), KU("tokenizer.ggml.bos_token_id", 50256),
      KU("tokenizer.ggml.eos_token_id", 50256)},
     {{"token_embd.weight", "wte.weight", X_COPY, NULL},
      {"position_embd.weight", "wpe.weight", X_COPY, NULL},
      {"output_norm.weight", "ln_f.weight", X_COPY, NULL},
      {"output_norm.bias", "ln_f.bias", X_COPY, NULL},
      {"output.weight", "wte.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.weight", "h.%d.ln_1.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.bias", "h.%d.ln_1.bias", X_COPY, NULL},
      {"blk.%d.attn_qkv.weight", "h.%d.attn.c_attn.weight", X_T, "transformer.h.%d.attn.c_attn"},
      {"blk.%d.attn_qkv.bias", "h.%d.attn.c_attn.bias", X_COPY, NULL},
      {"blk.%d.attn_output.weight", "h.%d.attn.c_proj.weight", X_T, "transformer.h.%d.attn.c_proj"},
      {"blk.%d.attn_output.bias", "h.%d.attn.c_proj.bias", X_COPY, NULL},
      {"blk.%d.ffn_norm.weight", "h.%d.ln_2.weight", X_COPY, NULL},
      {"blk.%d.ffn_norm.bias", "h.%d.ln_2.bias", X_COPY, NULL},
      {"blk.%d.ffn_up.weight", "h.%d.mlp.c_fc.weight", X_T, "transformer.h.%d.mlp.c_fc"},
      {"blk.%d.ffn_up.bias", "h.%d.mlp.c_fc.bias", X_COPY, NULL},
      {"blk.%d.ffn_down.weight", "h.%d.mlp.c_proj.weight", X_T, "transformer.h.%d.mlp.c_proj"},
      {"blk.%d.ffn_down.bias", "h.%d.mlp.c_proj.bias", X_COPY, NULL}}},
    {"falcon", "falcon", 4, 1, 8,
     {KU("falcon.block_count", 2), KU("falcon.context_length", 128), KU("falcon.embedding_length", 32),
      KU("falcon.feed_forward_length", 128), KU("falcon.attention.head_count", 4),
      KU("falcon.attention.head_count_kv", 1), KF("falcon.attention.layer_norm_epsilon", 1e-5),
      KU("falcon.rope.dimension_count", 8), KF("falcon.rope.freq_base", 10000), KS("tokenizer.ggml.model", "gpt2"),
      KS("tokenizer.ggml.pre", "falcon"), KU("tokenizer.ggml.eos_token_id", 11)},
     {FALCON_NAMES,
      {"blk.%d.attn_norm.weight", "transformer.h.%d.input_layernorm.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.bias", "transformer.h.%d.input_layernorm.bias", X_COPY, NULL}}},
    {"falcon_new", "falcon", 4, 2, 8,
     {KU("falcon.block_count", 2), KU("falcon.attention.head_count", 4), KU("falcon.attention.head_count_kv", 2),
      KF("falcon.attention.layer_norm_epsilon", 1e-5), KU("falcon.rope.dimension_count", 8),
      KS("tokenizer.ggml.pre", "falcon")},
     {FALCON_NAMES,
      {"blk.%d.attn_norm.weight", "transformer.h.%d.ln_mlp.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.bias", "transformer.h.%d.ln_mlp.bias", X_COPY, NULL},
      {"blk.%d.attn_norm_2.weight", "transformer.h.%d.ln_attn.weight", X_COPY, NULL},
      {"blk.%d.attn_norm_2.bias", "transformer.h.%d.ln_attn.bias", X_COPY, NULL}}},
    {"olmo", "olmo", 4, 2, 8,
     {KU("olmo.block_count", 2), KU("olmo.context_length", 128), KU("olmo.embedding_length", 32),
      KU("olmo.feed_forward_length", 96), KU("olmo.attention.head_count", 4), KU("olmo.attention.head_count_kv", 2),
      KU("olmo.rope.dimension_count", 8), KF("olmo.attention.layer_norm_epsilon", 1e-5),
      KF("olmo.attention.clamp_kqv", 1.5), KNONE("olmo.attention.layer_norm_rms_epsilon"),
      KS("tokenizer.ggml.model", "gpt2"), KS("tokenizer.ggml.pre", "olmo"), KU("tokenizer.ggml.eos_token_id", 50279)},
     {LLAMA_NAMES("model."),
      {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", X_PERM_Q, "model.layers.%d.self_attn.q_proj"},
      {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", X_PERM_K, "model.layers.%d.self_attn.k_proj"}}},
    {"bloom", "bloom", 6, 6, 8,
     {KU("bloom.block_count", 2), KU("bloom.context_length", 2048), KU("bloom.embedding_length", 48),
      KU("bloom.feed_forward_length", 192), KU("bloom.attention.head_count", 6), KU("bloom.attention.head_count_kv", 6),
      KF("bloom.attention.layer_norm_epsilon", 1e-5), KNONE("bloom.rope.dimension_count"),
      KNONE("bloom.rope.freq_base"), KS("tokenizer.ggml.model", "gpt2"), KS("tokenizer.ggml.pre", "gpt-2")},
     {{"token_embd.weight", "transformer.word_embeddings.weight", X_COPY, NULL},
      {"token_embd_norm.weight", "transformer.word_embeddings_layernorm.weight", X_COPY, NULL},
      {"token_embd_norm.bias", "transformer.word_embeddings_layernorm.bias", X_COPY, NULL},
      {"output_norm.weight", "transformer.ln_f.weight", X_COPY, NULL},
      {"output_norm.bias", "transformer.ln_f.bias", X_COPY, NULL},
      {"output.weight", "transformer.word_embeddings.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.weight", "transformer.h.%d.input_layernorm.weight", X_COPY, NULL},
      {"blk.%d.attn_norm.bias", "transformer.h.%d.input_layernorm.bias", X_COPY, NULL},
      {"blk.%d.attn_qkv.weight", "transformer.h.%d.self_attention.query_key_value.weight", X_BLOOM_QKV,
       "transformer.h.%d.self_attention.query_key_value"},
      {"blk.%d.attn_qkv.bias", "transformer.h.%d.self_attention.query_key_value.bias", X_BLOOM_QKV, NULL},
      {"blk.%d.attn_output.weight", "transformer.h.%d.self_attention.dense.weight", X_COPY,
       "transformer.h.%d.self_attention.dense"},
      {"blk.%d.attn_output.bias", "transformer.h.%d.self_attention.dense.bias", X_COPY, NULL},
      {"blk.%d.ffn_norm.weight", "transformer.h.%d.post_attention_layernorm.weight", X_COPY, NULL},
      {"blk.%d.ffn_norm.bias", "transformer.h.%d.post_attention_layernorm.bias", X_COPY, NULL},
      {"blk.%d.ffn_up.weight", "transformer.h.%d.mlp.dense_h_to_4h.weight", X_COPY, "transformer.h.%d.mlp.dense_h_to_4h"},
      {"blk.%d.ffn_up.bias", "transformer.h.%d.mlp.dense_h_to_4h.bias", X_COPY, NULL},
      {"blk.%d.ffn_down.weight", "transformer.h.%d.mlp.dense_4h_to_h.weight", X_COPY, "transformer.h.%d.mlp.dense_4h_to_h"},
      {"blk.%d.ffn_down.bias", "transformer.h.%d.mlp.dense_4h_to_h.bias", X_COPY, NULL}}},
};

// The source row of GGUF row r under a row reordering (cols: values per row).
static int64_t source_row(const family_expect *fx, enum xform x, int64_t r) {
    const int H = fx->n_head, KV = fx->n_kv, D = fx->head_dim;
    switch (x) {
    case X_PERM_Q:
    case X_PERM_K: { // GGUF row 2j + s of a head is HF row s*D/2 + j
        int64_t h = r / D, i = r % D;
        return h * D + (i % 2) * (D / 2) + i / 2;
    }
    case X_BLOOM_QKV: { // GGUF [part][head][d] from HF [head][part][d]
        int64_t part = r / ((int64_t)H * D), h = r / D % H, d = r % D;
        return (h * 3 + part) * D + d;
    }
    case X_FALCON_QKV: { // GGUF [q heads; k heads; v heads] from HF [group][group q heads, k, v]
        int64_t g, slot, d = r % D, group = H / KV;
        if (r < (int64_t)H * D) {
            g = r / D / group;
            slot = r / D % group;
        } else if (r < (int64_t)(H + KV) * D) {
            g = (r - (int64_t)H * D) / D;
            slot = group;
        } else {
            g = (r - (int64_t)(H + KV) * D) / D;
            slot = group + 1;
        }
        return (g * (group + 2) + slot) * D + d;
    }
    default: return r;
    }
}

static const float *st_f32(const lc_st_set *s, const char *name, const lc_st_tensor **t) {
    *t = lc_st_set_find(s, name);
    ck_assert_msg(*t && (*t)->dtype == LC_DTYPE_F32, "checkpoint tensor %s missing", name);
    return (const float *)(*t)->data;
}

// Checks the GGUF tensor `name` against checkpoint tensor `hf` (with the
// adapter of module `lora` merged, scale `scale`) under transform x.
static void check_family_tensor(const lc_gguf_file *g, const family_expect *fx, const tensor_map *tm, int layer,
                                const lc_st_set *model, const lc_st_set *adapter, double scale) {
    char name[96], hf[160], la[200], lb[200];
    snprintf(name, sizeof name, tm->gguf, layer);
    snprintf(hf, sizeof hf, tm->hf, layer);
    const lc_st_tensor *t;
    const float *w = st_f32(model, hf, &t);
    const lc_gguf_tensor *gt = lc_gguf_find_tensor(g, name);
    ck_assert_msg(gt != NULL, "%s: %s missing", fx->family, name);
    ck_assert_msg(gt->type == LC_GGML_TYPE_F32, "%s: %s is not F32", fx->family, name);
    // Row-major [rows, cols] of the GGUF tensor: the checkpoint's shape, transposed for Conv1D.
    int64_t rows = t->shape[0], cols = t->n_dims == 2 ? t->shape[1] : 1;
    if (tm->x == X_T) {
        rows = t->shape[1];
        cols = t->shape[0];
    }
    ck_assert_msg(gt->n_dims == t->n_dims && gt->ne[0] == (t->n_dims == 2 ? cols : rows) &&
                      (t->n_dims == 1 || gt->ne[1] == rows),
                  "%s: %s has shape [%lld, %lld], want [%lld, %lld]", fx->family, name, (long long)gt->ne[1],
                  (long long)gt->ne[0], (long long)rows, (long long)cols);
    const float *A = NULL, *B = NULL;
    int64_t r_lora = 0;
    if (tm->lora) {
        char mod[160];
        snprintf(mod, sizeof mod, tm->lora, layer);
        snprintf(la, sizeof la, "base_model.model.%s.lora_A.weight", mod);
        snprintf(lb, sizeof lb, "base_model.model.%s.lora_B.weight", mod);
        const lc_st_tensor *ta, *tb;
        A = st_f32(adapter, la, &ta); // [r, in]
        B = st_f32(adapter, lb, &tb); // [out, r]
        r_lora = ta->shape[0];
        ck_assert(ta->shape[1] == cols && tb->shape[0] == rows && tb->shape[1] == r_lora);
    }
    const float *got = (const float *)gt->data;
    double max_delta = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t sr = source_row(fx, tm->x, r);
        for (int64_t c = 0; c < cols; c++) {
            double want = tm->x == X_T ? w[c * rows + sr] : w[sr * cols + c];
            if (tm->x == X_PLUS1) want += 1.0;
            if (tm->lora) {
                double d = 0;
                for (int64_t j = 0; j < r_lora; j++) d += (double)B[sr * r_lora + j] * A[j * cols + c];
                want += scale * d;
                max_delta = fmax(max_delta, fabs(d));
            }
            float v;
            memcpy(&v, got + r * cols + c, 4);
            if (!(fabs(v - want) <= 1e-6 + 1e-5 * fabs(want))) // (ck_assert per element is slow)
                ck_abort_msg("%s: %s[%lld][%lld] = %g, want %g", fx->family, name, (long long)r, (long long)c, v, want);
        }
    }
    if (tm->lora) ck_assert_msg(max_delta > 1e-4, "%s: %s: the adapter changed nothing", fx->family, name);
}

static void check_family_key(const lc_gguf_file *g, const char *fam, const key_expect *k) {
    const lc_gguf_kv *kv = lc_gguf_find_kv(g, k->key);
    if (k->type == LC_GGUF_VTYPE_COUNT) {
        ck_assert_msg(kv == NULL, "%s: %s should be absent", fam, k->key);
        return;
    }
    // llama.cpp's loader checks the type of each key it reads.
    ck_assert_msg(kv && kv->type == k->type, "%s: %s missing or of type %s", fam, k->key,
                  kv ? lc_gguf_vtype_name(kv->type) : "-");
    if (k->type == LC_GGUF_STRING) {
        assert_kv_str(g, k->key, k->str);
    } else {
        double v;
        ck_assert(lc_gguf_kv_float(kv, 0, &v));
        ck_assert_msg(v == (double)(float)k->num, "%s: %s = %g, want %g", fam, k->key, v, k->num);
    }
}

START_TEST(test_export_every_family) {
    const char *fam = lc_family_names[_i];
    const family_expect *fx = &family_expects[_i];
    ck_assert_str_eq(fx->family, fam);
    lc_family_fixture f;
    lc_family_fixture_load(&f, fam, tmp);
    lc_model m;
    lc_lora lora;
    ck_assert_msg(lc_model_load(&m, f.model_dir) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_msg(lc_peft_load(f.adapter_dir, &m, &lora) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    char out[4096];
    snprintf(out, sizeof out, "%s/%s.gguf", tmp, fam);
    ck_assert_msg(lc_export_gguf(out, f.model_dir, &m, &lora, NULL, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    lc_gguf_file g;
    ck_assert_msg(lc_gguf_open(&g, out) == LC_STATUS_OK, "%s", lc_error_message());

    // Metadata.
    assert_kv_str(&g, "general.architecture", fx->arch);
    for (const key_expect *k = fx->keys; k->key; k++) check_family_key(&g, fam, k);
    // Every key carries the architecture's prefix or a general./tokenizer. one.
    for (size_t i = 0; i < g.n_kvs; i++) {
        const char *key = g.kvs[i].key;
        size_t n = strlen(fx->arch);
        ck_assert_msg(!strncmp(key, "general.", 8) || !strncmp(key, "tokenizer.", 10) ||
                          (!strncmp(key, fx->arch, n) && key[n] == '.'),
                      "%s: stray key %s", fam, key);
    }

    // Tensors: exactly the expected set, each with the checkpoint's values
    // (adapter merged) laid out as llama.cpp's converter lays them out.
    lc_st_set model = {0}, adapter = {0};
    ck_assert(lc_st_set_open_dir(&model, f.model_dir) == LC_STATUS_OK);
    char ad[700];
    snprintf(ad, sizeof ad, "%s/adapter_model.safetensors", f.adapter_dir);
    ck_assert(lc_st_set_add_file(&adapter, ad) == LC_STATUS_OK);
    const cJSON *lj = cJSON_GetObjectItem(f.root, "lora");
    double scale = cJSON_GetObjectItem(lj, "alpha")->valuedouble / cJSON_GetObjectItem(lj, "r")->valuedouble;
    size_t n_expected = 0;
    for (const tensor_map *tm = fx->tensors; tm->gguf; tm++) {
        bool per_layer = strstr(tm->gguf, "%d") != NULL;
        for (int l = 0; l < (per_layer ? m.cfg.n_layers : 1); l++) {
            check_family_tensor(&g, fx, tm, l, &model, &adapter, scale);
            n_expected++;
        }
    }
    if (g.n_tensors != n_expected) {
        for (size_t i = 0; i < g.n_tensors; i++) fprintf(stderr, "%s: %s\n", fam, g.tensors[i].name);
        ck_abort_msg("%s: %zu tensors, want %zu (no extras: llama.cpp refuses them)", fam, g.n_tensors, n_expected);
    }
    lc_gguf_close(&g);

    // F16: 2-D tensors F16 but position_embd, 1-D ones F32; same names and shapes.
    lc_gguf_file h;
    snprintf(out, sizeof out, "%s/%s.f16.gguf", tmp, fam);
    ck_assert_msg(lc_export_gguf(out, f.model_dir, &m, &lora, NULL, LC_DTYPE_F16) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    ck_assert(lc_gguf_open(&h, out) == LC_STATUS_OK);
    ck_assert_uint_eq(h.n_tensors, n_expected);
    ck_assert_int_eq(kv_int(&h, "general.file_type"), 1);
    for (size_t i = 0; i < h.n_tensors; i++) {
        const lc_gguf_tensor *t = &h.tensors[i];
        bool f32 = t->n_dims == 1 || !strcmp(t->name, "position_embd.weight");
        ck_assert_msg(t->type == (f32 ? LC_GGML_TYPE_F32 : LC_GGML_TYPE_F16), "%s: %s has type %u", fam, t->name,
                      t->type);
    }
    lc_gguf_close(&h);
    lc_st_set_free(&model);
    lc_st_set_free(&adapter);
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_family_fixture_free(&f);
}
END_TEST

// Configurations llama.cpp's graph cannot run are refused, not written wrong.
START_TEST(test_export_refuses_unrepresentable) {
    static const struct {
        const char *family, *key, *value, *needle;
    } cases[] = {
        {"gpt2", "scale_attn_by_inverse_layer_idx", "true", "scale_attn"},
        {"gpt2", "scale_attn_weights", "false", "scale_attn"},
        {"falcon", "bias", "true", "no bias"},
        {"falcon", "parallel_attn", "false", "parallel"},
        {"gemma2", "attn_logit_softcapping", "null", "softcapping"},
        {"gemma", "tie_word_embeddings", "false", "lm_head"},
        {"bloom", "apply_residual_connection_post_layernorm", "true", "apply_residual_connection_post_layernorm"},
        {"qwen2", "rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"original_max_position_embeddings\": 64}", "rope_freqs"},
        {"olmo", "attention_bias", "true", "no bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[4096], path[4200], out[4200];
        snprintf(dir, sizeof dir, "%s/refuse%zu", tmp, i);
        lc_family_fixture f;
        lc_family_fixture_load(&f, cases[i].family, dir);
        cJSON *cfg = cJSON_Duplicate(cJSON_GetObjectItem(f.root, "config"), 1);
        cJSON_DeleteItemFromObject(cfg, cases[i].key);
        cJSON_AddItemToObject(cfg, cases[i].key, cJSON_Parse(cases[i].value));
        char *text = cJSON_Print(cfg);
        lc_test_write(f.model_dir, "config.json", text, strlen(text));
        free(text);
        cJSON_Delete(cfg);
        lc_model_config c;
        snprintf(path, sizeof path, "%s/config.json", f.model_dir);
        ck_assert_msg(lc_config_load(&c, path) == LC_STATUS_OK, "%s", lc_error_message());
        lc_model m;
        ck_assert_msg(lc_model_init_random(&m, &c, 7, LC_WTYPE_F32) == LC_STATUS_OK, "%s", lc_error_message());
        snprintf(out, sizeof out, "%s/x.gguf", dir);
        lc_status st = lc_export_gguf(out, f.model_dir, &m, NULL, NULL, LC_DTYPE_F32);
        ck_assert_msg(st == LC_STATUS_USAGE, "%s with %s = %s: status %d", cases[i].family, cases[i].key,
                      cases[i].value, st);
        ck_assert_msg(strstr(lc_error_message(), cases[i].needle) != NULL, "\"%s\" lacks \"%s\"", lc_error_message(),
                      cases[i].needle);
        ck_assert_msg(access(out, F_OK) != 0, "%s written anyway", out);
        lc_model_free(&m);
        lc_family_fixture_free(&f);
    }
}
END_TEST

// tokenizer.ggml.pre and add_space_prefix from tokenizer.json's pre-tokenizer and normalizer.
static void vocab_from(const lc_tokenizer *tok, const char *json_text, int32_t n_vocab, lc_gguf_file *g) {
    const char *json = NULL;
    if (json_text) {
        lc_test_write(tmp, "tok.json", json_text, strlen(json_text));
        json = tmp_path("tok.json");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.gguf", tmp);
    unlink(path);
    lc_gguf_writer *w;
    ck_assert(lc_gguf_writer_new(&w, path) == LC_STATUS_OK);
    ck_assert_msg(lc_gguf_add_vocab(w, tok, json, n_vocab, -1, -1, -1) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(lc_gguf_writer_finish(w) == LC_STATUS_OK);
    lc_gguf_writer_free(w);
    ck_assert(lc_gguf_open(g, path) == LC_STATUS_OK);
}

START_TEST(test_vocab_pre_tokenizer_and_space_prefix) {
    lc_tokenizer *bpe, *spm;
    ck_assert(lc_tokenizer_load(&bpe, LC_SHARED_DIR "/tokenizers/gpt2/tokenizer.json", NULL) == LC_STATUS_OK);
    ck_assert(lc_tokenizer_load(&spm, LC_SHARED_DIR "/tokenizers/llama2/tokenizer.json",
                                LC_SHARED_DIR "/tokenizers/llama2/tokenizer_config.json") == LC_STATUS_OK);
    static const struct {
        const char *json, *pre;
    } pres[] = {
        // Bloom: its Split regex (as Oniguruma reads it) then ByteLevel without its own regex.
        {"{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
         "{\"Regex\": \" ?[^(\\\\s|[.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C])]+\"}, "
         "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
         "\"trim_offsets\": true, \"use_regex\": false}]}}",
         "bloom"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}}", "gpt-2"},
        {"{\"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "default"},
        {"not json {", "default"},
        {NULL, "default"},
    };
    lc_gguf_file g;
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        vocab_from(bpe, pres[i].json, 50257, &g);
        assert_kv_str(&g, "tokenizer.ggml.pre", pres[i].pre);
        ck_assert_ptr_null(lc_gguf_find_kv(&g, "tokenizer.ggml.add_space_prefix")); // SentencePiece only
        lc_gguf_close(&g);
    }

    static const struct {
        const char *json;
        int prefix; // 1: add_space_prefix absent (llama.cpp's default, true); 0: written false
    } spms[] = {
        {"{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
         "\"\xE2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]}}",
         1},
        // Gemma: spaces replaced, nothing prepended.
        {"{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}}", 0},
        {"{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", "
         "\"prepend_scheme\": \"first\"}}",
         1},
        {"{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", "
         "\"prepend_scheme\": \"never\"}}",
         0},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"add_prefix_space\": false}}", 0},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"add_prefix_space\": true}}", 1},
    };
    for (size_t i = 0; i < sizeof spms / sizeof spms[0]; i++) {
        vocab_from(spm, spms[i].json, 32000, &g);
        assert_kv_str(&g, "tokenizer.ggml.pre", "default");
        const lc_gguf_kv *kv = lc_gguf_find_kv(&g, "tokenizer.ggml.add_space_prefix");
        if (spms[i].prefix) ck_assert_msg(kv == NULL, "case %zu: add_space_prefix written", i);
        else ck_assert_msg(kv && kv->type == LC_GGUF_BOOL && kv->data[0] == 0, "case %zu: add_space_prefix not false", i);
        lc_gguf_close(&g);
    }
    lc_tokenizer_free(bpe);
    lc_tokenizer_free(spm);
}
END_TEST

// ---------------------------------------------------------------- (e) hostile files

// A small valid file: three KVs (string, string array, u32) and two tensors.
static unsigned char *small_gguf(size_t *len) {
    lc_gguf_writer *w;
    const char *p = tmp_path("small.gguf");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    ck_assert(lc_gguf_writer_new(&w, path) == LC_STATUS_OK);
    const char *strs[] = {"a", "bc", "def"};
    ck_assert(lc_gguf_set_str(w, "general.architecture", "llama") == LC_STATUS_OK);
    ck_assert(lc_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, 3) == LC_STATUS_OK);
    ck_assert(lc_gguf_set_u32(w, "llama.block_count", 1) == LC_STATUS_OK);
    ck_assert(lc_gguf_set_u32(w, "llama.block_count", 2) == LC_STATUS_RUNTIME); // duplicate key
    int64_t s1[1] = {3}, s2[2] = {2, 5};
    ck_assert(lc_gguf_add_tensor(w, "norm.weight", LC_GGML_TYPE_F32, 1, s1) == LC_STATUS_OK);
    ck_assert(lc_gguf_add_tensor(w, "wout.weight", LC_GGML_TYPE_F16, 2, s2) == LC_STATUS_OK);
    ck_assert(lc_gguf_add_tensor(w, "wout.weight", LC_GGML_TYPE_F16, 2, s2) == LC_STATUS_RUNTIME);
    ck_assert(lc_gguf_write_header(w) == LC_STATUS_OK);
    float a[3] = {1, 2, 3};
    uint16_t h[10];
    for (int i = 0; i < 10; i++) h[i] = lc_f32_to_f16((float)i);
    ck_assert(lc_gguf_write_tensor_data(w, h, sizeof h) == LC_STATUS_RUNTIME); // wrong size for norm.weight
    ck_assert(lc_gguf_write_tensor_data(w, a, sizeof a) == LC_STATUS_OK);
    ck_assert(lc_gguf_write_tensor_data(w, h, sizeof h) == LC_STATUS_OK);
    ck_assert(lc_gguf_writer_finish(w) == LC_STATUS_OK);
    lc_gguf_writer_free(w);
    return (unsigned char *)lc_test_read(path, len);
}

static lc_status open_bytes(const unsigned char *data, size_t len, const char *name) {
    lc_test_write(tmp, name, data, len);
    lc_gguf_file f;
    lc_status st = lc_gguf_open(&f, tmp_path(name));
    if (!st) {
        // Whatever a file that opens claims must be readable in bounds.
        for (size_t i = 0; i < f.n_tensors; i++) {
            const lc_gguf_tensor *t = &f.tensors[i];
            ck_assert(t->data >= f.map.data && t->data + t->nbytes <= f.map.data + f.map.size);
        }
        for (size_t i = 0; i < f.n_kvs; i++) {
            lc_gguf_str s;
            for (uint64_t j = 0; j < f.kvs[i].n && lc_gguf_kv_str(&f.kvs[i], j, &s); j++)
                ck_assert((const unsigned char *)s.s >= f.map.data && (const unsigned char *)s.s + s.len <= f.map.data + f.map.size);
        }
        lc_gguf_close(&f);
    }
    return st;
}

static void expect_input(const unsigned char *data, size_t len, const char *name, const char *needle) {
    lc_status st = open_bytes(data, len, name);
    ck_assert_msg(st == LC_STATUS_INPUT, "%s: status %d", name, st);
    ck_assert_msg(strstr(lc_error_message(), tmp_path(name)) != NULL, "message lacks the path: %s", lc_error_message());
    if (needle) ck_assert_msg(strstr(lc_error_message(), needle) != NULL, "%s: \"%s\" lacks \"%s\"", name, lc_error_message(), needle);
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

// Position of the first occurrence of a string in the file.
static size_t find_bytes(const unsigned char *d, size_t len, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(d + i, s, n)) return i;
    ck_abort_msg("%s not found", s);
    return 0;
}

START_TEST(test_small_file_round_trip) {
    size_t len;
    unsigned char *d = small_gguf(&len);
    ck_assert_uint_eq(len % 32, 0);
    lc_gguf_file f;
    ck_assert(lc_gguf_open(&f, tmp_path("small.gguf")) == LC_STATUS_OK);
    ck_assert_uint_eq(f.n_kvs, 3);
    ck_assert_uint_eq(f.n_tensors, 2);
    const lc_gguf_tensor *t = lc_gguf_find_tensor(&f, "wout.weight");
    ck_assert(t && t->type == LC_GGML_TYPE_F16 && t->ne[0] == 5 && t->ne[1] == 2 && t->offset == 32);
    float v[10];
    ck_assert(lc_gguf_tensor_to_f32(&f, t, v) == LC_STATUS_OK);
    for (int i = 0; i < 10; i++) ck_assert_float_eq(v[i], (float)i);
    lc_gguf_str s;
    ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&f, "tokenizer.ggml.tokens"), 2, &s) && s.len == 3 && !memcmp(s.s, "def", 3));
    ck_assert_int_eq(kv_int(&f, "llama.block_count"), 1);
    lc_gguf_close(&f);
    free(d);
    // An unfinished writer leaves nothing behind.
    lc_gguf_writer *w;
    char path[4096];
    snprintf(path, sizeof path, "%s/unfinished.gguf", tmp);
    ck_assert(lc_gguf_writer_new(&w, path) == LC_STATUS_OK);
    int64_t s1[1] = {4};
    ck_assert(lc_gguf_add_tensor(w, "x", LC_GGML_TYPE_F32, 1, s1) == LC_STATUS_OK);
    ck_assert(lc_gguf_write_header(w) == LC_STATUS_OK);
    ck_assert(lc_gguf_writer_finish(w) == LC_STATUS_RUNTIME); // tensor data missing
    lc_gguf_writer_free(w);
    ck_assert(access(path, F_OK) != 0);
    strcat(path, ".tmp");
    ck_assert(access(path, F_OK) != 0);
}
END_TEST

START_TEST(test_hostile_files) {
    size_t len;
    unsigned char *d = small_gguf(&len);
    unsigned char *c = malloc(len);

    // Every truncation is refused, none crashes.
    for (size_t n = 0; n < len; n++) {
        lc_status st = open_bytes(d, n, "trunc.gguf");
        // Only the final padding (after the last tensor's bytes) may go.
        if (st == LC_STATUS_OK) ck_assert_uint_ge(n, len - 12);
        else ck_assert_int_eq(st, LC_STATUS_INPUT);
    }
    expect_input(d, 28, "short.gguf", "more than the file holds");

    memcpy(c, d, len);
    c[0] = 'X';
    expect_input(c, len, "magic.gguf", "magic");

    memcpy(c, d, len);
    c[4] = 1; // version 1 (32-bit counts) is not read
    expect_input(c, len, "version.gguf", "version");

    memcpy(c, d, len);
    put_u64(c + 8, 1ull << 40); // tensor count
    expect_input(c, len, "count.gguf", "more than the file holds");

    memcpy(c, d, len);
    put_u64(c + 16, UINT64_MAX); // KV count
    expect_input(c, len, "kvcount.gguf", "more than the file holds");

    memcpy(c, d, len);
    put_u64(c + 24, 0x7fffffffffffull); // length of the first key
    expect_input(c, len, "keylen.gguf", "past the end");

    size_t arch = find_bytes(d, len, "general.architecture");
    memcpy(c, d, len);
    put_u64(c + arch + 20 + 4, UINT64_MAX); // length of the architecture string value
    expect_input(c, len, "strlen.gguf", "past the end");

    memcpy(c, d, len);
    c[arch + 20] = 77; // value type
    expect_input(c, len, "vtype.gguf", "unknown value type");

    size_t toks = find_bytes(d, len, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens");
    memcpy(c, d, len);
    put_u64(c + toks + 8, 1ull << 61); // array count
    expect_input(c, len, "arrcount.gguf", "does not fit");

    memcpy(c, d, len);
    c[toks + 4] = LC_GGUF_ARRAY; // nested array
    expect_input(c, len, "nested.gguf", "unsupported item type");

    size_t name = find_bytes(d, len, "wout.weight") + 11; // then n_dims, ne[2], type, offset
    expect_input(d, name + 10, "cut.gguf", "truncated"); // inside a tensor's dimensions

    memcpy(c, d, len);
    put_u64(c + name + 4 + 16 + 4, 1024); // offset past the end
    expect_input(c, len, "offset.gguf", "past the end");

    memcpy(c, d, len);
    put_u64(c + name + 4 + 16 + 4, UINT64_MAX - 31); // offset that wraps around
    expect_input(c, len, "wrap.gguf", "past the end");

    memcpy(c, d, len);
    put_u64(c + name + 4 + 16 + 4, 16); // misaligned
    expect_input(c, len, "align.gguf", "alignment");

    memcpy(c, d, len);
    put_u64(c + name + 4, 1ull << 62); // huge dimension
    put_u64(c + name + 4 + 8, 1ull << 62);
    expect_input(c, len, "dims.gguf", "too large");

    memcpy(c, d, len);
    c[name] = 9; // n_dims
    expect_input(c, len, "ndims.gguf", "dimensions");

    memcpy(c, d, len);
    c[name + 4 + 16] = 200; // ggml type
    expect_input(c, len, "ttype.gguf", "unknown ggml type");

    memcpy(c, d, len);
    c[name + 4 + 16] = 2; // Q4_0 with ne[0] = 5: not whole blocks
    expect_input(c, len, "blocks.gguf", "block");

    memcpy(c, d, len);
    memcpy(c + find_bytes(d, len, "wout.weight"), "norm.weight", 11); // two tensors of one name
    expect_input(c, len, "dupname.gguf", "duplicate tensor");

    memcpy(c, d, len);
    size_t bc = find_bytes(d, len, "llama.block_count");
    memcpy(c + bc, "general.alignment", 17);
    c[bc + 17 + 4] = 3; // an alignment that is not a power of two
    expect_input(c, len, "align3.gguf", "general.alignment");

    // Random corruption: always OK or INPUT, never out of bounds.
    uint64_t s = 42;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, d, len);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(s >> 33) % len;
            c[pos] = (unsigned char)(s >> 20);
        }
        lc_status st = open_bytes(c, len, "fuzz.gguf");
        ck_assert(st == LC_STATUS_OK || st == LC_STATUS_INPUT);
    }
    // A missing file.
    lc_gguf_file f;
    ck_assert_int_eq(lc_gguf_open(&f, tmp_path("missing.gguf")), LC_STATUS_INPUT);
    free(c);
    free(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_read_llamacpp_file);
    tcase_add_test(tc, test_export_f32_matches_llamacpp);
    tcase_add_test(tc, test_export_f16);
    tcase_add_test(tc, test_lora_merge_round_trip);
    tcase_add_test(tc, test_permutation_preserves_rope);
    tcase_add_test(tc, test_export_qwen2_keeps_rows_and_biases);
    tcase_add_test(tc, test_export_llama_bias_llama3_rope_and_mistral);
    tcase_add_test(tc, test_vocab_gpt2_matches_llamacpp);
    tcase_add_test(tc, test_vocab_llama2_matches_sentencepiece_scores);
    tcase_add_test(tc, test_vocab_pre_tokenizer_and_space_prefix);
    int n_families = 0;
    while (lc_family_names[n_families]) n_families++;
    if (n_families != (int)(sizeof family_expects / sizeof family_expects[0])) {
        fprintf(stderr, "test_gguf: %d family fixtures, %zu expectations\n", n_families,
                sizeof family_expects / sizeof family_expects[0]);
        return 1;
    }
    tcase_add_loop_test(tc, test_export_every_family, 0, n_families);
    tcase_add_test(tc, test_export_refuses_unrepresentable);
    tcase_add_test(tc, test_small_file_round_trip);
    tcase_add_test(tc, test_hostile_files);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
