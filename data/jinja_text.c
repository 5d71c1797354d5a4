// The Python string operations Jinja templates use (case mapping over
// ASCII, Latin-1, Greek and Cyrillic; strip/split/replace with Python's
// whitespace; startswith/endswith), attribute paths and indent, shared by
// the filters and the methods; and argument lookup for both.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_internal.h"

// Argument `pos` (positional index) or keyword `name`; def when absent.
jv jt_arg(const bargs *a, int pos, const char *name, jv def) {
    if (pos >= 0 && pos < a->nargs) return a->args[pos];
    for (int k = 0; k < a->nkw; k++)
        if (name && strcmp(a->kwn[k], name) == 0) return a->kwv[k];
    return def;
}

bool jt_want_str(jrender *r, jv v, const char *what) {
    if (v.t == JV_STR) return true;
    return jr_fail(r, "TypeError: %s expects a string, got '%s'", what, jv_type_name(v));
}

// --- UTF-8 characters ---

uint32_t jt_cp_at(const char *p, size_t n, size_t *i) {
    const unsigned char *s = (const unsigned char *)p;
    uint32_t c = s[*i];
    int k = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (c >= 0x80) c &= 0x3F >> k;
    (*i)++;
    for (int j = 0; j < k && *i < n; j++) c = (c << 6) | (s[(*i)++] & 0x3F);
    return c;
}

size_t jt_cp_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Python's str.isspace.
bool jt_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Greek capitals with tonos and their small letters (U+0386..U+038F).
static const uint16_t tonos_upper[] = {0x386, 0x388, 0x389, 0x38A, 0x38C, 0x38E, 0x38F};
static const uint16_t tonos_lower[] = {0x3AC, 0x3AD, 0x3AE, 0x3AF, 0x3CC, 0x3CD, 0x3CE};

uint32_t jt_lower(uint32_t c) {
    if (c == 0x178) return 0xFF; // Ÿ
    for (int k = 0; k < 7; k++)
        if (c == tonos_upper[k]) return tonos_lower[k];
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) || (c >= 0x410 && c <= 0x42F))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

uint32_t jt_upper(uint32_t c) {
    for (int k = 0; k < 7; k++)
        if (c == tonos_lower[k]) return tonos_upper[k];
    if (c == 0xFF) return 0x178; // ÿ
    if (c == 0xB5) return 0x39C; // µ
    if (c == 0x3C2) return 0x3A3; // ς
    if (c >= 'a' && c <= 'z') return c - 32;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) || (c >= 0x430 && c <= 0x44F))
        return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    return c;
}

bool jt_cased(uint32_t c) { return c == 0xDF || jt_lower(c) != c || jt_upper(c) != c; } // ß is a cased letter

// Unicode's case-ignorable characters that final sigma looks through (the
// common ones: apostrophes, periods, colons, combining accents, soft hyphen).
static bool case_ignorable(uint32_t c) {
    return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xAD || c == 0xB7 || c == 0x2019 ||
           c == 0x2018 || (c >= 0x300 && c <= 0x36F) || c == 0x387;
}

bool jt_change_case(jrender *r, jv s, int mode, jv *out) {
    char *o = jarena_alloc(&r->arena, 2 * s.u.s.n + 1); // the mapped ranges keep their UTF-8 length; ß -> SS does not
    if (!o) return jr_oom(r);
    size_t i = 0, n = 0;
    bool prev_cased = false, word_start = true, prev_char_cased = false;
    while (i < s.u.s.n) {
        bool prev_was_cased = prev_cased, at_word_start = word_start;
        uint32_t c = jt_cp_at(s.u.s.p, s.u.s.n, &i), m;
        switch (mode) {
        case CASE_LOWER: m = jt_lower(c); break;
        case CASE_UPPER: m = jt_upper(c); break;
        case CASE_CAPITALIZE: m = n == 0 ? jt_upper(c) : jt_lower(c); break;
        case CASE_TITLE_METHOD:
            m = prev_cased ? jt_lower(c) : jt_upper(c);
            prev_cased = jt_cased(c);
            break;
        default: { // Jinja's title filter: words start after '-', whitespace, '(', '{', '[', '<'
            bool delim = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || jt_space(c);
            m = word_start ? jt_upper(c) : jt_lower(c);
            word_start = delim;
        }
        }
        if (m == 0x3C3 && c == 0x3A3) { // Σ lowered at the end of a word is ς, as Python does
            size_t j = i;
            uint32_t next = 0;
            while (j < s.u.s.n && case_ignorable(next = jt_cp_at(s.u.s.p, s.u.s.n, &j))) next = 0;
            if (prev_char_cased && !(next && jt_cased(next))) m = 0x3C2;
        }
        if (!case_ignorable(c)) prev_char_cased = jt_cased(c);
        if (c == 0xDF && mode != CASE_LOWER) {
            bool up = mode == CASE_UPPER || (mode == CASE_CAPITALIZE && n == 0) ||
                      (mode == CASE_TITLE_METHOD && !prev_was_cased) || (mode == CASE_TITLE_FILTER && at_word_start);
            if (up) {
                // Jinja's title filter upper()s a word's first character; str.title and capitalize titlecase it
                memcpy(o + n, mode == CASE_UPPER || mode == CASE_TITLE_FILTER ? "SS" : "Ss", 2);
                n += 2;
                continue;
            }
        }
        n += jt_cp_put(m, o + n);
    }
    *out = jv_str(o, n);
    return true;
}

// --- strip / split ---

static bool in_chars(uint32_t c, jv chars) {
    if (chars.t != JV_STR) return jt_space(c);
    for (size_t i = 0; i < chars.u.s.n;)
        if (jt_cp_at(chars.u.s.p, chars.u.s.n, &i) == c) return true;
    return false;
}

jv jt_strip(jv s, jv chars, bool left, bool right) {
    size_t a = 0, b = s.u.s.n;
    if (left)
        while (a < b) {
            size_t i = a;
            if (!in_chars(jt_cp_at(s.u.s.p, b, &i), chars)) break;
            a = i;
        }
    if (right)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s.u.s.p[k] & 0xC0) == 0x80) k--;
            size_t i = k;
            if (!in_chars(jt_cp_at(s.u.s.p, b, &i), chars)) break;
            b = k;
        }
    return jv_str(s.u.s.p + a, b - a);
}

bool jt_split(jrender *r, jv s, jv sep, int64_t maxsplit, jv *out) {
    jlist *l = jlist_new(&r->arena, 0);
    if (!l) return jr_oom(r);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        while (true) {
            while (i < n) { // skip whitespace
                size_t j = i;
                if (!jt_space(jt_cp_at(p, n, &j))) break;
                i = j;
            }
            if (i >= n) break;
            size_t start = i;
            if (maxsplit >= 0 && (int64_t)l->n >= maxsplit) {
                // the rest, with trailing whitespace stripped
                jv rest = jt_strip(jv_str(p + start, n - start), jv_none(), false, true);
                if (!jlist_push(&r->arena, l, rest)) return jr_oom(r);
                break;
            }
            while (i < n) {
                size_t j = i;
                if (jt_space(jt_cp_at(p, n, &j))) break;
                i = j;
            }
            if (!jlist_push(&r->arena, l, jv_str(p + start, i - start))) return jr_oom(r);
        }
    } else {
        if (!jt_want_str(r, sep, "split")) return false;
        if (sep.u.s.n == 0) return jr_fail(r, "ValueError: empty separator");
        size_t start = 0;
        while (maxsplit < 0 || (int64_t)l->n < maxsplit) {
            const char *hit = NULL;
            for (size_t k = start; k + sep.u.s.n <= n; k++)
                if (memcmp(p + k, sep.u.s.p, sep.u.s.n) == 0) {
                    hit = p + k;
                    break;
                }
            if (!hit) break;
            if (!jlist_push(&r->arena, l, jv_str(p + start, (size_t)(hit - p) - start))) return jr_oom(r);
            start = (size_t)(hit - p) + sep.u.s.n;
        }
        if (!jlist_push(&r->arena, l, jv_str(p + start, n - start))) return jr_oom(r);
    }
    *out = jv_list(l);
    return true;
}

bool jt_replace(jrender *r, jv s, jv old, jv new_, int64_t count, jv *out) {
    if (!jt_want_str(r, old, "replace") || !jt_want_str(r, new_, "replace")) return false;
    jbuf b = {.limit = 64u << 20};
    bool ok = true;
    size_t i = 0;
    int64_t done = 0;
    if (old.u.s.n == 0) { // Python inserts new between every character
        size_t k = 0;
        while (ok && k <= s.u.s.n) {
            if (count < 0 || done < count) {
                ok = jbuf_put(&b, new_.u.s.p, new_.u.s.n);
                done++;
            }
            if (k == s.u.s.n) break;
            size_t j = k;
            jt_cp_at(s.u.s.p, s.u.s.n, &j);
            ok = ok && jbuf_put(&b, s.u.s.p + k, j - k);
            k = j;
        }
    } else {
        while (ok && i < s.u.s.n) {
            if ((count < 0 || done < count) && i + old.u.s.n <= s.u.s.n && memcmp(s.u.s.p + i, old.u.s.p, old.u.s.n) == 0) {
                ok = jbuf_put(&b, new_.u.s.p, new_.u.s.n);
                i += old.u.s.n;
                done++;
            } else
                ok = jbuf_put(&b, s.u.s.p + i++, 1);
        }
    }
    *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
    free(b.p);
    return (ok && out->t == JV_STR) || jr_oom(r);
}

bool jt_starts_ends(jrender *r, jv s, jv pre, bool ends, bool *res) {
    *res = false;
    if (pre.t == JV_LIST && pre.tuple) {
        for (size_t i = 0; i < pre.u.l->n && !*res; i++)
            if (!jt_starts_ends(r, s, pre.u.l->items[i], ends, res)) return false;
        return true;
    }
    if (!jt_want_str(r, pre, ends ? "endswith" : "startswith")) return false;
    if (pre.u.s.n > s.u.s.n) return true;
    *res = memcmp(s.u.s.p + (ends ? s.u.s.n - pre.u.s.n : 0), pre.u.s.p, pre.u.s.n) == 0;
    return true;
}

// item.attr, with dotted paths ("a.b") and integer parts as Jinja's make_attrgetter does.
bool jt_attr_path(jrender *r, jv item, jv attr, jv *out) {
    if (attr.t == JV_INT) {
        if (item.t == JV_LIST) {
            int64_t n = (int64_t)item.u.l->n, i = attr.u.i < 0 ? attr.u.i + n : attr.u.i;
            *out = i >= 0 && i < n ? item.u.l->items[i] : jv_undef();
            return true;
        }
        *out = jv_undef();
        return true;
    }
    if (!jt_want_str(r, attr, "attribute")) return false;
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    jv cur = item;
    while (true) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (cur.t == JV_DICT) {
            const jv *v = jdict_get(cur.u.d, p, n);
            cur = v ? *v : jv_undef();
        } else if (cur.t == JV_LIST && n > 0 && p[0] >= '0' && p[0] <= '9') {
            size_t i = (size_t)strtoul(p, NULL, 10);
            cur = i < cur.u.l->n ? cur.u.l->items[i] : jv_undef();
        } else
            cur = jv_undef();
        if (!dot) break;
        p = dot + 1;
    }
    *out = cur;
    return true;
}

bool jt_indent(jrender *r, jv s, jv width, bool first, bool blank, jv *out) {
    jv ind;
    if (width.t == JV_STR) ind = width;
    else {
        int64_t w = width.t == JV_INT ? width.u.i : 4;
        if (w < 0) w = 0;
        if (w > 4096) return jr_fail(r, "indent width too large");
        char *p = jarena_alloc(&r->arena, (size_t)w + 1);
        if (!p) return jr_oom(r);
        memset(p, ' ', (size_t)w);
        ind = jv_str(p, (size_t)w);
    }
    // s + "\n", split into lines as str.splitlines does
    jbuf b = {.limit = 64u << 20};
    bool ok = true;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int nline = 0;
    while (ok && i <= n) {
        // find line end (the appended "\n" ends the last line)
        size_t e = i, next;
        while (e < n) {
            unsigned char c = (unsigned char)p[e];
            if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1E)) break;
            if (c == 0xC2 && e + 1 < n && (unsigned char)p[e + 1] == 0x85) break;
            if (c == 0xE2 && e + 2 < n && (unsigned char)p[e + 1] == 0x80 &&
                ((unsigned char)p[e + 2] == 0xA8 || (unsigned char)p[e + 2] == 0xA9))
                break;
            e++;
        }
        if (e >= n) next = n + 1;
        else if (p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') next = e + 2;
        else if ((unsigned char)p[e] == 0xC2) next = e + 2;
        else if ((unsigned char)p[e] == 0xE2) next = e + 3;
        else next = e + 1;
        bool empty = e == i;
        if (nline > 0) ok = jbuf_put(&b, "\n", 1);
        if (ok && (nline > 0 || first) && (blank || !empty)) ok = jbuf_put(&b, ind.u.s.p, ind.u.s.n);
        ok = ok && jbuf_put(&b, p + i, e - i);
        nline++;
        i = next;
        if (next > n) break;
    }
    *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
    free(b.p);
    return (ok && out->t == JV_STR) || jr_oom(r);
}

bool jt_escape(jrender *r, jv s, jv *out) {
    jbuf b = {.limit = 64u << 20};
    bool ok = true;
    for (size_t i = 0; ok && i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
        ok = e ? jbuf_puts(&b, e) : jbuf_put(&b, &c, 1);
    }
    *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
    free(b.p);
    if (!ok || out->t != JV_STR) return jr_oom(r);
    *out = jv_markup(*out, true);
    return true;
}
