// Merging an adapter into a base linear (fp32), and the file helpers the
// export writers share: mkdir -p and whole-file atomic writes.

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "autograd/blas.h"
#include "common/file.h"
#include "export/export.h"
#include "model/arch.h"

void lc_export_merge_weight(float *out, const lc_linear *lin, const lc_lora_ref *ref) {
    lc_weight_dequant(out, &lin->w, 0, lin->out, 0, lin->in, lin->in);
    if (!ref) return;
    // out[out, in] += scale · B[out, r] · A[r, in]
    lc_blas_sgemm(false, false, lin->out, lin->in, ref->r, ref->scale, ref->B, ref->r, ref->A, lin->in, 1.0f, out,
                  lin->in);
}

void lc_export_merge_linear(float *out, const lc_model *m, const lc_lora *lora, int layer, lc_linear_kind kind) {
    const lc_linear *lin = &m->layers[layer].lin[kind];
    if (!lin->out) return; // the family has no such projection
    lc_export_merge_weight(out, lin, lora ? lc_lora_get(lora, layer, kind) : NULL);
}

const char *lc_export_match_module(const lc_model_config *cfg, const char *s, bool short_ok, int *layer,
                                   lc_linear_kind *kind) {
    lc_arch_names n;
    lc_arch_names_get(&n, cfg);
    // The layer path is a printf format with one %d: "model.layers.%d".
    const char *d = strstr(n.layer, "%d");
    if (!d) return NULL;
    size_t pre = (size_t)(d - n.layer);
    const char *p = NULL;
    if (strncmp(s, n.layer, pre) == 0) {
        p = s + pre;
    } else if (short_ok && n.optional_prefix) {
        size_t op = strlen(n.optional_prefix);
        if (op <= pre && strncmp(n.layer, n.optional_prefix, op) == 0 && strncmp(s, n.layer + op, pre - op) == 0)
            p = s + (pre - op);
    }
    if (!p || *p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return NULL;
    long l = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        l = l * 10 + (*p - '0');
        if (l > 1000000) return NULL;
    }
    const char *post = d + 2; // what follows the layer number in the path ("" in every family)
    size_t post_len = strlen(post);
    if (strncmp(p, post, post_len) != 0 || p[post_len] != '.') return NULL;
    p += post_len + 1;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        const char *path = n.lin[k];
        if (!path || !((lc_model_linear_kinds(cfg) >> k) & 1)) continue;
        size_t len = strlen(path);
        if (strncmp(p, path, len) == 0 && (p[len] == '.' || p[len] == '\0')) {
            *layer = (int)l;
            *kind = (lc_linear_kind)k;
            return p + len;
        }
    }
    return NULL;
}

lc_status lc_export_undo_begin(lc_export_undo *u, const char *dir, const char *const *names, int n_names) {
    memset(u, 0, sizeof *u);
    if (strlen(dir) >= sizeof u->dir) return lc_error(LC_STATUS_INPUT, "%s: path too long", dir);
    memcpy(u->dir, dir, strlen(dir) + 1);
    u->names = names;
    u->n_names = n_names < 64 ? n_names : 64;
    // Folders first: in "new/../had" the names in had can be looked at only once new is there.
    u->existed = ~0ull; // until looked at, every name counts as there: an undo then removes none
    lc_status st = lc_dir_create_made(dir, &u->made);
    if (st) return st;
    u->existed = 0;
    char path[4096];
    // Anything there by that name (a folder, a link) counts, and so does what cannot be looked
    // at: remove() would take an empty folder too.
    for (int i = 0; i < u->n_names; i++) {
        struct stat sb;
        if (lc_path_join(path, sizeof path, dir, names[i]) || lstat(path, &sb) == 0 || errno != ENOENT)
            u->existed |= 1ull << i;
    }
    return LC_STATUS_OK;
}

void lc_export_undo_fail(const lc_export_undo *u) {
    char path[4096];
    for (int i = 0; i < u->n_names; i++)
        if (!(u->existed >> i & 1) && !lc_path_join(path, sizeof path, u->dir, u->names[i])) remove(path);
    lc_dir_remove_made(&u->made);
}

// cJSON_Print indents with tabs and puts a tab after each colon; Hugging Face
// files use two spaces and ": ". Raw tabs occur only as that formatting (cJSON
// escapes them inside strings), so rewriting them is safe. Caller frees.
char *lc_export_json_print(const cJSON *root);

char *lc_export_json_print(const cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) return NULL;
    size_t n = strlen(text), tabs = 0;
    for (size_t i = 0; i < n; i++) tabs += text[i] == '\t';
    char *out = malloc(n + tabs + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    size_t o = 0;
    int line_start = 1;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (c == '\t') {
            if (line_start) {
                out[o++] = ' ';
                out[o++] = ' ';
            } else {
                out[o++] = ' ';
            }
            continue;
        }
        line_start = c == '\n';
        out[o++] = c;
    }
    out[o++] = '\n';
    out[o] = '\0';
    free(text);
    return out;
}

size_t lc_export_merged_extent(const lc_model *m, const lc_lora *lora, int *n_adapted) {
    size_t max = 0;
    int n = 0;
    for (int l = 0; lora && l < m->cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            if (!lc_lora_get(lora, l, (lc_linear_kind)k)) continue;
            size_t size = (size_t)m->layers[l].lin[k].out * (size_t)m->layers[l].lin[k].in;
            if (size > max) max = size;
            n++;
        }
    lc_lora_expert x;
    for (int i = 0; lc_lora_expert_next(lora, m, &i, &x); n++)
        if ((size_t)x.lin->out * (size_t)x.lin->in > max) max = (size_t)x.lin->out * (size_t)x.lin->in;
    if (n_adapted) *n_adapted = n;
    return max;
}
