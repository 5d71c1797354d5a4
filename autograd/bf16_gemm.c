#include "autograd/bf16_gemm.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "autograd/parallel.h"
#include "autograd/weight.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define LC_HAVE_X86_BF16 1
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

static lc_bf16_kernel kernel;
static char reason[160];
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;

static void kernel_pick(void) {
    const char *env = getenv("LC_BF16");
    kernel = LC_BF16_KERNEL_NONE;
    if (env && (!strcasecmp(env, "off") || !strcmp(env, "0") || !strcasecmp(env, "none") || !strcasecmp(env, "no") ||
                !strcasecmp(env, "false"))) {
        snprintf(reason, sizeof reason, "none (LC_BF16=%s): bf16 products run in fp32", env);
        return;
    }
#ifdef LC_HAVE_X86_BF16
    __builtin_cpu_init();
    // The compiler's check includes the OS saving the AVX-512 state.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16")) {
        kernel = LC_BF16_KERNEL_AVX512;
        snprintf(reason, sizeof reason, "avx512-bf16 (vdpbf16ps, %dx%d register tiles)", LC_BF16_MR, LC_BF16_NR);
        return;
    }
#endif
    snprintf(reason, sizeof reason, "none (this CPU has no AVX512-BF16): bf16 products run in fp32");
}

lc_bf16_kernel lc_bf16_kernel_get(void) {
    pthread_once(&kernel_once, kernel_pick);
    return kernel;
}

const char *lc_bf16_kernel_name(lc_bf16_kernel k) { return k == LC_BF16_KERNEL_AVX512 ? "avx512-bf16" : "none"; }

const char *lc_bf16_kernel_describe(void) {
    lc_bf16_kernel_get();
    return reason;
}

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

size_t lc_bf16_packed_a_words(int M, int K) { return (size_t)round_up(M, LC_BF16_MR) * lc_bf16_pairs(K); }
size_t lc_bf16_packed_b_words(int K, int N) { return (size_t)round_up(N, LC_BF16_NR) * lc_bf16_pairs(K); }

// Two values as one word, each rounded to nearest even (the portable path,
// for tails and for CPUs without the instructions, where only tests pack).
static uint32_t pair_word(float lo, float hi) { return lc_f32_to_bf16(lo) | (uint32_t)lc_f32_to_bf16(hi) << 16; }

#ifdef LC_HAVE_X86_BF16
// 32 values of a row (n of them real, the rest zero) as 16 words.
BF16_TARGET static __m512i row_words(const float *src, int n) {
    __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
    __mmask16 m1 = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    __m512 lo = _mm512_maskz_loadu_ps(m0, src), hi = _mm512_maskz_loadu_ps(m1, src + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

BF16_TARGET static void pack_a_rows_avx512(uint32_t *dst, const float *A, int lda, int r0, int r1, int K) {
    int P = lc_bf16_pairs(K);
    for (int r = r0; r < r1; r++) {
        const float *src = A + (size_t)r * lda;
        uint32_t *d = dst + (size_t)r * P;
        for (int k = 0; k < K; k += 32) {
            int n = K - k < 32 ? K - k : 32;
            __mmask16 mw = n >= 32 ? 0xffff : (__mmask16)((1u << ((n + 1) / 2)) - 1);
            _mm512_mask_storeu_epi32(d + k / 2, mw, row_words(src + k, n));
        }
    }
}
#endif

typedef struct pack_a_job {
    uint32_t *dst;
    const float *A;
    int lda, M, K, n_tasks;
} pack_a_job;

static void pack_a_task(void *ctx, int task, int thread) {
    (void)thread;
    const pack_a_job *j = ctx;
    size_t b, e;
    lc_parallel_range((size_t)j->M, task, j->n_tasks, 1, &b, &e);
#ifdef LC_HAVE_X86_BF16
    if (lc_bf16_kernel_get() == LC_BF16_KERNEL_AVX512) {
        pack_a_rows_avx512(j->dst, j->A, j->lda, (int)b, (int)e, j->K);
        return;
    }
#endif
    int P = lc_bf16_pairs(j->K);
    for (size_t r = b; r < e; r++) {
        const float *src = j->A + r * j->lda;
        uint32_t *d = j->dst + r * P;
        for (int p = 0; p < P; p++) d[p] = pair_word(src[2 * p], 2 * p + 1 < j->K ? src[2 * p + 1] : 0.0f);
    }
}

void lc_bf16_pack_a(uint32_t *dst, const float *A, int lda, int M, int K) {
    int P = lc_bf16_pairs(K), Mp = round_up(M, LC_BF16_MR);
    memset(dst + (size_t)M * P, 0, sizeof(uint32_t) * (size_t)(Mp - M) * P);
    pack_a_job j = {dst, A, lda, M, K, lc_parallel_threads()};
    if ((double)M * K < LC_PARALLEL_MIN_WORK) j.n_tasks = 1;
    lc_parallel_for_work(j.n_tasks, pack_a_task, &j, (double)M * K);
}

#ifdef LC_HAVE_X86_BF16
// Forward layout: B[k][n] = src[n * ld + k], so a row of src is one column
// of B; its words scatter down the column of the tile.
BF16_TARGET static void pack_b_trans_avx512(uint32_t *dst, const float *src, int ld, int K, int N) {
    int P = lc_bf16_pairs(K);
    for (int n = 0; n < N; n++) {
        uint32_t *col = dst + (size_t)(n / LC_BF16_NR) * P * LC_BF16_NR + n % LC_BF16_NR;
        const float *row = src + (size_t)n * ld;
        for (int k = 0; k < K; k += 32) {
            uint32_t w[16];
            _mm512_storeu_si512(w, row_words(row + k, K - k < 32 ? K - k : 32));
            int np = (K - k < 32 ? K - k + 1 : 32) / 2;
            uint32_t *d = col + (size_t)(k / 2) * LC_BF16_NR;
            for (int i = 0; i < np; i++) d[(size_t)i * LC_BF16_NR] = w[i];
        }
    }
}

// Input-gradient layout: B[k][n] = src[k * ld + n]; rows k and k + 1
// interleave into one row of words.
BF16_TARGET static void pack_b_plain_avx512(uint32_t *dst, const float *src, int ld, int K, int N) {
    int P = lc_bf16_pairs(K);
    const __m512i mix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int p = 0; p < P; p++) {
        const float *r0 = src + (size_t)(2 * p) * ld, *r1 = 2 * p + 1 < K ? r0 + ld : NULL;
        for (int n = 0; n < N; n += 16) {
            int cnt = N - n < 16 ? N - n : 16;
            __mmask16 m = cnt == 16 ? 0xffff : (__mmask16)((1u << cnt) - 1);
            __m512 lo = _mm512_maskz_loadu_ps(m, r0 + n);
            __m512 hi = r1 ? _mm512_maskz_loadu_ps(m, r1 + n) : _mm512_setzero_ps();
            __m512i w = _mm512_permutexvar_epi16(mix, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            uint32_t *d = dst + ((size_t)(n / LC_BF16_NR) * P + p) * LC_BF16_NR + n % LC_BF16_NR;
            _mm512_mask_storeu_epi32(d, m, w);
        }
    }
}
#endif

// Zeroes the columns of the last tile past N (the tiles are read whole).
static void clear_tail(uint32_t *dst, int K, int N) {
    int P = lc_bf16_pairs(K), tail = N % LC_BF16_NR;
    if (!tail) return;
    uint32_t *t = dst + (size_t)(N / LC_BF16_NR) * P * LC_BF16_NR;
    for (int p = 0; p < P; p++) memset(t + (size_t)p * LC_BF16_NR + tail, 0, sizeof(uint32_t) * (LC_BF16_NR - tail));
}

void lc_bf16_pack_b(uint32_t *dst, const float *src, int ld, bool trans, int K, int N) {
    clear_tail(dst, K, N);
#ifdef LC_HAVE_X86_BF16
    if (lc_bf16_kernel_get() == LC_BF16_KERNEL_AVX512) {
        if (trans) pack_b_trans_avx512(dst, src, ld, K, N);
        else pack_b_plain_avx512(dst, src, ld, K, N);
        return;
    }
#endif
    int P = lc_bf16_pairs(K);
    for (int p = 0; p < P; p++)
        for (int n = 0; n < N; n++) {
            size_t k0 = (size_t)2 * p, k1 = k0 + 1;
            float lo = trans ? src[(size_t)n * ld + k0] : src[k0 * ld + n];
            float hi = (int)k1 >= K ? 0.0f : trans ? src[(size_t)n * ld + k1] : src[k1 * ld + n];
            dst[((size_t)(n / LC_BF16_NR) * P + p) * LC_BF16_NR + n % LC_BF16_NR] = pair_word(lo, hi);
        }
}

void lc_bf16_pack_b_bf16(uint32_t *dst, const uint16_t *src, int ld, bool trans, int K, int N) {
    clear_tail(dst, K, N);
    int P = lc_bf16_pairs(K);
    for (int n = 0; n < N; n++) {
        uint32_t *col = dst + (size_t)(n / LC_BF16_NR) * P * LC_BF16_NR + n % LC_BF16_NR;
        for (int p = 0; p < P; p++) {
            size_t k0 = (size_t)2 * p, k1 = k0 + 1;
            uint32_t lo = trans ? src[(size_t)n * ld + k0] : src[k0 * ld + n];
            uint32_t hi = (int)k1 >= K ? 0 : trans ? src[(size_t)n * ld + k1] : src[k1 * ld + n];
            col[(size_t)p * LC_BF16_NR] = lo | hi << 16;
        }
    }
}

#ifdef LC_HAVE_X86_BF16
// One MR x NR tile of C over `pairs` pairs: 2·MR accumulators stay in
// registers, each step loads two vectors of B and broadcasts one word of A
// per row. mv rows and nv columns of the tile are real.
BF16_TARGET static void tile_avx512(float *C, int ldc, const uint32_t *a, int lda, const uint32_t *b, int pairs,
                                    int mv, int nv, bool accumulate) {
    __m512 c0[LC_BF16_MR], c1[LC_BF16_MR];
    __mmask16 m0 = nv >= 16 ? 0xffff : (__mmask16)((1u << nv) - 1);
    __mmask16 m1 = nv >= 32 ? 0xffff : nv > 16 ? (__mmask16)((1u << (nv - 16)) - 1) : 0;
    for (int m = 0; m < LC_BF16_MR; m++) {
        bool load = accumulate && m < mv;
        c0[m] = load ? _mm512_maskz_loadu_ps(m0, C + (size_t)m * ldc) : _mm512_setzero_ps();
        c1[m] = load ? _mm512_maskz_loadu_ps(m1, C + (size_t)m * ldc + 16) : _mm512_setzero_ps();
    }
    for (int p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * LC_BF16_NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * LC_BF16_NR + 16);
        for (int m = 0; m < LC_BF16_MR; m++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)m * lda + p]);
            c0[m] = _mm512_dpbf16_ps(c0[m], av, b0);
            c1[m] = _mm512_dpbf16_ps(c1[m], av, b1);
        }
    }
    for (int m = 0; m < mv; m++) {
        _mm512_mask_storeu_ps(C + (size_t)m * ldc, m0, c0[m]);
        _mm512_mask_storeu_ps(C + (size_t)m * ldc + 16, m1, c1[m]);
    }
}
#endif

void lc_bf16_gemm_block(float *C, int ldc, const uint32_t *a, int lda, const uint32_t *b, int M, int N, int pairs,
                        bool accumulate) {
    assert(lc_bf16_kernel_get() != LC_BF16_KERNEL_NONE);
#ifdef LC_HAVE_X86_BF16
    size_t b_tile = (size_t)pairs * LC_BF16_NR;
    // Row tiles outside, column tiles inside: the tile of A stays in L1 while
    // the block of B streams from L2.
    for (int m = 0; m < M; m += LC_BF16_MR) {
        int mv = M - m < LC_BF16_MR ? M - m : LC_BF16_MR;
        for (int n = 0; n < N; n += LC_BF16_NR)
            tile_avx512(C + (size_t)m * ldc + n, ldc, a + (size_t)m * lda, lda, b + (size_t)(n / LC_BF16_NR) * b_tile,
                        pairs, mv, N - n < LC_BF16_NR ? N - n : LC_BF16_NR, accumulate);
    }
#else
    (void)C, (void)ldc, (void)a, (void)lda, (void)b, (void)M, (void)N, (void)pairs, (void)accumulate;
#endif
}
