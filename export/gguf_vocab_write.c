// The tokenizer keys of a GGUF file as llama.cpp's convert_hf_to_gguf.py
// writes them (lc_gguf_add_vocab in export/gguf.h).
#include "export/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "model/gguf_internal.h"
#include "model/gguf_model.h"

typedef struct pre_scan {
    bool bytelevel_regex, punctuation, digits, other;
    const char *named; // a Split regex with a known name
    bool falcon_digits;
    int n_split;
    bool metaspace_prefix; // a Metaspace pre-tokenizer that prepends "▁"
} pre_scan;

static void scan_pretok(const cJSON *p, pre_scan *s, int depth) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (depth > 8 || !cJSON_IsString(type)) return;
    const char *t = type->valuestring;
    if (!strcmp(t, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) scan_pretok(e, s, depth + 1);
    } else if (!strcmp(t, "ByteLevel")) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if (!r || cJSON_IsTrue(r)) s->bytelevel_regex = true;
    } else if (!strcmp(t, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        s->n_split++;
        if (!cJSON_IsString(re)) return;
        const char *v = re->valuestring;
        static const char *const named[] = {"gpt-2", "llama-bpe", "qwen2", "bloom"};
        for (size_t i = 0; i < sizeof named / sizeof named[0] && !s->named; i++)
            if (!strcmp(v, lc_gguf_pre_regex(named[i]))) s->named = named[i];
        else if (!strcmp(v, "[0-9][0-9][0-9]")) s->falcon_digits = true;
    } else if (!strcmp(t, "Punctuation")) {
        s->punctuation = true;
    } else if (!strcmp(t, "Digits")) {
        s->digits = true;
    } else {
        // Metaspace prepends unless prepend_scheme is "never" (new files) or
        // add_prefix_space is false (old files), as the tokenizer loader reads it.
        if (!strcmp(t, "Metaspace")) {
            const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
            const cJSON *add = cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space");
            if (cJSON_IsString(scheme)) s->metaspace_prefix |= strcmp(scheme->valuestring, "never") != 0;
            else s->metaspace_prefix |= !cJSON_IsFalse(add);
        }
        s->other = true;
    }
}

// A Prepend normalizer adding "▁" (SentencePiece's add_dummy_prefix).
static bool normalizer_prepends(const cJSON *n, int depth) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (depth > 8 || !cJSON_IsString(type)) return false;
    if (!strcmp(type->valuestring, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) if (normalizer_prepends(e, depth + 1))
            return true;
        return false;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(n, "prepend");
    return !strcmp(type->valuestring, "Prepend") && cJSON_IsString(pre) && !strcmp(pre->valuestring, "\xE2\x96\x81");
}

// What the GGUF tokenizer keys need from tokenizer.json beyond the vocabulary.
typedef struct tok_json_info {
    const char *pre;   // tokenizer.ggml.pre of a byte-level tokenizer ("default" when unknown)
    bool space_prefix; // SentencePiece style: "▁" is prepended to the text (add_space_prefix)
} tok_json_info;

// Reads tokenizer_json (NULL, missing or unreadable: "default" and a space
// prefix, llama.cpp's defaults). arch (the GGUF architecture or NULL) names
// the pre-tokenizer as convert_hf_to_gguf.py does where two names share one
// regex: OLMo's GPT-NeoX tokenizer is "olmo" there, "gpt-2" otherwise.
static void tokenizer_json_info(const char *tokenizer_json, const char *arch, tok_json_info *ti) {
    ti->pre = "default";
    ti->space_prefix = true;
    if (!tokenizer_json) return;
    cJSON *root = NULL;
    if (lc_json_load_file(tokenizer_json, GGUF_JSON_MAX, &root)) return;
    pre_scan s = {0};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (cJSON_IsObject(p)) scan_pretok(p, &s, 0);
    ti->space_prefix = normalizer_prepends(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0) ||
                       s.metaspace_prefix;
    cJSON_Delete(root);
    if (s.named && s.n_split == 1 && !s.punctuation && !s.digits && !s.other) ti->pre = s.named;
    else if (s.punctuation && s.bytelevel_regex && s.digits && s.falcon_digits && !s.other) ti->pre = "falcon";
    else if (s.bytelevel_regex && !s.n_split && !s.punctuation && !s.digits && !s.other) ti->pre = "gpt-2";
    if (arch && !strcmp(arch, "olmo") && !strcmp(ti->pre, "gpt-2")) ti->pre = "olmo";
}

// llama.cpp's token types (llama_token_type / gguf TokenType).
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

lc_status lc_gguf_add_vocab_ids(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json, int32_t n_vocab,
                                int32_t bos, int32_t eos, int32_t pad, const char *arch) {
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
    tok_json_info ti;
    tokenizer_json_info(tokenizer_json, arch, &ti);
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
    if ((st = lc_gguf_set_str(w, "tokenizer.ggml.pre", spm ? "default" : ti.pre))) goto done;
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
    int32_t tb = bos, te = eos, tu = lc_tokenizer_unk(tok);
    if (tb >= 0 && tb < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tb))) goto done;
    if (te >= 0 && te < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)te))) goto done;
    if (tu >= 0 && tu < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tu)))
        goto done;
    if (pad >= 0 && pad < n_vocab && (st = lc_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad)))
        goto done;
    if ((st = lc_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", lc_tokenizer_adds_bos(tok)))) goto done;
    if ((st = lc_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", lc_tokenizer_adds_eos(tok)))) goto done;
    // llama.cpp prepends a space to SentencePiece input unless told otherwise
    // (Gemma's tokenizer does not).
    if (spm && !ti.space_prefix) st = lc_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
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

lc_status lc_gguf_add_vocab(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json, int32_t n_vocab,
                            int32_t bos, int32_t eos, int32_t pad) {
    int32_t tb = lc_tokenizer_bos(tok), te = lc_tokenizer_eos(tok);
    return lc_gguf_add_vocab_ids(w, tok, tokenizer_json, n_vocab, tb >= 0 ? tb : bos, te >= 0 ? te : eos, pad, NULL);
}
