// Where each family keeps its weights: the Hugging Face module paths of the
// *ForCausalLM model (PEFT names adapters after these) and the checkpoint
// key prefix some hub checkpoints leave out.
#ifndef LC_ARCH_H
#define LC_ARCH_H

#include "model/config.h"
#include "model/model.h"

typedef struct lc_arch_names {
    const char *layer;       // printf format of layer i's module path: "model.layers.%d"
    const char *embed;       // module paths; ".weight" / ".bias" follow
    const char *pos_embed;   // NULL where absent
    const char *embed_norm;  // NULL where absent
    const char *final_norm;  // NULL for OLMo's parameter-free norm
    const char *head;
    // Under the layer; NULL where absent.
    const char *attn_norm, *mlp_norm, *post_attn_norm, *post_mlp_norm;
    const char *lin[LC_LINEAR_KIND_COUNT];
    // Mixture of experts, under the layer; NULL where absent.
    const char *router;        // "block_sparse_moe.gate", "mlp.gate"
    const char *expert;        // printf format of expert e: "mlp.experts.%d"
    const char *expert_lin[3]; // an expert's projections by lc_expert_proj: "w1", "w3", "w2"
    const char *shared_expert; // "mlp.shared_expert" (projections named as an expert's)
    const char *shared_gate;   // "mlp.shared_expert_gate"
    const char *q_norm, *k_norm;
    const char *optional_prefix; // checkpoints may omit this ("transformer." of GPT-2, Bloom)
} lc_arch_names;

void lc_arch_names_get(lc_arch_names *n, const lc_model_config *cfg);

// "model.layers.0.mlp.experts.3.gate_proj": the module path of projection
// proj of expert e (e == n_experts: the shared expert).
void lc_arch_expert_path(const lc_model_config *cfg, int layer, int e, lc_expert_proj proj, char *out, size_t cap);
// Reads an expert projection's module path at the start of s (layer and
// expert in range); returns what follows it, or NULL.
const char *lc_arch_match_expert(const lc_model_config *cfg, const char *s, int *layer, int *e, lc_expert_proj *proj);

// The family's own name of a linear kind ("c_attn", "query_key_value", ...),
// the last component of its module path; NULL where the family has none.
const char *lc_arch_linear_name(const lc_model_config *cfg, lc_linear_kind kind);

// Kinds a LoRA target module name selects in this family (0: not one of its
// modules). GPT-2's "c_proj" selects both the attention and the MLP output.
unsigned lc_arch_target_bits(const lc_model_config *cfg, const char *name);

// The same over every family: what a name can mean before the model is known.
unsigned lc_arch_target_bits_any(const char *name);

// "qkv_proj/c_attn/query_key_value": what the families call a kind.
void lc_arch_kind_aliases(lc_linear_kind kind, char *out, size_t cap);

// "c_attn, c_proj, c_fc": the family's module names, for error messages.
void lc_arch_target_list(const lc_model_config *cfg, char *out, size_t cap);

#endif
