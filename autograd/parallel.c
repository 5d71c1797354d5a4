#include "autograd/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define LC_MAX_THREADS 64

// One job at a time: the caller publishes it under the lock, bumps the
// generation, and works on it too; workers sleep on the condition variable
// between jobs (no spinning that would take a core from OpenBLAS).
static struct {
    pthread_once_t once;
    int n_threads;
    pthread_mutex_t caller, lock;
    pthread_cond_t wake, done;
    unsigned long generation;
    lc_parallel_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;     // next task to claim
    int n_running;       // workers still in the current job
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
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        lc_parallel_fn fn = pool.fn;
        void *ctx = pool.ctx;
        int n_tasks = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, ctx, n_tasks, thread);
        pthread_mutex_lock(&pool.lock);
        if (--pool.n_running == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static void pool_start(void) {
    int n = openblas_get_num_threads();
    if (n < 1) n = 1;
    if (n > LC_MAX_THREADS) n = LC_MAX_THREADS;
    pool.n_threads = 1;
    for (int i = 1; i < n; i++) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        // A thread that cannot start only means fewer threads.
        if (pthread_create(&th, &attr, worker, (void *)(size_t)i) == 0) pool.n_threads++;
        pthread_attr_destroy(&attr);
    }
}

int lc_parallel_threads(void) {
    pthread_once(&pool.once, pool_start);
    return pool.n_threads;
}

void lc_parallel_for(int n_tasks, lc_parallel_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    int threads = lc_parallel_threads();
    if (threads == 1 || n_tasks == 1 || in_task) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    // One job at a time, whichever thread of the program asks.
    pthread_mutex_lock(&pool.caller);
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next, 0);
    pool.n_running = threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_tasks(fn, ctx, n_tasks, 0);
    pthread_mutex_lock(&pool.lock);
    while (pool.n_running > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    openblas_set_num_threads(blas_threads);
    pthread_mutex_unlock(&pool.caller);
}

void lc_parallel_range(size_t n, int task, int n_tasks, size_t align, size_t *begin, size_t *end) {
    size_t units = (n + align - 1) / align;
    size_t b = units * (size_t)task / (size_t)n_tasks, e = units * (size_t)(task + 1) / (size_t)n_tasks;
    *begin = b * align < n ? b * align : n;
    *end = e * align < n ? e * align : n;
}
