// OpenBLAS set-up shared by every executable.
#ifndef LC_BLAS_H
#define LC_BLAS_H

#include <stdbool.h>

// Debian's OpenBLAS 0.3.21 does not recognize recent AVX-512 CPUs and falls
// back to generic kernels (7x slower here). It reads OPENBLAS_CORETYPE only
// when the library loads, so when the user has not set it and the generic
// kernels are in use on a CPU with AVX-512 (SkylakeX) or AVX2 (Haswell), this
// sets it and re-executes the program once. Call first thing in main.
void lc_blas_pick_core(char **argv);

// C = alpha·op(A)·op(B) + beta·C, row-major with cblas's arguments
// (op(A) [M, K], op(B) [K, N]). Large products are split across the thread
// pool (lc_parallel_for) into single-threaded OpenBLAS calls: by rows of C
// when A is the larger operand, else by columns, so the operand every share
// packs again is the smaller one. Inside a pool task it runs on the task's
// thread.
void lc_blas_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

// y = alpha·A·x + beta·y with A [M, N] row-major, rows split across the pool.
void lc_blas_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta, float *y);

#endif
