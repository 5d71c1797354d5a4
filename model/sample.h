// Next-token sampling: repetition penalty, greedy, temperature, top-k, top-p;
// seeded and reproducible.
#ifndef LC_SAMPLE_H
#define LC_SAMPLE_H

#include <stdint.h>

#include "common/status.h"

typedef struct lc_rng {
    uint64_t state;
} lc_rng;

void lc_rng_seed(lc_rng *r, uint64_t seed);
uint64_t lc_rng_next(lc_rng *r);
float lc_rng_uniform(lc_rng *r); // [0, 1)

typedef struct lc_candidate {
    float p;
    int32_t id;
} lc_candidate;

typedef struct lc_sampler {
    int vocab_size;
    float temperature; // 0: greedy
    int top_k;         // 0: off
    float top_p;       // 1: off
    lc_rng rng;
    lc_candidate *cand; // [V] probabilities and ids, reordered while sampling
    float repetition_penalty; // 1: off
    unsigned char *seen;      // [V] ids in the context so far; NULL while the penalty is off
} lc_sampler;

lc_status lc_sampler_init(lc_sampler *s, int vocab_size, float temperature, int top_k, float top_p, uint64_t seed);
void lc_sampler_free(lc_sampler *s);

// The repetition penalty (transformers' RepetitionPenaltyLogitsProcessor,
// llama.cpp's --repeat-penalty): the logit of every id in the context is
// divided by penalty when positive and multiplied by it otherwise. 1 turns it
// off; penalty must be > 0.
lc_status lc_sampler_set_repetition_penalty(lc_sampler *s, float penalty);
// The context the penalty looks at: forget it all, or add one id (ids outside
// the vocabulary are ignored). Both do nothing while the penalty is off.
void lc_sampler_reset(lc_sampler *s);
void lc_sampler_accept(lc_sampler *s, int32_t id);
// logits[id] after the repetition penalty.
float lc_sampler_logit(const lc_sampler *s, const float *logits, int32_t id);

// Picks the next token from logits [V] (the repetition penalty, then
// temperature, then top-k, then top-p, as Hugging Face's generate applies them).
int32_t lc_sampler_sample(lc_sampler *s, const float *logits);

#endif
