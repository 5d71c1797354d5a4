// A run's output folder: its checkpoint-<step>.h5 files, the index of those
// known to be complete, and the lock a training run holds on it.
//
// The index (checkpoints.json) lists, in the order they were written, the
// checkpoints this tool wrote completely (fsync, rename) or read back whole,
// each with its size in bytes. Pruning counts and deletes only listed ones,
// so a damaged or foreign file never displaces a good checkpoint, and the one
// just written is always kept. Readers (resume, --adapter RUN_DIR) take the
// newest checkpoint that reads completely, listed or not (a run killed
// between the rename and the index update leaves a complete, unlisted one);
// a run also passes over a listed one whose size changed since it was
// written.
#ifndef LC_RUN_DIR_H
#define LC_RUN_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lc_run_entry {
    int64_t step;
    int64_t bytes; // size when written
} lc_run_entry;

typedef struct lc_run_dir {
    char dir[4096];
    int lock_fd;           // -1 when the lock is not held
    lc_run_entry *entries; // [n] the index, oldest written first
    int n, cap;
    int created; // lc_run_dir_open made the folder
    int64_t best; // early stopping's best checkpoint (0: none): never pruned; --adapter RUN_DIR takes it
} lc_run_dir;

// Creates dir when missing, takes its lock and reads its index. The lock is
// a POSIX record lock on dir/train.lock (an empty file), which the kernel
// drops when its holder ends however it ends, so a crashed run leaves no
// stale lock; a folder another live process holds is refused
// (LC_STATUS_INPUT) naming that process.
lc_status lc_run_dir_open(lc_run_dir *r, const char *dir);
// Releases the lock and the index.
void lc_run_dir_close(lc_run_dir *r);
// The same for a run that failed: a folder it created and left empty (a
// wrong data path, say) is removed with its lock file.
void lc_run_dir_close_failed(lc_run_dir *r);

// *pid gets the process id of the lora train holding dir's lock (a run
// still going), or 0 when none does (no lock file, or unlocked). When it
// cannot be told (the lock file unreadable, not a regular file, no locks on
// this file system) the error says why, without the folder's name.
lc_status lc_run_dir_holder(const char *dir, long *pid);

// Records dir/checkpoint-<step>.h5, just written completely, as the newest
// entry and rewrites the index (temporary file and rename).
lc_status lc_run_dir_add(lc_run_dir *r, int64_t step);
// Drops step from the index (found unreadable); the file is left in place.
lc_status lc_run_dir_forget(lc_run_dir *r, int64_t step);
// Records step as the run's best checkpoint (0: none) and rewrites the index.
lc_status lc_run_dir_set_best(lc_run_dir *r, int64_t step);
// The best step an index records (0 when none or no index), for readers.
int64_t lc_run_dir_read_best(const char *dir);
// Deletes listed checkpoints beyond the `keep` most recently written (the
// best checkpoint is kept besides them). Files
// the index does not list are never deleted. Returns the first failure to
// rewrite the index (deleting a file that is already gone is not one).
lc_status lc_run_dir_prune(lc_run_dir *r, int keep);

// Tries a run's checkpoints newest step first until `try` accepts one.
// try(ctx, path, &skip) returns OK to accept, or an error: with *skip set
// the file is unreadable or damaged, reported as "warning: skipping ..." and
// the next older one tried; without, the error ends the search. A listed
// checkpoint whose size changed is skipped the same way without calling try.
// *step gets the accepted step (0 when none, which is not an error: the
// caller decides what an empty or all-damaged folder means); *n_skipped the
// files passed over. r may be NULL (a reader without the lock): the index
// is then read from dir.
typedef lc_status (*lc_run_dir_try_fn)(void *ctx, const char *path, int *skip);
lc_status lc_run_dir_find(const char *dir, const lc_run_dir *r, lc_run_dir_try_fn try_fn, void *ctx, int64_t *step,
                          int *n_skipped);

// Steps of the checkpoint-<step>.h5 files in dir, newest first (temporaries
// and other names ignored). *steps is heap memory the caller frees; a
// missing folder gives zero checkpoints.
lc_status lc_run_dir_checkpoints(const char *dir, int64_t **steps, int *n);

// dir/checkpoint-<step>.h5 into out.
lc_status lc_run_dir_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step);

#endif
