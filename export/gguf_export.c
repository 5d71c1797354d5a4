// The merged model as GGUF for llama.cpp: names, metadata and tokenizer as
// convert_hf_to_gguf.py writes them.
#include "export/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "export/export.h"
#include "export/gguf_internal.h"
#include "model/safetensors.h"

// ---------------------------------------------------------------- tokenizer

// Pre-tokenizer regexes as Hugging Face tokenizer.json files hold them, and
// the names llama.cpp's convert_hf_to_gguf.py gives them (tokenizer.ggml.pre).
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct pre_scan {
    bool bytelevel_regex, punctuation, digits, other;
    const char *named; // a Split regex with a known name
    bool falcon_digits;
    int n_split;
} pre_scan;

static void scan_pretok(const cJSON *p, pre_scan *s) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type)) return;
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) scan_pretok(e, s);
    } else if (!strcmp(t, "ByteLevel")) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if (!r || cJSON_IsTrue(r)) s->bytelevel_regex = true;
    } else if (!strcmp(t, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        s->n_split++;
        if (!cJSON_IsString(re)) return;
        const char *v = re->valuestring;
        if (!strcmp(v, GPT2_REGEX)) s->named = "gpt-2";
        else if (!strcmp(v, LLAMA3_REGEX)) s->named = "llama-bpe";
        else if (!strcmp(v, QWEN2_REGEX)) s->named = "qwen2";
        else if (!strcmp(v, "[0-9][0-9][0-9]")) s->falcon_digits = true;
    } else if (!strcmp(t, "Punctuation")) {
        s->punctuation = true;
    } else if (!strcmp(t, "Digits")) {
        s->digits = true;
    } else {
        s->other = true;
    }
}

// tokenizer.ggml.pre for a byte-level tokenizer.json ("default" when unknown).
static const char *pre_name(const char *tokenizer_json) {
    static const char *dflt = "default";
    if (!tokenizer_json) return dflt;
    cJSON *root = NULL;
    if (lc_json_load_file(tokenizer_json, GGUF_JSON_MAX, &root)) return dflt;
    pre_scan s = {0};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (cJSON_IsObject(p)) scan_pretok(p, &s);
    cJSON_Delete(root);
    if (s.named && s.n_split == 1 && !s.punctuation && !s.digits && !s.other) return s.named;
    if (s.punctuation && s.bytelevel_regex && s.digits && s.falcon_digits && !s.other) return "falcon";
    if (s.bytelevel_regex && !s.n_split && !s.punctuation && !s.digits && !s.other) return "gpt-2";
    return dflt;
}

// llama.cpp's token types (llama_token_type / gguf TokenType).
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

lc_status lc_gguf_add_vocab(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json, int32_t n_vocab,
                            int32_t bos, int32_t eos, int32_t pad) {
    const char *src = tokenizer_json ? tokenizer_json : "tokenizer";
    int32_t n_tok = lc_tokenizer_vocab_size(tok);
    if (n_vocab <= 0 || n_tok > n_vocab)
        return lc_error(LC_STATUS_INPUT, "%s: the tokenizer has %d tokens, more than the model's vocab_size %d", src,
                        n_tok, n_vocab);
    bool spm = lc_tokenizer_get_style(tok) == LC_TOKENIZER_SENTENCEPIECE;
    size_t n = (size_t)n_vocab;
    const char **strs = calloc(n, sizeof *strs);
    size_t *lens = calloc(n, sizeof *lens);
    char **owned = calloc(n, sizeof *owned);
    int32_t *types = calloc(n, sizeof *types);
    float *scores = calloc(n, sizeof *scores);
    int32_t *order = calloc(n, sizeof *order);
    int32_t *first_rank = calloc(n, sizeof *first_rank);
    lc_tokenizer_merge *merges = NULL;
    size_t n_merges = 0;
    const char **mstr = NULL;
    char *marena = NULL;
    lc_status st = LC_STATUS_OK;
    if (!strs || !lens || !owned || !types || !scores || !order || !first_rank) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
        goto done;
    }
    for (int32_t id = 0; id < n_vocab; id++) {
        lc_token_kind kind = lc_tokenizer_token_kind(tok, id);
        size_t len = 0;
        const char *text = kind == LC_TOKEN_NONE ? NULL : lc_tokenizer_token_text(tok, id, &len);
        if (!text) { // ids the tokenizer does not fill, as convert_hf_to_gguf.py pads them
            char buf[32];
            int k = snprintf(buf, sizeof buf, "[PAD%d]", id);
            if (!(owned[id] = strdup(buf))) {
                st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
                goto done;
            }
            text = owned[id];
            len = (size_t)k;
            kind = LC_TOKEN_NONE;
        }
        strs[id] = text;
        lens[id] = len;
        types[id] = kind == LC_TOKEN_NORMAL    ? TT_NORMAL
                    : kind == LC_TOKEN_UNKNOWN ? TT_UNKNOWN
                    : kind == LC_TOKEN_CONTROL ? TT_CONTROL
                    : kind == LC_TOKEN_ADDED   ? TT_USER_DEFINED
                    : kind == LC_TOKEN_BYTE    ? TT_BYTE
                                               : TT_UNUSED;
        first_rank[id] = -1;
    }
    if ((st = lc_tokenizer_merges(tok, &merges, &n_merges))) goto done;

    if ((st = lc_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2"))) goto done;
    if ((st = lc_gguf_set_str(w, "tokenizer.ggml.pre", spm ? "default" : pre_name(tokenizer_json)))) goto done;
    if ((st = lc_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n))) goto done;
    if (spm) {
        // llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
        // concatenation has the highest score. Scores that fall with the rank
        // of the merge producing each piece make it merge in the order of
        // tokenizer.json's merges; pieces no merge produces follow in id
        // order. For vocabularies converted from SentencePiece this gives
        // back the model's own scores, -(position among normal pieces).
        for (size_t i = 0; i < n_merges; i++) {
            int32_t r = merges[i].result;
            if (r >= 0 && r < n_vocab && types[r] == TT_NORMAL && first_rank[r] < 0) first_rank[r] = merges[i].rank;
        }
        size_t k = 0;
        for (size_t i = 0; i < n_merges; i++) { // merges are sorted by rank
            int32_t r = merges[i].result;
            if (r >= 0 && r < n_vocab && types[r] == TT_NORMAL && first_rank[r] == merges[i].rank) order[k++] = r;
        }
        for (int32_t id = 0; id < n_vocab; id++)
            if (types[id] == TT_NORMAL && first_rank[id] < 0) order[k++] = id;
        for (size_t i = 0; i < k; i++) scores[order[i]] = -(float)i;
        if ((st = lc_gguf_set_arr_f32(w, "tokenizer.ggml.scores", scores, n))) goto done;
    }
    if ((st = lc_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, n))) goto done;
    if (!spm && n_merges) {
        size_t total = 0;
        for (size_t i = 0; i < n_merges; i++) {
            const char *a = lc_tokenizer_piece(tok, merges[i].left), *b = lc_tokenizer_piece(tok, merges[i].right);
            total += (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + 2;
        }
        mstr = malloc(n_merges * sizeof *mstr);
        marena = malloc(total);
        if (!mstr || !marena) {
            st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", src);
            goto done;
        }
        char *p = marena;
        for (size_t i = 0; i < n_merges; i++) {
            const char *a = lc_tokenizer_piece(tok, merges[i].left), *b = lc_tokenizer_piece(tok, merges[i].right);
            mstr[i] = p;
            p += sprintf(p, "%s %s", a ? a : "", b ? b : "") + 1;
        }
        if ((st = lc_gguf_set_arr_str(w, "tokenizer.ggml.merges", mstr, NULL, n_merges))) goto done;
    }
    int32_t tb = lc_tokenizer_bos(tok), te = lc_tokenizer_eos(tok), tu = lc_tokenizer_unk(tok);
    if (tb < 0) tb = bos;
    if (te < 0) te = eos;
    if (tb >= 0 && tb < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tb))) goto done;
    if (te >= 0 && te < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)te))) goto done;
    if (tu >= 0 && tu < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tu)))
        goto done;
    if (pad >= 0 && pad < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad)))
        goto done;
    if ((st = lc_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", lc_tokenizer_adds_bos(tok)))) goto done;
    st = lc_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", lc_tokenizer_adds_eos(tok));
done:
    if (owned)
        for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(strs);
    free(lens);
    free(types);
    free(scores);
    free(order);
    free(first_rank);
    free(merges);
    free(mstr);
    free(marena);
    return st;
}

// ---------------------------------------------------------------- export

// Hugging Face keeps q/k rows of each head in rotate-half order (the two
// halves of the head are the rotated pairs); llama.cpp's llama architecture
// rotates adjacent pairs. convert_hf_to_gguf.py's permute moves row
// s*D/2 + j of a head to row 2j + s (s = 0, 1; j < D/2), for each of `rows`
// values of the head. src and dst are [n_heads * D, cols].
static void permute_rows(float *dst, const float *src, int n_heads, int D, int cols) {
    for (int h = 0; h < n_heads; h++)
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < D / 2; j++)
                memcpy(dst + ((size_t)h * D + 2 * j + s) * cols, src + ((size_t)h * D + s * (D / 2) + j) * cols,
                       (size_t)cols * sizeof *dst);
}

static const char *const gguf_linear_names[LC_LINEAR_KIND_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

enum job_kind { JOB_EMBED, JOB_FINAL_NORM, JOB_OUTPUT, JOB_ROPE_FREQS, JOB_ATTN_NORM, JOB_FFN_NORM, JOB_LINEAR, JOB_BIAS };

typedef struct job {
    enum job_kind kind;
    int layer;
    lc_linear_kind lin;
} job;

typedef struct exporter {
    const lc_model *m;
    const lc_lora *lora;
    const char *out_path;
    lc_dtype dtype;
    bool permute; // llama architecture: q/k rows to the interleaved order
    float *buf, *tmp;
    uint16_t *half;
} exporter;

static void job_name(const job *j, char *name, size_t cap) {
    switch (j->kind) {
    case JOB_EMBED: snprintf(name, cap, "token_embd.weight"); break;
    case JOB_FINAL_NORM: snprintf(name, cap, "output_norm.weight"); break;
    case JOB_OUTPUT: snprintf(name, cap, "output.weight"); break;
    case JOB_ROPE_FREQS: snprintf(name, cap, "rope_freqs.weight"); break;
    case JOB_ATTN_NORM: snprintf(name, cap, "blk.%d.attn_norm.weight", j->layer); break;
    case JOB_FFN_NORM: snprintf(name, cap, "blk.%d.ffn_norm.weight", j->layer); break;
    case JOB_LINEAR: snprintf(name, cap, "blk.%d.%s.weight", j->layer, gguf_linear_names[j->lin]); break;
    case JOB_BIAS: snprintf(name, cap, "blk.%d.%s.bias", j->layer, gguf_linear_names[j->lin]); break;
    }
}

// Row-major shape of a job's tensor; returns n_dims.
static int job_shape(const exporter *e, const job *j, int64_t shape[2]) {
    const lc_model_config *c = &e->m->cfg;
    switch (j->kind) {
    case JOB_EMBED:
    case JOB_OUTPUT:
        shape[0] = c->vocab_size;
        shape[1] = c->hidden_size;
        return 2;
    case JOB_ROPE_FREQS: shape[0] = c->head_dim / 2; return 1;
    case JOB_LINEAR:
        shape[0] = e->m->layers[j->layer].lin[j->lin].out;
        shape[1] = e->m->layers[j->layer].lin[j->lin].in;
        return 2;
    case JOB_BIAS: shape[0] = e->m->layers[j->layer].lin[j->lin].out; return 1;
    default: shape[0] = c->hidden_size; return 1;
    }
}

// llama3 rope scaling as convert_hf_to_gguf.py writes it: a factor per
// frequency that llama.cpp divides the frequency by.
static void llama3_rope_factors(const lc_model_config *c, float *out) {
    int D = c->head_dim;
    double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double old_ctx = c->rope_original_max_pos;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (int i = 0; i < D / 2; i++) {
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
        double wavelen = 2 * M_PI / freq;
        double f;
        if (wavelen < hi_wavelen) f = 1;
        else if (wavelen > lo_wavelen) f = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        out[i] = (float)f;
    }
}

static uint32_t job_type(const exporter *e, int n_dims) {
    if (n_dims < 2 || e->dtype == LC_DTYPE_F32) return LC_GGML_TYPE_F32;
    return e->dtype == LC_DTYPE_F16 ? LC_GGML_TYPE_F16 : LC_GGML_TYPE_BF16;
}

static lc_status write_job(exporter *e, lc_gguf_writer *w, const job *j) {
    const lc_model *m = e->m;
    const lc_model_config *c = &m->cfg;
    int64_t shape[2];
    int nd = job_shape(e, j, shape);
    size_t n = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
    const float *src = e->buf;
    switch (j->kind) {
    case JOB_EMBED: src = m->embed; break;
    case JOB_OUTPUT: src = m->lm_head; break;
    case JOB_FINAL_NORM: src = m->final_norm; break;
    case JOB_ATTN_NORM: src = m->layers[j->layer].attn_norm; break;
    case JOB_FFN_NORM: src = m->layers[j->layer].mlp_norm; break;
    case JOB_ROPE_FREQS: llama3_rope_factors(c, e->buf); break;
    case JOB_LINEAR:
    case JOB_BIAS: {
        const lc_linear *lin = &m->layers[j->layer].lin[j->lin];
        int cols = j->kind == JOB_LINEAR ? lin->in : 1;
        if (j->kind == JOB_LINEAR) lc_export_merge_linear(e->buf, m, e->lora, j->layer, j->lin);
        else memcpy(e->buf, lin->bias, n * sizeof *e->buf);
        if (e->permute && (j->lin == LC_LINEAR_KIND_Q || j->lin == LC_LINEAR_KIND_K)) {
            int heads = j->lin == LC_LINEAR_KIND_Q ? c->n_heads : c->n_kv_heads;
            permute_rows(e->tmp, e->buf, heads, lin->out / heads, cols);
            src = e->tmp;
        }
        break;
    }
    }
    uint32_t type = job_type(e, nd);
    if (type == LC_GGML_TYPE_F32) return lc_gguf_write_tensor_data(w, src, n * sizeof(float));
    for (size_t i = 0; i < n; i++) e->half[i] = type == LC_GGML_TYPE_F16 ? lc_f32_to_f16(src[i]) : lc_f32_to_bf16(src[i]);
    return lc_gguf_write_tensor_data(w, e->half, n * sizeof(uint16_t));
}

// general.name: the model folder's last component.
static void model_name(const char *model_dir, char *out, size_t cap) {
    const char *d = model_dir && *model_dir ? model_dir : "model";
    size_t len = strlen(d);
    while (len > 1 && d[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && d[start - 1] != '/') start--;
    if (len - start == 0 || (len - start == 1 && d[start] == '.')) {
        snprintf(out, cap, "model");
        return;
    }
    snprintf(out, cap, "%.*s", (int)(len - start), d + start);
}

// Optional extras from tokenizer_config.json: the pad token id and the chat template.
static lc_status read_tokenizer_config(const char *path, const lc_tokenizer *tok, int32_t *pad, char **chat_template) {
    *pad = -1;
    *chat_template = NULL;
    if (!lc_file_exists(path)) return LC_STATUS_OK;
    cJSON *root;
    lc_status st = lc_json_load_file(path, GGUF_JSON_MAX, &root);
    if (st) return st;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pad_token");
    if (cJSON_IsObject(p)) p = cJSON_GetObjectItemCaseSensitive(p, "content");
    if (cJSON_IsString(p)) *pad = lc_tokenizer_find(tok, p->valuestring);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(t) && !(*chat_template = strdup(t->valuestring)))
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    cJSON_Delete(root);
    return st;
}

static lc_status export_metadata(lc_gguf_writer *w, const char *model_dir, const lc_model *m, const lc_tokenizer *tok,
                                 lc_dtype dtype, const char *arch) {
    const lc_model_config *c = &m->cfg;
    char key[128], name[256], path[4096];
    lc_status st;
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    model_name(model_dir, name, sizeof name);
    uint32_t file_type = dtype == LC_DTYPE_F32   ? LC_GGUF_FILE_TYPE_ALL_F32
                         : dtype == LC_DTYPE_F16 ? LC_GGUF_FILE_TYPE_MOSTLY_F16
                                                 : LC_GGUF_FILE_TYPE_MOSTLY_BF16;
    if ((st = lc_gguf_set_str(w, "general.architecture", arch))) return st;
    if ((st = lc_gguf_set_str(w, "general.type", "model"))) return st;
    if ((st = lc_gguf_set_str(w, "general.name", name))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads))) return st;
    if ((st = lc_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta))) return st;
    if ((st = lc_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_norm_eps))) return st;
    if (c->head_dim * c->n_heads != c->hidden_size) {
        if ((st = lc_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim))) return st;
        if ((st = lc_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim))) return st;
    }
    if ((st = lc_gguf_set_u32(w, "general.file_type", file_type))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size))) return st;
    if ((st = lc_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim))) return st;
    if (c->rope_scaling == LC_ROPE_SCALING_LINEAR) {
        if ((st = lc_gguf_set_str(w, KEY("rope.scaling.type"), "linear"))) return st;
        if ((st = lc_gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor))) return st;
    }
#undef KEY

    int32_t pad;
    char *chat_template = NULL;
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer_config.json"))) return st;
    if ((st = read_tokenizer_config(path, tok, &pad, &chat_template))) return st;
    if ((st = lc_path_join(path, sizeof path, model_dir, "tokenizer.json"))) goto out;
    if ((st = lc_gguf_add_vocab(w, tok, path, c->vocab_size, c->bos_token_id, c->eos_token_id, pad))) goto out;
    if (chat_template && (st = lc_gguf_set_str(w, "tokenizer.chat_template", chat_template))) goto out;
    st = lc_gguf_set_u32(w, "general.quantization_version", 2);
out:
    free(chat_template);
    return st;
}

lc_status lc_export_gguf(const char *out_path, const char *model_dir, const lc_model *m, const lc_lora *lora,
                         const lc_tokenizer *tok, lc_dtype dtype) {
    const lc_model_config *c = &m->cfg;
    if (dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_F16 && dtype != LC_DTYPE_BF16)
        return lc_error(LC_STATUS_USAGE, "%s: GGUF export writes f32, f16 or bf16", out_path);
    const char *arch = c->arch == LC_ARCH_QWEN2 ? "qwen2" : "llama"; // mistral is llama to llama.cpp
    lc_tokenizer *own_tok = NULL;
    lc_status st = LC_STATUS_OK;
    if (!tok) {
        if ((st = lc_tokenizer_load_dir(&own_tok, model_dir))) return st;
        tok = own_tok;
    }

    // The tensors, in the order llama.cpp's converter writes a Llama.
    int L = c->n_layers;
    size_t n_jobs = 0, cap_jobs = 4 + (size_t)L * (2 + 2 * LC_LINEAR_KIND_COUNT);
    job *jobs = malloc(cap_jobs * sizeof *jobs);
    lc_gguf_writer *w = NULL;
    exporter e = {.m = m, .lora = lora, .out_path = out_path, .dtype = dtype, .permute = c->arch != LC_ARCH_QWEN2};
    if (!jobs) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", out_path);
        goto done;
    }
    bool tied = c->tie_word_embeddings || m->lm_head == m->embed;
    jobs[n_jobs++] = (job){JOB_EMBED, 0, 0};
    jobs[n_jobs++] = (job){JOB_FINAL_NORM, 0, 0};
    if (!tied) jobs[n_jobs++] = (job){JOB_OUTPUT, 0, 0};
    if (c->rope_scaling == LC_ROPE_SCALING_LLAMA3) jobs[n_jobs++] = (job){JOB_ROPE_FREQS, 0, 0};
    size_t max_lin = 0;
    for (int l = 0; l < L; l++) {
        jobs[n_jobs++] = (job){JOB_ATTN_NORM, l, 0};
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            const lc_linear *lin = &m->layers[l].lin[k];
            if (k == LC_LINEAR_KIND_GATE) jobs[n_jobs++] = (job){JOB_FFN_NORM, l, 0};
            jobs[n_jobs++] = (job){JOB_LINEAR, l, (lc_linear_kind)k};
            if (lin->bias) jobs[n_jobs++] = (job){JOB_BIAS, l, (lc_linear_kind)k};
            if ((size_t)lin->out * (size_t)lin->in > max_lin) max_lin = (size_t)lin->out * (size_t)lin->in;
        }
    }
    size_t max_all = (size_t)c->vocab_size * (size_t)c->hidden_size;
    if (max_lin > max_all) max_all = max_lin;
    if ((size_t)c->head_dim > max_all) max_all = (size_t)c->head_dim;
    e.buf = malloc(max_all * sizeof *e.buf);
    e.tmp = malloc(max_all * sizeof *e.tmp);
    e.half = dtype == LC_DTYPE_F32 ? NULL : malloc(max_all * sizeof *e.half);
    if (!e.buf || !e.tmp || (dtype != LC_DTYPE_F32 && !e.half)) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory (%zu-element buffers)", out_path, max_all);
        goto done;
    }

    if ((st = lc_gguf_writer_new(&w, out_path))) goto done;
    if ((st = export_metadata(w, model_dir, m, tok, dtype, arch))) goto done;
    for (size_t i = 0; i < n_jobs; i++) {
        char name[96];
        int64_t shape[2];
        job_name(&jobs[i], name, sizeof name);
        int nd = job_shape(&e, &jobs[i], shape);
        if ((st = lc_gguf_add_tensor(w, name, job_type(&e, nd), nd, shape))) goto done;
    }
    if ((st = lc_gguf_write_header(w))) goto done;
    for (size_t i = 0; i < n_jobs; i++)
        if ((st = write_job(&e, w, &jobs[i]))) goto done;
    st = lc_gguf_writer_finish(w);
done:
    lc_gguf_writer_free(w);
    free(jobs);
    free(e.buf);
    free(e.tmp);
    free(e.half);
    lc_tokenizer_free(own_tok);
    return st;
}
