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
