// Loading tokenizer.json (+ tokenizer_config.json): every value read is
// checked (ids in range, no duplicate ids or pieces, merges in the vocab) and
// the lookup tables are built once here so encoding never rebuilds them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "data/tokenizer_internal.h"

#define TOK_MAX_JSON_BYTES ((size_t)1 << 30)

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Rust char::is_ascii_punctuation || Unicode general category P*.
static const char PUNCT_REGEX[] = "[\\p{P}!-/:-@\\[-`{-~]";

typedef struct load_ctx {
    lc_tokenizer *tok;
    const char *path;
    bool cfg_add_bos_set, cfg_add_eos_set, cfg_add_bos, cfg_add_eos;
    int32_t post_bos, post_eos;
} load_ctx;

// Appends a NUL-terminated string to the arena and returns its offset.
static lc_status arena_add(lc_tokenizer *tok, const char *s, size_t n, uint32_t *off) {
    *off = 0;
    if (tok->arena.len + n + 1 > UINT32_MAX) return lc_error(LC_STATUS_INPUT, "tokenizer: strings too large");
    *off = (uint32_t)tok->arena.len;
    lc_status st = tok_buf_append(&tok->arena, s, n);
    if (st) return st;
    return tok_buf_append(&tok->arena, "", 1); // keep each string NUL-terminated in place
}

static lc_status get_id(const cJSON *v, const char *path, const char *what, int32_t *out) {
    *out = -1;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    // Range first: converting a double outside int64_t's range is undefined behaviour.
    if (!cJSON_IsNumber(v) || !(d >= 0 && d < TOK_MAX_ID) || d != (double)(int64_t)d)
        return lc_error(LC_STATUS_INPUT, "%s: %s: id must be an integer in [0, %d)", path, what, TOK_MAX_ID);
    *out = (int32_t)d;
    return LC_STATUS_OK;
}

static lc_status get_pattern(const cJSON *obj, const char *path, const char *what, pcre2_code **re) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    const cJSON *s = p ? cJSON_GetObjectItemCaseSensitive(p, "String") : NULL;
    const cJSON *r = p ? cJSON_GetObjectItemCaseSensitive(p, "Regex") : NULL;
    if (cJSON_IsString(s)) return tok_regex_compile(re, s->valuestring, strlen(s->valuestring), true, path);
    if (cJSON_IsString(r)) return tok_regex_compile(re, r->valuestring, strlen(r->valuestring), false, path);
    return lc_error(LC_STATUS_INPUT, "%s: %s needs a pattern {\"String\"} or {\"Regex\"}", path, what);
}

static const char *type_of(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static lc_status parse_model(load_ctx *c, const cJSON *model, int32_t max_added_id) {
    lc_tokenizer *tok = c->tok;
    const char *path = c->path;
    lc_status st;
    if (!cJSON_IsObject(model)) return lc_error(LC_STATUS_INPUT, "%s: missing \"model\"", path);
    const char *type = type_of(model);
    if (*type && strcmp(type, "BPE") != 0)
        return lc_error(LC_STATUS_INPUT, "%s: model type \"%s\" is not supported (BPE only)", path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return lc_error(LC_STATUS_INPUT, "%s: model.vocab must be an object", path);
    if (merges && !cJSON_IsArray(merges)) return lc_error(LC_STATUS_INPUT, "%s: model.merges must be a list", path);

    size_t n_vocab = 0;
    int32_t max_id = max_added_id;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        if ((st = get_id(e, path, "model.vocab", &id))) return st;
        if (strlen(e->string) > TOK_MAX_PIECE)
            return lc_error(LC_STATUS_INPUT, "%s: vocab piece for id %d is too long", path, id);
        if (id > max_id) max_id = id;
        n_vocab++;
    }
    if (n_vocab == 0) return lc_error(LC_STATUS_INPUT, "%s: model.vocab is empty", path);
    tok->vocab_size = max_id + 1;
    size_t vs = (size_t)tok->vocab_size;
    tok->piece_off = malloc(vs * sizeof *tok->piece_off);
    tok->piece_len = calloc(vs, sizeof *tok->piece_len);
    tok->added_of_id = malloc(vs * sizeof *tok->added_of_id);
    if (!tok->piece_off || !tok->piece_len || !tok->added_of_id)
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory for %zu ids", path, vs);
    memset(tok->piece_off, 0xff, vs * sizeof *tok->piece_off);
    memset(tok->added_of_id, 0xff, vs * sizeof *tok->added_of_id);
    if ((st = tok_strmap_init(&tok->vocab, n_vocab))) return st;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        uint32_t off, len = (uint32_t)strlen(e->string);
        if (tok->piece_off[id] != TOK_NONE)
            return lc_error(LC_STATUS_INPUT, "%s: vocab id %d is used twice", path, id);
        if ((st = arena_add(tok, e->string, len, &off))) return st;
        if (tok_strmap_insert(&tok->vocab, tok->arena.data, off, len, id) >= 0)
            return lc_error(LC_STATUS_INPUT, "%s: vocab piece \"%.60s\" appears twice", path, e->string);
        tok->piece_off[id] = off;
        tok->piece_len[id] = len;
    }

    bool b;
    const char *s;
    if ((st = lc_json_get_bool(model, "fuse_unk", path, false, &b))) return st;
    tok->fuse_unk = b;
    if ((st = lc_json_get_bool(model, "byte_fallback", path, false, &b))) return st;
    tok->byte_fallback = b;
    if ((st = lc_json_get_bool(model, "ignore_merges", path, false, &b))) return st;
    tok->ignore_merges = b;
    if ((st = lc_json_get_string(model, "unk_token", path, NULL, &s))) return st;
    tok->unk_id = -1;
    if (s) {
        tok->unk_id = tok_strmap_get(&tok->vocab, tok->arena.data, s, strlen(s));
        if (tok->unk_id < 0) return lc_error(LC_STATUS_INPUT, "%s: unk_token \"%.60s\" is not in the vocab", path, s);
    }
    if ((st = lc_json_get_string(model, "continuing_subword_prefix", path, NULL, &s))) return st;
    if (s && *s && (st = arena_add(tok, s, strlen(s), &tok->prefix_off))) return st;
    tok->prefix_len = s ? (uint32_t)strlen(s) : 0;
    if ((st = lc_json_get_string(model, "end_of_word_suffix", path, NULL, &s))) return st;
    if (s && *s && (st = arena_add(tok, s, strlen(s), &tok->suffix_off))) return st;
    tok->suffix_len = s ? (uint32_t)strlen(s) : 0;
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return lc_error(LC_STATUS_INPUT, "%s: BPE dropout is not supported", path);

    for (int byte = 0; byte < 256; byte++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", byte);
        tok->byte_ids[byte] = tok_strmap_get(&tok->vocab, tok->arena.data, name, 6);
    }

    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    if ((st = tok_mergemap_init(&tok->merges, (size_t)n_merges))) return st;
    tok_buf joined = {0};
    int rank = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *bp;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            // Legacy "a b" form. Some files have pieces that contain spaces
            // ("   " is " " + " "), so take the first split whose halves and
            // joined piece are all in the vocab.
            const char *str = e->valuestring, *sp = strchr(str, ' ');
            const char *pick = NULL;
            for (; sp && !pick; sp = strchr(sp + 1, ' ')) {
                joined.len = 0;
                if ((st = tok_buf_append(&joined, str, (size_t)(sp - str))) ||
                    (st = tok_buf_append(&joined, sp + 1, strlen(sp + 1)))) {
                    tok_buf_free(&joined);
                    return st;
                }
                if (tok_strmap_get(&tok->vocab, tok->arena.data, str, (size_t)(sp - str)) >= 0 &&
                    tok_strmap_get(&tok->vocab, tok->arena.data, sp + 1, strlen(sp + 1)) >= 0 &&
                    tok_strmap_get(&tok->vocab, tok->arena.data, joined.data, joined.len) >= 0)
                    pick = sp;
            }
            if (!pick) pick = strchr(str, ' ');
            if (!pick) {
                tok_buf_free(&joined);
                return lc_error(LC_STATUS_INPUT, "%s: merge %d \"%.60s\" is not two pieces", path, rank, str);
            }
            a = str;
            alen = (size_t)(pick - a);
            bp = pick + 1;
            blen = strlen(bp);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            alen = strlen(a);
            bp = e->child->next->valuestring;
            blen = strlen(bp);
        } else {
            tok_buf_free(&joined);
            return lc_error(LC_STATUS_INPUT, "%s: merge %d must be \"a b\" or [\"a\", \"b\"]", path, rank);
        }
        int32_t ia = tok_strmap_get(&tok->vocab, tok->arena.data, a, alen);
        int32_t ib = tok_strmap_get(&tok->vocab, tok->arena.data, bp, blen);
        joined.len = 0;
        st = tok_buf_append(&joined, a, alen);
        // With a continuing_subword_prefix the right piece carries it; the merged piece does not repeat it.
        size_t skip = (tok->prefix_len && blen >= tok->prefix_len &&
                       memcmp(bp, tok->arena.data + tok->prefix_off, tok->prefix_len) == 0)
                          ? tok->prefix_len
                          : 0;
        if (!st) st = tok_buf_append(&joined, bp + skip, blen - skip);
        if (st) {
            tok_buf_free(&joined);
            return st;
        }
        int32_t inew = tok_strmap_get(&tok->vocab, tok->arena.data, joined.data, joined.len);
        if (ia < 0 || ib < 0 || inew < 0) {
            tok_buf_free(&joined);
            return lc_error(LC_STATUS_INPUT, "%s: merge %d (\"%.40s\" + \"%.40s\") uses a piece not in the vocab",
                            path, rank, ia < 0 ? "?" : tok->arena.data + tok->piece_off[ia],
                            ib < 0 ? "?" : tok->arena.data + tok->piece_off[ib]);
        }
        tok_mergemap_put(&tok->merges, ia, ib, rank, inew);
        rank++;
    }
    tok_buf_free(&joined);
    return LC_STATUS_OK;
}

static lc_status scan_added(load_ctx *c, const cJSON *added, int32_t *max_id) {
    *max_id = -1;
    if (!added || cJSON_IsNull(added)) return LC_STATUS_OK;
    if (!cJSON_IsArray(added)) return lc_error(LC_STATUS_INPUT, "%s: added_tokens must be a list", c->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        int32_t id;
        lc_status st = get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), c->path, "added_tokens", &id);
        if (st) return st;
        if (id > *max_id) *max_id = id;
    }
    return LC_STATUS_OK;
}

static lc_status parse_added(load_ctx *c, const cJSON *added) {
    lc_tokenizer *tok = c->tok;
    const char *path = c->path;
    int n = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    lc_status st = tok_strmap_init(&tok->added_map, (size_t)n);
    if (st) return st;
    tok->added = calloc((size_t)n + 1, sizeof *tok->added);
    if (!tok->added) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    const cJSON *e, *list = n ? added : (const cJSON *)0;
    cJSON_ArrayForEach(e, list) {
        tok_added a = {0};
        const char *content;
        bool special, v;
        a.id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble; // checked by scan_added
        if ((st = lc_json_get_string(e, "content", path, NULL, &content))) return st;
        if (!content) return lc_error(LC_STATUS_INPUT, "%s: added token %d has no content", path, a.id);
        if (!*content) continue; // HF ignores empty added tokens
        if (strlen(content) > TOK_MAX_PIECE)
            return lc_error(LC_STATUS_INPUT, "%s: added token %d is too long", path, a.id);
        if ((st = lc_json_get_bool(e, "special", path, false, &special))) return st;
        a.special = special;
        if ((st = lc_json_get_bool(e, "lstrip", path, false, &v))) return st;
        a.lstrip = v;
        if ((st = lc_json_get_bool(e, "rstrip", path, false, &v))) return st;
        a.rstrip = v;
        if ((st = lc_json_get_bool(e, "single_word", path, false, &v))) return st;
        a.single_word = v;
        if ((st = lc_json_get_bool(e, "normalized", path, !special, &v))) return st;
        a.normalized = v;
        if (tok->added_of_id[a.id] >= 0)
            return lc_error(LC_STATUS_INPUT, "%s: added token id %d appears twice", path, a.id);
        a.len = (uint32_t)strlen(content);
        if ((st = arena_add(tok, content, a.len, &a.off))) return st;
        a.moff = a.off;
        a.mlen = a.len;
        if (tok_strmap_insert(&tok->added_map, tok->arena.data, a.off, a.len, (int32_t)tok->n_added) >= 0)
            return lc_error(LC_STATUS_INPUT, "%s: added token \"%.60s\" appears twice", path, content);
        tok->added_of_id[a.id] = (int32_t)tok->n_added;
        tok->added[tok->n_added++] = a;
    }
    return LC_STATUS_OK;
}

static lc_status parse_normalizer(load_ctx *c, const cJSON *n, size_t depth) {
    lc_tokenizer *tok = c->tok;
    const char *path = c->path;
    lc_status st;
    if (!n || cJSON_IsNull(n)) return LC_STATUS_OK;
    if (depth > 8 || !cJSON_IsObject(n)) return lc_error(LC_STATUS_INPUT, "%s: bad normalizer", path);
    const char *type = type_of(n);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return lc_error(LC_STATUS_INPUT, "%s: Sequence normalizer needs a list", path);
        cJSON_ArrayForEach(e, list) if ((st = parse_normalizer(c, e, depth + 1))) return st;
        return LC_STATUS_OK;
    }
    tok_norm *grown = realloc(tok->norms, (tok->n_norms + 1) * sizeof *grown);
    if (!grown) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    tok->norms = grown;
    tok_norm *x = &tok->norms[tok->n_norms];
    memset(x, 0, sizeof *x);
    const char *s;
    if (!strcmp(type, "Prepend")) {
        x->kind = TOK_NORM_PREPEND;
        if ((st = lc_json_get_string(n, "prepend", path, NULL, &s))) return st;
        if (!s) return lc_error(LC_STATUS_INPUT, "%s: Prepend normalizer needs \"prepend\"", path);
        if ((st = arena_add(tok, s, strlen(s), &x->str))) return st;
        x->len = (uint32_t)strlen(s);
    } else if (!strcmp(type, "Replace")) {
        x->kind = TOK_NORM_REPLACE;
        if ((st = get_pattern(n, path, "Replace normalizer", &x->re))) return st;
        if ((st = lc_json_get_string(n, "content", path, "", &s))) {
            pcre2_code_free(x->re);
            return st;
        }
        if ((st = arena_add(tok, s, strlen(s), &x->str))) {
            pcre2_code_free(x->re);
            return st;
        }
        x->len = (uint32_t)strlen(s);
    } else if (!strcmp(type, "Lowercase")) {
        x->kind = TOK_NORM_LOWERCASE;
    } else if (!strcmp(type, "NFC")) {
        // Identity: text from our data is already NFC (precomposed); see tokenizer_encode.c.
        x->kind = TOK_NORM_NFC;
    } else {
        return lc_error(LC_STATUS_INPUT, "%s: normalizer \"%s\" is not supported", path, type);
    }
    tok->n_norms++;
    return LC_STATUS_OK;
}

static lc_status add_pretok(load_ctx *c, tok_pretok p) {
    lc_tokenizer *tok = c->tok;
    tok_pretok *grown = realloc(tok->pretoks, (tok->n_pretoks + 1) * sizeof *grown);
    if (!grown) {
        if (p.re) pcre2_code_free(p.re);
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", c->path);
    }
    tok->pretoks = grown;
    tok->pretoks[tok->n_pretoks++] = p;
    return LC_STATUS_OK;
}

static lc_status add_regex_split(load_ctx *c, const char *re, bool literal, enum tok_split_behavior b, bool invert) {
    tok_pretok p = {.kind = TOK_PRE_SPLIT, .behavior = b, .invert = invert};
    lc_status st = tok_regex_compile(&p.re, re, strlen(re), literal, c->path);
    return st ? st : add_pretok(c, p);
}

static lc_status get_behavior(const cJSON *obj, const char *path, enum tok_split_behavior def,
                              enum tok_split_behavior *out) {
    const char *s;
    lc_status st = lc_json_get_string(obj, "behavior", path, NULL, &s);
    if (st) return st;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    *out = def;
    if (!s) return LC_STATUS_OK;
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum tok_split_behavior)i;
            return LC_STATUS_OK;
        }
    return lc_error(LC_STATUS_INPUT, "%s: unknown split behavior \"%s\"", path, s);
}

// prepend_scheme (new files) or add_prefix_space (old files), as HF reads them.
static lc_status get_prepend(const cJSON *obj, const char *path, enum tok_prepend *out) {
    const char *s;
    bool b;
    lc_status st = lc_json_get_string(obj, "prepend_scheme", path, NULL, &s);
    if (st) return st;
    if (s) {
        if (!strcmp(s, "always")) *out = TOK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = TOK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = TOK_PREPEND_NEVER;
        else return lc_error(LC_STATUS_INPUT, "%s: unknown prepend_scheme \"%s\"", path, s);
        return LC_STATUS_OK;
    }
    if ((st = lc_json_get_bool(obj, "add_prefix_space", path, true, &b))) return st;
    *out = b ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    return LC_STATUS_OK;
}

static lc_status get_replacement(load_ctx *c, const cJSON *obj, uint32_t *off, uint32_t *len) {
    const char *s;
    lc_status st = lc_json_get_string(obj, "replacement", c->path, "\xE2\x96\x81", &s);
    if (st) return st;
    if (!*s) return lc_error(LC_STATUS_INPUT, "%s: Metaspace replacement is empty", c->path);
    *len = (uint32_t)strlen(s);
    return arena_add(c->tok, s, *len, off);
}

static lc_status parse_pretok(load_ctx *c, const cJSON *p, size_t depth) {
    const char *path = c->path;
    lc_status st;
    bool b, b2;
    if (!p || cJSON_IsNull(p)) return LC_STATUS_OK;
    if (depth > 8 || !cJSON_IsObject(p)) return lc_error(LC_STATUS_INPUT, "%s: bad pre_tokenizer", path);
    const char *type = type_of(p);
    enum tok_split_behavior beh;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return lc_error(LC_STATUS_INPUT, "%s: Sequence pre_tokenizer needs a list", path);
        cJSON_ArrayForEach(e, list) if ((st = parse_pretok(c, e, depth + 1))) return st;
        return LC_STATUS_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        if ((st = lc_json_get_bool(p, "add_prefix_space", path, true, &b))) return st;
        if ((st = lc_json_get_bool(p, "use_regex", path, true, &b2))) return st;
        if (b && (st = add_pretok(c, (tok_pretok){.kind = TOK_PRE_PREFIX}))) return st;
        if (b2 && (st = add_regex_split(c, GPT2_REGEX, false, TOK_SPLIT_ISOLATED, false))) return st;
        return add_pretok(c, (tok_pretok){.kind = TOK_PRE_BYTEMAP});
    }
    if (!strcmp(type, "Metaspace")) {
        tok_pretok m = {.kind = TOK_PRE_METASPACE};
        if ((st = get_replacement(c, p, &m.str, &m.len))) return st;
        if ((st = get_prepend(p, path, &m.prepend))) return st;
        if ((st = lc_json_get_bool(p, "split", path, true, &b))) return st;
        if ((st = add_pretok(c, m))) return st;
        if (!b) return LC_STATUS_OK;
        return add_regex_split(c, c->tok->arena.data + m.str, true, TOK_SPLIT_MERGED_NEXT, false);
    }
    if (!strcmp(type, "Split")) {
        tok_pretok s = {.kind = TOK_PRE_SPLIT};
        if ((st = get_behavior(p, path, TOK_SPLIT_ISOLATED, &s.behavior))) return st;
        if ((st = lc_json_get_bool(p, "invert", path, false, &b))) return st;
        s.invert = b;
        if ((st = get_pattern(p, path, "Split pre_tokenizer", &s.re))) return st;
        return add_pretok(c, s);
    }
    if (!strcmp(type, "Punctuation")) {
        if ((st = get_behavior(p, path, TOK_SPLIT_ISOLATED, &beh))) return st;
        return add_regex_split(c, PUNCT_REGEX, false, beh, false);
    }
    if (!strcmp(type, "Digits")) {
        // Rust char::is_numeric is general category N*.
        if ((st = lc_json_get_bool(p, "individual_digits", path, false, &b))) return st;
        return add_regex_split(c, "\\p{N}", false, b ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, false);
    }
    if (!strcmp(type, "WhitespaceSplit")) return add_regex_split(c, "\\s+", false, TOK_SPLIT_REMOVED, false);
    if (!strcmp(type, "Whitespace")) return add_regex_split(c, "\\w+|[^\\w\\s]+", false, TOK_SPLIT_REMOVED, true);
    return lc_error(LC_STATUS_INPUT, "%s: pre_tokenizer \"%s\" is not supported", path, type);
}

static lc_status parse_decoder(load_ctx *c, const cJSON *d, size_t depth) {
    lc_tokenizer *tok = c->tok;
    const char *path = c->path;
    lc_status st;
    if (!d || cJSON_IsNull(d)) return LC_STATUS_OK;
    if (depth > 8 || !cJSON_IsObject(d)) return lc_error(LC_STATUS_INPUT, "%s: bad decoder", path);
    tok->has_decoder = true;
    const char *type = type_of(d);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders"), *e;
        if (!cJSON_IsArray(list)) return lc_error(LC_STATUS_INPUT, "%s: Sequence decoder needs a list", path);
        cJSON_ArrayForEach(e, list) if ((st = parse_decoder(c, e, depth + 1))) return st;
        return LC_STATUS_OK;
    }
    tok_dec x = {0};
    const char *s;
    int64_t v;
    if (!strcmp(type, "Replace")) {
        x.kind = TOK_DEC_REPLACE;
        if ((st = lc_json_get_string(d, "content", path, "", &s))) return st;
        x.len = (uint32_t)strlen(s);
        if ((st = arena_add(tok, s, x.len, &x.str))) return st;
        if ((st = get_pattern(d, path, "Replace decoder", &x.re))) return st;
    } else if (!strcmp(type, "ByteFallback")) {
        x.kind = TOK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        x.kind = TOK_DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        x.kind = TOK_DEC_STRIP;
        if ((st = lc_json_get_string(d, "content", path, " ", &s))) return st;
        size_t bad;
        int trunc;
        size_t n = strlen(s);
        if (!n || tok_utf8_next((const unsigned char *)s, n, &x.strip_char, &bad, &trunc) != (int)n)
            return lc_error(LC_STATUS_INPUT, "%s: Strip decoder content must be one character", path);
        if ((st = lc_json_get_int(d, "start", path, 0, &v))) return st;
        x.start = v;
        if ((st = lc_json_get_int(d, "stop", path, 0, &v))) return st;
        x.stop = v;
        if (x.start < 0 || x.stop < 0 || x.start > 1000 || x.stop > 1000)
            return lc_error(LC_STATUS_INPUT, "%s: Strip decoder start/stop out of range", path);
    } else if (!strcmp(type, "ByteLevel")) {
        x.kind = TOK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        enum tok_prepend pre = TOK_PREPEND_ALWAYS;
        x.kind = TOK_DEC_METASPACE;
        if ((st = get_replacement(c, d, &x.str, &x.len))) return st;
        if ((st = get_prepend(d, path, &pre))) return st;
        x.drop_first = pre != TOK_PREPEND_NEVER;
    } else {
        return lc_error(LC_STATUS_INPUT, "%s: decoder \"%s\" is not supported", path, type);
    }
    tok_dec *grown = realloc(tok->decs, (tok->n_decs + 1) * sizeof *grown);
    if (!grown) {
        if (x.re) pcre2_code_free(x.re);
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", path);
    }
    tok->decs = grown;
    tok->decs[tok->n_decs++] = x;
    return LC_STATUS_OK;
}

static lc_status push_template(load_ctx *c, bool before, int32_t id) {
    lc_tokenizer *tok = c->tok;
    if (id < 0 || id >= tok->vocab_size)
        return lc_error(LC_STATUS_INPUT, "%s: post_processor token id %d is out of range", c->path, id);
    int *n = before ? &tok->n_prefix : &tok->n_suffix;
    if (*n >= TOK_MAX_TEMPLATE) return lc_error(LC_STATUS_INPUT, "%s: post_processor adds too many tokens", c->path);
    (before ? tok->tmpl_prefix : tok->tmpl_suffix)[(*n)++] = id;
    if (before && c->post_bos < 0) c->post_bos = id;
    if (!before && c->post_eos < 0) c->post_eos = id;
    return LC_STATUS_OK;
}

// Roberta/Bert processors store a token as ["text", id].
static lc_status pair_id(load_ctx *c, const cJSON *p, const char *key, int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return lc_error(LC_STATUS_INPUT, "%s: post_processor \"%s\" must be [token, id]", c->path, key);
    return get_id(cJSON_GetArrayItem(v, 1), c->path, key, id);
}

static lc_status parse_post(load_ctx *c, const cJSON *p, size_t depth) {
    const char *path = c->path;
    lc_status st;
    if (!p || cJSON_IsNull(p)) return LC_STATUS_OK;
    if (depth > 8 || !cJSON_IsObject(p)) return lc_error(LC_STATUS_INPUT, "%s: bad post_processor", path);
    const char *type = type_of(p);
    if (!strcmp(type, "ByteLevel")) return LC_STATUS_OK; // offsets only; adds no tokens
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors"), *e;
        if (!cJSON_IsArray(list)) return lc_error(LC_STATUS_INPUT, "%s: Sequence post_processor needs a list", path);
        cJSON_ArrayForEach(e, list) if ((st = parse_post(c, e, depth + 1))) return st;
        return LC_STATUS_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        int32_t cls, sep;
        if ((st = pair_id(c, p, "cls", &cls)) || (st = pair_id(c, p, "sep", &sep))) return st;
        if ((st = push_template(c, true, cls))) return st;
        return push_template(c, false, sep);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return lc_error(LC_STATUS_INPUT, "%s: post_processor \"%s\" is not supported", path, type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single)) return lc_error(LC_STATUS_INPUT, "%s: TemplateProcessing needs \"single\"", path);
    bool before = true;
    const cJSON *item;
    cJSON_ArrayForEach(item, single) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (seq) {
            before = false;
            continue;
        }
        const cJSON *name = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        const cJSON *def = cJSON_IsString(name) && cJSON_IsObject(special)
                               ? cJSON_GetObjectItemCaseSensitive(special, name->valuestring)
                               : NULL;
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return lc_error(LC_STATUS_INPUT, "%s: TemplateProcessing item is not a known special token", path);
        const cJSON *idv;
        cJSON_ArrayForEach(idv, ids) {
            int32_t id;
            if ((st = get_id(idv, path, "post_processor", &id)) || (st = push_template(c, before, id))) return st;
        }
    }
    return LC_STATUS_OK;
}

// bos_token / eos_token: a string, {"content": ...}, or null.
static lc_status config_token(const cJSON *cfg, const char *key, const char *path, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return LC_STATUS_OK;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return LC_STATUS_OK;
    }
    return lc_json_get_string(v, "content", path, NULL, out);
}

// tokenizer_config.json's special tokens and add_bos_token/add_eos_token
// (cfg NULL: none); path names it in errors.
static lc_status parse_config(load_ctx *c, const cJSON *cfg, const char *config_path, int32_t *bos, int32_t *eos) {
    *bos = *eos = -1;
    if (!cfg) return LC_STATUS_OK;
    const char *b = NULL, *e = NULL;
    lc_status st = LC_STATUS_OK;
    if (!cJSON_IsObject(cfg)) st = lc_error(LC_STATUS_INPUT, "%s: must be a JSON object", config_path);
    if (!st) st = config_token(cfg, "bos_token", config_path, &b);
    if (!st) st = config_token(cfg, "eos_token", config_path, &e);
    if (!st && cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token")) {
        c->cfg_add_bos_set = true;
        st = lc_json_get_bool(cfg, "add_bos_token", config_path, false, &c->cfg_add_bos);
    }
    if (!st && cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token")) {
        c->cfg_add_eos_set = true;
        st = lc_json_get_bool(cfg, "add_eos_token", config_path, false, &c->cfg_add_eos);
    }
    if (!st && b) *bos = lc_tokenizer_find(c->tok, b);
    if (!st && e) *eos = lc_tokenizer_find(c->tok, e);
    // Ids given as such (a GGUF vocabulary's: its pieces' texts may repeat) win.
    const char *id_keys[2] = {"bos_token_id", "eos_token_id"};
    int32_t *ids[2] = {bos, eos};
    for (int k = 0; k < 2 && !st; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, id_keys[k]);
        if (!cJSON_IsNumber(v)) continue;
        if (v->valuedouble < 0 || v->valuedouble >= c->tok->vocab_size || v->valuedouble != (int32_t)v->valuedouble)
            return lc_error(LC_STATUS_INPUT, "%s: %s %g is not a token id", config_path, id_keys[k], v->valuedouble);
        *ids[k] = (int32_t)v->valuedouble;
    }
    return st;
}

static int32_t find_first(const lc_tokenizer *tok, const char *const *names) {
    for (; *names; names++) {
        int32_t id = lc_tokenizer_find(tok, *names);
        if (id >= 0) return id;
    }
    return -1;
}

typedef struct added_key {
    unsigned first;
    uint32_t len, idx;
} added_key;

static int cmp_added(const void *pa, const void *pb) {
    const added_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; // longest first: leftmost-longest matching
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static lc_status build_group(lc_tokenizer *tok, tok_added_group *g, bool normalized) {
    g->order = malloc((tok->n_added + 1) * sizeof *g->order);
    added_key *keys = malloc((tok->n_added + 1) * sizeof *keys);
    if (!g->order || !keys) {
        free(keys);
        return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < tok->n_added; i++) {
        const tok_added *a = &tok->added[i];
        if (a->normalized == normalized && a->mlen > 0)
            keys[n++] = (added_key){(unsigned char)tok->arena.data[a->moff], a->mlen, (uint32_t)i};
    }
    qsort(keys, n, sizeof *keys, cmp_added);
    for (size_t i = 0; i < n; i++) g->order[i] = keys[i].idx;
    g->n = n;
    size_t k = 0;
    for (unsigned c = 0; c < 256; c++) {
        while (k < n && keys[k].first < c) k++;
        g->first[c] = (uint32_t)k;
    }
    g->first[256] = (uint32_t)n;
    free(keys);
    return LC_STATUS_OK;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to 256+n.
static void init_byte_level(lc_tokenizer *tok) {
    int n = 0;
    for (int i = 0; i < 324; i++) tok->bl_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        char tmp[4];
        tok->bl_enc_len[b] = (uint8_t)tok_utf8_put(cp, tmp);
        memcpy(tok->bl_enc[b], tmp, tok->bl_enc_len[b]);
        tok->bl_dec[cp] = (int16_t)b;
    }
}

// Bounds the bytes one lc_detokenizer_push can write, from the longest token
// text: decoder steps only shorten a token's text (ByteLevel and ByteFallback
// map characters to bytes, Metaspace a replacement to one space, Strip
// removes), except Replace, whose non-empty matches each become its content;
// without a decoder a space goes before each token. Then up to 3 held bytes of
// an unfinished character join the text, and any byte may become a 3-byte
// U+FFFD. A file whose bound passes TOK_MAX_STREAM is refused.
static lc_status plan_stream(lc_tokenizer *tok, const char *path) {
    size_t n = 0, len;
    for (int32_t id = 0; id < tok->vocab_size; id++)
        if (tok_token_text(tok, id, &len) && len > n) n = len;
    if (!tok->has_decoder) n++;
    for (size_t k = 0; k < tok->n_decs; k++) {
        const tok_dec *x = &tok->decs[k];
        if (x->kind != TOK_DEC_REPLACE || x->len <= 1) continue;
        if (n > TOK_MAX_STREAM / x->len) n = TOK_MAX_STREAM + 1;
        else n *= x->len;
    }
    if (n > TOK_MAX_STREAM)
        return lc_error(LC_STATUS_INPUT, "%s: the decoder can expand one token to more than %zu bytes", path,
                        TOK_MAX_STREAM);
    tok->stream_max = 3 * (n + 3);
    return LC_STATUS_OK;
}

static lc_status load(lc_tokenizer *tok, const cJSON *root, const char *path, const cJSON *config,
                      const char *config_path) {
    load_ctx c = {.tok = tok, .path = path, .post_bos = -1, .post_eos = -1};
    lc_status st;
    int32_t max_added;
    if (!cJSON_IsObject(root)) return lc_error(LC_STATUS_INPUT, "%s: must be a JSON object", path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if ((st = scan_added(&c, added, &max_added))) return st;
    if ((st = parse_model(&c, cJSON_GetObjectItemCaseSensitive(root, "model"), max_added))) return st;
    if ((st = parse_added(&c, added))) return st;
    if ((st = parse_normalizer(&c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0))) return st;
    if ((st = parse_pretok(&c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0))) return st;
    if ((st = parse_decoder(&c, cJSON_GetObjectItemCaseSensitive(root, "decoder"), 0))) return st;
    if ((st = parse_post(&c, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0))) return st;
    init_byte_level(tok);

    // HF matches `normalized` added tokens in normalized text, by their normalized content.
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    tok_ranges r = {0};
    tok_buf nb = {0}, tmp = {0};
    if (!md) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    for (size_t i = 0; i < tok->n_added && !st; i++) {
        tok_added *a = &tok->added[i];
        if (!a->normalized || !tok->n_norms) continue;
        st = tok_normalize(tok, tok->arena.data + a->off, a->len, &nb, &tmp, md, &r);
        if (!st) st = arena_add(tok, nb.data ? nb.data : "", nb.len, &a->moff);
        a->mlen = (uint32_t)nb.len;
    }
    pcre2_match_data_free(md);
    free(r.v);
    tok_buf_free(&nb);
    tok_buf_free(&tmp);
    if (st) return st;
    if ((st = build_group(tok, &tok->raw_group, false)) || (st = build_group(tok, &tok->norm_group, true))) return st;
    if ((st = plan_stream(tok, path))) return st;

    int32_t bos, eos;
    if ((st = parse_config(&c, config, config_path, &bos, &eos))) return st;
    static const char *const bos_names[] = {"<s>", "<|endoftext|>", "<|begin_of_text|>", "<bos>", NULL};
    static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", NULL};
    tok->bos = bos >= 0 ? bos : c.post_bos >= 0 ? c.post_bos : find_first(tok, bos_names);
    tok->eos = eos >= 0 ? eos : c.post_eos >= 0 ? c.post_eos : find_first(tok, eos_names);
    // transformers' Llama/GPT-NeoX fast tokenizers rebuild the template from
    // add_bos_token/add_eos_token; when the config says, it wins.
    if (c.cfg_add_bos_set || c.cfg_add_eos_set) {
        tok->n_prefix = tok->n_suffix = 0;
        if (c.cfg_add_bos && tok->bos >= 0) tok->tmpl_prefix[tok->n_prefix++] = tok->bos;
        if (c.cfg_add_eos && tok->eos >= 0) tok->tmpl_suffix[tok->n_suffix++] = tok->eos;
    }
    return LC_STATUS_OK;
}

lc_status lc_tokenizer_load_json(lc_tokenizer **out, const cJSON *root, const cJSON *config, const char *name) {
    *out = NULL;
    lc_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", name);
    tok->unk_id = tok->bos = tok->eos = -1;
    lc_status st = load(tok, root, name, config, name);
    if (st) {
        lc_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return LC_STATUS_OK;
}

lc_status lc_tokenizer_load(lc_tokenizer **out, const char *json_path, const char *config_path) {
    *out = NULL;
    if (!json_path) return lc_error(LC_STATUS_USAGE, "tokenizer: no tokenizer.json given");
    cJSON *root, *cfg = NULL;
    lc_status st = lc_json_load_file(json_path, TOK_MAX_JSON_BYTES, &root);
    if (st) return st;
    if (config_path && lc_file_exists(config_path) && (st = lc_json_load_file(config_path, TOK_MAX_JSON_BYTES, &cfg))) {
        cJSON_Delete(root);
        return st;
    }
    lc_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        cJSON_Delete(root);
        cJSON_Delete(cfg);
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", json_path);
    }
    tok->unk_id = tok->bos = tok->eos = -1;
    st = load(tok, root, json_path, cfg, config_path);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) {
        lc_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return LC_STATUS_OK;
}

void lc_tokenizer_free(lc_tokenizer *tok) {
    if (!tok) return;
    for (size_t i = 0; i < tok->n_norms; i++) pcre2_code_free(tok->norms[i].re);
    for (size_t i = 0; i < tok->n_pretoks; i++) pcre2_code_free(tok->pretoks[i].re);
    for (size_t i = 0; i < tok->n_decs; i++) pcre2_code_free(tok->decs[i].re);
    free(tok->norms);
    free(tok->pretoks);
    free(tok->decs);
    free(tok->raw_group.order);
    free(tok->norm_group.order);
    free(tok->added);
    tok_strmap_free(&tok->added_map);
    tok_strmap_free(&tok->vocab);
    tok_mergemap_free(&tok->merges);
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->added_of_id);
    tok_buf_free(&tok->arena);
    free(tok);
}

int32_t lc_tokenizer_vocab_size(const lc_tokenizer *tok) { return tok->vocab_size; }
int32_t lc_tokenizer_bos(const lc_tokenizer *tok) { return tok->bos; }
int32_t lc_tokenizer_eos(const lc_tokenizer *tok) { return tok->eos; }
size_t lc_tokenizer_stream_max_bytes(const lc_tokenizer *tok) { return tok->stream_max; }

bool lc_tokenizer_adds_bos(const lc_tokenizer *tok) {
    for (int i = 0; i < tok->n_prefix; i++)
        if (tok->bos >= 0 && tok->tmpl_prefix[i] == tok->bos) return true;
    return false;
}

const char *lc_tokenizer_piece(const lc_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->piece_off[id] != TOK_NONE) return tok->arena.data + tok->piece_off[id];
    if (tok->added_of_id[id] >= 0) return tok->arena.data + tok->added[tok->added_of_id[id]].off;
    return NULL;
}

int32_t lc_tokenizer_find(const lc_tokenizer *tok, const char *piece) {
    size_t n = strlen(piece);
    int32_t a = tok_strmap_get(&tok->added_map, tok->arena.data, piece, n);
    if (a >= 0) return tok->added[a].id;
    return tok_strmap_get(&tok->vocab, tok->arena.data, piece, n);
}

const char *tok_token_text(const lc_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size) return NULL;
    int32_t a = tok->added_of_id[id];
    if (a >= 0) {
        *len = tok->added[a].len;
        return tok->arena.data + tok->added[a].off;
    }
    if (tok->piece_off[id] == TOK_NONE) return NULL;
    *len = tok->piece_len[id];
    return tok->arena.data + tok->piece_off[id];
}

bool tok_is_special(const lc_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && tok->added_of_id[id] >= 0 && tok->added[tok->added_of_id[id]].special;
}
