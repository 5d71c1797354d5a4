// Decoding: ids -> token strings -> the decoder chain, as HF's
// decode_chain does it (each decoder maps the list of token strings), and a
// streaming variant that runs the same chain one token at a time and holds
// back bytes until they form complete UTF-8.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

static const char FFFD[] = "\xEF\xBF\xBD";

// A list of strings in one buffer.
typedef struct slist {
    tok_buf text;
    size_t *off, *len;
    size_t n, cap;
} slist;

static lc_status slist_push(slist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (o) l->off = o;
        size_t *q = o ? realloc(l->len, cap * sizeof *q) : NULL;
        if (!o || !q) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
        l->len = q;
        l->cap = cap;
    }
    l->off[l->n] = l->text.len;
    l->len[l->n++] = n;
    return tok_buf_append(&l->text, s, n);
}

// Extends the last string (used while building it piece by piece).
static lc_status slist_extend(slist *l, const char *s, size_t n) {
    lc_status st = tok_buf_append(&l->text, s, n);
    if (!st) l->len[l->n - 1] += n;
    return st;
}

static void slist_clear(slist *l) {
    l->n = 0;
    l->text.len = 0;
}

static void slist_free(slist *l) {
    tok_buf_free(&l->text);
    free(l->off);
    free(l->len);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tok_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static size_t next_char(const char *s, size_t n, uint32_t *cp) {
    size_t bad;
    int trunc;
    int k = tok_utf8_next((const unsigned char *)s, n, cp, &bad, &trunc);
    if (k > 0) return (size_t)k;
    *cp = 0xFFFD; // not reached for text from our own steps; treat the byte as one char
    return 1;
}

static lc_status replace_into(const lc_tokenizer *tok, const tok_dec *x, const char *s, size_t n, slist *out,
                              pcre2_match_data *md, tok_ranges *r) {
    lc_status st = tok_regex_find_all(x->re, md, s, n, r);
    if (st) return st;
    const char *content = tok->arena.data + x->str;
    if ((st = slist_push(out, "", 0))) return st;
    size_t prev = 0;
    for (size_t i = 0; i < r->n; i += 2) {
        if ((st = slist_extend(out, s + prev, r->v[i] - prev)) || (st = slist_extend(out, content, x->len))) return st;
        prev = r->v[i + 1];
    }
    return slist_extend(out, s + prev, n - prev);
}

// Strip decoder on one string: up to `start` leading and `stop` trailing copies of the char.
static void strip_range(const tok_dec *x, const char *s, size_t n, int64_t start, int64_t stop, size_t *a,
                        size_t *b) {
    size_t i = 0;
    for (int64_t k = 0; k < start && i < n; k++) {
        uint32_t cp;
        size_t cl = next_char(s + i, n - i, &cp);
        if (cp != x->strip_char) break;
        i += cl;
    }
    size_t j = n;
    for (int64_t k = 0; k < stop && j > i; k++) {
        size_t p = j - 1;
        while (p > i && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
        uint32_t cp;
        next_char(s + p, j - p, &cp);
        if (cp != x->strip_char) break;
        j = p;
    }
    *a = i;
    *b = j;
}

lc_status tok_byte_level_bytes(const lc_tokenizer *tok, const char *s, size_t n, tok_buf *out) {
    size_t mark = out->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += next_char(s + i, n - i, &cp);
        if (cp >= 324 || tok->bl_dec[cp] < 0) {
            out->len = mark;
            return tok_buf_append(out, s, n);
        }
        char b = (char)tok->bl_dec[cp];
        lc_status st = tok_buf_append(out, &b, 1);
        if (st) return st;
    }
    return LC_STATUS_OK;
}

static lc_status metaspace_into(const lc_tokenizer *tok, const tok_dec *x, const char *s, size_t n, bool drop,
                                slist *out) {
    const char *rep = tok->arena.data + x->str;
    lc_status st = slist_push(out, "", 0);
    for (size_t i = 0; i < n && !st;) {
        if (n - i >= x->len && memcmp(s + i, rep, x->len) == 0) {
            if (!drop) st = slist_extend(out, " ", 1);
            i += x->len;
        } else {
            st = slist_extend(out, s + i, 1);
            i++;
        }
    }
    return st;
}

static lc_status run_step(const lc_tokenizer *tok, const tok_dec *x, slist *in, slist *out, pcre2_match_data *md,
                          tok_ranges *r, tok_buf *bytes) {
    lc_status st = LC_STATUS_OK;
    slist_clear(out);
    switch (x->kind) {
    case TOK_DEC_REPLACE:
        for (size_t i = 0; i < in->n && !st; i++)
            st = replace_into(tok, x, in->text.data + in->off[i], in->len[i], out, md, r);
        return st;
    case TOK_DEC_BYTEFALLBACK: {
        // A run of <0xNN> tokens becomes its UTF-8 text, or one U+FFFD per byte if invalid (HF).
        bytes->len = 0;
        for (size_t i = 0; i <= in->n && !st; i++) {
            int b = i < in->n ? tok_byte_piece(in->text.data + in->off[i], in->len[i]) : -1;
            if (b >= 0) {
                char c = (char)b;
                st = tok_buf_append(bytes, &c, 1);
                continue;
            }
            if (bytes->len) {
                if (tok_utf8_valid_prefix((const unsigned char *)bytes->data, bytes->len) == bytes->len)
                    st = slist_push(out, bytes->data, bytes->len);
                else
                    for (size_t k = 0; k < bytes->len && !st; k++) st = slist_push(out, FFFD, 3);
                bytes->len = 0;
            }
            if (i < in->n && !st) st = slist_push(out, in->text.data + in->off[i], in->len[i]);
        }
        return st;
    }
    case TOK_DEC_FUSE:
        st = slist_push(out, "", 0);
        for (size_t i = 0; i < in->n && !st; i++) st = slist_extend(out, in->text.data + in->off[i], in->len[i]);
        return st;
    case TOK_DEC_STRIP:
        for (size_t i = 0; i < in->n && !st; i++) {
            size_t a, b;
            strip_range(x, in->text.data + in->off[i], in->len[i], x->start, x->stop, &a, &b);
            st = slist_push(out, in->text.data + in->off[i] + a, b - a);
        }
        return st;
    case TOK_DEC_BYTELEVEL: {
        bytes->len = 0;
        for (size_t i = 0; i < in->n && !st; i++)
            st = tok_byte_level_bytes(tok, in->text.data + in->off[i], in->len[i], bytes);
        tok_buf text = {0};
        if (!st) st = tok_utf8_lossy(&text, (const unsigned char *)bytes->data, bytes->len);
        if (!st) st = slist_push(out, text.data ? text.data : "", text.len);
        tok_buf_free(&text);
        return st;
    }
    case TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->n && !st; i++)
            st = metaspace_into(tok, x, in->text.data + in->off[i], in->len[i], i == 0 && x->drop_first, out);
        return st;
    }
    return st;
}

lc_status lc_tokenizer_decode(const lc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **out,
                              size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    slist a = {0}, b = {0};
    tok_buf bytes = {0}, res = {0};
    tok_ranges r = {0};
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    lc_status st = md ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    // Unknown ids are skipped, as HF does (a model's embedding may be larger than the vocab).
    for (size_t i = 0; i < n && !st; i++) {
        size_t len;
        const char *t = tok_token_text(tok, ids[i], &len);
        if (!t || (skip_special && tok_is_special(tok, ids[i]))) continue;
        st = slist_push(&a, t, len);
    }
    slist *cur = &a, *nxt = &b;
    for (size_t k = 0; k < tok->n_decs && !st; k++) {
        st = run_step(tok, &tok->decs[k], cur, nxt, md, &r, &bytes);
        slist *t = cur;
        cur = nxt;
        nxt = t;
    }
    // Without a decoder HF joins the tokens with spaces; decoders' outputs are concatenated.
    for (size_t i = 0; i < cur->n && !st; i++) {
        if (!tok->has_decoder && i > 0) st = tok_buf_append(&res, " ", 1);
        if (!st) st = tok_buf_append(&res, cur->text.data + cur->off[i], cur->len[i]);
    }
    if (!st && !res.data) st = tok_buf_append(&res, "", 0);
    slist_free(&a);
    slist_free(&b);
    tok_buf_free(&bytes);
    free(r.v);
    if (md) pcre2_match_data_free(md);
    if (st) {
        tok_buf_free(&res);
        return st;
    }
    *out = res.data;
    if (out_len) *out_len = res.len;
    return LC_STATUS_OK;
}

// ---- streaming ----

static bool has_step(const lc_tokenizer *tok, enum tok_dec_kind k) {
    for (size_t i = 0; i < tok->n_decs; i++)
        if (tok->decs[i].kind == k) return true;
    return false;
}

void lc_detokenizer_init(lc_detokenizer *d, const lc_tokenizer *tok, bool skip_special) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->skip_special = skip_special;
}

static lc_status put(char *out, size_t cap, size_t *n, const void *p, size_t k) {
    if (*n + k > cap) return lc_error(LC_STATUS_RUNTIME, "detokenizer: output buffer of %zu bytes is too small", cap);
    memcpy(out + *n, p, k);
    *n += k;
    return LC_STATUS_OK;
}

// The decoder chain for one token. Byte tokens stay raw bytes (*raw set) and
// byte-level text becomes its bytes; validation happens in the caller.
static lc_status stream_chain(lc_detokenizer *d, const char *t, size_t len, tok_buf *cur, tok_buf *tmp, bool *raw) {
    const lc_tokenizer *tok = d->tok;
    bool first = d->n_pushed == 0;
    lc_status st = tok_buf_append(cur, t, len);
    *raw = false;
    for (size_t k = 0; k < tok->n_decs && !st; k++) {
        const tok_dec *x = &tok->decs[k];
        tmp->len = 0;
        if (x->kind == TOK_DEC_REPLACE || x->kind == TOK_DEC_METASPACE) {
            slist one = {0};
            tok_ranges r = {0};
            pcre2_match_data *md = pcre2_match_data_create(1, NULL);
            if (!md) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
            st = x->kind == TOK_DEC_REPLACE ? replace_into(tok, x, cur->data, cur->len, &one, md, &r)
                                            : metaspace_into(tok, x, cur->data, cur->len, first && x->drop_first, &one);
            if (!st) st = tok_buf_append(tmp, one.text.data, one.len[0]);
            slist_free(&one);
            free(r.v);
            pcre2_match_data_free(md);
        } else if (x->kind == TOK_DEC_BYTEFALLBACK) {
            int b = tok_byte_piece(cur->data, cur->len);
            if (b < 0) continue;
            char c = (char)b;
            *raw = true;
            st = tok_buf_append(tmp, &c, 1);
        } else if (x->kind == TOK_DEC_STRIP) {
            // The stream's first text is the start of the fused string; the end is never known here.
            if (!first) continue;
            size_t a, e;
            strip_range(x, cur->data, cur->len, x->start, 0, &a, &e);
            st = tok_buf_append(tmp, cur->data + a, e - a);
        } else if (x->kind == TOK_DEC_BYTELEVEL) {
            st = tok_byte_level_bytes(tok, cur->data, cur->len, tmp);
        } else {
            continue; // FUSE: one token is already one string
        }
        tok_buf t2 = *cur;
        *cur = *tmp;
        *tmp = t2;
    }
    return st;
}

lc_status lc_detokenizer_push(lc_detokenizer *d, int32_t id, char *out, size_t cap, size_t *n_out) {
    const lc_tokenizer *tok = d->tok;
    *n_out = 0;
    size_t len;
    const char *t = tok_token_text(tok, id, &len);
    if (!t || (d->skip_special && tok_is_special(tok, id))) return LC_STATUS_OK;
    tok_buf cur = {0}, tmp = {0};
    bool raw = false;
    lc_status st = LC_STATUS_OK;
    if (!tok->has_decoder && d->n_pushed) st = tok_buf_append(&cur, " ", 1);
    if (!st) st = stream_chain(d, t, len, &cur, &tmp, &raw);
    if (len) d->n_pushed++;
    // ByteFallback tokenizers: text tokens are whole UTF-8; a pending byte run
    // that a text token interrupts is invalid, one U+FFFD per byte as HF.
    bool per_byte = has_step(tok, TOK_DEC_BYTEFALLBACK) && !has_step(tok, TOK_DEC_BYTELEVEL);
    const unsigned char *s = (const unsigned char *)cur.data;
    size_t n = cur.len;
    if (!st && per_byte && !raw) {
        for (size_t k = 0; k < d->n_pending && !st; k++) st = put(out, cap, n_out, FFFD, 3);
        d->n_pending = 0;
        if (!st) st = put(out, cap, n_out, s, n);
    } else if (!st) {
        for (size_t i = 0; i < n && !st; i++) {
            d->pending[d->n_pending++] = s[i];
            // Emit every complete character; keep a valid but unfinished tail.
            size_t j = 0;
            while (j < d->n_pending && !st) {
                uint32_t cp;
                size_t bad;
                int trunc;
                int k = tok_utf8_next(d->pending + j, d->n_pending - j, &cp, &bad, &trunc);
                if (k > 0) {
                    st = put(out, cap, n_out, d->pending + j, (size_t)k);
                    j += (size_t)k;
                } else if (trunc) {
                    break;
                } else {
                    st = put(out, cap, n_out, FFFD, 3);
                    j += per_byte ? 1 : bad; // per-byte like ByteFallback, else like from_utf8_lossy
                }
            }
            memmove(d->pending, d->pending + j, d->n_pending - j);
            d->n_pending -= j;
        }
    }
    tok_buf_free(&cur);
    tok_buf_free(&tmp);
    return st;
}

lc_status lc_detokenizer_flush(lc_detokenizer *d, char *out, size_t cap, size_t *n_out) {
    const lc_tokenizer *tok = d->tok;
    bool per_byte = has_step(tok, TOK_DEC_BYTEFALLBACK) && !has_step(tok, TOK_DEC_BYTELEVEL);
    *n_out = 0;
    lc_status st = LC_STATUS_OK;
    size_t n_fffd = d->n_pending == 0 ? 0 : per_byte ? d->n_pending : 1;
    for (size_t k = 0; k < n_fffd && !st; k++) st = put(out, cap, n_out, FFFD, 3);
    d->n_pending = 0;
    return st;
}
