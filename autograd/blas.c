#include "autograd/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "autograd/parallel.h"

void lc_blas_pick_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core) return;
    const char *name = openblas_get_corename();
    // Already a recognized modern core: nothing to fix.
    if (name && strcasecmp(name, "prescott") != 0 && strcasecmp(name, "core2") != 0 &&
        strcasecmp(name, "nehalem") != 0 && strcasecmp(name, "sandybridge") != 0)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with the generic kernels.
}

// Below this many multiply-adds a product stays on one thread: waking the
// pool costs tens of microseconds, and OpenBLAS runs small products below
// its peak, so the bar is higher than the pool's LC_PARALLEL_MIN_WORK.
#define LC_BLAS_SPLIT_MIN ((double)(1 << 21))

typedef struct gemm_job {
    bool ta, tb, by_rows;
    int M, N, K, lda, ldb, ldc, n_tasks;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_job;

static void gemm_task(void *ctx, int task, int thread) {
    (void)thread;
    const gemm_job *j = ctx;
    size_t b, e;
    if (j->by_rows) {
        lc_parallel_range((size_t)j->M, task, j->n_tasks, 8, &b, &e);
        if (b >= e) return;
        // Rows b..e of op(A): rows of A, or columns when transposed.
        const float *A = j->ta ? j->A + b : j->A + b * (size_t)j->lda;
        cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, (int)(e - b),
                    j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + b * (size_t)j->ldc, j->ldc);
    } else {
        lc_parallel_range((size_t)j->N, task, j->n_tasks, 16, &b, &e);
        if (b >= e) return;
        // Columns b..e of op(B): columns of B, or rows when transposed.
        const float *B = j->tb ? j->B + b * (size_t)j->ldb : j->B + b;
        cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, j->M,
                    (int)(e - b), j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + b, j->ldc);
    }
}

void lc_blas_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    int threads = lc_parallel_threads();
    bool by_rows = (double)M * K >= (double)K * N;
    int split = by_rows ? M / 8 : N / 16; // shares of at least a register block
    int tasks = threads < split ? threads : split;
    if (tasks < 2 || lc_parallel_in_task() || (double)M * N * K < LC_BLAS_SPLIT_MIN) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_job j = {trans_a, trans_b, by_rows, M, N, K, lda, ldb, ldc, tasks, alpha, beta, A, B, C};
    lc_parallel_for(tasks, gemm_task, &j);
}

typedef struct gemv_job {
    int M, N, lda, n_tasks;
    float alpha, beta;
    const float *A, *x;
    float *y;
} gemv_job;

static void gemv_task(void *ctx, int task, int thread) {
    (void)thread;
    const gemv_job *j = ctx;
    size_t b, e;
    lc_parallel_range((size_t)j->M, task, j->n_tasks, 16, &b, &e);
    if (b < e)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(e - b), j->N, j->alpha, j->A + b * (size_t)j->lda, j->lda, j->x,
                    1, j->beta, j->y + b, 1);
}

void lc_blas_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta, float *y) {
    int threads = lc_parallel_threads();
    if (threads < 2 || lc_parallel_in_task() || (double)M * N < LC_PARALLEL_MIN_WORK || M < 32) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y, 1);
        return;
    }
    gemv_job j = {M, N, lda, threads, alpha, beta, A, x, y};
    lc_parallel_for(threads, gemv_task, &j);
}
