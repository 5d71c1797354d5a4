#include "weight_fixture.h"

#include <string.h>

void test_weight_random(unsigned char *data, lc_wtype t, int rows, int cols, uint64_t *state) {
    size_t bytes = lc_wtype_row_bytes(t, cols) * rows;
    for (size_t i = 0; i < bytes; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (unsigned char)(*state >> 56);
    }
    size_t bb = lc_wtype_block_bytes(t);
    if (t == LC_WTYPE_F32) {
        for (size_t i = 0; i < bytes / 4; i++) {
            float v = ((int)(data[4 * i] % 200) - 100) / 1000.0f;
            memcpy(data + 4 * i, &v, 4);
        }
    } else if (t == LC_WTYPE_F16 || t == LC_WTYPE_BF16) {
        for (size_t i = 0; i < bytes / 2; i++) {
            float v = ((int)(data[2 * i] % 200) - 100) / 1000.0f;
            uint16_t h = t == LC_WTYPE_F16 ? lc_f32_to_f16(v) : lc_f32_to_bf16(v);
            memcpy(data + 2 * i, &h, 2);
        }
    } else {
        // The fp16 scale(s) at the start of each block (Q6_K: at its end).
        size_t at = t == LC_WTYPE_Q6_K ? 208 : 0;
        int n_half = t == LC_WTYPE_Q4_1 || t == LC_WTYPE_Q5_1 || t == LC_WTYPE_Q4_K || t == LC_WTYPE_Q5_K ? 2 : 1;
        for (size_t b = 0; b < bytes / bb; b++)
            for (int h = 0; h < n_half; h++) {
                uint16_t v = lc_f32_to_f16(0.001f * (float)(1 + (b + h) % 7));
                memcpy(data + b * bb + at + 2 * h, &v, 2);
            }
    }
}
