// Every supported family against a PyTorch reference of its Hugging Face
// semantics (tests/reference/families_reference.py): a tiny model in the
// family's checkpoint naming and layout, with a real tokenizer from
// ../shared, loaded through the normal loader with a PEFT adapter.
//   - the tokenizer gives the reference's token ids;
//   - logits with and without the adapter, max abs diff <= 1e-4;
//   - decoding one token at a time through the KV cache matches, and bf16
//     weight storage stays within rounding;
//   - loss and every LoRA gradient (relative to each matrix's largest) <= 1e-3,
//     with and without activation checkpointing;
//   - a few AdamW steps lower the loss;
//   - exports: PEFT folder read back, merged HF folder reloaded (same logits as
//     base + adapter), GGUF written with the family's llama.cpp architecture.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_compare.h"
#include "family_fixture.h"
#include "test_util.h"
#include "data/tokenizer.h"
#include "export/export.h"
#include "export/gguf.h"
#include "model/arch.h"
#include "model/forward.h"
#include "model/safetensors.h"
#include "model/train_pass.h"
#include "optim/adamw.h"
#include "train/adapter.h"
#include "train/trainer.h"

typedef struct family_env {
    lc_family_fixture f;
    char *tmp;
    lc_model m;
    lc_lora lora; // the PEFT adapter, read back by lc_adapter_load
} family_env;

static int count_names(const char *const *names) {
    int n = 0;
    while (names[n]) n++;
    return n;
}

// The dense families, then the mixture-of-experts ones.
static const char *fam_name(int i) {
    int n = count_names(lc_family_names);
    return i < n ? lc_family_names[i] : lc_moe_family_names[i - n];
}

static bool fam_moe(int i) { return i >= count_names(lc_family_names); }

static void env_open(family_env *e, int i) {
    e->tmp = lc_test_tmpdir();
    lc_family_fixture_load(&e->f, fam_name(i), e->tmp);
    ck_assert_msg(lc_model_load(&e->m, e->f.model_dir) == LC_STATUS_OK, "%s: %s", fam_name(i),
                  lc_error_message());
    ck_assert_msg(lc_adapter_load(e->f.adapter_dir, &e->m, NULL, LC_ADAPTER_USE_AS_IS, &e->lora, NULL) ==
                      LC_STATUS_OK, "%s: %s",
                  fam_name(i), lc_error_message());
}

// Removes a fixture's folder (it holds the model and adapter folders) and frees its name.
static void remove_tmp(char *tmp) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert(system(cmd) == 0);
    free(tmp);
}

static void env_close(family_env *e) {
    lc_lora_free(&e->lora);
    lc_model_free(&e->m);
    lc_family_fixture_free(&e->f);
    remove_tmp(e->tmp);
}

// Logits [B*T, V] of the fixture's tokens (lora may be NULL).
static float *full_logits(const lc_model *m, const lc_lora *lora, const lc_family_fixture *f) {
    lc_forward_state s;
    int N = f->B * f->T, V = m->cfg.vocab_size;
    ck_assert_int_eq(lc_forward_state_init(&s, m, f->B, f->T, N, N), LC_STATUS_OK);
    s.lora = lora;
    ck_assert_msg(lc_forward(&s, m, f->tokens, f->B, f->T, 0, LC_LOGITS_MODE_ALL) == LC_STATUS_OK, "%s",
                  lc_error_message());
    float *out = malloc(sizeof(float) * (size_t)N * V);
    ck_assert(out != NULL);
    memcpy(out, s.logits, sizeof(float) * (size_t)N * V);
    lc_forward_state_free(&s);
    return out;
}

// Max abs difference of logits [B*T, V] against the expected columns.
static double logits_diff(const float *logits, int V, const cJSON *expected, const char *key) {
    const cJSON *cols = cJSON_GetObjectItem(expected, "logit_cols"), *rows = cJSON_GetObjectItem(expected, key);
    double worst = 0.0;
    int n_rows = cJSON_GetArraySize(rows), n_cols = cJSON_GetArraySize(cols);
    for (int r = 0; r < n_rows; r++)
        for (int j = 0; j < n_cols; j++) {
            int col = (int)cJSON_GetArrayItem(cols, j)->valuedouble;
            double want = cJSON_GetArrayItem(cJSON_GetArrayItem(rows, r), j)->valuedouble;
            double d = fabs(logits[(size_t)r * V + col] - want);
            if (!(d <= worst)) worst = d;
        }
    return worst;
}

START_TEST(test_tokenizer_gives_reference_ids) {
    lc_family_fixture f;
    char *tmp = lc_test_tmpdir();
    lc_family_fixture_load(&f, fam_name(_i), tmp);
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, f.model_dir), LC_STATUS_OK);
    const cJSON *texts = cJSON_GetObjectItem(f.root, "text");
    for (int b = 0; b < f.B; b++) {
        const char *text = cJSON_GetArrayItem(texts, b)->valuestring;
        int32_t *ids = NULL;
        size_t cap = 0, n;
        ck_assert_int_eq(lc_tokenizer_encode(tok, text, strlen(text), false, &ids, &cap, &n), LC_STATUS_OK);
        ck_assert_uint_ge(n, (size_t)f.T);
        for (int t = 0; t < f.T; t++)
            ck_assert_msg(ids[t] == f.tokens[b * f.T + t], "%s text %d token %d: %d vs %d", fam_name(_i), b,
                          t, ids[t], f.tokens[b * f.T + t]);
        free(ids);
    }
    lc_tokenizer_free(tok);
    lc_family_fixture_free(&f);
    remove_tmp(tmp);
}
END_TEST

START_TEST(test_logits_match_pytorch) {
    family_env e;
    env_open(&e, _i);
    int V = e.m.cfg.vocab_size;
    float *with = full_logits(&e.m, &e.lora, &e.f), *without = full_logits(&e.m, NULL, &e.f);
    double d1 = logits_diff(with, V, e.f.expected, "logits");
    double d0 = logits_diff(without, V, e.f.expected, "logits_base");
    ck_assert_msg(d1 <= 1e-4, "%s: logits with the adapter differ by %g", fam_name(_i), d1);
    ck_assert_msg(d0 <= 1e-4, "%s: base logits differ by %g", fam_name(_i), d0);

    // Decoding one token at a time through the KV cache gives the same logits.
    lc_forward_state s;
    int T = e.f.T;
    ck_assert_int_eq(lc_forward_state_init(&s, &e.m, 1, T, 1, 1), LC_STATUS_OK);
    s.lora = &e.lora;
    double worst = 0.0;
    const int32_t *seq = e.f.tokens + T; // the second sequence
    for (int t = 0; t < T; t++) {
        ck_assert_int_eq(lc_forward(&s, &e.m, seq + t, 1, 1, t, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
        const float *ref = with + (size_t)(T + t) * V;
        for (int v = 0; v < V; v++) {
            double d = fabs(s.logits[v] - ref[v]);
            if (!(d <= worst)) worst = d;
        }
    }
    ck_assert_msg(worst <= 1e-4, "%s: cached decoding differs by %g", fam_name(_i), worst);
    lc_forward_state_free(&s);

    // bf16 storage of the frozen linear weights (Conv1D ones transposed on the
    // way) stays within bf16 rounding of the fp32 logits.
    lc_model mb;
    ck_assert_int_eq(lc_model_load_opts(&mb, e.f.model_dir, true), LC_STATUS_OK);
    float *half = full_logits(&mb, &e.lora, &e.f);
    double dh = 0.0, scale = 0.0;
    for (size_t i = 0; i < (size_t)e.f.B * T * V; i++) {
        dh = fmax(dh, fabs(half[i] - with[i]));
        scale = fmax(scale, fabs(with[i]));
    }
    ck_assert_msg(dh <= 0.02 * scale, "%s: bf16 weights change logits by %g (largest %g)", fam_name(_i), dh,
                  scale);
    free(half);
    lc_model_free(&mb);
    free(with);
    free(without);
    env_close(&e);
}
END_TEST

// Next-token targets of the fixture's tokens (the last position has none).
static int32_t *fixture_targets(const lc_family_fixture *f, int *count) {
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)f->B * f->T);
    ck_assert(tg != NULL);
    *count = 0;
    for (int b = 0; b < f->B; b++)
        for (int t = 0; t < f->T; t++) {
            tg[b * f->T + t] = t + 1 < f->T ? f->tokens[b * f->T + t + 1] : -1;
            *count += t + 1 < f->T;
        }
    return tg;
}

// Mean loss of the fixture batch with gradients into lora's buffers.
static double train_pass(const lc_model *m, lc_lora *lora, const lc_family_fixture *f, bool checkpointing) {
    int count;
    int32_t *tg = fixture_targets(f, &count);
    lc_train_pass p;
    ck_assert_int_eq(lc_train_pass_init(&p, m, checkpointing), LC_STATUS_OK);
    lc_forward_input in = {f->tokens, f->B, f->T, NULL, NULL, 0};
    memset(lora->grads, 0, sizeof(float) * lora->n_params);
    double loss_sum = 0.0;
    int counted = 0;
    ck_assert_msg(lc_train_pass_run(&p, m, lora, &in, tg, 1.0f / (float)count, &loss_sum, &counted) == LC_STATUS_OK,
                  "%s", lc_error_message());
    ck_assert_int_eq(counted, count);
    lc_train_pass_free(&p);
    free(tg);
    return loss_sum / counted;
}

// Worst relative error of an adapter matrix's gradient against the expected list.
static double grad_error(const float *g, const cJSON *want, size_t n) {
    ck_assert_int_eq(cJSON_GetArraySize(want), (int)n);
    double max_ref = 0.0, max_err = 0.0;
    const cJSON *it = want->child;
    for (size_t i = 0; i < n; i++, it = it->next) {
        max_ref = fmax(max_ref, fabs(it->valuedouble));
        double d = fabs(g[i] - it->valuedouble);
        if (!(d <= max_err)) max_err = d;
    }
    ck_assert_msg(max_ref > 0.0, "reference gradient is zero");
    return max_err / max_ref;
}

START_TEST(test_lora_gradients_match_pytorch) {
    family_env e;
    env_open(&e, _i);
    lc_lora tr;
    ck_assert_int_eq(lc_lora_init(&tr, &e.m, &e.lora.cfg, 0, true), LC_STATUS_OK);
    ck_assert_uint_eq(tr.n_params, e.lora.n_params);
    memcpy(tr.params, e.lora.params, sizeof(float) * tr.n_params);
    double want_loss = cJSON_GetObjectItem(e.f.expected, "loss")->valuedouble;
    const cJSON *grads = cJSON_GetObjectItem(e.f.expected, "grads");
    lc_arch_names names;
    lc_arch_names_get(&names, &e.m.cfg);
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        double loss = train_pass(&e.m, &tr, &e.f, ckpt);
        ck_assert_msg(fabs(loss - want_loss) <= 1e-4 * fabs(want_loss), "%s: loss %.7f vs %.7f",
                      fam_name(_i), loss, want_loss);
        int checked = 0;
        for (int l = 0; l < e.m.cfg.n_layers; l++)
            for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
                const lc_lora_ref *ref = lc_lora_get(&tr, l, (lc_linear_kind)k);
                if (!ref) continue;
                const lc_linear *lin = &e.m.layers[l].lin[k];
                char layer[64], name[256];
                snprintf(layer, sizeof layer, names.layer, l);
                for (int ab = 0; ab < 2; ab++) {
                    snprintf(name, sizeof name, "base_model.model.%s.%s.lora_%c.weight", layer, names.lin[k],
                             ab ? 'B' : 'A');
                    const cJSON *want = cJSON_GetObjectItem(grads, name);
                    ck_assert_msg(want != NULL, "%s: no reference gradient %s", fam_name(_i), name);
                    size_t n = ab ? (size_t)lin->out * ref->r : (size_t)ref->r * lin->in;
                    double err = grad_error(ab ? ref->dB : ref->dA, want, n);
                    ck_assert_msg(err <= 1e-3, "%s%s: %s relative error %g", fam_name(_i),
                                  ckpt ? " (checkpointed)" : "", name, err);
                    checked++;
                }
            }
        // Each expert's adapters; an expert no loss position chose gets none.
        const cJSON *counts = cJSON_GetObjectItem(e.f.expected, "expert_counts_loss");
        lc_lora_expert x;
        int zero = 0;
        for (int i = 0; lc_lora_expert_next(&tr, &e.m, &i, &x);) {
            char path[160], name[256];
            lc_arch_expert_path(&e.m.cfg, x.layer, x.expert, x.proj, path, sizeof path);
            bool chosen = x.expert == e.m.cfg.n_experts ||
                          cJSON_GetArrayItem(cJSON_GetArrayItem(counts, x.layer), x.expert)->valuedouble > 0;
            for (int ab = 0; ab < 2; ab++) {
                snprintf(name, sizeof name, "base_model.model.%s.lora_%c.weight", path, ab ? 'B' : 'A');
                const cJSON *want = cJSON_GetObjectItem(grads, name);
                ck_assert_msg(want != NULL, "%s: no reference gradient %s", fam_name(_i), name);
                size_t n = ab ? (size_t)x.lin->out * x.ref->r : (size_t)x.ref->r * x.lin->in;
                const float *g = ab ? x.ref->dB : x.ref->dA;
                if (chosen) {
                    double err = grad_error(g, want, n);
                    ck_assert_msg(err <= 1e-3, "%s%s: %s relative error %g", fam_name(_i),
                                  ckpt ? " (checkpointed)" : "", name, err);
                } else {
                    for (size_t j = 0; j < n; j++)
                        ck_assert_msg(g[j] == 0.0f, "%s: %s of an expert no token chose: %g", fam_name(_i), name,
                                      g[j]);
                    zero++;
                }
                checked++;
            }
        }
        // Every adapter matrix of an unchosen expert was checked as zero; the
        // olmoe fixture has such experts.
        int unchosen = 0;
        for (int l = 0; counts && l < cJSON_GetArraySize(counts); l++)
            for (int x = 0; x < cJSON_GetArraySize(cJSON_GetArrayItem(counts, l)); x++)
                unchosen += cJSON_GetArrayItem(cJSON_GetArrayItem(counts, l), x)->valuedouble == 0;
        ck_assert_int_eq(zero, unchosen * 3 * 2);
        ck_assert(strcmp(fam_name(_i), "olmoe") != 0 || unchosen > 0);
        ck_assert_int_eq(checked, cJSON_GetArraySize(grads));
    }
    lc_lora_free(&tr);
    env_close(&e);
}
END_TEST

START_TEST(test_training_lowers_loss) {
    family_env e;
    env_open(&e, _i);
    lc_lora tr;
    ck_assert_int_eq(lc_lora_init(&tr, &e.m, &e.lora.cfg, 0, true), LC_STATUS_OK);
    memcpy(tr.params, e.lora.params, sizeof(float) * tr.n_params);
    lc_adamw opt;
    lc_adamw_config acfg = {0.9f, 0.999f, 1e-8f, 0.0f};
    ck_assert_int_eq(lc_adamw_init(&opt, tr.n_params, &acfg), LC_STATUS_OK);
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 8; step++) {
        last = train_pass(&e.m, &tr, &e.f, false);
        if (step == 0) first = last;
        ck_assert(isfinite(last));
        lc_adamw_step(&opt, tr.params, tr.grads, 1e-2f);
    }
    ck_assert_msg(last < first - 0.1, "%s: loss %.4f -> %.4f after 8 steps", fam_name(_i), first, last);
    lc_adamw_free(&opt);
    lc_lora_free(&tr);
    env_close(&e);
}
END_TEST

START_TEST(test_export_round_trips) {
    family_env e;
    env_open(&e, _i);
    const char *fam = fam_name(_i);
    char dir[700];

    // PEFT: written and read back, the same parameters.
    snprintf(dir, sizeof dir, "%s/peft", e.tmp);
    ck_assert_msg(lc_export_peft(dir, e.f.model_dir, &e.m, &e.lora, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    lc_lora back;
    ck_assert_msg(lc_peft_load(dir, &e.m, &back) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_uint_eq(back.n_params, e.lora.n_params);
    ck_assert(memcmp(back.params, e.lora.params, sizeof(float) * back.n_params) == 0);
    lc_lora_free(&back);

    // Merged HF folder: reloads as the same family with base + adapter logits.
    snprintf(dir, sizeof dir, "%s/merged", e.tmp);
    ck_assert_msg(lc_export_hf(dir, e.f.model_dir, &e.m, &e.lora, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", fam,
                  lc_error_message());
    lc_model merged;
    ck_assert_msg(lc_model_load(&merged, dir) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    ck_assert_int_eq(merged.cfg.arch, e.m.cfg.arch);
    float *a = full_logits(&e.m, &e.lora, &e.f), *b = full_logits(&merged, NULL, &e.f);
    double worst = 0.0;
    size_t n = (size_t)e.f.B * e.f.T * e.m.cfg.vocab_size;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    ck_assert_msg(worst <= 1e-4, "%s: merged logits differ by %g", fam, worst);
    free(a);
    free(b);
    lc_model_free(&merged);

    // GGUF: llama.cpp's architecture name for the family, readable back.
    snprintf(dir, sizeof dir, "%s/merged.gguf", e.tmp);
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, e.f.model_dir), LC_STATUS_OK);
    if (fam_moe(_i)) {
        // A PEFT tensor for the MLP of a sparse layer (which has none of its
        // own): one line, not a crash.
        lc_arch_names nm;
        lc_arch_names_get(&nm, &e.m.cfg);
        char bad[600], key[700], acfg[200];
        snprintf(bad, sizeof bad, "%s/bad-peft", e.tmp);
        ck_assert_int_eq(system((snprintf(key, sizeof key, "mkdir -p '%s'", bad), key)), 0);
        int n = snprintf(acfg, sizeof acfg, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                         "\"target_modules\": [\"%s\"]}", lc_arch_linear_name(&e.m.cfg, LC_LINEAR_KIND_GATE));
        lc_test_write(bad, "adapter_config.json", acfg, (size_t)n);
        snprintf(key, sizeof key, "base_model.model.model.layers.0.%s.lora_A.weight", nm.lin[LC_LINEAR_KIND_GATE]);
        float zeros[2 * 64] = {0};
        ck_assert_int_le(e.m.cfg.hidden_size, 64);
        lc_st_entry ent = {key, LC_DTYPE_F32, 2, {2, e.m.cfg.hidden_size}, zeros, sizeof(float) * 2 * e.m.cfg.hidden_size};
        snprintf(dir, sizeof dir, "%s/adapter_model.safetensors", bad);
        ck_assert_int_eq(lc_st_write(dir, &ent, 1, NULL, 0), LC_STATUS_OK);
        lc_lora worse;
        ck_assert_int_eq(lc_peft_load(bad, &e.m, &worse), LC_STATUS_INPUT);
        ck_assert_msg(strstr(lc_error_message(), "which that layer does not have (its MLP is a mixture of experts"),
                      "%s: %s", fam, lc_error_message());
        // A LoRA on the router (PEFT's all-linear adapts it): refused, naming
        // the tensor and that the router takes none.
        snprintf(key, sizeof key, "base_model.model.model.layers.0.%s.lora_A.weight", nm.router);
        ck_assert_int_eq(lc_st_write(dir, &ent, 1, NULL, 0), LC_STATUS_OK);
        ck_assert_int_eq(lc_peft_load(bad, &e.m, &worse), LC_STATUS_INPUT);
        ck_assert_msg(strstr(lc_error_message(), "unexpected tensor") && strstr(lc_error_message(), nm.router) &&
                          strstr(lc_error_message(), "never the router") && !strchr(lc_error_message(), '\n'),
                      "%s: %s", fam, lc_error_message());
        snprintf(dir, sizeof dir, "%s/merged.gguf", e.tmp);
        lc_status gst = lc_export_gguf(dir, e.f.model_dir, &e.m, &e.lora, tok, LC_DTYPE_F32);
        lc_tokenizer_free(tok);
        if (!strcmp(fam, "qwen2_moe")) { // the fixture's dense layer 1: llama.cpp's qwen2moe has none
            ck_assert_int_eq(gst, LC_STATUS_USAGE);
            ck_assert_msg(strstr(lc_error_message(), "llama.cpp's qwen2moe has no dense layers"), "%s",
                          lc_error_message());
            env_close(&e);
            return;
        }
        // Experts stacked as convert_hf_to_gguf.py writes them: [E, out, in]
        // per projection (ggml ne [in, out, E]), each expert's slice its
        // merged weight; the router in F32; expert_count, expert_used_count.
        ck_assert_msg(gst == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        lc_gguf_file g;
        ck_assert_msg(lc_gguf_open(&g, dir) == LC_STATUS_OK, "%s", lc_error_message());
        const char *arch_name = !strcmp(fam, "mixtral") ? "llama" : "olmoe";
        lc_gguf_str got;
        ck_assert(lc_gguf_kv_str(lc_gguf_find_kv(&g, "general.architecture"), 0, &got));
        ck_assert(got.len == strlen(arch_name) && !memcmp(got.s, arch_name, got.len));
        char name[96];
        int64_t v;
        snprintf(name, sizeof name, "%s.expert_count", arch_name);
        ck_assert(lc_gguf_kv_int(lc_gguf_find_kv(&g, name), 0, &v) && v == e.m.cfg.n_experts);
        snprintf(name, sizeof name, "%s.expert_used_count", arch_name);
        ck_assert(lc_gguf_kv_int(lc_gguf_find_kv(&g, name), 0, &v) && v == e.m.cfg.experts_per_tok);
        static const char *const exps[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        int C = e.m.cfg.hidden_size, F = e.m.cfg.moe_ff, E = e.m.cfg.n_experts;
        for (int l = 0; l < e.m.cfg.n_layers; l++) {
            snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
            const lc_gguf_tensor *router = lc_gguf_find_tensor(&g, name);
            ck_assert(router && router->type == LC_GGML_TYPE_F32 && router->ne[0] == C && router->ne[1] == E);
            ck_assert(!memcmp(router->data, e.m.layers[l].moe->router.w.data, sizeof(float) * (size_t)C * E));
            for (int p = 0; p < 3; p++) {
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, exps[p]);
                const lc_gguf_tensor *t = lc_gguf_find_tensor(&g, name);
                ck_assert_msg(t && t->n_dims == 3 && t->ne[2] == E && t->ne[0] == (p == 2 ? F : C) &&
                                  t->ne[1] == (p == 2 ? C : F), "%s: %s", fam, name);
                float *want = malloc(sizeof(float) * (size_t)C * F);
                for (int x = 0; x < E; x++) {
                    lc_export_merge_weight(want, lc_model_expert_linear(&e.m, l, x, (lc_expert_proj)p),
                                           lc_lora_get_expert(&e.lora, l, x, (lc_expert_proj)p));
                    ck_assert_msg(!memcmp(t->data + sizeof(float) * (size_t)x * C * F, want, sizeof(float) * (size_t)C * F),
                                  "%s: %s expert %d", fam, name, x);
                }
                free(want);
            }
            snprintf(name, sizeof name, "blk.%d.attn_q_norm.weight", l);
            ck_assert((lc_gguf_find_tensor(&g, name) != NULL) == !strcmp(fam, "olmoe"));
        }
        lc_gguf_close(&g);
        // The llama.cpp LoRA adapter holds the fixture adapter's expert
        // projections stacked (test_gguf_model applies it as llama.cpp does).
        snprintf(dir, sizeof dir, "%s/adapter.gguf", e.tmp);
        ck_assert_msg(lc_export_gguf_lora(dir, e.f.model_dir, &e.m, &e.lora) == LC_STATUS_OK, "%s: %s", fam,
                      lc_error_message());
        ck_assert(lc_gguf_open(&g, dir) == LC_STATUS_OK);
        int stacks = 0;
        for (size_t i = 0; i < g.n_tensors; i++)
            if (strstr(g.tensors[i].name, "_exps.weight.lora_a")) {
                ck_assert(g.tensors[i].n_dims == 3 && g.tensors[i].ne[2] == E);
                stacks++;
            }
        lc_lora_expert x;
        ck_assert_msg(stacks > 0 && lc_lora_expert_next(&e.lora, &e.m, &(int){0}, &x), "%s: no expert adapted", fam);
        lc_gguf_close(&g);
        env_close(&e);
        return;
    }
    ck_assert_msg(lc_export_gguf(dir, e.f.model_dir, &e.m, &e.lora, tok, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s",
                  fam, lc_error_message());
    lc_tokenizer_free(tok);
    lc_gguf_file g;
    ck_assert_msg(lc_gguf_open(&g, dir) == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
    const lc_gguf_kv *arch = lc_gguf_find_kv(&g, "general.architecture");
    lc_gguf_str got;
    ck_assert(arch && lc_gguf_kv_str(arch, 0, &got));
    // In lc_family_names order; mistral is llama to llama.cpp.
    static const char *const gguf_arch[] = {"llama", "qwen2", "gemma", "gemma2", "phi3", "gpt2",
                                            "falcon", "falcon", "olmo", "bloom"};
    const char *want = gguf_arch[_i];
    ck_assert_msg(got.len == strlen(want) && memcmp(got.s, want, got.len) == 0,
                  "%s: general.architecture %.*s, want %s", fam, (int)got.len, got.s, want);
    ck_assert_ptr_nonnull(lc_gguf_find_tensor(&g, "token_embd.weight"));
    lc_gguf_close(&g);
    env_close(&e);
}
END_TEST

// A learned position table bounds the positions looked up, not the row: a
// packed row longer than the table whose examples restart their positions is
// fine (the memory plan of `lora train` runs such a row), one position past
// the table is refused, and so is a row past it without explicit positions.
START_TEST(test_learned_positions_bound_positions) {
    family_env e;
    env_open(&e, _i);
    if (e.m.pos_embed) {
        int P = e.m.cfg.max_position_embeddings, T = P + 8;
        int32_t *tokens = calloc((size_t)T, sizeof *tokens), *pos = calloc((size_t)T, sizeof *pos);
        for (int t = 0; t < T; t++) pos[t] = t % 16; // examples of 16 tokens
        lc_forward_input in = {tokens, 1, T, pos, NULL, 0};
        ck_assert_msg(lc_forward_check_tokens(&e.m, &in) == LC_STATUS_OK, "%s: %s", fam_name(_i),
                      lc_error_message());
        pos[T - 1] = P;
        ck_assert_int_eq(lc_forward_check_tokens(&e.m, &in), LC_STATUS_INPUT);
        ck_assert_msg(strstr(lc_error_message(), "beyond the model's") != NULL, "%s", lc_error_message());
        in.pos = NULL;
        ck_assert_int_eq(lc_forward_check_tokens(&e.m, &in), LC_STATUS_INPUT);
        free(tokens);
        free(pos);
    }
    env_close(&e);
}
END_TEST

// Issue 20.4: data longer than a learned position table is refused when
// `lora train` and `lora eval` start, naming the file, the setting and both
// numbers, not mid-run from the kernel; a rotary model only warns (its
// positions extrapolate); ALiBi has no table.
START_TEST(test_examples_beyond_positions_found_at_start) {
    family_env e;
    env_open(&e, _i);
    int P = e.m.cfg.max_position_embeddings;
    // One "text" record of about 2P tokens (a space-separated word is a token
    // or two in every fixture tokenizer).
    size_t cap = 4 * (size_t)P + 64;
    char *text = malloc(cap);
    int n = snprintf(text, cap, "{\"text\": \"");
    for (int k = 0; k < 2 * P; k++) n += snprintf(text + n, cap - (size_t)n, " a");
    n += snprintf(text + n, cap - (size_t)n, "\"}\n");
    lc_test_write(e.tmp, "long.jsonl", text, (size_t)n);
    free(text);
    char data[600], limit[32], cfg[1800];
    snprintf(data, sizeof data, "%s/long.jsonl", e.tmp);
    snprintf(limit, sizeof limit, "%d", 4 * P);
    int c = snprintf(cfg, sizeof cfg,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/run\", \"lora\": {\"r\": 2},"
                     " \"batch_size\": 1, \"max_seq_len\": %d, \"steps\": 2}\n",
                     e.f.model_dir, data, e.tmp, 4 * P);
    lc_test_write(e.tmp, "cfg.json", cfg, (size_t)c);
    char cfg_path[600];
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.json", e.tmp);
    const char *train[] = {"train", "--config", cfg_path, NULL};
    const char *eval[] = {"eval", "--model", e.f.model_dir, "--data", data, "--max-seq-len", limit, NULL};
    lc_test_run t = lc_test_lora(train), v = lc_test_lora(eval);
    char want[700];
    if (e.m.cfg.pos == LC_POS_KIND_LEARNED) {
        snprintf(want, sizeof want, "%s:1: an example of ", data);
        ck_assert_msg(t.status == 2 && strstr(t.err, want) && strstr(t.err, "set max_seq_len to") &&
                          !strstr(t.err, "step 1/"),
                      "%s: %s", fam_name(_i), t.err);
        snprintf(want, sizeof want, "longer than the model's %d learned positions", P);
        ck_assert_msg(strstr(t.err, want) != NULL, "%s", t.err);
        ck_assert_msg(v.status == 2 && strstr(v.err, "set --max-seq-len to") && strstr(v.err, want),
                      "%s: %s", fam_name(_i), v.err);
    } else {
        ck_assert_msg(t.status == 0 && v.status == 0, "%s: %s%s", fam_name(_i), t.err, v.err);
        int warned = strstr(v.err, "rotary positions extrapolate") != NULL;
        ck_assert_msg(warned == (e.m.cfg.pos == LC_POS_KIND_ROPE), "%s: %s", fam_name(_i), v.err);
    }
    lc_test_run_free(&t);
    lc_test_run_free(&v);
    env_close(&e);
}
END_TEST

// The mixture-of-experts families through the command line: `lora train`
// with every projection of every expert adapted (all-linear) and dropout,
// stopped after 3 steps and resumed to 6, ends with the checkpoint of an
// uninterrupted run; the merged Hugging Face export evaluates as the base
// with the adapter; generation and `lora inspect` run.
static double eval_loss(const char *out) {
    const char *p = strstr(out, "\"loss\":");
    ck_assert_msg(p != NULL, "no loss in %s", out);
    return atof(p + 7);
}

START_TEST(test_moe_train_resume_export) {
    int i = count_names(lc_family_names) + _i;
    family_env e;
    env_open(&e, i);
    const char *fam = fam_name(i);
    char data[1200] = "";
    for (int k = 0; k < 12; k++) {
        size_t len = strlen(data);
        snprintf(data + len, sizeof data - len, "{\"prompt\": \"Tom has %d apples.\", \"completion\": \" He eats %d.\"}\n",
                 k + 3, k % 3 + 1);
    }
    lc_test_write(e.tmp, "data.jsonl", data, strlen(data));
    char cfg[1600], cfg_path[600], run[600], ck_a[700], ck_b[700];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"model\": \"%s\", \"train_data\": \"%s/data.jsonl\", \"output_dir\": \"%s/run\","
                     " \"lora\": {\"r\": 2, \"dropout\": 0.1%s}, \"optimizer\": {\"lr\": 0.01}, \"batch_size\": 2,"
                     " \"max_seq_len\": 32, \"schedule\": {\"type\": \"constant\", \"warmup_steps\": 0}, \"steps\": 6,"
                     " \"save_every\": 3, \"seed\": 3}\n",
                     e.f.model_dir, e.tmp, e.tmp,
                     // Mixtral's own names for its experts' projections; the others all-linear.
                     !strcmp(fam, "mixtral") ? ", \"targets\": [\"q_proj\", \"w1\", \"w3\", \"w2\"]" : "");
    lc_test_write(e.tmp, "run.json", cfg, (size_t)n);
    snprintf(cfg_path, sizeof cfg_path, "%s/run.json", e.tmp);
    snprintf(run, sizeof run, "%s/run", e.tmp);
    // The whole run, kept as run_a; then 3 steps and a resume to 6 in its place.
    const char *a[] = {"train", "--config", cfg_path, NULL};
    const char *b1[] = {"train", "--config", cfg_path, "--set", "steps=3", NULL};
    lc_test_run ra = lc_test_lora(a);
    snprintf(ck_a, sizeof ck_a, "%s/run_a", e.tmp);
    ck_assert_int_eq(rename(run, ck_a), 0);
    lc_test_run rb1 = lc_test_lora(b1), rb2 = lc_test_lora(a);
    ck_assert_msg(ra.status == 0 && rb1.status == 0 && rb2.status == 0, "%s: %s | %s | %s", fam, ra.err, rb1.err,
                  rb2.err);
    ck_assert_msg(strstr(rb2.err, "resum") != NULL, "%s: %s", fam, rb2.err);
    snprintf(ck_a, sizeof ck_a, "%s/run_a/checkpoint-6.h5", e.tmp);
    snprintf(ck_b, sizeof ck_b, "%s/run/checkpoint-6.h5", e.tmp);
    lc_test_assert_same_checkpoint(ck_a, ck_b, e.f.model_dir, fam);

    // Exports: PEFT (read back by eval) and merged Hugging Face, the same loss.
    char peft[600], hf[600], data_path[600], adapter[600];
    snprintf(peft, sizeof peft, "%s/peft", e.tmp);
    snprintf(hf, sizeof hf, "%s/merged", e.tmp);
    snprintf(data_path, sizeof data_path, "%s/data.jsonl", e.tmp);
    snprintf(adapter, sizeof adapter, "%s/run", e.tmp);
    const char *xp[] = {"export", "--model", e.f.model_dir, "--adapter", adapter, "--out", peft, "--format", "peft", NULL};
    const char *xh[] = {"export", "--model", e.f.model_dir, "--adapter", adapter, "--out", hf, "--format", "hf", NULL};
    char gguf[600];
    snprintf(gguf, sizeof gguf, "%s/x.gguf", e.tmp);
    const char *xg[] = {"export", "--model", e.f.model_dir, "--adapter", adapter, "--out", gguf, "--format", "gguf",
                        NULL};
    lc_test_run rp = lc_test_lora(xp), rh = lc_test_lora(xh), rg = lc_test_lora(xg);
    ck_assert_msg(rp.status == 0 && rh.status == 0, "%s: %s | %s", fam, rp.err, rh.err);
    bool qwen = !strcmp(fam, "qwen2_moe"); // its fixture's dense layer is what llama.cpp's qwen2moe lacks
    ck_assert_msg(qwen ? rg.status == 1 && strstr(rg.err, "has no dense layers") && access(gguf, F_OK) != 0
                       : rg.status == 0 && access(gguf, F_OK) == 0,
                  "%s: %d %s", fam, rg.status, rg.err);
    const char *e1[] = {"eval", "--model", e.f.model_dir, "--adapter", adapter, "--data", data_path, NULL};
    const char *e2[] = {"eval", "--model", e.f.model_dir, "--adapter", peft, "--data", data_path, NULL};
    const char *e3[] = {"eval", "--model", hf, "--data", data_path, NULL};
    const char *e4[] = {"eval", "--model", e.f.model_dir, "--data", data_path, NULL};
    lc_test_run v1 = lc_test_lora(e1), v2 = lc_test_lora(e2), v3 = lc_test_lora(e3), v4 = lc_test_lora(e4);
    ck_assert_msg(v1.status == 0 && v2.status == 0 && v3.status == 0 && v4.status == 0, "%s: %s%s%s%s", fam, v1.err,
                  v2.err, v3.err, v4.err);
    double l1 = eval_loss(v1.out), l2 = eval_loss(v2.out), l3 = eval_loss(v3.out), l4 = eval_loss(v4.out);
    ck_assert_msg(fabs(l1 - l2) <= 1e-6 * l1 && fabs(l1 - l3) <= 1e-4 * l1, "%s: eval %g, PEFT %g, merged %g", fam,
                  l1, l2, l3);
    ck_assert_msg(l1 < l4 - 0.05, "%s: tuned %g, base %g", fam, l1, l4); // it learned the data

    const char *gen[] = {"generate", "--model", e.f.model_dir, "--adapter", adapter, "--prompt", "Tom has 4 apples.",
                         "--max-tokens", "4", NULL};
    const char *ins[] = {"inspect", e.f.model_dir, NULL};
    lc_test_run rgen = lc_test_lora(gen), rins = lc_test_lora(ins);
    ck_assert_msg(rgen.status == 0 && rins.status == 0 && strstr(rins.out, "  experts        "), "%s: %s%s%s", fam,
                  rgen.err, rins.err, rins.out);
    lc_test_run *runs[] = {&ra, &rb1, &rb2, &rp, &rh, &rg, &v1, &v2, &v3, &v4, &rgen, &rins};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) lc_test_run_free(runs[k]);
    env_close(&e);
}
END_TEST

static Suite *families_suite(void) {
    Suite *s = suite_create("families");
    int n = count_names(lc_family_names) + count_names(lc_moe_family_names);
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_tokenizer_gives_reference_ids, 0, n);
    tcase_add_loop_test(tc, test_logits_match_pytorch, 0, n);
    tcase_add_loop_test(tc, test_lora_gradients_match_pytorch, 0, n);
    tcase_add_loop_test(tc, test_training_lowers_loss, 0, n);
    tcase_add_loop_test(tc, test_export_round_trips, 0, n);
    tcase_add_loop_test(tc, test_learned_positions_bound_positions, 0, n);
    tcase_add_loop_test(tc, test_examples_beyond_positions_found_at_start, 0, n);
    tcase_add_loop_test(tc, test_moe_train_resume_export, 0, count_names(lc_moe_family_names));
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lc_test_run_suite(families_suite()); }
