// Token offsets: where each token of encode(text) begins in text. Each token
// is read as the text it stands for (added-token content, byte-level pieces
// through the byte decoder, SentencePiece pieces with the space stand-in and
// <0xNN> bytes) and walked against text in one pass. What the normalizer and
// pre-tokenizers may insert is read off the tokenizer: Prepend's text at the
// start of every segment between raw added tokens, and Metaspace's or
// ByteLevel's prefix space where the text has none.
#include <string.h>

#include "data/tokenizer_internal.h"

typedef struct off_ctx {
    const lc_tokenizer *tok;
    const char *text;
    size_t len;
    bool byte_level;        // pieces are byte-level text
    bool byte_pieces;       // <0xNN> pieces stand for one byte (byte fallback)
    const char *meta;       // SentencePiece's stand-in for ' ' ("▁"); meta_len 0: none
    size_t meta_len;
    bool norm_meta;         // a Replace normalizer makes meta (added tokens then see no ' ')
    const char *prepend;    // Prepend normalizer's text, inserted at each segment start
    size_t prepend_len;
    const char *ins;        // what a pre-tokenizer inserts where the text has no space
    size_t ins_len;
    tok_buf bytes;          // one byte-level piece's bytes, reused
} off_ctx;

static bool starts_with(const char *s, size_t n, const char *p, size_t k) { return n >= k && memcmp(s, p, k) == 0; }

// Matches one token's text s[0..n) against text from *pos and advances *pos.
// literal: s is plain bytes (raw added content, a byte-fallback byte);
// otherwise meta stands for ' ' or a literal meta in the text, a leading
// prepend (while *pending) or ins may stand for nothing.
static bool match_piece(const off_ctx *c, const char *s, size_t n, bool literal, bool pending, size_t *pos) {
    const char *t = c->text;
    size_t p = *pos, i = 0;
    if (!literal && pending && c->prepend_len && starts_with(s, n, c->prepend, c->prepend_len)) {
        i = c->prepend_len; // the normalizer put it there: always, even before a space
    } else if (!literal && c->ins_len && starts_with(s, n, c->ins, c->ins_len) && !(p < c->len && t[p] == ' ') &&
               !starts_with(t + p, c->len - p, c->ins, c->ins_len)) {
        i = c->ins_len; // Metaspace / add_prefix_space insert it only where no space is
    }
    while (i < n) {
        if (!literal && c->meta_len && starts_with(s + i, n - i, c->meta, c->meta_len)) {
            if (p < c->len && t[p] == ' ') p++;
            else if (starts_with(t + p, c->len - p, c->meta, c->meta_len)) p += c->meta_len;
            else return false;
            i += c->meta_len;
        } else if (p < c->len && t[p] == s[i]) {
            p++;
            i++;
        } else {
            return false;
        }
    }
    *pos = p;
    return true;
}

// Whitespace an added token's lstrip/rstrip takes at text[p]: its length, or 0.
// Normalized tokens strip normalized text, where a Replace already made ' ' meta.
static size_t strip_len(const off_ctx *c, size_t p, bool normalized) {
    uint32_t cp;
    size_t bad;
    int trunc;
    int k = tok_utf8_next((const unsigned char *)c->text + p, c->len - p, &cp, &bad, &trunc);
    if (k <= 0 || !tok_is_space(cp) || (normalized && c->norm_meta && cp == ' ')) return 0;
    return (size_t)k;
}

static lc_status match_added(const off_ctx *c, const tok_added *a, bool pending, size_t *pos, size_t *begin) {
    const lc_tokenizer *tok = c->tok;
    // Normalized tokens were matched in normalized text, by their normalized content.
    const char *s = tok->arena.data + (a->normalized ? a->moff : a->off);
    size_t n = a->normalized ? a->mlen : a->len, p = *pos, k;
    bool literal = !a->normalized;
    // lstrip: HF extends the match back over whitespace, so the token begins
    // where the whitespace before its leftmost match does.
    while (*begin = p, !match_piece(c, s, n, literal, pending, &p)) {
        if (!a->lstrip || !(k = strip_len(c, p, a->normalized))) return LC_STATUS_INPUT;
        p += k;
    }
    if (a->rstrip)
        while (p < c->len && (k = strip_len(c, p, a->normalized))) p += k;
    *pos = p;
    return LC_STATUS_OK;
}

// LC_STATUS_INPUT without a message: the token does not match; the caller says where.
static lc_status match_token(off_ctx *c, int32_t id, const char *s, size_t n, bool pending, size_t *pos,
                             size_t *begin) {
    const lc_tokenizer *tok = c->tok;
    *begin = *pos;
    if (tok->added_of_id[id] >= 0) return match_added(c, &tok->added[tok->added_of_id[id]], pending, pos, begin);
    if (c->byte_level) {
        c->bytes.len = 0;
        lc_status st = tok_byte_level_bytes(tok, s, n, &c->bytes);
        if (st) return st;
        return match_piece(c, c->bytes.data, c->bytes.len, false, pending, pos) ? LC_STATUS_OK : LC_STATUS_INPUT;
    }
    int b = c->byte_pieces ? tok_byte_piece(s, n) : -1;
    if (b >= 0) {
        char ch = (char)b;
        return match_piece(c, &ch, 1, true, pending, pos) ? LC_STATUS_OK : LC_STATUS_INPUT;
    }
    return match_piece(c, s, n, false, pending, pos) ? LC_STATUS_OK : LC_STATUS_INPUT;
}

// Reads the steps that insert or rewrite spaces. The Replace normalizer's
// pattern is checked against " " so only a space stand-in counts as meta.
static lc_status plan(off_ctx *c) {
    const lc_tokenizer *tok = c->tok;
    const char *arena = tok->arena.data;
    c->byte_level = lc_tokenizer_get_style(tok) == LC_TOKENIZER_BYTE_LEVEL;
    c->byte_pieces = tok->byte_fallback;
    for (size_t k = 0; k < tok->n_decs; k++) c->byte_pieces |= tok->decs[k].kind == TOK_DEC_BYTEFALLBACK;
    pcre2_match_data *md = NULL;
    for (size_t k = 0; k < tok->n_norms; k++) {
        const tok_norm *x = &tok->norms[k];
        if (x->kind == TOK_NORM_PREPEND && !c->prepend_len) {
            c->prepend = arena + x->str;
            c->prepend_len = x->len;
        }
        if (x->kind != TOK_NORM_REPLACE || c->byte_level || c->meta_len || !x->len) continue;
        if (!md && !(md = pcre2_match_data_create(1, NULL))) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
        int rc = pcre2_match(x->re, (PCRE2_SPTR) " ", 1, 0, PCRE2_ANCHORED, md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (rc > 0 && ov[0] == 0 && ov[1] == 1) {
            c->meta = arena + x->str;
            c->meta_len = x->len;
            c->norm_meta = true;
        }
    }
    if (md) pcre2_match_data_free(md);
    for (size_t k = 0; k < tok->n_pretoks; k++) {
        const tok_pretok *p = &tok->pretoks[k];
        if (p->kind == TOK_PRE_PREFIX) {
            c->ins = " ";
            c->ins_len = 1;
        } else if (p->kind == TOK_PRE_METASPACE && !c->byte_level) {
            if (!c->meta_len) {
                c->meta = arena + p->str;
                c->meta_len = p->len;
            }
            if (p->prepend != TOK_PREPEND_NEVER) {
                c->ins = arena + p->str;
                c->ins_len = p->len;
            }
        }
    }
    return LC_STATUS_OK;
}

lc_status lc_tokenizer_offsets(const lc_tokenizer *tok, const char *text, size_t len, const int32_t *ids, size_t n,
                               size_t *offsets /*[n]*/) {
    if ((!text && len) || (!ids && n) || (!offsets && n))
        return lc_error(LC_STATUS_USAGE, "tokenizer offsets: NULL text, ids or offsets");
    off_ctx c = {.tok = tok, .text = text, .len = len};
    lc_status st = plan(&c);
    size_t pos = 0;
    // Prepend's text starts each segment the raw added tokens cut the text into.
    bool pending = c.prepend_len > 0;
    for (size_t j = 0; j < n && !st; j++) {
        size_t tl;
        const char *t = tok_token_text(tok, ids[j], &tl);
        if (!t) {
            st = lc_error(LC_STATUS_INPUT, "tokenizer offsets: token %zu: no token has id %d", j, ids[j]);
            break;
        }
        size_t at = pos;
        st = match_token(&c, ids[j], t, tl, pending, &pos, &offsets[j]);
        if (st == LC_STATUS_INPUT)
            st = lc_error(LC_STATUS_INPUT, "tokenizer offsets: token %zu (id %d) does not match the text at byte %zu", j,
                          ids[j], at);
        int32_t a = tok->added_of_id[ids[j]];
        pending = a >= 0 && !tok->added[a].normalized && c.prepend_len > 0;
    }
    if (!st && pos != len)
        st = lc_error(LC_STATUS_INPUT, "tokenizer offsets: the tokens stand for %zu of the text's %zu bytes", pos, len);
    tok_buf_free(&c.bytes);
    return st;
}
