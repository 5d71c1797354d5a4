// Runs a parser of untrusted files in a child process. libhdf5 (Debian's
// 1.10.8) has memory-safety bugs that crafted files reach (fuzz/known-crashes/);
// nothing in our code can fix them, so HDF5 reads run where a crash costs
// only the child: the parent then reports the file as unreadable.
#ifndef LC_ISOLATE_H
#define LC_ISOLATE_H

#include <stddef.h>

#include "common/status.h"

// fn fills `out` (bytes of shared memory, zeroed) and returns a status; its
// message travels back with it. Returns fn's status, or LC_STATUS_INPUT
// naming `path` when the child dies. *out is the shared memory for the
// caller to read and release with lc_isolated_free; NULL on failure.
typedef lc_status (*lc_isolated_fn)(void *ctx, void *out);
lc_status lc_isolated_call(const char *path, size_t bytes, lc_isolated_fn fn, void *ctx, void **out);
void lc_isolated_free(void *out, size_t bytes);

#endif
