// A run's output folder: checkpoint-<step>.h5 files, listed, pruned, named.
#ifndef LC_RUN_DIR_H
#define LC_RUN_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

// Steps of the checkpoint-<step>.h5 files in dir, newest first (temporaries
// and other names ignored). *steps is heap memory the caller frees; a
// missing folder gives zero checkpoints.
lc_status lc_run_dir_checkpoints(const char *dir, int64_t **steps, int *n);

// dir/checkpoint-<step>.h5 into out.
lc_status lc_run_dir_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step);

// Removes all but the newest `keep` checkpoints.
void lc_run_dir_prune(const char *dir, int keep);

#endif
