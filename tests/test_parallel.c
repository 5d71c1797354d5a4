// The thread pool (autograd/parallel.c): every task runs exactly once, also
// when runs repeat, when a task starts a run of its own and when the thread
// count changes; the ranges that split rows between tasks tile them exactly;
// the products split across it (autograd/blas.c) are right to the rounding
// bound of their size; row kernels split across it equal the same kernel run
// row by row.
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/parallel.h"

typedef struct count_ctx {
    atomic_int *runs;
    atomic_int nested;
} count_ctx;

static void count_task(void *ctx, int task, int thread) {
    count_ctx *c = ctx;
    ck_assert_int_ge(thread, 0);
    ck_assert_int_lt(thread, lc_parallel_threads());
    atomic_fetch_add(&c->runs[task], 1);
}

static void nested_task(void *ctx, int task, int thread) {
    (void)task;
    (void)thread;
    count_ctx *c = ctx;
    // A run from inside a task runs on this thread, every task once.
    atomic_int inner[5];
    for (int i = 0; i < 5; i++) atomic_init(&inner[i], 0);
    count_ctx ic = {inner, 0};
    lc_parallel_for(5, count_task, &ic);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(atomic_load(&inner[i]), 1);
    atomic_fetch_add(&c->nested, 1);
}

START_TEST(test_every_task_runs_once) {
    ck_assert_int_ge(lc_parallel_threads(), 1);
    static const int sizes[] = {1, 2, 3, 17, 1000};
    for (int s = 0; s < 5; s++) {
        int n = sizes[s];
        atomic_int *runs = malloc(sizeof *runs * (size_t)n);
        for (int i = 0; i < n; i++) atomic_init(&runs[i], 0);
        count_ctx c = {runs, 0};
        for (int rep = 0; rep < 3; rep++) lc_parallel_for(n, count_task, &c);
        for (int i = 0; i < n; i++) ck_assert_msg(atomic_load(&runs[i]) == 3, "%d tasks: task %d ran %d times", n, i,
                                                  atomic_load(&runs[i]));
        free(runs);
    }
    count_ctx c = {NULL, 0};
    atomic_init(&c.nested, 0);
    lc_parallel_for(4, nested_task, &c);
    ck_assert_int_eq(atomic_load(&c.nested), 4);
}
END_TEST

START_TEST(test_ranges_tile) {
    static const size_t ns[] = {0, 1, 15, 16, 17, 1000, 4099};
    for (int a = 0; a < 7; a++)
        for (int tasks = 1; tasks <= 5; tasks++)
            for (size_t align = 1; align <= 16; align *= 16) {
                size_t next = 0;
                for (int t = 0; t < tasks; t++) {
                    size_t b, e;
                    lc_parallel_range(ns[a], t, tasks, align, &b, &e);
                    ck_assert_uint_eq(b, next);
                    ck_assert_uint_le(b, e);
                    if (e < ns[a]) ck_assert_uint_eq(e % align, 0);
                    next = e;
                }
                ck_assert_uint_eq(next, ns[a]);
            }
}
END_TEST

static float *rand_buf(size_t n, unsigned *seed) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
    return p;
}

// The rounding bound of one product element computed in float in any
// summation order: |computed - exact| <= gamma(K + 2) * (|alpha| sum_k
// |a_ik b_kj| + |beta c_ij|), with gamma(n) ~ n u and u = FLT_EPSILON / 2.
// Taken as (K + 2) * FLT_EPSILON, twice the bound: a share that reads the
// wrong rows, columns or leading dimension is off by O(1), far beyond it.
static double product_bound(int K, double abs_sum) { return (K + 2) * (double)FLT_EPSILON * abs_sum; }

// lc_blas_sgemm's shares (by rows and by columns, every transpose, leading
// dimensions wider than the matrices, beta 0 and 1) compute the product: each
// element within the rounding bound of the exact (double) value, and the
// padding beyond N untouched. Not bit for bit against one OpenBLAS call: a
// share runs the same call on fewer rows or columns, which changes which edge
// micro-kernels OpenBLAS picks, and with some kernels (Haswell) the last bits.
START_TEST(test_split_products_match) {
    unsigned seed = 11;
    // (M, N, K): A the larger operand (split by rows), B the larger (by columns).
    static const int shapes[][3] = {{300, 40, 200}, {40, 300, 200}, {257, 129, 65}};
    for (int sh = 0; sh < 3; sh++)
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta < 2; beta++) {
                bool ta = t & 1, tb = t & 2;
                int M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7;
                float *A = rand_buf((size_t)(ta ? K : M) * lda, &seed), *B = rand_buf((size_t)(tb ? N : K) * ldb, &seed);
                float *C = rand_buf((size_t)M * ldc, &seed), *C0 = malloc(sizeof(float) * (size_t)M * ldc);
                memcpy(C0, C, sizeof(float) * (size_t)M * ldc);
                lc_blas_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, (float)beta, C, ldc);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < ldc; j++) {
                        size_t at = (size_t)i * ldc + j;
                        if (j >= N) {
                            ck_assert_msg(C[at] == C0[at], "shape %d trans %d: padding C[%zu] changed", sh, t, at);
                            continue;
                        }
                        double exact = beta * (double)C0[at], abs_sum = fabs(beta * (double)C0[at]);
                        for (int k = 0; k < K; k++) {
                            double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                            double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                            exact += 0.5 * a * b;
                            abs_sum += 0.5 * fabs(a * b);
                        }
                        ck_assert_msg(fabs(C[at] - exact) <= product_bound(K, abs_sum),
                                      "shape %d trans %d beta %d: C[%d,%d] %.9g vs exact %.9g (bound %.3g)", sh, t,
                                      beta, i, j, C[at], exact, product_bound(K, abs_sum));
                    }
                free(A);
                free(B);
                free(C);
                free(C0);
            }
    int M = 1000, N = 300;
    float *A = rand_buf((size_t)M * N, &seed), *x = rand_buf((size_t)N, &seed), *y = rand_buf((size_t)M, &seed);
    float *y0 = malloc(sizeof(float) * M);
    memcpy(y0, y, sizeof(float) * M);
    lc_blas_sgemv(M, N, 2.0f, A, N, x, 1.0f, y);
    for (int i = 0; i < M; i++) {
        double exact = y0[i], abs_sum = fabs((double)y0[i]);
        for (int k = 0; k < N; k++) {
            exact += 2.0 * A[(size_t)i * N + k] * x[k];
            abs_sum += 2.0 * fabs((double)A[(size_t)i * N + k] * x[k]);
        }
        ck_assert_msg(fabs(y[i] - exact) <= product_bound(N, abs_sum), "sgemv y[%d] %.9g vs exact %.9g", i, y[i],
                      exact);
    }
    free(A);
    free(x);
    free(y);
    free(y0);
}
END_TEST

START_TEST(test_set_threads) {
    int n = lc_parallel_threads();
    lc_parallel_set_threads(1);
    ck_assert_int_eq(lc_parallel_threads(), 1);
    atomic_int runs[7];
    for (int i = 0; i < 7; i++) atomic_init(&runs[i], 0);
    count_ctx c = {runs, 0};
    lc_parallel_for(7, count_task, &c);
    lc_parallel_set_threads(3);
    ck_assert_int_eq(lc_parallel_threads(), 3);
    lc_parallel_for(7, count_task, &c);
    lc_parallel_set_threads(n);
    lc_parallel_for(7, count_task, &c);
    for (int i = 0; i < 7; i++) ck_assert_int_eq(atomic_load(&runs[i]), 3);
}
END_TEST

// Row-wise kernels split across the pool above LC_PARALLEL_MIN_WORK give what
// the same kernel gives one row at a time on the calling thread, bit for bit.
START_TEST(test_split_rows_match) {
    unsigned seed = 5;
    int N = 640, C = 512; // 327,680 elements: split
    ck_assert_double_ge((double)N * C, LC_PARALLEL_MIN_WORK);
    float *x = rand_buf((size_t)N * C, &seed), *w = rand_buf((size_t)C, &seed), *dy = rand_buf((size_t)N * C, &seed);
    float *y = malloc(sizeof(float) * N * C), *y1 = malloc(sizeof(float) * N * C), *r = malloc(sizeof(float) * N);
    float *r1 = malloc(sizeof(float) * N);
    lc_rmsnorm_forward(y, r, x, w, 1e-5f, N, C);
    for (int n = 0; n < N; n++) lc_rmsnorm_forward(y1 + (size_t)n * C, r1 + n, x + (size_t)n * C, w, 1e-5f, 1, C);
    for (size_t i = 0; i < (size_t)N * C; i++) ck_assert_msg(y[i] == y1[i], "rmsnorm y[%zu]", i);
    for (int n = 0; n < N; n++) ck_assert_msg(r[n] == r1[n], "rmsnorm rstd[%d]", n);
    // Flat kernels: one call over everything against row-sized calls.
    lc_glu_forward(y, x, dy, LC_ACT_KIND_GELU_TANH, (size_t)N * C);
    for (int n = 0; n < N; n++)
        lc_glu_forward(y1 + (size_t)n * C, x + (size_t)n * C, dy + (size_t)n * C, LC_ACT_KIND_GELU_TANH, (size_t)C);
    for (size_t i = 0; i < (size_t)N * C; i++) ck_assert_msg(y[i] == y1[i], "glu y[%zu]", i);
    free(x);
    free(w);
    free(dy);
    free(y);
    free(y1);
    free(r);
    free(r1);
}
END_TEST

static Suite *parallel_suite(void) {
    Suite *s = suite_create("parallel");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, test_every_task_runs_once);
    tcase_add_test(tc, test_ranges_tile);
    tcase_add_test(tc, test_split_products_match);
    tcase_add_test(tc, test_set_threads);
    tcase_add_test(tc, test_split_rows_match);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(parallel_suite());
}
