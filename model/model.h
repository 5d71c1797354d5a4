// A loaded Llama-family model: config, fp32 weights (F32 tensors used in
// place from the mapped file, F16/BF16 converted once), and rotary tables.
#ifndef LC_MODEL_H
#define LC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "model/config.h"
#include "model/safetensors.h"

// The linear layers of a block, in the order LoRA targets name them.
typedef enum lc_linear_kind {
    LC_LINEAR_KIND_Q,
    LC_LINEAR_KIND_K,
    LC_LINEAR_KIND_V,
    LC_LINEAR_KIND_O,
    LC_LINEAR_KIND_GATE,
    LC_LINEAR_KIND_UP,
    LC_LINEAR_KIND_DOWN,
    LC_LINEAR_KIND_COUNT,
} lc_linear_kind;

typedef struct lc_linear {
    const float *w;         // [out, in], or NULL when stored as bf16
    const uint16_t *w_bf16; // [out, in] with bf16 storage, else NULL
    const float *bias; // [out] or NULL
    int in, out;
} lc_linear;

typedef struct lc_layer {
    const float *attn_norm; // [C]
    const float *mlp_norm;  // [C]
    lc_linear lin[LC_LINEAR_KIND_COUNT];
} lc_layer;

typedef struct lc_model {
    lc_model_config cfg;
    lc_st_set st;
    const float *embed;      // [V, C]
    const float *final_norm; // [C]
    const float *lm_head;    // [V, C]; the embedding when tied
    lc_layer *layers;        // [n_layers]
    float *inv_freq;         // [D/2]
    void **owned;            // converted copies, freed with the model
    int n_owned;
} lc_model;

// HF module name of a linear kind ("q_proj", ...) and its parent ("self_attn"/"mlp").
const char *lc_linear_kind_name(lc_linear_kind kind);
const char *lc_linear_kind_parent(lc_linear_kind kind);

// Loads dir/config.json and the safetensors weights; every tensor's shape is
// checked against the config and a mismatch names the tensor.
lc_status lc_model_load(lc_model *m, const char *dir);
// The same, keeping the linear layers' frozen weights in bf16 (half the
// memory; converted to fp32 where used) when bf16_weights is set.
lc_status lc_model_load_opts(lc_model *m, const char *dir, bool bf16_weights);

// A hex digest of the base model: architecture fields, tensor names, dtypes,
// shapes and every byte of the tensors. Checkpoints record it so that
// resuming or applying an adapter on another base can be refused.
void lc_model_fingerprint(const lc_model *m, char out[17]);
void lc_model_free(lc_model *m);

// A model of the given shape with seeded random weights in memory (norms 1,
// others uniform in ±0.02·√3, so std 0.02), for benchmarks and tests that
// need no file. cfg must be valid (as lc_config_load leaves it).
lc_status lc_model_init_random(lc_model *m, const lc_model_config *cfg, uint64_t seed, bool bf16_weights);

// The fp32 weight of a linear layer: w itself, or its bf16 copy converted
// into a per-thread scratch buffer (valid until the next conversion).
const float *lc_linear_weight_f32(const lc_linear *lin);

#endif
