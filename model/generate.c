#include "model/generate.h"

#include <stdbool.h>

#include "common/file.h"

lc_status lc_generate(lc_forward_state *s, const lc_model *m, lc_sampler *sampler, const int32_t *prompt,
                      int n_prompt, int max_new, const int32_t *stop, int n_stop, lc_token_fn on_token, void *user,
                      lc_generate_stats *stats) {
    lc_generate_stats local = {0};
    lc_status st = LC_STATUS_OK;
    if (!stats) stats = &local;
    *stats = local;
    stats->n_prompt = n_prompt;
    if (n_prompt <= 0) return lc_error(LC_STATUS_USAGE, "generation needs at least one prompt token");
    if (n_prompt + max_new > s->cache.max_tokens)
        return lc_error(LC_STATUS_USAGE, "prompt (%d tokens) plus %d new tokens exceeds the context of %d", n_prompt,
                        max_new, s->cache.max_tokens);
    // The repetition penalty looks at the whole sequence, prompt included (transformers' semantics).
    lc_sampler_reset(sampler);
    for (int i = 0; i < n_prompt; i++) lc_sampler_accept(sampler, prompt[i]);
    double t0 = lc_now_s();
    // The prompt goes through in chunks of the planned row count.
    for (int p = 0; p < n_prompt && !st; p += s->max_rows) {
        int n = n_prompt - p < s->max_rows ? n_prompt - p : s->max_rows;
        st = lc_forward(s, m, prompt + p, 1, n, p, LC_LOGITS_MODE_LAST);
    }
    double t1 = lc_now_s();
    stats->prefill_s = t1 - t0;
    int pos = n_prompt;
    for (int i = 0; i < max_new && !st; i++) {
        int32_t tok = lc_sampler_sample(sampler, s->logits);
        lc_sampler_accept(sampler, tok);
        stats->n_generated++;
        if (on_token && on_token(user, tok)) break;
        bool stops = i == max_new - 1;
        for (int k = 0; k < n_stop && !stops; k++) stops = tok == stop[k];
        if (stops) break;
        st = lc_forward(s, m, &tok, 1, 1, pos++, LC_LOGITS_MODE_LAST);
    }
    stats->decode_s = lc_now_s() - t1;
    return st;
}
