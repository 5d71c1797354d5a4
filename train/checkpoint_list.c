// Listing the modules of a checkpoint without a model (for `lora inspect`).
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "train/isolate.h"

#include "train/checkpoint.h"

typedef struct list_ctx {
    lc_checkpoint_module_fn fn;
    void *user;
    int bad;
} list_ctx;

// Shape of a 2-D dataset group/name into shape, or {-1, -1}.
static void dataset_shape(hid_t g, const char *name, int64_t shape[2]) {
    shape[0] = shape[1] = -1;
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2 && H5Sget_simple_extent_dims(sp, dims, NULL) == 2) {
        shape[0] = (int64_t)dims[0];
        shape[1] = (int64_t)dims[1];
    }
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
}

static herr_t visit(hid_t lora, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    list_ctx *c = data;
    hid_t g = H5Gopen2(lora, name, H5P_DEFAULT);
    if (g < 0) {
        c->bad = 1;
        return 0;
    }
    int64_t a[2], b[2];
    dataset_shape(g, "A", a);
    dataset_shape(g, "B", b);
    H5Gclose(g);
    c->fn(c->user, name, a, b);
    return 0;
}

static lc_status list_direct(const char *path, lc_checkpoint_module_fn fn, void *user) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return lc_error(LC_STATUS_INPUT, "%s: not a readable HDF5 file", path);
    lc_status st = LC_STATUS_OK;
    hid_t lora = H5Lexists(file, "lora", H5P_DEFAULT) > 0 ? H5Gopen2(file, "lora", H5P_DEFAULT) : -1;
    if (lora < 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: no /lora group", path);
    } else {
        list_ctx c = {fn, user, 0};
        if (H5Literate(lora, H5_INDEX_NAME, H5_ITER_INC, NULL, visit, &c) < 0 || c.bad)
            st = lc_error(LC_STATUS_INPUT, "%s: unreadable entry under /lora", path);
        H5Gclose(lora);
    }
    H5Fclose(file);
    return st;
}

// The listing runs in a child process (train/isolate.h): HDF5 link iteration
// is where libhdf5 1.10.8 crashes on crafted files.
#define LIST_MAX 16384

typedef struct list_entry {
    char name[256];
    int64_t a[2], b[2];
} list_entry;

typedef struct list_payload {
    int n, truncated;
    list_entry e[LIST_MAX];
} list_payload;

static void collect(void *user, const char *module, const int64_t a[2], const int64_t b[2]) {
    list_payload *p = user;
    if (p->n == LIST_MAX) {
        p->truncated = 1;
        return;
    }
    list_entry *e = &p->e[p->n++];
    snprintf(e->name, sizeof e->name, "%s", module);
    memcpy(e->a, a, sizeof e->a);
    memcpy(e->b, b, sizeof e->b);
}

static lc_status list_child(void *ctx, void *out) { return list_direct(ctx, collect, out); }

lc_status lc_checkpoint_list_modules(const char *path, lc_checkpoint_module_fn fn, void *user) {
    void *out;
    lc_status st = lc_isolated_call(path, sizeof(list_payload), list_child, (void *)path, &out);
    if (st) return st;
    list_payload *p = out;
    for (int i = 0; i < p->n; i++) fn(user, p->e[i].name, p->e[i].a, p->e[i].b);
    if (p->truncated) st = lc_error(LC_STATUS_INPUT, "%s: more than %d modules under /lora", path, LIST_MAX);
    lc_isolated_free(out, sizeof(list_payload));
    return st;
}
