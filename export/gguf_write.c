// GGUF v3 streaming writer: metadata and tensor infos first, then each
// tensor's data in order, into a temporary file renamed when complete.
#include "export/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "autograd/weight.h"
#include "model/gguf_internal.h"

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[LC_GGUF_MAX_DIMS];
    uint64_t offset, nbytes;
} wtensor;

struct lc_gguf_writer {
    char *path, *tmp;
    lc_dir_made made; // the folders made for the file, removed again if it is not finished
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
    uint64_t part;      // bytes of it written so far by lc_gguf_write_tensor_part
    bool header_done, finished, failed;
};

lc_status lc_gguf_writer_new(lc_gguf_writer **out, const char *path) {
    *out = NULL;
    lc_gguf_writer *w = calloc(1, sizeof *w);
    lc_status st = lc_file_check_replaceable(path);
    if (st) {
        free(w);
        return st;
    }
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
    if (!w->finished) lc_dir_remove_made(&w->made);
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

lc_status lc_gguf_copy_kv(lc_gguf_writer *w, const lc_gguf_kv *kv) {
    int64_t v;
    if (!strcmp(kv->key, "general.alignment") && kv->type == LC_GGUF_U32 && lc_gguf_kv_int(kv, 0, &v))
        return lc_gguf_set_u32(w, kv->key, (uint32_t)v); // changes the data alignment too
    lc_status st = kv->type == LC_GGUF_ARRAY ? arr_begin(w, kv->key, kv->item_type, (size_t)kv->n)
                                             : kv_begin(w, kv->key, kv->type);
    if (st) return st;
    if (kv->item_type == LC_GGUF_STRING) {
        for (uint64_t i = 0; !st && i < kv->n; i++) st = kv_str(w, kv->strs[i].s, kv->strs[i].len);
        return st;
    }
    return kv_put(w, kv->data, (size_t)kv->n * lc_gguf_vtype_size(kv->item_type)); // little-endian as read
}

lc_status lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape) {
    if (w->header_done) return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s added after the header", w->path, name);
    lc_wtype wt;
    if (!lc_wtype_from_ggml(type, &wt))
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
    if (t.ne[0] % lc_wtype_block(wt))
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s: %lld columns are not a multiple of %s's block", w->path, name,
                        (long long)t.ne[0], lc_wtype_name(wt));
    t.nbytes = t.ne[0] ? (uint64_t)lc_wtype_row_bytes(wt, t.ne[0]) * (n / (uint64_t)t.ne[0]) : 0;
    t.offset = (w->data_size + w->alignment - 1) / w->alignment * w->alignment;
    if (!(t.name = strdup(name))) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", w->path);
    w->data_size = t.offset + t.nbytes;
    w->tensors[w->n_tensors++] = t;
    return LC_STATUS_OK;
}

static lc_status write_fail(lc_gguf_writer *w) {
    int err = errno;
    w->failed = true;
    return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", w->path, strerror(err ? err : EIO));
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
    // Missing folders are made, as the folder formats do (mkdir -p).
    char dir[4096];
    lc_status dst = lc_path_dirname(dir, sizeof dir, w->path);
    if (!dst) dst = lc_dir_create_made(dir, &w->made);
    if (dst) return dst;
    w->f = fopen(w->tmp, "wb");
    // Messages name the file asked for, not the temporary one written first.
    if (!w->f) return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", w->path, strerror(errno));
    w->header_done = true;
    uint64_t len = 24 + w->kv_len;
    uint64_t pad = (w->alignment - len % w->alignment) % w->alignment;
    errno = 0;
    if (fwrite(head, 1, 24, w->f) != 24 || fwrite(w->kv, 1, w->kv_len, w->f) != w->kv_len || !put_zeros(w->f, pad))
        return write_fail(w);
    w->kv_len = kv_end;
    return LC_STATUS_OK;
}

lc_status lc_gguf_write_tensor_part(lc_gguf_writer *w, const void *data, size_t nbytes) {
    if (!w->header_done || w->failed || w->finished || w->next >= w->n_tensors)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor data written out of order", w->path);
    const wtensor *t = &w->tensors[w->next];
    if (nbytes > t->nbytes - w->part)
        return lc_error(LC_STATUS_RUNTIME, "%s: tensor %s: more than the %llu bytes declared", w->path, t->name,
                        (unsigned long long)t->nbytes);
    errno = 0;
    if ((w->part == 0 && !put_zeros(w->f, t->offset - w->written)) || fwrite(data, 1, nbytes, w->f) != nbytes)
        return write_fail(w);
    if ((w->part += nbytes) == t->nbytes) {
        w->written = t->offset + t->nbytes;
        w->next++;
        w->part = 0;
    }
    return LC_STATUS_OK;
}

lc_status lc_gguf_write_tensor_data(lc_gguf_writer *w, const void *data, size_t nbytes) {
    if (!w->header_done || w->failed || w->finished || w->next >= w->n_tensors || w->part)
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
    return lc_file_sync_parent(w->path);
}
