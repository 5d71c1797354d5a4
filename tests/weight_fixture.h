// Random frozen weights of any stored type for the product tests: random
// blocks whose fp16 scales are set small and sane, so every type dequantizes
// to finite values of a similar range.
#ifndef LC_WEIGHT_FIXTURE_H
#define LC_WEIGHT_FIXTURE_H

#include <stdint.h>

#include "autograd/weight.h"

// Fills data with rows x cols of type t (lc_wtype_row_bytes(t, cols) * rows
// bytes) from the generator *state.
void test_weight_random(unsigned char *data, lc_wtype t, int rows, int cols, uint64_t *state);

#endif
