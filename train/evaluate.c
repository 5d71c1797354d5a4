#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "export/export.h"
#include "model/forward.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"
#include "train/trainer.h"

lc_status lc_evaluate(const lc_model *m, const lc_lora *lora, const lc_dataset *ds, int batch_size, int max_seq_len,
                      lc_eval_result *out) {
    lc_graph g;
    lc_batcher it;
    lc_batch b;
    lc_status st;
    double loss_sum = 0.0;
    int counted = 0;
    out->loss = 0.0;
    out->n_targets = 0;
    lc_graph_init(&g, false);
    if ((st = lc_batch_init(&b, batch_size, max_seq_len))) goto done;
    if ((st = lc_batcher_init(&it, ds, batch_size, max_seq_len, false, false, 0))) goto done_batch;
    while (!st && lc_batcher_next_in_epoch(&it, &b)) {
        if (b.n_targets == 0) continue;
        lc_graph_reset(&g);
        lc_forward_input in = {b.tokens, b.B, b.T, b.pos, b.seg_start, 0};
        lc_tensor *h;
        if ((st = lc_model_forward_hidden(&g, m, lora, NULL, &in, &h))) break;
        st = lc_op_cross_entropy(&g, h, m->lm_head, m->cfg.vocab_size, m->cfg.final_softcap, b.targets, 1.0f, &loss_sum, &counted);
    }
    lc_batcher_free(&it);
    if (!st && counted == 0) st = lc_error(LC_STATUS_INPUT, "evaluation data has no target tokens");
    if (!st) {
        out->loss = loss_sum / counted;
        out->n_targets = counted;
    }
done_batch:
    lc_batch_free(&b);
done:
    lc_graph_free(&g);
    return st;
}

lc_status lc_adapter_load(const char *path, const lc_model *m, lc_lora *lora, int *same_base) {
    char file[4096];
    lc_status st;
    memset(lora, 0, sizeof *lora);
    char peft_config[4200];
    snprintf(peft_config, sizeof peft_config, "%s/adapter_config.json", path);
    if (lc_dir_exists(path) && lc_file_exists(peft_config)) {
        // A PEFT folder records only the base's name, which cannot be checked.
        *same_base = 1;
        return lc_peft_load(path, m, lora);
    }
    if (lc_dir_exists(path)) {
        int64_t *steps;
        int n;
        if ((st = lc_run_dir_checkpoints(path, &steps, &n))) return st;
        if (n == 0) return lc_error(LC_STATUS_INPUT, "%s: no checkpoint-<step>.h5 in this folder", path);
        st = lc_run_dir_checkpoint_path(file, sizeof file, path, steps[0]);
        free(steps);
        if (st) return st;
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    lc_checkpoint_info info;
    if ((st = lc_checkpoint_read_info(file, &info))) return st;
    char fp[17];
    lc_model_fingerprint(m, fp);
    *same_base = info.base_fingerprint && strcmp(info.base_fingerprint, fp) == 0;
    info.lora.dropout = 0.0f;
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
    st = lc_lora_init(lora, m, &info.lora, 0, false);
    if (!st) st = lc_checkpoint_load(file, m, lora, NULL);
    if (st) lc_lora_free(lora);
    lc_checkpoint_info_free(&info);
    return st;
}
