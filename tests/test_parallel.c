// The thread pool (autograd/parallel.c): every task runs exactly once, also
// when runs repeat and when a task starts a run of its own, and the ranges
// that split rows between tasks tile them exactly.
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "test_util.h"
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

static Suite *parallel_suite(void) {
    Suite *s = suite_create("parallel");
    TCase *tc = tcase_create("pool");
    tcase_add_test(tc, test_every_task_runs_once);
    tcase_add_test(tc, test_ranges_tile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(parallel_suite());
}
