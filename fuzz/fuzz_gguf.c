// fuzz_gguf: a GGUF file -> lc_gguf_open; then every KV (typed getters on
// a bounded number of items) and every tensor (lookup, data converted when
// small); then the file as a base model (lc_model_load: metadata, names,
// shapes, q/k reordering, typed weights, each linear's first row
// dequantized) and its vocabulary as a tokenizer (encoding a short text).
#include <cJSON.h>

#include "fuzz_common.h"

#include "common/status.h"
#include "data/tokenizer.h"
#include "export/gguf.h"
#include "model/gguf_model.h"
#include "model/model.h"

static float row[1 << 16];

// The model loader and the vocabulary conversion on the same file.
static void as_base(const char *path, const lc_gguf_file *f) {
    lc_model m;
    if (lc_fuzz_note(lc_model_load(&m, path), "gguf model") == LC_STATUS_OK) {
        for (int l = 0; l < m.cfg.n_layers; l++)
            for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
                const lc_linear *lin = &m.layers[l].lin[k];
                if (lin->out && lin->in <= (int)(sizeof row / sizeof row[0]))
                    lc_weight_dequant(row, &lin->w, 0, 1, 0, lin->in, lin->in);
            }
        lc_model_free(&m);
    }
    cJSON *tj, *cj;
    if (lc_fuzz_note(lc_gguf_tokenizer_json(f, &tj, &cj), "gguf vocab") != LC_STATUS_OK) return;
    lc_tokenizer *tok;
    if (lc_fuzz_note(lc_tokenizer_load_json(&tok, tj, cj, path), "gguf tokenizer") == LC_STATUS_OK) {
        int32_t *ids = NULL;
        size_t cap = 0, n;
        static const char text[] = "Hello world, 123 \xC3\xA9t\xC3\xA9!";
        (void)lc_tokenizer_encode(tok, text, sizeof text - 1, true, &ids, &cap, &n);
        free(ids);
        lc_tokenizer_free(tok);
    }
    cJSON_Delete(tj);
    cJSON_Delete(cj);
}

static float scratch[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = lc_fuzz_path(0, NULL, "in.gguf");
    lc_fuzz_write(path, data, size);
    lc_gguf_file f;
    if (lc_fuzz_note(lc_gguf_open(&f, path), "gguf") != LC_STATUS_OK) return 0;
    for (size_t i = 0; i < f.n_kvs; i++) {
        const lc_gguf_kv *kv = &f.kvs[i];
        if (lc_gguf_find_kv(&f, kv->key) != kv) __builtin_trap();
        (void)lc_gguf_vtype_name(kv->type);
        (void)lc_gguf_vtype_name(kv->item_type);
        uint64_t lim = kv->n < 64 ? kv->n : 64;
        for (uint64_t j = 0; j <= lim; j++) { // j == n: out of range
            int64_t iv;
            double dv;
            lc_gguf_str sv;
            (void)lc_gguf_kv_int(kv, j, &iv);
            (void)lc_gguf_kv_float(kv, j, &dv);
            if (lc_gguf_kv_str(kv, j, &sv)) {
                if (sv.len && (sv.s < (const char *)f.map.data || sv.s + sv.len > (const char *)f.map.data + f.map.size))
                    __builtin_trap();
                volatile unsigned char c = 0;
                for (size_t k = 0; k < sv.len; k++) c ^= (unsigned char)sv.s[k];
                (void)c;
            }
        }
        if (kv->n > 0) {
            int64_t iv;
            (void)lc_gguf_kv_int(kv, kv->n - 1, &iv);
        }
    }
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_gguf_tensor *t = &f.tensors[i];
        if (lc_gguf_find_tensor(&f, t->name) != t) __builtin_trap();
        (void)lc_ggml_type_name(t->type);
        if (t->nbytes && (t->data < f.map.data || t->data + t->nbytes > f.map.data + f.map.size)) __builtin_trap();
        if (t->n_elements >= 0 && t->n_elements <= (int64_t)(sizeof scratch / sizeof scratch[0]))
            (void)lc_gguf_tensor_to_f32(&f, t, scratch);
    }
    as_base(path, &f);
    lc_gguf_close(&f);
    return 0;
}
