// Tokenizer tests: llama.cpp's tokenizer vectors for four real tokenizers
// (exact ids and decode round trip), BOS handling, streaming decode, added
// tokens, token offsets, and error reporting on bad files.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "common/file.h"
#include "common/json.h"
#include "data/tokenizer.h"
#include "data/tokenizer_internal.h"
#include "model/gguf_model.h"

#define SHARED LC_SHARED_DIR
#define VECTORS SHARED "/tokenizers/llamacpp-vectors/"
#define SEP "\n__ggml_vocab_test__\n"

static lc_tokenizer *load(const char *json, const char *config) {
    lc_tokenizer *tok = NULL;
    lc_status st = lc_tokenizer_load(&tok, json, config);
    ck_assert_msg(st == LC_STATUS_OK, "load %s: %s", json, lc_error_message());
    return tok;
}

static char *read_all(const char *path, size_t *len) {
    char *data;
    lc_status st = lc_file_read(path, (size_t)1 << 28, &data, len);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    return data;
}

static size_t encode(const lc_tokenizer *tok, const char *s, size_t len, bool special, int32_t **ids,
                     size_t *cap) {
    size_t n;
    lc_status st = lc_tokenizer_encode(tok, s, len, special, ids, cap, &n);
    ck_assert_msg(st == LC_STATUS_OK, "encode: %s", lc_error_message());
    return n;
}

static char *decode(const lc_tokenizer *tok, const int32_t *ids, size_t n, bool skip, size_t *len) {
    char *out;
    lc_status st = lc_tokenizer_decode(tok, ids, n, skip, &out, len);
    ck_assert_msg(st == LC_STATUS_OK, "decode: %s", lc_error_message());
    return out;
}

// Streams ids through a detokenizer and returns the concatenated output.
// Each push writes into a buffer of exactly lc_tokenizer_stream_max_bytes.
static char *stream(const lc_tokenizer *tok, const int32_t *ids, size_t n, bool skip, size_t *len) {
    lc_detokenizer d;
    size_t cap = lc_tokenizer_stream_max_bytes(tok), k, total = 0;
    char *buf = malloc(cap), *acc = malloc((n + 1) * cap + 1);
    lc_detokenizer_init(&d, tok, skip);
    for (size_t i = 0; i < n; i++) {
        lc_status st = lc_detokenizer_push(&d, ids[i], buf, cap, &k);
        ck_assert_msg(st == LC_STATUS_OK, "push of id %d: %s", ids[i], lc_error_message());
        memcpy(acc + total, buf, k);
        total += k;
    }
    ck_assert_int_eq(lc_detokenizer_flush(&d, buf, cap, &k), LC_STATUS_OK);
    memcpy(acc + total, buf, k);
    total += k;
    acc[total] = '\0';
    *len = total;
    free(buf);
    return acc;
}

// ---- llama.cpp vectors ----

static const struct {
    const char *out, *json;
} VEC[] = {
    {VECTORS "llama-spm.out", SHARED "/tokenizers/llama2/tokenizer.json"},
    {VECTORS "gpt-2.out", SHARED "/tokenizers/gpt2/tokenizer.json"},
    {VECTORS "falcon.out", SHARED "/tokenizers/falcon/tokenizer.json"},
    {VECTORS "phi-3.out", SHARED "/tokenizers/phi-3-mini/tokenizer.json"},
    // The same vocabularies as llama.cpp's own vocab GGUFs hold them
    // (tokenizer.ggml.*, converted back by lc_gguf_tokenizer_json).
    {VECTORS "llama-spm.out", VECTORS "ggml-vocab-llama-spm.gguf"},
    {VECTORS "gpt-2.out", VECTORS "ggml-vocab-gpt-2.gguf"},
    {VECTORS "phi-3.out", VECTORS "ggml-vocab-phi-3.gguf"},
    {VECTORS "falcon.out", VECTORS "ggml-vocab-falcon.gguf"},
};

// A tokenizer.json, or a GGUF file's vocabulary.
static lc_tokenizer *load_any(const char *path) {
    size_t n = strlen(path);
    if (n < 5 || strcmp(path + n - 5, ".gguf")) return load(path, NULL);
    lc_gguf_file f;
    ck_assert_msg(lc_gguf_open(&f, path) == LC_STATUS_OK, "%s", lc_error_message());
    cJSON *t, *c;
    ck_assert_msg(lc_gguf_tokenizer_json(&f, &t, &c) == LC_STATUS_OK, "%s", lc_error_message());
    lc_tokenizer *tok = NULL;
    ck_assert_msg(lc_tokenizer_load_json(&tok, t, c, path) == LC_STATUS_OK, "%s: %s", path, lc_error_message());
    cJSON_Delete(t);
    cJSON_Delete(c);
    lc_gguf_close(&f);
    return tok;
}

START_TEST(test_llamacpp_vectors) {
    size_t in_len, out_len;
    char *input = read_all(VECTORS "input.inp", &in_len);
    char *expect = read_all(VEC[_i].out, &out_len);
    lc_tokenizer *tok = load_any(VEC[_i].json);
    int32_t *ids = NULL;
    size_t cap = 0;
    int n_cases = 0, enc_ok = 0, rt_ok = 0;
    char *in_p = input, *out_p = expect;
    // input.inp: cases each followed by SEP (the text after the last one is the
    // empty 47th case); NAME.out: one line of ids per case.
    for (;;) {
        char *sep = strstr(in_p, SEP);
        size_t len = sep ? (size_t)(sep - in_p) : strlen(in_p);
        char *eol = strchr(out_p, '\n');
        ck_assert_msg(sep || !eol || !eol[1], "%s: more id lines than cases", VEC[_i].out);
        if (eol) *eol = '\0';
        int32_t want[4096];
        size_t n_want = 0;
        for (char *p = out_p, *end; *p;) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[n_want++] = (int32_t)v;
            p = end;
        }
        size_t n = encode(tok, in_p, len, false, &ids, &cap);
        bool same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
        enc_ok += same;
        if (!same) {
            fprintf(stderr, "%s case %d: %.60s\n  want:", VEC[_i].out, n_cases, in_p);
            for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        // Every case round-trips exactly: the SentencePiece decoders strip the
        // one space the normalizer prepended, and byte-level is lossless.
        size_t dlen;
        char *text = decode(tok, ids, n, false, &dlen);
        bool rt = dlen == len && memcmp(text, in_p, len) == 0;
        rt_ok += rt;
        if (!rt) fprintf(stderr, "%s case %d: round trip gave \"%s\"\n", VEC[_i].out, n_cases, text);
        // The streaming detokenizer gives the same text.
        size_t slen;
        char *streamed = stream(tok, ids, n, false, &slen);
        ck_assert_msg(slen == dlen && memcmp(streamed, text, dlen) == 0, "%s case %d: stream \"%s\" vs \"%s\"",
                      VEC[_i].out, n_cases, streamed, text);
        free(streamed);
        free(text);
        n_cases++;
        if (!sep) break;
        in_p = sep + strlen(SEP);
        out_p = eol ? eol + 1 : out_p + strlen(out_p);
    }
    fprintf(stderr, "%s: %d/%d encode exact, %d/%d round trip\n", VEC[_i].out, enc_ok, n_cases, rt_ok, n_cases);
    ck_assert_int_eq(n_cases, 47);
    ck_assert_int_eq(enc_ok, 47);
    ck_assert_int_eq(rt_ok, 47);
    free(ids);
    free(input);
    free(expect);
    lc_tokenizer_free(tok);
}
END_TEST

// ---- BOS / config ----

START_TEST(test_stories_bos) {
    lc_tokenizer *tok = load(SHARED "/models/stories260K/tokenizer.json", SHARED "/models/stories260K/tokenizer_config.json");
    ck_assert_int_eq(lc_tokenizer_bos(tok), 1);
    ck_assert_int_eq(lc_tokenizer_eos(tok), 2);
    ck_assert(lc_tokenizer_adds_bos(tok));
    ck_assert_int_eq(lc_tokenizer_vocab_size(tok), 512);
    int32_t *ids = NULL;
    size_t cap = 0, len;
    const char *text = "Once upon a time";
    size_t n = encode(tok, text, strlen(text), true, &ids, &cap);
    ck_assert_uint_ge(n, 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_str_eq(lc_tokenizer_piece(tok, ids[1]), "\xE2\x96\x81Once"); // the prepended ▁ starts the text
    size_t n2 = encode(tok, text, strlen(text), false, &ids, &cap);
    ck_assert_uint_eq(n2, n - 1);
    char *s = decode(tok, ids, n2, false, &len);
    ck_assert_str_eq(s, text);
    free(s);
    n = encode(tok, text, strlen(text), true, &ids, &cap);
    s = decode(tok, ids, n, true, &len); // BOS is special: skipped
    ck_assert_str_eq(s, text);
    free(s);
    s = decode(tok, ids, n, false, &len);
    ck_assert_str_eq(s, "<s> Once upon a time");
    free(s);
    free(ids);
    lc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bos_eos_sources) {
    // llama2: from tokenizer_config (object form {"content": ...}) and the template.
    lc_tokenizer *tok = load(SHARED "/tokenizers/llama2/tokenizer.json", SHARED "/tokenizers/llama2/tokenizer_config.json");
    ck_assert_int_eq(lc_tokenizer_bos(tok), 1);
    ck_assert_int_eq(lc_tokenizer_eos(tok), 2);
    ck_assert(lc_tokenizer_adds_bos(tok));
    ck_assert_int_eq(lc_tokenizer_find(tok, "<0x0A>"), 13);
    ck_assert_str_eq(lc_tokenizer_piece(tok, 13), "<0x0A>");
    ck_assert_ptr_null(lc_tokenizer_piece(tok, 32000));
    ck_assert_int_eq(lc_tokenizer_vocab_size(tok), 32000);
    int32_t *ids = NULL;
    size_t cap = 0, len;
    size_t n = encode(tok, "a\xE2\x96\x81" "b", 5, false, &ids, &cap);
    char *s = decode(tok, ids, n, false, &len);
    ck_assert_str_eq(s, "a b"); // a literal ▁ is indistinguishable from an encoded space
    free(s);
    lc_tokenizer_free(tok);
    // phi-3: config says no BOS, eos is <|endoftext|>.
    tok = load(SHARED "/tokenizers/phi-3-mini/tokenizer.json", SHARED "/tokenizers/phi-3-mini/tokenizer_config.json");
    ck_assert_int_eq(lc_tokenizer_bos(tok), 1);
    ck_assert_int_eq(lc_tokenizer_eos(tok), 32000);
    ck_assert(!lc_tokenizer_adds_bos(tok));
    ck_assert_int_eq(lc_tokenizer_vocab_size(tok), 32011);
    lc_tokenizer_free(tok);
    // gpt2: no config, ByteLevel post-processor adds nothing; common names give <|endoftext|>.
    tok = load(SHARED "/tokenizers/gpt2/tokenizer.json", NULL);
    ck_assert_int_eq(lc_tokenizer_bos(tok), 50256);
    ck_assert_int_eq(lc_tokenizer_eos(tok), 50256);
    ck_assert(!lc_tokenizer_adds_bos(tok));
    ck_assert_uint_eq(encode(tok, "Hello", 5, true, &ids, &cap), 1);
    free(ids);
    lc_tokenizer_free(tok);
}
END_TEST

// ---- added tokens ----

START_TEST(test_added_tokens) {
    lc_tokenizer *tok = load(SHARED "/tokenizers/phi-3-mini/tokenizer.json", SHARED "/tokenizers/phi-3-mini/tokenizer_config.json");
    int32_t *ids = NULL;
    size_t cap = 0, len;
    // rstrip on <|user|>, <|end|> and <|assistant|> swallows the newline after
    // them; "Hello" is normalized on its own, so it gets the ▁ prefix.
    const char *chat = "<|user|>\nHello<|end|>\n<|assistant|>";
    size_t n = encode(tok, chat, strlen(chat), false, &ids, &cap);
    int32_t want[] = {32010, 15043, 32007, 32001};
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(ids, want, sizeof want);
    char *s = decode(tok, ids, n, true, &len);
    ck_assert_str_eq(s, "Hello");
    free(s);
    s = decode(tok, ids, n, false, &len);
    ck_assert_str_eq(s, "<|user|> Hello<|end|><|assistant|>");
    free(s);
    free(ids);
    lc_tokenizer_free(tok);

    // gpt2: <|endoftext|> in the text is one token; special, so skip_special drops it.
    tok = load(SHARED "/tokenizers/gpt2/tokenizer.json", NULL);
    ids = NULL;
    cap = 0;
    const char *t2 = "a<|endoftext|>b";
    n = encode(tok, t2, strlen(t2), false, &ids, &cap);
    int32_t want2[] = {64, 50256, 65};
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(ids, want2, sizeof want2);
    s = decode(tok, ids, n, true, &len);
    ck_assert_str_eq(s, "ab");
    free(s);
    free(ids);
    lc_tokenizer_free(tok);
}
END_TEST

// ---- streaming ----

START_TEST(test_streaming_multibyte) {
    static const char *files[] = {
        SHARED "/tokenizers/llama2/tokenizer.json", // 🦙, ✅ and CJK through <0xNN> byte fallback
        SHARED "/tokenizers/gpt2/tokenizer.json",   // through byte-level pieces split mid-character
        SHARED "/tokenizers/phi-2/tokenizer.json",
    };
    const char *text = " this is 🦙.cpp ✅ 我想在apple工作 😶\u200d🌫️ ok";
    for (int f = 0; f < 3; f++) {
        lc_tokenizer *tok = load(files[f], NULL);
        int32_t *ids = NULL;
        size_t cap = 0, dlen, slen;
        size_t n = encode(tok, text, strlen(text), true, &ids, &cap);
        for (int skip = 0; skip < 2; skip++) {
            char *d = decode(tok, ids, n, skip, &dlen);
            char *s = stream(tok, ids, n, skip, &slen);
            ck_assert_str_eq(s, d);
            ck_assert_uint_eq(slen, dlen);
            free(d);
            free(s);
        }
        // No bytes of a character are released before the character is complete.
        lc_detokenizer det;
        char buf[256];
        size_t k;
        lc_detokenizer_init(&det, tok, true);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(lc_detokenizer_push(&det, ids[i], buf, sizeof buf, &k), LC_STATUS_OK);
            buf[k] = '\0';
            ck_assert_msg(strstr(buf, "\xEF\xBF\xBD") == NULL, "%s: U+FFFD streamed", files[f]);
        }
        free(ids);
        lc_tokenizer_free(tok);
    }
    // A dangling byte-fallback prefix becomes U+FFFD, as HF's ByteFallback does.
    lc_tokenizer *tok = load(SHARED "/tokenizers/llama2/tokenizer.json", NULL);
    int32_t bad[] = {lc_tokenizer_find(tok, "<0xF0>"), lc_tokenizer_find(tok, "<0x9F>"), lc_tokenizer_find(tok, "\xE2\x96\x81ok")};
    size_t dlen, slen;
    char *d = decode(tok, bad, 3, false, &dlen);
    ck_assert_str_eq(d, "\xEF\xBF\xBD\xEF\xBF\xBD ok");
    char *s = stream(tok, bad, 3, false, &slen);
    ck_assert_str_eq(s, d);
    free(d);
    free(s);
    lc_tokenizer_free(tok);
}
END_TEST

// ---- other real tokenizers ----

// OLMo's longest piece (512 spaces) streamed right after a byte that starts
// a UTF-8 character: one push writes U+FFFD and the spaces, 515 bytes, which
// the planned buffer holds (lora generate had 512 and stopped there).
START_TEST(test_stream_longest_piece) {
    lc_tokenizer *tok = load(SHARED "/tokenizers/olmo/tokenizer.json", NULL);
    // The longest single-token text, found by decoding every id on its own.
    size_t longest = 0, len;
    int32_t longest_id = -1;
    for (int32_t id = 0; id < lc_tokenizer_vocab_size(tok); id++) {
        char *s = decode(tok, &id, 1, false, &len);
        if (len > longest) {
            longest = len;
            longest_id = id;
        }
        free(s);
    }
    ck_assert_uint_ge(longest, 512);
    // A held partial character (up to 3 bytes) becomes U+FFFD before it.
    ck_assert_uint_ge(lc_tokenizer_stream_max_bytes(tok), longest + 3);
    int32_t ids[2] = {lc_tokenizer_find(tok, "\xC3\xA2"), longest_id}; // byte-level 'â' is the byte 0xE2
    ck_assert_int_ge(ids[0], 0);
    size_t dlen, slen;
    char *d = decode(tok, ids, 2, false, &dlen);
    ck_assert_uint_eq(dlen, longest + 3);
    char *s = stream(tok, ids, 2, false, &slen);
    ck_assert_uint_eq(slen, dlen);
    ck_assert(memcmp(s, d, dlen) == 0);
    free(d);
    free(s);
    lc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_phi2_olmo_roundtrip) {
    static const char *files[] = {SHARED "/tokenizers/phi-2/tokenizer.json", SHARED "/tokenizers/olmo/tokenizer.json"};
    static const char *texts[] = {
        "Hello world",
        "def f(x):\n    return x  +  1\n",
        "  leading and trailing spaces  ",
        "Ünïcödé ½ 🦙 日本語",
        "<|endoftext|>after",
    };
    for (int f = 0; f < 2; f++) {
        lc_tokenizer *tok = load(files[f], NULL);
        int32_t *ids = NULL;
        size_t cap = 0, len;
        for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
            size_t n = encode(tok, texts[t], strlen(texts[t]), false, &ids, &cap);
            ck_assert_uint_gt(n, 0);
            char *s = decode(tok, ids, n, false, &len);
            ck_assert_msg(strcmp(s, texts[t]) == 0, "%s: \"%s\" -> \"%s\"", files[f], texts[t], s);
            free(s);
        }
        // phi-2's added whitespace tokens (normalized: true) are matched for runs of spaces.
        if (f == 0) {
            const char *code = "x =" "                " "1";
            size_t n = encode(tok, code, strlen(code), false, &ids, &cap);
            bool has_added = false;
            for (size_t i = 0; i < n; i++) has_added |= ids[i] >= 50257;
            ck_assert(has_added);
        }
        free(ids);
        lc_tokenizer_free(tok);
    }
}
END_TEST

// Random text (fixed seed) from a mix of scripts, spaces and emoji must
// round-trip through encode/decode and give the same text when streamed.
// U+2581 is left out: SentencePiece decoders turn it into a space, in HF too
// (checked in test_bos_eos_sources).
START_TEST(test_random_roundtrip) {
    static const uint32_t pool[] = {' ', ' ', ' ', '\n', '\t', 'a', 'e', 'T', 'z', '0', '7', '.', '\'', '!', '-', 0xE9,
                                    0xBD, 0x0416, 0x0E01, 0x4E2D, 0x6587, 0x3000, 0xA0, 0x200D, 0xFE0F,
                                    0x1F600, 0x1F999, 0x2705, 0xFFFD, 0x10FFFF};
    uint64_t rng = 42;
    lc_tokenizer *tok = load_any(VEC[_i].json);
    int32_t *ids = NULL;
    size_t cap = 0;
    char text[1024];
    for (int iter = 0; iter < 300; iter++) {
        size_t len = 0;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int nch = (int)(rng >> 59) + 1;
        for (int k = 0; k < nch; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint32_t cp = pool[(rng >> 33) % (sizeof pool / sizeof *pool)];
            len += (size_t)snprintf(text + len, sizeof text - len, "%s",
                                    cp < 0x80      ? (char[]){(char)cp, 0}
                                    : cp < 0x800   ? (char[]){(char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 63)), 0}
                                    : cp < 0x10000 ? (char[]){(char)(0xE0 | cp >> 12), (char)(0x80 | (cp >> 6 & 63)),
                                                              (char)(0x80 | (cp & 63)), 0}
                                                   : (char[]){(char)(0xF0 | cp >> 18), (char)(0x80 | (cp >> 12 & 63)),
                                                              (char)(0x80 | (cp >> 6 & 63)), (char)(0x80 | (cp & 63)), 0});
        }
        size_t n = encode(tok, text, len, false, &ids, &cap), dlen, slen;
        char *d = decode(tok, ids, n, false, &dlen);
        ck_assert_msg(dlen == len && memcmp(d, text, len) == 0, "%s: \"%s\" -> \"%s\"", VEC[_i].json, text, d);
        char *st = stream(tok, ids, n, false, &slen);
        ck_assert_str_eq(st, d);
        free(d);
        free(st);
    }
    free(ids);
    lc_tokenizer_free(tok);
}
END_TEST

// ---- independent reference (tests/reference/gen_tokenizer_fixtures.mjs) ----

START_TEST(test_reference_fixtures) {
    cJSON *line;
    size_t len;
    char *data = read_all(LC_SOURCE_DIR "/tests/fixtures/tokenizer_cases.jsonl", &len);
    int n_cases = 0, n_ok = 0;
    for (char *p = data, *eol; *p; p = eol + 1) {
        eol = strchr(p, '\n');
        ck_assert_ptr_nonnull(eol);
        ck_assert_int_eq(lc_json_parse(p, (size_t)(eol - p), "tokenizer_cases.jsonl", &line), LC_STATUS_OK);
        const cJSON *dir = cJSON_GetObjectItem(line, "tokenizer"), *text = cJSON_GetObjectItem(line, "text");
        const cJSON *want = cJSON_GetObjectItem(line, "ids"), *dec = cJSON_GetObjectItem(line, "decoded");
        char json[512], config[512];
        snprintf(json, sizeof json, "%s/%s/tokenizer.json", SHARED, dir->valuestring);
        snprintf(config, sizeof config, "%s/%s/tokenizer_config.json", SHARED, dir->valuestring);
        lc_tokenizer *tok = load(json, config);
        int32_t *ids = NULL;
        size_t cap = 0;
        size_t n = encode(tok, text->valuestring, strlen(text->valuestring),
                          cJSON_IsTrue(cJSON_GetObjectItem(line, "add_special")), &ids, &cap);
        bool same = n == (size_t)cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        char *s = decode(tok, ids, n, false, &len);
        if (strcmp(s, dec->valuestring) != 0) {
            same = false;
            fprintf(stderr, "decode differs: \"%s\" vs \"%s\"\n", s, dec->valuestring);
        }
        if (!same) {
            fprintf(stderr, "%s: \"%s\" got:", dir->valuestring, text->valuestring);
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        n_ok += same;
        n_cases++;
        free(s);
        free(ids);
        lc_tokenizer_free(tok);
        cJSON_Delete(line);
    }
    fprintf(stderr, "reference fixtures: %d/%d match\n", n_ok, n_cases);
    ck_assert_int_gt(n_cases, 0);
    ck_assert_int_eq(n_ok, n_cases);
    free(data);
}
END_TEST

// ---- errors ----

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void expect_input_error(const char *path, const char *needle) {
    lc_tokenizer *tok = (lc_tokenizer *)1;
    lc_status st = lc_tokenizer_load(&tok, path, NULL);
    ck_assert_int_eq(st, LC_STATUS_INPUT);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(lc_error_message(), path) != NULL, "message lacks path: %s", lc_error_message());
    if (needle) ck_assert_msg(strstr(lc_error_message(), needle) != NULL, "message: %s", lc_error_message());
}

START_TEST(test_bad_files) {
    expect_input_error("/nonexistent/dir/tokenizer.json", NULL);
    char path[] = "/tmp/lc_tok_test_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,");
    expect_input_error(path, NULL);
    write_file(path, "[1, 2]");
    expect_input_error(path, NULL);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}");
    expect_input_error(path, "twice");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}");
    expect_input_error(path, "id");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e12}, \"merges\": []}}");
    expect_input_error(path, "id");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
    expect_input_error(path, "merge");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}");
    expect_input_error(path, "unk");
    write_file(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}");
    expect_input_error(path, "Unigram");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}");
    expect_input_error(path, "pattern");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     " \"added_tokens\": [{\"id\": 99999999, \"content\": \"x\"}]}");
    expect_input_error(path, "id");
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}],"
                     " \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [7]}}}}");
    expect_input_error(path, "range");
    // Replace decoders that could blow one token up past what a stream buffer is planned for.
    char big[4096];
    const char *r = "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"0123456789abcdef\"}";
    snprintf(big, sizeof big, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"aaaa\": 0}, \"merges\": []},"
             " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [%s, %s, %s, %s, %s]}}", r, r, r, r, r);
    write_file(path, big);
    expect_input_error(path, "the decoder can expand one token to more than 1048576 bytes");

    // A minimal valid file: merges as pairs, unknown chars -> fused <unk>.
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3},"
                     " \"merges\": [[\"a\", \"b\"]], \"unk_token\": \"<unk>\", \"fuse_unk\": true}}");
    lc_tokenizer *tok = load(path, "/nonexistent/tokenizer_config.json");
    int32_t *ids = NULL;
    size_t cap = 0;
    size_t n = encode(tok, "abxyab", 6, false, &ids, &cap);
    int32_t want[] = {3, 0, 3};
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(ids, want, sizeof want);
    ck_assert_int_eq(lc_tokenizer_encode(tok, "\xff", 1, false, &ids, &cap, &n), LC_STATUS_INPUT);
    free(ids);
    lc_tokenizer_free(tok);
    unlink(path);
}
END_TEST

// Bloom's pre-tokenizer regex nests a class in a class (Oniguruma syntax);
// it must compile and keep its meaning: words without whitespace, the listed
// punctuation, '(', '|' or ')' (literal members of the class), each with one
// optional leading space.
START_TEST(test_nested_class_regex) {
    static const char bloom[] = " ?[^(\\s|[.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c])]+";
    pcre2_code *re;
    ck_assert_msg(tok_regex_compile(&re, bloom, strlen(bloom), false, "bloom") == LC_STATUS_OK, "%s",
                  lc_error_message());
    const char *text = "Hello, big world(x|y)! \u2026ok";
    static const char *const want[] = {"Hello", " big", " world", "x", "y", "ok"};
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t at = 0, n = 0, len = strlen(text);
    while (at < len && pcre2_match(re, (PCRE2_SPTR)text, len, at, 0, md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        ck_assert_uint_lt(n, sizeof want / sizeof want[0]);
        ck_assert_msg(ov[1] - ov[0] == strlen(want[n]) && memcmp(text + ov[0], want[n], ov[1] - ov[0]) == 0,
                      "match %zu: \"%.*s\", want \"%s\"", n, (int)(ov[1] - ov[0]), text + ov[0], want[n]);
        n++;
        at = ov[1];
    }
    ck_assert_uint_eq(n, sizeof want / sizeof want[0]);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}
END_TEST

// ---- token offsets ----

// GPT-2's byte-level alphabet, rebuilt here so the check does not lean on
// the loader's table: printable Latin-1 bytes stand for themselves, the
// other 68 bytes for U+0100 on, in byte order. inv: code point -> byte.
static void gpt2_alphabet(int inv[324]) {
    for (int i = 0; i < 324; i++) inv[i] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        inv[printable ? b : next++] = b;
    }
}

// The bytes token id stands for, worked out from its vocabulary entry
// without the library's decoder: added-token content, byte-level chars
// through the GPT-2 alphabet, SentencePiece "▁" as ' ' and <0xNN> as NN.
static size_t token_bytes(const lc_tokenizer *tok, int32_t id, const int *inv, char *out /*[8192]*/) {
    lc_token_kind kind = lc_tokenizer_token_kind(tok, id);
    size_t n = 0, len;
    const char *s = lc_tokenizer_token_text(tok, id, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_lt(len, 2048);
    if (kind == LC_TOKEN_CONTROL || kind == LC_TOKEN_ADDED) {
        memcpy(out, s, len);
        return len;
    }
    if (lc_tokenizer_get_style(tok) == LC_TOKENIZER_BYTE_LEVEL) {
        for (size_t i = 0; i < len;) {
            unsigned c0 = (unsigned char)s[i];
            unsigned cp = c0 < 0x80 ? c0 : (c0 & 0x1F) << 6 | ((unsigned char)s[i + 1] & 0x3F);
            i += c0 < 0x80 ? 1 : 2;
            ck_assert_msg(cp < 324 && inv[cp] >= 0, "byte-level piece of id %d has U+%04X", id, cp);
            out[n++] = (char)inv[cp];
        }
        return n;
    }
    if (kind == LC_TOKEN_BYTE) {
        out[0] = (char)strtol(s + 3, NULL, 16);
        return 1;
    }
    for (size_t i = 0; i < len;) {
        if (len - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[n++] = ' ';
            i += 3;
        } else {
            out[n++] = s[i++];
        }
    }
    return n;
}

static bool all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i])) return false;
    return true;
}

// Encodes text and checks lc_tokenizer_offsets against independent facts:
// offsets start at 0 and never decrease; every token's span of text is the
// bytes it stands for (a SentencePiece token at a segment start may lack its
// dummy-prefix space; an added token's span is its content with whitespace
// its lstrip/rstrip took); with prefix_decode, decoding the first j tokens
// gives the text up to offsets[j] wherever that is a character boundary.
static void check_offsets(const lc_tokenizer *tok, const char *name, const char *text, bool prefix_decode) {
    static int inv[324];
    gpt2_alphabet(inv);
    size_t len = strlen(text), cap = 0;
    int32_t *ids = NULL;
    size_t n = encode(tok, text, len, false, &ids, &cap);
    size_t *off = malloc((n + 1) * sizeof *off);
    lc_status st = lc_tokenizer_offsets(tok, text, len, ids, n, off);
    ck_assert_msg(st == LC_STATUS_OK, "%s \"%s\": %s", name, text, lc_error_message());
    off[n] = len;
    if (n) ck_assert_msg(off[0] == 0, "%s \"%s\": offsets[0] = %zu", name, text, off[0]);
    bool sp = lc_tokenizer_get_style(tok) == LC_TOKENIZER_SENTENCEPIECE;
    static char want[8192];
    for (size_t j = 0; j < n; j++) {
        ck_assert_msg(off[j] <= off[j + 1], "%s \"%s\": offsets[%zu] = %zu > offsets[%zu] = %zu", name, text, j, off[j],
                      j + 1, off[j + 1]);
        const char *span = text + off[j];
        size_t sl = off[j + 1] - off[j], wl = token_bytes(tok, ids[j], inv, want);
        lc_token_kind kind = lc_tokenizer_token_kind(tok, ids[j]);
        bool ok = sl == wl && memcmp(span, want, wl) == 0;
        if (kind == LC_TOKEN_CONTROL || kind == LC_TOKEN_ADDED) {
            for (size_t k = 0; !ok && k + wl <= sl; k++)
                ok = memcmp(span + k, want, wl) == 0 && all_space(span, k) && all_space(span + k + wl, sl - k - wl);
        } else if (!ok && sp && wl && want[0] == ' ' && sl == wl - 1 && memcmp(span, want + 1, sl) == 0) {
            lc_token_kind prev = j ? lc_tokenizer_token_kind(tok, ids[j - 1]) : LC_TOKEN_CONTROL;
            ok = prev == LC_TOKEN_CONTROL || prev == LC_TOKEN_ADDED;
        }
        ck_assert_msg(ok, "%s \"%s\": token %zu (id %d, \"%s\") has the span [%zu, %zu) \"%.*s\"", name, text, j,
                      ids[j], lc_tokenizer_piece(tok, ids[j]), off[j], off[j + 1], (int)sl, span);
    }
    for (size_t j = 0; prefix_decode && j <= n; j++) {
        if (off[j] < len && ((unsigned char)text[off[j]] & 0xC0) == 0x80) continue; // mid-character
        size_t dl;
        char *d = decode(tok, ids, j, false, &dl);
        ck_assert_msg(dl == off[j] && memcmp(d, text, dl) == 0, "%s \"%s\": tokens [0, %zu) decode to \"%s\", offset %zu",
                      name, text, j, d, off[j]);
        free(d);
    }
    free(off);
    free(ids);
}

static const struct {
    const char *dir;
    const char *special; // text with the tokenizer's added tokens
} OFF_TOK[] = {
    {SHARED "/tokenizers/phi-3-mini", "<|user|>\nHi<|end|>\n<|assistant|>\n"},
    {SHARED "/tokenizers/llama2", "<s>Hi a <s> b</s>"},
    {SHARED "/models/stories260K", "<s>Once upon a time</s>"}, // 512 pieces: most text through byte fallback
    {SHARED "/tokenizers/gpt2", "a<|endoftext|>b <|endoftext|>"},
    {SHARED "/tokenizers/falcon", ">>TITLE<<Hi\n>>ABSTRACT<< text<|endoftext|>"},
    {SHARED "/tokenizers/phi-2", "x =                1\n\t\t\tpass<|endoftext|>"},
    {SHARED "/tokenizers/olmo", "<|endoftext|>after |||IP_ADDRESS||| x"},
};

START_TEST(test_offsets_real) {
    static const char *texts[] = {
        "Hello world",
        " leading space",
        "  two leading and   three inside  ",
        "line one\nline two\n\n\ttabbed\r\nend\n",
        "\t\n \n",
        "Ünïcödé café naïve façade Ærøskøbing",
        "日本語のテキスト、中文和한국어 龘",
        "emoji 🦙 👨\u200d👩\u200d👧\u200d👦 🏳\uFE0F\u200d🌈 ✅ ok",
        "def f(x):\n    return x  +  1\n",
        "12345 3.14159 $100",
    };
    char dir[512], json[600], config[600];
    snprintf(dir, sizeof dir, "%s", OFF_TOK[_i].dir);
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
    lc_tokenizer *tok = load(json, access(config, R_OK) == 0 ? config : NULL);
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) check_offsets(tok, dir, texts[t], true);
    // SentencePiece decoding turns the dummy prefix after an added token into
    // a space and drops rstripped newlines, so only the spans check there.
    bool sp = lc_tokenizer_get_style(tok) == LC_TOKENIZER_SENTENCEPIECE;
    check_offsets(tok, dir, OFF_TOK[_i].special, !sp);
    lc_tokenizer_free(tok);
}
END_TEST

// Offsets worked out by hand from the pieces (`lora tokenize --no-bos`).
START_TEST(test_offsets_known) {
    static const struct {
        const char *dir, *text;
        int32_t ids[8];
        size_t off[8], n;
    } cases[] = {
        // ▁Hi ▁there: the dummy ▁ of ▁Hi stands for nothing.
        {"phi-3-mini", "Hi there", {6324, 727}, {0, 2}, 2},
        // ▁ (dummy) ▁Hi ▁ ▁there: the dummy gets the next token's offset.
        {"phi-3-mini", " Hi  there", {29871, 6324, 29871, 727}, {0, 0, 3, 4}, 4},
        // ▁ <0xF0> <0x9F> <0xA6> <0x99> ▁ok: one byte per byte-fallback token.
        {"phi-3-mini", "🦙 ok", {29871, 243, 162, 169, 156, 3431}, {0, 0, 1, 2, 3, 4}, 6},
        // ▁a ▁b: the second ▁ is a literal U+2581 of the text (3 bytes).
        {"phi-3-mini", "a\xE2\x96\x81" "b", {263, 289}, {0, 1}, 2},
        // <|user|> (takes "\n"), ▁Hi (dummy ▁), <|end|> (takes "\n"), <|assistant|> (takes "\n").
        {"phi-3-mini", "<|user|>\nHi<|end|>\n<|assistant|>\n", {32010, 6324, 32007, 32001}, {0, 9, 11, 19}, 4},
        // ▁ <0xE9> <0xBE> <0x98> 日: 龘 is E9 BE 98 through byte fallback.
        {"llama2", "龘日", {29871, 236, 193, 155, 30325}, {0, 0, 1, 2, 3}, 5},
        // <s> is matched as "▁<s>" in normalized text: the dummy at the start, the space before the second.
        {"llama2", "<s>Hi a <s>", {1, 18567, 263, 1}, {0, 3, 5, 7}, 4},
        {"gpt2", "Hello world", {15496, 995}, {0, 5}, 2},
        // ðŁ ¦ Ļ Ġæ Ĺ ¥: F09F A6 99 20E6 97 A5, characters split across pieces.
        {"gpt2", "🦙 日", {8582, 99, 247, 10545, 245, 98}, {0, 2, 3, 4, 6, 7}, 6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char json[512];
        snprintf(json, sizeof json, "%s/tokenizers/%s/tokenizer.json", SHARED, cases[c].dir);
        lc_tokenizer *tok = load(json, NULL);
        int32_t *ids = NULL;
        size_t cap = 0, off[8];
        size_t n = encode(tok, cases[c].text, strlen(cases[c].text), false, &ids, &cap);
        ck_assert_uint_eq(n, cases[c].n);
        ck_assert_mem_eq(ids, cases[c].ids, n * sizeof *ids);
        ck_assert_int_eq(lc_tokenizer_offsets(tok, cases[c].text, strlen(cases[c].text), ids, n, off), LC_STATUS_OK);
        for (size_t j = 0; j < n; j++)
            ck_assert_msg(off[j] == cases[c].off[j], "%s \"%s\": offsets[%zu] = %zu, want %zu", cases[c].dir,
                          cases[c].text, j, off[j], cases[c].off[j]);
        free(ids);
        lc_tokenizer_free(tok);
    }
}
END_TEST

static lc_tokenizer *load_text(const char *json) {
    char path[] = "/tmp/lc_tok_off_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    write_file(path, json);
    lc_tokenizer *tok = load(path, NULL);
    unlink(path);
    return tok;
}

static void expect_offsets(const lc_tokenizer *tok, const char *text, const size_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t cap = 0, off[8];
    size_t n = encode(tok, text, strlen(text), false, &ids, &cap);
    ck_assert_uint_eq(n, n_want);
    ck_assert_int_eq(lc_tokenizer_offsets(tok, text, strlen(text), ids, n, off), LC_STATUS_OK);
    for (size_t j = 0; j < n; j++) ck_assert_msg(off[j] == want[j], "\"%s\": offsets[%zu] = %zu, want %zu", text, j, off[j], want[j]);
    free(ids);
}

// Pre-tokenizers that insert a space only where the text has none.
START_TEST(test_offsets_inserted_prefix) {
    // ByteLevel add_prefix_space: "a b" -> Ġa Ġ b; " a" -> Ġa with the text's own space.
    lc_tokenizer *tok = load_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xC4\xA0\": 0, \"a\": 1, \"\xC4\xA0" "a\": 2,"
                                  " \"b\": 3}, \"merges\": [[\"\xC4\xA0\", \"a\"]]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\","
                                  " \"add_prefix_space\": true}, \"decoder\": {\"type\": \"ByteLevel\"}}");
    expect_offsets(tok, "a b", (size_t[]){0, 1, 2}, 3);
    expect_offsets(tok, " a", (size_t[]){0}, 1);
    lc_tokenizer_free(tok);
    // Metaspace prepend_scheme always, split: "a b" -> ▁a ▁ b; " a" -> ▁a.
    tok = load_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xE2\x96\x81\": 0, \"a\": 1, \"\xE2\x96\x81" "a\": 2,"
                    " \"b\": 3}, \"merges\": [[\"\xE2\x96\x81\", \"a\"]]}, \"pre_tokenizer\": {\"type\": \"Metaspace\","
                    " \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"always\"}, \"decoder\": {\"type\": \"Metaspace\","
                    " \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"always\"}}");
    expect_offsets(tok, "a b", (size_t[]){0, 1, 2}, 3);
    expect_offsets(tok, " a", (size_t[]){0}, 1);
    lc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_offsets_errors) {
    lc_tokenizer *tok = load(SHARED "/tokenizers/phi-3-mini/tokenizer.json", NULL);
    int32_t *ids = NULL;
    size_t cap = 0, off[8];
    size_t n = encode(tok, "Hi there", 8, false, &ids, &cap);
    ck_assert_uint_eq(n, 2);
    // Another text than the ids': the token that differs and where it begins.
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "Hi thera", 8, ids, n, off), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "token 1") && strstr(lc_error_message(), "byte 2"), "%s",
                  lc_error_message());
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "Hi", 2, ids, n, off), LC_STATUS_INPUT);
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "Hi there!", 9, ids, n, off), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "8 of the text's 9 bytes"), "%s", lc_error_message());
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "x", 1, ids, 0, off), LC_STATUS_INPUT);
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "", 0, ids, 0, off), LC_STATUS_OK);
    // Ids no token has.
    int32_t bad[] = {6324, 999999};
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "Hi there", 8, bad, 2, off), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "999999"), "%s", lc_error_message());
    bad[1] = -1;
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "Hi there", 8, bad, 2, off), LC_STATUS_INPUT);
    free(ids);
    lc_tokenizer_free(tok);
    // A normalizer that rewrites the text: the tokens are "ab", the text "AB".
    tok = load_text("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\","
                    " \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}");
    ids = NULL;
    cap = 0;
    n = encode(tok, "AB", 2, false, &ids, &cap);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(lc_tokenizer_offsets(tok, "AB", 2, ids, n, off), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "token 0") && strstr(lc_error_message(), "byte 0"), "%s",
                  lc_error_message());
    free(ids);
    lc_tokenizer_free(tok);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("vectors");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_llamacpp_vectors, 0, (int)(sizeof VEC / sizeof VEC[0]));
    tcase_add_loop_test(tc, test_random_roundtrip, 0, 4);
    suite_add_tcase(s, tc);
    tc = tcase_create("behaviour");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_stories_bos);
    tcase_add_test(tc, test_bos_eos_sources);
    tcase_add_test(tc, test_added_tokens);
    tcase_add_test(tc, test_streaming_multibyte);
    tcase_add_test(tc, test_stream_longest_piece);
    tcase_add_test(tc, test_phi2_olmo_roundtrip);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_reference_fixtures);
    tcase_add_test(tc, test_nested_class_regex);
    tcase_add_loop_test(tc, test_offsets_real, 0, sizeof OFF_TOK / sizeof *OFF_TOK);
    tcase_add_test(tc, test_offsets_known);
    tcase_add_test(tc, test_offsets_inserted_prefix);
    tcase_add_test(tc, test_offsets_errors);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
