// Frozen weights in their stored type. A linear layer's matrix may be fp32,
// half precision or one of llama.cpp's block-quantized formats; the products
// dequantize panels of it into a small per-thread scratch just before each
// GEMM, so no fp32 copy of a whole weight ever exists. Dequantization is
// bit-exact with ggml's dequantize_row_* (block layouts in ../shared/notes/gguf.md).
#ifndef LC_WEIGHT_H
#define LC_WEIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lc_wtype {
    LC_WTYPE_F32,
    LC_WTYPE_F16,
    LC_WTYPE_BF16,
    LC_WTYPE_Q4_0,
    LC_WTYPE_Q4_1,
    LC_WTYPE_Q5_0,
    LC_WTYPE_Q5_1,
    LC_WTYPE_Q8_0,
    LC_WTYPE_Q4_K,
    LC_WTYPE_Q5_K,
    LC_WTYPE_Q6_K,
    LC_WTYPE_COUNT,
} lc_wtype;

// A row-major [rows, cols] matrix of type `type`: each row is cols/block
// blocks of block_bytes, rows are packed one after another.
typedef struct lc_weight {
    lc_wtype type;
    const void *data; // [rows * lc_wtype_row_bytes(type, cols)]
    int rows, cols;
} lc_weight;

float lc_f16_to_f32(uint16_t h);
float lc_bf16_to_f32(uint16_t h);
uint16_t lc_f32_to_f16(float f);  // round to nearest even, overflow to inf
uint16_t lc_f32_to_bf16(float f); // round to nearest even, NaN kept NaN

const char *lc_wtype_name(lc_wtype t);  // "F32", "Q4_K", ...
int lc_wtype_block(lc_wtype t);         // elements per block (1 for F32/F16/BF16)
size_t lc_wtype_block_bytes(lc_wtype t);
// Bytes of one row of cols elements; cols must be a multiple of the block.
size_t lc_wtype_row_bytes(lc_wtype t, int64_t cols);
// The ggml type id of t, and the lc_wtype of a ggml id (false: not one we hold).
uint32_t lc_wtype_ggml(lc_wtype t);
bool lc_wtype_from_ggml(uint32_t ggml_type, lc_wtype *out);

// Rows [r0, r0 + n_rows) and columns [c0, c0 + n_cols) of w as fp32 into out
// (row stride ldo). c0 must be a multiple of the block, and n_cols too
// unless the range ends at cols.
void lc_weight_dequant(float *out, // [n_rows, ldo]
                       const lc_weight *w, int r0, int n_rows, int c0, int n_cols, int ldo);
// n elements of one row (a multiple of the block) starting at src.
void lc_wtype_dequant_row(float *out, lc_wtype t, const void *src, int64_t n);

// n values of src as one row of type t at dst (F32, F16, BF16, or Q8_0 as
// ggml's quantize_row_q8_0_ref; n a multiple of the block). false for a type
// lora.c does not write.
bool lc_wtype_quantize_row(void *dst, lc_wtype t, const float *src, int64_t n);

// How a frozen weight's products multiply. FP32: fp32 throughout (OpenBLAS).
// BF16: both operands rounded to bf16 (nearest even), products accumulated
// in fp32 (autograd/bf16_gemm.h); F32 and BF16 weights are packed straight
// into bf16 panels, the other types dequantized to an fp32 panel first. Where the CPU has no bf16 kernel (or LC_BF16=off)
// BF16 runs as FP32.
typedef enum lc_compute {
    LC_COMPUTE_FP32,
    LC_COMPUTE_BF16,
} lc_compute;

// "fp32" / "bf16" (the config key and --compute); -1 if neither.
int lc_compute_parse(const char *name);
const char *lc_compute_name(lc_compute c);

// The compute that runs when c is asked for (BF16 becomes FP32 without a kernel).
lc_compute lc_compute_effective(lc_compute c);

// out = x · wᵀ: the linear layer's forward product.
void lc_weight_matmul_forward(float *out,     // [N, w->rows]
                              const float *x, // [N, w->cols]
                              const lc_weight *w, int N, lc_compute c);
// dx (+)= dy · w: its input gradient; overwrite replaces dx instead of adding.
void lc_weight_matmul_backward(float *dx,       // [N, w->cols]
                               const float *dy, // [N, w->rows]
                               const lc_weight *w, bool overwrite, int N, lc_compute c);

#endif
