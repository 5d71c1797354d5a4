#include <stdio.h>

#include "model/forward.h"
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
    // Token t predicts t + 1 when t + 1 is trained.
    int64_t n = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        const lc_example *e = &ds->examples[i];
        for (int t = 1; t < e->n; t++) n += e->target[t];
    }
    return n;
}

lc_status lc_evaluate(const lc_model *m, const lc_lora *lora, const lc_dataset *ds, int batch_size, int max_seq_len,
                      lc_compute compute, int shard, int n_shards, lc_eval_stop_fn stop, void *stop_user,
                      lc_eval_result *out) {
    lc_graph g;
    lc_batcher it;
    lc_batch b;
    lc_status st;
    double loss_sum = 0.0;
    int counted = 0;
    int64_t index = 0;
    out->loss = out->loss_sum = 0.0;
    out->n_targets = 0;
    lc_graph_init(&g, false);
    g.compute = compute;
    if ((st = lc_batch_init(&b, batch_size, max_seq_len))) goto done;
    if ((st = lc_batcher_init(&it, ds, batch_size, max_seq_len, false, false, 0))) goto done_batch;
    while (!st && lc_batcher_next_in_epoch(&it, &b)) {
        if (stop && stop(stop_user)) {
            st = lc_error(LC_STATUS_INTERRUPTED, "evaluation stopped");
            break;
        }
        if (b.n_targets == 0 || index++ % n_shards != shard) continue;
        lc_graph_reset(&g);
        lc_forward_input in = {b.tokens, b.B, b.T, b.pos, b.seg_start, 0};
        lc_tensor *h;
        if ((st = lc_model_forward_hidden(&g, m, lora, NULL, &in, &h))) break;
        st = lc_op_cross_entropy_w(&g, h, &m->lm_head, m->cfg.final_softcap, b.targets, 1.0f, &loss_sum, &counted);
    }
    lc_batcher_free(&it);
    if (!st && counted == 0 && n_shards == 1) st = lc_error(LC_STATUS_INPUT, "evaluation data has no target tokens");
    if (!st) {
        out->loss_sum = loss_sum;
        out->loss = counted ? loss_sum / counted : 0.0;
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
