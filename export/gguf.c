// GGUF v3: reader (memory-mapped, every field checked against the file's
// size), streaming writer, and the merged-model export for llama.cpp
// (names, metadata and tokenizer as convert_hf_to_gguf.py writes them).
#include "export/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "export/export.h"
#include "model/safetensors.h"

#define GGUF_MAX_KEY 65535u    // the specification's limit on key length
#define GGUF_MAX_NAME 65535u   // tensor names (llama.cpp itself keeps them under 64)
#define GGUF_JSON_MAX (512u << 20)

// ---------------------------------------------------------------- type tables

static const size_t vtype_size[LC_GGUF_VTYPE_COUNT] = {
    [LC_GGUF_U8] = 1, [LC_GGUF_I8] = 1,  [LC_GGUF_U16] = 2, [LC_GGUF_I16] = 2, [LC_GGUF_U32] = 4,
    [LC_GGUF_I32] = 4, [LC_GGUF_F32] = 4, [LC_GGUF_BOOL] = 1, [LC_GGUF_STRING] = 0, [LC_GGUF_ARRAY] = 0,
    [LC_GGUF_U64] = 8, [LC_GGUF_I64] = 8, [LC_GGUF_F64] = 8,
};

static const char *const vtype_names[LC_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *lc_gguf_vtype_name(lc_gguf_vtype t) {
    return (unsigned)t < LC_GGUF_VTYPE_COUNT ? vtype_names[t] : "?";
}

typedef struct ggml_type_info {
    const char *name;
    uint32_t block;    // elements per block
    uint32_t size;     // bytes per block
} ggml_type_info;

// ggml's type ids (ggml.h); removed ids have no name.
static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},  [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82}, [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},      [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},      [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54}, [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};

static const ggml_type_info *ggml_type(uint32_t type) {
    if (type >= sizeof ggml_types / sizeof ggml_types[0] || !ggml_types[type].name) return NULL;
    return &ggml_types[type];
}

const char *lc_ggml_type_name(uint32_t type) {
    const ggml_type_info *t = ggml_type(type);
    return t ? t->name : NULL;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

// ---------------------------------------------------------------- reader

typedef struct rd {
    const unsigned char *p;
    size_t size, pos;
    const char *path;
} rd;

static lc_status rd_need(rd *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos)
        return lc_error(LC_STATUS_INPUT, "%s: truncated: %s at byte %zu needs %llu bytes, %zu remain", r->path, what,
                        r->pos, (unsigned long long)n, r->size - r->pos);
    return LC_STATUS_OK;
}

static lc_status rd_u32(rd *r, uint32_t *v, const char *what) {
    lc_status st = rd_need(r, 4, what);
    if (st) return st;
    *v = rd32(r->p + r->pos);
    r->pos += 4;
    return LC_STATUS_OK;
}

static lc_status rd_u64(rd *r, uint64_t *v, const char *what) {
    lc_status st = rd_need(r, 8, what);
    if (st) return st;
    *v = rd64(r->p + r->pos);
    r->pos += 8;
    return LC_STATUS_OK;
}

static lc_status rd_str(rd *r, lc_gguf_str *s, const char *what) {
    uint64_t n;
    lc_status st = rd_u64(r, &n, what);
    if (st) return st;
    if (n > r->size - r->pos)
        return lc_error(LC_STATUS_INPUT, "%s: %s at byte %zu has length %llu, past the end of the file (%zu bytes)",
                        r->path, what, r->pos - 8, (unsigned long long)n, r->size);
    s->s = (const char *)r->p + r->pos;
    s->len = (size_t)n;
    r->pos += (size_t)n;
    return LC_STATUS_OK;
}

// A NUL-terminated copy of a key or name: not empty, no NUL inside, at most max bytes.
static lc_status copy_name(const rd *r, const lc_gguf_str *s, size_t max, const char *what, char **out) {
    if (s->len == 0 || s->len > max || memchr(s->s, 0, s->len))
        return lc_error(LC_STATUS_INPUT, "%s: %s is empty, longer than %zu bytes or holds a NUL byte", r->path, what,
                        max);
    char *c = malloc(s->len + 1);
    if (!c) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", r->path);
    memcpy(c, s->s, s->len);
    c[s->len] = '\0';
    *out = c;
    return LC_STATUS_OK;
}

static lc_status read_kv(rd *r, lc_gguf_kv *kv) {
    lc_gguf_str key;
    lc_status st = rd_str(r, &key, "metadata key");
    if (st) return st;
    if ((st = copy_name(r, &key, GGUF_MAX_KEY, "a metadata key", &kv->key))) return st;
    uint32_t t;
    if ((st = rd_u32(r, &t, kv->key))) return st;
    if (t >= LC_GGUF_VTYPE_COUNT)
        return lc_error(LC_STATUS_INPUT, "%s: key %s has unknown value type %u", r->path, kv->key, t);
    kv->type = kv->item_type = (lc_gguf_vtype)t;
    kv->n = 1;
    if (t == LC_GGUF_ARRAY) {
        uint32_t it;
        uint64_t n;
        if ((st = rd_u32(r, &it, kv->key)) || (st = rd_u64(r, &n, kv->key))) return st;
        if (it >= LC_GGUF_VTYPE_COUNT || it == LC_GGUF_ARRAY)
            return lc_error(LC_STATUS_INPUT, "%s: key %s: array of unsupported item type %u", r->path, kv->key, it);
        kv->item_type = (lc_gguf_vtype)it;
        size_t min_item = it == LC_GGUF_STRING ? 8 : vtype_size[it];
        if (n > (r->size - r->pos) / min_item)
            return lc_error(LC_STATUS_INPUT, "%s: key %s: array of %llu %s items does not fit in the file", r->path,
                            kv->key, (unsigned long long)n, vtype_names[it]);
        kv->n = n;
    }
    kv->data = r->p + r->pos;
    if (kv->item_type == LC_GGUF_STRING) {
        if (kv->n) {
            kv->strs = malloc((size_t)kv->n * sizeof *kv->strs);
            if (!kv->strs) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory (key %s)", r->path, kv->key);
        }
        for (uint64_t i = 0; i < kv->n; i++)
            if ((st = rd_str(r, &kv->strs[i], kv->key))) return st;
        return LC_STATUS_OK;
    }
    uint64_t bytes = kv->n * vtype_size[kv->item_type]; // n was capped by the file size above
    if ((st = rd_need(r, bytes, kv->key))) return st;
    r->pos += (size_t)bytes;
    return LC_STATUS_OK;
}

static lc_status read_tensor_info(rd *r, lc_gguf_tensor *t, uint32_t alignment) {
    lc_gguf_str name;
    lc_status st = rd_str(r, &name, "tensor name");
    if (st) return st;
    if ((st = copy_name(r, &name, GGUF_MAX_NAME, "a tensor name", &t->name))) return st;
    uint32_t nd, type;
    if ((st = rd_u32(r, &nd, t->name))) return st;
    if (nd < 1 || nd > LC_GGUF_MAX_DIMS)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s has %u dimensions (1..%d)", r->path, t->name, nd,
                        LC_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t n = 1;
    for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims && (st = rd_u64(r, &v, t->name))) return st;
        if (v > (uint64_t)INT64_MAX || __builtin_mul_overflow(n, (int64_t)v, &n))
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s: dimension %d (%llu) is too large", r->path, t->name, d,
                            (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    t->n_elements = n;
    if ((st = rd_u32(r, &type, t->name)) || (st = rd_u64(r, &t->offset, t->name))) return st;
    const ggml_type_info *ti = ggml_type(type);
    if (!ti) return lc_error(LC_STATUS_INPUT, "%s: tensor %s has unknown ggml type %u", r->path, t->name, type);
    t->type = type;
    if (t->ne[0] % ti->block)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s: ne[0] = %lld is not a multiple of %s's block of %u", r->path,
                        t->name, (long long)t->ne[0], ti->name, ti->block);
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)(n / ti->block), (uint64_t)ti->size, &nbytes) || nbytes > r->size)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s (%lld elements of %s) is larger than the file", r->path,
                        t->name, (long long)n, ti->name);
    t->nbytes = (size_t)nbytes;
    if (t->offset % alignment)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s: offset %llu is not a multiple of the alignment %u", r->path,
                        t->name, (unsigned long long)t->offset, alignment);
    return LC_STATUS_OK;
}

static int cmp_cstr_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Finds a repeated name among n strings taken `stride` bytes apart (sorting pointers).
static const char *find_duplicate(const void *base, size_t n, size_t stride, lc_status *st, const char *path) {
    *st = LC_STATUS_OK;
    if (n < 2) return NULL;
    char **v = malloc(n * sizeof *v);
    if (!v) {
        *st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) v[i] = *(char *const *)((const char *)base + i * stride);
    qsort(v, n, sizeof *v, cmp_cstr_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    free(v);
    return dup;
}

static lc_status parse(lc_gguf_file *f) {
    rd r = {f->map.data, f->map.size, 0, f->path};
    lc_status st = rd_need(&r, 24, "header");
    if (st) return st;
    if (memcmp(r.p, "GGUF", 4)) return lc_error(LC_STATUS_INPUT, "%s: not a GGUF file (bad magic)", f->path);
    r.pos = 4;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    rd_u32(&r, &version, "version");
    if (version == 0x03000000u || version == 0x02000000u)
        return lc_error(LC_STATUS_INPUT, "%s: big-endian GGUF is not supported", f->path);
    if (version != 2 && version != 3)
        return lc_error(LC_STATUS_INPUT, "%s: unsupported GGUF version %u (2 or 3)", f->path, version);
    f->version = version;
    rd_u64(&r, &n_tensors, "tensor count");
    rd_u64(&r, &n_kv, "metadata count");
    size_t rest = r.size - r.pos;
    // Smallest possible entries: a KV is 8+1 (key) + 4 (type) + 1 (u8) bytes;
    // a tensor info 8+1 (name) + 4 + 8 (one dim) + 4 (type) + 8 (offset).
    if (n_kv > rest / 14 || n_tensors > rest / 33 || n_kv * 14 + n_tensors * 33 > rest)
        return lc_error(LC_STATUS_INPUT, "%s: header claims %llu metadata entries and %llu tensors, more than the file holds",
                        f->path, (unsigned long long)n_kv, (unsigned long long)n_tensors);
    if (n_kv && !(f->kvs = calloc((size_t)n_kv, sizeof *f->kvs)))
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
    if (n_tensors && !(f->tensors = calloc((size_t)n_tensors, sizeof *f->tensors)))
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);

    f->alignment = LC_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        st = read_kv(&r, &f->kvs[i]);
        f->n_kvs = (size_t)i + 1; // freed by close even when half-read
        if (st) return st;
    }
    const char *dup = find_duplicate(f->kvs, f->n_kvs, sizeof *f->kvs, &st, f->path);
    if (st) return st;
    if (dup) return lc_error(LC_STATUS_INPUT, "%s: duplicate metadata key %s", f->path, dup);
    const lc_gguf_kv *al = lc_gguf_find_kv(f, "general.alignment");
    if (al) {
        uint32_t a = al->type == LC_GGUF_U32 ? rd32(al->data) : 0;
        if (!a || (a & (a - 1)))
            return lc_error(LC_STATUS_INPUT, "%s: general.alignment must be a u32 power of two", f->path);
        f->alignment = a;
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        st = read_tensor_info(&r, &f->tensors[i], f->alignment);
        f->n_tensors = (size_t)i + 1;
        if (st) return st;
    }
    dup = find_duplicate(f->tensors, f->n_tensors, sizeof *f->tensors, &st, f->path);
    if (st) return st;
    if (dup) return lc_error(LC_STATUS_INPUT, "%s: duplicate tensor %s", f->path, dup);

    size_t pad = (f->alignment - r.pos % f->alignment) % f->alignment;
    f->data_offset = r.pos + pad; // may lie past the end when there is no tensor data
    for (size_t i = 0; i < f->n_tensors; i++) {
        lc_gguf_tensor *t = &f->tensors[i];
        if (t->offset > r.size || f->data_offset > r.size - t->offset ||
            t->nbytes > r.size - f->data_offset - t->offset)
            return lc_error(LC_STATUS_INPUT,
                            "%s: tensor %s: data at offset %llu (%zu bytes) lies past the end of the file (%zu bytes)",
                            f->path, t->name, (unsigned long long)t->offset, t->nbytes, r.size);
        t->data = r.p + f->data_offset + t->offset;
    }
    return LC_STATUS_OK;
}

lc_status lc_gguf_open(lc_gguf_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    lc_status st = lc_file_map_open(&f->map, path);
    if (!st) st = parse(f);
    if (st) lc_gguf_close(f);
    return st;
}

void lc_gguf_close(lc_gguf_file *f) {
    for (size_t i = 0; i < f->n_kvs; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].strs);
    }
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kvs);
    free(f->tensors);
    lc_file_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const lc_gguf_kv *lc_gguf_find_kv(const lc_gguf_file *f, const char *key) {
    for (size_t i = 0; i < f->n_kvs; i++)
        if (f->kvs[i].key && !strcmp(f->kvs[i].key, key)) return &f->kvs[i];
    return NULL;
}

const lc_gguf_tensor *lc_gguf_find_tensor(const lc_gguf_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && !strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

bool lc_gguf_kv_int(const lc_gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!kv || i >= kv->n) return false;
    size_t sz = vtype_size[kv->item_type];
    const unsigned char *p = kv->data + i * sz;
    switch (kv->item_type) {
    case LC_GGUF_U8: *out = p[0]; return true;
    case LC_GGUF_I8: *out = (int8_t)p[0]; return true;
    case LC_GGUF_BOOL: *out = p[0] != 0; return true;
    case LC_GGUF_U16: *out = rd16(p); return true;
    case LC_GGUF_I16: *out = (int16_t)rd16(p); return true;
    case LC_GGUF_U32: *out = rd32(p); return true;
    case LC_GGUF_I32: *out = (int32_t)rd32(p); return true;
    case LC_GGUF_I64: *out = (int64_t)rd64(p); return true;
    case LC_GGUF_U64: {
        uint64_t v = rd64(p);
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

bool lc_gguf_kv_float(const lc_gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || i >= kv->n) return false;
    const unsigned char *p = kv->data + i * vtype_size[kv->item_type];
    if (kv->item_type == LC_GGUF_F32) {
        uint32_t b = rd32(p);
        float v;
        memcpy(&v, &b, 4);
        *out = v;
        return true;
    }
    if (kv->item_type == LC_GGUF_F64) {
        uint64_t b = rd64(p);
        memcpy(out, &b, 8);
        return true;
    }
    int64_t v;
    if (kv->item_type == LC_GGUF_BOOL || !lc_gguf_kv_int(kv, i, &v)) return false;
    *out = (double)v;
    return true;
}

bool lc_gguf_kv_str(const lc_gguf_kv *kv, uint64_t i, lc_gguf_str *out) {
    if (!kv || kv->item_type != LC_GGUF_STRING || i >= kv->n) return false;
    *out = kv->strs[i];
    return true;
}

lc_status lc_gguf_tensor_to_f32(const lc_gguf_file *f, const lc_gguf_tensor *t, float *out) {
    const unsigned char *p = t->data;
    size_t n = (size_t)t->n_elements;
    switch (t->type) {
    case LC_GGML_TYPE_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t b = rd32(p + 4 * i);
            memcpy(&out[i], &b, 4);
        }
        return LC_STATUS_OK;
    case LC_GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) out[i] = lc_f16_to_f32(rd16(p + 2 * i));
        return LC_STATUS_OK;
    case LC_GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) out[i] = lc_bf16_to_f32(rd16(p + 2 * i));
        return LC_STATUS_OK;
    default:
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s is %s; only F32, F16 and BF16 convert to fp32", f->path,
                        t->name, lc_ggml_type_name(t->type));
    }
}

// ---------------------------------------------------------------- writer

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[LC_GGUF_MAX_DIMS];
    uint64_t offset, nbytes;
} wtensor;

struct lc_gguf_writer {
    char *path, *tmp;
    FILE *f;
    unsigned char *kv; // serialized KVs
    size_t kv_len, kv_cap, n_kv;
    char **keys;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    uint64_t data_size; // bytes of the data section declared so far
    uint64_t written;   // bytes of the data section written so far
    size_t next;        // next tensor to write
    bool header_done, finished, failed;
};

lc_status lc_gguf_writer_new(lc_gguf_writer **out, const char *path) {
    *out = NULL;
    lc_gguf_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path) + 5;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(n))) {
        if (w) free(w->path);
        free(w);
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    }
    snprintf(w->tmp, n, "%s.tmp", path);
    w->alignment = LC_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return LC_STATUS_OK;
}

void lc_gguf_writer_free(lc_gguf_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->header_done && !w->finished) remove(w->tmp);
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->kv);
    free(w->path);
    free(w->tmp);
    free(w);
}

static lc_status kv_put(lc_gguf_writer *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        unsigned char *b = realloc(w->kv, cap);
        if (!b) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory (metadata of %zu bytes)", w->path, cap);
        w->kv = b;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return LC_STATUS_OK;
}

static lc_status kv_u32(lc_gguf_writer *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    return kv_put(w, b, 4);
}

static lc_status kv_u64(lc_gguf_writer *w, uint64_t v) {
    lc_status st = kv_u32(w, (uint32_t)v);
    return st ? st : kv_u32(w, (uint32_t)(v >> 32));
}

static lc_status kv_str(lc_gguf_writer *w, const char *s, size_t n) {
    lc_status st = kv_u64(w, n);
    return st ? st : kv_put(w, s, n);
}

// Starts a KV: checks the writer state and the key, writes key and type.
static lc_status kv_begin(lc_gguf_writer *w, const char *key, lc_gguf_vtype type) {
    if (w->header_done) return lc_error(LC_STATUS_RUNTIME, "%s: metadata %s added after the header", w->path, key);
    size_t n = strlen(key);
    if (!n || n > GGUF_MAX_KEY) return lc_error(LC_STATUS_RUNTIME, "%s: bad metadata key \"%.60s\"", w->path, key);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return lc_error(LC_STATUS_RUNTIME, "%s: duplicate metadata key %s", w->path, key);
    char **keys = realloc(w->keys, (w->n_kv + 1) * sizeof *keys);
    if (!keys) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", w->path);
    w->keys = keys;
    if (!(keys[w->n_kv] = strdup(key))) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", w->path);
    w->n_kv++;
    lc_status st = kv_str(w, key, n);
    return st ? st : kv_u32(w, (uint32_t)type);
}

lc_status lc_gguf_set_u32(lc_gguf_writer *w, const char *key, uint32_t v) {
    if (!strcmp(key, "general.alignment")) {
        if (!v || (v & (v - 1)))
            return lc_error(LC_STATUS_RUNTIME, "%s: general.alignment %u is not a power of two", w->path, v);
        if (w->n_tensors) return lc_error(LC_STATUS_RUNTIME, "%s: general.alignment set after tensors", w->path);
        w->alignment = v;
    }
    lc_status st = kv_begin(w, key, LC_GGUF_U32);
    return st ? st : kv_u32(w, v);
}

lc_status lc_gguf_set_i32(lc_gguf_writer *w, const char *key, int32_t v) {
    lc_status st = kv_begin(w, key, LC_GGUF_I32);
    return st ? st : kv_u32(w, (uint32_t)v);
}

lc_status lc_gguf_set_f32(lc_gguf_writer *w, const char *key, float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    lc_status st = kv_begin(w, key, LC_GGUF_F32);
    return st ? st : kv_u32(w, b);
}

lc_status lc_gguf_set_bool(lc_gguf_writer *w, const char *key, bool v) {
    unsigned char b = v ? 1 : 0;
    lc_status st = kv_begin(w, key, LC_GGUF_BOOL);
    return st ? st : kv_put(w, &b, 1);
}

lc_status lc_gguf_set_str(lc_gguf_writer *w, const char *key, const char *s) {
    lc_status st = kv_begin(w, key, LC_GGUF_STRING);
    return st ? st : kv_str(w, s, strlen(s));
}

static lc_status arr_begin(lc_gguf_writer *w, const char *key, lc_gguf_vtype item, size_t n) {
    lc_status st = kv_begin(w, key, LC_GGUF_ARRAY);
    if (!st) st = kv_u32(w, (uint32_t)item);
    if (!st) st = kv_u64(w, n);
    return st;
}

lc_status lc_gguf_set_arr_str(lc_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              size_t n) {
    lc_status st = arr_begin(w, key, LC_GGUF_STRING, n);
    for (size_t i = 0; !st && i < n; i++) st = kv_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
    return st;
}

lc_status lc_gguf_set_arr_f32(lc_gguf_writer *w, const char *key, const float *v, size_t n) {
    lc_status st = arr_begin(w, key, LC_GGUF_F32, n);
    for (size_t i = 0; !st && i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        st = kv_u32(w, b);
    }
    return st;
}

lc_status lc_gguf_set_arr_i32(lc_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    lc_status st = arr_begin(w, key, LC_GGUF_I32, n);
    for (size_t i = 0; !st && i < n; i++) st = kv_u32(w, (uint32_t)v[i]);
    return st;
}

lc_status lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape) {
    if (w->header_done) return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s added after the header", w->path, name);
    if (type != LC_GGML_TYPE_F32 && type != LC_GGML_TYPE_F16 && type != LC_GGML_TYPE_BF16)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s: cannot write ggml type %u", w->path, name, type);
    if (n_dims < 1 || n_dims > LC_GGUF_MAX_DIMS || !*name || strlen(name) > GGUF_MAX_NAME)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor %.60s: bad name or %d dimensions", w->path, name, n_dims);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return lc_error(LC_STATUS_RUNTIME, "%s: duplicate tensor %s", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", w->path);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t n = 1;
    for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? shape[n_dims - 1 - d] : 1;
        if (t.ne[d] < 0 || __builtin_mul_overflow(n, (uint64_t)t.ne[d], &n))
            return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s: bad shape", w->path, name);
    }
    t.nbytes = n * (type == LC_GGML_TYPE_F32 ? 4 : 2);
    t.offset = (w->data_size + w->alignment - 1) / w->alignment * w->alignment;
    if (!(t.name = strdup(name))) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", w->path);
    w->data_size = t.offset + t.nbytes;
    w->tensors[w->n_tensors++] = t;
    return LC_STATUS_OK;
}

static lc_status write_fail(lc_gguf_writer *w) {
    int err = errno;
    w->failed = true;
    return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", w->tmp, strerror(err ? err : EIO));
}

static bool put_zeros(FILE *f, uint64_t n) {
    static const unsigned char zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k) return false;
        n -= k;
    }
    return true;
}

lc_status lc_gguf_write_header(lc_gguf_writer *w) {
    if (w->header_done) return lc_error(LC_STATUS_RUNTIME, "%s: header written twice", w->path);
    // Tensor infos are serialized after the KVs, into the same buffer.
    size_t kv_end = w->kv_len;
    lc_status st = LC_STATUS_OK;
    for (size_t i = 0; !st && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        st = kv_str(w, t->name, strlen(t->name));
        if (!st) st = kv_u32(w, (uint32_t)t->n_dims);
        for (int d = 0; !st && d < t->n_dims; d++) st = kv_u64(w, (uint64_t)t->ne[d]);
        if (!st) st = kv_u32(w, t->type);
        if (!st) st = kv_u64(w, t->offset);
    }
    if (st) return st;
    unsigned char head[24];
    memcpy(head, "GGUF", 4);
    uint64_t fields[3] = {3, w->n_tensors, w->n_kv};
    for (int i = 0; i < 4; i++) head[4 + i] = (unsigned char)(fields[0] >> (8 * i));
    for (int i = 0; i < 8; i++) head[8 + i] = (unsigned char)(fields[1] >> (8 * i));
    for (int i = 0; i < 8; i++) head[16 + i] = (unsigned char)(fields[2] >> (8 * i));
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", w->tmp, strerror(errno));
    w->header_done = true;
    uint64_t len = 24 + w->kv_len;
    uint64_t pad = (w->alignment - len % w->alignment) % w->alignment;
    errno = 0;
    if (fwrite(head, 1, 24, w->f) != 24 || fwrite(w->kv, 1, w->kv_len, w->f) != w->kv_len || !put_zeros(w->f, pad))
        return write_fail(w);
    w->kv_len = kv_end;
    return LC_STATUS_OK;
}

lc_status lc_gguf_write_tensor_data(lc_gguf_writer *w, const void *data, size_t nbytes) {
    if (!w->header_done || w->failed || w->finished || w->next >= w->n_tensors)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor data written out of order", w->path);
    const wtensor *t = &w->tensors[w->next];
    if (nbytes != t->nbytes)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s: %zu bytes given, %llu declared", w->path, t->name, nbytes,
                        (unsigned long long)t->nbytes);
    errno = 0;
    if (!put_zeros(w->f, t->offset - w->written) || fwrite(data, 1, nbytes, w->f) != nbytes) return write_fail(w);
    w->written = t->offset + t->nbytes;
    w->next++;
    return LC_STATUS_OK;
}

// Makes the rename durable: fsync of the folder holding path (best effort;
// some file systems cannot sync folders, and the file itself is synced).
static void sync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

lc_status lc_gguf_writer_finish(lc_gguf_writer *w) {
    if (!w->header_done) {
        lc_status st = lc_gguf_write_header(w);
        if (st) return st;
    }
    if (w->failed || w->next != w->n_tensors)
        return lc_error(LC_STATUS_RUNTIME, "%s: %zu of %zu tensors written", w->path, w->next, w->n_tensors);
    // Pad the last tensor as gguf-py does, so the file ends aligned.
    uint64_t pad = (w->alignment - w->written % w->alignment) % w->alignment;
    errno = 0;
    bool ok = put_zeros(w->f, pad) && fflush(w->f) == 0 && fsync(fileno(w->f)) == 0;
    int err = errno;
    ok = fclose(w->f) == 0 && ok;
    w->f = NULL;
    if (!ok || rename(w->tmp, w->path) != 0) {
        if (!err) err = errno ? errno : EIO;
        w->failed = true;
        remove(w->tmp);
        return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", w->path, strerror(err));
    }
    w->finished = true;
    sync_parent_dir(w->path);
    return LC_STATUS_OK;
}

// ---------------------------------------------------------------- tokenizer

// Pre-tokenizer regexes as Hugging Face tokenizer.json files hold them, and
// the names llama.cpp's convert_hf_to_gguf.py gives them (tokenizer.ggml.pre).
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct pre_scan {
    bool bytelevel_regex, punctuation, digits, other;
    const char *named; // a Split regex with a known name
    bool falcon_digits;
    int n_split;
} pre_scan;

static void scan_pretok(const cJSON *p, pre_scan *s) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type)) return;
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) scan_pretok(e, s);
    } else if (!strcmp(t, "ByteLevel")) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if (!r || cJSON_IsTrue(r)) s->bytelevel_regex = true;
    } else if (!strcmp(t, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        s->n_split++;
        if (!cJSON_IsString(re)) return;
        const char *v = re->valuestring;
        if (!strcmp(v, GPT2_REGEX)) s->named = "gpt-2";
        else if (!strcmp(v, LLAMA3_REGEX)) s->named = "llama-bpe";
        else if (!strcmp(v, QWEN2_REGEX)) s->named = "qwen2";
        else if (!strcmp(v, "[0-9][0-9][0-9]")) s->falcon_digits = true;
    } else if (!strcmp(t, "Punctuation")) {
        s->punctuation = true;
    } else if (!strcmp(t, "Digits")) {
        s->digits = true;
    } else {
        s->other = true;
    }
}

// tokenizer.ggml.pre for a byte-level tokenizer.json ("default" when unknown).
static const char *pre_name(const char *tokenizer_json) {
    static const char *dflt = "default";
    if (!tokenizer_json) return dflt;
    cJSON *root = NULL;
    if (lc_json_load_file(tokenizer_json, GGUF_JSON_MAX, &root)) return dflt;
    pre_scan s = {0};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (cJSON_IsObject(p)) scan_pretok(p, &s);
    cJSON_Delete(root);
    if (s.named && s.n_split == 1 && !s.punctuation && !s.digits && !s.other) return s.named;
    if (s.punctuation && s.bytelevel_regex && s.digits && s.falcon_digits && !s.other) return "falcon";
    if (s.bytelevel_regex && !s.n_split && !s.punctuation && !s.digits && !s.other) return "gpt-2";
    return dflt;
}

// llama.cpp's token types (llama_token_type / gguf TokenType).
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

lc_status lc_gguf_add_vocab(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json, int32_t n_vocab,
                            int32_t bos, int32_t eos, int32_t pad) {
    const char *src = tokenizer_json ? tokenizer_json : "tokenizer";
    int32_t n_tok = lc_tokenizer_vocab_size(tok);
    if (n_vocab <= 0 || n_tok > n_vocab)
        return lc_error(LC_STATUS_INPUT, "%s: the tokenizer has %d tokens, more than the model's vocab_size %d", src,
                        n_tok, n_vocab);
    bool spm = lc_tokenizer_get_style(tok) == LC_TOKENIZER_SENTENCEPIECE;
    size_t n = (size_t)n_vocab;
    const char **strs = calloc(n, sizeof *strs);
    size_t *lens = calloc(n, sizeof *lens);
    char **owned = calloc(n, sizeof *owned);
    int32_t *types = calloc(n, sizeof *types);
    float *scores = calloc(n, sizeof *scores);
    int32_t *order = calloc(n, sizeof *order);
    int32_t *first_rank = calloc(n, sizeof *first_rank);
    lc_tokenizer_merge *merges = NULL;
    size_t n_merges = 0;
    const char **mstr = NULL;
    char *marena = NULL;
    lc_status st = LC_STATUS_OK;
    if (!strs || !lens || !owned || !types || !scores || !order || !first_rank) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
        goto done;
    }
    for (int32_t id = 0; id < n_vocab; id++) {
        lc_token_kind kind = lc_tokenizer_token_kind(tok, id);
        size_t len = 0;
        const char *text = kind == LC_TOKEN_NONE ? NULL : lc_tokenizer_token_text(tok, id, &len);
        if (!text) { // ids the tokenizer does not fill, as convert_hf_to_gguf.py pads them
            char buf[32];
            int k = snprintf(buf, sizeof buf, "[PAD%d]", id);
            if (!(owned[id] = strdup(buf))) {
                st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
                goto done;
            }
            text = owned[id];
            len = (size_t)k;
            kind = LC_TOKEN_NONE;
        }
        strs[id] = text;
        lens[id] = len;
        types[id] = kind == LC_TOKEN_NORMAL    ? TT_NORMAL
                    : kind == LC_TOKEN_UNKNOWN ? TT_UNKNOWN
                    : kind == LC_TOKEN_CONTROL ? TT_CONTROL
                    : kind == LC_TOKEN_ADDED   ? TT_USER_DEFINED
                    : kind == LC_TOKEN_BYTE    ? TT_BYTE
                                               : TT_UNUSED;
        first_rank[id] = -1;
    }
    if ((st = lc_tokenizer_merges(tok, &merges, &n_merges))) goto done;

    if ((st = lc_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2"))) goto done;
    if ((st = lc_gguf_set_str(w, "tokenizer.ggml.pre", spm ? "default" : pre_name(tokenizer_json)))) goto done;
    if ((st = lc_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n))) goto done;
    if (spm) {
        // llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
        // concatenation has the highest score. Scores that fall with the rank
        // of the merge producing each piece make it merge in the order of
        // tokenizer.json's merges; pieces no merge produces follow in id
        // order. For vocabularies converted from SentencePiece this gives
        // back the model's own scores, -(position among normal pieces).
        for (size_t i = 0; i < n_merges; i++) {
            int32_t r = merges[i].result;
            if (r >= 0 && r < n_vocab && types[r] == TT_NORMAL && first_rank[r] < 0) first_rank[r] = merges[i].rank;
        }
        size_t k = 0;
        for (size_t i = 0; i < n_merges; i++) { // merges are sorted by rank
            int32_t r = merges[i].result;
            if (r >= 0 && r < n_vocab && types[r] == TT_NORMAL && first_rank[r] == merges[i].rank) order[k++] = r;
        }
        for (int32_t id = 0; id < n_vocab; id++)
            if (types[id] == TT_NORMAL && first_rank[id] < 0) order[k++] = id;
        for (size_t i = 0; i < k; i++) scores[order[i]] = -(float)i;
        if ((st = lc_gguf_set_arr_f32(w, "tokenizer.ggml.scores", scores, n))) goto done;
    }
    if ((st = lc_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, n))) goto done;
    if (!spm && n_merges) {
        size_t total = 0;
        for (size_t i = 0; i < n_merges; i++) {
            const char *a = lc_tokenizer_piece(tok, merges[i].left), *b = lc_tokenizer_piece(tok, merges[i].right);
            total += (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + 2;
        }
        mstr = malloc(n_merges * sizeof *mstr);
        marena = malloc(total);
        if (!mstr || !marena) {
            st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
            goto done;
        }
        char *p = marena;
        for (size_t i = 0; i < n_merges; i++) {
            const char *a = lc_tokenizer_piece(tok, merges[i].left), *b = lc_tokenizer_piece(tok, merges[i].right);
            mstr[i] = p;
            p += sprintf(p, "%s %s", a ? a : "", b ? b : "") + 1;
        }
        if ((st = lc_gguf_set_arr_str(w, "tokenizer.ggml.merges", mstr, NULL, n_merges))) goto done;
    }
    int32_t tb = lc_tokenizer_bos(tok), te = lc_tokenizer_eos(tok), tu = lc_tokenizer_unk(tok);
    if (tb < 0) tb = bos;
    if (te < 0) te = eos;
    if (tb >= 0 && tb < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tb))) goto done;
    if (te >= 0 && te < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)te))) goto done;
    if (tu >= 0 && tu < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tu)))
        goto done;
    if (pad >= 0 && pad < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad)))
        goto done;
    if ((st = lc_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", lc_tokenizer_adds_bos(tok)))) goto done;
    st = lc_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", lc_tokenizer_adds_eos(tok));
done:
    if (owned)
        for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(strs);
    free(lens);
    free(types);
    free(scores);
    free(order);
    free(first_rank);
    free(merges);
    free(mstr);
    free(marena);
    return st;
}

// ---------------------------------------------------------------- export

// Hugging Face keeps q/k rows of each head in rotate-half order (the two
// halves of the head are the rotated pairs); llama.cpp's llama architecture
// rotates adjacent pairs. convert_hf_to_gguf.py's permute moves row
// s*D/2 + j of a head to row 2j + s (s = 0, 1; j < D/2), for each of `rows`
// values of the head. src and dst are [n_heads * D, cols].
static void permute_rows(float *dst, const float *src, int n_heads, int D, int cols) {
    for (int h = 0; h < n_heads; h++)
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < D / 2; j++)
                memcpy(dst + ((size_t)h * D + 2 * j + s) * cols, src + ((size_t)h * D + s * (D / 2) + j) * cols,
                       (size_t)cols * sizeof *dst);
}

static const char *const gguf_linear_names[LC_LINEAR_KIND_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

enum job_kind { JOB_EMBED, JOB_FINAL_NORM, JOB_OUTPUT, JOB_ROPE_FREQS, JOB_ATTN_NORM, JOB_FFN_NORM, JOB_LINEAR, JOB_BIAS };

typedef struct job {
    enum job_kind kind;
    int layer;
    lc_linear_kind lin;
} job;

typedef struct exporter {
    const lc_model *m;
    const lc_lora *lora;
    const char *out_path;
    lc_dtype dtype;
    bool permute; // llama architecture: q/k rows to the interleaved order
    float *buf, *tmp;
    uint16_t *half;
} exporter;

static void job_name(const job *j, char *name, size_t cap) {
    switch (j->kind) {
    case JOB_EMBED: snprintf(name, cap, "token_embd.weight"); break;
    case JOB_FINAL_NORM: snprintf(name, cap, "output_norm.weight"); break;
    case JOB_OUTPUT: snprintf(name, cap, "output.weight"); break;
    case JOB_ROPE_FREQS: snprintf(name, cap, "rope_freqs.weight"); break;
    case JOB_ATTN_NORM: snprintf(name, cap, "blk.%d.attn_norm.weight", j->layer); break;
    case JOB_FFN_NORM: snprintf(name, cap, "blk.%d.ffn_norm.weight", j->layer); break;
    case JOB_LINEAR: snprintf(name, cap, "blk.%d.%s.weight", j->layer, gguf_linear_names[j->lin]); break;
    case JOB_BIAS: snprintf(name, cap, "blk.%d.%s.bias", j->layer, gguf_linear_names[j->lin]); break;
    }
}

// Row-major shape of a job's tensor; returns n_dims.
static int job_shape(const exporter *e, const job *j, int64_t shape[2]) {
    const lc_model_config *c = &e->m->cfg;
    switch (j->kind) {
    case JOB_EMBED:
    case JOB_OUTPUT:
        shape[0] = c->vocab_size;
        shape[1] = c->hidden_size;
        return 2;
    case JOB_ROPE_FREQS: shape[0] = c->head_dim / 2; return 1;
    case JOB_LINEAR:
        shape[0] = e->m->layers[j->layer].lin[j->lin].out;
        shape[1] = e->m->layers[j->layer].lin[j->lin].in;
        return 2;
    case JOB_BIAS: shape[0] = e->m->layers[j->layer].lin[j->lin].out; return 1;
    default: shape[0] = c->hidden_size; return 1;
    }
}

// llama3 rope scaling as convert_hf_to_gguf.py writes it: a factor per
// frequency that llama.cpp divides the frequency by.
static void llama3_rope_factors(const lc_model_config *c, float *out) {
    int D = c->head_dim;
    double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double old_ctx = c->rope_original_max_pos;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (int i = 0; i < D / 2; i++) {
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
        double wavelen = 2 * M_PI / freq;
        double f;
        if (wavelen < hi_wavelen) f = 1;
        else if (wavelen > lo_wavelen) f = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

static uint32_t job_type(const exporter *e, int n_dims) {
    if (n_dims < 2 || e->dtype == LC_DTYPE_F32) return LC_GGML_TYPE_F32;
    return e->dtype == LC_DTYPE_F16 ? LC_GGML_TYPE_F16 : LC_GGML_TYPE_BF16;
}

static lc_status write_job(exporter *e, lc_gguf_writer *w, const job *j) {
    const lc_model *m = e->m;
    const lc_model_config *c = &m->cfg;
    int64_t shape[2];
    int nd = job_shape(e, j, shape);
    size_t n = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
    const float *src = e->buf;
    switch (j->kind) {
    case JOB_EMBED: src = m->embed; break;
    case JOB_OUTPUT: src = m->lm_head; break;
    case JOB_FINAL_NORM: src = m->final_norm; break;
    case JOB_ATTN_NORM: src = m->layers[j->layer].attn_norm; break;
    case JOB_FFN_NORM: src = m->layers[j->layer].mlp_norm; break;
    case JOB_ROPE_FREQS: llama3_rope_factors(c, e->buf); break;
    case JOB_LINEAR:
    case JOB_BIAS: {
        const lc_linear *lin = &m->layers[j->layer].lin[j->lin];
        int cols = j->kind == JOB_LINEAR ? lin->in : 1;
        if (j->kind == JOB_LINEAR) lc_export_merge_linear(e->buf, m, e->lora, j->layer, j->lin);
        else memcpy(e->buf, lin->bias, n * sizeof *e->buf);
        if (e->permute && (j->lin == LC_LINEAR_KIND_Q || j->lin == LC_LINEAR_KIND_K)) {
            int heads = j->lin == LC_LINEAR_KIND_Q ? c->n_heads : c->n_kv_heads;
            permute_rows(e->tmp, e->buf, heads, lin->out / heads, cols);
            src = e->tmp;
        }
        break;
    }
    }
    uint32_t type = job_type(e, nd);
    if (type == LC_GGML_TYPE_F32) return lc_gguf_write_tensor_data(w, src, n * sizeof(float));
    for (size_t i = 0; i < n; i++) e->half[i] = type == LC_GGML_TYPE_F16 ? lc_f32_to_f16(src[i]) : lc_f32_to_bf16(src[i]);
    return lc_gguf_write_tensor_data(w, e->half, n * sizeof(uint16_t));
}

// general.name: the model folder's last component.
static void model_name(const char *model_dir, char *out, size_t cap) {
    const char *d = model_dir && *model_dir ? model_dir : "model";
    size_t len = strlen(d);
    while (len > 1 && d[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && d[start - 1] != '/') start--;
    if (len - start == 0 || (len - start == 1 && d[start] == '.')) {
        snprintf(out, cap, "model");
        return;
    }
    snprintf(out, cap, "%.*s", (int)(len - start), d + start);
}

// Optional extras from tokenizer_config.json: the pad token id and the chat template.
static lc_status read_tokenizer_config(const char *path, const lc_tokenizer *tok, int32_t *pad, char **chat_template) {
    *pad = -1;
    *chat_template = NULL;
    if (!lc_file_exists(path)) return LC_STATUS_OK;
    cJSON *root;
    lc_status st = lc_json_load_file(path, GGUF_JSON_MAX, &root);
    if (st) return st;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pad_token");
    if (cJSON_IsObject(p)) p = cJSON_GetObjectItemCaseSensitive(p, "content");
    if (cJSON_IsString(p)) *pad = lc_tokenizer_find(tok, p->valuestring);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(t) && !(*chat_template = strdup(t->valuestring)))
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    cJSON_Delete(root);
    return st;
}

static lc_status export_metadata(lc_gguf_writer *w, const char *model_dir, const lc_model *m, const lc_tokenizer *tok,
                                 lc_dtype dtype, const char *arch) {
    const lc_model_config *c = &m->cfg;
    char key[128], name[256], path[4096];
    lc_status st;
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    model_name(model_dir, name, sizeof name);
    uint32_t file_type = dtype == LC_DTYPE_F32   ? LC_GGUF_FILE_TYPE_ALL_F32
                         : dtype == LC_DTYPE_F16 ? LC_GGUF_FILE_TYPE_MOSTLY_F16
                                                 : LC_GGUF_FILE_TYPE_MOSTLY_BF16;
    if ((st = lc_gguf_set_str(w, "general.architecture", arch))) return st;
    if ((st = lc_gguf_set_str(w, "general.type", "model"))) return st;
    if ((st = lc_gguf_set_str(w, "general.name", name))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads))) return st;
    if ((st = lc_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta))) return st;
    if ((st = lc_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_norm_eps))) return st;
    if (c->head_dim * c->n_heads != c->hidden_size) {
        if ((st = lc_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim))) return st;
    }
    if ((st = lc_gguf_set_u32(w, "general.file_type", file_type))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim))) return st;
    if (c->rope_scaling == LC_ROPE_SCALING_LINEAR) {
        if ((st = lc_gguf_set_str(w, KEY("rope.scaling.type"), "linear"))) return st;
        if ((st = lc_gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor))) return st;
    }
#undef KEY

    int32_t pad;
    char *chat_template = NULL;
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer_config.json"))) return st;
    if ((st = read_tokenizer_config(path, tok, &pad, &chat_template))) return st;
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer.json"))) goto out;
    if ((st = lc_gguf_add_vocab(w, tok, path, c->vocab_size, c->bos_token_id, c->eos_token_id, pad))) goto out;
    if (chat_template && (st = lc_gguf_set_str(w, "tokenizer.chat_template", chat_template))) goto out;
    st = lc_gguf_set_u32(w, "general.quantization_version", 2);
out:
    free(chat_template);
    return st;
}

lc_status lc_export_gguf(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         const lc_tokenizer *tok, lc_dtype dtype) {
    const lc_model_config *c = &m->cfg;
    if (dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_F16 && dtype != LC_DTYPE_BF16)
        return lc_error(LC_STATUS_USAGE, "%s: GGUF export writes f32, f16 or bf16", out_path);
    const char *arch = c->arch == LC_ARCH_QWEN2 ? "qwen2" : "llama"; // mistral is llama to llama.cpp
    lc_tokenizer *own_tok = NULL;
    lc_status st = LC_STATUS_OK;
    if (!tok) {
        char tj[4096], tc[4096];
        if ((st = lc_path_join(tj, sizeof tj, model_dir, "tokenizer.json")) ||
            (st = lc_path_join(tc, sizeof tc, model_dir, "tokenizer_config.json")) ||
            (st = lc_tokenizer_load(&own_tok, tj, tc)))
            return st;
        tok = own_tok;
    }

    // The tensors, in the order llama.cpp's converter writes a Llama.
    int L = c->n_layers;
    size_t n_jobs = 0, cap_jobs = 4 + (size_t)L * (2 + 2 * LC_LINEAR_KIND_COUNT);
    job *jobs = malloc(cap_jobs * sizeof *jobs);
    lc_gguf_writer *w = NULL;
    exporter e = {.m = m, .lora = lora, .out_path = out_path, .dtype = dtype, .permute = c->arch != LC_ARCH_QWEN2};
    if (!jobs) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", out_path);
        goto done;
    }
    bool tied = c->tie_word_embeddings || m->lm_head == m->embed;
    jobs[n_jobs++] = (job){JOB_EMBED, 0, 0};
    jobs[n_jobs++] = (job){JOB_FINAL_NORM, 0, 0};
    if (!tied) jobs[n_jobs++] = (job){JOB_OUTPUT, 0, 0};
    if (c->rope_scaling == LC_ROPE_SCALING_LLAMA3) jobs[n_jobs++] = (job){JOB_ROPE_FREQS, 0, 0};
    size_t max_lin = 0;
    for (int l = 0; l < L; l++) {
        jobs[n_jobs++] = (job){JOB_ATTN_NORM, l, 0};
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *lin = &m->layers[l].lin[k];
            if (k == LC_LINEAR_KIND_GATE) jobs[n_jobs++] = (job){JOB_FFN_NORM, l, 0};
            jobs[n_jobs++] = (job){JOB_LINEAR, l, (lc_linear_kind)k};
            if (lin->bias) jobs[n_jobs++] = (job){JOB_BIAS, l, (lc_linear_kind)k};
            if ((size_t)lin->out * (size_t)lin->in > max_lin) max_lin = (size_t)lin->out * (size_t)lin->in;
        }
    }
    size_t max_all = (size_t)c->vocab_size * (size_t)c->hidden_size;
    if (max_lin > max_all) max_all = max_lin;
    if ((size_t)c->head_dim > max_all) max_all = (size_t)c->head_dim;
    e.buf = malloc(max_all * sizeof *e.buf);
    e.tmp = malloc(max_all * sizeof *e.tmp);
    e.half = dtype == LC_DTYPE_F32 ? NULL : malloc(max_all * sizeof *e.half);
    if (!e.buf || !e.tmp || (dtype != LC_DTYPE_F32 && !e.half)) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory (%zu-element buffers)", out_path, max_all);
        goto done;
    }

    if ((st = lc_gguf_writer_new(&w, out_path))) goto done;
    if ((st = export_metadata(w, model_dir, m, tok, dtype, arch))) goto done;
    for (size_t i = 0; i < n_jobs; i++) {
        char name[96];
        int64_t shape[2];
        job_name(&jobs[i], name, sizeof name);
        int nd = job_shape(&e, &jobs[i], shape);
        if ((st = lc_gguf_add_tensor(w, name, job_type(&e, nd), nd, shape))) goto done;
    }
    if ((st = lc_gguf_write_header(w))) goto done;
    for (size_t i = 0; i < n_jobs; i++)
        if ((st = write_job(&e, w, &jobs[i]))) goto done;
    st = lc_gguf_writer_finish(w);
done:
    lc_gguf_writer_free(w);
    free(jobs);
    free(e.buf);
    free(e.tmp);
    free(e.half);
    lc_tokenizer_free(own_tok);
    return st;
}
