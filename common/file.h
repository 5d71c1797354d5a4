// Whole-file reads and read-only memory maps, with sizes checked.
#ifndef LC_FILE_H
#define LC_FILE_H

#include <stddef.h>

#include "common/status.h"

// Reads `path` into a NUL-terminated heap buffer; refuses files over max_bytes.
lc_status lc_file_read(const char *path, size_t max_bytes, char **out_data, size_t *out_len);

typedef struct lc_file_map {
    const unsigned char *data; // [size] read-only, or NULL when size is 0
    size_t size;
} lc_file_map;

lc_status lc_file_map_open(lc_file_map *map, const char *path);
void lc_file_map_close(lc_file_map *map);

// 1 if `path` names an existing regular file or directory.
int lc_file_exists(const char *path);
int lc_dir_exists(const char *path);

// mkdir -p: LC_STATUS_RUNTIME when a folder cannot be made, LC_STATUS_INPUT
// when the path exists and is not a folder.
lc_status lc_dir_create(const char *dir);
// The same, saying in made (cap bytes) the outermost folder it created, or ""
// when dir was there: what a writer that fails takes back with lc_dir_remove_made.
lc_status lc_dir_create_made(const char *dir, char *made, size_t cap);
// Removes dir, then its parents up to made, each only while empty (rmdir,
// never a recursive delete); nothing when made is "".
void lc_dir_remove_made(const char *dir, const char *made);
// The folder part of path ("." when it has none) into out; error if it does not fit.
lc_status lc_path_dirname(char *out, size_t cap, const char *path);

// fsync of the folder holding path, so a rename into it is durable. File
// systems that cannot sync folders (EINVAL, ENOTSUP) count as success.
lc_status lc_file_sync_parent(const char *path);

// Writes data to path + ".tmp", fsyncs, renames over path and syncs the
// folder: a crash leaves the old file or the new one, never half of one.
lc_status lc_file_write_atomic(const char *path, const void *data, size_t len);

// Seconds on a monotonic clock (for timings and progress).
double lc_now_s(void);

// Joins dir and name with '/' into out (cap bytes); error if it does not fit.
lc_status lc_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
