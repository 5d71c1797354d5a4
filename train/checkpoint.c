// HDF5 checkpoints (layout in checkpoint.h). Saving builds the file in
// memory, writes it to path + ".tmp", fsyncs and renames it, so a crash
// leaves either the previous file or the new one, never half of one. Reading trusts nothing in the file:
// every attribute's type and size and every dataset's rank, type and shape
// is checked before anything is read, and a file that is not HDF5, is
// truncated, or holds other tensors than the LoRA being loaded is refused
// with LC_STATUS_INPUT and a message naming the path and the object.
#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_NAME "lora.c checkpoint"
#define FORMAT_VERSION 1
#define MAX_CONFIG_BYTES ((size_t)16 << 20) // config JSON
#define MAX_SHORT_STRING ((size_t)4096)     // format, targets, fingerprint
#define MAX_NAME 256                        // module names

// ---------------------------------------------------------------------------
// Shared helpers

// The innermost message on HDF5's error stack (where the failure was
// detected); for system-call failures just the strerror text HDF5 recorded.
typedef struct h5_reason_buf {
    char *buf;
    size_t cap;
} h5_reason_buf;

static herr_t reason_walk(unsigned n, const H5E_error2_t *e, void *data) {
    h5_reason_buf *r = data;
    if (n != 0 || !e->desc) return 0;
    const char *msg = strstr(e->desc, "error message = '");
    if (msg) {
        msg += strlen("error message = '");
        const char *end = strchr(msg, '\'');
        int len = end ? (int)(end - msg) : (int)strlen(msg);
        snprintf(r->buf, r->cap, "%.*s", len, msg);
    } else {
        snprintf(r->buf, r->cap, "%s", e->desc);
    }
    return 0;
}

static const char *h5_reason(char *buf, size_t cap) {
    buf[0] = '\0';
    h5_reason_buf r = {buf, cap};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_walk, &r);
    if (!buf[0]) snprintf(buf, cap, "unknown HDF5 error");
    return buf;
}

// Library code never prints: HDF5's automatic error reporting goes to stderr.
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// File access: closing the file closes every object still open in it (so an
// error path cannot leak a half-closed file), and file locking is used where
// the file system supports it.
static hid_t file_access_plist(int for_write) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        // Written with v1.8 object headers: dense attribute storage, so a
        // config JSON over 64 KiB still fits in an attribute; readable by
        // HDF5 >= 1.8. Reading accepts whatever format the file has.
        (for_write && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0)) {
        H5Pclose(fapl);
        return -1;
    }
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

static void module_name(char *out, size_t cap, int layer, lc_linear_kind kind) {
    snprintf(out, cap, "model.layers.%d.%s.%s", layer, lc_linear_kind_parent(kind), lc_linear_kind_name(kind));
}

// "q_proj,v_proj,down_proj" in lc_linear_kind order.
static void targets_string(char *out, size_t cap, unsigned targets) {
    out[0] = '\0';
    size_t len = 0;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        if (!(targets & (1u << k))) continue;
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", lc_linear_kind_name(k));
        if (n < 0 || (size_t)n >= cap - len) break;
        len += (size_t)n;
    }
}

// ---------------------------------------------------------------------------
// Writing

typedef struct writer {
    int failed;
    char what[648]; // the first failure, with HDF5's reason (384 + 256 + " ()")
} writer;

// Records the first failure; call it before any other HDF5 call so the error
// stack still describes the failing call.
static void wfail(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wfail(writer *w, const char *fmt, ...) {
    if (w->failed) return;
    char reason[256];
    h5_reason(reason, sizeof reason);
    va_list ap;
    va_start(ap, fmt);
    char msg[384];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(w->what, sizeof w->what, "%s (%s)", msg, reason);
    w->failed = 1;
}

static void attr_write(writer *w, hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                       const void *val) {
    if (w->failed) return;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, val) < 0) wfail(w, "cannot write attribute '%s' of %s", name, obj);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
}

static void attr_i64(writer *w, hid_t loc, const char *obj, const char *name, int64_t v) {
    attr_write(w, loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static void attr_u64(writer *w, hid_t loc, const char *obj, const char *name, uint64_t v) {
    attr_write(w, loc, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

static void attr_f64(writer *w, hid_t loc, const char *obj, const char *name, double v) {
    attr_write(w, loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

// Fixed-length, NUL-terminated UTF-8 string.
static void attr_str(writer *w, hid_t loc, const char *obj, const char *name, const char *s) {
    if (w->failed) return;
    if (!s) s = "";
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(s) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0)
        wfail(w, "cannot make the string type of attribute '%s' of %s", name, obj);
    else
        attr_write(w, loc, obj, name, t, t, s);
    if (t >= 0) H5Tclose(t);
}

static hid_t group_create(writer *w, hid_t loc, const char *name, const char *obj, const char *desc) {
    if (w->failed) return -1;
    // No modification times in object headers: the same run must give the same bytes.
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0
                  ? -1
                  : H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (gcpl >= 0) H5Pclose(gcpl);
    if (g < 0) {
        wfail(w, "cannot create group %s", obj);
        return -1;
    }
    attr_str(w, g, obj, "description", desc);
    return g;
}

static void dset_write(writer *w, hid_t loc, const char *name, const char *obj, hsize_t rows, hsize_t cols,
                       const float *data, const char *desc) {
    if (w->failed) return;
    hsize_t dims[2] = {rows, cols};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = sp < 0 || dcpl < 0 || H5Pset_obj_track_times(dcpl, 0) < 0
                  ? -1
                  : H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (d < 0)
        wfail(w, "cannot create dataset %s", obj);
    else if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        wfail(w, "cannot write dataset %s", obj);
    else
        attr_str(w, d, obj, "description", desc);
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);
}

// One group per adapted linear under `parent` (at `ppath`), with A and B
// taken from `base`, an array laid out like lora->params.
static void write_modules(writer *w, hid_t parent, const char *ppath, const lc_model *m, const lc_lora *lora,
                          const float *base, const char *what) {
    for (int layer = 0; layer < lora->n_layers && !w->failed; layer++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT && !w->failed; k++) {
            const lc_lora_ref *ref = lc_lora_get(lora, layer, (lc_linear_kind)k);
            if (!ref) continue;
            const lc_linear *lin = &m->layers[layer].lin[k];
            size_t off_a = (size_t)(ref->A - lora->params), off_b = (size_t)(ref->B - lora->params);
            char name[MAX_NAME], obj[512], desc[1024];
            module_name(name, sizeof name, layer, (lc_linear_kind)k);
            snprintf(obj, sizeof obj, "%s/%s", ppath, name);
            if (base == lora->params)
                snprintf(desc, sizeof desc, "LoRA adapter of %s (weight [out, in] = [%d, %d]): W x + scale * B A x",
                         name, lin->out, lin->in);
            else
                snprintf(desc, sizeof desc, "%s of the LoRA adapter of %s (same shapes as /lora/%s)", what, name,
                         name);
            hid_t g = group_create(w, parent, name, obj, desc);
            if (g < 0) return;
            char dobj[600];
            snprintf(dobj, sizeof dobj, "%s/A", obj);
            if (base == lora->params)
                snprintf(desc, sizeof desc, "LoRA A matrix [r, in_features] = [%d, %d]: delta W = scale * B @ A",
                         ref->r, lin->in);
            else
                snprintf(desc, sizeof desc, "%s of /lora/%s/A [r, in_features] = [%d, %d]", what, name, ref->r,
                         lin->in);
            dset_write(w, g, "A", dobj, (hsize_t)ref->r, (hsize_t)lin->in, base + off_a, desc);
            snprintf(dobj, sizeof dobj, "%s/B", obj);
            if (base == lora->params)
                snprintf(desc, sizeof desc, "LoRA B matrix [out_features, r] = [%d, %d]: delta W = scale * B @ A",
                         lin->out, ref->r);
            else
                snprintf(desc, sizeof desc, "%s of /lora/%s/B [out_features, r] = [%d, %d]", what, name, lin->out,
                         ref->r);
            dset_write(w, g, "B", dobj, (hsize_t)lin->out, (hsize_t)ref->r, base + off_b, desc);
            H5Gclose(g);
        }
    }
}

static void write_all(writer *w, hid_t file, const lc_model *m, const lc_lora *lora, const lc_adamw *opt,
                      const lc_checkpoint_meta *meta) {
    attr_str(w, file, "/", "description",
             "lora.c LoRA fine-tuning checkpoint: adapter tensors, AdamW state, training position "
             "(step, epoch, data_index, rng_state), full config (JSON) and base-model fingerprint");
    attr_str(w, file, "/", "format", FORMAT_NAME);
    attr_i64(w, file, "/", "format_version", FORMAT_VERSION);
    attr_i64(w, file, "/", "step", meta->step);
    attr_i64(w, file, "/", "epoch", meta->epoch);
    attr_i64(w, file, "/", "data_index", meta->data_index);
    attr_u64(w, file, "/", "rng_state", meta->rng_state);
    attr_str(w, file, "/", "config", meta->config_json);
    attr_str(w, file, "/", "base_fingerprint", meta->base_fingerprint);

    char targets[256];
    targets_string(targets, sizeof targets, lora->cfg.targets);
    hid_t g = group_create(w, file, "lora", "/lora",
                           "LoRA adapters: each targeted linear computes W x + scale * B A x; "
                           "scale = alpha / r, or alpha / sqrt(r) with rslora");
    if (g >= 0) {
        attr_i64(w, g, "/lora", "r", lora->cfg.r);
        attr_f64(w, g, "/lora", "alpha", lora->cfg.alpha);
        attr_f64(w, g, "/lora", "dropout", lora->cfg.dropout);
        attr_i64(w, g, "/lora", "rslora", lora->cfg.rslora ? 1 : 0);
        attr_f64(w, g, "/lora", "scale", lora->scale);
        attr_str(w, g, "/lora", "targets", targets);
        write_modules(w, g, "/lora", m, lora, lora->params, NULL);
        H5Gclose(g);
    }
    if (!opt) return;

    g = group_create(w, file, "optimizer", "/optimizer",
                     "AdamW state (torch.optim.AdamW semantics): first and second moments of every "
                     "LoRA tensor, and the number of updates done");
    if (g < 0) return;
    attr_i64(w, g, "/optimizer", "step", opt->step);
    attr_f64(w, g, "/optimizer", "beta1", opt->cfg.beta1);
    attr_f64(w, g, "/optimizer", "beta2", opt->cfg.beta2);
    attr_f64(w, g, "/optimizer", "eps", opt->cfg.eps);
    attr_f64(w, g, "/optimizer", "weight_decay", opt->cfg.weight_decay);
    hid_t gm = group_create(w, g, "exp_avg", "/optimizer/exp_avg",
                            "AdamW first moment (exp_avg) of each LoRA tensor, laid out like /lora");
    if (gm >= 0) {
        write_modules(w, gm, "/optimizer/exp_avg", m, lora, opt->m, "AdamW first moment (exp_avg)");
        H5Gclose(gm);
    }
    hid_t gv = group_create(w, g, "exp_avg_sq", "/optimizer/exp_avg_sq",
                            "AdamW second moment (exp_avg_sq) of each LoRA tensor, laid out like /lora");
    if (gv >= 0) {
        write_modules(w, gv, "/optimizer/exp_avg_sq", m, lora, opt->v, "AdamW second moment (exp_avg_sq)");
        H5Gclose(gv);
    }
    H5Gclose(g);
}

static int fsync_path(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

// Bob Jenkins' lookup3 hashlittle (public domain), byte-wise: the checksum
// HDF5 puts on its metadata (H5_checksum_lookup3 with initval 0).
static uint32_t lookup3(const unsigned char *k, size_t length) {
#define ROT(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)length;
    while (length > 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        a -= c, a ^= ROT(c, 4), c += b;
        b -= a, b ^= ROT(a, 6), a += c;
        c -= b, c ^= ROT(b, 8), b += a;
        a -= c, a ^= ROT(c, 16), c += b;
        b -= a, b ^= ROT(a, 19), a += c;
        c -= b, c ^= ROT(b, 4), b += a;
        length -= 12;
        k += 12;
    }
    switch (length) {
    case 12: c += (uint32_t)k[11] << 24; /* fall through */
    case 11: c += (uint32_t)k[10] << 16; /* fall through */
    case 10: c += (uint32_t)k[9] << 8;   /* fall through */
    case 9: c += k[8];                   /* fall through */
    case 8: b += (uint32_t)k[7] << 24;   /* fall through */
    case 7: b += (uint32_t)k[6] << 16;   /* fall through */
    case 6: b += (uint32_t)k[5] << 8;    /* fall through */
    case 5: b += k[4];                   /* fall through */
    case 4: a += (uint32_t)k[3] << 24;   /* fall through */
    case 3: a += (uint32_t)k[2] << 16;   /* fall through */
    case 2: a += (uint32_t)k[1] << 8;    /* fall through */
    case 1: a += k[0]; break;
    case 0: return c;
    }
    c ^= b, c -= ROT(b, 14);
    a ^= c, a -= ROT(c, 11);
    b ^= a, b -= ROT(a, 25);
    c ^= b, c -= ROT(b, 16);
    a ^= c, a -= ROT(c, 4);
    b ^= a, b -= ROT(a, 14);
    c ^= b, c -= ROT(b, 24);
    return c;
#undef ROT
}

// H5Fget_file_image (HDF5 1.10.8 at least) clears the superblock's status
// flags in the image but keeps the checksum computed with them set, so the
// image of a version 2/3 superblock fails to open ("incorrect metadata
// checksum"). Recomputing it is a no-op where HDF5 gets it right.
static void fix_superblock_checksum(unsigned char *img, size_t size) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 16 || memcmp(img, sig, 8) != 0 || (img[8] != 2 && img[8] != 3)) return;
    size_t so = img[9], len = 12 + 4 * so; // signature, version, sizes, flags; 4 addresses
    if ((so != 2 && so != 4 && so != 8) || len + 4 > size) return;
    uint32_t c = lookup3(img, len);
    for (int i = 0; i < 4; i++) img[len + i] = (unsigned char)(c >> (8 * i));
}

// Writes the image to path (created or truncated) and fsyncs it. On failure
// returns -1 with errno set and *what naming the step that failed.
static int write_image(const char *path, const unsigned char *data, size_t size, int *created, const char **what) {
    *what = "cannot create";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    *created = 1;
    *what = "cannot write";
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        done += (size_t)n;
    }
    *what = "cannot fsync";
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *what = "cannot close";
    return close(fd);
}

lc_status lc_checkpoint_save(const char *path, const lc_model *m, const lc_lora *lora, const lc_adamw *opt,
                             const lc_checkpoint_meta *meta) {
    h5_quiet();
    if (!path || !*path || !m || !lora || !lora->params || !meta)
        return lc_error(LC_STATUS_RUNTIME, "checkpoint save: missing path, model, adapter or metadata");
    if (lora->n_layers != m->cfg.n_layers)
        return lc_error(LC_STATUS_RUNTIME, "%s: adapter has %d layers but the model %d", path, lora->n_layers,
                        m->cfg.n_layers);
    if (opt && (opt->n != lora->n_params || (opt->n && (!opt->m || !opt->v))))
        return lc_error(LC_STATUS_RUNTIME, "%s: optimizer holds %zu moments but the adapter %zu parameters", path,
                        opt->n, lora->n_params);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    // The file is built in memory (HDF5's core driver, no backing store) and
    // written out by us: HDF5 never sees an I/O error, so a full disk cannot
    // leave a half-closed HDF5 file behind in the library (HDF5 1.10 crashes
    // at exit on such a file), and the error names the system call's reason.
    writer w = {0};
    unsigned char *image = NULL;
    int created = 0;
    hid_t file = -1, fapl = file_access_plist(1);
    size_t tensors = lora->n_params * sizeof(float) * (opt ? 3 : 1);
    size_t config_len = meta->config_json ? strlen(meta->config_json) : 0;
    if (fapl < 0 || H5Pset_fapl_core(fapl, tensors + config_len + ((size_t)1 << 20), 0) < 0) {
        wfail(&w, "cannot set up HDF5 file access");
        goto fail;
    }
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0 && H5Pset_obj_track_times(fcpl, 0) >= 0) file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (file < 0) {
        wfail(&w, "cannot create the HDF5 image of %s", tmp);
        goto fail;
    }
    write_all(&w, file, m, lora, opt, meta);
    if (!w.failed && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) wfail(&w, "cannot flush the HDF5 image");
    if (w.failed) goto fail;
    // (H5Fget_file_image does not flush the metadata cache itself.)
    ssize_t size = H5Fget_file_image(file, NULL, 0);
    if (size <= 0) {
        wfail(&w, "cannot finish the HDF5 image");
        goto fail;
    }
    image = malloc((size_t)size);
    if (!image) {
        snprintf(w.what, sizeof w.what, "out of memory for a %zd-byte image", size);
        goto fail;
    }
    if (H5Fget_file_image(file, image, (size_t)size) != size) {
        wfail(&w, "cannot copy the HDF5 image");
        goto fail;
    }
    herr_t rc = H5Fclose(file);
    file = -1;
    if (rc < 0) {
        wfail(&w, "cannot close the HDF5 image");
        goto fail;
    }
    fix_superblock_checksum(image, (size_t)size);

    const char *what;
    if (write_image(tmp, image, (size_t)size, &created, &what) != 0) {
        snprintf(w.what, sizeof w.what, "%s %s (%s)", what, tmp, strerror(errno));
        goto fail;
    }
    free(image);
    image = NULL;
    if (rename(tmp, path) != 0) {
        snprintf(w.what, sizeof w.what, "cannot rename %s to %s (%s)", tmp, path, strerror(errno));
        goto fail;
    }
    H5Pclose(fapl);
    free(tmp);

    // The rename is durable only once the directory entry is on disk.
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    if (!dir) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    int drc = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    int err = errno;
    free(dir);
    if (drc != 0 && err != EINVAL && err != ENOTSUP) // some file systems cannot fsync a directory
        return lc_error(LC_STATUS_RUNTIME, "%s: written, but fsync of its directory failed (%s)", path,
                        strerror(err));
    return LC_STATUS_OK;

fail:
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    free(image);
    if (created) unlink(tmp);
    free(tmp);
    return lc_error(LC_STATUS_RUNTIME, "%s: cannot write checkpoint: %s", path, w.what);
}

// ---------------------------------------------------------------------------
// Reading

static lc_status open_checkpoint(const char *path, hid_t *out) {
    *out = -1;
    if (!path) return lc_error(LC_STATUS_INPUT, "checkpoint path is missing");
    struct stat sb;
    if (stat(path, &sb) != 0) return lc_error(LC_STATUS_INPUT, "%s: cannot open checkpoint: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return lc_error(LC_STATUS_INPUT, "%s: not a lora.c checkpoint: not a regular file", path);
    char reason[256];
    hid_t fapl = file_access_plist(0);
    if (fapl < 0) return lc_error(LC_STATUS_RUNTIME, "%s: cannot set up HDF5 file access (%s)", path,
                                  h5_reason(reason, sizeof reason));
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) h5_reason(reason, sizeof reason);
    H5Pclose(fapl);
    if (file < 0)
        return lc_error(LC_STATUS_INPUT, "%s: not a lora.c checkpoint: not a readable HDF5 file (%s)",
                        path, reason);
    *out = file;
    return LC_STATUS_OK;
}

// Opens attribute `name` of `loc` (object path `obj`), checking it is a single
// value whose type class is `want` (or `also`).
static lc_status attr_open(const char *path, hid_t loc, const char *obj, const char *name, H5T_class_t want,
                           H5T_class_t also, hid_t *attr, hid_t *type) {
    *attr = *type = -1;
    htri_t ex = H5Aexists(loc, name);
    if (ex == 0) return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: missing", path, name, obj);
    hid_t a = ex < 0 ? -1 : H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: unreadable", path, name, obj);
    hid_t sp = H5Aget_space(a);
    hssize_t npoints = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0) H5Sclose(sp);
    if (npoints != 1) {
        H5Aclose(a);
        return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: holds %lld values, expected one", path, name,
                        obj, (long long)npoints);
    }
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    if (cls != want && cls != also) {
        if (t >= 0) H5Tclose(t);
        H5Aclose(a);
        return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: has the wrong type (expected %s)", path, name,
                        obj, want == H5T_STRING ? "a string" : want == H5T_INTEGER ? "an integer" : "a number");
    }
    *attr = a;
    *type = t;
    return LC_STATUS_OK;
}

static lc_status attr_read_num(const char *path, hid_t loc, const char *obj, const char *name, hid_t mtype,
                               H5T_class_t want, H5T_class_t also, void *out) {
    hid_t a, t;
    lc_status st = attr_open(path, loc, obj, name, want, also, &a, &t);
    if (st) return st;
    herr_t rc = H5Aread(a, mtype, out);
    H5Tclose(t);
    H5Aclose(a);
    if (rc < 0) return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: unreadable", path, name, obj);
    return LC_STATUS_OK;
}

static lc_status read_i64(const char *path, hid_t loc, const char *obj, const char *name, int64_t *out) {
    return attr_read_num(path, loc, obj, name, H5T_NATIVE_INT64, H5T_INTEGER, H5T_INTEGER, out);
}

// A count or position: an integer >= 0.
static lc_status read_count(const char *path, hid_t loc, const char *obj, const char *name, int64_t *out) {
    lc_status st = read_i64(path, loc, obj, name, out);
    if (st) return st;
    if (*out < 0)
        return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: %lld is negative", path, name, obj,
                        (long long)*out);
    return LC_STATUS_OK;
}

static lc_status read_f64(const char *path, hid_t loc, const char *obj, const char *name, double *out) {
    return attr_read_num(path, loc, obj, name, H5T_NATIVE_DOUBLE, H5T_FLOAT, H5T_INTEGER, out);
}

// A string attribute (fixed or variable length) of at most max bytes, as a heap copy.
static lc_status read_str(const char *path, hid_t loc, const char *obj, const char *name, size_t max, char **out) {
    *out = NULL;
    hid_t a, t;
    lc_status st = attr_open(path, loc, obj, name, H5T_STRING, H5T_STRING, &a, &t);
    if (st) return st;
    char *copy = NULL;
    const char *why = NULL;
    htri_t vl = H5Tis_variable_str(t);
    if (vl > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *s = NULL;
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
            H5Aread(a, mt, &s) < 0) {
            why = "unreadable";
        } else {
            size_t len = s ? strnlen(s, max + 1) : 0;
            if (len > max)
                why = "too long";
            else if (!(copy = malloc(len + 1)))
                why = "out of memory";
            else {
                if (len) memcpy(copy, s, len);
                copy[len] = '\0';
            }
        }
        if (s) H5free_memory(s);
        if (mt >= 0) H5Tclose(mt);
    } else if (vl == 0) {
        size_t size = H5Tget_size(t);
        if (size == 0 || size > max + 1)
            why = "too long";
        else if (!(copy = malloc(size + 1)))
            why = "out of memory";
        else if (H5Aread(a, t, copy) < 0)
            why = "unreadable";
        else
            copy[size] = '\0'; // NULLTERM/NULLPAD strings end earlier
    } else {
        why = "unreadable";
    }
    H5Tclose(t);
    H5Aclose(a);
    if (why) {
        free(copy);
        if (strcmp(why, "too long") == 0)
            return lc_error(LC_STATUS_INPUT, "%s: attribute '%s' of %s: longer than %zu bytes", path, name, obj, max);
        return lc_error(strcmp(why, "out of memory") == 0 ? LC_STATUS_RUNTIME : LC_STATUS_INPUT,
                        "%s: attribute '%s' of %s: %s", path, name, obj, why);
    }
    *out = copy;
    return LC_STATUS_OK;
}

// Opens and checks the root attributes format and format_version.
static lc_status open_and_check(const char *path, hid_t *out) {
    hid_t file;
    lc_status st = open_checkpoint(path, &file);
    if (st) return st;
    char *format = NULL;
    int64_t version = 0;
    if (H5Aexists(file, "format") <= 0 || read_str(path, file, "/", "format", MAX_SHORT_STRING, &format) ||
        strcmp(format, FORMAT_NAME) != 0) {
        free(format);
        H5Fclose(file);
        return lc_error(LC_STATUS_INPUT, "%s: not a lora.c checkpoint (no format attribute \"%s\")", path,
                        FORMAT_NAME);
    }
    free(format);
    if (read_i64(path, file, "/", "format_version", &version) || version != FORMAT_VERSION) {
        H5Fclose(file);
        return lc_error(LC_STATUS_INPUT, "%s: not a lora.c checkpoint of format_version %d (found %lld)", path,
                        FORMAT_VERSION, (long long)version);
    }
    *out = file;
    return LC_STATUS_OK;
}

static lc_status open_group(const char *path, hid_t loc, const char *name, const char *obj, hid_t *out) {
    *out = -1;
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex == 0) return lc_error(LC_STATUS_INPUT, "%s: group %s: missing", path, obj);
    hid_t g = ex < 0 ? -1 : H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) return lc_error(LC_STATUS_INPUT, "%s: %s: not a readable group", path, obj);
    *out = g;
    return LC_STATUS_OK;
}

static lc_status parse_targets(const char *path, const char *s, unsigned *out) {
    *out = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t len = strcspn(p, ", ");
        char name[64];
        unsigned bit = 0;
        if (len < sizeof name) {
            memcpy(name, p, len);
            name[len] = '\0';
            bit = lc_lora_target_bit(name);
        }
        if (!bit)
            return lc_error(LC_STATUS_INPUT, "%s: attribute 'targets' of /lora: unknown module \"%.*s\"", path,
                            (int)(len < 64 ? len : 64), p);
        *out |= bit;
        p += len;
    }
    if (!*out) return lc_error(LC_STATUS_INPUT, "%s: attribute 'targets' of /lora names no module", path);
    return LC_STATUS_OK;
}

static lc_status read_lora_config(const char *path, hid_t file, lc_lora_config *cfg) {
    hid_t g;
    lc_status st = open_group(path, file, "lora", "/lora", &g);
    if (st) return st;
    int64_t r = 0, rslora = 0;
    double alpha = 0, dropout = 0;
    char *targets = NULL;
    if ((st = read_i64(path, g, "/lora", "r", &r)) || (st = read_f64(path, g, "/lora", "alpha", &alpha)) ||
        (st = read_f64(path, g, "/lora", "dropout", &dropout)) ||
        (st = read_i64(path, g, "/lora", "rslora", &rslora)) ||
        (st = read_str(path, g, "/lora", "targets", MAX_SHORT_STRING, &targets)))
        goto done;
    if (r < 1 || r > 4096) {
        st = lc_error(LC_STATUS_INPUT, "%s: attribute 'r' of /lora: %lld is not in 1..4096", path, (long long)r);
        goto done;
    }
    if (!isfinite(alpha) || fabs(alpha) > FLT_MAX) {
        st = lc_error(LC_STATUS_INPUT, "%s: attribute 'alpha' of /lora: %g is not a finite float", path, alpha);
        goto done;
    }
    if (!(dropout >= 0.0 && (float)dropout < 1.0f)) {
        st = lc_error(LC_STATUS_INPUT, "%s: attribute 'dropout' of /lora: %g is not in [0, 1)", path, dropout);
        goto done;
    }
    if (rslora != 0 && rslora != 1) {
        st = lc_error(LC_STATUS_INPUT, "%s: attribute 'rslora' of /lora: %lld is not 0 or 1", path, (long long)rslora);
        goto done;
    }
    if ((st = parse_targets(path, targets, &cfg->targets))) goto done;
    cfg->r = (int)r;
    cfg->alpha = (float)alpha;
    cfg->dropout = (float)dropout;
    cfg->rslora = rslora != 0;
done:
    free(targets);
    H5Gclose(g);
    return st;
}

void lc_checkpoint_info_free(lc_checkpoint_info *info) {
    if (!info) return;
    free(info->config_json);
    free(info->base_fingerprint);
    memset(info, 0, sizeof *info);
}

lc_status lc_checkpoint_read_info(const char *path, lc_checkpoint_info *info) {
    h5_quiet();
    memset(info, 0, sizeof *info);
    hid_t file;
    lc_status st = open_and_check(path, &file);
    if (st) return st;
    if ((st = read_count(path, file, "/", "step", &info->step)) ||
        (st = read_count(path, file, "/", "epoch", &info->epoch)) ||
        (st = read_count(path, file, "/", "data_index", &info->data_index)) ||
        (st = attr_read_num(path, file, "/", "rng_state", H5T_NATIVE_UINT64, H5T_INTEGER, H5T_INTEGER,
                            &info->rng_state)) ||
        (st = read_str(path, file, "/", "config", MAX_CONFIG_BYTES, &info->config_json)) ||
        (st = read_str(path, file, "/", "base_fingerprint", MAX_SHORT_STRING, &info->base_fingerprint)) ||
        (st = read_lora_config(path, file, &info->lora)))
        goto done;
    htri_t has_opt = H5Lexists(file, "optimizer", H5P_DEFAULT);
    if (has_opt < 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: group /optimizer: unreadable", path);
        goto done;
    }
    info->has_optimizer = has_opt > 0;
done:
    H5Fclose(file);
    if (st) lc_checkpoint_info_free(info);
    return st;
}

// Reads a 2-D float dataset `name` of `g` (object path `obj`) of exactly
// [rows, cols] into dst, converting from any float type.
static lc_status read_matrix(const char *path, hid_t g, const char *name, const char *obj, int rows, int cols,
                             float *dst) {
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex == 0)
        return lc_error(LC_STATUS_INPUT, "%s: dataset %s: missing (expected float [%d, %d])", path, obj, rows, cols);
    hid_t d = ex < 0 ? -1 : H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return lc_error(LC_STATUS_INPUT, "%s: %s: not a readable dataset", path, obj);
    lc_status st = LC_STATUS_OK;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t dims[2] = {0, 0};
    if (nd != 2 || H5Sget_simple_extent_type(sp) != H5S_SIMPLE) {
        st = lc_error(LC_STATUS_INPUT, "%s: dataset %s: has %d dimensions, expected 2-D [%d, %d]", path, obj, nd,
                      rows, cols);
    } else if (H5Sget_simple_extent_dims(sp, dims, NULL) != 2 || dims[0] != (hsize_t)rows ||
               dims[1] != (hsize_t)cols) {
        st = lc_error(LC_STATUS_INPUT, "%s: dataset %s: has shape [%llu, %llu], expected [%d, %d]", path, obj,
                      (unsigned long long)dims[0], (unsigned long long)dims[1], rows, cols);
    } else if (t < 0 || H5Tget_class(t) != H5T_FLOAT) {
        st = lc_error(LC_STATUS_INPUT, "%s: dataset %s: is not floating point", path, obj);
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        char reason[256];
        st = lc_error(LC_STATUS_INPUT, "%s: dataset %s: unreadable (%s)", path, obj, h5_reason(reason, sizeof reason));
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return st;
}

typedef struct extra_scan {
    const lc_lora *lora;
    char extra[MAX_NAME];
} extra_scan;

static herr_t extra_walk(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    extra_scan *s = data;
    char want[MAX_NAME];
    for (int layer = 0; layer < s->lora->n_layers; layer++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            if (!lc_lora_get(s->lora, layer, (lc_linear_kind)k)) continue;
            module_name(want, sizeof want, layer, (lc_linear_kind)k);
            if (strcmp(name, want) == 0) return 0;
        }
    snprintf(s->extra, sizeof s->extra, "%s", name);
    return 1; // stop: found one the LoRA does not have
}

// Reads every adapted module's A and B from group `g` (path `gpath`) into
// `base`, an array laid out like lora->params; refuses modules in the file
// that the LoRA does not adapt.
static lc_status read_modules(const char *path, hid_t g, const char *gpath, const lc_model *m, const lc_lora *lora,
                              float *base) {
    extra_scan scan = {lora, ""};
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, extra_walk, &scan);
    if (rc < 0) return lc_error(LC_STATUS_INPUT, "%s: group %s: cannot list its members", path, gpath);
    if (rc > 0) {
        char targets[256];
        targets_string(targets, sizeof targets, lora->cfg.targets);
        return lc_error(LC_STATUS_INPUT,
                        "%s: adapter has module %s/%s which the LoRA being loaded (targets %s, %d layers) "
                        "does not adapt",
                        path, gpath, scan.extra, targets, lora->n_layers);
    }
    for (int layer = 0; layer < lora->n_layers; layer++) {
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_lora_ref *ref = lc_lora_get(lora, layer, (lc_linear_kind)k);
            if (!ref) continue;
            const lc_linear *lin = &m->layers[layer].lin[k];
            char name[MAX_NAME], obj[512], dobj[600];
            module_name(name, sizeof name, layer, (lc_linear_kind)k);
            snprintf(obj, sizeof obj, "%s/%s", gpath, name);
            htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
            if (ex == 0)
                return lc_error(LC_STATUS_INPUT, "%s: dataset %s/A: missing (the checkpoint does not adapt %s)", path,
                                obj, name);
            hid_t mg = ex < 0 ? -1 : H5Gopen2(g, name, H5P_DEFAULT);
            if (mg < 0) return lc_error(LC_STATUS_INPUT, "%s: %s: not a readable group", path, obj);
            snprintf(dobj, sizeof dobj, "%s/A", obj);
            lc_status st = read_matrix(path, mg, "A", dobj, ref->r, lin->in, base + (ref->A - lora->params));
            if (!st) {
                snprintf(dobj, sizeof dobj, "%s/B", obj);
                st = read_matrix(path, mg, "B", dobj, lin->out, ref->r, base + (ref->B - lora->params));
            }
            H5Gclose(mg);
            if (st) return st;
        }
    }
    return LC_STATUS_OK;
}

lc_status lc_checkpoint_load(const char *path, const lc_model *m, lc_lora *lora, lc_adamw *opt) {
    h5_quiet();
    if (!m || !lora || !lora->params || !lora->refs)
        return lc_error(LC_STATUS_RUNTIME, "%s: checkpoint load: adapter not initialized", path ? path : "(null)");
    if (lora->n_layers != m->cfg.n_layers)
        return lc_error(LC_STATUS_RUNTIME, "%s: adapter has %d layers but the model %d", path ? path : "(null)",
                        lora->n_layers, m->cfg.n_layers);
    if (opt && (opt->n != lora->n_params || (opt->n && (!opt->m || !opt->v))))
        return lc_error(LC_STATUS_RUNTIME, "%s: optimizer holds %zu moments but the adapter %zu parameters",
                        path ? path : "(null)", opt->n, lora->n_params);
    hid_t file;
    lc_status st = open_and_check(path, &file);
    if (st) return st;
    hid_t g = -1, go = -1, gm = -1;
    if ((st = open_group(path, file, "lora", "/lora", &g)) ||
        (st = read_modules(path, g, "/lora", m, lora, lora->params)))
        goto done;
    if (!opt) goto done;
    htri_t has_opt = H5Lexists(file, "optimizer", H5P_DEFAULT);
    if (has_opt == 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: group /optimizer: missing (the checkpoint holds an adapter only)", path);
        goto done;
    }
    int64_t step = 0;
    if ((st = open_group(path, file, "optimizer", "/optimizer", &go)) ||
        (st = read_count(path, go, "/optimizer", "step", &step)) ||
        (st = open_group(path, go, "exp_avg", "/optimizer/exp_avg", &gm)) ||
        (st = read_modules(path, gm, "/optimizer/exp_avg", m, lora, opt->m)))
        goto done;
    H5Gclose(gm);
    if ((st = open_group(path, go, "exp_avg_sq", "/optimizer/exp_avg_sq", &gm)) ||
        (st = read_modules(path, gm, "/optimizer/exp_avg_sq", m, lora, opt->v)))
        goto done;
    opt->step = step;
done:
    if (gm >= 0) H5Gclose(gm);
    if (go >= 0) H5Gclose(go);
    if (g >= 0) H5Gclose(g);
    H5Fclose(file);
    return st;
}
