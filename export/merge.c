// Merging an adapter into a base linear (fp32), and the file helpers the
// export writers share: mkdir -p and whole-file atomic writes.
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "export/export.h"

void lc_export_merge_linear(float *out, const lc_model *m, const lc_lora *lora, int layer, lc_linear_kind kind) {
    const lc_linear *lin = &m->layers[layer].lin[kind];
    memcpy(out, lc_linear_weight_f32(lin), sizeof(float) * (size_t)lin->out * (size_t)lin->in);
    const lc_lora_ref *ref = lora ? lc_lora_get(lora, layer, kind) : NULL;
    if (!ref) return;
    // out[out, in] += scale · B[out, r] · A[r, in]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, lin->out, lin->in, ref->r, ref->scale, ref->B, ref->r,
                ref->A, lin->in, 1.0f, out, lin->in);
}

// Used by peft.c and hf.c (declared there; there is no private header).
lc_status lc_export_mkdir_p(const char *dir);
lc_status lc_export_write_atomic(const char *path, const void *data, size_t len);
lc_status lc_export_sync_dir(const char *dir);

lc_status lc_export_mkdir_p(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return lc_error(LC_STATUS_INPUT, "%s: invalid output folder name", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return lc_error(LC_STATUS_RUNTIME, "%s: cannot create folder: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat s;
    if (stat(dir, &s) != 0 || !S_ISDIR(s.st_mode))
        return lc_error(LC_STATUS_INPUT, "%s: exists and is not a folder", dir);
    return LC_STATUS_OK;
}

// fsync of the folder, so that a rename into it is durable.
lc_status lc_export_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return lc_error(LC_STATUS_RUNTIME, "%s: cannot open folder: %s", dir, strerror(errno));
    int ok = fsync(fd) == 0 || errno == EINVAL; // some file systems cannot sync folders
    int err = errno;
    close(fd);
    return ok ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "%s: fsync failed: %s", dir, strerror(err));
}

lc_status lc_export_write_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return lc_error(LC_STATUS_INPUT, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(tmp);
        return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(err));
    }
    return LC_STATUS_OK;
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
