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

// Joins dir and name with '/' into out (cap bytes); error if it does not fit.
lc_status lc_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
