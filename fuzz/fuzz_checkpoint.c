// fuzz_checkpoint: an HDF5 file -> lc_checkpoint_read_info; when it reads,
// an adapter (and AdamW state) for stories260K from its LoRA config, then
// lc_checkpoint_load into them, and the module lister `lora inspect` uses.
#include "fuzz_model_once.h"

#include "common/status.h"
#include "model/lora.h"
#include "optim/adamw.h"
#include "train/checkpoint.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lc_fuzz_load_model();
    return 0;
}

static void on_module(void *user, const char *module, const int64_t a[2], const int64_t b[2]) {
    (void)user;
    (void)a;
    (void)b;
    if (!module) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = lc_fuzz_path(0, NULL, "checkpoint.h5");
    lc_fuzz_write(path, data, size);
    (void)lc_checkpoint_list_modules(path, on_module, NULL);
    lc_checkpoint_info info;
    if (lc_checkpoint_read_info(path, &info) != LC_STATUS_OK) return 0;
    // The harness caps the rank (the reader allows up to 4096) to keep runs fast.
    if (info.lora.r > 64) info.lora.r = 64;
    lc_lora lora;
    if (lc_lora_init(&lora, &lc_fuzz_model, &info.lora, 1, false) == LC_STATUS_OK) {
        lc_adamw opt;
        lc_adamw_config ac = {0.9f, 0.999f, 1e-8f, 0.0f};
        int with_opt = info.has_optimizer && lc_adamw_init(&opt, lora.n_params, &ac) == LC_STATUS_OK;
        (void)lc_checkpoint_load(path, &lc_fuzz_model, &lora, with_opt ? &opt : NULL);
        if (with_opt) lc_adamw_free(&opt);
        lc_lora_free(&lora);
    }
    lc_checkpoint_info_free(&info);
    return 0;
}
