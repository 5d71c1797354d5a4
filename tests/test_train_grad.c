// LoRA gradients of stories260K on a packed and padded batch against the
// PyTorch reference (tests/reference/lora_reference.py).
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "model/forward.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/train_pass.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define FIXTURE LC_SOURCE_DIR "/tests/fixtures/stories260k_lora_grads.bin"

typedef struct fixture {
    int r, B, T;
    float alpha, loss;
    int32_t *tokens, *targets, *pos, *seg;
    float *params, *grads;
    size_t P;
} fixture;

static void read_fixture(fixture *f, size_t P) {
    FILE *fp = fopen(FIXTURE, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", FIXTURE);
    ck_assert_int_eq(fread(&f->r, 4, 1, fp), 1);
    ck_assert_int_eq(fread(&f->B, 4, 1, fp), 1);
    ck_assert_int_eq(fread(&f->T, 4, 1, fp), 1);
    ck_assert_int_eq(fread(&f->alpha, 4, 1, fp), 1);
    ck_assert_int_eq(fread(&f->loss, 4, 1, fp), 1);
    size_t n = (size_t)f->B * f->T;
    int32_t **arrays[] = {&f->tokens, &f->targets, &f->pos, &f->seg};
    for (int i = 0; i < 4; i++) {
        *arrays[i] = malloc(sizeof(int32_t) * n);
        ck_assert_uint_eq(fread(*arrays[i], 4, n, fp), n);
    }
    if (P) {
        f->P = P;
        f->params = malloc(sizeof(float) * P);
        f->grads = malloc(sizeof(float) * P);
        ck_assert_uint_eq(fread(f->params, 4, P, fp), P);
        ck_assert_uint_eq(fread(f->grads, 4, P, fp), P);
        char extra;
        ck_assert_uint_eq(fread(&extra, 1, 1, fp), 0); // the layouts agree on P
    }
    fclose(fp);
}

static void free_fixture(fixture *f) {
    free(f->tokens);
    free(f->targets);
    free(f->pos);
    free(f->seg);
    free(f->params);
    free(f->grads);
}

// Runs forward + backward on the fixture batch; returns the loss.
static double run(lc_graph *g, const lc_model *m, lc_lora *lora, const fixture *f, int accumulate_split) {
    int n_targets = 0;
    for (int i = 0; i < f->B * f->T; i++) n_targets += f->targets[i] >= 0;
    double loss_sum = 0.0;
    int counted = 0;
    // accumulate_split: one row per micro-batch, normalized by the whole batch's targets.
    int rows_per = accumulate_split ? 1 : f->B;
    for (int b0 = 0; b0 < f->B; b0 += rows_per) {
        size_t off = (size_t)b0 * f->T;
        lc_graph_reset(g);
        lc_forward_input in = {f->tokens + off, rows_per, f->T, f->pos + off, f->seg + off, 0};
        lc_tensor *h;
        lc_status st = lc_model_forward_hidden(g, m, lora, NULL, &in, &h);
        ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
        st = lc_op_cross_entropy_w(g, h, &m->lm_head, m->cfg.final_softcap, f->targets + off, 1.0f / n_targets, &loss_sum,
                                 &counted);
        ck_assert_int_eq(st, LC_STATUS_OK);
        ck_assert_int_eq(lc_graph_backward(g), LC_STATUS_OK);
    }
    ck_assert_int_eq(counted, n_targets);
    return loss_sum / n_targets;
}

// The same through the per-layer training pass (what lora train runs).
static double run_pass(const lc_model *m, lc_lora *lora, const fixture *f, bool checkpointing) {
    int n_targets = 0;
    for (int i = 0; i < f->B * f->T; i++) n_targets += f->targets[i] >= 0;
    lc_train_pass p;
    ck_assert_int_eq(lc_train_pass_init(&p, m, checkpointing), LC_STATUS_OK);
    double loss_sum = 0.0;
    int counted = 0;
    lc_forward_input in = {f->tokens, f->B, f->T, f->pos, f->seg, 0};
    lc_status st = lc_train_pass_run(&p, m, lora, &in, f->targets, 1.0f / n_targets, &loss_sum, &counted);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(counted, n_targets);
    lc_train_pass_free(&p);
    return loss_sum / n_targets;
}

// mode: 0 one graph, 1 one graph per accumulated micro-batch row, 2 the
// training pass, 3 the training pass with activation checkpointing.
static void check_against_reference(int mode) {
    int accumulate_split = mode == 1;
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), LC_STATUS_OK);
    fixture f = {0};
    read_fixture(&f, 0);
    lc_lora_config cfg = {.r = f.r, .alpha = f.alpha, .dropout = 0.0f, .targets = LC_LINEAR_KIND_ALL};
    lc_lora lora;
    ck_assert_int_eq(lc_lora_init(&lora, &m, &cfg, 1, true), LC_STATUS_OK);
    free_fixture(&f);
    read_fixture(&f, lora.n_params);
    memcpy(lora.params, f.params, sizeof(float) * f.P);
    memset(lora.grads, 0, sizeof(float) * f.P);

    lc_graph g;
    lc_graph_init(&g, true);
    double loss = mode >= 2 ? run_pass(&m, &lora, &f, mode == 3) : run(&g, &m, &lora, &f, accumulate_split);
    ck_assert_msg(fabs(loss - f.loss) <= 1e-4 * fabs(f.loss), "loss %.6f vs reference %.6f", loss, f.loss);

    // Per adapted matrix: max |g - ref| relative to max |ref| of that matrix.
    size_t off = 0;
    float worst = 0.0f;
    for (int l = 0; l < m.cfg.n_layers; l++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *lin = &m.layers[l].lin[k];
            if (!lc_lora_get(&lora, l, (lc_linear_kind)k)) continue; // a kind Llama does not have
            size_t sizes[2] = {(size_t)f.r * lin->in, (size_t)lin->out * f.r};
            for (int ab = 0; ab < 2; ab++) {
                float max_ref = 0.0f, max_err = 0.0f;
                for (size_t i = 0; i < sizes[ab]; i++) {
                    max_ref = fmaxf(max_ref, fabsf(f.grads[off + i]));
                    float e = fabsf(lora.grads[off + i] - f.grads[off + i]);
                    if (!(e <= max_err)) max_err = e;
                }
                ck_assert_msg(max_ref > 0.0f, "layer %d %s %c: reference gradient is zero", l,
                              lc_linear_kind_name(k), ab ? 'B' : 'A');
                float rel = max_err / max_ref;
                ck_assert_msg(rel <= 1e-3f, "layer %d %s %c: relative error %g", l, lc_linear_kind_name(k),
                              ab ? 'B' : 'A', rel);
                if (rel > worst) worst = rel;
                off += sizes[ab];
            }
        }
    }
    ck_assert_uint_eq(off, lora.n_params);
    lc_graph_free(&g);
    lc_lora_free(&lora);
    lc_model_free(&m);
    free_fixture(&f);
}

START_TEST(test_lora_grads_match_pytorch) { check_against_reference(0); }
END_TEST

START_TEST(test_grad_accumulation_matches_whole_batch) {
    // The same batch as two micro-batches normalized by the total targets.
    check_against_reference(1);
}
END_TEST

START_TEST(test_training_pass_matches_pytorch) { check_against_reference(2); }
END_TEST

START_TEST(test_checkpointed_training_pass_matches_pytorch) { check_against_reference(3); }
END_TEST

// A copy of m (sharing everything else) whose q/k/v and gate/up weights are
// stacked row-wise in new buffers, as the loader stacks converted weights:
// the forward pass then runs each group as one GEMM.
static lc_model stacked_copy(const lc_model *m, float ***bufs) {
    lc_model s = *m;
    s.layers = malloc(sizeof *s.layers * (size_t)m->cfg.n_layers);
    *bufs = malloc(sizeof(float *) * 2 * (size_t)m->cfg.n_layers);
    ck_assert(s.layers && *bufs);
    static const int groups[2][2] = {{LC_LINEAR_KIND_Q, 3}, {LC_LINEAR_KIND_GATE, 2}};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        s.layers[l] = m->layers[l];
        for (int gi = 0; gi < 2; gi++) {
            size_t total = 0;
            for (int i = 0; i < groups[gi][1]; i++) {
                const lc_linear *lin = &m->layers[l].lin[groups[gi][0] + i];
                total += (size_t)lin->out * lin->in;
            }
            float *buf = malloc(sizeof(float) * total);
            ck_assert(buf != NULL);
            (*bufs)[2 * l + gi] = buf;
            for (int i = 0; i < groups[gi][1]; i++) {
                lc_linear *lin = &s.layers[l].lin[groups[gi][0] + i];
                memcpy(buf, lin->w.data, sizeof(float) * (size_t)lin->out * lin->in);
                lin->w.data = buf;
                buf += (size_t)lin->out * lin->in;
            }
        }
    }
    return s;
}

// The stacked path (one GEMM per group, adapters on column ranges) gives the
// separate path's loss and gradients, dropout masks included.
START_TEST(test_stacked_projections_match_separate) {
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), LC_STATUS_OK);
    float **bufs;
    lc_model s = stacked_copy(&m, &bufs);
    fixture f = {0};
    read_fixture(&f, 0);
    for (int drop = 0; drop < 2; drop++) {
        lc_lora_config cfg = {.r = f.r, .alpha = f.alpha, .dropout = drop ? 0.2f : 0.0f,
                              .targets = LC_LINEAR_KIND_ALL};
        lc_lora a, b;
        ck_assert_int_eq(lc_lora_init(&a, &m, &cfg, 5, true), LC_STATUS_OK);
        ck_assert_int_eq(lc_lora_init(&b, &s, &cfg, 5, true), LC_STATUS_OK);
        for (size_t i = 0; i < a.n_params; i++) a.params[i] = b.params[i] = 0.05f * sinf((float)i);
        lc_lora_set_dropout_seed(&a, 11);
        lc_lora_set_dropout_seed(&b, 11);
        memset(a.grads, 0, sizeof(float) * a.n_params);
        memset(b.grads, 0, sizeof(float) * b.n_params);
        double la = run_pass(&m, &a, &f, false), lb = run_pass(&s, &b, &f, false);
        ck_assert_msg(fabs(la - lb) <= 1e-5 * fabs(la), "loss %.7f stacked vs %.7f separate", lb, la);
        float max_ref = 0.0f, max_err = 0.0f;
        for (size_t i = 0; i < a.n_params; i++) {
            max_ref = fmaxf(max_ref, fabsf(a.grads[i]));
            max_err = fmaxf(max_err, fabsf(a.grads[i] - b.grads[i]));
        }
        ck_assert_msg(max_ref > 0.0f && max_err <= 1e-4f * max_ref, "dropout %d: gradients differ by %g (largest %g)",
                      drop, max_err, max_ref);
        lc_lora_free(&a);
        lc_lora_free(&b);
    }
    for (int i = 0; i < 2 * m.cfg.n_layers; i++) free(bufs[i]);
    free(bufs);
    free(s.layers);
    free_fixture(&f);
    lc_model_free(&m);
}
END_TEST

START_TEST(test_lora_init_like_peft) {
    lc_model m;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), LC_STATUS_OK);
    lc_lora_config cfg = {.r = 8, .alpha = 16.0f, .dropout = 0.0f,
                          .targets = 1u << LC_LINEAR_KIND_Q | 1u << LC_LINEAR_KIND_DOWN};
    lc_lora a, b;
    ck_assert_int_eq(lc_lora_init(&a, &m, &cfg, 42, false), LC_STATUS_OK);
    ck_assert_int_eq(lc_lora_init(&b, &m, &cfg, 42, false), LC_STATUS_OK);
    ck_assert_mem_eq(a.params, b.params, sizeof(float) * a.n_params); // seeded
    ck_assert_float_eq(a.scale, 2.0f);
    for (int l = 0; l < m.cfg.n_layers; l++) {
        ck_assert_ptr_null(lc_lora_get(&a, l, LC_LINEAR_KIND_K));
        const lc_lora_ref *down = lc_lora_get(&a, l, LC_LINEAR_KIND_DOWN);
        ck_assert_ptr_nonnull(down);
        int in = m.layers[l].lin[LC_LINEAR_KIND_DOWN].in, out = m.layers[l].lin[LC_LINEAR_KIND_DOWN].out;
        float bound = 1.0f / sqrtf((float)in), maxa = 0.0f;
        for (int i = 0; i < 8 * in; i++) maxa = fmaxf(maxa, fabsf(down->A[i]));
        ck_assert(maxa <= bound && maxa > 0.9f * bound); // uniform on (-1/sqrt(in), 1/sqrt(in))
        for (int i = 0; i < out * 8; i++) ck_assert_float_eq(down->B[i], 0.0f);
    }
    cfg.rslora = true;
    lc_lora c;
    ck_assert_int_eq(lc_lora_init(&c, &m, &cfg, 42, false), LC_STATUS_OK);
    ck_assert_float_eq_tol(c.scale, 16.0f / sqrtf(8.0f), 1e-6f);
    lc_lora_free(&a);
    lc_lora_free(&b);
    lc_lora_free(&c);
    lc_model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_grad");
    TCase *tc = tcase_create("stories260K");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lora_grads_match_pytorch);
    tcase_add_test(tc, test_grad_accumulation_matches_whole_batch);
    tcase_add_test(tc, test_training_pass_matches_pytorch);
    tcase_add_test(tc, test_checkpointed_training_pass_matches_pytorch);
    tcase_add_test(tc, test_lora_init_like_peft);
    tcase_add_test(tc, test_stacked_projections_match_separate);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
