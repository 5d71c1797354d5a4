// bf16 products (autograd/bf16_gemm.h, lc_weight_matmul_* with
// LC_COMPUTE_BF16) against a scalar emulation of vdpbf16ps as Intel's SDM
// specifies it: each lane adds the odd pair's product, then the even pair's,
// to its fp32 accumulator, each addition rounded to nearest even with
// denormal results flushed to zero; a product of two bf16 values is exact in
// fp32. The kernel keeps one accumulator per output over the whole of K
// (blocks of K continue it through C), so the emulation is bit-exact.
//
// ctest runs this file twice: as is, and with LC_BF16=off, where there is
// no kernel, the packers take their portable path, and BF16 products must be
// the fp32 products bit for bit.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "autograd/bf16_gemm.h"
#include "autograd/parallel.h"
#include "autograd/weight.h"
#include "test_util.h"
#include "weight_fixture.h"

static bool have_kernel(void) { return lc_bf16_kernel_get() != LC_BF16_KERNEL_NONE; }

// The bf16 value (nearest even) of x, as fp32.
static float bf16(float x) { return lc_bf16_to_f32(lc_f32_to_bf16(x)); }

static float ftz(float x) { return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x; }

// One output: acc (the old C, or 0) plus a·b over K, as vdpbf16ps computes
// it; a and b are already bf16 values, stride sa / sb apart.
static float emulate_dot(float acc, const float *a, size_t sa, const float *b, size_t sb, int K) {
    for (int k = 0; k < K; k += 2) {
        float ahi = k + 1 < K ? a[(k + 1) * sa] : 0.0f, bhi = k + 1 < K ? b[(k + 1) * sb] : 0.0f;
        acc = ftz(acc + ahi * bhi);
        acc = ftz(acc + a[k * sa] * b[k * sb]);
    }
    return acc;
}

static uint64_t rng = 7;
// A value in [-1, 1) with a spread of exponents (down to 2^-12), some exact zeros.
static float rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t r = (uint32_t)(rng >> 32);
    if (r % 17 == 0) return 0.0f;
    float v = (float)(r & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
    return ldexpf(v, -(int)((r >> 24) % 13));
}

static float *rnd_array(size_t n) {
    float *a = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) a[i] = rnd();
    return a;
}

// Packing agrees with the words it should hold (every machine: the portable
// packers where there is no kernel, the vector ones where there is).
START_TEST(test_pack_layouts) {
    const int Ms[] = {1, 7, 8, 9, 33}, Ks[] = {1, 2, 3, 31, 32, 33, 70}, Ns[] = {1, 16, 17, 32, 33, 70};
    for (size_t mi = 0; mi < 5; mi++)
        for (size_t ki = 0; ki < 7; ki++) {
            int M = Ms[mi], K = Ks[ki], P = lc_bf16_pairs(K), lda = K + 3;
            float *A = rnd_array((size_t)M * lda);
            size_t words = lc_bf16_packed_a_words(M, K);
            uint32_t *pa = malloc(sizeof(uint32_t) * words);
            memset(pa, 0xab, sizeof(uint32_t) * words);
            lc_bf16_pack_a(pa, A, lda, M, K);
            for (int m = 0; m < (M + LC_BF16_MR - 1) / LC_BF16_MR * LC_BF16_MR; m++)
                for (int p = 0; p < P; p++) {
                    uint32_t want = 0;
                    if (m < M)
                        want = lc_f32_to_bf16(A[(size_t)m * lda + 2 * p]) |
                               (2 * p + 1 < K ? (uint32_t)lc_f32_to_bf16(A[(size_t)m * lda + 2 * p + 1]) << 16 : 0);
                    ck_assert_msg(pa[(size_t)m * P + p] == want, "A M=%d K=%d row %d pair %d: %08x, want %08x", M, K,
                                  m, p, pa[(size_t)m * P + p], want);
                }
            free(A);
            free(pa);
        }
    for (size_t ni = 0; ni < 6; ni++)
        for (size_t ki = 0; ki < 7; ki++)
            for (int trans = 0; trans < 2; trans++) {
                int N = Ns[ni], K = Ks[ki], P = lc_bf16_pairs(K);
                int ld = (trans ? K : N) + 5;
                size_t n_src = (size_t)(trans ? N : K) * ld;
                float *B = rnd_array(n_src);
                uint16_t *B16 = malloc(sizeof(uint16_t) * n_src);
                for (size_t i = 0; i < n_src; i++) B16[i] = lc_f32_to_bf16(B[i]);
                size_t words = lc_bf16_packed_b_words(K, N);
                uint32_t *pb = malloc(sizeof(uint32_t) * words), *pb16 = malloc(sizeof(uint32_t) * words);
                memset(pb, 0xab, sizeof(uint32_t) * words);
                memset(pb16, 0xcd, sizeof(uint32_t) * words);
                lc_bf16_pack_b(pb, B, ld, trans, K, N);
                lc_bf16_pack_b_bf16(pb16, B16, ld, trans, K, N);
                for (int n = 0; n < (N + LC_BF16_NR - 1) / LC_BF16_NR * LC_BF16_NR; n++)
                    for (int p = 0; p < P; p++) {
                        uint32_t want = 0;
                        for (int h = 0; h < 2 && n < N; h++) {
                            int k = 2 * p + h;
                            if (k < K) want |= (uint32_t)B16[trans ? (size_t)n * ld + k : (size_t)k * ld + n] << 16 * h;
                        }
                        size_t at = ((size_t)(n / LC_BF16_NR) * P + p) * LC_BF16_NR + n % LC_BF16_NR;
                        ck_assert_msg(pb[at] == want, "B%s N=%d K=%d col %d pair %d: %08x, want %08x",
                                      trans ? "ᵀ" : "", N, K, n, p, pb[at], want);
                        ck_assert_msg(pb16[at] == want, "B%s from bf16 N=%d K=%d col %d pair %d", trans ? "ᵀ" : "", N,
                                      K, n, p);
                    }
                free(B);
                free(B16);
                free(pb);
                free(pb16);
            }
}
END_TEST

// The register-tile kernel on every edge: M, N, K not multiples of the tile,
// K odd, both layouts of B, overwriting and accumulating.
START_TEST(test_kernel_matches_emulation) {
    if (!have_kernel()) {
        printf("test_kernel_matches_emulation: skipped, %s\n", lc_bf16_kernel_describe());
        return;
    }
    const int Ms[] = {1, 7, 8, 9, 17}, Ns[] = {1, 16, 17, 32, 33, 100}, Ks[] = {1, 2, 3, 33, 64, 255};
    int cases = 0;
    for (size_t mi = 0; mi < 5; mi++)
        for (size_t ni = 0; ni < 6; ni++)
            for (size_t ki = 0; ki < 6; ki++)
                for (int trans = 0; trans < 2; trans++)
                    for (int acc = 0; acc < 2; acc++) {
                        int M = Ms[mi], N = Ns[ni], K = Ks[ki], P = lc_bf16_pairs(K), ldc = N + 2;
                        float *A = rnd_array((size_t)M * K), *B = rnd_array((size_t)K * N);
                        float *C = rnd_array((size_t)M * ldc), *C0 = malloc(sizeof(float) * M * ldc);
                        memcpy(C0, C, sizeof(float) * M * ldc);
                        uint32_t *pa = malloc(sizeof(uint32_t) * lc_bf16_packed_a_words(M, K));
                        uint32_t *pb = malloc(sizeof(uint32_t) * lc_bf16_packed_b_words(K, N));
                        lc_bf16_pack_a(pa, A, K, M, K);
                        lc_bf16_pack_b(pb, B, trans ? K : N, trans, K, N);
                        lc_bf16_gemm_block(C, ldc, pa, P, pb, M, N, P, acc);
                        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = bf16(A[i]);
                        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = bf16(B[i]);
                        for (int m = 0; m < M; m++) {
                            for (int n = 0; n < N; n++) {
                                // B [K, N] read as given: transposed, column n is row n.
                                const float *b = trans ? B + (size_t)n * K : B + n;
                                float want = emulate_dot(acc ? C0[(size_t)m * ldc + n] : 0.0f, A + (size_t)m * K, 1, b,
                                                         trans ? 1 : (size_t)N, K);
                                float got = C[(size_t)m * ldc + n];
                                ck_assert_msg(memcmp(&got, &want, 4) == 0,
                                              "M=%d N=%d K=%d trans=%d acc=%d C[%d][%d] = %.9g, emulation %.9g", M, N,
                                              K, trans, acc, m, n, got, want);
                            }
                            // Columns past N are not written.
                            for (int n = N; n < ldc; n++)
                                ck_assert(memcmp(&C[(size_t)m * ldc + n], &C0[(size_t)m * ldc + n], 4) == 0);
                        }
                        cases++;
                        free(A);
                        free(B);
                        free(C);
                        free(C0);
                        free(pa);
                        free(pb);
                    }
    ck_assert_int_eq(cases, 5 * 6 * 6 * 2 * 2);
}
END_TEST

// The products of a linear layer in every stored type, through the thread
// pool's slabs and the blocks of K (forward: columns in blocks of 256;
// backward: rows in blocks of 128), against the emulation on the weight
// dequantized as fp32 and rounded to bf16. Without a kernel BF16 must be
// the fp32 product exactly.
START_TEST(test_weight_products) {
    const lc_wtype types[] = {LC_WTYPE_F32,  LC_WTYPE_F16,  LC_WTYPE_BF16, LC_WTYPE_Q4_0, LC_WTYPE_Q4_1, LC_WTYPE_Q5_0,
                              LC_WTYPE_Q5_1, LC_WTYPE_Q8_0, LC_WTYPE_Q4_K, LC_WTYPE_Q5_K, LC_WTYPE_Q6_K};
    // Quantized rows need whole blocks; the others also run odd shapes.
    const struct {
        int rows, cols, N;
    } shapes[] = {{300, 768, 13}, {77, 301, 9}, {1100, 40, 5}, {64, 256, 1}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int rows = shapes[s].rows, cols = shapes[s].cols, N = shapes[s].N;
            if (cols % lc_wtype_block(types[t])) continue;
            uint64_t state = 11 + t;
            unsigned char *data = malloc(lc_wtype_row_bytes(types[t], cols) * rows);
            test_weight_random(data, types[t], rows, cols, &state);
            lc_weight w = {types[t], data, rows, cols};
            float *wf = malloc(sizeof(float) * rows * cols);
            lc_weight_dequant(wf, &w, 0, rows, 0, cols, cols);
            float *x = rnd_array((size_t)N * cols), *dy = rnd_array((size_t)N * rows);
            float *y = malloc(sizeof(float) * N * rows), *y32 = malloc(sizeof(float) * N * rows);
            float *dx = rnd_array((size_t)N * cols), *dx0 = malloc(sizeof(float) * N * cols);
            float *dx32 = malloc(sizeof(float) * N * cols);
            memcpy(dx0, dx, sizeof(float) * N * cols);
            lc_weight_matmul_forward(y, x, &w, N, LC_COMPUTE_BF16);
            if (!have_kernel()) {
                lc_weight_matmul_forward(y32, x, &w, N, LC_COMPUTE_FP32);
                ck_assert_msg(memcmp(y, y32, sizeof(float) * N * rows) == 0, "%s fallback forward differs from fp32",
                              lc_wtype_name(types[t]));
                for (int over = 0; over < 2; over++) {
                    memcpy(dx, dx0, sizeof(float) * N * cols);
                    memcpy(dx32, dx0, sizeof(float) * N * cols);
                    lc_weight_matmul_backward(dx, dy, &w, over, N, LC_COMPUTE_BF16);
                    lc_weight_matmul_backward(dx32, dy, &w, over, N, LC_COMPUTE_FP32);
                    ck_assert_msg(memcmp(dx, dx32, sizeof(float) * N * cols) == 0,
                                  "%s fallback backward differs from fp32", lc_wtype_name(types[t]));
                }
            } else {
                float *xb = malloc(sizeof(float) * N * cols), *dyb = malloc(sizeof(float) * N * rows);
                for (size_t i = 0; i < (size_t)N * cols; i++) xb[i] = bf16(x[i]);
                for (size_t i = 0; i < (size_t)N * rows; i++) dyb[i] = bf16(dy[i]);
                for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = bf16(wf[i]);
                for (int n = 0; n < N; n++)
                    for (int o = 0; o < rows; o++) {
                        float want = emulate_dot(0.0f, xb + (size_t)n * cols, 1, wf + (size_t)o * cols, 1, cols);
                        float got = y[(size_t)n * rows + o];
                        ck_assert_msg(memcmp(&got, &want, 4) == 0, "%s [%d, %d] N=%d forward y[%d][%d] = %.9g, want %.9g",
                                      lc_wtype_name(types[t]), rows, cols, N, n, o, got, want);
                    }
                for (int over = 0; over < 2; over++) {
                    memcpy(dx, dx0, sizeof(float) * N * cols);
                    lc_weight_matmul_backward(dx, dy, &w, over, N, LC_COMPUTE_BF16);
                    for (int n = 0; n < N; n++)
                        for (int i = 0; i < cols; i++) {
                            float want = emulate_dot(over ? 0.0f : dx0[(size_t)n * cols + i], dyb + (size_t)n * rows, 1,
                                                     wf + i, (size_t)cols, rows);
                            float got = dx[(size_t)n * cols + i];
                            ck_assert_msg(memcmp(&got, &want, 4) == 0,
                                          "%s [%d, %d] N=%d backward%s dx[%d][%d] = %.9g, want %.9g",
                                          lc_wtype_name(types[t]), rows, cols, N, over ? " (overwrite)" : "", n, i,
                                          got, want);
                        }
                }
                free(xb);
                free(dyb);
            }
            free(data);
            free(wf);
            free(x);
            free(dy);
            free(y);
            free(y32);
            free(dx);
            free(dx0);
            free(dx32);
        }
}
END_TEST

// The same result on one thread and on the pool's threads (the split
// changes which thread computes a slab, never the order within an output).
// Without a kernel these are OpenBLAS's products, whose sums follow its split.
START_TEST(test_threads_agree) {
    if (!have_kernel()) return;
    int rows = 700, cols = 512, N = 21;
    float *w = rnd_array((size_t)rows * cols), *x = rnd_array((size_t)N * cols), *dy = rnd_array((size_t)N * rows);
    float *y1 = malloc(sizeof(float) * N * rows), *y2 = malloc(sizeof(float) * N * rows);
    float *d1 = malloc(sizeof(float) * N * cols), *d2 = malloc(sizeof(float) * N * cols);
    lc_weight wt = {LC_WTYPE_F32, w, rows, cols};
    int threads = lc_parallel_threads();
    lc_parallel_set_threads(1);
    lc_weight_matmul_forward(y1, x, &wt, N, LC_COMPUTE_BF16);
    lc_weight_matmul_backward(d1, dy, &wt, true, N, LC_COMPUTE_BF16);
    lc_parallel_set_threads(threads > 1 ? threads : 2);
    lc_weight_matmul_forward(y2, x, &wt, N, LC_COMPUTE_BF16);
    lc_weight_matmul_backward(d2, dy, &wt, true, N, LC_COMPUTE_BF16);
    lc_parallel_set_threads(threads);
    ck_assert(memcmp(y1, y2, sizeof(float) * N * rows) == 0);
    ck_assert(memcmp(d1, d2, sizeof(float) * N * cols) == 0);
    free(w);
    free(x);
    free(dy);
    free(y1);
    free(y2);
    free(d1);
    free(d2);
}
END_TEST

// LC_BF16=off is honoured and named; the effective compute follows the kernel.
START_TEST(test_kernel_choice) {
    const char *env = getenv("LC_BF16");
    bool off = env && (!strcasecmp(env, "off") || !strcmp(env, "0") || !strcasecmp(env, "none") ||
                       !strcasecmp(env, "no") || !strcasecmp(env, "false"));
    const char *d = lc_bf16_kernel_describe();
    if (off) {
        ck_assert_int_eq(lc_bf16_kernel_get(), LC_BF16_KERNEL_NONE);
        ck_assert_msg(strstr(d, "LC_BF16=") != NULL, "%s", d);
    }
    ck_assert_int_eq(lc_compute_effective(LC_COMPUTE_BF16), have_kernel() ? LC_COMPUTE_BF16 : LC_COMPUTE_FP32);
    ck_assert_int_eq(lc_compute_effective(LC_COMPUTE_FP32), LC_COMPUTE_FP32);
    ck_assert_str_eq(lc_bf16_kernel_name(lc_bf16_kernel_get()), have_kernel() ? "avx512-bf16" : "none");
    printf("bf16 kernel: %s\n", d);
}
END_TEST

static Suite *bf16_suite(void) {
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("products");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kernel_choice);
    tcase_add_test(tc, test_pack_layouts);
    tcase_add_test(tc, test_kernel_matches_emulation);
    tcase_add_test(tc, test_weight_products);
    tcase_add_test(tc, test_threads_agree);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lc_test_run_suite(bf16_suite()); }
