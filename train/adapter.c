#include "train/adapter.h"

#include <stdio.h>
#include <string.h>

#include "common/file.h"
#include "export/export.h"
#include "model/arch.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"

typedef struct adapter_try {
    const lc_model *m;
    lc_lora *lora;
    int *same_base;
} adapter_try;

// One checkpoint file into a->lora. *skip marks damage (an unreadable file)
// for lc_run_dir_find to pass over; a checkpoint for another base is final.
static lc_status load_checkpoint_file(void *ctx, const char *file, int *skip) {
    adapter_try *a = ctx;
    const lc_model *m = a->m;
    lc_checkpoint_info info;
    lc_status st = lc_checkpoint_read_info(file, &info);
    if (st) {
        *skip = 1;
        return st;
    }
    char fp[17];
    lc_model_fingerprint(m, fp);
    *a->same_base = info.base_fingerprint && strcmp(info.base_fingerprint, fp) == 0;
    // Our checkpoints name the kinds they adapt: one the model's family does
    // not have means another base (a Llama adapter on a GPT-2 model).
    unsigned missing = info.lora.targets & ~lc_model_linear_kinds(&m->cfg);
    if (missing) {
        int k = 0;
        while (!(missing >> k & 1)) k++;
        lc_checkpoint_info_free(&info);
        return lc_error(LC_STATUS_INPUT,
                        "%s: the checkpoint adapts %s, which %s models do not have (trained on another base model)",
                        file, lc_linear_kind_name((lc_linear_kind)k), lc_arch_name(m->cfg.arch));
    }
    st = lc_lora_init(a->lora, m, &info.lora, 0, false);
    if (!st && (st = lc_checkpoint_load(file, m, a->lora, NULL))) {
        lc_lora_free(a->lora);
        *skip = 1;
    }
    lc_checkpoint_info_free(&info);
    return st;
}

lc_status lc_adapter_load(const char *path, const lc_model *m, lc_lora *lora, int *same_base) {
    memset(lora, 0, sizeof *lora);
    char peft_config[4200];
    snprintf(peft_config, sizeof peft_config, "%s/adapter_config.json", path);
    if (lc_dir_exists(path) && lc_file_exists(peft_config)) {
        // A PEFT folder records only the base's name, which cannot be checked.
        *same_base = 1;
        return lc_peft_load(path, m, lora);
    }
    adapter_try a = {m, lora, same_base};
    int skip = 0;
    if (!lc_dir_exists(path)) return load_checkpoint_file(&a, path, &skip);
    // A run's folder: its newest checkpoint that reads whole, as resume takes.
    int64_t step;
    int n_skipped;
    lc_status st = lc_run_dir_find(path, NULL, load_checkpoint_file, &a, &step, &n_skipped);
    if (!st && step == 0)
        st = n_skipped ? lc_error(LC_STATUS_INPUT, "%s: none of its %d checkpoints is readable", path, n_skipped)
                       : lc_error(LC_STATUS_INPUT, "%s: no checkpoint-<step>.h5 in this folder", path);
    return st;
}
