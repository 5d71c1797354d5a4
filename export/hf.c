// Merged Hugging Face export: the base folder's tensors (same names, shapes
// and order of names, whatever the family) in the requested dtype, each
// adapted linear replaced by W + scale · B · A computed in fp32 (and stored
// [in, out] again for Conv1D families). Every other tensor is read from the
// source file, never from the loader's converted copies (Gemma's 1 + w
// norms, transposed Conv1D weights). model.safetensors is streamed: the
// header is computed from shapes first, then one tensor at a time is
// converted and written, so memory stays at one merged linear. A head tensor
// that a tied config leaves unused is dropped.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "export/export.h"
#include "model/arch.h"
#include "model/gguf_model.h"

#define HF_CHUNK (1u << 20) // elements converted per write

static const char *dtype_st_name(lc_dtype d) {
    return d == LC_DTYPE_F32 ? "F32" : d == LC_DTYPE_F16 ? "F16" : "BF16";
}

static const char *dtype_torch_name(lc_dtype d) {
    return d == LC_DTYPE_F32 ? "float32" : d == LC_DTYPE_F16 ? "float16" : "bfloat16";
}

// The linear whose weight tensor `name` is, and its adapter, if the adapter
// changes it: a layer's own linear or an expert's projection. The source's
// names are the family's module paths, with or without its optional key
// prefix (GPT-2 checkpoints say "h.0.attn.c_attn.weight").
static int merged_target(const char *name, const lc_model *m, const lc_lora *lora, const lc_linear **lin,
                         const lc_lora_ref **ref) {
    if (!lora) return 0;
    int l, e;
    lc_linear_kind k;
    lc_expert_proj j;
    const char *rest = lc_export_match_module(&m->cfg, name, true, &l, &k);
    if (rest && strcmp(rest, ".weight") == 0 && l < m->cfg.n_layers && (*ref = lc_lora_get(lora, l, k))) {
        *lin = &m->layers[l].lin[k];
        return 1;
    }
    rest = lc_arch_match_expert(&m->cfg, name, &l, &e, &j);
    if (!rest || strcmp(rest, ".weight") != 0 || !(*ref = lc_lora_get_expert(lora, l, e, j))) return 0;
    *lin = lc_model_expert_linear(m, l, e, j);
    return *lin != NULL;
}

// Whether the source tensor is a head the tied model does not use: it is left
// out, so transformers cannot load it over the embeddings either.
static int dropped(const lc_st_tensor *t, const lc_model *m) {
    return m->ignored_head && strcmp(t->name, m->ignored_head) == 0;
}

// Output dtype of a base tensor: floating tensors take `dtype`, anything else
// (integer buffers) is copied as it is.
static int converts(const lc_st_tensor *t) { return t->dtype != LC_DTYPE_OTHER; }

static lc_status write_header(FILE *f, const lc_model *m, lc_dtype dtype, const char *path) {
    const lc_st_set *set = &m->st;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) {
        cJSON_Delete(root);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    uint64_t offset = 0;
    for (int i = 0; i < set->n_tensors; i++) {
        const lc_st_tensor *t = &set->tensors[i];
        if (dropped(t, m)) continue;
        uint64_t nbytes = converts(t) ? (uint64_t)t->n_elements * lc_dtype_size(dtype) : t->nbytes;
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!shape || !offs || !cJSON_AddStringToObject(e, "dtype", converts(t) ? dtype_st_name(dtype) : t->dtype_name)) {
            cJSON_Delete(root);
            return lc_error(LC_STATUS_RUNTIME, "out of memory");
        }
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += nbytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!header) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(header);
    return ok ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(errno));
}

// A GGUF Gemma base stores its norms as 1 + w (the converter added the 1);
// Hugging Face's are w.
static bool minus_one(const lc_model *m, const lc_st_tensor *t) {
    size_t n = strlen(t->name);
    return m->from_gguf && (m->cfg.arch == LC_ARCH_GEMMA || m->cfg.arch == LC_ARCH_GEMMA2) && n > 11 &&
           !strcmp(t->name + n - 11, "norm.weight");
}

// Writes n values as dtype, a chunk at a time: fp32 `src`, or when src is NULL
// the tensor t converted through fp32 (whole rows at a time: quantized blocks
// never cross a row), less 1 when `sub1`. fbuf holds HF_CHUNK values or one row.
static int write_converted(FILE *f, const float *src, const lc_st_tensor *t, int64_t n, lc_dtype dtype, float *fbuf,
                           unsigned char *obuf, bool sub1) {
    int64_t cols = src || !t->n_dims || t->shape[t->n_dims - 1] < 1 ? 1 : t->shape[t->n_dims - 1];
    int64_t step = src ? HF_CHUNK : (HF_CHUNK / cols > 0 ? HF_CHUNK / cols : 1) * cols;
    size_t row_bytes = src ? 0 : lc_wtype_row_bytes((lc_wtype)t->dtype, cols);
    for (int64_t at = 0; at < n; at += step) {
        int64_t c = n - at < step ? n - at : step;
        const float *x = src ? src + at : fbuf;
        if (!src) { // whole rows of the tensor, converted to fp32
            lc_st_tensor slice = *t;
            slice.data = t->data + (size_t)(at / cols) * row_bytes;
            slice.n_elements = c;
            lc_st_tensor_to_f32(&slice, fbuf);
            if (sub1)
                for (int64_t i = 0; i < c; i++) fbuf[i] -= 1.0f;
        }
        size_t bytes;
        if (dtype == LC_DTYPE_F32) {
            bytes = sizeof(float) * (size_t)c;
            if (fwrite(x, 1, bytes, f) != bytes) return 0;
            continue;
        }
        for (int64_t i = 0; i < c; i++) {
            uint16_t h = dtype == LC_DTYPE_F16 ? lc_f32_to_f16(x[i]) : lc_f32_to_bf16(x[i]);
            memcpy(obuf + 2 * i, &h, 2);
        }
        bytes = 2 * (size_t)c;
        if (fwrite(obuf, 1, bytes, f) != bytes) return 0;
    }
    return 1;
}

static lc_status write_model(const char *path, const lc_model *m, const lc_lora *lora, lc_dtype dtype) {
    const lc_st_set *set = &m->st;
    int n_adapted;
    size_t max_merged = lc_export_merged_extent(m, lora, &n_adapted);
    int transposed = m->cfg.weights_transposed;
    float *merged = malloc(sizeof(float) * (max_merged + 1));
    float *flip = transposed ? malloc(sizeof(float) * (max_merged + 1)) : NULL;
    size_t chunk = HF_CHUNK; // or one row, if longer
    for (int i = 0; i < set->n_tensors; i++)
        if (set->tensors[i].n_dims && (size_t)set->tensors[i].shape[set->tensors[i].n_dims - 1] > chunk)
            chunk = (size_t)set->tensors[i].shape[set->tensors[i].n_dims - 1];
    float *fbuf = malloc(sizeof(float) * chunk);
    unsigned char *obuf = malloc(sizeof(float) * chunk);
    char tmp[4096];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = NULL;
    lc_status st = lc_file_check_replaceable(path);
    if (!st && (!merged || !fbuf || !obuf || (transposed && !flip))) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (!st && (len < 0 || (size_t)len >= sizeof tmp)) st = lc_error(LC_STATUS_INPUT, "%s: path too long", path);
    if (!st && !(f = fopen(tmp, "wb")))
        st = lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
    if (!st) st = write_header(f, m, dtype, path);
    int ok = 1, n_merged = 0;
    for (int i = 0; !st && ok && i < set->n_tensors; i++) {
        const lc_st_tensor *t = &set->tensors[i];
        const lc_linear *lin;
        const lc_lora_ref *ref;
        if (dropped(t, m)) continue;
        if (merged_target(t->name, m, lora, &lin, &ref)) {
            if (t->n_elements != (int64_t)lin->out * lin->in) { // the loader checked the shape
                st = lc_error(LC_STATUS_RUNTIME, "%s: tensor %s does not match the loaded model", path, t->name);
                break;
            }
            lc_export_merge_weight(merged, lin, ref);
            const float *w = merged;
            if (transposed) { // [out, in] back to Conv1D's [in, out]
                for (int o = 0; o < lin->out; o++)
                    for (int c = 0; c < lin->in; c++) flip[(size_t)c * lin->out + o] = merged[(size_t)o * lin->in + c];
                w = flip;
            }
            ok = write_converted(f, w, NULL, t->n_elements, dtype, fbuf, obuf, false);
            n_merged++;
        } else if (!converts(t) || (t->dtype == dtype && !minus_one(m, t))) {
            ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
        } else {
            ok = write_converted(f, NULL, t, t->n_elements, dtype, fbuf, obuf, minus_one(m, t));
        }
    }
    // Every adapted linear must have been found among the source's tensors.
    if (!st && ok && n_merged != n_adapted)
        st = lc_error(LC_STATUS_RUNTIME, "%s: the base's tensors hold %d of the %d adapted weights", path, n_merged,
                      n_adapted);
    if (!st && ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (!st && !ok) st = lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !st) st = lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(errno));
    if (st && f) remove(tmp);
    if (!st) st = lc_file_sync_parent(path);
    free(merged);
    free(flip);
    free(fbuf);
    free(obuf);
    return st;
}

// End of the JSON value starting at p (a string, number, literal, object or
// array); the text is known to be valid JSON.
static const char *skip_value(const char *p) {
    int depth = 0;
    do {
        if (*p == '"') {
            for (p++; *p != '"'; p++)
                if (*p == '\\') p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (depth == 0) { // number or literal
            while (*p && !strchr(",}] \t\r\n", *p)) p++;
            return p;
        }
        p++;
    } while (depth > 0);
    return p;
}

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return p;
}

// Sets the top-level key of a JSON object text to the string value, leaving
// every other byte as it was (so 10000.0 stays 10000.0). Caller frees.
static char *json_text_set(const char *text, const char *key, const char *value, int add_if_missing) {
    size_t klen = strlen(key), n = strlen(text);
    const char *p = skip_space(text) + 1; // past '{'
    for (;;) {
        p = skip_space(p);
        if (*p != '"') break; // '}' of the object
        const char *k = p + 1, *v = skip_space(skip_space(skip_value(p)) + 1);
        const char *after = skip_value(v);
        if (strncmp(k, key, klen) == 0 && k[klen] == '"') {
            char *out = malloc(n + strlen(value) + 3);
            if (!out) return NULL;
            sprintf(out, "%.*s\"%s\"%s", (int)(v - text), text, value, after);
            return out;
        }
        p = skip_space(after);
        if (*p == ',') p++;
    }
    if (!add_if_missing) return strdup(text);
    // Before the closing brace, after the last member.
    const char *close = text + n;
    while (close > text && *close != '}') close--;
    const char *last = close;
    while (last > text && strchr(" \t\r\n", last[-1])) last--;
    int empty = last > text && last[-1] == '{';
    char *out = malloc(n + klen + strlen(value) + 16);
    if (!out) return NULL;
    sprintf(out, "%.*s%s\n  \"%s\": \"%s\"\n%s", (int)(last - text), text, empty ? "" : ",", key, value, close);
    return out;
}

// config.json of the base with torch_dtype (and "dtype", which newer
// transformers write instead, when present) set to the export dtype.
static lc_status write_config(const char *src, const char *dst, lc_dtype dtype) {
    char *text;
    size_t len;
    lc_status st = lc_file_read(src, 16u << 20, &text, &len);
    if (st) return st;
    cJSON *root;
    if ((st = lc_json_parse(text, len, src, &root))) {
        free(text);
        return st;
    }
    int is_object = cJSON_IsObject(root) && strlen(text) == len;
    cJSON_Delete(root);
    if (!is_object) {
        free(text);
        return lc_error(LC_STATUS_INPUT, "%s: not a JSON object", src);
    }
    char *a = json_text_set(text, "torch_dtype", dtype_torch_name(dtype), 1);
    char *b = a ? json_text_set(a, "dtype", dtype_torch_name(dtype), 0) : NULL;
    free(text);
    free(a);
    if (!b) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    st = lc_file_write_atomic(dst, b, strlen(b));
    free(b);
    return st;
}

static lc_status copy_file(const char *src, const char *dst) {
    char *data;
    size_t len;
    lc_status st = lc_file_read(src, (size_t)1 << 30, &data, &len);
    if (st) return st;
    st = lc_file_write_atomic(dst, data, len);
    free(data);
    return st;
}

// A JSON object to out_dir/name.
static lc_status write_json(const char *out_dir, const char *name, const cJSON *root) {
    char path[4096];
    lc_status st = lc_path_join(path, sizeof path, out_dir, name);
    if (st) return st;
    char *text = cJSON_Print(root);
    if (!text) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    st = lc_file_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

// The files a GGUF base has no folder for: config.json from its metadata,
// tokenizer.json and tokenizer_config.json (with its chat template) from
// tokenizer.ggml.*.
static lc_status write_gguf_files(const char *out_dir, const lc_model *m, lc_dtype dtype) {
    char *cfg = json_text_set(m->hf_config, "torch_dtype", dtype_torch_name(dtype), 1);
    if (!cfg) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    char path[4096];
    lc_status st = lc_path_join(path, sizeof path, out_dir, "config.json");
    if (!st) st = lc_file_write_atomic(path, cfg, strlen(cfg));
    free(cfg);
    if (st) return st;
    cJSON *tok, *tok_cfg;
    if ((st = lc_gguf_tokenizer_json(m->gguf, &tok, &tok_cfg))) return st;
    st = write_json(out_dir, "tokenizer.json", tok);
    if (!st) st = write_json(out_dir, "tokenizer_config.json", tok_cfg);
    cJSON_Delete(tok);
    cJSON_Delete(tok_cfg);
    return st;
}

// Every file lc_export_hf may write (a failed export removes those that were not there before).
static const char *const hf_copied[] = {
    "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
    "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
};
static const char *const hf_written[] = {
    "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
    "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt",
    "chat_template.jinja",
};

static lc_status export_hf(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                           lc_dtype dtype);

lc_status lc_export_hf(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                       lc_dtype dtype) {
    lc_export_undo undo;
    lc_status st = lc_export_undo_begin(&undo, out_dir, hf_written, (int)(sizeof hf_written / sizeof hf_written[0]));
    if (!st) st = export_hf(out_dir, model_dir, m, lora, dtype);
    if (st) lc_export_undo_fail(&undo);
    return st;
}

static lc_status export_hf(const char *out_dir, const char *model_dir, const lc_model *m, const lc_lora *lora,
                           lc_dtype dtype) {
    if (lc_gguf_fused_rows_reordered(m))
        return lc_error(LC_STATUS_USAGE, "%s: Hugging Face export from a GGUF %s base is not supported (llama.cpp's "
                        "converter reordered its fused query/key/value rows); export gguf or gguf-lora", out_dir,
                        lc_arch_name(m->cfg.arch));
    if (m->from_gguf && m->cfg.arch != LC_ARCH_QWEN2 && m->cfg.qkv_bias != m->cfg.o_bias)
        return lc_error(LC_STATUS_USAGE, "%s: this GGUF base has biases on %s only, which config.json's "
                        "attention_bias cannot say; export peft, gguf or gguf-lora", out_dir,
                        m->cfg.qkv_bias ? "q/k/v" : "the attention output");
    if (m->from_gguf && m->cfg.arch == LC_ARCH_GPT2)
        return lc_error(LC_STATUS_USAGE, "%s: Hugging Face export from a GGUF gpt2 base is not supported (its Conv1D "
                        "weights were transposed by llama.cpp's converter); export peft, gguf or gguf-lora", out_dir);
    if (dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_F16 && dtype != LC_DTYPE_BF16)
        return lc_error(LC_STATUS_INPUT, "HF export: dtype must be F32, F16 or BF16");
    if (lora && lora->n_layers != m->cfg.n_layers)
        return lc_error(LC_STATUS_INPUT, "HF export: the adapter has %d layers, the model %d", lora->n_layers,
                        m->cfg.n_layers);
    lc_status st;
    // Writing into the base folder would replace the files being read.
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(out_dir, a) && realpath(model_dir, b) && strcmp(a, b) == 0)
        return lc_error(LC_STATUS_INPUT, "%s: the output folder is the base model folder", out_dir);

    if (m->gguf && m->rope_freqs)
        return lc_error(LC_STATUS_USAGE, "%s: this GGUF base scales rope by rope_freqs (Llama 3.1 style), which "
                        "lora.c cannot write back as config.json's rope_scaling", out_dir);
    char src[4096], dst[4096];
    if ((st = lc_path_join(dst, sizeof dst, out_dir, "model.safetensors"))) return st;
    if ((st = write_model(dst, m, lora, dtype))) return st;
    if (m->gguf) return write_gguf_files(out_dir, m, dtype);
    if ((st = lc_path_join(src, sizeof src, model_dir, "config.json"))) return st;
    if ((st = lc_path_join(dst, sizeof dst, out_dir, "config.json"))) return st;
    if ((st = write_config(src, dst, dtype))) return st;
    for (size_t i = 0; i < sizeof hf_copied / sizeof hf_copied[0]; i++) {
        if ((st = lc_path_join(src, sizeof src, model_dir, hf_copied[i]))) return st;
        if (!lc_file_exists(src)) continue;
        if ((st = lc_path_join(dst, sizeof dst, out_dir, hf_copied[i]))) return st;
        if ((st = copy_file(src, dst))) return st;
    }
    return LC_STATUS_OK;
}
