// Token-level generation: prefill the prompt, then decode one token at a time
// through the KV cache, handing each new token to a callback.
#ifndef LC_GENERATE_H
#define LC_GENERATE_H

#include <stdint.h>

#include "common/status.h"
#include "model/forward.h"
#include "model/sample.h"

// Return non-zero to stop generation early.
typedef int (*lc_token_fn)(void *user, int32_t token);

typedef struct lc_generate_stats {
    int n_prompt, n_generated;
    double prefill_s, decode_s;
} lc_generate_stats;

// Generates up to max_new tokens after prompt[0..n_prompt). Stops after any
// of the tokens stop[0..n_stop) (which is passed to the callback); n_stop may
// be 0. The sampler's repetition penalty sees the prompt and every token
// generated (its context is reset first). The state must hold n_prompt + max_new positions for one sequence.
lc_status lc_generate(lc_forward_state *s, const lc_model *m, lc_sampler *sampler, const int32_t *prompt,
                      int n_prompt, int max_new, const int32_t *stop, int n_stop, lc_token_fn on_token, void *user,
                      lc_generate_stats *stats);

#endif
