#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    s->repetition_penalty = 1.0f;
    s->seen = NULL;
    lc_rng_seed(&s->rng, seed);
    s->cand = malloc(sizeof *s->cand * (size_t)vocab_size);
    if (!s->cand) {
        lc_sampler_free(s);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    return LC_STATUS_OK;
}

void lc_sampler_free(lc_sampler *s) {
    free(s->cand);
    free(s->seen);
    s->cand = NULL;
    s->seen = NULL;
}

lc_status lc_sampler_set_repetition_penalty(lc_sampler *s, float penalty) {
    if (!(penalty > 0.0f) || !isfinite(penalty))
        return lc_error(LC_STATUS_USAGE, "repetition penalty must be a positive number, not %g", (double)penalty);
    s->repetition_penalty = penalty;
    if (penalty == 1.0f) {
        free(s->seen);
        s->seen = NULL;
    } else if (!s->seen && !(s->seen = calloc((size_t)s->vocab_size, 1))) {
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    return LC_STATUS_OK;
}

void lc_sampler_reset(lc_sampler *s) {
    if (s->seen) memset(s->seen, 0, (size_t)s->vocab_size);
}

void lc_sampler_accept(lc_sampler *s, int32_t id) {
    if (s->seen && id >= 0 && id < s->vocab_size) s->seen[id] = 1;
}

float lc_sampler_logit(const lc_sampler *s, const float *logits, int32_t id) {
    float x = logits[id];
    if (!s->seen || !s->seen[id]) return x;
    return x > 0.0f ? x / s->repetition_penalty : x * s->repetition_penalty;
}

// Candidates are (probability, id) pairs: larger probability first, ties to
// the lower id, so the order never depends on the sort algorithm.
static int before(const lc_candidate *a, const lc_candidate *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static int cmp_candidate(const void *a, const void *b) {
    const lc_candidate *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

// Keeps the k best of c[0..n) in c[0..k) (a min-heap of the best so far:
// O(n log k) instead of sorting the whole vocabulary), then sorts them.
static void top_k_select(lc_candidate *c, int n, int k) {
    for (int i = 0; i < n; i++) {
        if (i >= k) {
            if (!before(&c[i], &c[0])) continue;
            c[0] = c[i];
        }
        // sift the new element: up while building, down after replacing the root
        int j = i < k ? i : 0, size = i < k ? i + 1 : k;
        if (i < k) {
            while (j > 0 && before(&c[(j - 1) / 2], &c[j])) {
                lc_candidate t = c[j];
                c[j] = c[(j - 1) / 2];
                c[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else {
            for (;;) {
                int l = 2 * j + 1, r = l + 1, w = j;
                if (l < size && before(&c[w], &c[l])) w = l;
                if (r < size && before(&c[w], &c[r])) w = r;
                if (w == j) break;
                lc_candidate t = c[j];
                c[j] = c[w];
                c[w] = t;
                j = w;
            }
        }
    }
    qsort(c, (size_t)(n < k ? n : k), sizeof *c, cmp_candidate);
}

int32_t lc_sampler_sample(lc_sampler *s, const float *logits) {
    int V = s->vocab_size;
    if (s->temperature <= 0.0f) {
        int32_t best = 0;
        float best_logit = lc_sampler_logit(s, logits, 0);
        for (int i = 1; i < V; i++) {
            float x = lc_sampler_logit(s, logits, i);
            if (x > best_logit) {
                best = i;
                best_logit = x;
            }
        }
        return best;
    }
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++) {
        float x = lc_sampler_logit(s, logits, i);
        if (x > maxv) maxv = x;
    }
    lc_candidate *c = s->cand;
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        c[i].p = expf((lc_sampler_logit(s, logits, i) - maxv) / s->temperature);
        c[i].id = i;
        sum += c[i].p;
    }
    for (int i = 0; i < V; i++) c[i].p = (float)(c[i].p / sum);

    int n = V;
    if (s->top_k > 0) {
        top_k_select(c, V, s->top_k);
        n = s->top_k;
    } else if (s->top_p < 1.0f) {
        qsort(c, (size_t)V, sizeof *c, cmp_candidate);
    }
    if (s->top_p < 1.0f) {
        // Keep the smallest prefix whose mass reaches top_p (at least one),
        // measured within the top-k candidates renormalized.
        double mass = 0.0, total = 0.0;
        for (int i = 0; i < n; i++) total += c[i].p;
        int keep = 0;
        while (keep < n) {
            mass += c[keep++].p / total;
            if (mass >= s->top_p) break;
        }
        n = keep;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].p;
    double u = lc_rng_uniform(&s->rng) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}
