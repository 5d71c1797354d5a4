// A loaded model of any supported family: config, fp32 weights (F32 tensors
// used in place from the mapped file, F16/BF16 converted once, Conv1D
// weights transposed), and position tables.
#ifndef LC_MODEL_H
#define LC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "model/config.h"
#include "model/safetensors.h"

// The linear layers of a block. Families have either the separate or the
// fused form of query/key/value and gate/up, so a layer holds a subset.
typedef enum lc_linear_kind {
    LC_LINEAR_KIND_Q,
    LC_LINEAR_KIND_K,
    LC_LINEAR_KIND_V,
    LC_LINEAR_KIND_O,
    LC_LINEAR_KIND_GATE,
    LC_LINEAR_KIND_UP,
    LC_LINEAR_KIND_DOWN,
    LC_LINEAR_KIND_QKV,     // fused query/key/value (Phi-3, GPT-2, Falcon, Bloom)
    LC_LINEAR_KIND_GATE_UP, // fused gate/up (Phi-3)
    LC_LINEAR_KIND_COUNT,
} lc_linear_kind;

#define LC_LINEAR_KIND_ALL ((1u << LC_LINEAR_KIND_COUNT) - 1)

typedef struct lc_linear {
    lc_weight w;       // [out, in] in its stored type (fp32, bf16, a GGUF quantization)
    const float *bias; // [out] or NULL
    int in, out;       // 0 when the family has no such projection
} lc_linear;

// A norm's parameters: w NULL means 1 and b NULL means 0 (OLMo's norms have
// neither). Gemma's (1 + w) is folded into w at load.
typedef struct lc_norm {
    const float *w; // [C] or NULL
    const float *b; // [C] or NULL
} lc_norm;

// The projections of one expert's gated MLP: down(act(gate x) * up x).
typedef enum lc_expert_proj {
    LC_EXPERT_PROJ_GATE,
    LC_EXPERT_PROJ_UP,
    LC_EXPERT_PROJ_DOWN,
    LC_EXPERT_PROJ_COUNT,
} lc_expert_proj;

// A sparse layer's MLP (lc_config_layer_moe): the router, each routed expert,
// and qwen2_moe's shared expert with its sigmoid gate.
typedef struct lc_moe {
    lc_linear router;                         // [n_experts, C]
    lc_linear *experts;                       // [n_experts * LC_EXPERT_PROJ_COUNT]: expert e's at e * 3 + proj
    lc_linear shared[LC_EXPERT_PROJ_COUNT];   // out 0 when the family has no shared expert
    lc_linear shared_gate;                    // [1, C], or out 0
} lc_moe;

typedef struct lc_layer {
    lc_norm attn_norm;      // before attention
    lc_norm mlp_norm;       // before the MLP (the attention norm's output in a one-norm parallel block)
    lc_norm post_attn_norm; // on the attention output (sandwich blocks)
    lc_norm post_mlp_norm;  // on the MLP output (sandwich blocks)
    lc_norm q_norm, k_norm; // over the whole q / k projection (OLMoE), else {NULL, NULL}
    lc_linear lin[LC_LINEAR_KIND_COUNT]; // a sparse layer has no MLP kinds here (out 0)
    lc_moe *moe;            // a sparse layer's experts, else NULL
} lc_layer;

typedef struct lc_model {
    lc_model_config cfg;
    lc_st_set st;
    lc_weight embed;         // [V, C]: fp32, or a GGUF base's stored type
    const float *pos_embed;  // [max_position_embeddings, C] learned positions, or NULL
    lc_norm embed_norm;      // after the embeddings (Bloom), else {NULL, NULL} unused
    lc_norm final_norm;
    lc_weight lm_head;       // [V, C]; the embedding when tied (the same data)
    const char *ignored_head; // the head tensor a tied config leaves unused (its name in st), or NULL
    lc_layer *layers;        // [n_layers]
    float *inv_freq;         // [rope_dim/2]
    float *alibi;            // [H] ALiBi slopes, or NULL
    int32_t *qkv_cols;       // [H*D + 2*KVH*D]: the fused (or stacked) projection's
                             // output column of each query, key and value column
    struct lc_gguf_file *gguf; // the open GGUF file of a GGUF base, else NULL
    char *hf_config;         // a GGUF base's config.json equivalent (JSON text), else NULL
    bool rope_freqs;         // inv_freq divided by the file's rope_freqs (Llama 3.1 scaling)
    bool from_gguf;          // loaded from a GGUF file: frozen linear weights stay F16/BF16 as stored
    void **owned;            // converted copies, freed with the model
    int n_owned;
} lc_model;

// Canonical name of a linear kind ("q_proj", ..., "qkv_proj", "gate_up_proj")
// and its parent ("self_attn"/"mlp"): the names of our own checkpoints,
// whatever the family calls the module.
const char *lc_linear_kind_name(lc_linear_kind kind);
const char *lc_linear_kind_parent(lc_linear_kind kind);

// Projection proj of expert e of layer l (e == n_experts: the shared
// expert), or NULL where there is none (a dense layer, no shared expert).
const lc_linear *lc_model_expert_linear(const lc_model *m, int layer, int e, lc_expert_proj proj);
// The linear kind (GATE, UP, DOWN) whose targets select an expert projection.
lc_linear_kind lc_expert_proj_kind(lc_expert_proj proj);

// Bit set of the linear kinds a model has.
unsigned lc_model_linear_kinds(const lc_model_config *cfg);
// The kinds layer `layer` has: a sparse layer's experts take the MLP's place.
unsigned lc_model_layer_linear_kinds(const lc_model_config *cfg, int layer);

// Loads dir/config.json and the safetensors weights, or a GGUF file
// (model/gguf_model.h) when dir is one; every tensor's shape is
// checked against the config and a mismatch names the tensor. With
// tie_word_embeddings the head is the embedding matrix, and a stored head
// tensor is not used (m->ignored_head names it, for the caller to warn).
lc_status lc_model_load(lc_model *m, const char *dir);
// The same, keeping the linear layers' frozen weights in bf16 (half the
// memory; converted to fp32 where used) when bf16_weights is set.
lc_status lc_model_load_opts(lc_model *m, const char *dir, bool bf16_weights);
// Whether path can name a base at all (a folder or a GGUF file), else the
// error a user needs: no such path, or a file that is not GGUF.
lc_status lc_model_path_check(const char *path);

// With m->cfg and m->st set up (by a loader), loads every tensor the family
// needs; on failure the caller frees m.
lc_status lc_model_load_tensors(lc_model *m, bool bf16_weights);
// A buffer of `bytes` freed with the model (NULL when out of memory).
void *lc_model_own(lc_model *m, size_t bytes);

// A hex digest of the base model: architecture fields, tensor names, dtypes,
// shapes and every byte of the tensors. Checkpoints record it so that
// resuming or applying an adapter on another base can be refused.
void lc_model_fingerprint(const lc_model *m, char out[17]);
void lc_model_free(lc_model *m);

// A model of the given shape with seeded random weights in memory (norms 1,
// others uniform in ±0.02·√3, so std 0.02), for benchmarks and tests that
// need no file. cfg must be valid (as lc_config_load leaves it). The linear
// layers' frozen weights are held as wtype: F32 or BF16 (rounded), or random
// blocks of a quantized type (codes and scales, not a quantized model; each
// row a multiple of the block), and then the embeddings and head too.
lc_status lc_model_init_random(lc_model *m, const lc_model_config *cfg, uint64_t seed, lc_wtype wtype);

#endif
