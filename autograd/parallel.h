// The one pool of worker threads: every parallel kernel runs on it, the
// matrix products too (lc_blas_sgemm splits them into single-threaded
// OpenBLAS calls). OpenBLAS's own threads are switched off when the pool
// starts: left on, they spin for ~0.1 s after each product and take the
// cores from whatever runs next (measured: attention 4.7 s instead of 2.9 s
// over 3 steps of the 135M shape). One thread per core OpenBLAS would use,
// the caller among them; idle workers sleep.
#ifndef LC_PARALLEL_H
#define LC_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>

// Runs fn(ctx, task, thread) for task in [0, n_tasks), spread over the
// threads; thread is in [0, lc_parallel_threads()) and identifies per-thread
// scratch. Returns when every task has run. Tasks may call BLAS (single-
// threaded). Calls from inside a task run their tasks on the calling thread.
typedef void (*lc_parallel_fn)(void *ctx, int task, int thread);
void lc_parallel_for(int n_tasks, lc_parallel_fn fn, void *ctx);
// The same, on the calling thread alone when the whole job is below
// LC_PARALLEL_MIN_WORK (multiply-adds or elements): waking the pool costs
// tens of microseconds, more than a decoding step's attention takes.
#define LC_PARALLEL_MIN_WORK ((double)(1 << 18))
void lc_parallel_for_work(int n_tasks, lc_parallel_fn fn, void *ctx, double work);

// Threads a run uses: OpenBLAS's thread count when the pool starts
// (OPENBLAS_NUM_THREADS, or the cores), or what lc_parallel_set_threads set.
int lc_parallel_threads(void);
void lc_parallel_set_threads(int n);
// Whether the calling thread is running a task (nested runs stay on it).
bool lc_parallel_in_task(void);

// Splits [0, n) into the contiguous range of task `task` of n_tasks
// (element-wise kernels over rows), in multiples of `align` elements.
void lc_parallel_range(size_t n, int task, int n_tasks, size_t align, size_t *begin, size_t *end);

#endif
