// A base model from a llama.cpp GGUF file: the family and hyperparameters
// from its metadata, its tensors under the Hugging Face names the rest of
// lora.c uses (q/k rows put back in Hugging Face order where llama.cpp's
// converter interleaved them), each frozen weight in its stored type.
#ifndef LC_GGUF_MODEL_H
#define LC_GGUF_MODEL_H

#include <stdbool.h>

#include "model/gguf.h"
#include "model/model.h"

// Whether path names a GGUF file (a regular file starting with "GGUF").
bool lc_path_is_gguf(const char *path);

// Loads path into m (called by lc_model_load_opts for a GGUF file): m->gguf
// keeps the open file (metadata for the tokenizer and exports).
lc_status lc_model_load_gguf(lc_model *m, const char *path, bool bf16_weights);

// llama.cpp's tensor name of a linear kind ("attn_q", ..., "ffn_up").
const char *lc_gguf_linear_name(lc_linear_kind kind);

// Whether llama.cpp's converter reorders q/k rows for this GGUF architecture
// (rotary on adjacent pairs: llama, olmo, ...).
bool lc_gguf_arch_permutes_qk(const char *arch);

// Hugging Face keeps each head's q/k rows in rotate-half order, llama.cpp's
// llama layout rotates adjacent pairs: GGUF row h*D + 2j + s holds Hugging
// Face row h*D + s*D/2 + j. to_gguf maps Hugging Face rows to GGUF rows, else
// back. Rows are row_bytes each (any stored type); src and dst differ.
void lc_gguf_permute_rows(void *dst, const void *src, int n_heads, int D, size_t row_bytes, bool to_gguf);

// Whether m is a GGUF base whose fused query/key/value rows llama.cpp's
// converter reordered into [q; k; v] (Falcon with several key/value heads,
// Bloom): an adapter of those rows in Hugging Face's layout does not fit it.
bool lc_gguf_fused_rows_reordered(const lc_model *m);

// The regex of a pre-tokenizer as convert_hf_to_gguf.py names it
// (tokenizer.ggml.pre: "gpt-2", "llama-bpe", "qwen2", ...), NULL if unknown.
const char *lc_gguf_pre_regex(const char *pre);

// The file's vocabulary (tokenizer.ggml.*) as a tokenizer.json and a
// tokenizer_config.json (special tokens, add_bos_token/add_eos_token,
// chat_template) that lc_tokenizer_load_json reads; caller frees both.
// tokenizer NULL: the config alone (what a chat template needs), skipping
// the vocabulary and the merges.
typedef struct cJSON cJSON;
lc_status lc_gguf_tokenizer_json(const lc_gguf_file *f, cJSON **tokenizer, cJSON **config);

#endif
