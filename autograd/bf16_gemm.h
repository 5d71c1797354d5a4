// bf16 products with fp32 accumulation: C (+)= A·B where A (activations) is
// rounded to bf16 once and B (a frozen weight) is packed in bf16 pairs along
// K, the layout of AVX512-BF16's vdpbf16ps: each 32-bit lane of B holds
// (B[k][n], B[k+1][n]) for one column n, each 32-bit word of A holds
// (A[m][k], A[m][k+1]) and is broadcast to every lane. Every conversion
// rounds to nearest even; odd K is padded with a zero pair half.
//
// The kernel is chosen once from what the CPU has; LC_BF16=off forces the
// fp32 path (products go through OpenBLAS as without bf16), so every machine
// can test the fallback.
#ifndef LC_BF16_GEMM_H
#define LC_BF16_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lc_bf16_kernel {
    LC_BF16_KERNEL_NONE,   // no bf16 product on this CPU, or switched off
    LC_BF16_KERNEL_AVX512, // AVX512-BF16 (vdpbf16ps): AMD Zen 4/5, Intel Cooper Lake, Sapphire Rapids
} lc_bf16_kernel;

lc_bf16_kernel lc_bf16_kernel_get(void);
// "avx512-bf16" or "none".
const char *lc_bf16_kernel_name(lc_bf16_kernel k);
// One line on the choice: the kernel, or why there is none.
const char *lc_bf16_kernel_describe(void);

#define LC_BF16_MR 8  // rows of A per register tile
#define LC_BF16_NR 32 // columns of B per register tile (two vectors of 16 lanes)

// A packed: [round_up(M, MR)][lc_bf16_pairs(K)] words, rows past M zero.
static inline int lc_bf16_pairs(int K) { return (K + 1) / 2; }
size_t lc_bf16_packed_a_words(int M, int K);
// Converts A [M, K] (row stride lda) on the thread pool.
void lc_bf16_pack_a(uint32_t *dst, const float *A, int lda, int M, int K);

// A block of B, k in [0, K), n in [0, N): [ceil(N / NR)][lc_bf16_pairs(K)][NR]
// words, columns past N zero. trans: B[k][n] is src[n * ld + k] (a weight
// [N, K] in the forward product); else src[k * ld + n] (a weight [K, N] in
// the input gradient).
size_t lc_bf16_packed_b_words(int K, int N);
void lc_bf16_pack_b(uint32_t *dst, const float *src, int ld, bool trans, int K, int N);
// The same from bf16 values (no rounding: the words are copied).
void lc_bf16_pack_b_bf16(uint32_t *dst, const uint16_t *src, int ld, bool trans, int K, int N);

// C [M, N] (row stride ldc) = or += A·B over `pairs` pairs of K: a points at
// the packed A's row 0 at the block's first pair (row stride lda words),
// b at a packed B block of that many pairs. Single-threaded; the caller
// splits the work. Requires a kernel (lc_bf16_kernel_get() != NONE).
void lc_bf16_gemm_block(float *C, int ldc, const uint32_t *a, int lda, const uint32_t *b, int M, int N, int pairs,
                        bool accumulate);

#endif
