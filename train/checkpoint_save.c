// Writing HDF5 checkpoints (layout in checkpoint.h). The file is built in
// memory, written to path + ".tmp", fsynced and renamed, so a crash leaves
// either the previous file or the new one, never half of one.
#include "train/checkpoint_internal.h"

#include "common/file.h"

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
    ckpt_module mod;
    for (int i = 0; !w->failed && ckpt_module_next(m, lora, &i, &mod);) {
        {
            const lc_lora_ref *ref = mod.ref;
            const lc_linear *lin = mod.lin;
            const char *name = mod.name;
            size_t off_a = (size_t)(ref->A - lora->params), off_b = (size_t)(ref->B - lora->params);
            char obj[512], desc[1024];
            snprintf(obj, sizeof obj, "%s/%s", ppath, name);
            bool fused = mod.fused;
            if (base == lora->params)
                snprintf(desc, sizeof desc, "LoRA adapter of %s (weight [out, in] = [%d, %d]%s): W x + scale * B A x",
                         name, lin->out, lin->in,
                         fused ? "; a fused projection, output rows in the base checkpoint's order" : "");
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
             "(step, epoch, data_index, rng_state), full config (JSON), base-model fingerprint and "
             "elapsed_s, the seconds of training up to this step");
    attr_str(w, file, "/", "format", FORMAT_NAME);
    attr_i64(w, file, "/", "format_version", FORMAT_VERSION);
    attr_i64(w, file, "/", "step", meta->step);
    attr_i64(w, file, "/", "epoch", meta->epoch);
    attr_i64(w, file, "/", "data_index", meta->data_index);
    attr_u64(w, file, "/", "rng_state", meta->rng_state);
    attr_str(w, file, "/", "config", meta->config_json);
    attr_str(w, file, "/", "base_fingerprint", meta->base_fingerprint);
    if (meta->elapsed_s >= 0) attr_f64(w, file, "/", "elapsed_s", meta->elapsed_s);
    if (meta->total_steps > 0) attr_i64(w, file, "/", "total_steps", meta->total_steps);

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
        // The adapted layers, resolved: "0-3" when a model of 4 has them all.
        char layers[LC_LORA_MAX_LAYERS * 5 + 1];
        lc_lora_layers_string(layers, sizeof layers, &lora->cfg);
        attr_str(w, g, "/lora", "layers", layers);
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
    lc_status replaceable = lc_file_check_replaceable(path); // a device or pipe named like a checkpoint stays
    if (replaceable) return replaceable;

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
    lc_status sync = lc_file_sync_parent(path);
    if (sync) return sync;
    return LC_STATUS_OK;

fail:
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    free(image);
    if (created) unlink(tmp);
    free(tmp);
    return lc_error(LC_STATUS_RUNTIME, "%s: cannot write checkpoint: %s", path, w.what);
}
