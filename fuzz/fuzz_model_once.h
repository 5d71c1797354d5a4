// stories260K loaded once per process for the adapter harnesses.
#ifndef LC_FUZZ_MODEL_ONCE_H
#define LC_FUZZ_MODEL_ONCE_H

#include "fuzz_common.h"
#include "model/model.h"

static lc_model lc_fuzz_model;

static inline void lc_fuzz_load_model(void) {
    if (lc_model_load(&lc_fuzz_model, lc_fuzz_shared("models/stories260K")) != LC_STATUS_OK) {
        fprintf(stderr, "fuzz: cannot load stories260K: %s (set LC_SHARED)\n", lc_error_message());
        abort();
    }
}

#endif
