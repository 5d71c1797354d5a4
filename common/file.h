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
// The folders lc_dir_create_made created: each is the first end[i] bytes of
// path, in creation order. "a/../b" makes a, then a/../b, never touching a/..,
// so undo removes exactly these and nothing that was there before.
typedef struct lc_dir_made {
    char path[4096];
    unsigned short end[2048]; // a 4095-byte path has at most 2048 components
    int n;
} lc_dir_made;
// The same, recording in made every folder it created (none when dir was
// there): what a writer that fails takes back with lc_dir_remove_made.
lc_status lc_dir_create_made(const char *dir, lc_dir_made *made);
// Removes the folders made records, last made first, each only while empty
// (rmdir, never a recursive delete); a folder not made is never touched.
void lc_dir_remove_made(const lc_dir_made *made);
// The folder part of path ("." when it has none) into out; error if it does not fit.
lc_status lc_path_dirname(char *out, size_t cap, const char *path);

// fsync of the folder holding path, so a rename into it is durable. File
// systems that cannot sync folders (EINVAL, ENOTSUP) count as success.
lc_status lc_file_sync_parent(const char *path);

// Whether an atomic write (a temporary file renamed over path) may replace
// what is at path: nothing, a regular file, or a symbolic link (replaced by
// the file, its target left alone). A device, a pipe, a socket or a folder
// is refused: renaming over it would replace, say, /dev/null.
lc_status lc_file_check_replaceable(const char *path);

// Writes data to path + ".tmp", fsyncs, renames over path and syncs the
// folder: a crash leaves the old file or the new one, never half of one
// (path checked with lc_file_check_replaceable first).
lc_status lc_file_write_atomic(const char *path, const void *data, size_t len);

// Seconds on a monotonic clock (for timings and progress).
double lc_now_s(void);

// Joins dir and name with '/' into out (cap bytes); error if it does not fit.
lc_status lc_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
