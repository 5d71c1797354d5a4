// JSONL loading, tokenization with a prompt mask, train/validation split, and
// batching (padded or packed) in a seeded per-epoch order.
#include "data/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/hash.h"
#include "common/json.h"

// A JSONL line longer than this is refused rather than buffered: the file is
// untrusted and one runaway line should not take the machine's memory.
#define LC_DATASET_MAX_LINE ((size_t)16 << 20)

// ---------------------------------------------------------------------------
// Seeded RNG (splitmix64), local so data/ does not depend on model/.

enum { LC_RNG_DOMAIN_SPLIT = 1, LC_RNG_DOMAIN_SHUFFLE = 2 };

static uint64_t lc_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Independent streams per (seed, purpose, epoch): the split and each epoch's
// shuffle must not replay one another.
static uint64_t lc_dataset_rng_seed(uint64_t seed, uint64_t domain, uint64_t epoch) {
    uint64_t s = seed;
    uint64_t a = lc_splitmix64(&s);
    s = a ^ (domain * 0xd1b54a32d192ed03ull);
    uint64_t b = lc_splitmix64(&s);
    s = b ^ (epoch * 0x8cb92ba72f3d8dd7ull);
    return lc_splitmix64(&s);
}

// Uniform in [0, n). Modulo bias is below n / 2^64, far under any effect.
static int lc_rng_below(uint64_t *state, int n) { return (int)(lc_splitmix64(state) % (uint64_t)n); }

// ---------------------------------------------------------------------------
// Line reader: fread chunks + memchr, so embedded NUL bytes are seen (fgets
// would hide them) and the cap is enforced before the line is buffered.

typedef struct lc_line_reader {
    FILE *f;
    char *line; // current line, NUL-terminated, without its '\n'
    size_t len, cap;
    char chunk[1 << 16];
    size_t pos, end;
    bool eof;
} lc_line_reader;

typedef enum { LC_LINE_OK, LC_LINE_EOF, LC_LINE_TOO_LONG, LC_LINE_READ_ERROR, LC_LINE_NOMEM } lc_line_result;

static bool lc_line_append(lc_line_reader *r, const char *p, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap *= 2;
        char *line = realloc(r->line, cap);
        if (!line) return false;
        r->line = line;
        r->cap = cap;
    }
    memcpy(r->line + r->len, p, n);
    r->len += n;
    r->line[r->len] = '\0';
    return true;
}

static lc_line_result lc_line_next(lc_line_reader *r) {
    r->len = 0;
    bool any = false;
    for (;;) {
        if (r->pos == r->end) {
            if (r->eof) return any ? LC_LINE_OK : LC_LINE_EOF; // last line may lack '\n'
            r->end = fread(r->chunk, 1, sizeof r->chunk, r->f);
            r->pos = 0;
            if (r->end < sizeof r->chunk) {
                if (ferror(r->f)) return LC_LINE_READ_ERROR;
                r->eof = true;
            }
            continue;
        }
        any = true;
        const char *start = r->chunk + r->pos;
        const char *nl = memchr(start, '\n', r->end - r->pos);
        size_t n = nl ? (size_t)(nl - start) : r->end - r->pos;
        if (r->len + n > LC_DATASET_MAX_LINE) return LC_LINE_TOO_LONG;
        if (!lc_line_append(r, start, n)) return LC_LINE_NOMEM;
        r->pos += n + (nl ? 1 : 0);
        if (nl) return LC_LINE_OK;
    }
}

// ---------------------------------------------------------------------------
// Record validation

static bool lc_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

// Returns the byte offset of the first invalid UTF-8 sequence, or n if none.
// The tokenizer and HF's json.loads both assume valid UTF-8.
static size_t lc_utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return i;
        }
        if (i + k >= n) return i; // truncated sequence
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return i;
            c = (c << 6) | (s[i + j] & 0x3f);
        }
        // Overlong forms, surrogates and values past U+10FFFF are invalid.
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return i;
        i += k + 1;
    }
    return n;
}

// Copies an untrusted key into out for an error message: at most 40 bytes,
// control characters replaced so the message stays on one line.
static const char *lc_key_for_message(const char *key, char out[48]) {
    size_t i = 0;
    for (; key[i] && i < 40; i++) out[i] = ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) ? '?' : key[i];
    if (key[i]) out[i++] = '.', out[i++] = '.', out[i++] = '.';
    out[i] = '\0';
    return out;
}

typedef struct lc_record {
    const char *prompt, *completion, *text;
    const cJSON *messages;
} lc_record;

static lc_status lc_record_parse(const cJSON *obj, const char *path, int line, lc_record *rec) {
    memset(rec, 0, sizeof *rec);
    if (!cJSON_IsObject(obj)) return lc_error(LC_STATUS_INPUT, "%s:%d: expected a JSON object", path, line);
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char **slot = NULL;
        if (strcmp(it->string, "messages") == 0) {
            if (rec->messages) return lc_error(LC_STATUS_INPUT, "%s:%d: duplicate key \"messages\"", path, line);
            rec->messages = it;
            continue;
        }
        if (strcmp(it->string, "prompt") == 0) slot = &rec->prompt;
        else if (strcmp(it->string, "completion") == 0) slot = &rec->completion;
        else if (strcmp(it->string, "text") == 0) slot = &rec->text;
        else {
            char key[48];
            return lc_error(LC_STATUS_INPUT, "%s:%d: unexpected key \"%s\" (expected prompt/completion, text or messages)",
                            path, line, lc_key_for_message(it->string, key));
        }
        // cJSON keeps duplicate keys; which one wins would be a guess.
        if (*slot) return lc_error(LC_STATUS_INPUT, "%s:%d: duplicate key \"%s\"", path, line, it->string);
        if (!cJSON_IsString(it))
            return lc_error(LC_STATUS_INPUT, "%s:%d: \"%s\" must be a string", path, line, it->string);
        *slot = it->valuestring;
    }
    if (rec->messages && (rec->text || rec->prompt || rec->completion))
        return lc_error(LC_STATUS_INPUT, "%s:%d: \"messages\" cannot be combined with prompt/completion or text", path,
                        line);
    if (rec->messages) return LC_STATUS_OK;
    if (rec->text && (rec->prompt || rec->completion))
        return lc_error(LC_STATUS_INPUT, "%s:%d: \"text\" cannot be combined with prompt/completion", path, line);
    if (rec->prompt && !rec->completion)
        return lc_error(LC_STATUS_INPUT, "%s:%d: missing \"completion\" (\"prompt\" is present)", path, line);
    if (rec->completion && !rec->prompt)
        return lc_error(LC_STATUS_INPUT, "%s:%d: missing \"prompt\" (\"completion\" is present)", path, line);
    if (!rec->text && !rec->prompt)
        return lc_error(LC_STATUS_INPUT, "%s:%d: expected \"prompt\" and \"completion\", \"text\", or \"messages\"",
                        path, line);
    return LC_STATUS_OK;
}

// ---------------------------------------------------------------------------
// Loading

typedef struct lc_loader {
    const char *path;
    const lc_tokenizer *tok;
    const lc_dataset_options *opt;
    int32_t eos;
    // Reused across records (grown, never shrunk).
    char *joined;
    size_t joined_cap;
    int32_t *full, *pre;
    size_t full_cap, pre_cap;
    uint8_t *chat_target; // [n_full] for a chat record
    // Growing outputs; examples point into storage only once loading is done.
    int32_t *storage;
    uint8_t *target_storage; // parallel to storage
    size_t n_storage, storage_cap;
    lc_example *examples;
    int n_examples, examples_cap;
} lc_loader;

static lc_status lc_loader_add(lc_loader *L, const lc_record *rec, int line, lc_dataset *ds) {
    size_t n_full, n_pre = 0;
    lc_status st;
    free(L->chat_target);
    L->chat_target = NULL;
    if (rec->messages) {
        char what[4200];
        snprintf(what, sizeof what, "%s:%d", L->path, line);
        if (!L->opt->chat && L->opt->chat_error)
            return lc_error(LC_STATUS_INPUT, "%s: chat data (\"messages\") needs the model's chat template: %s", what,
                            L->opt->chat_error);
        if (!L->opt->chat)
            return lc_error(LC_STATUS_INPUT, "%s: chat data (\"messages\") needs a chat template, and %s has none "
                            "(give one: \"chat_template\": FILE.jinja in the config, --chat-template FILE.jinja for lora eval)", what, L->opt->model_name ? L->opt->model_name : "the model");
        if ((st = lc_chat_check_messages(rec->messages, what))) return st;
        free(L->full);
        L->full = NULL;
        L->full_cap = 0;
        st = lc_chat_tokenize(L->opt->chat, L->tok, rec->messages, &L->full, &L->chat_target, &n_full);
        L->full_cap = n_full;
        if (!st && n_full == 0) st = lc_error(LC_STATUS_INPUT, "the conversation renders to no tokens");
    } else if (rec->text) {
        st = lc_tokenizer_encode(L->tok, rec->text, strlen(rec->text), true, &L->full, &L->full_cap, &n_full);
    } else {
        size_t lp = strlen(rec->prompt), lcpl = strlen(rec->completion);
        if (lp + lcpl + 1 > L->joined_cap) {
            size_t cap = lp + lcpl + 1;
            char *j = realloc(L->joined, cap);
            if (!j) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", L->path);
            L->joined = j;
            L->joined_cap = cap;
        }
        memcpy(L->joined, rec->prompt, lp);
        memcpy(L->joined + lp, rec->completion, lcpl);
        L->joined[lp + lcpl] = '\0';
        st = lc_tokenizer_encode(L->tok, L->joined, lp + lcpl, true, &L->full, &L->full_cap, &n_full);
        if (!st) st = lc_tokenizer_encode(L->tok, rec->prompt, lp, true, &L->pre, &L->pre_cap, &n_pre);
    }
    if (st) {
        lc_error_prefix("%s:%d", L->path, line);
        return st;
    }

    // Boundary = common prefix, so a piece merged across prompt|completion
    // counts as completion (it is what the model must produce).
    size_t n_prompt = 1;
    if (!rec->text && L->opt->mask_prompt) {
        n_prompt = 0;
        while (n_prompt < n_pre && n_prompt < n_full && L->full[n_prompt] == L->pre[n_prompt]) n_prompt++;
        if (n_prompt < 1) n_prompt = 1; // no BOS and empty prompt: same targets as 1
    }

    if (rec->messages) {
        // the first trained token; the chat loss follows its spans, not a boundary
        n_prompt = 1;
        if (L->opt->mask_prompt)
            while (n_prompt < n_full && !L->chat_target[n_prompt]) n_prompt++;
    }
    size_t n = n_full + (rec->messages ? 0 : 1); // + EOS, except where the template wrote the ends
    bool truncated = n > (size_t)L->opt->max_seq_len;
    if (truncated) n = (size_t)L->opt->max_seq_len;
    if (n_prompt > n) n_prompt = n;

    if (L->n_storage + n > L->storage_cap) {
        size_t cap = L->storage_cap ? L->storage_cap : 1 << 16;
        while (cap < L->n_storage + n) cap *= 2;
        int32_t *s = realloc(L->storage, cap * sizeof *s);
        if (!s) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", L->path);
        L->storage = s;
        uint8_t *ts = realloc(L->target_storage, cap);
        if (!ts) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", L->path);
        L->target_storage = ts;
        L->storage_cap = cap;
    }
    if (L->n_examples == L->examples_cap) {
        if (L->examples_cap > INT_MAX / 2) return lc_error(LC_STATUS_INPUT, "%s: too many examples", L->path);
        int cap = L->examples_cap ? L->examples_cap * 2 : 1024;
        lc_example *e = realloc(L->examples, (size_t)cap * sizeof *e);
        if (!e) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", L->path);
        L->examples = e;
        L->examples_cap = cap;
    }

    int32_t *dst = L->storage + L->n_storage;
    size_t n_copy = n < n_full ? n : n_full;
    memcpy(dst, L->full, n_copy * sizeof *dst);
    if (n_copy < n) dst[n_copy] = L->eos;
    uint8_t *tgt = L->target_storage + L->n_storage;
    int n_trained = 0;
    for (size_t t = 0; t < n; t++) {
        bool on = t >= 1 && t >= n_prompt;
        if (rec->messages && L->opt->mask_prompt) on = t >= 1 && L->chat_target[t];
        tgt[t] = on;
        n_trained += on;
    }
    if (n_trained == 0) n_prompt = n; // nothing to train: counted (and dropped) as such
    L->n_storage += n;

    lc_example *ex = &L->examples[L->n_examples++];
    ex->ids = NULL; // set once storage stops moving
    ex->n = (int)n;
    ex->n_prompt = (int)n_prompt;
    ex->line = line;
    ex->truncated = truncated;
    ds->n_truncated += truncated;
    ds->n_no_targets += n <= n_prompt;
    ds->n_tokens += (int64_t)n;
    return LC_STATUS_OK;
}

static void lc_dataset_attach_ids(lc_dataset *ds) {
    size_t off = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        ds->examples[i].ids = ds->storage + off;
        ds->examples[i].target = ds->target_storage + off;
        off += (size_t)ds->examples[i].n;
    }
}

static lc_status lc_dataset_read(lc_loader *L, lc_line_reader *r, lc_dataset *ds) {
    for (int line = 1;; line++) {
        lc_line_result res = lc_line_next(r);
        if (res == LC_LINE_EOF) break;
        if (res == LC_LINE_TOO_LONG)
            return lc_error(LC_STATUS_INPUT, "%s:%d: line longer than %zu MiB", L->path, line,
                            LC_DATASET_MAX_LINE >> 20);
        if (res == LC_LINE_READ_ERROR) return lc_error(LC_STATUS_INPUT, "%s:%d: read error", L->path, line);
        if (res == LC_LINE_NOMEM) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", L->path);
        if (line == INT_MAX) return lc_error(LC_STATUS_INPUT, "%s: too many lines", L->path);
        if (lc_is_blank(r->line, r->len)) continue;

        if (memchr(r->line, '\0', r->len))
            return lc_error(LC_STATUS_INPUT, "%s:%d: NUL byte in line", L->path, line);
        size_t bad = lc_utf8_check((const unsigned char *)r->line, r->len);
        if (bad < r->len) return lc_error(LC_STATUS_INPUT, "%s:%d: invalid UTF-8 at byte %zu", L->path, line, bad);

        if (lc_json_has_nul_escape(r->line, r->len))
            return lc_error(LC_STATUS_INPUT, "%s:%d: \\u0000 (NUL) in a string is not supported", L->path, line);

        // Parse the line plus its NUL so cJSON rejects trailing garbage after the object.
        const char *end = NULL;
        cJSON *obj = cJSON_ParseWithLengthOpts(r->line, r->len + 1, &end, true);
        if (!obj) {
            size_t at = (end && end >= r->line) ? (size_t)(end - r->line) : 0;
            return lc_error(LC_STATUS_INPUT, "%s:%d: invalid JSON near byte %zu", L->path, line, at);
        }
        lc_record rec;
        lc_status st = lc_record_parse(obj, L->path, line, &rec);
        if (!st) st = lc_loader_add(L, &rec, line, ds);
        cJSON_Delete(obj);
        if (st) return st;
    }
    if (L->n_examples == 0) return lc_error(LC_STATUS_INPUT, "%s: no examples", L->path);
    return LC_STATUS_OK;
}

lc_status lc_dataset_load(lc_dataset *ds, const char *path, const lc_tokenizer *tok, const lc_dataset_options *opt) {
    memset(ds, 0, sizeof *ds);
    if (opt->max_seq_len < 2)
        return lc_error(LC_STATUS_INPUT, "max_seq_len must be at least 2 (got %d)", opt->max_seq_len);
    // One EOS ends every completion: the tokenizer's (tokenizer_config.json's
    // eos_token). Generation also stops at the other ids a config may list
    // in eos_token_id, but this one comes first among its stops.
    int32_t eos = lc_tokenizer_eos(tok);
    if (eos < 0) return lc_error(LC_STATUS_INPUT, "tokenizer has no EOS token");

    lc_line_reader *r = calloc(1, sizeof *r);
    if (!r) return lc_error(LC_STATUS_RUNTIME, "out of memory reading %s", path);
    r->f = fopen(path, "rb");
    if (!r->f) {
        int e = errno;
        free(r);
        return lc_error(LC_STATUS_INPUT, "%s: cannot open: %s", path, strerror(e));
    }
    lc_loader L = {.path = path, .tok = tok, .opt = opt, .eos = eos};
    lc_status st = lc_dataset_read(&L, r, ds);
    fclose(r->f);
    free(r->line);
    free(r);
    free(L.joined);
    free(L.full);
    free(L.pre);
    free(L.chat_target);
    if (st) {
        free(L.storage);
        free(L.target_storage);
        free(L.examples);
        memset(ds, 0, sizeof *ds);
        return st;
    }
    ds->examples = L.examples;
    ds->n_examples = L.n_examples;
    // Give back the growth slack; keep the block if the shrink fails.
    int32_t *fit = realloc(L.storage, (L.n_storage ? L.n_storage : 1) * sizeof *fit);
    ds->storage = fit ? fit : L.storage;
    uint8_t *tfit = realloc(L.target_storage, L.n_storage ? L.n_storage : 1);
    ds->target_storage = tfit ? tfit : L.target_storage;
    lc_dataset_attach_ids(ds);
    return LC_STATUS_OK;
}

int lc_dataset_drop_untrainable(lc_dataset *ds) {
    int kept = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        const lc_example *e = &ds->examples[i];
        if (e->n > e->n_prompt) ds->examples[kept++] = *e;
        else ds->n_tokens -= e->n;
    }
    int dropped = ds->n_examples - kept;
    ds->n_examples = kept;
    ds->n_no_targets = 0;
    return dropped;
}

void lc_dataset_keep_first(lc_dataset *ds, int n) {
    if (n < 0 || n >= ds->n_examples) return;
    ds->n_examples = n;
    ds->n_tokens = 0;
    ds->n_truncated = ds->n_no_targets = 0;
    for (int i = 0; i < n; i++) {
        const lc_example *e = &ds->examples[i];
        ds->n_tokens += e->n;
        ds->n_truncated += e->truncated;
        ds->n_no_targets += e->n <= e->n_prompt;
    }
}

void lc_dataset_free(lc_dataset *ds) {
    if (!ds) return;
    free(ds->examples);
    free(ds->storage);
    free(ds->target_storage);
    memset(ds, 0, sizeof *ds);
}

// ---------------------------------------------------------------------------
// Split

// Copies the examples of src whose keep[] equals `want`, in order, into a
// fresh dataset with its own storage.
static lc_status lc_dataset_subset(const lc_dataset *src, const unsigned char *keep, unsigned char want, int count,
                                   lc_dataset *out) {
    memset(out, 0, sizeof *out);
    int64_t n_tokens = 0;
    for (int i = 0; i < src->n_examples; i++)
        if (keep[i] == want) n_tokens += src->examples[i].n;
    out->examples = malloc((size_t)count * sizeof *out->examples);
    out->storage = malloc((size_t)(n_tokens ? n_tokens : 1) * sizeof *out->storage);
    out->target_storage = malloc((size_t)(n_tokens ? n_tokens : 1));
    if (!out->examples || !out->storage || !out->target_storage) {
        lc_dataset_free(out);
        return lc_error(LC_STATUS_RUNTIME, "out of memory splitting the dataset");
    }
    size_t off = 0;
    for (int i = 0; i < src->n_examples; i++) {
        if (keep[i] != want) continue;
        const lc_example *e = &src->examples[i];
        memcpy(out->storage + off, e->ids, (size_t)e->n * sizeof *out->storage);
        memcpy(out->target_storage + off, e->target, (size_t)e->n);
        off += (size_t)e->n;
        out->examples[out->n_examples++] = *e;
        out->n_truncated += e->truncated;
        out->n_no_targets += e->n <= e->n_prompt;
    }
    out->n_tokens = n_tokens;
    lc_dataset_attach_ids(out);
    return LC_STATUS_OK;
}

static lc_status lc_dataset_split_into(const lc_dataset *ds, double fraction, uint64_t seed, lc_dataset *tr,
                                       lc_dataset *va) {
    if (!(fraction > 0.0 && fraction < 1.0))
        return lc_error(LC_STATUS_INPUT, "validation fraction must be between 0 and 1 (got %g)", fraction);
    int n = ds->n_examples;
    if (n < 2)
        return lc_error(LC_STATUS_INPUT, "cannot split %d example%s into train and validation sets", n,
                        n == 1 ? "" : "s");
    double want = fraction * n + 0.5; // round half up; no libm needed
    int n_valid = want < 1 ? 1 : want >= n - 1 ? n - 1 : (int)want;

    int *perm = malloc((size_t)n * sizeof *perm);
    unsigned char *in_valid = calloc((size_t)n, 1);
    if (!perm || !in_valid) {
        free(perm);
        free(in_valid);
        return lc_error(LC_STATUS_RUNTIME, "out of memory splitting the dataset");
    }
    // Partial Fisher-Yates: the first n_valid slots are a uniform sample.
    uint64_t rng = lc_dataset_rng_seed(seed, LC_RNG_DOMAIN_SPLIT, 0);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = 0; i < n_valid; i++) {
        int j = i + lc_rng_below(&rng, n - i);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        in_valid[perm[i]] = 1;
    }
    free(perm);

    lc_status st = lc_dataset_subset(ds, in_valid, 0, n - n_valid, tr);
    if (!st) {
        st = lc_dataset_subset(ds, in_valid, 1, n_valid, va);
        if (st) lc_dataset_free(tr);
    }
    free(in_valid);
    return st;
}

lc_status lc_dataset_split(lc_dataset *ds, double fraction, uint64_t seed, lc_dataset *train, lc_dataset *valid) {
    // Built into locals so train or valid may alias ds. ds is consumed on
    // error too, so `all = x; split(&all, .., &x, ..)` never leaks.
    lc_dataset tr, va;
    lc_status st = lc_dataset_split_into(ds, fraction, seed, &tr, &va);
    lc_dataset_free(ds);
    if (st) {
        memset(train, 0, sizeof *train);
        memset(valid, 0, sizeof *valid);
        return st;
    }
    *train = tr;
    *valid = va;
    return LC_STATUS_OK;
}

// ---------------------------------------------------------------------------
// Batches

lc_status lc_batch_init(lc_batch *b, int B, int max_seq_len) {
    memset(b, 0, sizeof *b);
    if (B < 1 || max_seq_len < 2) return lc_error(LC_STATUS_INPUT, "batch size must be >= 1 and max_seq_len >= 2");
    if (B > INT_MAX / max_seq_len)
        return lc_error(LC_STATUS_INPUT, "batch %d x %d tokens is too large", B, max_seq_len);
    size_t cap = (size_t)B * (size_t)max_seq_len;
    b->tokens = malloc(cap * sizeof *b->tokens);
    b->targets = malloc(cap * sizeof *b->targets);
    b->pos = malloc(cap * sizeof *b->pos);
    b->seg_start = malloc(cap * sizeof *b->seg_start);
    if (!b->tokens || !b->targets || !b->pos || !b->seg_start) {
        lc_batch_free(b);
        return lc_error(LC_STATUS_RUNTIME, "out of memory for a %d x %d batch", B, max_seq_len);
    }
    b->B = B;
    b->T = max_seq_len;
    b->cap = (int)cap;
    return LC_STATUS_OK;
}

void lc_batch_free(lc_batch *b) {
    if (!b) return;
    free(b->tokens);
    free(b->targets);
    free(b->pos);
    free(b->seg_start);
    memset(b, 0, sizeof *b);
}

// Writes epoch's order of the examples into order[n_examples].
static void lc_batcher_order(const lc_batcher *it, int64_t epoch, int *order) {
    int n = it->ds->n_examples;
    for (int i = 0; i < n; i++) order[i] = i;
    if (!it->shuffle) return;
    uint64_t rng = lc_dataset_rng_seed(it->seed, LC_RNG_DOMAIN_SHUFFLE, (uint64_t)epoch);
    for (int i = n - 1; i > 0; i--) {
        int j = lc_rng_below(&rng, i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void lc_batcher_shuffle(lc_batcher *it) { lc_batcher_order(it, it->epoch, it->order); }

lc_status lc_batcher_init(lc_batcher *it, const lc_dataset *ds, int B, int max_seq_len, bool packing, bool shuffle,
                          uint64_t seed) {
    memset(it, 0, sizeof *it);
    if (ds->n_examples < 1) return lc_error(LC_STATUS_INPUT, "dataset has no examples");
    if (B < 1 || max_seq_len < 2) return lc_error(LC_STATUS_INPUT, "batch size must be >= 1 and max_seq_len >= 2");
    // Rows are planned for max_seq_len; a longer example would overrun them.
    for (int i = 0; i < ds->n_examples; i++)
        if (ds->examples[i].n > max_seq_len || ds->examples[i].n < 1)
            return lc_error(LC_STATUS_INPUT, "example from line %d has %d tokens; max_seq_len is %d",
                            ds->examples[i].line, ds->examples[i].n, max_seq_len);
    it->order = malloc((size_t)ds->n_examples * sizeof *it->order);
    if (!it->order) return lc_error(LC_STATUS_RUNTIME, "out of memory for the batch order");
    it->ds = ds;
    it->B = B;
    it->max_seq_len = max_seq_len;
    it->packing = packing;
    it->shuffle = shuffle;
    it->seed = seed;
    lc_batcher_shuffle(it);
    return LC_STATUS_OK;
}

void lc_batcher_free(lc_batcher *it) {
    if (!it) return;
    free(it->order);
    memset(it, 0, sizeof *it);
}

void lc_batcher_seek(lc_batcher *it, int64_t epoch, int index) {
    // Callers validate restored checkpoints; clamp so a bad value cannot index out of range.
    it->epoch = epoch < 0 ? 0 : epoch;
    it->index = index < 0 ? 0 : index > it->ds->n_examples ? it->ds->n_examples : index;
    lc_batcher_shuffle(it);
}

// Writes one example at row offset `off` (row base `row`) of the L-strided layout.
static void lc_put_example(lc_batch *b, size_t row, int off, const lc_example *e) {
    int32_t *tok = b->tokens + row, *tgt = b->targets + row, *pos = b->pos + row, *seg = b->seg_start + row;
    for (int t = 0; t < e->n; t++) {
        tok[off + t] = e->ids[t];
        // Target stays inside the example: its last token predicts nothing.
        bool has = t + 1 < e->n && e->target[t + 1];
        tgt[off + t] = has ? e->ids[t + 1] : -1;
        pos[off + t] = t;
        seg[off + t] = off;
        b->n_targets += has;
    }
    b->n_tokens += e->n;
}

// Whether a row holding len tokens takes no example of n tokens more: one
// example a row unpacked, whole examples up to max_seq_len packed. The
// batches and lc_batcher_count_batches both plan rows by it.
static bool lc_row_full(const lc_batcher *it, int len, int n) {
    return len > 0 && (!it->packing || len + n > it->max_seq_len);
}

// Fills rows at stride max_seq_len (T is only known at the end), pads each
// row to max_seq_len, then compacts to stride T in place (T <= max_seq_len, so
// moving rows forward in order never overwrites an unmoved one). Returns the
// number of rows filled; with wrap false it stops at the end of the epoch.
static int lc_batcher_fill(lc_batcher *it, lc_batch *b, bool wrap) {
    const int L = it->max_seq_len, n_ex = it->ds->n_examples;
    // lc_batch_init(b, it->B, it->max_seq_len) gives room for all B rows.
    int max_rows = b->cap / L < it->B ? b->cap / L : it->B;
    int rows = 0, T = 0;
    b->n_tokens = b->n_targets = 0;
    while (rows < max_rows) {
        size_t row = (size_t)rows * (size_t)L;
        int len = 0;
        for (;;) {
            if (it->index >= n_ex) {
                if (!wrap) break;
                it->epoch++;
                it->index = 0;
                lc_batcher_shuffle(it);
            }
            const lc_example *e = &it->ds->examples[it->order[it->index]];
            if (lc_row_full(it, len, e->n)) break;
            lc_put_example(b, row, len, e);
            len += e->n;
            it->index++;
        }
        if (len == 0) break;
        for (int t = len; t < L; t++) {
            b->tokens[row + t] = 0;
            b->targets[row + t] = -1;
            b->pos[row + t] = 0;
            b->seg_start[row + t] = 0;
        }
        if (len > T) T = len;
        rows++;
    }
    for (int r = 1; r < rows; r++) {
        size_t src = (size_t)r * (size_t)L, dst = (size_t)r * (size_t)T, n = (size_t)T * sizeof(int32_t);
        memmove(b->tokens + dst, b->tokens + src, n);
        memmove(b->targets + dst, b->targets + src, n);
        memmove(b->pos + dst, b->pos + src, n);
        memmove(b->seg_start + dst, b->seg_start + src, n);
    }
    b->B = rows;
    b->T = T;
    return rows;
}

void lc_batcher_next(lc_batcher *it, lc_batch *b) {
    if (it->epochs <= 0) {
        lc_batcher_fill(it, b, true);
        return;
    }
    // Bounded: the next epoch starts with a fresh batch, and none follows the last.
    if (it->index >= it->ds->n_examples && it->epoch + 1 < it->epochs) {
        it->epoch++;
        it->index = 0;
        lc_batcher_shuffle(it);
    }
    lc_batcher_fill(it, b, false);
}

void lc_batcher_set_epochs(lc_batcher *it, int64_t epochs) { it->epochs = epochs < 0 ? 0 : epochs; }

lc_status lc_batcher_count_batches(const lc_batcher *it, int64_t epochs, int64_t *n_batches) {
    const int n = it->ds->n_examples, B = it->B;
    *n_batches = 0;
    if (!it->packing) { // one example a row, whatever the order
        *n_batches = epochs * (((int64_t)n + B - 1) / B);
        return LC_STATUS_OK;
    }
    int *order = malloc((size_t)n * sizeof *order);
    if (!order) return lc_error(LC_STATUS_RUNTIME, "out of memory counting the batches of an epoch");
    for (int64_t epoch = 0; epoch < epochs; epoch++) {
        lc_batcher_order(it, epoch, order);
        int64_t rows = 0;
        int len = 0;
        for (int i = 0; i < n; i++) {
            int len_i = it->ds->examples[order[i]].n;
            if (lc_row_full(it, len, len_i)) {
                rows++;
                len = 0;
            }
            len += len_i;
        }
        rows += len > 0;
        *n_batches += (rows + B - 1) / B;
    }
    free(order);
    return LC_STATUS_OK;
}

bool lc_batcher_next_in_epoch(lc_batcher *it, lc_batch *b) { return lc_batcher_fill(it, b, false) > 0; }

void lc_dataset_fingerprint(const lc_dataset *ds, char out[17]) {
    uint64_t h = lc_hash_bytes(LC_HASH_INIT, &ds->n_examples, sizeof ds->n_examples);
    for (int i = 0; i < ds->n_examples; i++) {
        const lc_example *e = &ds->examples[i];
        h = lc_hash_bytes(h, &e->n, sizeof e->n);
        h = lc_hash_words(h, e->ids, sizeof *e->ids * (size_t)e->n);
        h = lc_hash_words(h, e->target, (size_t)e->n);
    }
    lc_hash_hex(h, out);
}
