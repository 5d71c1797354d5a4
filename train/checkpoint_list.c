// Listing the modules of a checkpoint without a model (for `lora inspect`).
#include <hdf5.h>
#include <string.h>

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

lc_status lc_checkpoint_list_modules(const char *path, lc_checkpoint_module_fn fn, void *user) {
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
