// Encoding, in HF tokenizers' order: added tokens are cut out of the raw text
// (non-normalized ones), each remaining piece is normalized and searched for
// normalized added tokens, pre-tokenizers split the pieces further, and the
// BPE model turns every piece into ids. Scratch buffers live for one call and
// are reused across pieces, so the per-character loops do not allocate.
//
// Deviations from HF, all on inputs our files do not exercise: NFC is the
// identity (text is assumed precomposed; PCRE2 has no normalization), and
// Lowercase maps ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic only.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

typedef struct tpiece {
    size_t off, len;
    int32_t id;    // >= 0: an added token, not split or tokenized further
    bool at_start; // starts at offset 0 of the original text (Metaspace "first")
} tpiece;

typedef struct plist {
    tok_buf text;
    tpiece *p;
    size_t n, cap;
} plist;

typedef struct bpe_sym {
    int32_t id, prev, next;
    uint32_t len; // 0: merged into its left neighbour
} bpe_sym;

typedef struct bpe_merge {
    int32_t rank, pos, new_id;
} bpe_merge;

typedef struct seg {
    size_t a, b;
    bool m;
} seg;

typedef struct enc_ctx {
    const lc_tokenizer *tok;
    pcre2_match_data *md;
    tok_ranges r;
    plist lists[2];
    tok_buf nbuf, ntmp, word;
    seg *segs, *acc;
    size_t seg_cap;
    bpe_sym *syms;
    size_t sym_cap;
    bpe_merge *heap;
    size_t heap_cap, heap_n;
    int32_t **ids;
    size_t *cap, *n;
} enc_ctx;

bool tok_is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static size_t char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

static uint32_t decode_at(const char *s, size_t i) {
    const unsigned char *u = (const unsigned char *)s + i;
    switch (char_len(u[0])) {
    case 1: return u[0];
    case 2: return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    case 3: return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    default:
        return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
               (u[3] & 0x3F);
    }
}

static lc_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return LC_STATUS_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    *p = q;
    *cap = c;
    return LC_STATUS_OK;
}

static lc_status plist_push(plist *l, const char *s, size_t n, int32_t id, bool at_start) {
    lc_status st = grow((void **)&l->p, &l->cap, l->n + 1, sizeof *l->p);
    if (st) return st;
    l->p[l->n++] = (tpiece){l->text.len, n, id, at_start};
    return tok_buf_append(&l->text, s, n);
}

static void plist_clear(plist *l) {
    l->n = 0;
    l->text.len = 0;
}

static lc_status emit(enc_ctx *c, int32_t id) {
    lc_status st = grow((void **)c->ids, c->cap, *c->n + 1, sizeof **c->ids);
    if (st) return st;
    (*c->ids)[(*c->n)++] = id;
    return LC_STATUS_OK;
}

// ---- normalizers ----

static uint32_t lower_cp(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x130) return 'i';
        if (c == 0x178) return 0xFF;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
        if (c == 0x138 || c == 0x149 || c == 0x17F) return c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

lc_status tok_normalize(const lc_tokenizer *tok, const char *s, size_t n, tok_buf *out, tok_buf *tmp,
                        pcre2_match_data *md, tok_ranges *r) {
    lc_status st;
    out->len = 0;
    if ((st = tok_buf_append(out, s, n))) return st;
    for (size_t k = 0; k < tok->n_norms; k++) {
        const tok_norm *x = &tok->norms[k];
        const char *str = tok->arena.data + x->str;
        tmp->len = 0;
        if (x->kind == TOK_NORM_NFC) continue;
        if (x->kind == TOK_NORM_PREPEND) {
            if (!out->len) continue; // HF prepends only to non-empty text
            if ((st = tok_buf_append(tmp, str, x->len)) || (st = tok_buf_append(tmp, out->data, out->len))) return st;
        } else if (x->kind == TOK_NORM_REPLACE) {
            if ((st = tok_regex_find_all(x->re, md, out->data, out->len, r))) return st;
            size_t prev = 0;
            for (size_t i = 0; i < r->n; i += 2) {
                if ((st = tok_buf_append(tmp, out->data + prev, r->v[i] - prev))) return st;
                if ((st = tok_buf_append(tmp, str, x->len))) return st;
                prev = r->v[i + 1];
            }
            if ((st = tok_buf_append(tmp, out->data + prev, out->len - prev))) return st;
        } else { // LOWERCASE
            for (size_t i = 0; i < out->len;) {
                char b[4];
                size_t cl = char_len((unsigned char)out->data[i]);
                if ((st = tok_buf_append(tmp, b, tok_utf8_put(lower_cp(decode_at(out->data, i)), b)))) return st;
                i += cl;
            }
        }
        tok_buf t = *out;
        *out = *tmp;
        *tmp = t;
    }
    if (!out->data && (st = tok_buf_append(out, "", 0))) return st;
    return LC_STATUS_OK;
}

// ---- added tokens ----

static bool is_word_char(uint32_t c) {
    // Approximates regex \w (alphanumeric or '_'); only single_word tokens use it.
    return c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || (c >= 0xAA && !tok_is_space(c));
}

static size_t prev_char_start(const char *s, size_t i) {
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

// Cuts s into text pieces and added-token pieces (leftmost-longest, as HF's
// Aho-Corasick with MatchKind::LeftmostLongest), honouring lstrip/rstrip/single_word.
static lc_status split_added(enc_ctx *c, const tok_added_group *g, const char *s, size_t n, bool at_start,
                             plist *out) {
    const lc_tokenizer *tok = c->tok;
    size_t pos = 0, last = 0;
    lc_status st;
    while (pos < n && g->n) {
        unsigned ch = (unsigned char)s[pos];
        const tok_added *best = NULL;
        for (uint32_t k = g->first[ch]; k < g->first[ch + 1]; k++) {
            const tok_added *a = &tok->added[g->order[k]];
            if (a->mlen <= n - pos && memcmp(s + pos, tok->arena.data + a->moff, a->mlen) == 0) {
                best = a;
                break;
            }
        }
        if (!best) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + best->mlen;
        if (best->single_word) {
            bool left_ok = start == 0 || !is_word_char(decode_at(s, prev_char_start(s, start)));
            bool right_ok = stop == n || !is_word_char(decode_at(s, stop));
            if (!left_ok || !right_ok) {
                pos = stop; // the automaton moves past a rejected match
                continue;
            }
        }
        if (best->lstrip)
            while (start > last) {
                size_t p = prev_char_start(s, start);
                if (!tok_is_space(decode_at(s, p))) break;
                start = p;
            }
        if (best->rstrip)
            while (stop < n && tok_is_space(decode_at(s, stop))) stop += char_len((unsigned char)s[stop]);
        if (last < start && (st = plist_push(out, s + last, start - last, -1, at_start && last == 0))) return st;
        if ((st = plist_push(out, "", 0, best->id, false))) return st;
        last = pos = stop;
    }
    if (last < n) return plist_push(out, s + last, n - last, -1, at_start && last == 0);
    return LC_STATUS_OK;
}

// ---- pre-tokenizers ----

static lc_status split_piece(enc_ctx *c, const tok_pretok *p, const char *s, size_t n, bool at_start, plist *out) {
    lc_status st = tok_regex_find_all(p->re, c->md, s, n, &c->r);
    if (st) return st;
    if ((st = grow((void **)&c->segs, &c->seg_cap, c->r.n + 2, sizeof *c->segs))) return st;
    c->acc = realloc(c->acc, c->seg_cap * sizeof *c->acc);
    if (!c->acc) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    // Segments covering s, flagged match / non-match (HF Pattern::find_matches).
    size_t ns = 0, prev = 0;
    for (size_t i = 0; i < c->r.n; i += 2) {
        if (prev < c->r.v[i]) c->segs[ns++] = (seg){prev, c->r.v[i], false};
        c->segs[ns++] = (seg){c->r.v[i], c->r.v[i + 1], true};
        prev = c->r.v[i + 1];
    }
    if (prev < n) c->segs[ns++] = (seg){prev, n, false};
    if (p->invert)
        for (size_t i = 0; i < ns; i++) c->segs[i].m = !c->segs[i].m;

    // Fold into kept ranges; acc[i].m now means "removed".
    seg *acc = c->acc;
    size_t na = 0;
    bool pm = false;
    switch (p->behavior) {
    case TOK_SPLIT_REMOVED: memcpy(acc, c->segs, ns * sizeof *acc), na = ns; break;
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < ns; i++) acc[na++] = (seg){c->segs[i].a, c->segs[i].b, false};
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < ns; i++) {
            if (c->segs[i].m == pm && na) acc[na - 1].b = c->segs[i].b;
            else acc[na++] = (seg){c->segs[i].a, c->segs[i].b, false};
            pm = c->segs[i].m;
        }
        break;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < ns; i++) {
            if (c->segs[i].m && !pm && na) acc[na - 1].b = c->segs[i].b;
            else acc[na++] = (seg){c->segs[i].a, c->segs[i].b, false};
            pm = c->segs[i].m;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT:
        for (size_t i = ns; i-- > 0;) {
            if (c->segs[i].m && !pm && na) acc[na - 1].a = c->segs[i].a;
            else acc[na++] = (seg){c->segs[i].a, c->segs[i].b, false};
            pm = c->segs[i].m;
        }
        for (size_t i = 0; i < na / 2; i++) {
            seg t = acc[i];
            acc[i] = acc[na - 1 - i];
            acc[na - 1 - i] = t;
        }
        break;
    }
    for (size_t i = 0; i < na; i++) {
        if (acc[i].m || acc[i].b == acc[i].a) continue;
        if ((st = plist_push(out, s + acc[i].a, acc[i].b - acc[i].a, -1, at_start && acc[i].a == 0))) return st;
    }
    return LC_STATUS_OK;
}

static lc_status pretok_piece(enc_ctx *c, const tok_pretok *p, const char *s, size_t n, bool at_start, plist *out) {
    const lc_tokenizer *tok = c->tok;
    lc_status st;
    switch (p->kind) {
    case TOK_PRE_SPLIT: return split_piece(c, p, s, n, at_start, out);
    case TOK_PRE_PREFIX:
        if (n && s[0] == ' ') return plist_push(out, s, n, -1, at_start);
        c->word.len = 0;
        if ((st = tok_buf_append(&c->word, " ", 1)) || (st = tok_buf_append(&c->word, s, n))) return st;
        return plist_push(out, c->word.data, c->word.len, -1, at_start);
    case TOK_PRE_BYTEMAP:
        c->word.len = 0;
        if ((st = tok_buf_reserve(&c->word, 2 * n))) return st;
        for (size_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)s[i];
            memcpy(c->word.data + c->word.len, tok->bl_enc[b], tok->bl_enc_len[b]);
            c->word.len += tok->bl_enc_len[b];
        }
        return plist_push(out, c->word.data, c->word.len, -1, at_start);
    case TOK_PRE_METASPACE: {
        const char *rep = tok->arena.data + p->str;
        c->word.len = 0;
        bool starts = n >= p->len && memcmp(s, rep, p->len) == 0;
        bool prepend = p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && at_start);
        // A leading space becomes the replacement, so it also counts as "already starts with it".
        if (prepend && !starts && !(n && s[0] == ' ') && (st = tok_buf_append(&c->word, rep, p->len))) return st;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') st = tok_buf_append(&c->word, rep, p->len);
            else st = tok_buf_append(&c->word, s + i, 1);
            if (st) return st;
        }
        return plist_push(out, c->word.data ? c->word.data : "", c->word.len, -1, at_start);
    }
    }
    return LC_STATUS_OK;
}

// ---- BPE model ----

static bool merge_less(const bpe_merge *a, const bpe_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(enc_ctx *c, bpe_merge m) {
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = m;
}

static bpe_merge heap_pop(enc_ctx *c) {
    bpe_merge top = c->heap[0], last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const bpe_merge *best = &last;
        if (l < n && merge_less(&c->heap[l], best)) m = l, best = &c->heap[l];
        if (l + 1 < n && merge_less(&c->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void add_sym(enc_ctx *c, size_t *ns, int32_t id, uint32_t len) {
    bpe_sym *s = &c->syms[*ns];
    s->id = id;
    s->len = len;
    s->prev = (int32_t)*ns - 1;
    s->next = -1;
    if (*ns) c->syms[*ns - 1].next = (int32_t)*ns;
    (*ns)++;
}

// HF Word::merge_all: lowest rank first, leftmost among equal ranks.
static void merge_all(enc_ctx *c, size_t ns) {
    const tok_mergemap *mm = &c->tok->merges;
    bpe_sym *sy = c->syms;
    c->heap_n = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const tok_mergeent *e = tok_mergemap_get(mm, sy[i].id, sy[i + 1].id);
        if (e) heap_push(c, (bpe_merge){e->rank, (int32_t)i, e->new_id});
    }
    while (c->heap_n) {
        bpe_merge top = heap_pop(c);
        bpe_sym *cur = &sy[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        bpe_sym right = sy[cur->next];
        const tok_mergeent *e = tok_mergemap_get(mm, cur->id, right.id);
        if (!e || e->new_id != top.new_id) continue; // stale entry
        sy[cur->next].len = 0;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) sy[right.next].prev = top.pos;
        if (cur->prev >= 0 && (e = tok_mergemap_get(mm, sy[cur->prev].id, cur->id)))
            heap_push(c, (bpe_merge){e->rank, cur->prev, e->new_id});
        if (cur->next >= 0 && (e = tok_mergemap_get(mm, cur->id, sy[cur->next].id)))
            heap_push(c, (bpe_merge){e->rank, top.pos, e->new_id});
    }
}

static lc_status bpe_piece(enc_ctx *c, const char *s, size_t n) {
    const lc_tokenizer *tok = c->tok;
    const char *arena = tok->arena.data;
    lc_status st = LC_STATUS_OK;
    if (tok->ignore_merges) {
        int32_t id = tok_strmap_get(&tok->vocab, arena, s, n);
        if (id >= 0) return emit(c, id);
    }
    // Every symbol covers at least one byte, and merges at most double the heap per symbol.
    if ((st = grow((void **)&c->syms, &c->sym_cap, n + 1, sizeof *c->syms))) return st;
    if ((st = grow((void **)&c->heap, &c->heap_cap, 3 * n + 4, sizeof *c->heap))) return st;
    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = char_len((unsigned char)s[i]);
        const char *key = s + i;
        size_t klen = cl;
        st = LC_STATUS_OK;
        if ((tok->prefix_len && i > 0) || (tok->suffix_len && i + cl == n)) {
            c->word.len = 0;
            if (tok->prefix_len && i > 0) st = tok_buf_append(&c->word, arena + tok->prefix_off, tok->prefix_len);
            if (!st) st = tok_buf_append(&c->word, s + i, cl);
            if (!st && tok->suffix_len && i + cl == n)
                st = tok_buf_append(&c->word, arena + tok->suffix_off, tok->suffix_len);
            if (st) return st;
            key = c->word.data;
            klen = c->word.len;
        }
        int32_t id = tok_strmap_get(&tok->vocab, arena, key, klen);
        i += cl;
        if (id >= 0) {
            if (unk_id >= 0) add_sym(c, &ns, unk_id, unk_len), unk_id = -1;
            add_sym(c, &ns, id, (uint32_t)cl);
            continue;
        }
        if (tok->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < klen; k++) all = all && tok->byte_ids[(unsigned char)key[k]] >= 0;
            if (all) {
                // As HF: a pending unk is not flushed before byte tokens.
                if (klen > cl && (st = grow((void **)&c->syms, &c->sym_cap, ns + klen + (n - i) + 2, sizeof *c->syms)))
                    return st;
                for (size_t k = 0; k < klen; k++) add_sym(c, &ns, tok->byte_ids[(unsigned char)key[k]], 1);
                continue;
            }
        }
        if (tok->unk_id >= 0) {
            if (unk_id >= 0 && tok->fuse_unk) unk_len += (uint32_t)cl;
            else {
                if (unk_id >= 0) add_sym(c, &ns, unk_id, unk_len);
                unk_id = tok->unk_id;
                unk_len = (uint32_t)cl;
            }
        }
    }
    if (unk_id >= 0) add_sym(c, &ns, unk_id, unk_len);
    if ((st = grow((void **)&c->heap, &c->heap_cap, 3 * ns + 4, sizeof *c->heap))) return st;
    merge_all(c, ns);
    for (size_t i = 0; i < ns; i++)
        if (c->syms[i].len && (st = emit(c, c->syms[i].id))) return st;
    return LC_STATUS_OK;
}

// ---- entry point ----

static lc_status run(enc_ctx *c, const char *text, size_t len) {
    const lc_tokenizer *tok = c->tok;
    lc_status st;
    plist *cur = &c->lists[0], *nxt = &c->lists[1];
    if ((st = split_added(c, &tok->raw_group, text, len, true, cur))) return st;
    for (size_t i = 0; i < cur->n; i++) {
        tpiece p = cur->p[i];
        if (p.id >= 0) {
            if ((st = plist_push(nxt, "", 0, p.id, false))) return st;
            continue;
        }
        const char *s = cur->text.data + p.off;
        size_t n = p.len;
        if (tok->n_norms) {
            if ((st = tok_normalize(tok, s, n, &c->nbuf, &c->ntmp, c->md, &c->r))) return st;
            s = c->nbuf.data;
            n = c->nbuf.len;
        }
        if ((st = split_added(c, &tok->norm_group, s, n, p.at_start, nxt))) return st;
    }
    for (size_t k = 0; k < tok->n_pretoks; k++) {
        plist *t = cur;
        cur = nxt;
        nxt = t;
        plist_clear(nxt);
        for (size_t i = 0; i < cur->n; i++) {
            tpiece p = cur->p[i];
            if (p.id >= 0) st = plist_push(nxt, "", 0, p.id, false);
            else st = pretok_piece(c, &tok->pretoks[k], cur->text.data + p.off, p.len, p.at_start, nxt);
            if (st) return st;
        }
    }
    for (size_t i = 0; i < nxt->n; i++) {
        tpiece p = nxt->p[i];
        st = p.id >= 0 ? emit(c, p.id) : bpe_piece(c, nxt->text.data + p.off, p.len);
        if (st) return st;
    }
    return LC_STATUS_OK;
}

lc_status lc_tokenizer_encode(const lc_tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *cap, size_t *n_ids) {
    *n_ids = 0;
    if (!text && len) return lc_error(LC_STATUS_USAGE, "tokenizer: NULL text");
    size_t valid = len ? tok_utf8_valid_prefix((const unsigned char *)text, len) : 0;
    if (valid != len) return lc_error(LC_STATUS_INPUT, "text is not valid UTF-8 (byte %zu)", valid);
    enc_ctx c = {.tok = tok, .ids = ids, .cap = cap, .n = n_ids};
    lc_status st = LC_STATUS_OK;
    c.md = pcre2_match_data_create(1, NULL);
    if (!c.md) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    for (int i = 0; add_special && i < tok->n_prefix && !st; i++) st = emit(&c, tok->tmpl_prefix[i]);
    if (!st && len) st = run(&c, text, len);
    for (int i = 0; add_special && i < tok->n_suffix && !st; i++) st = emit(&c, tok->tmpl_suffix[i]);
    pcre2_match_data_free(c.md);
    free(c.r.v);
    for (int i = 0; i < 2; i++) {
        tok_buf_free(&c.lists[i].text);
        free(c.lists[i].p);
    }
    tok_buf_free(&c.nbuf);
    tok_buf_free(&c.ntmp);
    tok_buf_free(&c.word);
    free(c.segs);
    free(c.acc);
    free(c.syms);
    free(c.heap);
    if (st) *n_ids = 0;
    return st;
}
