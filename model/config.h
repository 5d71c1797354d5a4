// Model configuration read from a Hugging Face config.json (Llama family:
// llama, mistral, qwen2).
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include <stdbool.h>

#include "common/status.h"

typedef enum lc_arch {
    LC_ARCH_LLAMA,
    LC_ARCH_MISTRAL,
    LC_ARCH_QWEN2,
} lc_arch;

typedef enum lc_rope_scaling {
    LC_ROPE_SCALING_NONE,
    LC_ROPE_SCALING_LLAMA3,
    LC_ROPE_SCALING_LINEAR,
} lc_rope_scaling;

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
    float rms_norm_eps;
    float rope_theta;
    lc_rope_scaling rope_scaling;
    float rope_factor; // llama3 / linear
    float rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    bool tie_word_embeddings;
    bool attention_bias; // bias on q/k/v (qwen2 always; llama when attention_bias)
    bool o_bias;         // llama's attention_bias also covers o_proj
    bool mlp_bias;
    int sliding_window; // 0 = full attention
    int bos_token_id, eos_token_id; // -1 if absent
} lc_model_config;

// Parses and validates path (config.json). Sizes must be positive, consistent
// (heads divide evenly, even head_dim) and below sane caps.
lc_status lc_config_load(lc_model_config *cfg, const char *path);

// Rotary inverse frequencies for the config, with rope scaling applied.
void lc_config_rope_inv_freq(const lc_model_config *cfg, float *inv_freq /* [head_dim/2] */);

const char *lc_arch_name(lc_arch arch);

#endif
