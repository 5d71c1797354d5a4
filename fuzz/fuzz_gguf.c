// fuzz_gguf: a GGUF file -> lc_gguf_open; then every KV (typed getters on
// a bounded number of items) and every tensor (lookup, F32/F16/BF16 data
// converted when small).
#include "fuzz_common.h"

#include "common/status.h"
#include "export/gguf.h"

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
    lc_gguf_close(&f);
    return 0;
}
