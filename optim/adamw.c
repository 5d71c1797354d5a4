// AdamW (torch.optim.AdamW, single-tensor path) and gradient clipping
// (torch.nn.utils.clip_grad_norm_), reproducing torch's order of operations
// and precisions so a checkpoint trained here matches a PyTorch run to ~1 ulp.
#include "optim/adamw.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

lc_status lc_adamw_init(lc_adamw *opt, size_t n, const lc_adamw_config *cfg) {
    *opt = (lc_adamw){0};
    // Same ranges torch.optim.AdamW accepts; written as !(ok) so NaN fails too.
    if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f))
        return lc_error(LC_STATUS_INPUT, "adamw: beta1 must be in [0, 1), got %g", cfg->beta1);
    if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
        return lc_error(LC_STATUS_INPUT, "adamw: beta2 must be in [0, 1), got %g", cfg->beta2);
    if (!(cfg->eps >= 0.0f && isfinite(cfg->eps)))
        return lc_error(LC_STATUS_INPUT, "adamw: eps must be >= 0, got %g", cfg->eps);
    if (!(cfg->weight_decay >= 0.0f && isfinite(cfg->weight_decay)))
        return lc_error(LC_STATUS_INPUT, "adamw: weight_decay must be >= 0, got %g", cfg->weight_decay);
    if (n > SIZE_MAX / sizeof(float))
        return lc_error(LC_STATUS_RUNTIME, "adamw: %zu parameters is too many", n);
    opt->cfg = *cfg;
    opt->n = n;
    if (n == 0) return LC_STATUS_OK;
    // Moments start at zero, as torch's zeros_like state.
    opt->m = calloc(n, sizeof(float));
    opt->v = calloc(n, sizeof(float));
    if (!opt->m || !opt->v) {
        lc_adamw_free(opt);
        return lc_error(LC_STATUS_RUNTIME, "adamw: out of memory for %zu moments", n);
    }
    return LC_STATUS_OK;
}

void lc_adamw_free(lc_adamw *opt) {
    free(opt->m);
    free(opt->v);
    *opt = (lc_adamw){0};
}

void lc_adamw_step(lc_adamw *opt, float *params, const float *grads, float lr) {
    const lc_adamw_config *c = &opt->cfg;
    opt->step++;
    // Scalars as torch computes them: Python floats (double), each rounded
    // to fp32 once where it meets the fp32 tensor.
    const double lr_d = lr, b1 = c->beta1, b2 = c->beta2, step = (double)opt->step;
    const double bias_correction1 = 1.0 - pow(b1, step);
    const double bias_correction2 = 1.0 - pow(b2, step);
    const double step_size = lr_d / bias_correction1;
    const float decay = (float)(1.0 - lr_d * (double)c->weight_decay);
    const float beta1 = c->beta1, beta2 = c->beta2, eps = c->eps;
    const float one_minus_b1 = (float)(1.0 - b1), one_minus_b2 = (float)(1.0 - b2);
    const float bc2_sqrt = (float)sqrt(bias_correction2);
    const float neg_step_size = (float)-step_size;
    float *m = opt->m, *v = opt->v;
    for (size_t i = 0; i < opt->n; i++) {
        const float g = grads[i];
        const float p = params[i] * decay; // param.mul_(1 - lr * wd)
        // exp_avg.mul_(b1).add_(g, alpha=1-b1) and exp_avg_sq.mul_(b2).addcmul_(g, g,
        // value=1-b2): torch's AVX2 kernels fuse the final multiply-add of each,
        // so fmaf reproduces them bit for bit (and the same on every machine).
        m[i] = fmaf(g, one_minus_b1, m[i] * beta1);
        v[i] = fmaf(one_minus_b2 * g, g, v[i] * beta2);
        const float denom = sqrtf(v[i]) / bc2_sqrt + eps; // (v.sqrt() / bc2_sqrt).add_(eps)
        params[i] = p + neg_step_size * m[i] / denom;     // param.addcdiv_(m, denom, value=-step_size)
    }
}

float lc_grad_clip(float *grads, size_t n, float max_norm) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)grads[i] * grads[i];
    const float norm = (float)sqrt(sum);
    // A non-finite norm means NaN/Inf grads: scaling would turn them into
    // zeros or NaN everywhere, so leave them for the caller to detect.
    if (!(max_norm > 0.0f) || !isfinite(norm)) return norm;
    // torch: clip_coef = max_norm / (total_norm + 1e-6) on fp32 tensors, where
    // scalar / tensor is tensor.reciprocal() * scalar.
    const float clip_coef = (1.0f / (norm + 1e-6f)) * max_norm;
    if (clip_coef < 1.0f)
        for (size_t i = 0; i < n; i++) grads[i] *= clip_coef;
    return norm;
}
