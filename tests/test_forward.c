// Forward pass of stories260K against the PyTorch reference logits
// (tests/reference/llama_reference.py -> tests/fixtures/stories260k_logits.bin).
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "model/forward.h"
#include "model/model.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define FIXTURE LC_SOURCE_DIR "/tests/fixtures/stories260k_logits.bin"
#define TOL 1e-4f

static int ref_T, ref_V;
static int32_t *ref_ids;
static float *ref_logits;
static lc_model model;

static void setup(void) {
    FILE *f = fopen(FIXTURE, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", FIXTURE);
    ck_assert_int_eq(fread(&ref_T, 4, 1, f), 1);
    ck_assert_int_eq(fread(&ref_V, 4, 1, f), 1);
    ck_assert(ref_T > 0 && ref_T < 4096 && ref_V > 0 && ref_V < 1 << 20);
    ref_ids = malloc(sizeof(int32_t) * ref_T);
    ref_logits = malloc(sizeof(float) * ref_T * ref_V);
    ck_assert_int_eq(fread(ref_ids, 4, ref_T, f), ref_T);
    ck_assert_int_eq(fread(ref_logits, 4, (size_t)ref_T * ref_V, f), (size_t)ref_T * ref_V);
    fclose(f);
    lc_status st = lc_model_load(&model, MODEL_DIR);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(model.cfg.vocab_size, ref_V);
}

static void teardown(void) {
    lc_model_free(&model);
    free(ref_ids);
    free(ref_logits);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN propagates as a failure
    }
    return m;
}

START_TEST(test_logits_all_positions) {
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, &model, 1, ref_T, ref_T, ref_T), LC_STATUS_OK);
    ck_assert_int_eq(lc_forward(&s, &model, ref_ids, 1, ref_T, 0, LC_LOGITS_MODE_ALL), LC_STATUS_OK);
    float d = max_abs_diff(s.logits, ref_logits, (size_t)ref_T * ref_V);
    ck_assert_msg(d <= TOL, "max abs diff %g", d);
    lc_forward_state_free(&s);
}
END_TEST

START_TEST(test_logits_incremental_kv_cache) {
    // One token at a time through the KV cache must equal the full pass.
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, &model, 1, ref_T, 1, 1), LC_STATUS_OK);
    for (int t = 0; t < ref_T; t++) {
        ck_assert_int_eq(lc_forward(&s, &model, &ref_ids[t], 1, 1, t, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
        float d = max_abs_diff(s.logits, ref_logits + (size_t)t * ref_V, ref_V);
        ck_assert_msg(d <= TOL, "position %d: max abs diff %g", t, d);
    }
    lc_forward_state_free(&s);
}
END_TEST

START_TEST(test_logits_chunked_prefill) {
    lc_forward_state s;
    int split = 7;
    ck_assert_int_eq(lc_forward_state_init(&s, &model, 1, ref_T, ref_T, ref_T), LC_STATUS_OK);
    ck_assert_int_eq(lc_forward(&s, &model, ref_ids, 1, split, 0, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
    float d = max_abs_diff(s.logits, ref_logits + (size_t)(split - 1) * ref_V, ref_V);
    ck_assert_msg(d <= TOL, "first chunk: max abs diff %g", d);
    ck_assert_int_eq(lc_forward(&s, &model, ref_ids + split, 1, ref_T - split, split, LC_LOGITS_MODE_ALL),
                     LC_STATUS_OK);
    d = max_abs_diff(s.logits, ref_logits + (size_t)split * ref_V, (size_t)(ref_T - split) * ref_V);
    ck_assert_msg(d <= TOL, "second chunk: max abs diff %g", d);
    lc_forward_state_free(&s);
}
END_TEST

START_TEST(test_logits_batch_of_two) {
    // Two sequences in one call: the second is the first shifted by one token,
    // so a mix-up between sequences shows as a mismatch.
    int T = ref_T - 1;
    int32_t *ids = malloc(sizeof(int32_t) * 2 * T);
    memcpy(ids, ref_ids, sizeof(int32_t) * T);
    memcpy(ids + T, ref_ids, sizeof(int32_t) * T);
    ids[T] = ref_ids[0];
    lc_forward_state s;
    ck_assert_int_eq(lc_forward_state_init(&s, &model, 2, T, 2 * T, 2 * T), LC_STATUS_OK);
    ck_assert_int_eq(lc_forward(&s, &model, ids, 2, T, 0, LC_LOGITS_MODE_ALL), LC_STATUS_OK);
    float d = max_abs_diff(s.logits, ref_logits, (size_t)T * ref_V);
    ck_assert_msg(d <= TOL, "sequence 0: max abs diff %g", d);
    d = max_abs_diff(s.logits + (size_t)T * ref_V, ref_logits, (size_t)T * ref_V);
    ck_assert_msg(d <= TOL, "sequence 1: max abs diff %g", d);
    ck_assert_int_eq(lc_forward(&s, &model, ids, 2, T, 0, LC_LOGITS_MODE_LAST), LC_STATUS_OK);
    d = max_abs_diff(s.logits + ref_V, ref_logits + (size_t)(T - 1) * ref_V, ref_V);
    ck_assert_msg(d <= TOL, "last row of sequence 1: max abs diff %g", d);
    lc_forward_state_free(&s);
    free(ids);
}
END_TEST

START_TEST(test_token_out_of_vocabulary) {
    lc_forward_state s;
    int32_t bad = ref_V;
    ck_assert_int_eq(lc_forward_state_init(&s, &model, 1, 4, 4, 4), LC_STATUS_OK);
    ck_assert_int_eq(lc_forward(&s, &model, &bad, 1, 1, 0, LC_LOGITS_MODE_LAST), LC_STATUS_INPUT);
    ck_assert_int_eq(lc_forward(&s, &model, ref_ids, 1, 4, 1, LC_LOGITS_MODE_LAST), LC_STATUS_RUNTIME);
    lc_forward_state_free(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("stories260K");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_logits_all_positions);
    tcase_add_test(tc, test_logits_incremental_kv_cache);
    tcase_add_test(tc, test_logits_chunked_prefill);
    tcase_add_test(tc, test_logits_batch_of_two);
    tcase_add_test(tc, test_token_out_of_vocabulary);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
