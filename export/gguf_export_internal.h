// What the GGUF exports share (export/gguf_export.c: the merged model from
// a Hugging Face folder; export/gguf_lora.c: the adapter alone, and a GGUF
// base with it merged): how llama.cpp holds a family, and the rows of a
// linear in llama.cpp's order.
#ifndef LC_EXPORT_GGUF_EXPORT_INTERNAL_H
#define LC_EXPORT_GGUF_EXPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "export/export.h"
#include "export/gguf.h"
#include "model/lora.h"
#include "model/model.h"

// How llama.cpp holds a family (convert_hf_to_gguf.py's writer, llama.cpp's
// loader): a tensor its loader does not create fails the load ("wrong number
// of tensors"), so only what it consumes is written.
typedef struct lc_gguf_family {
    const char *arch;   // general.architecture and the metadata key prefix
    bool permute_qk;    // rotary on adjacent pairs (LLAMA_ROPE_TYPE_NORM): q/k rows reordered
    bool rms;           // attention.layer_norm_rms_epsilon, else attention.layer_norm_epsilon
    bool rope;          // rotary metadata
    bool output_always; // output.weight even when tied (gpt2, bloom: required by older loaders)
    bool output_never;  // no output.weight at all (gemma: the loader always reuses token_embd)
    bool head_dim_keys; // attention.key_length/value_length always (gemma)
    unsigned bias_ok;   // linear kinds whose bias the loader takes
    bool moe;           // experts stacked into ffn_*_exps, expert_count / expert_used_count keys
} lc_gguf_family;

// The family of m, or an LC_STATUS_USAGE error naming what llama.cpp cannot
// hold (out_path prefixes the message).
lc_status lc_gguf_family_of(const lc_model *m, const char *out_path, lc_gguf_family *f);

typedef struct lc_gguf_exporter {
    const lc_model *m;
    const lc_lora *lora;
    const char *out_path;
    lc_dtype dtype;
    lc_gguf_family fam;
    struct job *jobs; // the merged export's plan (gguf_export.c)
    size_t n_jobs, cap_jobs;
    bool overflow;
    float *buf, *tmp;
    uint16_t *half;
} lc_gguf_exporter;

// The rows [rows, cols] of a linear kind (its weight, its bias with cols 1,
// or its adapter's B with cols r), in e->buf in the checkpoint's order, put
// in llama.cpp's order: fused query/key/value gathered into [q; k; v], q/k
// permuted for interleaved rotary. Returns e->buf or e->tmp.
const float *lc_gguf_reorder_rows(lc_gguf_exporter *e, lc_linear_kind k, int rows, int cols);

// Writes rows [rows, cols] of src as type: a tensor's data, or the next part
// of it (a stacked tensor's slice). Quantizes through e->half, which holds
// rows x cols values of a type of at most two bytes a value.
lc_status lc_gguf_write_rows(lc_gguf_exporter *e, lc_gguf_writer *w, lc_wtype type, const float *src, int64_t rows,
                             int64_t cols);

// general.name: the model folder's last component, or the GGUF base file's
// name without ".gguf".
void lc_gguf_model_name(const char *model_dir, char *out, size_t cap);

// llama.cpp's names of a sparse layer's stacked expert projections and of its
// shared expert's, by lc_expert_proj.
extern const char *const lc_gguf_expert_stack_names[LC_EXPERT_PROJ_COUNT];
extern const char *const lc_gguf_shared_expert_names[LC_EXPERT_PROJ_COUNT];

// The merged export of m (loaded from a GGUF file) with the adapter: the
// source file with the adapted weights replaced.
lc_status lc_gguf_export_from_base(const char *out_path, const lc_model *m, const lc_lora *lora, lc_dtype dtype);

#endif
