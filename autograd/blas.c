#include "autograd/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void lc_blas_pick_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core) return;
    const char *name = openblas_get_corename();
    // Already a recognized modern core: nothing to fix.
    if (name && strcasecmp(name, "prescott") != 0 && strcasecmp(name, "core2") != 0 &&
        strcasecmp(name, "nehalem") != 0 && strcasecmp(name, "sandybridge") != 0)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with the generic kernels.
}
