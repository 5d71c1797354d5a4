// GGUF v3 reader: memory-mapped, every field checked against the file's size.
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf_internal.h"
#include "autograd/weight.h"

// ---------------------------------------------------------------- type tables

static const size_t vtype_size[LC_GGUF_VTYPE_COUNT] = {
    [LC_GGUF_U8] = 1, [LC_GGUF_I8] = 1,  [LC_GGUF_U16] = 2, [LC_GGUF_I16] = 2, [LC_GGUF_U32] = 4,
    [LC_GGUF_I32] = 4, [LC_GGUF_F32] = 4, [LC_GGUF_BOOL] = 1, [LC_GGUF_STRING] = 0, [LC_GGUF_ARRAY] = 0,
    [LC_GGUF_U64] = 8, [LC_GGUF_I64] = 8, [LC_GGUF_F64] = 8,
};

static const char *const vtype_names[LC_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

size_t lc_gguf_vtype_size(lc_gguf_vtype t) { return (unsigned)t < LC_GGUF_VTYPE_COUNT ? vtype_size[t] : 0; }

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
    bool control = false; // a name printed in a one-line error must stay one line
    for (size_t i = 0; i < s->len && s->len <= max && !control; i++)
        control = (unsigned char)s->s[i] < 0x20 || s->s[i] == 0x7f;
    if (s->len == 0 || s->len > max || control)
        return lc_error(LC_STATUS_INPUT, "%s: %s is empty, longer than %zu bytes or holds a control byte", r->path, what,
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
        if (v == 0)
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s: dimension %d is 0", r->path, t->name, d);
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
        // In file order and not overlapping, as llama.cpp's reader requires.
        const lc_gguf_tensor *prev = i ? &f->tensors[i - 1] : NULL;
        if (prev && t->offset < prev->offset + prev->nbytes)
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s: data at offset %llu overlaps or precedes tensor %s's",
                            f->path, t->name, (unsigned long long)t->offset, prev->name);
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

void lc_gguf_str_print(char *out, size_t cap, lc_gguf_str s) {
    size_t n = 0;
    for (size_t i = 0; i < s.len && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s.s[i];
        out[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

lc_status lc_gguf_tensor_to_f32(const lc_gguf_file *f, const lc_gguf_tensor *t, float *out) {
    lc_wtype wt;
    if (!lc_wtype_from_ggml(t->type, &wt))
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s is %s, which lora.c cannot convert to fp32", f->path, t->name,
                        lc_ggml_type_name(t->type));
    int64_t cols = t->ne[0], rows = t->n_elements / cols;
    size_t row_bytes = lc_wtype_row_bytes(wt, cols);
    for (int64_t r = 0; r < rows; r++) lc_wtype_dequant_row(out + r * cols, wt, t->data + (size_t)r * row_bytes, cols);
    return LC_STATUS_OK;
}
