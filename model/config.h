// Model configuration read from a Hugging Face config.json. Every supported
// family (model_type) is reduced to one architecture description: which norm,
// activation, positions and block layout it uses and how its projections are
// fused. The one forward pass in forward.c reads only this description.
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include <stdbool.h>

#include "autograd/kernels.h"
#include "common/status.h"

#define LC_MAX_EOS_IDS 16 // most ids an eos_token_id list may hold

typedef enum lc_arch {
    LC_ARCH_LLAMA,
    LC_ARCH_MISTRAL,
    LC_ARCH_QWEN2,
    LC_ARCH_GEMMA,
    LC_ARCH_GEMMA2,
    LC_ARCH_PHI3,
    LC_ARCH_GPT2,
    LC_ARCH_FALCON,
    LC_ARCH_OLMO,
    LC_ARCH_BLOOM,
    LC_ARCH_MIXTRAL,   // Mistral attention, a routed mixture of expert MLPs
    LC_ARCH_OLMOE,     // routed experts, RMSNorm on the whole q and k projections
    LC_ARCH_QWEN2_MOE, // Qwen2 attention, routed experts plus a gated shared expert
    LC_ARCH_COUNT,
} lc_arch;

typedef enum lc_rope_scaling {
    LC_ROPE_SCALING_NONE,
    LC_ROPE_SCALING_LLAMA3,
    LC_ROPE_SCALING_LINEAR,
} lc_rope_scaling;

typedef enum lc_norm_kind {
    LC_NORM_KIND_RMS,   // x / rms(x) · w
    LC_NORM_KIND_LAYER, // (x − mean) / std · w + b; w and b may be absent (OLMo)
} lc_norm_kind;

typedef enum lc_pos_kind {
    LC_POS_KIND_ROPE,    // rotary, rotate-half layout
    LC_POS_KIND_LEARNED, // a learned absolute position table added to the embeddings
    LC_POS_KIND_ALIBI,   // linear attention biases per head
} lc_pos_kind;

typedef enum lc_block_kind {
    LC_BLOCK_KIND_SEQUENTIAL, // x += attn(norm(x)); x += mlp(norm(x))
    LC_BLOCK_KIND_SANDWICH,   // the same with a norm on each branch's output too (Gemma 2)
    LC_BLOCK_KIND_PARALLEL,   // x += attn(norm(x)) + mlp(norm(x)) (Falcon)
} lc_block_kind;

// How a fused query/key/value projection orders its output rows.
typedef enum lc_qkv_layout {
    LC_QKV_LAYOUT_SEPARATE, // q_proj, k_proj, v_proj
    LC_QKV_LAYOUT_CONCAT,   // [q; k; v] (Phi-3, GPT-2, Falcon-7B)
    LC_QKV_LAYOUT_GROUPED,  // per KV head: its query heads, then k, then v (Falcon new decoder)
    LC_QKV_LAYOUT_PER_HEAD, // per head: q, k, v (Bloom, Falcon without multi-query)
} lc_qkv_layout;

typedef struct lc_model_config {
    lc_arch arch;
    char model_type[32];
    int hidden_size;       // C
    int intermediate_size; // F
    int n_layers;
    int n_heads;    // H
    int n_kv_heads; // KVH
    int head_dim;   // D
    int vocab_size; // V
    int max_position_embeddings;

    lc_norm_kind norm;
    bool norm_affine;     // layer norms carry weight and bias (all but OLMo)
    bool norm_plus_one;   // RMSNorm scales by (1 + w) (Gemma)
    float norm_eps;
    bool embed_norm;      // a layer norm right after the embeddings (Bloom)
    float embed_scale;    // embeddings are multiplied by this (√C for Gemma, else 1)

    lc_pos_kind pos;
    float rope_theta;
    int rope_dim;         // rotated dimensions of each head (D unless partial rotary)
    lc_rope_scaling rope_scaling;
    float rope_factor; // llama3 / linear
    float rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;

    lc_block_kind block;
    bool parallel_two_norms;  // parallel block with separate attention and MLP norms
    bool residual_from_norm;  // the residual is the norm's output (Bloom's option)
    lc_qkv_layout qkv;
    bool gate_up_fused;       // one gate_up_proj, rows [gate; up] (Phi-3)
    bool mlp_gated;           // act(gate) · up; otherwise act(up)
    lc_act_kind act;
    bool weights_transposed;  // Conv1D: linear weights stored [in, out] (GPT-2)

    float attn_scale;        // query-key scale (1/√D unless the family says otherwise)
    bool attn_scale_by_layer; // GPT-2's scale_attn_by_inverse_layer_idx: also / (layer + 1)
    float attn_softcap;      // scores → cap · tanh(scores / cap); 0 = none (Gemma 2)
    float final_softcap;     // the same on the logits
    float clip_qkv;          // q, k, v clamped to ±clip after projection; 0 = none (OLMo)
    int sliding_window;      // 0 = full attention
    bool sliding_alternate;  // the window applies to even layers only (Gemma 2)

    bool tie_word_embeddings;
    bool qkv_bias;  // bias on the query/key/value projection(s)
    bool o_bias;    // bias on the attention output projection
    bool mlp_bias;  // bias on the MLP projections
    int bos_token_id, eos_token_id; // -1 if absent; eos_token_id is eos_ids[0]
    int eos_ids[LC_MAX_EOS_IDS];    // every id generation stops at (a list in Llama 3 instruct)
    int n_eos_ids;

    // Mixture of experts (n_experts 0: a dense model). A sparse layer's MLP
    // is a router (a frozen linear to n_experts logits), softmax over them,
    // the top experts_per_tok of each token (renormalized to sum 1 when
    // norm_topk_prob), and the weighted sum of those experts' gated MLPs of
    // width moe_ff; qwen2_moe adds a shared expert of width shared_ff scaled by
    // sigmoid(shared_expert_gate(x)). Dense layers keep intermediate_size.
    int n_experts;
    int experts_per_tok;
    bool norm_topk_prob;
    int moe_ff;
    int shared_ff;          // 0: no shared expert
    int moe_step;           // layer l is sparse when (l + 1) % moe_step == 0 ...
    uint64_t moe_dense[16]; // ... and its bit here is clear (mlp_only_layers; 1024 layers)
    bool qk_norm;           // RMSNorm over the whole q and k projections (OLMoE)
} lc_model_config;

// Whether layer l's MLP is a mixture of experts.
bool lc_config_layer_moe(const lc_model_config *cfg, int layer);

// Parses and validates path (config.json). Sizes must be positive, consistent
// (heads divide evenly, even head_dim) and below sane caps. A model_type that
// is not supported is an error naming it and listing the supported ones.
lc_status lc_config_load(lc_model_config *cfg, const char *path);

// The same from a parsed config.json-style object; path names it in errors.
typedef struct cJSON cJSON;
lc_status lc_config_parse_json(lc_model_config *cfg, const cJSON *root, const char *path);

// Reads eos_token_id from generation_config.json (path): when the file sets
// it, it replaces config.json's ids for generation, as transformers'
// GenerationConfig does. Other keys are not read.
lc_status lc_config_load_generation(lc_model_config *cfg, const char *path);

// Fills the description of a Llama-architecture model of the given sizes (for
// benchmarks and tests that build a model in memory): rope theta 10000, norm
// eps 1e-5, 2048 positions, untied.
void lc_config_init_llama(lc_model_config *cfg, int C, int F, int n_layers, int H, int KVH, int D, int V);

// Rotary inverse frequencies for the config, with rope scaling applied.
void lc_config_rope_inv_freq(const lc_model_config *cfg, float *inv_freq /* [rope_dim/2] */);

// ALiBi slope of each head, as Hugging Face's build_alibi_tensor computes them.
void lc_config_alibi_slopes(const lc_model_config *cfg, float *slopes /* [H] */);

// The sliding window of a layer (0: full attention).
int lc_config_layer_window(const lc_model_config *cfg, int layer);

// The query-key scale of a layer.
float lc_config_layer_attn_scale(const lc_model_config *cfg, int layer);

const char *lc_arch_name(lc_arch arch);
// "llama, mistral, ..." (a static string).
const char *lc_arch_supported_list(void);

#endif
