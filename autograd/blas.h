// OpenBLAS set-up shared by every executable.
#ifndef LC_BLAS_H
#define LC_BLAS_H

// Debian's OpenBLAS 0.3.21 does not recognize recent AVX-512 CPUs and falls
// back to generic kernels (7x slower here). It reads OPENBLAS_CORETYPE only
// when the library loads, so when the user has not set it and the generic
// kernels are in use on a CPU with AVX-512 (SkylakeX) or AVX2 (Haswell), this
// sets it and re-executes the program once. Call first thing in main.
void lc_blas_pick_core(char **argv);

#endif
