// Adapters read back for use (eval, generate, export, a run's init_adapter):
// an HDF5 checkpoint of `lora train`, a run's output folder (its newest
// checkpoint), or a PEFT adapter folder; and the one comparison that decides
// whether an adapter fits a use (resume, init, as it is).
#ifndef LC_ADAPTER_H
#define LC_ADAPTER_H

#include "common/status.h"
#include "model/lora.h"
#include "model/model.h"

// What identifies an adapter: its LoRA shape and the base it was trained on.
typedef struct lc_adapter_identity {
    lc_lora_config lora;       // r, alpha, dropout, rslora, targets, layers (resolved for the model)
    char base_fingerprint[17]; // lc_model_fingerprint of the base; "" when unknown (a PEFT folder names its base only)
    const char *base_name;     // for messages: the model folder (may be NULL)
} lc_adapter_identity;

// The fields of an identity, as bits.
enum {
    LC_ADAPTER_RANK = 1u << 0,
    LC_ADAPTER_ALPHA = 1u << 1,
    LC_ADAPTER_RSLORA = 1u << 2,
    LC_ADAPTER_TARGETS = 1u << 3,
    LC_ADAPTER_DROPOUT = 1u << 4,
    LC_ADAPTER_BASE = 1u << 5,
    LC_ADAPTER_LAYERS = 1u << 6,
};

typedef enum lc_adapter_use {
    LC_ADAPTER_USE_RESUME, // continue its run: every field identical, the base known and the same
    LC_ADAPTER_USE_INIT,   // start a run from it: rank, targets and layers equal; alpha and rsLoRA are reconciled by
                           // lc_adapter_rescale, dropout is the run's own, another base is the caller's note
    LC_ADAPTER_USE_AS_IS,  // export, generate, eval: nothing required; another base is the caller's note
} lc_adapter_use;

// Fills id from a LoRA config (NULL: zeros) and a fingerprint read from a
// file (NULL or "": unknown; anything but 16 hex digits matches no model).
void lc_adapter_identity_set(lc_adapter_identity *id, const lc_lora_config *lora, const char *fingerprint,
                             const char *base_name);

// The fields in which the adapter `have` differs from `want` (the run's
// config and base). An unknown fingerprint differs from none.
unsigned lc_adapter_identity_diff(const lc_adapter_identity *have, const lc_adapter_identity *want);

// Checks the adapter read from `path` (identity `have`) against `want` for
// `use`. The fields the use requires equal that differ are one
// LC_STATUS_INPUT error naming each with both values ("the adapter has rank
// 4, targets q_proj,v_proj; the config has rank 8, targets q_proj,k_proj");
// another base reads "trained on a different base model". *differ (may be
// NULL) gets every field that differs, for the caller's notes.
lc_status lc_adapter_identity_check(const char *path, const lc_adapter_identity *have,
                                    const lc_adapter_identity *want, lc_adapter_use use, unsigned *differ);

// Loads the adapter at PATH for m into lora (initialized here, without
// gradients) and checks it against `want` for `use` (want NULL: only the base
// is compared, with m's fingerprint, computed when the adapter records one).
// lora->cfg is the adapter's own config as stored, dropout included: nothing
// is adjusted for the use. Inference applies no dropout whatever the config
// says (the graph applies it only to a LoRA with gradients in a training
// pass). An adapter whose tensors do not fit m and that was trained on
// another base is refused as "trained on a different base model".
lc_status lc_adapter_load(const char *path, const lc_model *m, const lc_adapter_identity *want, lc_adapter_use use,
                          lc_lora *lora, unsigned *differ);

// For init: `run` (the run's config, holding the adapter's tensors) gets B
// multiplied by scale(trained) / scale(run), so the run starts from the
// model the adapter was trained as; *factor gets the multiplier. A run whose
// scale is 0 cannot express the adapter and is refused naming both alphas.
lc_status lc_adapter_rescale(lc_lora *run, const lc_model *m, const lc_lora_config *trained, const char *path,
                             float *factor);

#endif
