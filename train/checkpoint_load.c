// Reading HDF5 checkpoints. Nothing in the file is trusted: every
// attribute's type and size and every dataset's rank, type and shape is
// checked before anything is read, and a file that is not HDF5, is
// truncated, or holds other tensors than the LoRA being loaded is refused
// with LC_STATUS_INPUT naming the path and the object.
#include "train/checkpoint_internal.h"
#include "train/isolate.h"

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

// A decimal index 0..1023 at *p; advances *p past it. -1 if there is none.
static long layer_index(const char **p) {
    if (**p < '0' || **p > '9') return -1;
    char *end;
    long v = strtol(*p, &end, 10);
    *p = end;
    return v < LC_LORA_MAX_LAYERS ? v : -1;
}

// "0,2,5-9", the layers attribute of /lora (lc_lora_layers_string): each
// index once, in 0..1023 (the model's count is checked when the adapter is
// loaded for it).
static lc_status parse_layers(const char *path, const char *s, lc_lora_config *cfg) {
    memset(cfg->layers, 0, sizeof cfg->layers);
    cfg->layers_last = 0;
    const char *p = s;
    do {
        long first = layer_index(&p), last = first;
        if (first >= 0 && *p == '-') {
            p++;
            last = layer_index(&p);
        }
        if (first < 0 || last < first || (*p && *p != ','))
            return lc_error(LC_STATUS_INPUT, "%s: attribute 'layers' of /lora: \"%.64s\" is not a list of layer "
                            "indices 0..%d", path, s, LC_LORA_MAX_LAYERS - 1);
        for (long v = first; v <= last; v++) {
            if (cfg->layers[v / 64] >> (v % 64) & 1)
                return lc_error(LC_STATUS_INPUT, "%s: attribute 'layers' of /lora: layer %ld is listed twice", path,
                                v);
            cfg->layers[v / 64] |= 1ull << (v % 64);
        }
    } while (*p++ == ',');
    return LC_STATUS_OK;
}

static lc_status read_lora_config(const char *path, hid_t file, lc_lora_config *cfg) {
    hid_t g;
    lc_status st = open_group(path, file, "lora", "/lora", &g);
    if (st) return st;
    int64_t r = 0, rslora = 0;
    double alpha = 0, dropout = 0;
    char *targets = NULL, *layers = NULL;
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
    // Checkpoints before lora.layers have no such attribute: every layer.
    htri_t has_layers = H5Aexists(g, "layers");
    if (has_layers < 0) {
        st = lc_error(LC_STATUS_INPUT, "%s: attribute 'layers' of /lora: unreadable", path);
        goto done;
    }
    if (has_layers && ((st = read_str(path, g, "/lora", "layers", MAX_SHORT_STRING * 2, &layers)) ||
                       (st = parse_layers(path, layers, cfg))))
        goto done;
    cfg->r = (int)r;
    cfg->alpha = (float)alpha;
    cfg->dropout = (float)dropout;
    cfg->rslora = rslora != 0;
done:
    free(targets);
    free(layers);
    H5Gclose(g);
    return st;
}

void lc_checkpoint_info_free(lc_checkpoint_info *info) {
    if (!info) return;
    free(info->config_json);
    free(info->base_fingerprint);
    memset(info, 0, sizeof *info);
}

static lc_status read_info_direct(const char *path, lc_checkpoint_info *info) {
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
    // Optional: older checkpoints do not record it.
    info->elapsed_s = -1;
    htri_t has_elapsed = H5Aexists(file, "elapsed_s");
    if (has_elapsed != 0) {
        if ((st = read_f64(path, file, "/", "elapsed_s", &info->elapsed_s))) goto done;
        if (!(info->elapsed_s >= 0 && info->elapsed_s < 1e12)) {
            st = lc_error(LC_STATUS_INPUT, "%s: attribute 'elapsed_s' of /: %g is not a time in seconds", path,
                          info->elapsed_s);
            goto done;
        }
    }
    // Optional too: tells a finished run (epochs count their steps) from a stopped one.
    info->total_steps = 0;
    if (H5Aexists(file, "total_steps") != 0 &&
        (st = read_count(path, file, "/", "total_steps", &info->total_steps)))
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
    const lc_model *m;
    const lc_lora *lora;
    char extra[MAX_NAME];
} extra_scan;

static herr_t extra_walk(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    extra_scan *s = data;
    ckpt_module mod;
    for (int i = 0; ckpt_module_next(s->m, s->lora, &i, &mod);)
        if (strcmp(name, mod.name) == 0) return 0;
    snprintf(s->extra, sizeof s->extra, "%s", name);
    return 1; // stop: found one the LoRA does not have
}

// Reads every adapted module's A and B from group `g` (path `gpath`) into
// `base`, an array laid out like lora->params; refuses modules in the file
// that the LoRA does not adapt.
static lc_status read_modules(const char *path, hid_t g, const char *gpath, const lc_model *m, const lc_lora *lora,
                              float *base) {
    extra_scan scan = {m, lora, ""};
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
    ckpt_module mod;
    for (int i = 0; ckpt_module_next(m, lora, &i, &mod);) {
        {
            const lc_lora_ref *ref = mod.ref;
            const lc_linear *lin = mod.lin;
            const char *name = mod.name;
            char obj[512], dobj[600];
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

static lc_status load_direct(const char *path, const lc_model *m, lc_lora *lora, lc_adamw *opt) {
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

// The public readers run the HDF5 calls in a child process (train/isolate.h)
// and copy what it read out of shared memory.

typedef struct info_payload {
    lc_checkpoint_info info; // its strings travel in the buffers below
    size_t config_len, fingerprint_len;
    int has_config, has_fingerprint;
    char fingerprint[MAX_SHORT_STRING + 1];
    char config[MAX_CONFIG_BYTES + 1];
} info_payload;

typedef struct info_job {
    const char *path;
} info_job;

static lc_status info_child(void *ctx, void *out) {
    info_job *job = ctx;
    info_payload *p = out;
    lc_checkpoint_info info;
    lc_status st = read_info_direct(job->path, &info);
    if (st) return st;
    p->info = info;
    if (info.config_json) {
        p->has_config = 1;
        p->config_len = strlen(info.config_json);
        memcpy(p->config, info.config_json, p->config_len + 1);
    }
    if (info.base_fingerprint) {
        p->has_fingerprint = 1;
        p->fingerprint_len = strlen(info.base_fingerprint);
        memcpy(p->fingerprint, info.base_fingerprint, p->fingerprint_len + 1);
    }
    return LC_STATUS_OK;
}

lc_status lc_checkpoint_read_info(const char *path, lc_checkpoint_info *info) {
    memset(info, 0, sizeof *info);
    info_job job = {path};
    void *out;
    lc_status st = lc_isolated_call(path, sizeof(info_payload), info_child, &job, &out);
    if (st) return st;
    info_payload *p = out;
    *info = p->info;
    int has_config = p->has_config, has_fingerprint = p->has_fingerprint;
    info->config_json = has_config ? strndup(p->config, MAX_CONFIG_BYTES) : NULL;
    info->base_fingerprint = has_fingerprint ? strndup(p->fingerprint, MAX_SHORT_STRING) : NULL;
    lc_isolated_free(out, sizeof(info_payload));
    if ((has_config && !info->config_json) || (has_fingerprint && !info->base_fingerprint)) {
        lc_checkpoint_info_free(info);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    return LC_STATUS_OK;
}

typedef struct load_job {
    const char *path;
    const lc_model *m;
    lc_lora *lora;
    lc_adamw *opt;
} load_job;

// Payload: params [n], then with an optimizer m [n], v [n] and the step.
static lc_status load_child(void *ctx, void *out) {
    load_job *job = ctx;
    lc_status st = load_direct(job->path, job->m, job->lora, job->opt);
    if (st) return st;
    size_t n = job->lora->n_params;
    float *dst = out;
    memcpy(dst, job->lora->params, sizeof(float) * n);
    if (job->opt) {
        memcpy(dst + n, job->opt->m, sizeof(float) * n);
        memcpy(dst + 2 * n, job->opt->v, sizeof(float) * n);
        memcpy(dst + 3 * n, &job->opt->step, sizeof job->opt->step);
    }
    return LC_STATUS_OK;
}

lc_status lc_checkpoint_load(const char *path, const lc_model *m, lc_lora *lora, lc_adamw *opt) {
    if (!lora || !lora->params) return load_direct(path, m, lora, opt); // reports the misuse
    size_t n = lora->n_params;
    size_t bytes = sizeof(float) * n * (opt ? 3 : 1) + (opt ? sizeof opt->step : 0);
    load_job job = {path, m, lora, opt};
    void *out;
    lc_status st = lc_isolated_call(path, bytes, load_child, &job, &out);
    if (st) return st;
    const float *src = out;
    memcpy(lora->params, src, sizeof(float) * n);
    if (opt) {
        memcpy(opt->m, src + n, sizeof(float) * n);
        memcpy(opt->v, src + 2 * n, sizeof(float) * n);
        memcpy(&opt->step, src + 3 * n, sizeof opt->step);
    }
    lc_isolated_free(out, bytes);
    return LC_STATUS_OK;
}
