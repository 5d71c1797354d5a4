// fuzz_tokenizer: tokenizer.json [SEP tokenizer_config.json [SEP text]] ->
// lc_tokenizer_load; when it loads, encode a few fixed strings and the text,
// decode the ids (with and without special tokens), stream them through the
// detokenizer, and read the vocabulary details the GGUF exporter uses.
#include "fuzz_common.h"

#include "common/status.h"
#include "data/tokenizer.h"

static const char *const fixed[] = {
    "Hello world",
    " leading space and  double  spaces\n\ttabs",
    "<s>special</s><|endoftext|><unk>",
    "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87 123456789",
    "",
    "\xff\xfe invalid utf-8",
};

// Streams ids through the detokenizer into a buffer of the size the
// tokenizer plans: no push or flush may need more.
static void stream(const lc_tokenizer *tok, const int32_t *ids, size_t n, bool skip) {
    size_t cap = lc_tokenizer_stream_max_bytes(tok), got;
    char *buf = malloc(cap);
    if (!buf) return;
    lc_detokenizer d;
    lc_detokenizer_init(&d, tok, skip);
    for (size_t i = 0; i < n; i++)
        if (lc_detokenizer_push(&d, ids[i], buf, cap, &got) != LC_STATUS_OK || got > cap) __builtin_trap();
    if (lc_detokenizer_flush(&d, buf, cap, &got) != LC_STATUS_OK || got > cap) __builtin_trap();
    free(buf);
}

static void exercise(const lc_tokenizer *tok, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    for (int add = 0; add < 2; add++) {
        if (lc_tokenizer_encode(tok, text, len, add != 0, &ids, &cap, &n) != LC_STATUS_OK) continue;
        if (n > cap) __builtin_trap();
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t out_len = 0;
            if (lc_tokenizer_decode(tok, ids, n, skip != 0, &out, &out_len) == LC_STATUS_OK) {
                if (strlen(out) > out_len) __builtin_trap();
            }
            free(out);
            stream(tok, ids, n, skip != 0);
        }
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lc_fuzz_part parts[3];
    int n = lc_fuzz_split(data, size, parts, 3);
    const char *json = lc_fuzz_path(0, NULL, "tokenizer.json");
    const char *cfg = NULL;
    lc_fuzz_write(json, parts[0].p, parts[0].n);
    if (n >= 2) {
        cfg = lc_fuzz_path(1, NULL, "tokenizer_config.json");
        lc_fuzz_write(cfg, parts[1].p, parts[1].n);
    }
    lc_tokenizer *tok;
    if (lc_fuzz_note(lc_tokenizer_load(&tok, json, cfg), "tokenizer") != LC_STATUS_OK) return 0;
    int32_t V = lc_tokenizer_vocab_size(tok);
    if (V <= 0) __builtin_trap();
    (void)lc_tokenizer_bos(tok);
    (void)lc_tokenizer_eos(tok);
    (void)lc_tokenizer_adds_bos(tok);
    (void)lc_tokenizer_adds_eos(tok);
    (void)lc_tokenizer_unk(tok);
    (void)lc_tokenizer_get_style(tok);
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) exercise(tok, fixed[i], strlen(fixed[i]));
    if (n >= 3) exercise(tok, (const char *)parts[2].p, parts[2].n);
    // Every id (bounded), through the vocabulary accessors and the decoders.
    int32_t lim = V < 4096 ? V : 4096;
    int32_t *all = malloc(sizeof *all * (size_t)(lim + 2));
    for (int32_t id = 0; id < lim; id++) {
        all[id] = id;
        size_t len;
        const char *t = lc_tokenizer_token_text(tok, id, &len);
        const char *p = lc_tokenizer_piece(tok, id);
        (void)lc_tokenizer_token_kind(tok, id);
        if (t && memchr(t, 0, len)) (void)0; // NULs inside pieces are allowed
        if (p) (void)lc_tokenizer_find(tok, p);
    }
    all[lim] = -1;
    all[lim + 1] = V + 7;
    char *out = NULL;
    size_t out_len;
    lc_tokenizer_decode(tok, all, (size_t)lim + 2, false, &out, &out_len);
    free(out);
    stream(tok, all, (size_t)lim + 2, false);
    free(all);
    lc_tokenizer_merge *merges = NULL;
    size_t n_merges = 0;
    if (lc_tokenizer_merges(tok, &merges, &n_merges) == LC_STATUS_OK) {
        for (size_t i = 0; i < n_merges; i++)
            if (merges[i].left < 0 || merges[i].left >= V || merges[i].right < 0 || merges[i].right >= V ||
                merges[i].result < 0 || merges[i].result >= V)
                __builtin_trap();
    }
    free(merges);
    lc_tokenizer_free(tok);
    return 0;
}
