#include "model/safetensors.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"

// A header is JSON text; real ones are kilobytes to a few megabytes.
#define LC_ST_MAX_HEADER (100u << 20)
#define LC_ST_MAX_SHARDS 4096

size_t lc_dtype_size(lc_dtype dtype) {
    switch (dtype) {
    case LC_DTYPE_F32: return 4;
    case LC_DTYPE_F16:
    case LC_DTYPE_BF16: return 2;
    default: return 0;
    }
}

void lc_st_tensor_to_f32(const lc_st_tensor *t, float *out) {
    // Rows along the last dimension: quantized blocks never cross a row.
    int64_t cols = t->n_dims ? t->shape[t->n_dims - 1] : 1, rows = cols ? t->n_elements / cols : 0;
    size_t row_bytes = lc_wtype_row_bytes((lc_wtype)t->dtype, cols);
    for (int64_t r = 0; r < rows; r++)
        lc_wtype_dequant_row(out + r * cols, (lc_wtype)t->dtype, t->data + (size_t)r * row_bytes, cols);
}

static lc_dtype dtype_from_name(const char *s, size_t *elem) {
    static const struct {
        const char *name;
        lc_dtype dtype;
        size_t size;
    } table[] = {
        {"F32", LC_DTYPE_F32, 4}, {"F16", LC_DTYPE_F16, 2}, {"BF16", LC_DTYPE_BF16, 2},
        {"F64", LC_DTYPE_OTHER, 8}, {"I64", LC_DTYPE_OTHER, 8}, {"I32", LC_DTYPE_OTHER, 4},
        {"I16", LC_DTYPE_OTHER, 2}, {"I8", LC_DTYPE_OTHER, 1}, {"U8", LC_DTYPE_OTHER, 1},
        {"BOOL", LC_DTYPE_OTHER, 1}, {"U16", LC_DTYPE_OTHER, 2}, {"U32", LC_DTYPE_OTHER, 4},
        {"U64", LC_DTYPE_OTHER, 8}, {"F8_E4M3", LC_DTYPE_OTHER, 1}, {"F8_E5M2", LC_DTYPE_OTHER, 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(s, table[i].name) == 0) {
            *elem = table[i].size;
            return table[i].dtype;
        }
    }
    *elem = 0;
    return LC_DTYPE_OTHER;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const lc_st_tensor *)a)->name, ((const lc_st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const lc_st_tensor *x = *(const lc_st_tensor *const *)a, *y = *(const lc_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

// Validates one header entry and fills *t. `data`/`data_size` is the byte
// buffer after the header.
static lc_status parse_entry(lc_st_tensor *t, const cJSON *e, const char *path, const unsigned char *data,
                             size_t data_size) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return lc_error(LC_STATUS_INPUT, "%s: tensor %s: entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s: needs dtype, shape and two data_offsets", path, name);
    size_t elem;
    t->dtype = dtype_from_name(dt->valuestring, &elem);
    if (elem == 0) return lc_error(LC_STATUS_INPUT, "%s: tensor %s: unknown dtype %s", path, name, dt->valuestring);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > LC_MAX_DIMS) return lc_error(LC_STATUS_INPUT, "%s: tensor %s: %d dimensions", path, name, nd);
    t->n_dims = nd;
    // Elements bounded by the data size, so the product cannot overflow unnoticed.
    uint64_t count = 1;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)data_size ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s: invalid shape", path, name);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] != 0 && count > (uint64_t)data_size / (uint64_t)t->shape[i] + 1)
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s: shape larger than the file", path, name);
        count *= (uint64_t)t->shape[i];
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b < 0 ||
        en < b || en > (double)data_size || b != (double)(uint64_t)b || en != (double)(uint64_t)en)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s: data_offsets [%.0f, %.0f] outside the %zu data bytes", path,
                        name, b, en, data_size);
    uint64_t begin = (uint64_t)b, end = (uint64_t)en;
    if (count > UINT64_MAX / elem || count * elem != end - begin)
        return lc_error(LC_STATUS_INPUT, "%s: tensor %s: %llu bytes for shape needing %llu", path, name,
                        (unsigned long long)(end - begin), (unsigned long long)(count * elem));
    t->n_elements = (int64_t)count;
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    t->name = strdup(name);
    if (!t->name) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    return LC_STATUS_OK;
}

lc_status lc_st_set_add_file(lc_st_set *set, const char *path) {
    if (set->n_files >= LC_ST_MAX_SHARDS) return lc_error(LC_STATUS_INPUT, "%s: too many shards", path);
    lc_st_file *files = realloc(set->files, sizeof *files * (size_t)(set->n_files + 1));
    if (!files) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    set->files = files;
    lc_st_file *f = &files[set->n_files];
    memset(f, 0, sizeof *f);
    lc_status st = lc_file_map_open(&f->map, path);
    if (st) return st;
    f->path = strdup(path);
    set->n_files++;
    if (!f->path) return lc_error(LC_STATUS_RUNTIME, "out of memory");

    const unsigned char *p = f->map.data;
    size_t size = f->map.size;
    if (size < 8) return lc_error(LC_STATUS_INPUT, "%s: truncated: %zu bytes, no header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > size - 8 || hlen > LC_ST_MAX_HEADER)
        return lc_error(LC_STATUS_INPUT, "%s: header length %llu exceeds the file (%zu bytes)", path,
                        (unsigned long long)hlen, size);
    cJSON *root;
    if ((st = lc_json_parse((const char *)p + 8, (size_t)hlen, path, &root))) return st;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error(LC_STATUS_INPUT, "%s: header is not a JSON object", path);
    }
    const unsigned char *data = p + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    int n_new = 0;
    for (const cJSON *e = root->child; e; e = e->next) n_new += strcmp(e->string, "__metadata__") != 0;
    lc_st_tensor *ts = realloc(set->tensors, sizeof *ts * (size_t)(set->n_tensors + n_new + 1));
    if (!ts) {
        cJSON_Delete(root);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    set->tensors = ts;
    int first = set->n_tensors;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        lc_st_tensor *t = &ts[set->n_tensors];
        memset(t, 0, sizeof *t);
        if ((st = parse_entry(t, e, path, data, data_size))) break;
        t->shard = set->n_files - 1;
        set->n_tensors++;
    }
    cJSON_Delete(root);
    if (st) return st;

    // Tensors of one file must not overlap (a crafted header could alias them).
    int n = set->n_tensors - first;
    const lc_st_tensor **order = malloc(sizeof *order * (size_t)(n + 1));
    if (!order) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (int i = 0; i < n; i++) order[i] = &ts[first + i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_offset);
    for (int i = 1; i < n; i++) {
        if (order[i - 1]->data + order[i - 1]->nbytes > order[i]->data) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensors %s and %s overlap", path, order[i - 1]->name, order[i]->name);
            break;
        }
    }
    free(order);
    if (st) return st;

    qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, cmp_tensor_name);
    for (int i = 1; i < set->n_tensors; i++)
        if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0)
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s appears twice", path, set->tensors[i].name);
    return LC_STATUS_OK;
}

// A shard name from the index must be a plain file name inside the folder.
static int shard_name_ok(const char *name) {
    return name[0] != '\0' && strchr(name, '/') == NULL && strchr(name, '\\') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

lc_status lc_st_set_open_dir(lc_st_set *set, const char *dir) {
    char path[4096];
    lc_status st;
    memset(set, 0, sizeof *set);
    if ((st = lc_path_join(path, sizeof path, dir, "model.safetensors"))) return st;
    if (lc_file_exists(path)) return lc_st_set_add_file(set, path);

    if ((st = lc_path_join(path, sizeof path, dir, "model.safetensors.index.json"))) return st;
    if (!lc_file_exists(path))
        return lc_error(LC_STATUS_INPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    cJSON *index;
    if ((st = lc_json_load_file(path, 64u << 20, &index))) return st;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(index);
        return lc_error(LC_STATUS_INPUT, "%s: \"weight_map\" is missing or not an object", path);
    }
    // Each distinct shard once, in first-seen order.
    const char *seen[LC_ST_MAX_SHARDS];
    int n_seen = 0;
    for (const cJSON *e = map->child; e && !st; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s: shard \"%s\" is not a file name in the model folder", path,
                          e->string, cJSON_IsString(e) ? e->valuestring : "?");
            break;
        }
        int known = 0;
        for (int i = 0; i < n_seen && !known; i++) known = strcmp(seen[i], e->valuestring) == 0;
        if (known) continue;
        if (n_seen == LC_ST_MAX_SHARDS) {
            st = lc_error(LC_STATUS_INPUT, "%s: too many shards", path);
            break;
        }
        seen[n_seen++] = e->valuestring;
        char shard[4096];
        if (!(st = lc_path_join(shard, sizeof shard, dir, e->valuestring))) st = lc_st_set_add_file(set, shard);
    }
    // Every tensor the index names must be in the shard it names.
    for (const cJSON *e = map->child; e && !st; e = e->next) {
        const lc_st_tensor *t = lc_st_set_find(set, e->string);
        if (!t || strcmp(strrchr(set->files[t->shard].path, '/') + 1, e->valuestring) != 0)
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is not in shard %s", path, e->string, e->valuestring);
    }
    cJSON_Delete(index);
    return st;
}

const lc_st_tensor *lc_st_set_find(const lc_st_set *set, const char *name) {
    int lo = 0, hi = set->n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(set->tensors[mid].name, name);
        if (c == 0) return &set->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void lc_st_set_free(lc_st_set *set) {
    for (int i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    for (int i = 0; i < set->n_files; i++) {
        lc_file_map_close(&set->files[i].map);
        free(set->files[i].path);
    }
    free(set->tensors);
    free(set->files);
    memset(set, 0, sizeof *set);
}

static const char *dtype_name(lc_dtype d) {
    return d == LC_DTYPE_F32 ? "F32" : d == LC_DTYPE_F16 ? "F16" : d == LC_DTYPE_BF16 ? "BF16" : NULL;
}

lc_status lc_st_write(const char *path, const lc_st_entry *entries, int n, const char *const *metadata, int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < n_meta; i++) cJSON_AddStringToObject(meta, metadata[2 * i], metadata[2 * i + 1]);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const lc_st_entry *e = &entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        if (!t || !dtype_name(e->dtype)) {
            cJSON_Delete(root);
            return lc_error(LC_STATUS_RUNTIME, "%s: cannot describe tensor %s", path, e->name);
        }
        cJSON_AddStringToObject(t, "dtype", dtype_name(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += e->nbytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;

    char tmp[4096];
    lc_status st = lc_file_check_replaceable(path);
    int len = st ? 0 : snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (st || len < 0 || (size_t)len >= sizeof tmp) {
        free(header);
        return st ? st : lc_error(LC_STATUS_INPUT, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(header);
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", path, strerror(errno)); // not tmp: the user named path
    }
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) ok = fwrite(entries[i].data, 1, entries[i].nbytes, f) == entries[i].nbytes;
    free(header);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(err));
    }
    return lc_file_sync_parent(path);
}
