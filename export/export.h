// Export of a trained adapter: PEFT adapter folder, merged Hugging Face
// folder, merged GGUF; and reading PEFT adapter folders back. Merging is
// done in fp32 (W + scale · B · A) whatever the output dtype.
#ifndef LC_EXPORT_H
#define LC_EXPORT_H

#include "common/status.h"
#include "data/tokenizer.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/safetensors.h"

// out_dir/adapter_model.safetensors (keys
// base_model.model.model.layers.<l>.<parent>.<module>.lora_A.weight [r, in] and
// ...lora_B.weight [out, r]) and out_dir/adapter_config.json (peft_type LORA,
// r, lora_alpha, lora_dropout, target_modules, use_rslora, bias "none",
// task_type CAUSAL_LM, base_model_name_or_path). dtype: F32, F16 or BF16.
lc_status lc_export_peft(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         lc_dtype dtype);

// Reads a PEFT adapter folder (written by lora.c or by PEFT) into lora,
// which this initializes for m. Refuses ranks, targets or shapes that
// disagree with adapter_config.json or with the model.
lc_status lc_peft_load(const char *dir, const lc_model *m, lc_lora *lora);

// The base with the adapter merged, as a complete Hugging Face folder:
// config.json (torch_dtype set), tokenizer and generation files copied,
// model.safetensors in dtype. lora may be NULL (a plain conversion).
lc_status lc_export_hf(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                       lc_dtype dtype);

// The merged model as one GGUF v3 file llama.cpp loads as it is: llama
// architecture metadata, the tokenizer, tensors named as llama.cpp names
// them with q/k rows in its interleaved rotary order. dtype: F32 or F16
// (norms and other 1-D tensors stay F32, as llama.cpp writes them).
lc_status lc_export_gguf(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         const lc_tokenizer *tok, lc_dtype dtype);

// fp32 weight of linear (layer, kind) with the adapter merged into out
// [out_features, in_features].
void lc_export_merge_linear(float *out, const lc_model *m, const lc_lora *lora, int layer, lc_linear_kind kind);

#endif
