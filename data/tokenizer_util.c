// Shared tokenizer helpers: growable buffers, hash tables built once at load,
// strict UTF-8 handling (matching Rust's rules) and PCRE2 match loops.
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "data/tokenizer_internal.h"

lc_status tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return LC_STATUS_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory (%zu bytes)", cap);
    b->data = p;
    b->cap = cap;
    return LC_STATUS_OK;
}

lc_status tok_buf_append(tok_buf *b, const void *p, size_t n) {
    lc_status st = tok_buf_reserve(b, n);
    if (st) return st;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return LC_STATUS_OK;
}

void tok_buf_free(tok_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// FNV-1a: short keys, good enough spread for open addressing.
static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

lc_status tok_strmap_init(tok_strmap *m, size_t expected) {
    size_t nslots = 16;
    while (nslots < expected * 2) nslots *= 2;
    m->ents = malloc((expected ? expected : 1) * sizeof *m->ents);
    m->slots = malloc(nslots * sizeof *m->slots);
    if (!m->ents || !m->slots) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    memset(m->slots, 0xff, nslots * sizeof *m->slots);
    m->n = 0;
    m->mask = nslots - 1;
    return LC_STATUS_OK;
}

long tok_strmap_insert(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t val) {
    size_t i = hash_bytes(arena + off, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t e = m->slots[i];
        if (e == TOK_NONE) break;
        if (m->ents[e].len == len && memcmp(arena + m->ents[e].off, arena + off, len) == 0) return (long)e;
    }
    // Callers size the map for every key they insert, so a slot is always free.
    m->slots[i] = (uint32_t)m->n;
    m->ents[m->n++] = (tok_strent){off, len, val};
    return -1;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *key, size_t len) {
    if (!m->slots) return -1;
    size_t i = hash_bytes(key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t e = m->slots[i];
        if (e == TOK_NONE) return -1;
        if (m->ents[e].len == len && memcmp(arena + m->ents[e].off, key, len) == 0) return m->ents[e].val;
    }
}

void tok_strmap_free(tok_strmap *m) {
    free(m->ents);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static size_t hash_u64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

lc_status tok_mergemap_init(tok_mergemap *m, size_t expected) {
    size_t nslots = 16;
    while (nslots < expected * 2) nslots *= 2;
    m->slots = calloc(nslots, sizeof *m->slots);
    if (!m->slots) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    m->mask = nslots - 1;
    return LC_STATUS_OK;
}

void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = hash_u64(key) & m->mask;
    while (m->slots[i].key && m->slots[i].key != key) i = (i + 1) & m->mask;
    // A repeated pair overwrites the earlier rank, as HF's HashMap collect does.
    m->slots[i] = (tok_mergeent){key, rank, new_id};
}

const tok_mergeent *tok_mergemap_get(const tok_mergemap *m, int32_t a, int32_t b) {
    if (!m->slots) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = hash_u64(key) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key) return &m->slots[i];
        if (!m->slots[i].key) return NULL;
    }
}

void tok_mergemap_free(tok_mergemap *m) {
    free(m->slots);
    m->slots = NULL;
}

int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad, int *truncated) {
    unsigned c = s[0];
    *truncated = 0;
    *bad = 1;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    uint32_t v = c & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) {
            *truncated = 1;
            *bad = (size_t)k;
            return 0;
        }
        unsigned d = s[k];
        unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (d < l || d > h) {
            *bad = (size_t)k;
            return 0;
        }
        v = v << 6 | (d & 0x3F);
    }
    *cp = v;
    return need + 1;
}

size_t tok_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

lc_status tok_utf8_lossy(tok_buf *out, const unsigned char *s, size_t n) {
    lc_status st = tok_buf_reserve(out, n);
    if (st) return st;
    size_t i = 0;
    while (i < n) {
        size_t good = tok_utf8_valid_prefix(s + i, n - i);
        if ((st = tok_buf_append(out, s + i, good))) return st;
        i += good;
        if (i >= n) break;
        uint32_t cp;
        size_t bad;
        int trunc;
        tok_utf8_next(s + i, n - i, &cp, &bad, &trunc);
        if ((st = tok_buf_append(out, "\xEF\xBF\xBD", 3))) return st;
        i += bad;
    }
    return LC_STATUS_OK;
}

size_t tok_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t bad;
        int trunc;
        int k = tok_utf8_next(s + i, n - i, &cp, &bad, &trunc);
        if (!k) break;
        i += (size_t)k;
    }
    return i;
}

// Oniguruma (which Hugging Face tokenizers use) allows a class inside a
// class, meaning their union: Bloom's " ?[^(\s|[.,!?…])]+". PCRE2 does not,
// so the inner brackets are dropped: [^A[B]] becomes [^AB]. POSIX classes
// ([:alpha:]) and escapes are copied as they are. dst holds len + 1 bytes.
static size_t flatten_nested_classes(char *dst, const char *p, size_t len) {
    size_t o = 0;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '\\' && i + 1 < len) {
            dst[o++] = ch;
            dst[o++] = p[++i];
            continue;
        }
        if (depth > 0 && ch == '[' && i + 1 < len && p[i + 1] == ':') {
            const char *end = memchr(p + i, ']', len - i);
            size_t n = end ? (size_t)(end - (p + i)) + 1 : len - i;
            memcpy(dst + o, p + i, n);
            o += n;
            i += n - 1;
            continue;
        }
        if (ch == '[') {
            if (depth++ > 0) continue; // a nested class: its members join the outer one
            dst[o++] = ch;
            // A ']' right after '[' or '[^' is a literal member.
            if (i + 1 < len && p[i + 1] == '^') dst[o++] = p[++i];
            if (i + 1 < len && p[i + 1] == ']') dst[o++] = p[++i];
            continue;
        }
        if (ch == ']' && depth > 0 && --depth > 0) continue;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return o;
}

lc_status tok_regex_compile(pcre2_code **out, const char *pattern, size_t len, bool literal, const char *path) {
    int err;
    PCRE2_SIZE at;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    char *flat = literal ? NULL : malloc(len + 1);
    if (!literal && !flat) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
    size_t flat_len = flat ? flatten_nested_classes(flat, pattern, len) : 0;
    *out = pcre2_compile((PCRE2_SPTR)(flat ? flat : pattern), flat ? flat_len : len, opts, &err, &at, NULL);
    free(flat);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lc_error(LC_STATUS_INPUT, "%s: bad pattern \"%.80s\" at offset %zu: %s", path, pattern, (size_t)at,
                        (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); // optional speed-up; the interpreter is the fallback
    return LC_STATUS_OK;
}

static lc_status ranges_push(tok_ranges *r, size_t a, size_t b) {
    if (r->n + 2 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        size_t *v = realloc(r->v, cap * sizeof *v);
        if (!v) return lc_error(LC_STATUS_RUNTIME, "tokenizer: out of memory");
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = a;
    r->v[r->n++] = b;
    return LC_STATUS_OK;
}

static int match_once(const pcre2_code *re, const char *s, size_t n, size_t start, uint32_t opts,
                      pcre2_match_data *md) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, opts | PCRE2_NO_UTF_CHECK, md, NULL);
    // The JIT stack is small; deep backtracking on long whitespace runs falls back to the interpreter.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    return rc;
}

lc_status tok_regex_find_all(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, tok_ranges *r) {
    r->n = 0;
    size_t start = 0;
    while (start < n) {
        int rc = match_once(re, s, n, start, 0, md);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return lc_error(LC_STATUS_RUNTIME, "tokenizer: regex match failed (PCRE2 error %d)", rc);
        // rc == 0 only means the ovector was too small for the groups; the whole-match pair is set.
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me > ms) {
            lc_status st = ranges_push(r, ms, me);
            if (st) return st;
            start = me;
        } else {
            // Empty match (dropped anyway, as HF filters empty splits): step one character.
            start = ms + 1;
            while (start < n && ((unsigned char)s[start] & 0xC0) == 0x80) start++;
        }
    }
    return LC_STATUS_OK;
}

lc_status lc_tokenizer_load_dir(lc_tokenizer **out, const char *dir) {
    char json[4096], cfg[4096];
    lc_status st;
    *out = NULL;
    if (!lc_dir_exists(dir)) return lc_error(LC_STATUS_INPUT, "%s: not a model folder", dir);
    if ((st = lc_path_join(json, sizeof json, dir, "tokenizer.json")) ||
        (st = lc_path_join(cfg, sizeof cfg, dir, "tokenizer_config.json")))
        return st;
    if (!lc_file_exists(json)) return lc_error(LC_STATUS_INPUT, "%s: tokenizer.json is missing", dir);
    return lc_tokenizer_load(out, json, lc_file_exists(cfg) ? cfg : NULL);
}
