// Read-only views of the loaded vocabulary for exporters: the tokenizer's
// style, each token's kind, and the merges in rank order.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

lc_tokenizer_style lc_tokenizer_get_style(const lc_tokenizer *tok) {
    for (size_t i = 0; i < tok->n_pretoks; i++)
        if (tok->pretoks[i].kind == TOK_PRE_BYTEMAP) return LC_TOKENIZER_BYTE_LEVEL;
    for (size_t i = 0; i < tok->n_decs; i++)
        if (tok->decs[i].kind == TOK_DEC_BYTELEVEL) return LC_TOKENIZER_BYTE_LEVEL;
    return LC_TOKENIZER_SENTENCEPIECE;
}

int32_t lc_tokenizer_unk(const lc_tokenizer *tok) { return tok->unk_id; }

bool lc_tokenizer_adds_eos(const lc_tokenizer *tok) {
    for (int i = 0; i < tok->n_suffix; i++)
        if (tok->eos >= 0 && tok->tmpl_suffix[i] == tok->eos) return true;
    return false;
}

lc_token_kind lc_tokenizer_token_kind(const lc_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->vocab_size) return LC_TOKEN_NONE;
    if (id == tok->unk_id) return LC_TOKEN_UNKNOWN;
    int32_t a = tok->added_of_id[id];
    if (a >= 0) return tok->added[a].special ? LC_TOKEN_CONTROL : LC_TOKEN_ADDED;
    if (tok->piece_off[id] == TOK_NONE) return LC_TOKEN_NONE;
    if (tok->byte_fallback && tok->piece_len[id] == 6) { // <0xNN>, the piece byte fallback uses
        const char *p = tok->arena.data + tok->piece_off[id];
        unsigned b = 0;
        bool hex = p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>';
        for (int i = 3; hex && i < 5; i++) {
            char c = p[i];
            unsigned v = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
            hex = v < 16;
            b = b * 16 + v;
        }
        if (hex && tok->byte_ids[b] == id) return LC_TOKEN_BYTE;
    }
    return LC_TOKEN_NORMAL;
}

const char *lc_tokenizer_token_text(const lc_tokenizer *tok, int32_t id, size_t *len) {
    size_t n = 0;
    const char *s = tok_token_text(tok, id, &n);
    *len = s ? n : 0;
    return s;
}

static int cmp_rank(const void *a, const void *b) {
    const lc_tokenizer_merge *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

lc_status lc_tokenizer_merges(const lc_tokenizer *tok, lc_tokenizer_merge **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!tok->merges.slots) return LC_STATUS_OK;
    size_t count = 0, nslots = tok->merges.mask + 1;
    for (size_t i = 0; i < nslots; i++) count += tok->merges.slots[i].key != 0;
    if (!count) return LC_STATUS_OK;
    lc_tokenizer_merge *m = malloc(count * sizeof *m);
    if (!m) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory (%zu merges)", count);
    size_t k = 0;
    for (size_t i = 0; i < nslots; i++) {
        const tok_mergeent *e = &tok->merges.slots[i];
        if (!e->key) continue;
        uint64_t key = e->key - 1;
        m[k++] = (lc_tokenizer_merge){(int32_t)(uint32_t)(key >> 32), (int32_t)(uint32_t)key, e->new_id, e->rank};
    }
    qsort(m, count, sizeof *m, cmp_rank);
    *out = m;
    *n = count;
    return LC_STATUS_OK;
}
