#include "autograd/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define LC_MAX_THREADS 64

// One job at a time: the caller publishes it under the lock, bumps the
// generation, and works on it too; workers sleep on the condition variable
// between jobs, so an idle pool takes no core from anything. (Spinning a
// while before sleeping, to save the wake-up between back-to-back products,
// measured no faster on the 135M benchmark.)
static struct {
    pthread_once_t once;
    int n_threads;       // threads a job uses, the caller included
    int n_workers;       // worker threads started (ids 1..n_workers)
    pthread_mutex_t caller, lock;
    pthread_cond_t wake, done;
    atomic_ulong generation;
    lc_parallel_fn fn;
    void *ctx;
    int n_tasks, job_threads;
    atomic_int next;     // next task to claim
    atomic_int n_running; // workers still in the current job
    unsigned long start_generation[LC_MAX_THREADS]; // the generation each worker starts after
} pool = {.once = PTHREAD_ONCE_INIT, .caller = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static _Thread_local bool in_task;

static void run_tasks(lc_parallel_fn fn, void *ctx, int n_tasks, int thread) {
    in_task = true;
    for (int t; (t = atomic_fetch_add(&pool.next, 1)) < n_tasks;) fn(ctx, t, thread);
    in_task = false;
}

static void *worker(void *arg) {
    int thread = (int)(size_t)arg;
    pthread_mutex_lock(&pool.lock);
    // Jobs published before this worker existed are not its own.
    unsigned long seen = pool.start_generation[thread];
    for (;;) {
        while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load(&pool.generation);
        if (thread >= pool.job_threads) continue; // not part of this job
        lc_parallel_fn fn = pool.fn;
        void *ctx = pool.ctx;
        int n_tasks = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, ctx, n_tasks, thread);
        pthread_mutex_lock(&pool.lock);
        if (atomic_fetch_sub(&pool.n_running, 1) == 1) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

// Starts workers up to n threads in all (caller lock held, or at start-up).
static void grow(int n) {
    if (n > LC_MAX_THREADS) n = LC_MAX_THREADS;
    while (pool.n_workers + 1 < n) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.start_generation[pool.n_workers + 1] = atomic_load(&pool.generation); // no job runs during grow
        // A thread that cannot start only means fewer threads.
        int ok = pthread_create(&th, &attr, worker, (void *)(size_t)(pool.n_workers + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) break;
        pthread_mutex_lock(&pool.lock);
        pool.n_workers++;
        pthread_mutex_unlock(&pool.lock);
    }
}

static void pool_start(void) {
    // As many threads as OpenBLAS would use (OPENBLAS_NUM_THREADS, or the
    // cores); OpenBLAS itself then runs single-threaded inside our tasks.
    int n = openblas_get_num_threads();
    grow(n < 1 ? 1 : n);
    pool.n_threads = pool.n_workers + 1;
    openblas_set_num_threads(1);
}

int lc_parallel_threads(void) {
    pthread_once(&pool.once, pool_start);
    return pool.n_threads;
}

void lc_parallel_set_threads(int n) {
    pthread_once(&pool.once, pool_start);
    pthread_mutex_lock(&pool.caller);
    grow(n < 1 ? 1 : n);
    pool.n_threads = n < 1 ? 1 : n > pool.n_workers + 1 ? pool.n_workers + 1 : n;
    pthread_mutex_unlock(&pool.caller);
}

bool lc_parallel_in_task(void) { return in_task; }

// Every task on the calling thread, marked as in a task so that BLAS calls
// and nested runs inside stay on it.
static void run_inline(int n_tasks, lc_parallel_fn fn, void *ctx) {
    bool outer = in_task;
    in_task = true;
    for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    in_task = outer;
}

void lc_parallel_for(int n_tasks, lc_parallel_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    int threads = lc_parallel_threads();
    if (threads == 1 || n_tasks == 1 || in_task) {
        run_inline(n_tasks, fn, ctx);
        return;
    }
    // One job at a time, whichever thread of the program asks.
    pthread_mutex_lock(&pool.caller);
    threads = pool.n_threads;
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    pool.job_threads = threads;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.n_running, threads - 1);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_tasks(fn, ctx, n_tasks, 0);
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.n_running) > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.caller);
}

void lc_parallel_for_work(int n_tasks, lc_parallel_fn fn, void *ctx, double work) {
    if (work >= LC_PARALLEL_MIN_WORK) lc_parallel_for(n_tasks, fn, ctx);
    else run_inline(n_tasks, fn, ctx);
}

void lc_parallel_range(size_t n, int task, int n_tasks, size_t align, size_t *begin, size_t *end) {
    size_t units = (n + align - 1) / align;
    size_t b = units * (size_t)task / (size_t)n_tasks, e = units * (size_t)(task + 1) / (size_t)n_tasks;
    *begin = b * align < n ? b * align : n;
    *end = e * align < n ? e * align : n;
}
