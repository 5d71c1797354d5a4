// fuzz_peft: adapter_config.json SEP adapter_model.safetensors -> a PEFT
// folder -> lc_peft_load against stories260K (loaded once). A loaded adapter
// is checked against the model's shapes.
#include "fuzz_model_once.h"

#include <math.h>

#include "common/status.h"
#include "export/export.h"
#include "model/lora.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lc_fuzz_load_model();
    lc_fuzz_subdir("peft");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lc_fuzz_part parts[2];
    int n = lc_fuzz_split(data, size, parts, 2);
    const char *dir = lc_fuzz_subdir("peft");
    lc_fuzz_write(lc_fuzz_path(0, "peft", "adapter_config.json"), parts[0].p, parts[0].n);
    if (n == 2) lc_fuzz_write(lc_fuzz_path(1, "peft", "adapter_model.safetensors"), parts[1].p, parts[1].n);
    lc_lora lora;
    if (lc_fuzz_note(lc_peft_load(dir, &lc_fuzz_model, &lora), "peft") != LC_STATUS_OK) return 0;
    if (lora.n_layers != lc_fuzz_model.cfg.n_layers || lora.cfg.r < 1) __builtin_trap();
    if (!isfinite(lora.scale) || !isfinite(lora.cfg.alpha)) __builtin_trap(); // lora_alpha must fit a float
    // Adapters only on projections the model has (a fused kind never on a Llama).
    if (lora.cfg.targets & ~lc_model_linear_kinds(&lc_fuzz_model.cfg)) __builtin_trap();
    size_t total = 0;
    for (int l = 0; l < lora.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            if (!lc_lora_get(&lora, l, (lc_linear_kind)k)) continue;
            const lc_linear *lin = &lc_fuzz_model.layers[l].lin[k];
            if (!lin->out || !lin->in) __builtin_trap();
            total += (size_t)lora.cfg.r * (size_t)(lin->in + lin->out);
        }
    if (total != lora.n_params) __builtin_trap();
    volatile float sum = 0;
    for (size_t i = 0; i < lora.n_params; i++) sum += lora.params[i];
    (void)sum;
    lc_lora_free(&lora);
    return 0;
}
