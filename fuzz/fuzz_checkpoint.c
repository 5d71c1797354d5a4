// fuzz_checkpoint: an HDF5 file -> lc_checkpoint_read_info; when it reads,
// the module list (as `lora inspect` does), an adapter (and AdamW state) for
// stories260K from its LoRA config, then lc_checkpoint_load into them.
//
// libhdf5 is not instrumented and leaks on some of its own error paths (an
// object header that fails to decode), so fuzz/lsan.supp suppresses leaks
// allocated inside it; to still catch handles our code forgets to close, the
// harness counts open HDF5 identifiers before and after each input.
#include "fuzz_model_once.h"

#include <hdf5.h>

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

static hsize_t open_ids(void) {
    static const H5I_type_t kinds[] = {H5I_FILE, H5I_GROUP, H5I_DATATYPE, H5I_DATASPACE, H5I_DATASET, H5I_ATTR,
                                       H5I_GENPROP_LST};
    hsize_t total = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        hsize_t n = 0;
        if (H5Inmembers(kinds[i], &n) >= 0) total += n;
    }
    return total;
}

static int run(const char *path);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = lc_fuzz_path(0, NULL, "checkpoint.h5");
    lc_fuzz_write(path, data, size);
    hsize_t before = open_ids();
    run(path);
    hsize_t after = open_ids();
    if (after != before) {
        fprintf(stderr, "fuzz_checkpoint: %llu HDF5 identifiers open before the input, %llu after\n",
                (unsigned long long)before, (unsigned long long)after);
        abort();
    }
    return 0;
}

static int run(const char *path) {
    lc_checkpoint_info info;
    if (lc_fuzz_note(lc_checkpoint_read_info(path, &info), "read_info") != LC_STATUS_OK) return 0;
    // As `lora inspect` does: the module list only of a file that reads as a checkpoint.
    (void)lc_fuzz_note(lc_checkpoint_list_modules(path, on_module, NULL), "list_modules");
    // The harness caps the rank (the reader allows up to 4096) to keep runs fast.
    if (info.lora.r > 64) info.lora.r = 64;
    lc_lora lora;
    if (lc_lora_init(&lora, &lc_fuzz_model, &info.lora, 1, false) == LC_STATUS_OK) {
        // "All" or named targets: only projections the model has get adapters.
        if (lora.cfg.targets & ~lc_model_linear_kinds(&lc_fuzz_model.cfg)) __builtin_trap();
        lc_adamw opt;
        lc_adamw_config ac = {0.9f, 0.999f, 1e-8f, 0.0f};
        int with_opt = info.has_optimizer && lc_adamw_init(&opt, lora.n_params, &ac) == LC_STATUS_OK;
        (void)lc_fuzz_note(lc_checkpoint_load(path, &lc_fuzz_model, &lora, with_opt ? &opt : NULL), "load");
        if (with_opt) lc_adamw_free(&opt);
        lc_lora_free(&lora);
    }
    lc_checkpoint_info_free(&info);
    return 0;
}
