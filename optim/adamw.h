// AdamW with decoupled weight decay and bias correction (torch.optim.AdamW
// semantics), learning-rate schedules, and clipping by global gradient norm.
#ifndef LC_ADAMW_H
#define LC_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lc_adamw_config {
    float beta1, beta2, eps, weight_decay;
} lc_adamw_config;

typedef struct lc_adamw {
    lc_adamw_config cfg;
    size_t n;      // parameters
    float *m;      // [n] first moment
    float *v;      // [n] second moment
    int64_t step;  // updates done so far
} lc_adamw;

lc_status lc_adamw_init(lc_adamw *opt, size_t n, const lc_adamw_config *cfg);
void lc_adamw_free(lc_adamw *opt);

// One update of params [n] from grads [n] at learning rate lr, exactly as
// torch.optim.AdamW (foreach=False) computes it in fp32.
void lc_adamw_step(lc_adamw *opt, float *params, const float *grads, float lr);

typedef enum lc_schedule_type {
    LC_SCHEDULE_TYPE_CONSTANT,
    LC_SCHEDULE_TYPE_LINEAR,
    LC_SCHEDULE_TYPE_COSINE,
} lc_schedule_type;

typedef struct lc_schedule {
    lc_schedule_type type;
    float lr;          // peak
    float min_lr;      // floor after warmup
    int64_t warmup_steps;
    int64_t total_steps;
} lc_schedule;

// Parses "constant" / "linear" / "cosine"; -1 if unknown.
int lc_schedule_type_parse(const char *name);

// Learning rate of optimizer update number `step` (0-based), as Hugging Face's
// get_*_schedule_with_warmup: linear warmup step/warmup from 0, then constant,
// linear decay or half-cosine decay to min_lr at total_steps.
float lc_schedule_lr(const lc_schedule *s, int64_t step);

// Global L2 norm of grads [n] (accumulated in double); when it exceeds
// max_norm > 0 the grads are scaled by max_norm / (norm + 1e-6) as
// torch.nn.utils.clip_grad_norm_ does. Returns the norm before clipping.
float lc_grad_clip(float *grads, size_t n, float max_norm);

#endif
