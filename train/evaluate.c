#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "export/export.h"
#include "model/forward.h"
#include "train/checkpoint.h"
#include "train/run_dir.h"
#include "train/trainer.h"

lc_status lc_train_check_dataset(const lc_dataset *ds, const char *path, const lc_model *m, const char *limit_name,
                                 int limit) {
    const lc_model_config *cfg = &m->cfg;
    int longest = 0, longest_line = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        const lc_example *e = &ds->examples[i];
        for (int k = 0; k < e->n; k++)
            if (e->ids[k] < 0 || e->ids[k] >= cfg->vocab_size)
                return lc_error(LC_STATUS_INPUT, "%s:%d: token id %d is outside the model's vocabulary of %d (the "
                                "tokenizer has more tokens than the model's embedding table)", path, e->line,
                                e->ids[k], cfg->vocab_size);
        if (e->n > longest) {
            longest = e->n;
            longest_line = e->line;
        }
    }
    int P = cfg->max_position_embeddings;
    if (P <= 0 || longest <= P) return LC_STATUS_OK;
    if (cfg->pos == LC_POS_KIND_LEARNED)
        return lc_error(LC_STATUS_INPUT, "%s:%d: an example of %d tokens (%s %d) is longer than the model's %d learned "
                        "positions (n_positions); set %s to %d or less", path, longest_line, longest, limit_name,
                        limit, P, limit_name, P);
    if (cfg->pos == LC_POS_KIND_ROPE)
        fprintf(stderr, "lora: warning: %s:%d: an example of %d tokens (%s %d) is longer than the %d positions the "
                "model was trained on (max_position_embeddings); rotary positions extrapolate beyond them\n", path,
                longest_line, longest, limit_name, limit, P);
    return LC_STATUS_OK;
}

int64_t lc_train_count_targets(const lc_dataset *ds) {
    // Token t predicts t + 1 when t + 1 >= n_prompt (and t + 1 >= 1).
    int64_t n = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        const lc_example *e = &ds->examples[i];
        int first = e->n_prompt > 1 ? e->n_prompt : 1;
        if (e->n > first) n += e->n - first;
    }
    return n;
}

lc_status lc_evaluate(const lc_model *m, const lc_lora *lora, const lc_dataset *ds, int batch_size, int max_seq_len,
                      lc_eval_stop_fn stop, void *stop_user, lc_eval_result *out) {
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
        if (stop && stop(stop_user)) {
            st = lc_error(LC_STATUS_INTERRUPTED, "evaluation stopped");
            break;
        }
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

void lc_train_warn_model(const char *cmd, const char *dir, const lc_model *m) {
    if (m->ignored_head)
        fprintf(stderr,
                "%s: warning: %s/config.json sets tie_word_embeddings, so the head is the embedding matrix and the "
                "stored %s is ignored\n",
                cmd, dir, m->ignored_head);
}

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
