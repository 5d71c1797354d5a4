#include "autograd/weight.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/bf16_gemm.h"
#include "autograd/kernels.h"
#include "autograd/parallel.h"

// Built with -ffp-contract=off: ggml's d*q - m is two roundings, and a fused
// multiply-add would differ from it in the last bit.

static const struct {
    const char *name;
    int block;
    size_t bytes;
    uint32_t ggml;
} wtypes[LC_WTYPE_COUNT] = {
    [LC_WTYPE_F32] = {"F32", 1, 4, 0},       [LC_WTYPE_F16] = {"F16", 1, 2, 1},
    [LC_WTYPE_BF16] = {"BF16", 1, 2, 30},    [LC_WTYPE_Q4_0] = {"Q4_0", 32, 18, 2},
    [LC_WTYPE_Q4_1] = {"Q4_1", 32, 20, 3},   [LC_WTYPE_Q5_0] = {"Q5_0", 32, 22, 6},
    [LC_WTYPE_Q5_1] = {"Q5_1", 32, 24, 7},   [LC_WTYPE_Q8_0] = {"Q8_0", 32, 34, 8},
    [LC_WTYPE_Q4_K] = {"Q4_K", 256, 144, 12}, [LC_WTYPE_Q5_K] = {"Q5_K", 256, 176, 13},
    [LC_WTYPE_Q6_K] = {"Q6_K", 256, 210, 14},
};

const char *lc_wtype_name(lc_wtype t) { return (unsigned)t < LC_WTYPE_COUNT ? wtypes[t].name : "?"; }
int lc_wtype_block(lc_wtype t) { return wtypes[t].block; }
size_t lc_wtype_block_bytes(lc_wtype t) { return wtypes[t].bytes; }
size_t lc_wtype_row_bytes(lc_wtype t, int64_t cols) { return (size_t)(cols / wtypes[t].block) * wtypes[t].bytes; }
uint32_t lc_wtype_ggml(lc_wtype t) { return wtypes[t].ggml; }

bool lc_wtype_from_ggml(uint32_t ggml_type, lc_wtype *out) {
    for (int t = 0; t < LC_WTYPE_COUNT; t++)
        if (wtypes[t].ggml == ggml_type) {
            *out = (lc_wtype)t;
            return true;
        }
    return false;
}

float lc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { // subnormal: renormalize
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float lc_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t lc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0)); // inf / NaN
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        // Subnormal half (or zero): shift the implicit-one mantissa right, rounding to even.
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++; // may carry into the exponent: still right
    return (uint16_t)half;
}

uint16_t lc_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}


// A little-endian fp16 at p (blocks are byte-packed, so unaligned).
static inline float half_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lc_f16_to_f32(h);
}

// One block each, as ggml's dequantize_row_* computes it (same operations in
// the same order, so the same bits).
static inline void block_q4_0(float *restrict y, const unsigned char *restrict b) {
    float d = half_at(b);
    const unsigned char *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

static inline void block_q4_1(float *restrict y, const unsigned char *restrict b) {
    float d = half_at(b), m = half_at(b + 2);
    const unsigned char *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0x0F) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

static inline void block_q5(float *restrict y, const unsigned char *restrict b, bool has_min) {
    float d = half_at(b), m = has_min ? half_at(b + 2) : 0.0f;
    const unsigned char *qhp = b + (has_min ? 4 : 2), *qs = qhp + 4;
    uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 | (uint32_t)qhp[3] << 24;
    for (int j = 0; j < 16; j++) {
        int xh0 = (int)(((qh >> j) << 4) & 0x10), xh1 = (int)((qh >> (j + 12)) & 0x10);
        int x0 = (qs[j] & 0x0F) | xh0, x1 = (qs[j] >> 4) | xh1;
        if (has_min) {
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        } else {
            y[j] = (x0 - 16) * d;
            y[j + 16] = (x1 - 16) * d;
        }
    }
}

static inline void block_q8_0(float *restrict y, const unsigned char *restrict b) {
    float d = half_at(b);
    const signed char *qs = (const signed char *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
}

// The 6-bit scale and minimum of sub-block j of a Q4_K/Q5_K block.
static inline void scale_min_k4(int j, const unsigned char *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static inline void block_qk(float *restrict y, const unsigned char *restrict b, bool five) {
    float d = half_at(b), dmin = half_at(b + 2);
    const unsigned char *scales = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
    for (int c = 0; c < 4; c++, q += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(2 * c, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * c + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        unsigned u1 = 1u << (2 * c), u2 = 2u << (2 * c);
        for (int l = 0; l < 32; l++) {
            int lo = q[l] & 0xF, hi = q[l] >> 4;
            if (five) {
                lo += qh[l] & u1 ? 16 : 0;
                hi += qh[l] & u2 ? 16 : 0;
            }
            y[l] = d1 * lo - m1;
            y[l + 32] = d2 * hi - m2;
        }
    }
}

static inline void block_q6_k(float *restrict y, const unsigned char *restrict b) {
    float d = half_at(b + 208);
    const unsigned char *ql = b, *qh = b + 128;
    const signed char *sc = (const signed char *)(b + 192);
    for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, y += 128)
        for (int is = 0; is < 2; is++) {
            // d * sc * q as ggml groups it: (d * sc) first.
            float d0 = d * sc[is + 0], d2 = d * sc[is + 2], d4 = d * sc[is + 4], d6 = d * sc[is + 6];
            for (int l = 16 * is; l < 16 * is + 16; l++) {
                int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d0 * q1;
                y[l + 32] = d2 * q2;
                y[l + 64] = d4 * q3;
                y[l + 96] = d6 * q4;
            }
        }
}

// fp16 to fp32 bits without branches, so the row loop vectorizes: the exponent and
// mantissa moved into place and scaled by 2^112 (exact: a power of two;
// subnormal halves come out normalized), infinities and NaNs set apart.
static inline uint32_t half_bits(uint16_t h) {
    uint32_t em = h & 0x7fffu, bits = em << 13, sign = (uint32_t)(h & 0x8000u) << 16;
    float f;
    memcpy(&f, &bits, 4);
    f *= 0x1p112f;
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t special = 0u - (uint32_t)(em >= 0x7c00u); // all ones for infinity and NaN
    return (u & ~special) | ((bits | 0x7f800000u) & special) | sign;
}

// Built for AVX-512, AVX2 and baseline x86-64 (the loader picks): the block
// loops vectorize; the same IEEE operations in each, so the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void lc_wtype_dequant_row(float *out, lc_wtype t, const void *src, int64_t n) {
    const unsigned char *p = src;
    switch (t) {
    case LC_WTYPE_F32: memcpy(out, p, sizeof(float) * (size_t)n); return;
    case LC_WTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2); // little-endian host
            uint32_t bits = half_bits(h);
            memcpy(&out[i], &bits, 4);
        }
        return;
    case LC_WTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)p[2 * i] << 16 | (uint32_t)p[2 * i + 1] << 24;
            memcpy(&out[i], &bits, 4);
        }
        return;
    default: break;
    }
    int blk = wtypes[t].block;
    size_t bb = wtypes[t].bytes;
    assert(n % blk == 0);
    for (int64_t i = 0; i < n / blk; i++, p += bb, out += blk) {
        switch (t) {
        case LC_WTYPE_Q4_0: block_q4_0(out, p); break;
        case LC_WTYPE_Q4_1: block_q4_1(out, p); break;
        case LC_WTYPE_Q5_0: block_q5(out, p, false); break;
        case LC_WTYPE_Q5_1: block_q5(out, p, true); break;
        case LC_WTYPE_Q8_0: block_q8_0(out, p); break;
        case LC_WTYPE_Q4_K: block_qk(out, p, false); break;
        case LC_WTYPE_Q5_K: block_qk(out, p, true); break;
        case LC_WTYPE_Q6_K: block_q6_k(out, p); break;
        default: assert(0);
        }
    }
}

bool lc_wtype_quantize_row(void *dst, lc_wtype t, const float *src, int64_t n) {
    unsigned char *p = dst;
    switch (t) {
    case LC_WTYPE_F32: memcpy(p, src, sizeof(float) * (size_t)n); return true;
    case LC_WTYPE_F16:
    case LC_WTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = t == LC_WTYPE_F16 ? lc_f32_to_f16(src[i]) : lc_f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return true;
    case LC_WTYPE_Q8_0:
        if (n % 32) return false;
        // ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d).
        for (int64_t b = 0; b < n / 32; b++, src += 32, p += 34) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t h = lc_f32_to_f16(d);
            memcpy(p, &h, 2);
            for (int j = 0; j < 32; j++) p[2 + j] = (unsigned char)(signed char)roundf(src[j] * id);
        }
        return true;
    default: return false;
    }
}

void lc_weight_dequant(float *out, const lc_weight *w, int r0, int n_rows, int c0, int n_cols, int ldo) {
    int blk = wtypes[w->type].block;
    assert(c0 % blk == 0 && (n_cols % blk == 0 || c0 + n_cols == w->cols));
    size_t row_bytes = lc_wtype_row_bytes(w->type, w->cols), skip = lc_wtype_row_bytes(w->type, c0);
    const unsigned char *base = (const unsigned char *)w->data + (size_t)r0 * row_bytes + skip;
    for (int r = 0; r < n_rows; r++) lc_wtype_dequant_row(out + (size_t)r * ldo, w->type, base + r * row_bytes, n_cols);
}

// A panel of at most PANEL_FLOATS values is dequantized at a time (512 KiB
// per thread), as PANEL_ROWS rows by PANEL_COLS columns (a multiple of every
// block) unless the matrix is narrower: each GEMM call then has 128 (forward)
// or 1024 (backward) of the shared dimension to amortize packing its other
// operand.
#define PANEL_ROWS 128
#define PANEL_COLS 1024
#define PANEL_FLOATS (PANEL_ROWS * PANEL_COLS)
static _Thread_local float panel[PANEL_FLOATS] __attribute__((aligned(64)));

typedef struct weight_job {
    const lc_weight *w;
    const float *in;
    float *out;
    int N, pr, pc; // panel rows and columns
    bool overwrite;
} weight_job;

static int imin(int a, int b) { return a < b ? a : b; }

// n split into tasks of at most cap (in multiples of align), at least one per thread.
static int split_size(int n, int cap, int align) {
    int tasks = (n + cap - 1) / cap, threads = lc_parallel_threads();
    if (tasks < threads) tasks = threads;
    int size = (n + tasks - 1) / tasks;
    size = (size + align - 1) / align * align;
    return imin(size, (n + align - 1) / align * align);
}

// Forward: task = a panel of rows of w = columns of out, over every column panel.
static void forward_task(void *ctx, int task, int thread) {
    (void)thread;
    const weight_job *j = ctx;
    const lc_weight *w = j->w;
    int r0 = task * j->pr, nr = imin(w->rows - r0, j->pr);
    for (int c0 = 0; c0 < w->cols; c0 += j->pc) {
        int nc = imin(w->cols - c0, j->pc);
        lc_weight_dequant(panel, w, r0, nr, c0, nc, nc);
        float beta = c0 ? 1.0f : 0.0f;
        if (j->N == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, nr, nc, 1.0f, panel, nc, j->in + c0, 1, beta, j->out + r0, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, nr, nc, 1.0f, j->in + c0, w->cols, panel, nc,
                        beta, j->out + r0, w->rows);
    }
}

// Backward: task = a panel of columns of w = columns of dx, over every row panel.
static void backward_task(void *ctx, int task, int thread) {
    (void)thread;
    const weight_job *j = ctx;
    const lc_weight *w = j->w;
    int c0 = task * j->pc, nc = imin(w->cols - c0, j->pc);
    for (int r0 = 0; r0 < w->rows; r0 += j->pr) {
        int nr = imin(w->rows - r0, j->pr);
        lc_weight_dequant(panel, w, r0, nr, c0, nc, nc);
        float beta = r0 == 0 && j->overwrite ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->N, nc, nr, 1.0f, j->in + r0, w->rows, panel, nc,
                    beta, j->out + c0, w->cols);
    }
}

// bf16 products. The activations are packed once per product into a
// per-calling-thread buffer that grows to the largest product seen and is
// then reused; each task packs its block of the weight into bf16 pairs (F32
// and BF16 weights straight, the other types through an fp32 panel) into a per-thread block of BF16_BLOCK
// words: forward blocks are up to 256 rows of w by BF16_KC_FWD columns,
// backward blocks BF16_KR_BWD rows by up to 1024 columns.
#define BF16_KC_FWD 256 // a multiple of every block size
#define BF16_KR_BWD 128
#define BF16_BLOCK (1024 * BF16_KR_BWD / 2)
static _Thread_local uint32_t bpack[BF16_BLOCK] __attribute__((aligned(64)));
static _Thread_local uint32_t *apack;
static _Thread_local size_t apack_words;
// Frees a thread's activation buffer when the thread ends (threads of a
// program using the library, not only the pool's, which live on).
static pthread_key_t apack_key;
static pthread_once_t apack_key_once = PTHREAD_ONCE_INIT;
static void apack_free(void *p) { free(p); }
static void apack_key_make(void) { pthread_key_create(&apack_key, apack_free); }

int lc_compute_parse(const char *name) {
    return !strcmp(name, "fp32") ? LC_COMPUTE_FP32 : !strcmp(name, "bf16") ? LC_COMPUTE_BF16 : -1;
}

const char *lc_compute_name(lc_compute c) { return c == LC_COMPUTE_BF16 ? "bf16" : "fp32"; }

lc_compute lc_compute_effective(lc_compute c) {
    return c == LC_COMPUTE_BF16 && lc_bf16_kernel_get() != LC_BF16_KERNEL_NONE ? LC_COMPUTE_BF16 : LC_COMPUTE_FP32;
}

// The activations [N, K] packed for the bf16 kernel; NULL when memory runs
// out (the caller then multiplies in fp32).
static const uint32_t *pack_activations(const float *x, int N, int K) {
    size_t words = lc_bf16_packed_a_words(N, K);
    if (words > apack_words) {
        uint32_t *p = aligned_alloc(64, (words * sizeof(uint32_t) + 63) / 64 * 64);
        if (!p) return NULL;
        free(apack);
        apack = p;
        apack_words = words;
        pthread_once(&apack_key_once, apack_key_make);
        pthread_setspecific(apack_key, apack);
    }
    lc_bf16_pack_a(apack, x, K, N, K);
    return apack;
}

typedef struct bf16_job {
    const lc_weight *w;
    const uint32_t *a; // the packed activations
    float *out;
    int N, slab;
    bool overwrite;
} bf16_job;

// Rows [r0, r0 + nr) by columns [c0, c0 + nc) of w as a packed block of B:
// trans (forward) makes w's columns the shared dimension, else its rows.
static void pack_weight_block(const lc_weight *w, int r0, int nr, int c0, int nc, bool trans) {
    int K = trans ? nc : nr, N = trans ? nr : nc;
    size_t at = (size_t)r0 * w->cols + c0;
    if (w->type == LC_WTYPE_F32) {
        lc_bf16_pack_b(bpack, (const float *)w->data + at, w->cols, trans, K, N);
    } else if (w->type == LC_WTYPE_BF16) {
        lc_bf16_pack_b_bf16(bpack, (const uint16_t *)w->data + at, w->cols, trans, K, N);
    } else {
        lc_weight_dequant(panel, w, r0, nr, c0, nc, nc);
        lc_bf16_pack_b(bpack, panel, nc, trans, K, N);
    }
}

// Forward: task = a slab of w's rows (out's columns), over blocks of its columns.
static void bf16_forward_task(void *ctx, int task, int thread) {
    (void)thread;
    const bf16_job *j = ctx;
    const lc_weight *w = j->w;
    int r0 = task * j->slab, nr = imin(w->rows - r0, j->slab), P = lc_bf16_pairs(w->cols);
    for (int k0 = 0; k0 < w->cols; k0 += BF16_KC_FWD) {
        int kn = imin(w->cols - k0, BF16_KC_FWD);
        pack_weight_block(w, r0, nr, k0, kn, true);
        lc_bf16_gemm_block(j->out + r0, w->rows, j->a + k0 / 2, P, bpack, j->N, nr, lc_bf16_pairs(kn), k0 > 0);
    }
}

// Backward: task = a slab of w's columns (dx's columns), over blocks of its rows.
static void bf16_backward_task(void *ctx, int task, int thread) {
    (void)thread;
    const bf16_job *j = ctx;
    const lc_weight *w = j->w;
    int c0 = task * j->slab, nc = imin(w->cols - c0, j->slab), P = lc_bf16_pairs(w->rows);
    for (int k0 = 0; k0 < w->rows; k0 += BF16_KR_BWD) {
        int kn = imin(w->rows - k0, BF16_KR_BWD);
        pack_weight_block(w, k0, kn, c0, nc, false);
        lc_bf16_gemm_block(j->out + c0, w->cols, j->a + k0 / 2, P, bpack, j->N, nc, lc_bf16_pairs(kn),
                           k0 > 0 || !j->overwrite);
    }
}

void lc_weight_matmul_forward(float *out, const float *x, const lc_weight *w, int N, lc_compute c) {
    if (N <= 0) return;
    const uint32_t *a = lc_compute_effective(c) == LC_COMPUTE_BF16 ? pack_activations(x, N, w->cols) : NULL;
    if (a) {
        int slab = imin(split_size(w->rows, 256, LC_BF16_NR), 256);
        bf16_job j = {w, a, out, N, slab, true};
        lc_parallel_for_work((w->rows + slab - 1) / slab, bf16_forward_task, &j, (double)N * w->rows * w->cols);
    } else if (w->type == LC_WTYPE_F32) {
        lc_matmul_forward(out, x, w->data, NULL, N, w->cols, w->rows);
    } else {
        int pc = imin(PANEL_COLS, w->cols), pr = imin(split_size(w->rows, PANEL_ROWS, 16), PANEL_FLOATS / pc);
        weight_job j = {w, x, out, N, pr, pc, true};
        lc_parallel_for_work((w->rows + pr - 1) / pr, forward_task, &j, (double)N * w->rows * w->cols);
    }
}

void lc_weight_matmul_backward(float *dx, const float *dy, const lc_weight *w, bool overwrite, int N, lc_compute c) {
    if (N <= 0) return;
    const uint32_t *a = lc_compute_effective(c) == LC_COMPUTE_BF16 ? pack_activations(dy, N, w->rows) : NULL;
    if (a) {
        int align = lc_wtype_block(w->type) < LC_BF16_NR ? LC_BF16_NR : lc_wtype_block(w->type);
        int slab = imin(split_size(w->cols, 1024, align), 1024);
        bf16_job j = {w, a, dx, N, slab, overwrite};
        lc_parallel_for_work((w->cols + slab - 1) / slab, bf16_backward_task, &j, (double)N * w->rows * w->cols);
    } else if (w->type == LC_WTYPE_F32) {
        lc_matmul_backward(dx, dy, w->data, overwrite, N, w->cols, w->rows);
    } else {
        int pc = split_size(w->cols, PANEL_COLS, lc_wtype_block(w->type)), pr = imin(PANEL_FLOATS / pc, w->rows);
        weight_job j = {w, dy, dx, N, pr, pc, overwrite};
        lc_parallel_for_work((w->cols + pc - 1) / pc, backward_task, &j, (double)N * w->rows * w->cols);
    }
}
