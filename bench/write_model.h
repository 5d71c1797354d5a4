// A model folder of a given Llama shape with seeded random weights (F32
// model.safetensors, config.json) and the tokenizer.json at tokenizer_json
// (whose vocabulary sets vocab_size), for benchmarks of the real `lora
// train` path. Not used by lora itself.
#ifndef LC_BENCH_WRITE_MODEL_H
#define LC_BENCH_WRITE_MODEL_H

#include <stdint.h>

#include "common/status.h"

lc_status bench_write_model(const char *dir, const char *tokenizer_json, int C, int F, int L, int H, int KVH, int D,
                            int tied, int max_pos, uint64_t seed);

#endif
