// LoRA adapters on a model's linear layers: W x + scale · B A x, with A
// Kaiming-uniform (a = √5, as PEFT initializes it) and B zero. All A and B
// live in one flat parameter block (and one gradient block) for the optimizer.
#ifndef LC_LORA_H
#define LC_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/graph.h"
#include "common/status.h"
#include "model/model.h"

// The most layers a model config may have (model/config.c refuses more).
#define LC_LORA_MAX_LAYERS 1024

typedef struct lc_lora_config {
    int r;
    float alpha;
    float dropout;
    bool rslora;      // scale alpha / sqrt(r) instead of alpha / r
    unsigned targets; // bit (1 << lc_linear_kind) per targeted module
    // Which layers get adapters. As a config gives it: layers_last > 0 for the
    // last N (MLX-LM's --num-layers), else the indices set in `layers` (PEFT's
    // layers_to_transform), none set meaning every layer. lc_lora_init and
    // lc_lora_layers_resolve turn every form into the explicit set, so two
    // resolved configs compare bit for bit.
    int layers_last;
    uint64_t layers[LC_LORA_MAX_LAYERS / 64];
} lc_lora_config;

typedef struct lc_lora {
    lc_lora_config cfg;
    float scale;
    int n_layers;
    size_t n_params;
    float *params;      // [n_params] A then B of each adapted linear, layer-major
    float *grads;       // [n_params] or NULL when not training
    lc_lora_ref *refs;  // [n_layers * LC_LINEAR_KIND_COUNT]; A == NULL where not adapted
    // Mixture of experts: adapters on each expert's gate, up and down
    // projections (targets GATE, UP, DOWN), after the layer's own in params.
    int expert_slots;         // per layer: (n_experts + 1) * LC_EXPERT_PROJ_COUNT; 0 for a dense model
    lc_lora_ref *expert_refs; // [n_layers * expert_slots]; expert n_experts is the shared one
} lc_lora;

// One adapted projection of a sparse layer's expert (expert == n_experts:
// the shared expert).
typedef struct lc_lora_expert {
    int layer, expert;
    lc_expert_proj proj;
    lc_linear_kind kind; // the target kind that selects it: GATE, UP or DOWN
    const lc_linear *lin;
    lc_lora_ref *ref;
} lc_lora_expert;

// Bit for a module name ("q_proj", ...); 0 if the name is unknown.
unsigned lc_lora_target_bit(const char *name);

// alpha / r, or alpha / sqrt(r) with rsLoRA: what B A is multiplied by.
float lc_lora_config_scale(const lc_lora_config *cfg);

// "q_proj,v_proj,down_proj": the targeted kinds in lc_linear_kind order.
void lc_lora_targets_string(char *out, size_t cap, unsigned targets);

// Whether cfg selects `layer` (0 <= layer < LC_LORA_MAX_LAYERS) of a model
// with n_layers layers, in any of its forms.
bool lc_lora_layer_selected(const lc_lora_config *cfg, int n_layers, int layer);
// Turns cfg's layer selection into the explicit set for a model with
// n_layers layers; an index or a count beyond the model is an LC_STATUS_INPUT
// error naming its layer count ("lora.layers: layer 7 is out of range: the
// model has 4 layers (0..3)").
lc_status lc_lora_layers_resolve(lc_lora_config *cfg, int n_layers);
// "all", "last 2" or "0,2,5-9": cfg's layer selection as given (a run of
// three or more as first-last).
void lc_lora_layers_string(char *out, size_t cap, const lc_lora_config *cfg);

// Allocates adapters for every targeted linear of m's selected layers; A from `seed`, B zero.
lc_status lc_lora_init(lc_lora *l, const lc_model *m, const lc_lora_config *cfg, uint64_t seed, bool with_grads);
void lc_lora_free(lc_lora *l);

// The adapter of (layer, kind), or NULL.
const lc_lora_ref *lc_lora_get(const lc_lora *l, int layer, lc_linear_kind kind);
// The adapter of projection proj of expert e of a sparse layer, or NULL.
const lc_lora_ref *lc_lora_get_expert(const lc_lora *l, int layer, int e, lc_expert_proj proj);
// The adapted expert projections in parameter order: with *cursor 0 first,
// each call fills *out and returns true until none is left.
bool lc_lora_expert_next(const lc_lora *l, const lc_model *m, int *cursor, lc_lora_expert *out);

// Multiplies every B by factor (l was initialized for m).
void lc_lora_scale_b(lc_lora *l, const lc_model *m, float factor);

// Per-step dropout masks: each adapted linear gets a distinct mask seed.
void lc_lora_set_dropout_seed(lc_lora *l, uint64_t seed);
// The same masks for a slice of a batch: rows (B·T positions) from row0 of
// the batch the seed was drawn for, so a process training part of a batch
// drops what the whole batch would drop there (l was initialized for m).
void lc_lora_set_dropout_rows(lc_lora *l, const lc_model *m, uint64_t seed, int64_t row0);

#endif
