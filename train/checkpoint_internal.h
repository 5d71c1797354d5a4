// Private to the checkpoint reader and writer: format constants and the
// HDF5 helpers both use.
#ifndef LC_CHECKPOINT_INTERNAL_H
#define LC_CHECKPOINT_INTERNAL_H

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

#include "train/checkpoint.h"

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

static inline herr_t reason_walk(unsigned n, const H5E_error2_t *e, void *data) {
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

static inline const char *h5_reason(char *buf, size_t cap) {
    buf[0] = '\0';
    h5_reason_buf r = {buf, cap};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_walk, &r);
    if (!buf[0]) snprintf(buf, cap, "unknown HDF5 error");
    return buf;
}

// Library code never prints: HDF5's automatic error reporting goes to stderr.
static inline void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// File access: closing the file closes every object still open in it (so an
// error path cannot leak a half-closed file), and file locking is used where
// the file system supports it.
static inline hid_t file_access_plist(int for_write) {
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

static inline void module_name(char *out, size_t cap, int layer, lc_linear_kind kind) {
    snprintf(out, cap, "model.layers.%d.%s.%s", layer, lc_linear_kind_parent(kind), lc_linear_kind_name(kind));
}

// One adapted linear as a checkpoint holds it: a layer's own
// ("model.layers.0.self_attn.q_proj") or an expert's projection
// ("model.layers.0.mlp.experts.3.gate_proj", "model.layers.0.mlp.shared_expert.up_proj").
typedef struct ckpt_module {
    char name[MAX_NAME];
    const lc_linear *lin;
    const lc_lora_ref *ref;
    bool fused; // a fused projection (qkv_proj, gate_up_proj)
} ckpt_module;

// The adapted linears in parameter order: *i from 0, true until none is left.
static inline bool ckpt_module_next(const lc_model *m, const lc_lora *lora, int *i, ckpt_module *out) {
    int n_own = lora->n_layers * LC_LINEAR_KIND_COUNT;
    for (; *i < n_own; (*i)++) {
        int layer = *i / LC_LINEAR_KIND_COUNT, k = *i % LC_LINEAR_KIND_COUNT;
        if (!(out->ref = lc_lora_get(lora, layer, (lc_linear_kind)k))) continue;
        module_name(out->name, sizeof out->name, layer, (lc_linear_kind)k);
        out->lin = &m->layers[layer].lin[k];
        out->fused = k == LC_LINEAR_KIND_QKV || k == LC_LINEAR_KIND_GATE_UP;
        (*i)++;
        return true;
    }
    int cursor = *i - n_own;
    lc_lora_expert x;
    if (!lc_lora_expert_next(lora, m, &cursor, &x)) return false;
    *i = n_own + cursor;
    if (x.expert < m->cfg.n_experts)
        snprintf(out->name, sizeof out->name, "model.layers.%d.mlp.experts.%d.%s", x.layer, x.expert,
                 lc_linear_kind_name(x.kind));
    else
        snprintf(out->name, sizeof out->name, "model.layers.%d.mlp.shared_expert.%s", x.layer,
                 lc_linear_kind_name(x.kind));
    out->lin = x.lin;
    out->ref = x.ref;
    out->fused = false;
    return true;
}

// "q_proj,v_proj,down_proj" in lc_linear_kind order.
static inline void targets_string(char *out, size_t cap, unsigned targets) {
    lc_lora_targets_string(out, cap, targets);
}

#endif
