// Learning-rate schedules: Hugging Face's get_{constant,linear,cosine}_schedule_with_warmup
// with a floor min_lr after warmup, held at the final value past total_steps.
#include "optim/adamw.h"

#include <math.h>
#include <string.h>

int lc_schedule_type_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "constant") == 0) return LC_SCHEDULE_TYPE_CONSTANT;
    if (strcmp(name, "linear") == 0) return LC_SCHEDULE_TYPE_LINEAR;
    if (strcmp(name, "cosine") == 0) return LC_SCHEDULE_TYPE_COSINE;
    return -1;
}

// M_PI is POSIX, not C11; this is the double Python's math.pi holds.
static const double pi = 3.14159265358979323846;

static double max1(int64_t x) { return x > 1 ? (double)x : 1.0; }

float lc_schedule_lr(const lc_schedule *s, int64_t step) {
    // Past the end HF's cosine would rise again; hold the last value instead.
    if (step > s->total_steps) step = s->total_steps;
    if (step < 0) step = 0;
    const double lr = s->lr, min_lr = s->min_lr;
    if (step < s->warmup_steps) return (float)(lr * ((double)step / max1(s->warmup_steps)));
    const double span = max1(s->total_steps - s->warmup_steps);
    double factor;
    switch (s->type) {
    case LC_SCHEDULE_TYPE_LINEAR:
        factor = fmax(0.0, (double)(s->total_steps - step) / span);
        break;
    case LC_SCHEDULE_TYPE_COSINE:
        factor = fmax(0.0, 0.5 * (1.0 + cos(pi * ((double)(step - s->warmup_steps) / span))));
        break;
    case LC_SCHEDULE_TYPE_CONSTANT:
    default:
        factor = 1.0;
        break;
    }
    return (float)(min_lr + (lr - min_lr) * factor);
}
