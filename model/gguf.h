// GGUF (llama.cpp's model file, version 3): a memory-mapped reader that
// bounds-checks every field. Base models load from it (model/gguf_model.c);
// the writer is export/gguf.h.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 KV count;
// KVs {string key, u32 value type, value}; tensor infos {string name, u32 n_dims,
// u64 ne[n_dims], u32 ggml type, u64 offset}; padding to general.alignment
// (default 32); tensor data, each at its (aligned) offset from the data start.
// A string is a u64 byte count and the bytes; an array is a u32 item type, a
// u64 count and the items. ne[0] is the fastest-varying dimension, so a
// row-major [rows, cols] matrix has ne = {cols, rows}.
#ifndef LC_MODEL_GGUF_H
#define LC_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/file.h"
#include "common/status.h"

typedef enum lc_gguf_vtype {
    LC_GGUF_U8 = 0,
    LC_GGUF_I8 = 1,
    LC_GGUF_U16 = 2,
    LC_GGUF_I16 = 3,
    LC_GGUF_U32 = 4,
    LC_GGUF_I32 = 5,
    LC_GGUF_F32 = 6,
    LC_GGUF_BOOL = 7,
    LC_GGUF_STRING = 8,
    LC_GGUF_ARRAY = 9,
    LC_GGUF_U64 = 10,
    LC_GGUF_I64 = 11,
    LC_GGUF_F64 = 12,
    LC_GGUF_VTYPE_COUNT,
} lc_gguf_vtype;

// ggml tensor types this code writes (the reader knows every current type's size).
#define LC_GGML_TYPE_F32 0u
#define LC_GGML_TYPE_F16 1u
#define LC_GGML_TYPE_BF16 30u

// general.file_type values (llama_ftype).
#define LC_GGUF_FILE_TYPE_ALL_F32 0u
#define LC_GGUF_FILE_TYPE_MOSTLY_F16 1u
#define LC_GGUF_FILE_TYPE_MOSTLY_BF16 32u
#define LC_GGUF_FILE_TYPE_MOSTLY_Q8_0 7u

#define LC_GGUF_MAX_DIMS 4
#define LC_GGUF_DEFAULT_ALIGNMENT 32u

// A string inside the mapped file: not NUL-terminated, may hold any bytes.
typedef struct lc_gguf_str {
    const char *s;
    size_t len;
} lc_gguf_str;

typedef struct lc_gguf_kv {
    char *key;                 // NUL-terminated copy
    lc_gguf_vtype type;        // LC_GGUF_ARRAY for arrays
    lc_gguf_vtype item_type;   // arrays: type of the items; scalars: == type
    uint64_t n;                // arrays: item count; scalars: 1
    const unsigned char *data; // scalar value or first array item, in the mapping (unaligned)
    lc_gguf_str *strs;         // strings and string arrays: [n]; NULL otherwise
} lc_gguf_kv;

typedef struct lc_gguf_tensor {
    char *name;                   // NUL-terminated copy
    uint32_t type;                // ggml type id
    int n_dims;                   // 1..LC_GGUF_MAX_DIMS
    int64_t ne[LC_GGUF_MAX_DIMS]; // GGUF order (ne[0] fastest); unused dims are 1
    int64_t n_elements;
    uint64_t offset;              // from the start of the data section
    const unsigned char *data;    // [nbytes] in the mapping
    size_t nbytes;
} lc_gguf_tensor;

typedef struct lc_gguf_file {
    char *path;
    lc_file_map map;
    uint32_t version;
    uint32_t alignment;
    size_t data_offset; // start of the data section in the file
    lc_gguf_kv *kvs;    // in file order
    size_t n_kvs;
    lc_gguf_tensor *tensors; // in file order
    size_t n_tensors;
} lc_gguf_file;

// Maps and parses path. Nothing in the file is trusted: counts are capped by
// what the file's size can hold, every string, array, dimension, type id and
// tensor range is checked, duplicate keys or tensor names are refused. A bad
// file is LC_STATUS_INPUT with the path in the message.
lc_status lc_gguf_open(lc_gguf_file *f, const char *path);
void lc_gguf_close(lc_gguf_file *f);

const lc_gguf_kv *lc_gguf_find_kv(const lc_gguf_file *f, const char *key);         // NULL if absent
const lc_gguf_tensor *lc_gguf_find_tensor(const lc_gguf_file *f, const char *name); // NULL if absent

// Item i of an array, or the scalar (i = 0). false when the type does not
// fit or i is out of range. _int takes any integer type and bool (a u64
// above INT64_MAX fails); _float takes f32/f64 and integers; _str strings.
bool lc_gguf_kv_int(const lc_gguf_kv *kv, uint64_t i, int64_t *out);
bool lc_gguf_kv_float(const lc_gguf_kv *kv, uint64_t i, double *out);
bool lc_gguf_kv_str(const lc_gguf_kv *kv, uint64_t i, lc_gguf_str *out);

// s as a NUL-terminated string for a message: cut to cap - 1 bytes, control
// bytes shown as '?' (an error stays one line).
void lc_gguf_str_print(char *out, size_t cap, lc_gguf_str s);

const char *lc_gguf_vtype_name(lc_gguf_vtype t); // "u32", "string", ... ("?" if unknown)
size_t lc_gguf_vtype_size(lc_gguf_vtype t);      // bytes of a scalar (0 for string and array)
const char *lc_ggml_type_name(uint32_t type);    // "F32", "Q4_K", ... or NULL if unknown

// Converts a tensor of a type lora.c holds (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) to fp32 into out[n_elements]; other types
// are an LC_STATUS_INPUT error naming the file and tensor.
lc_status lc_gguf_tensor_to_f32(const lc_gguf_file *f, const lc_gguf_tensor *t, float *out);

#endif
