// GGUF (llama.cpp's model file, version 3): a memory-mapped reader that
// bounds-checks every field, and a streaming writer (metadata and tensor
// infos first, then each tensor's data in order, under a temporary name
// renamed into place when complete). lc_export_gguf (export/export.h) is
// built on the writer; `lora inspect` and the tests use the reader.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 KV count;
// KVs {string key, u32 value type, value}; tensor infos {string name, u32 n_dims,
// u64 ne[n_dims], u32 ggml type, u64 offset}; padding to general.alignment
// (default 32); tensor data, each at its (aligned) offset from the data start.
// A string is a u64 byte count and the bytes; an array is a u32 item type, a
// u64 count and the items. ne[0] is the fastest-varying dimension, so a
// row-major [rows, cols] matrix has ne = {cols, rows}.
#ifndef LC_GGUF_H
#define LC_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/file.h"
#include "common/status.h"
#include "data/tokenizer.h"

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

const char *lc_gguf_vtype_name(lc_gguf_vtype t); // "u32", "string", ... ("?" if unknown)
const char *lc_ggml_type_name(uint32_t type);    // "F32", "Q4_K", ... or NULL if unknown

// Converts an F32, F16 or BF16 tensor to fp32 into out[n_elements]; other
// types are an LC_STATUS_INPUT error naming the file and tensor.
lc_status lc_gguf_tensor_to_f32(const lc_gguf_file *f, const lc_gguf_tensor *t, float *out);

// ---- writer ----

typedef struct lc_gguf_writer lc_gguf_writer;

// A writer for path (the file is written to path.tmp and renamed by finish).
lc_status lc_gguf_writer_new(lc_gguf_writer **out, const char *path);
// Frees the writer; if it was not finished, the temporary file is removed.
void lc_gguf_writer_free(lc_gguf_writer *w);

// Metadata, in the order added. A repeated key is an error. Setting
// general.alignment (u32, a power of two) changes the data alignment.
lc_status lc_gguf_set_u32(lc_gguf_writer *w, const char *key, uint32_t v);
lc_status lc_gguf_set_i32(lc_gguf_writer *w, const char *key, int32_t v);
lc_status lc_gguf_set_f32(lc_gguf_writer *w, const char *key, float v);
lc_status lc_gguf_set_bool(lc_gguf_writer *w, const char *key, bool v);
lc_status lc_gguf_set_str(lc_gguf_writer *w, const char *key, const char *s);
// lens may be NULL (strlen of each string).
lc_status lc_gguf_set_arr_str(lc_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              size_t n);
lc_status lc_gguf_set_arr_f32(lc_gguf_writer *w, const char *key, const float *v, size_t n);
lc_status lc_gguf_set_arr_i32(lc_gguf_writer *w, const char *key, const int32_t *v, size_t n);

// Declares the next tensor: ggml type (F32, F16 or BF16) and its row-major
// shape (shape[0] slowest), which the file stores reversed as ne.
lc_status lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape);
// Writes the header (all metadata and tensor infos); no metadata or tensor may be added after it.
lc_status lc_gguf_write_header(lc_gguf_writer *w);
// Data of the next declared tensor, exactly its size in bytes (little-endian).
lc_status lc_gguf_write_tensor_data(lc_gguf_writer *w, const void *data, size_t nbytes);
// Checks that every tensor was written, flushes, fsyncs and renames into place.
lc_status lc_gguf_writer_finish(lc_gguf_writer *w);

// The tokenizer as llama.cpp's convert_hf_to_gguf.py writes it:
// tokenizer.ggml.model ("llama" for SentencePiece-style BPE, "gpt2" for
// byte-level BPE), .pre (byte-level: named from the pre-tokenizer of
// tokenizer_json, which may be NULL: gpt-2, llama-bpe, qwen2, falcon, bloom,
// else "default"), .tokens, .scores (SPM: minus the rank of the first merge
// producing the piece, pieces no merge produces after them in id order,
// special and byte tokens 0), .token_type, .merges (gpt2 only),
// BOS/EOS/unknown/padding ids, add_bos/add_eos, and add_space_prefix false
// for a SentencePiece vocabulary whose normalizer or Metaspace prepends no
// "▁" (Gemma's). n_vocab is the model's vocabulary (ids beyond the
// tokenizer's become [PAD<id>], unused). bos/eos/pad: ids to write when the
// tokenizer has none (-1: none).
lc_status lc_gguf_add_vocab(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json,
                            int32_t n_vocab, int32_t bos, int32_t eos, int32_t pad);

#endif
