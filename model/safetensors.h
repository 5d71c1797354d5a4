// Safetensors reader: memory-mapped, every header field bounds-checked.
// A model may span several shards (model.safetensors.index.json).
#ifndef LC_SAFETENSORS_H
#define LC_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/weight.h"
#include "common/file.h"
#include "common/status.h"

// A value below LC_DTYPE_OTHER is also an lc_wtype: safetensors files hold
// F32, F16 and BF16; the quantized types come from GGUF bases.
typedef enum lc_dtype {
    LC_DTYPE_F32 = LC_WTYPE_F32,
    LC_DTYPE_F16 = LC_WTYPE_F16,
    LC_DTYPE_BF16 = LC_WTYPE_BF16,
    LC_DTYPE_OTHER = LC_WTYPE_COUNT, // present in a file but not loadable as weights
} lc_dtype;

#define LC_MAX_DIMS 8

typedef struct lc_st_tensor {
    char *name;
    lc_dtype dtype;
    char dtype_name[8];
    int n_dims;
    int64_t shape[LC_MAX_DIMS];
    int64_t n_elements;
    const unsigned char *data; // [nbytes] inside the mapped file
    size_t nbytes;
    int shard; // index into lc_st_set.files
    const char *stored_name; // a GGUF base's own name of the tensor (owned by the file), else NULL
    bool used;               // found by the model loader
} lc_st_tensor;

typedef struct lc_st_file {
    char *path;
    lc_file_map map;
} lc_st_file;

typedef struct lc_st_set {
    lc_st_file *files;
    int n_files;
    lc_st_tensor *tensors; // sorted by name
    int n_tensors;
} lc_st_set;

// Opens one .safetensors file and appends its tensors to the set.
lc_status lc_st_set_add_file(lc_st_set *set, const char *path);
// Opens a model folder: model.safetensors, or the shards listed by
// model.safetensors.index.json (file names only; no path may leave the folder).
lc_status lc_st_set_open_dir(lc_st_set *set, const char *dir);
void lc_st_set_free(lc_st_set *set);

const lc_st_tensor *lc_st_set_find(const lc_st_set *set, const char *name);

// Converts a tensor of any loadable dtype (F32/F16/BF16 or quantized) to
// fp32 into out[n_elements].
void lc_st_tensor_to_f32(const lc_st_tensor *t, float *out);

size_t lc_dtype_size(lc_dtype dtype); // bytes per element of F32/F16/BF16, else 0

// One tensor to write: data holds nbytes in dtype's little-endian layout.
typedef struct lc_st_entry {
    const char *name;
    lc_dtype dtype;
    int n_dims;
    int64_t shape[LC_MAX_DIMS];
    const void *data;
    size_t nbytes;
} lc_st_entry;

// Writes a safetensors file (header padded to 8 bytes) under a temporary
// name and renames it into place when complete. metadata: string pairs
// {key, value, key, value, ...} for "__metadata__", n_meta pairs (may be 0).
lc_status lc_st_write(const char *path, const lc_st_entry *entries, int n, const char *const *metadata, int n_meta);

#endif
