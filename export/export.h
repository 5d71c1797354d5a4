// Export of a trained adapter: PEFT adapter folder, merged Hugging Face
// folder, merged GGUF; and reading PEFT adapter folders back. Merging is
// done in fp32 (W + scale · B · A) whatever the output dtype.
#ifndef LC_EXPORT_H
#define LC_EXPORT_H

#include <stdbool.h>

#include "common/file.h"
#include "common/status.h"
#include "data/tokenizer.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/safetensors.h"

// out_dir/adapter_model.safetensors and out_dir/adapter_config.json as PEFT
// writes them for the model's family: keys "base_model.model.<module path>.
// lora_A.weight" [r, in] and "...lora_B.weight" [out, r] with the family's
// module paths (model.layers.<l>.self_attn.q_proj, transformer.h.<l>.attn.c_attn,
// transformer.h.<l>.self_attention.query_key_value, ...; a fused module's B
// covers its whole output in the checkpoint's row order), and the config
// (peft_type LORA, r, lora_alpha, lora_dropout, target_modules in the family's
// names, fan_in_fan_out for Conv1D families, use_rslora, bias "none",
// task_type CAUSAL_LM, base_model_name_or_path). dtype: F32, F16 or BF16.
// A failed export removes what it created (lc_export_undo).
lc_status lc_export_peft(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         lc_dtype dtype);
// The same with base_model_name_or_path given (NULL: lc_export_peft_base_name).
lc_status lc_export_peft_named(const char *out_dir, const char *model_dir, const char *base_name, const lc_model *m,
                               const lc_lora *lora, lc_dtype dtype);
// What PEFT would write as base_model_name_or_path, without the path the
// base was given by (which means nothing on another machine): config.json's
// "_name_or_path" when it is a Hub id ("org/name"), else the name of the
// model folder or GGUF file ("stories260K").
lc_status lc_export_peft_base_name(const char *model_dir, char *out, size_t cap);

// Reads a PEFT adapter folder (written by lora.c or by PEFT) into lora,
// which this initializes for m. target_modules and tensor keys are read in
// the model family's names; ranks, targets or shapes that disagree with
// adapter_config.json or with the model are refused.
lc_status lc_peft_load(const char *dir, const lc_model *m, lc_lora *lora);

// The base with the adapter merged, as a complete Hugging Face folder in the
// family's own layout: config.json (torch_dtype set), tokenizer and
// generation files copied, model.safetensors in dtype with the source's
// tensor names (and key prefix) and order. Adapted linear weights are
// replaced by the merged ones (stored [in, out] again for Conv1D families);
// every other tensor comes from the source file as stored (so Gemma's norms
// stay w, not 1 + w). lora may be NULL (a plain conversion).
lc_status lc_export_hf(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                       lc_dtype dtype);

// The merged model as one GGUF v3 file llama.cpp loads as it is: the
// family's llama.cpp architecture and metadata, the tokenizer, tensors named
// and laid out as llama.cpp's converter writes them (q/k rows in interleaved
// rotary order for llama/mistral/olmo, fused q/k/v as [q; k; v]). A config
// llama.cpp cannot express is refused (LC_STATUS_USAGE). dtype: F32 or F16
// (norms and other 1-D tensors stay F32, as llama.cpp writes them).
lc_status lc_export_gguf(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         const lc_tokenizer *tok, lc_dtype dtype);

// The adapter as a llama.cpp LoRA adapter GGUF (llama-cli --lora FILE):
// general.type "adapter", adapter.type "lora", adapter.lora.alpha (f32) =
// scale x r so that llama.cpp's alpha / r is lora.c's scale (rsLoRA too), the
// base's llama.cpp architecture; per adapted linear blk.N.<name>.weight.lora_a
// (ggml ne [in, r]: PEFT's lora_A bytes) and .lora_b (ne [r, out]), B's rows
// in llama.cpp's order of the base weight's rows (q/k interleaved for
// llama/olmo, fused q/k/v gathered); all F32. Works from any base lora.c
// trains, Hugging Face folder or GGUF file.
lc_status lc_export_gguf_lora(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora);

// What an export into a folder creates, so that a failed one takes it back
// and leaves no empty or half-written folder: the folder (mkdir -p) and which
// of its files were not there before. Nothing that was there is removed.
typedef struct lc_export_undo {
    char dir[4096];
    lc_dir_made made;
    const char *const *names;
    int n_names;
    unsigned long long existed; // bit i: dir/names[i] was there before
} lc_export_undo;
// Notes which of names (at most 64) dir holds, then makes dir.
lc_status lc_export_undo_begin(lc_export_undo *u, const char *dir, const char *const *names, int n_names);
// After a failure: removes the files among names that were not there before,
// then the folders made.
void lc_export_undo_fail(const lc_export_undo *u);

// fp32 weight of linear (layer, kind) with the adapter merged into out
// [out_features, in_features]; nothing for a kind the model does not have.
void lc_export_merge_linear(float *out, const lc_model *m, const lc_lora *lora, int layer, lc_linear_kind kind);
// The same for any linear (an expert's projection) and its adapter (may be NULL).
void lc_export_merge_weight(float *out /* [out, in] */, const lc_linear *lin, const lc_lora_ref *ref);
// The largest out x in of the linears the adapter changes, layers' own and
// experts' (0: none), and in *n_adapted how many they are: what a merge's
// buffers hold.
size_t lc_export_merged_extent(const lc_model *m, const lc_lora *lora, int *n_adapted);

// Matches the start of s against the family's module path of a decoder
// linear: "<layer path>.<module>" ("model.layers.3.self_attn.q_proj",
// "transformer.h.0.mlp.c_proj"), or without the family's optional key prefix
// ("h.0.mlp.c_proj") when short_ok. Returns the end of the match (followed by
// '.' or the end of s) with *layer (not checked against the model's count)
// and *kind, or NULL.
const char *lc_export_match_module(const lc_model_config *cfg, const char *s, bool short_ok, int *layer,
                                   lc_linear_kind *kind);

#endif
