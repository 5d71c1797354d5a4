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

// The file an atomic write of path replaces (into out): path itself when it
// is missing (or cannot be looked at: the write says why) or a regular file, or the regular file a symbolic link at path
// points to (the link stays a link). Anything else existing there (a device,
// a pipe, a socket, a folder, a dangling link) is refused: renaming over it
// would replace, say, /dev/null with a regular file.
lc_status lc_file_write_target(const char *path, char *out, size_t cap);

// Writes data to the write target of path (lc_file_write_target) + ".tmp",
// fsyncs, renames it over the target and syncs the folder: a crash leaves the
// old file or the new one, never half of one.
lc_status lc_file_write_atomic(const char *path, const void *data, size_t len);

// Seconds on a monotonic clock (for timings and progress).
double lc_now_s(void);

// Joins dir and name with '/' into out (cap bytes); error if it does not fit.
lc_status lc_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
