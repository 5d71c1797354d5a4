// Helpers the element-wise kernels share (kernels.c, attention.c): the
// clones attribute, a vectorizable exp and tanh, and row reductions. Private
// to autograd/; the files that include it are built with -O3 -fopenmp-simd.
#ifndef LC_SIMD_H
#define LC_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

// Hot element-wise kernels are built for AVX-512, AVX2 and baseline x86-64;
// the loader picks the clone the CPU supports.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LC_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LC_VECTOR_CLONES
#endif

// exp for the element-wise loops: a branch-free polynomial (Cephes' expf
// coefficients, within 2 ulp over the clamped range) that the compiler can
// vectorize, where a libm call per element cannot be.
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    // Round to nearest by adding 1.5·2^23 (roundf is a libm call without SSE4.1).
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // NaN stays NaN through p; only the exponent needs an integer, so keep NaN out of it.
    int32_t ni = n == n ? (int32_t)n : 0;
    uint32_t bits = (uint32_t)(ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fast_tanhf(float x) { return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f); }

// Reductions the compiler vectorizes: -fopenmp-simd lets these loops (and
// only these) reorder their float sums. A single scalar accumulator would
// keep them one element per cycle.
static inline float row_max(const float *x, int n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

static inline float row_dot(const float *x, const float *y, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) s += x[j] * y[j];
    return s;
}

// x[j] = exp(x[j] − m) over a row, returning their sum.
static inline float row_exp_sum(float *x, float m, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) {
        float e = fast_expf(x[j] - m);
        x[j] = e;
        s += e;
    }
    return s;
}

#endif
