// Adapters read back for use (eval, generate, export, a run's init_adapter):
// an HDF5 checkpoint of `lora train`, a run's output folder (its newest
// checkpoint), or a PEFT adapter folder.
#ifndef LC_ADAPTER_H
#define LC_ADAPTER_H

#include "common/status.h"
#include "model/lora.h"
#include "model/model.h"

// Loads the adapter at PATH for m into lora (initialized here, without
// gradients). lora->cfg is the adapter's own config as stored, dropout
// included: nothing is adjusted for the use. Inference applies no dropout
// whatever the config says (the graph applies it only to a LoRA with
// gradients in a training pass). *same_base is set to 0 when a checkpoint
// was trained on a different base (shapes still match).
lc_status lc_adapter_load(const char *path, const lc_model *m, lc_lora *lora, int *same_base);

#endif
