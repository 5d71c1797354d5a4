// A small pool of worker threads for the kernels OpenBLAS does not run:
// attention's per-head loops, element-wise kernels, the softmax over the
// vocabulary. One thread per core that OpenBLAS would use, the caller among
// them, so the pool and OpenBLAS's own threads never run at the same time
// and never oversubscribe the cores.
#ifndef LC_PARALLEL_H
#define LC_PARALLEL_H

#include <stddef.h>

// Runs fn(ctx, task, thread) for task in [0, n_tasks), spread over the
// threads; thread is in [0, lc_parallel_threads()) and identifies per-thread
// scratch. Returns when every task has run. Tasks may call BLAS: during the
// run OpenBLAS is single-threaded, so each task's calls run on its own thread.
// Calls from inside a task run their tasks on the calling thread.
typedef void (*lc_parallel_fn)(void *ctx, int task, int thread);
void lc_parallel_for(int n_tasks, lc_parallel_fn fn, void *ctx);

// Threads a run may use (OpenBLAS's thread count, at least 1); fixed after
// the first call.
int lc_parallel_threads(void);

// Splits [0, n) into the contiguous range of task `task` of n_tasks
// (element-wise kernels over rows), in multiples of `align` elements.
void lc_parallel_range(size_t n, int task, int n_tasks, size_t align, size_t *begin, size_t *end);

#endif
