// fuzz_config: config.json -> lc_config_load; when it loads, the rotary
// table, then lc_model_load on a folder holding the fuzzed config and the
// stories260K weights (symlinked), exercising every shape check.
#include "fuzz_common.h"

#include <math.h>

#include "common/status.h"
#include "model/config.h"
#include "model/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lc_fuzz_subdir("m");
    const char *st = lc_fuzz_shared("models/stories260K/model.safetensors");
    if (access(st, R_OK) != 0) {
        fprintf(stderr, "fuzz_config: %s missing (set LC_SHARED)\n", st);
        abort();
    }
    if (symlink(st, lc_fuzz_path(0, "m", "model.safetensors")) != 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = lc_fuzz_path(0, "m", "config.json");
    lc_fuzz_write(path, data, size);
    lc_model_config cfg;
    if (lc_fuzz_note(lc_config_load(&cfg, path), "config") != LC_STATUS_OK) return 0;
    bool rope = cfg.pos == LC_POS_KIND_ROPE;
    if (cfg.hidden_size <= 0 || cfg.n_heads <= 0 || cfg.head_dim <= 0 || cfg.n_kv_heads <= 0 || cfg.n_layers <= 0 ||
        cfg.vocab_size <= 0 || cfg.intermediate_size <= 0 || cfg.n_heads % cfg.n_kv_heads ||
        (rope && (cfg.rope_dim % 2 || cfg.rope_dim < 2 || cfg.rope_dim > cfg.head_dim)))
        __builtin_trap(); // lc_config_load promises positive, consistent sizes (an even rotary part under rope)
    if (rope) {
        float *inv = malloc(sizeof *inv * (size_t)(cfg.rope_dim / 2));
        lc_config_rope_inv_freq(&cfg, inv);
        for (int i = 0; i < cfg.rope_dim / 2; i++)
            if (!isfinite(inv[i]) || !(inv[i] >= 0.0f)) __builtin_trap(); // the rotary table must be usable
        free(inv);
    }
    if (cfg.pos == LC_POS_KIND_ALIBI) {
        float *slopes = malloc(sizeof *slopes * (size_t)cfg.n_heads);
        lc_config_alibi_slopes(&cfg, slopes);
        for (int h = 0; h < cfg.n_heads; h++)
            if (!isfinite(slopes[h]) || !(slopes[h] > 0.0f)) __builtin_trap(); // ALiBi slopes are positive
        free(slopes);
    }
    (void)lc_arch_name(cfg.arch);
    lc_model m;
    memset(&m, 0, sizeof m);
    if (lc_fuzz_note(lc_model_load(&m, lc_fuzz_path(1, NULL, "m")), "model") == LC_STATUS_OK) {
        char fp[17];
        lc_model_fingerprint(&m, fp);
    }
    lc_model_free(&m);
    return 0;
}
