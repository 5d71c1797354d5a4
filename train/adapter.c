#include "model/gguf_model.h"
#include "train/adapter.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/file.h"
#include "export/export.h"
#include "model/arch.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"

void lc_adapter_identity_set(lc_adapter_identity *id, const lc_lora_config *lora, const char *fingerprint,
                             const char *base_name) {
    memset(id, 0, sizeof *id);
    if (lora) id->lora = *lora;
    id->base_name = base_name;
    if (!fingerprint || !*fingerprint) return;
    // Read from a file: only 16 hex digits can be a fingerprint; "?" is
    // known (so it is compared) and equals none.
    int ok = strlen(fingerprint) == 16;
    for (int i = 0; ok && i < 16; i++) ok = isxdigit((unsigned char)fingerprint[i]) != 0;
    snprintf(id->base_fingerprint, sizeof id->base_fingerprint, "%s", ok ? fingerprint : "?");
}

unsigned lc_adapter_identity_diff(const lc_adapter_identity *have, const lc_adapter_identity *want) {
    unsigned d = 0;
    if (have->lora.r != want->lora.r) d |= LC_ADAPTER_RANK;
    if (have->lora.alpha != want->lora.alpha) d |= LC_ADAPTER_ALPHA;
    if (have->lora.rslora != want->lora.rslora) d |= LC_ADAPTER_RSLORA;
    if (have->lora.targets != want->lora.targets) d |= LC_ADAPTER_TARGETS;
    if (have->lora.dropout != want->lora.dropout) d |= LC_ADAPTER_DROPOUT;
    if (have->lora.layers_last != want->lora.layers_last ||
        memcmp(have->lora.layers, want->lora.layers, sizeof have->lora.layers) != 0)
        d |= LC_ADAPTER_LAYERS;
    if (have->base_fingerprint[0] && want->base_fingerprint[0] &&
        strcmp(have->base_fingerprint, want->base_fingerprint) != 0)
        d |= LC_ADAPTER_BASE;
    return d;
}

// "rank 4, targets q_proj,v_proj": the given LoRA fields of id.
static void describe(char *out, size_t cap, const lc_adapter_identity *id, unsigned fields) {
    const lc_lora_config *c = &id->lora;
    char targets[160], layers[128];
    lc_lora_targets_string(targets, sizeof targets, c->targets);
    lc_lora_layers_string(layers, sizeof layers, c);
    size_t len = 0;
    out[0] = '\0';
#define ADD(...)                                                                                                      \
    do {                                                                                                              \
        int n_ = snprintf(out + len, cap - len, __VA_ARGS__);                                                         \
        if (n_ > 0) len = len + (size_t)n_ < cap ? len + (size_t)n_ : cap - 1;                                        \
    } while (0)
    if (fields & LC_ADAPTER_RANK) ADD("%srank %d", len ? ", " : "", c->r);
    if (fields & LC_ADAPTER_ALPHA) ADD("%salpha %g", len ? ", " : "", c->alpha);
    if (fields & LC_ADAPTER_RSLORA) ADD("%srsLoRA %s", len ? ", " : "", c->rslora ? "on" : "off");
    if (fields & LC_ADAPTER_TARGETS) ADD("%stargets %s", len ? ", " : "", targets);
    if (fields & LC_ADAPTER_DROPOUT) ADD("%sdropout %g", len ? ", " : "", c->dropout);
    if (fields & LC_ADAPTER_LAYERS) ADD("%slayers %s", len ? ", " : "", layers);
#undef ADD
}

lc_status lc_adapter_identity_check(const char *path, const lc_adapter_identity *have,
                                    const lc_adapter_identity *want, lc_adapter_use use, unsigned *differ) {
    static const unsigned required[] = {
        [LC_ADAPTER_USE_RESUME] = LC_ADAPTER_RANK | LC_ADAPTER_ALPHA | LC_ADAPTER_RSLORA | LC_ADAPTER_TARGETS |
                                  LC_ADAPTER_DROPOUT | LC_ADAPTER_BASE | LC_ADAPTER_LAYERS,
        [LC_ADAPTER_USE_INIT] = LC_ADAPTER_RANK | LC_ADAPTER_TARGETS | LC_ADAPTER_LAYERS,
        [LC_ADAPTER_USE_AS_IS] = 0,
    };
    unsigned d = lc_adapter_identity_diff(have, want);
    // Continuing a run needs its base known to be this one, not merely not known to differ.
    if (use == LC_ADAPTER_USE_RESUME && (!have->base_fingerprint[0] || !want->base_fingerprint[0]))
        d |= LC_ADAPTER_BASE;
    if (differ) *differ = d;
    unsigned bad = d & required[use];
    int resume = use == LC_ADAPTER_USE_RESUME;
    if (bad & LC_ADAPTER_BASE)
        return lc_error(LC_STATUS_INPUT, "%s: was trained on a different base model%s%s (base fingerprint %s, %s)%s",
                        path, want->base_name ? " than " : "", want->base_name ? want->base_name : "",
                        have->base_fingerprint[0] ? have->base_fingerprint : "not recorded",
                        want->base_fingerprint[0] ? want->base_fingerprint : "unknown",
                        resume ? "; use another output_dir" : "");
    if (bad) {
        char h[256], w[256];
        describe(h, sizeof h, have, bad);
        describe(w, sizeof w, want, bad);
        return lc_error(LC_STATUS_INPUT, "%s: the %s has %s; the config has %s; %s", path,
                        resume ? "checkpoint" : "adapter", h, w,
                        resume                         ? "use another output_dir, or set lora to the checkpoint's"
                        : bad & LC_ADAPTER_LAYERS ? "set lora.r, lora.targets and lora.layers to the adapter's"
                                                  : "set lora.r and lora.targets to the adapter's");
    }
    return LC_STATUS_OK;
}

lc_status lc_adapter_rescale(lc_lora *run, const lc_model *m, const lc_lora_config *trained, const char *path,
                             float *factor) {
    float s_run = lc_lora_config_scale(&run->cfg), s_trained = lc_lora_config_scale(trained);
    float f = s_trained / s_run;
    *factor = 1.0f;
    if (s_run == 0.0f || !isfinite(f))
        return lc_error(LC_STATUS_INPUT,
                        "%s: the adapter was trained with alpha %g%s, which the config's alpha %g%s cannot express "
                        "(scale %g); set lora.alpha to %g",
                        path, trained->alpha, trained->rslora ? " (rsLoRA)" : "", run->cfg.alpha,
                        run->cfg.rslora ? " (rsLoRA)" : "", s_run, trained->alpha);
    if (f != 1.0f) lc_lora_scale_b(run, m, f);
    *factor = f;
    return LC_STATUS_OK;
}

// Rewrites the error of an adapter whose tensors do not fit m as what it
// means when the adapter names another base.
static lc_status other_base(const char *file, const lc_adapter_identity *have, const char *fp) {
    char reason[1024];
    const char *msg = lc_error_message();
    size_t n = strlen(file);
    if (strncmp(msg, file, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2; // the file is named once
    snprintf(reason, sizeof reason, "%s", msg);
    return lc_error(LC_STATUS_INPUT,
                    "%s: was trained on a different base model (base fingerprint %s, this model's %s): %s", file,
                    have->base_fingerprint, fp, reason);
}

typedef struct adapter_try {
    const lc_model *m;
    const lc_adapter_identity *want;
    lc_adapter_use use;
    lc_lora *lora;
    unsigned *differ;
} adapter_try;

// One checkpoint file into a->lora, checked for its use. *skip marks damage
// (a file that does not read whole) for lc_run_dir_find to pass over; an
// adapter that does not fit the use or the base ends the search.
static lc_status load_checkpoint_file(void *ctx, const char *file, int *skip) {
    adapter_try *a = ctx;
    const lc_model *m = a->m;
    const lc_adapter_identity *want = a->want;
    lc_adapter_identity have, here;
    lc_checkpoint_info info;
    lc_status st = lc_checkpoint_read_info(file, &info);
    if (st) {
        *skip = st == LC_STATUS_INPUT; // damage; not a failure to read (memory, processes)
        return st;
    }
    lc_adapter_identity_set(&have, &info.lora, info.base_fingerprint, NULL);
    if (!want) {
        // Taken as it is: only the base is compared, with m's fingerprint.
        char fp[17] = "";
        if (have.base_fingerprint[0]) lc_model_fingerprint(m, fp);
        lc_adapter_identity_set(&here, &info.lora, fp, NULL);
        want = &here;
    }
    lc_checkpoint_info_free(&info);
    // Our checkpoints name the kinds they adapt: one the model's family does
    // not have means another base (a Llama adapter on a GPT-2 model).
    unsigned missing = have.lora.targets & ~lc_model_linear_kinds(&m->cfg);
    if (missing) {
        int k = 0;
        while (!(missing >> k & 1)) k++;
        return lc_error(LC_STATUS_INPUT,
                        "%s: the checkpoint adapts %s, which %s models do not have (trained on another base model)",
                        file, lc_linear_kind_name((lc_linear_kind)k), lc_arch_name(m->cfg.arch));
    }
    // The layers it adapts, as indices of this model (an older checkpoint
    // records none: every layer).
    if ((st = lc_lora_layers_resolve(&have.lora, m->cfg.n_layers))) {
        lc_error_prefix("%s", file);
        return st;
    }
    if (want == &here) here.lora = have.lora;
    unsigned d;
    if ((st = lc_adapter_identity_check(file, &have, want, a->use, &d))) return st;
    if (a->differ) *a->differ = d;
    if ((st = lc_lora_init(a->lora, m, &have.lora, 0, false))) return st;
    if ((st = lc_checkpoint_load(file, m, a->lora, NULL))) {
        lc_lora_free(a->lora);
        if (st == LC_STATUS_INPUT && (d & LC_ADAPTER_BASE)) st = other_base(file, &have, want->base_fingerprint);
        else *skip = st == LC_STATUS_INPUT;
    }
    return st;
}

lc_status lc_adapter_load(const char *path, const lc_model *m, const lc_adapter_identity *want, lc_adapter_use use,
                          lc_lora *lora, unsigned *differ) {
    lc_status st;
    lc_adapter_identity have;
    memset(lora, 0, sizeof *lora);
    if (differ) *differ = 0;
    char peft_config[4200];
    snprintf(peft_config, sizeof peft_config, "%s/adapter_config.json", path);
    if (lc_dir_exists(path) && lc_file_exists(peft_config)) {
        if ((st = lc_peft_load(path, m, lora))) return st;
        // A PEFT folder records only the base's name, which cannot be checked.
        lc_adapter_identity_set(&have, &lora->cfg, NULL, NULL);
        st = lc_adapter_identity_check(peft_config, &have, want ? want : &have, use, differ);
        if (st) lc_lora_free(lora);
        return st;
    }
    adapter_try a = {m, want, use, lora, differ};
    int skip = 0;
    if (lc_path_is_gguf(path))
        return lc_error(LC_STATUS_INPUT, "%s: a GGUF file; lora.c reads adapters from its checkpoints, run folders and "
                        "PEFT folders (GGUF LoRA adapters are what it writes for llama.cpp)", path);
    if (!lc_dir_exists(path)) return load_checkpoint_file(&a, path, &skip);
    // A run's folder: the best checkpoint early stopping kept, else its
    // newest checkpoint that reads whole, as resume takes.
    int64_t step, best = lc_run_dir_read_best(path);
    int n_skipped;
    if (best > 0) {
        char file[4200];
        if ((st = lc_run_dir_checkpoint_path(file, sizeof file, path, best))) return st;
        if (!(st = load_checkpoint_file(&a, file, &skip))) {
            fprintf(stderr, "lora: note: %s: its best checkpoint (early stopping), checkpoint-%lld.h5\n", path,
                    (long long)best);
            return st;
        }
        if (!skip) return st;
        fprintf(stderr, "lora: warning: skipping the best checkpoint %s; taking the newest\n", lc_error_message());
    }
    st = lc_run_dir_find(path, NULL, load_checkpoint_file, &a, &step, &n_skipped);
    if (!st && step == 0)
        st = n_skipped ? lc_error(LC_STATUS_INPUT, "%s: none of its %d checkpoints is readable", path, n_skipped)
                       : lc_error(LC_STATUS_INPUT, "%s: no checkpoint-<step>.h5 in this folder", path);
    return st;
}
