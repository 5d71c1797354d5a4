// Memory of a training run whose batch shapes vary, as packed batches of
// real data make them: after the largest shape has been seen, the training
// pass maps nothing new and holds the same bytes, step after step; planned
// for the largest shape the config allows (as `lora train` does), from the
// first step on. Counted in chunks mapped and bytes held, never wall time.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/train_pass.h"
#include "optim/adamw.h"
#include "train/trainer.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/gsm8k_test.jsonl"

enum { STEPS = 48, B = 4, MAX_LEN = 512 };

// Trains STEPS packed steps of stories260K on GSM8K with every arena's chunk
// size lowered to 64 KiB, so each step's activations span many chunks (the
// real model's default 16 MiB would hold this small model in one and hide
// the effect), and checks what the pass holds after each step.
static void run_steps(bool checkpointing, bool plan) {
    lc_model m;
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_model_load(&m, MODEL_DIR), LC_STATUS_OK);
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, MODEL_DIR), LC_STATUS_OK);
    lc_dataset ds;
    lc_dataset_options dopt = {.max_seq_len = MAX_LEN, .mask_prompt = true};
    ck_assert_int_eq(lc_dataset_load(&ds, DATA, tok, &dopt), LC_STATUS_OK);

    // The shapes this run's batches will have, from the same batcher.
    lc_batcher it;
    lc_batch b;
    ck_assert_int_eq(lc_batch_init(&b, B, MAX_LEN), LC_STATUS_OK);
    ck_assert_int_eq(lc_batcher_init(&it, &ds, B, MAX_LEN, true, true, 3), LC_STATUS_OK);
    int T[STEPS], largest = 0, n_shapes = 0;
    for (int s = 0; s < STEPS; s++) {
        lc_batcher_next(&it, &b);
        ck_assert_int_eq(b.B, B);
        T[s] = b.T;
        bool seen = false;
        for (int p = 0; p < s; p++) seen |= T[p] == T[s];
        n_shapes += !seen;
        if (T[s] > T[largest]) largest = s;
    }
    lc_batcher_free(&it);
    // A test of varying shapes, with room after the largest to see growth.
    fprintf(stderr, "shapes %d largest T %d at step %d\n", n_shapes, T[largest], largest + 1);
    ck_assert_int_ge(n_shapes, 10);
    ck_assert_int_le(largest, STEPS - 20);

    lc_lora lora;
    lc_lora_config lcfg = {.r = 8, .alpha = 16.0f, .dropout = 0.0f, .targets = LC_LINEAR_KIND_ALL};
    lc_adamw opt;
    lc_adamw_config acfg = {0.9f, 0.999f, 1e-8f, 0.0f};
    lc_train_pass pass;
    ck_assert_int_eq(lc_lora_init(&lora, &m, &lcfg, 1, true), LC_STATUS_OK);
    ck_assert_int_eq(lc_adamw_init(&opt, lora.n_params, &acfg), LC_STATUS_OK);
    ck_assert_int_eq(lc_train_pass_init(&pass, &m, checkpointing), LC_STATUS_OK);
    int n_graphs = checkpointing ? 1 : m.cfg.n_layers;
    for (int i = 0; i < n_graphs; i++) pass.layers[i].arena.chunk_size = 1 << 16;
    pass.keep.arena.chunk_size = pass.head.arena.chunk_size = pass.grads.chunk_size = 1 << 16;

    // Planned for the largest shape the config allows: nothing is mapped from
    // the first step on, and each arena is one chunk.
    lc_train_pass_memory planned = {0};
    if (plan) {
        ck_assert_int_eq(lc_train_pass_plan(&pass, &m, &lora, B, MAX_LEN), LC_STATUS_OK);
        planned = lc_train_pass_get_memory(&pass);
        ck_assert_int_eq(planned.n_chunks, n_graphs + 4);
        for (size_t i = 0; i < lora.n_params; i++) ck_assert(lora.grads[i] == 0.0f);
    }
    ck_assert_int_eq(lc_batcher_init(&it, &ds, B, MAX_LEN, true, true, 3), LC_STATUS_OK);
    lc_step_ctx ctx = {&m, &lora, &opt, &pass, 1.0f, 0};
    lc_train_pass_memory settled = {0};
    double first_loss = 0, last_loss = 0;
    for (int s = 0; s < STEPS; s++) {
        lc_batcher_next(&it, &b);
        ck_assert_int_eq(b.T, T[s]);
        lc_step_result r;
        ck_assert_int_eq(lc_train_step(&ctx, &b, 1, s, 1e-3f, &r), LC_STATUS_OK);
        ck_assert(!r.nonfinite);
        if (s == 0) first_loss = r.loss;
        last_loss = r.loss;
        lc_train_pass_memory mem = lc_train_pass_get_memory(&pass);
        if (plan)
            ck_assert_msg(mem.n_maps == planned.n_maps && mem.held_bytes == planned.held_bytes,
                          "planned: step %d (T %d) mapped %lld chunks, %zu bytes held; after the plan %lld, %zu",
                          s + 1, T[s], (long long)mem.n_maps, mem.held_bytes, (long long)planned.n_maps,
                          planned.held_bytes);
        // The step after the largest makes each arena one chunk; from then on
        // nothing changes.
        if (s == largest + 1) {
            settled = mem;
            ck_assert_int_eq(mem.n_chunks, n_graphs + 4);
        } else if (s > largest + 1) {
            ck_assert_msg(mem.n_maps == settled.n_maps && mem.held_bytes == settled.held_bytes,
                          "step %d (T %d, largest %d at step %d): %lld chunks mapped, %zu bytes held; after the "
                          "largest: %lld, %zu", s + 1, T[s], T[largest], largest + 1, (long long)mem.n_maps,
                          mem.held_bytes, (long long)settled.n_maps, settled.held_bytes);
            ck_assert_int_eq(mem.n_chunks, n_graphs + 4);
        }
    }
    ck_assert(last_loss < first_loss); // it did train

    lc_batcher_free(&it);
    lc_batch_free(&b);
    lc_train_pass_free(&pass);
    lc_adamw_free(&opt);
    lc_lora_free(&lora);
    lc_dataset_free(&ds);
    lc_tokenizer_free(tok);
    lc_model_free(&m);
}

START_TEST(test_packed_steps_hold_memory) { run_steps(false, false); }
END_TEST

START_TEST(test_packed_steps_hold_memory_checkpointing) { run_steps(true, false); }
END_TEST

START_TEST(test_planned_steps_map_nothing) {
    run_steps(false, true);
    run_steps(true, true);
}
END_TEST

static Suite *memory_suite(void) {
    Suite *s = suite_create("train_memory");
    TCase *tc = tcase_create("arenas");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_packed_steps_hold_memory);
    tcase_add_test(tc, test_packed_steps_hold_memory_checkpointing);
    tcase_add_test(tc, test_planned_steps_map_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lc_test_run_suite(memory_suite()); }
