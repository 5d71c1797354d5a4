// One optimizer step over a step's micro-batches, split among MPI ranks.

#include <math.h>
#include <string.h>

#include "model/forward.h"
#include "optim/adamw.h"
#include "train/dist.h"
#include "train/trainer.h"

// The rows [b0, b1) of a batch as a batch of its own (a view: same T, so
// positions keep their place in the row-major layout).
static void batch_rows(lc_batch *view, const lc_batch *b, int b0, int b1) {
    size_t off = (size_t)b0 * b->T;
    *view = *b;
    view->B = b1 - b0;
    view->tokens = b->tokens + off;
    view->targets = b->targets + off;
    view->pos = b->pos + off;
    view->seg_start = b->seg_start + off;
    if (b0 == 0 && b1 == b->B) return; // the whole batch (one process): its count stands
    view->n_targets = 0;
    for (size_t i = 0; i < (size_t)view->B * b->T; i++) view->n_targets += view->targets[i] >= 0;
}

lc_status lc_train_step(const lc_step_ctx *c, const lc_batch *batches, int n_batches, int64_t step, float lr,
                        lc_step_result *out) {
    memset(out, 0, sizeof *out);
    int64_t n_rows = 0;
    for (int a = 0; a < n_batches; a++) {
        out->n_targets += batches[a].n_targets;
        out->n_tokens += batches[a].n_tokens;
        n_rows += batches[a].B;
    }
    memset(c->lora->grads, 0, sizeof(float) * c->lora->n_params);
    if (out->n_targets == 0) return LC_STATUS_OK;
    // With several ranks each takes an equal run of the step's rows, in the
    // order one process takes them; the token-normalized gradient is summed.
    int rank = lc_dist_rank(), size = lc_dist_size();
    int64_t lo = n_rows * rank / size, hi = n_rows * (rank + 1) / size, row = 0;
    double loss_sum = 0.0;
    int counted = 0;
    float norm = 1.0f / (float)out->n_targets;
    for (int a = 0; a < n_batches; row += batches[a].B, a++) {
        int b0 = (int)(lo > row ? lo - row : 0), b1 = (int)(hi - row < batches[a].B ? hi - row : batches[a].B);
        if (b1 <= b0) continue;
        lc_batch b;
        batch_rows(&b, &batches[a], b0, b1);
        if (b.n_targets == 0) continue;
        lc_lora_set_dropout_rows(c->lora, c->model, c->seed * 0x2545F4914F6CDD1Dull + (uint64_t)(step * n_batches + a),
                                 (int64_t)b0 * b.T);
        lc_forward_input in = {b.tokens, b.B, b.T, b.pos, b.seg_start, 0};
        lc_status st = lc_train_pass_run(c->pass, c->model, c->lora, &in, b.targets, norm, &loss_sum, &counted);
        if (st) return st;
    }
    lc_status st;
    if ((st = lc_dist_sum_f64(&loss_sum, 1)) || (st = lc_dist_sum_f32(c->lora->grads, c->lora->n_params))) return st;
    out->loss = loss_sum / out->n_targets;
    out->grad_norm = lc_grad_clip(c->lora->grads, c->lora->n_params, c->max_grad_norm);
    out->nonfinite = !isfinite(out->loss) || !isfinite(out->grad_norm);
    if (!out->nonfinite) lc_adamw_step(c->opt, c->lora->params, c->lora->grads, lr);
    return LC_STATUS_OK;
}
