// Sampling: greedy, top-k (kept tokens and their frequencies), top-p, seeding,
// the repetition penalty.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sample.h"
#include "test_util.h"

START_TEST(test_greedy_and_seeding) {
    float logits[6] = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, 1.9f};
    lc_sampler s;
    ck_assert_int_eq(lc_sampler_init(&s, 6, 0.0f, 0, 1.0f, 0), LC_STATUS_OK);
    ck_assert_int_eq(lc_sampler_sample(&s, logits), 1); // first of the tied maxima
    lc_sampler_free(&s);
    lc_sampler a, b;
    lc_sampler_init(&a, 6, 1.0f, 0, 1.0f, 42);
    lc_sampler_init(&b, 6, 1.0f, 0, 1.0f, 42);
    for (int i = 0; i < 100; i++) ck_assert_int_eq(lc_sampler_sample(&a, logits), lc_sampler_sample(&b, logits));
    lc_sampler_free(&a);
    lc_sampler_free(&b);
}
END_TEST

// Frequencies of n draws against the expected probabilities (4-sigma bands).
static void check_frequencies(lc_sampler *s, const float *logits, int V, const double *expect, int n) {
    int *count = calloc((size_t)V, sizeof *count);
    for (int i = 0; i < n; i++) count[lc_sampler_sample(s, logits)]++;
    for (int v = 0; v < V; v++) {
        double p = expect[v], f = (double)count[v] / n, sd = sqrt(p * (1 - p) / n);
        if (p == 0.0) ck_assert_msg(count[v] == 0, "token %d sampled %d times, expected never", v, count[v]);
        else ck_assert_msg(fabs(f - p) <= 4 * sd + 1e-9, "token %d: frequency %g, expected %g", v, f, p);
    }
    free(count);
}

START_TEST(test_top_k_and_temperature) {
    enum { V = 200 };
    float logits[V];
    for (int v = 0; v < V; v++) logits[v] = (float)((v * 37) % 101) / 20.0f; // scattered, with ties
    double expect[V] = {0};
    // Top 5 at temperature 0.7, renormalized.
    int order[V];
    for (int v = 0; v < V; v++) order[v] = v;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (logits[order[j]] > logits[order[i]] || (logits[order[j]] == logits[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(logits[order[i]] / 0.7);
    for (int i = 0; i < 5; i++) expect[order[i]] = exp(logits[order[i]] / 0.7) / z;
    lc_sampler s;
    lc_sampler_init(&s, V, 0.7f, 5, 1.0f, 7);
    check_frequencies(&s, logits, V, expect, 20000);
    lc_sampler_free(&s);
}
END_TEST

START_TEST(test_top_p) {
    // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two (0.5 < 0.75 <= 0.8).
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    double expect[4] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    lc_sampler s;
    lc_sampler_init(&s, 4, 1.0f, 0, 0.75f, 3);
    check_frequencies(&s, logits, 4, expect, 20000);
    lc_sampler_free(&s);
    // With top-k 3 first: 0.5, 0.3, 0.15 renormalized; top_p 0.9 of that keeps all three.
    double expect3[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    lc_sampler_init(&s, 4, 1.0f, 3, 0.9f, 4);
    check_frequencies(&s, logits, 4, expect3, 20000);
    lc_sampler_free(&s);
}
END_TEST

START_TEST(test_repetition_penalty) {
    float logits[5] = {3.0f, 2.5f, -1.0f, -1.5f, 0.0f};
    lc_sampler s;
    ck_assert_int_eq(lc_sampler_init(&s, 5, 0.0f, 0, 1.0f, 0), LC_STATUS_OK);
    ck_assert_int_eq(lc_sampler_set_repetition_penalty(&s, 0.0f), LC_STATUS_USAGE);
    ck_assert_int_eq(lc_sampler_set_repetition_penalty(&s, 2.0f), LC_STATUS_OK);
    lc_sampler_accept(&s, 0);
    lc_sampler_accept(&s, 2);
    lc_sampler_accept(&s, 4);
    lc_sampler_accept(&s, 7); // outside the vocabulary: ignored
    // positive logits are divided, negative ones multiplied, unseen ones kept
    ck_assert(lc_sampler_logit(&s, logits, 0) == 1.5f);
    ck_assert(lc_sampler_logit(&s, logits, 1) == 2.5f);
    ck_assert(lc_sampler_logit(&s, logits, 2) == -2.0f);
    ck_assert(lc_sampler_logit(&s, logits, 3) == -1.5f);
    ck_assert(lc_sampler_logit(&s, logits, 4) == 0.0f);
    ck_assert_int_eq(lc_sampler_sample(&s, logits), 1); // 3 / 2 < 2.5
    lc_sampler_reset(&s);
    ck_assert_int_eq(lc_sampler_sample(&s, logits), 0);
    lc_sampler_free(&s);

    // Sampling sees the penalized logits: softmax(1.5, 2.5, -2, -1.5, 0) at temperature 1.
    float pen[5] = {1.5f, 2.5f, -2.0f, -1.5f, 0.0f};
    double expect[5], z = 0;
    for (int v = 0; v < 5; v++) z += exp(pen[v]);
    for (int v = 0; v < 5; v++) expect[v] = exp(pen[v]) / z;
    lc_sampler_init(&s, 5, 1.0f, 0, 1.0f, 11);
    lc_sampler_set_repetition_penalty(&s, 2.0f);
    lc_sampler_accept(&s, 0);
    lc_sampler_accept(&s, 2);
    check_frequencies(&s, logits, 5, expect, 20000);
    // 1 is off: the logits are used as they are
    lc_sampler_set_repetition_penalty(&s, 1.0f);
    lc_sampler_accept(&s, 0);
    ck_assert(lc_sampler_logit(&s, logits, 0) == 3.0f);
    lc_sampler_free(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("sampler");
    tcase_add_test(tc, test_greedy_and_seeding);
    tcase_add_test(tc, test_top_k_and_temperature);
    tcase_add_test(tc, test_top_p);
    tcase_add_test(tc, test_repetition_penalty);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
