#include "model/sample.h"

#include <math.h>
#include <stdlib.h>

void lc_rng_seed(lc_rng *r, uint64_t seed) { r->state = seed ^ 0x9E3779B97F4A7C15ull; }

uint64_t lc_rng_next(lc_rng *r) {
    // splitmix64: tiny state (easy to checkpoint) and good statistics.
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float lc_rng_uniform(lc_rng *r) { return (float)(lc_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

lc_status lc_sampler_init(lc_sampler *s, int vocab_size, float temperature, int top_k, float top_p, uint64_t seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_k = top_k < 0 || top_k > vocab_size ? 0 : top_k;
    s->top_p = top_p;
    lc_rng_seed(&s->rng, seed);
    s->probs = malloc(sizeof(float) * (size_t)vocab_size);
    s->idx = malloc(sizeof(int32_t) * (size_t)vocab_size);
    if (!s->probs || !s->idx) {
        lc_sampler_free(s);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    return LC_STATUS_OK;
}

void lc_sampler_free(lc_sampler *s) {
    free(s->probs);
    free(s->idx);
    s->probs = NULL;
    s->idx = NULL;
}

static const float *lc_sort_keys;

static int cmp_desc(const void *a, const void *b) {
    float x = lc_sort_keys[*(const int32_t *)a], y = lc_sort_keys[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; // ties: lower id first, deterministic
}

int32_t lc_sampler_sample(lc_sampler *s, const float *logits) {
    int V = s->vocab_size;
    if (s->temperature <= 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > maxv) maxv = logits[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - maxv) / s->temperature);
        sum += s->probs[i];
        s->idx[i] = i;
    }
    for (int i = 0; i < V; i++) s->probs[i] = (float)(s->probs[i] / sum);

    int n = V;
    if (s->top_k > 0 || s->top_p < 1.0f) {
        lc_sort_keys = s->probs;
        qsort(s->idx, (size_t)V, sizeof *s->idx, cmp_desc);
        if (s->top_k > 0) n = s->top_k;
        if (s->top_p < 1.0f) {
            // Keep the smallest prefix whose mass reaches top_p (at least one),
            // measured within the top-k candidates renormalized.
            double mass = 0.0, total = 0.0;
            for (int i = 0; i < n; i++) total += s->probs[s->idx[i]];
            int keep = 0;
            while (keep < n) {
                mass += s->probs[s->idx[keep++]] / total;
                if (mass >= s->top_p) break;
            }
            n = keep;
        }
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += s->probs[s->idx[i]];
    double u = lc_rng_uniform(&s->rng) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += s->probs[s->idx[i]];
        if (u < acc) return s->idx[i];
    }
    return s->idx[n - 1];
}
