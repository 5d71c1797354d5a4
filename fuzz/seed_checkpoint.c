// Writes a few small real checkpoints of stories260K with lc_checkpoint_save
// (the writer `lora train` uses) into the folder argv[1]: seeds for fuzz_checkpoint.
#include "fuzz_model_once.h"

#include "common/status.h"
#include "model/lora.h"
#include "optim/adamw.h"
#include "export/export.h"
#include "train/checkpoint.h"

static int save(const char *dir, const char *name, int r, unsigned targets, int with_opt, int rslora) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    lc_lora_config cfg = {.r = r, .alpha = 2.0f * (float)r, .dropout = 0.0f, .rslora = rslora, .targets = targets};
    lc_lora lora;
    lc_adamw opt;
    lc_adamw_config ac = {0.9f, 0.999f, 1e-8f, 0.01f};
    if (lc_lora_init(&lora, &lc_fuzz_model, &cfg, 42, false)) return 1;
    for (size_t i = 0; i < lora.n_params; i++) lora.params[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    if (lc_adamw_init(&opt, lora.n_params, &ac)) return 1;
    for (size_t i = 0; i < opt.n; i++) {
        opt.m[i] = lora.params[i] * 0.1f;
        opt.v[i] = lora.params[i] * lora.params[i];
    }
    opt.step = 3;
    char fp[17];
    lc_model_fingerprint(&lc_fuzz_model, fp);
    lc_checkpoint_meta meta = {3, 0, 2, 7, "{\"lora\":{\"r\":1}}", fp, 1.5, 3};
    lc_status st = lc_checkpoint_save(path, &lc_fuzz_model, &lora, with_opt ? &opt : NULL, &meta);
    // The same adapter as a PEFT folder (peft_<name>/) in F32, F16 or BF16: seeds for fuzz_peft.
    if (!st) {
        snprintf(path, sizeof path, "%s/peft_%s", dir, name);
        static const lc_dtype dts[] = {LC_DTYPE_F32, LC_DTYPE_F16, LC_DTYPE_BF16};
        st = lc_export_peft(path, lc_fuzz_shared("models/stories260K"), &lc_fuzz_model, &lora, dts[r % 3]);
    }
    lc_adamw_free(&opt);
    lc_lora_free(&lora);
    if (st) fprintf(stderr, "%s: %s\n", path, lc_error_message());
    return st != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seed_checkpoint OUT_DIR\n");
        return 1;
    }
    lc_fuzz_load_model();
    unsigned q = 1u << LC_LINEAR_KIND_Q, v = 1u << LC_LINEAR_KIND_V, down = 1u << LC_LINEAR_KIND_DOWN;
    int bad = save(argv[1], "r1_q_opt", 1, q, 1, 0) | save(argv[1], "r2_qv_noopt", 2, q | v, 0, 0) |
              save(argv[1], "r1_down_rslora_opt", 1, down, 1, 1) |
              save(argv[1], "r3_all_opt", 3, LC_LINEAR_KIND_ALL, 1, 0);
    lc_model_free(&lc_fuzz_model);
    return bad;
}
