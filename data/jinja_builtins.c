// Jinja's filters, tests, globals and the Python methods templates call on
// strings and dicts, with Jinja2 3.1's behaviour and transformers' additions
// (raise_exception, strftime_now, tojson without HTML escaping). Case
// mapping covers ASCII, Latin-1, Greek and Cyrillic.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/jinja_internal.h"

typedef struct bargs {
    const jv *args;
    int nargs;
    const char **kwn;
    const jv *kwv;
    int nkw;
} bargs;

// Argument `pos` (positional index) or keyword `name`; def when absent.
static jv arg(const bargs *a, int pos, const char *name, jv def) {
    if (pos >= 0 && pos < a->nargs) return a->args[pos];
    for (int k = 0; k < a->nkw; k++)
        if (name && strcmp(a->kwn[k], name) == 0) return a->kwv[k];
    return def;
}

static bool want_str(jrender *r, jv v, const char *what) {
    if (v.t == JV_STR) return true;
    return jr_fail(r, "TypeError: %s expects a string, got '%s'", what, jv_type_name(v));
}

// --- UTF-8 characters ---

static uint32_t cp_at(const char *p, size_t n, size_t *i) {
    const unsigned char *s = (const unsigned char *)p;
    uint32_t c = s[*i];
    int k = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (c >= 0x80) c &= 0x3F >> k;
    (*i)++;
    for (int j = 0; j < k && *i < n; j++) c = (c << 6) | (s[(*i)++] & 0x3F);
    return c;
}

static size_t cp_put(uint32_t cp, char *o) {
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
static bool py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static uint32_t to_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) || (c >= 0x410 && c <= 0x42F))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

static uint32_t to_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) || (c >= 0x430 && c <= 0x44F))
        return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    return c;
}

static bool cased(uint32_t c) { return to_lower(c) != c || to_upper(c) != c; }

enum { CASE_LOWER, CASE_UPPER, CASE_CAPITALIZE, CASE_TITLE_METHOD, CASE_TITLE_FILTER };

static bool change_case(jrender *r, jv s, int mode, jv *out) {
    char *o = jarena_alloc(&r->arena, 2 * s.u.s.n + 1); // the mapped ranges keep their UTF-8 length; ß -> SS does not
    if (!o) return jr_oom(r);
    size_t i = 0, n = 0;
    bool prev_cased = false, word_start = true;
    while (i < s.u.s.n) {
        bool prev_was_cased = prev_cased, at_word_start = word_start;
        uint32_t c = cp_at(s.u.s.p, s.u.s.n, &i), m;
        switch (mode) {
        case CASE_LOWER: m = to_lower(c); break;
        case CASE_UPPER: m = to_upper(c); break;
        case CASE_CAPITALIZE: m = n == 0 ? to_upper(c) : to_lower(c); break;
        case CASE_TITLE_METHOD:
            m = prev_cased ? to_lower(c) : to_upper(c);
            prev_cased = cased(c);
            break;
        default: { // Jinja's title filter: words start after '-', whitespace, '(', '{', '[', '<'
            bool delim = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_space(c);
            m = word_start ? to_upper(c) : to_lower(c);
            word_start = delim;
        }
        }
        if (c == 0xDF && mode != CASE_LOWER) {
            bool up = mode == CASE_UPPER || (mode == CASE_CAPITALIZE && n == 0) ||
                      (mode == CASE_TITLE_METHOD && !prev_was_cased) || (mode == CASE_TITLE_FILTER && at_word_start);
            if (up) {
                memcpy(o + n, mode == CASE_UPPER ? "SS" : "Ss", 2);
                n += 2;
                continue;
            }
        }
        n += cp_put(m, o + n);
    }
    *out = jv_str(o, n);
    return true;
}

// --- strip / split ---

static bool in_chars(uint32_t c, jv chars) {
    if (chars.t != JV_STR) return py_space(c);
    for (size_t i = 0; i < chars.u.s.n;)
        if (cp_at(chars.u.s.p, chars.u.s.n, &i) == c) return true;
    return false;
}

static jv strip(jv s, jv chars, bool left, bool right) {
    size_t a = 0, b = s.u.s.n;
    if (left)
        while (a < b) {
            size_t i = a;
            if (!in_chars(cp_at(s.u.s.p, b, &i), chars)) break;
            a = i;
        }
    if (right)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s.u.s.p[k] & 0xC0) == 0x80) k--;
            size_t i = k;
            if (!in_chars(cp_at(s.u.s.p, b, &i), chars)) break;
            b = k;
        }
    return jv_str(s.u.s.p + a, b - a);
}

static bool split(jrender *r, jv s, jv sep, int64_t maxsplit, jv *out) {
    jlist *l = jlist_new(&r->arena, 0);
    if (!l) return jr_oom(r);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        while (true) {
            while (i < n) { // skip whitespace
                size_t j = i;
                if (!py_space(cp_at(p, n, &j))) break;
                i = j;
            }
            if (i >= n) break;
            size_t start = i;
            if (maxsplit >= 0 && (int64_t)l->n >= maxsplit) {
                // the rest, with trailing whitespace stripped
                jv rest = strip(jv_str(p + start, n - start), jv_none(), false, true);
                if (!jlist_push(&r->arena, l, rest)) return jr_oom(r);
                break;
            }
            while (i < n) {
                size_t j = i;
                if (py_space(cp_at(p, n, &j))) break;
                i = j;
            }
            if (!jlist_push(&r->arena, l, jv_str(p + start, i - start))) return jr_oom(r);
        }
    } else {
        if (!want_str(r, sep, "split")) return false;
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

static bool replace(jrender *r, jv s, jv old, jv new_, int64_t count, jv *out) {
    if (!want_str(r, old, "replace") || !want_str(r, new_, "replace")) return false;
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
            cp_at(s.u.s.p, s.u.s.n, &j);
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

static bool starts_ends(jrender *r, jv s, jv pre, bool ends, bool *res) {
    *res = false;
    if (pre.t == JV_LIST && pre.tuple) {
        for (size_t i = 0; i < pre.u.l->n && !*res; i++)
            if (!starts_ends(r, s, pre.u.l->items[i], ends, res)) return false;
        return true;
    }
    if (!want_str(r, pre, ends ? "endswith" : "startswith")) return false;
    if (pre.u.s.n > s.u.s.n) return true;
    *res = memcmp(s.u.s.p + (ends ? s.u.s.n - pre.u.s.n : 0), pre.u.s.p, pre.u.s.n) == 0;
    return true;
}

// --- helpers over sequences ---

static bool to_list(jrender *r, jv v, jlist **out) {
    if (v.t == JV_NONE) { // filters over none see nothing (Jinja's "if seq:")
        *out = jlist_new(&r->arena, 0);
        return *out || jr_oom(r);
    }
    return jr_iter(r, v, out);
}

// item.attr, with dotted paths ("a.b") and integer parts as Jinja's make_attrgetter does.
static bool attr_path(jrender *r, jv item, jv attr, jv *out) {
    if (attr.t == JV_INT) {
        if (item.t == JV_LIST) {
            int64_t n = (int64_t)item.u.l->n, i = attr.u.i < 0 ? attr.u.i + n : attr.u.i;
            *out = i >= 0 && i < n ? item.u.l->items[i] : jv_undef();
            return true;
        }
        *out = jv_undef();
        return true;
    }
    if (!want_str(r, attr, "attribute")) return false;
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

static jv fold_case(jrender *r, jv v, bool case_sensitive) {
    if (case_sensitive || v.t != JV_STR) return v;
    jv o;
    if (!change_case(r, v, CASE_LOWER, &o)) return v;
    return o;
}

static bool run_test(jrender *r, jv test, jv v, const jv *targs, int ntargs, bool *res) {
    if (test.t == JV_UNDEF || test.t == JV_NONE) {
        *res = jv_truthy(v);
        return true;
    }
    if (!want_str(r, test, "select")) return false;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(test.u.s.n < 63 ? test.u.s.n : 63), test.u.s.p);
    bool known;
    if (!jb_test(r, name, v, targs, ntargs, &known, res)) return false;
    return known || jr_fail(r, "TemplateRuntimeError: no test named '%s'", name);
}

static bool select_filter(jrender *r, jv in, const bargs *a, bool by_attr, bool keep, jv *out) {
    jlist *items;
    if (!to_list(r, in, &items)) return false;
    jlist *l = jlist_new(&r->arena, 0);
    if (!l) return jr_oom(r);
    int base = by_attr ? 1 : 0;
    jv attr = by_attr ? arg(a, 0, NULL, jv_undef()) : jv_undef();
    if (by_attr && attr.t == JV_UNDEF) return jr_fail(r, "TypeError: selectattr needs an attribute");
    jv test = arg(a, base, NULL, jv_undef());
    int ntargs = a->nargs - base - 1;
    const jv *targs = ntargs > 0 ? a->args + base + 1 : NULL;
    if (ntargs < 0) ntargs = 0;
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->items[i];
        if (by_attr && !attr_path(r, v, attr, &v)) return false;
        bool res;
        if (!run_test(r, test, v, targs, ntargs, &res)) return false;
        if (res == keep && !jlist_push(&r->arena, l, items->items[i])) return jr_oom(r);
    }
    *out = jv_list(l);
    return true;
}

static bool indent(jrender *r, jv s, jv width, bool first, bool blank, jv *out) {
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
    size_t n = s.u.s.n, i = 0, line = 0;
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
        if (ok && nline == 0 && first && !blank && empty) { // Jinja prefixes the first line whatever it holds
        }
        ok = ok && jbuf_put(&b, p + i, e - i);
        nline++;
        line = next;
        i = next;
        if (next > n) break;
    }
    (void)line;
    *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
    free(b.p);
    return (ok && out->t == JV_STR) || jr_oom(r);
}

static bool make_str(jrender *r, jv v, jv *out) {
    bool ok;
    *out = jr_str_value(r, v.t == JV_UNDEF ? jv_str("", 0) : v, &ok);
    return ok;
}

static bool tojson(jrender *r, jv v, const bargs *a, jv *out) {
    // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    bool ascii = jv_truthy(arg(a, 0, "ensure_ascii", jv_bool(false)));
    jv ind = arg(a, 1, "indent", jv_none());
    jv seps = arg(a, 2, "separators", jv_none());
    bool sort_keys = jv_truthy(arg(a, 3, "sort_keys", jv_bool(false)));
    const char *ip = NULL;
    size_t in = 0;
    char spaces[256];
    if (ind.t == JV_INT || ind.t == JV_BOOL) {
        int64_t w = ind.u.i < 0 ? 0 : ind.u.i;
        if (w > 255) return jr_fail(r, "tojson indent too large");
        memset(spaces, ' ', (size_t)w);
        ip = spaces;
        in = (size_t)w;
    } else if (ind.t == JV_STR) {
        ip = ind.u.s.p;
        in = ind.u.s.n;
    } else if (ind.t != JV_NONE)
        return jr_fail(r, "TypeError: tojson indent must be an integer or a string");
    char isep[64], ksep[64];
    snprintf(isep, sizeof isep, "%s", ip ? "," : ", ");
    snprintf(ksep, sizeof ksep, ": ");
    if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->items[0].t == JV_STR && seps.u.l->items[1].t == JV_STR) {
        snprintf(isep, sizeof isep, "%.*s", (int)seps.u.l->items[0].u.s.n, seps.u.l->items[0].u.s.p);
        snprintf(ksep, sizeof ksep, "%.*s", (int)seps.u.l->items[1].u.s.n, seps.u.l->items[1].u.s.p);
    }
    jbuf b = {.limit = 64u << 20};
    int rc = jv_write_json(&b, v, ip, in, 0, isep, ksep, sort_keys, ascii);
    if (rc) {
        free(b.p);
        if (rc < 0) return jr_oom(r);
        return jr_fail(r, "TypeError: Object of type %s is not JSON serializable", jv_type_name(v));
    }
    *out = jv_str_copy(&r->arena, b.p ? b.p : "", b.n);
    free(b.p);
    return out->t == JV_STR || jr_oom(r);
}

typedef struct sort_ctx {
    jrender *r;
    bool cs;
    jv attr;
    bool ok; // false once two values did not compare
} sort_ctx;

static int sort_cmp(sort_ctx *c, jv a, jv b) {
    if (c->attr.t != JV_UNDEF) {
        attr_path(c->r, a, c->attr, &a);
        attr_path(c->r, b, c->attr, &b);
    }
    a = fold_case(c->r, a, c->cs);
    b = fold_case(c->r, b, c->cs);
    if (jv_is_number(a) && jv_is_number(b)) return (jv_num(a) > jv_num(b)) - (jv_num(a) < jv_num(b));
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int k = memcmp(a.u.s.p, b.u.s.p, n);
        return k ? k : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    c->ok = false;
    return 0;
}

// Stable sort of a copy (insertion sort: lists in templates are short).
static bool sorted(jrender *r, jlist *items, bool reverse, bool cs, jv attr, jlist **out) {
    jlist *l = jlist_new(&r->arena, items->n);
    if (!l) return jr_oom(r);
    for (size_t i = 0; i < items->n; i++) jlist_push(&r->arena, l, items->items[i]);
    if (l->n > 10000) return jr_fail(r, "sort: too many items");
    sort_ctx c = {r, cs, attr, true};
    for (size_t i = 1; i < l->n; i++)
        for (size_t j = i; j > 0; j--) {
            int k = sort_cmp(&c, l->items[j - 1], l->items[j]);
            if (reverse ? k >= 0 : k <= 0) break;
            jv t = l->items[j];
            l->items[j] = l->items[j - 1];
            l->items[j - 1] = t;
        }
    if (!c.ok) return jr_fail(r, "TypeError: '<' not supported between these values");
    *out = l;
    return true;
}

bool jb_filter(jrender *r, const char *name, jv in, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
               jv *out) {
    bargs a = {args, nargs, kwn, kwv, nkw};
    jv s;
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (in.t) {
        case JV_STR: *out = jv_int((int64_t)jv_utf8_len(in.u.s.p, in.u.s.n)); return true;
        case JV_LIST: *out = jv_int((int64_t)in.u.l->n); return true;
        case JV_DICT: *out = jv_int((int64_t)in.u.d->n); return true;
        case JV_UNDEF: *out = jv_int(0); return true;
        default: return jr_fail(r, "TypeError: object of type '%s' has no len()", jv_type_name(in));
        }
    }
    if (!strcmp(name, "safe")) {
        *out = in;
        return true;
    }
    if (!strcmp(name, "string")) return make_str(r, in, out);
    if (!strcmp(name, "trim")) {
        if (!make_str(r, in, &s)) return false;
        *out = strip(s, arg(&a, 0, "chars", jv_none()), true, true);
        return true;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        if (!make_str(r, in, &s)) return false;
        int mode = name[0] == 'l' ? CASE_LOWER : name[0] == 'u' ? CASE_UPPER : name[0] == 'c' ? CASE_CAPITALIZE : CASE_TITLE_FILTER;
        return change_case(r, s, mode, out);
    }
    if (!strcmp(name, "replace")) {
        if (!make_str(r, in, &s)) return false;
        jv cnt = arg(&a, 2, "count", jv_none());
        return replace(r, s, arg(&a, 0, "old", jv_undef()), arg(&a, 1, "new", jv_undef()), cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv def = arg(&a, 0, "default_value", jv_str("", 0));
        bool boolean = jv_truthy(arg(&a, 1, "boolean", jv_bool(false)));
        *out = (in.t == JV_UNDEF || (boolean && !jv_truthy(in))) ? def : in;
        return true;
    }
    if (!strcmp(name, "tojson")) return tojson(r, in, &a, out);
    if (!strcmp(name, "indent")) {
        if (!make_str(r, in, &s)) return false;
        return indent(r, s, arg(&a, 0, "width", jv_int(4)), jv_truthy(arg(&a, 1, "first", jv_bool(false))),
                      jv_truthy(arg(&a, 2, "blank", jv_bool(false))), out);
    }
    if (!strcmp(name, "list") || !strcmp(name, "first") || !strcmp(name, "last") || !strcmp(name, "reverse") ||
        !strcmp(name, "unique") || !strcmp(name, "join") || !strcmp(name, "map") || !strcmp(name, "sort") ||
        !strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max")) {
        if (in.t == JV_STR && !strcmp(name, "reverse")) {
            jv parts[3] = {jv_none(), jv_none(), jv_int(-1)};
            (void)parts;
        }
        jlist *items;
        if (!strcmp(name, "list") || !strcmp(name, "first") || !strcmp(name, "last") || !strcmp(name, "reverse") ||
            !strcmp(name, "sort") || !strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max") ||
            !strcmp(name, "unique")) {
            if (!jr_iter(r, in, &items)) return false;
        } else if (!to_list(r, in, &items))
            return false;
        if (!strcmp(name, "list")) {
            jlist *l = jlist_new(&r->arena, items->n);
            if (!l) return jr_oom(r);
            for (size_t i = 0; i < items->n; i++) jlist_push(&r->arena, l, items->items[i]);
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "first")) {
            *out = items->n ? items->items[0] : jv_undef();
            return true;
        }
        if (!strcmp(name, "last")) {
            *out = items->n ? items->items[items->n - 1] : jv_undef();
            return true;
        }
        if (!strcmp(name, "reverse")) {
            if (in.t == JV_STR) {
                jbuf b = {0};
                bool ok = true;
                for (size_t i = items->n; ok && i > 0; i--) ok = jbuf_put(&b, items->items[i - 1].u.s.p, items->items[i - 1].u.s.n);
                *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
                free(b.p);
                return (ok && out->t == JV_STR) || jr_oom(r);
            }
            jlist *l = jlist_new(&r->arena, items->n);
            if (!l) return jr_oom(r);
            for (size_t i = items->n; i > 0; i--) jlist_push(&r->arena, l, items->items[i - 1]);
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "unique")) {
            bool cs = jv_truthy(arg(&a, 0, "case_sensitive", jv_bool(false)));
            jv attr = arg(&a, 1, "attribute", jv_undef());
            jlist *l = jlist_new(&r->arena, 0), *seen = jlist_new(&r->arena, 0);
            if (!l || !seen) return jr_oom(r);
            if (items->n > 10000) return jr_fail(r, "unique: too many items");
            for (size_t i = 0; i < items->n; i++) {
                jv k = items->items[i];
                if (attr.t != JV_UNDEF && !attr_path(r, k, attr, &k)) return false;
                k = fold_case(r, k, cs);
                bool dup = false;
                for (size_t j = 0; j < seen->n && !dup; j++) dup = jv_equal(seen->items[j], k);
                if (dup) continue;
                if (!jlist_push(&r->arena, seen, k) || !jlist_push(&r->arena, l, items->items[i])) return jr_oom(r);
            }
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "join")) {
            jv sep = arg(&a, 0, "d", jv_str("", 0));
            jv attr = arg(&a, 1, "attribute", jv_undef());
            if (!make_str(r, sep, &sep)) return false;
            jbuf b = {.limit = 64u << 20};
            bool ok = true;
            for (size_t i = 0; ok && i < items->n; i++) {
                jv v = items->items[i];
                if (attr.t != JV_UNDEF && !attr_path(r, v, attr, &v)) {
                    free(b.p);
                    return false;
                }
                if (i) ok = jbuf_put(&b, sep.u.s.p, sep.u.s.n);
                ok = ok && jv_write_str(&b, v);
            }
            *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
            free(b.p);
            return (ok && out->t == JV_STR) || jr_oom(r);
        }
        if (!strcmp(name, "map")) {
            jlist *l = jlist_new(&r->arena, items->n);
            if (!l) return jr_oom(r);
            jv attr = arg(&a, -1, "attribute", jv_undef());
            for (size_t i = 0; i < items->n; i++) {
                jv v = items->items[i];
                if (attr.t != JV_UNDEF) {
                    if (!attr_path(r, v, attr, &v)) return false;
                    if (v.t == JV_UNDEF) v = arg(&a, -1, "default", jv_undef());
                } else {
                    jv fname = arg(&a, 0, NULL, jv_undef());
                    if (!want_str(r, fname, "map")) return false;
                    char fn[64];
                    snprintf(fn, sizeof fn, "%.*s", (int)(fname.u.s.n < 63 ? fname.u.s.n : 63), fname.u.s.p);
                    if (!jb_filter(r, fn, v, args + 1, nargs - 1, kwn, kwv, nkw, &v)) return false;
                }
                jlist_push(&r->arena, l, v);
            }
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "sort")) {
            jlist *l;
            if (!sorted(r, items, jv_truthy(arg(&a, 0, "reverse", jv_bool(false))),
                        jv_truthy(arg(&a, 1, "case_sensitive", jv_bool(false))), arg(&a, 2, "attribute", jv_undef()), &l))
                return false;
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "min") || !strcmp(name, "max")) {
            jlist *l;
            if (!sorted(r, items, false, jv_truthy(arg(&a, 0, "case_sensitive", jv_bool(false))),
                        arg(&a, 1, "attribute", jv_undef()), &l))
                return false;
            *out = l->n == 0 ? jv_undef() : name[1] == 'i' ? l->items[0] : l->items[l->n - 1];
            return true;
        }
        // sum
        jv attr = arg(&a, 0, "attribute", jv_undef());
        jv acc = arg(&a, 1, "start", jv_int(0));
        for (size_t i = 0; i < items->n; i++) {
            jv v = items->items[i];
            if (attr.t != JV_UNDEF && !attr_path(r, v, attr, &v)) return false;
            if (!jv_is_number(v) || !jv_is_number(acc)) return jr_fail(r, "TypeError: sum of non-numbers");
            if (acc.t == JV_FLOAT || v.t == JV_FLOAT) acc = jv_float(jv_num(acc) + jv_num(v));
            else if (__builtin_add_overflow(acc.u.i, v.u.i, &acc.u.i)) return jr_fail(r, "integer overflow");
            else acc.t = JV_INT;
        }
        *out = acc;
        return true;
    }
    if (!strcmp(name, "items")) {
        if (in.t == JV_UNDEF) {
            *out = jv_list(jlist_new(&r->arena, 0));
            return out->u.l || jr_oom(r);
        }
        if (in.t != JV_DICT) return jr_fail(r, "TypeError: can only get item pairs from a mapping");
        return jb_call_method(r, in, "items", NULL, 0, NULL, NULL, 0, out);
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject")) return select_filter(r, in, &a, false, name[0] == 's', out);
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr")) return select_filter(r, in, &a, true, name[0] == 's', out);
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        bool is_int = name[0] == 'i';
        jv def = arg(&a, 0, "default", is_int ? jv_int(0) : jv_float(0));
        if (in.t == JV_UNDEF) return jr_fail(r, "UndefinedError: '%.*s' is undefined", (int)in.u.s.n, in.u.s.n ? in.u.s.p : "");
        if (jv_is_number(in)) {
            *out = is_int ? jv_int(in.t == JV_FLOAT ? (int64_t)in.u.f : in.u.i) : jv_float(jv_num(in));
            if (is_int && in.t == JV_FLOAT && !(fabs(in.u.f) < 9.2e18)) *out = def;
            return true;
        }
        if (in.t == JV_STR) {
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(in.u.s.n < 63 ? in.u.s.n : 63), in.u.s.p);
            char *end;
            double d = strtod(tmp, &end);
            while (*end == ' ' || *end == '\t' || *end == '\n') end++;
            if (end != tmp && !*end && in.u.s.n < 63) {
                *out = is_int ? jv_int((int64_t)d) : jv_float(d);
                return true;
            }
        }
        *out = def;
        return true;
    }
    if (!strcmp(name, "abs")) {
        if (!jv_is_number(in)) return jr_fail(r, "TypeError: bad operand type for abs(): '%s'", jv_type_name(in));
        *out = in.t == JV_FLOAT ? jv_float(fabs(in.u.f)) : jv_int(in.u.i < 0 ? -in.u.i : in.u.i);
        return true;
    }
    if (!strcmp(name, "round")) {
        if (!jv_is_number(in)) return jr_fail(r, "TypeError: round expects a number");
        jv prec = arg(&a, 0, "precision", jv_int(0));
        jv method = arg(&a, 1, "method", jv_str("common", 6));
        int64_t p = prec.t == JV_INT ? prec.u.i : 0;
        if (p < -300 || p > 300) return jr_fail(r, "round: precision out of range");
        bool common = !(method.t == JV_STR && ((method.u.s.n == 4 && !memcmp(method.u.s.p, "ceil", 4)) ||
                                               (method.u.s.n == 5 && !memcmp(method.u.s.p, "floor", 5))));
        if (common && in.t != JV_FLOAT && p >= 0) { // Python's round keeps an int an int
            *out = jv_int(in.u.i);
            return true;
        }
        if (common) { // correctly rounded, halves to even, as Python's round(x, n)
            char buf[400];
            if (p >= 0) snprintf(buf, sizeof buf, "%.*f", (int)p, jv_num(in));
            else {
                double m = pow(10, (double)-p);
                snprintf(buf, sizeof buf, "%.0f", jv_num(in) / m);
                *out = jv_float(strtod(buf, NULL) * m);
                return true;
            }
            *out = jv_float(strtod(buf, NULL));
            return true;
        }
        double m = pow(10, (double)p), x = jv_num(in) * m;
        x = method.u.s.p[0] == 'c' ? ceil(x) : floor(x);
        *out = jv_float(x / m);
        return true;
    }
    if (!strcmp(name, "dictsort")) {
        if (in.t != JV_DICT || in.u.d->kind != JDICT_PLAIN) return jr_fail(r, "TypeError: dictsort expects a mapping");
        bool cs = jv_truthy(arg(&a, 0, "case_sensitive", jv_bool(false)));
        jv by = arg(&a, 1, "by", jv_str("key", 3));
        bool rev = jv_truthy(arg(&a, 2, "reverse", jv_bool(false)));
        jv pairs;
        if (!jb_call_method(r, in, "items", NULL, 0, NULL, NULL, 0, &pairs)) return false;
        jlist *l;
        bool by_value = by.t == JV_STR && by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5);
        if (!sorted(r, pairs.u.l, rev, cs, jv_int(by_value ? 1 : 0), &l)) return false;
        *out = jv_list(l);
        return true;
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        if (!make_str(r, in, &s)) return false;
        jbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < s.u.s.n; i++) {
            char c = s.u.s.p[i];
            const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
            ok = e ? jbuf_puts(&b, e) : jbuf_put(&b, &c, 1);
        }
        *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
        free(b.p);
        return (ok && out->t == JV_STR) || jr_oom(r);
    }
    return jr_fail(r, "TemplateAssertionError: no filter named '%s'", name);
}

bool jb_test(jrender *r, const char *name, jv v, const jv *args, int nargs, bool *known, bool *res) {
    *known = true;
    jv x = nargs > 0 ? args[0] : jv_undef();
    if (!strcmp(name, "defined")) *res = v.t != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *res = v.t == JV_UNDEF;
    else if (!strcmp(name, "none")) *res = v.t == JV_NONE;
    else if (!strcmp(name, "string")) *res = v.t == JV_STR;
    else if (!strcmp(name, "mapping")) *res = v.t == JV_DICT && v.u.d->kind == JDICT_PLAIN;
    else if (!strcmp(name, "iterable")) *res = v.t == JV_STR || v.t == JV_LIST || v.t == JV_UNDEF || (v.t == JV_DICT && v.u.d->kind == JDICT_PLAIN);
    else if (!strcmp(name, "sequence")) *res = v.t == JV_STR || v.t == JV_LIST || v.t == JV_UNDEF || (v.t == JV_DICT && v.u.d->kind == JDICT_PLAIN);
    else if (!strcmp(name, "number")) *res = jv_is_number(v);
    else if (!strcmp(name, "integer")) *res = v.t == JV_INT;
    else if (!strcmp(name, "float")) *res = v.t == JV_FLOAT;
    else if (!strcmp(name, "boolean")) *res = v.t == JV_BOOL;
    else if (!strcmp(name, "true")) *res = v.t == JV_BOOL && v.u.i;
    else if (!strcmp(name, "false")) *res = v.t == JV_BOOL && !v.u.i;
    else if (!strcmp(name, "callable")) *res = v.t == JV_FUNC;
    else if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "sameas"))
        *res = !strcmp(name, "sameas") ? (v.t == x.t && jv_equal(v, x) && (v.t == JV_NONE || v.t == JV_BOOL || v.t == JV_UNDEF || (v.t == JV_STR && v.u.s.p == x.u.s.p) || v.t == JV_INT)) : jv_equal(v, x);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *res = !jv_equal(v, x);
    else if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "le") || !strcmp(name, "<=") || !strcmp(name, "gt") ||
             !strcmp(name, ">") || !strcmp(name, "ge") || !strcmp(name, ">=") || !strcmp(name, "greaterthan") ||
             !strcmp(name, "lessthan")) {
        int c;
        if (jv_is_number(v) && jv_is_number(x)) c = (jv_num(v) > jv_num(x)) - (jv_num(v) < jv_num(x));
        else if (v.t == JV_STR && x.t == JV_STR) {
            size_t n = v.u.s.n < x.u.s.n ? v.u.s.n : x.u.s.n;
            c = memcmp(v.u.s.p, x.u.s.p, n);
            if (!c) c = (v.u.s.n > x.u.s.n) - (v.u.s.n < x.u.s.n);
        } else
            return jr_fail(r, "TypeError: '<' not supported between instances of '%s' and '%s'", jv_type_name(v), jv_type_name(x));
        bool lt = name[0] == 'l' || name[0] == '<';
        bool eq = !strcmp(name, "le") || !strcmp(name, "<=") || !strcmp(name, "ge") || !strcmp(name, ">=");
        *res = lt ? (eq ? c <= 0 : c < 0) : (eq ? c >= 0 : c > 0);
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.t != JV_INT && v.t != JV_BOOL) return jr_fail(r, "TypeError: %s expects an integer", name);
        if (name[0] == 'd') {
            if (x.t != JV_INT || x.u.i == 0) return jr_fail(r, "divisibleby expects a nonzero integer");
            *res = v.u.i % x.u.i == 0;
        } else
            *res = (v.u.i % 2 != 0) == (name[0] == 'o');
    } else if (!strcmp(name, "in")) {
        *res = false;
        if (x.t == JV_STR && v.t == JV_STR) {
            for (size_t i = 0; !*res && i + v.u.s.n <= x.u.s.n; i++) *res = memcmp(x.u.s.p + i, v.u.s.p, v.u.s.n) == 0;
        } else if (x.t == JV_LIST) {
            for (size_t i = 0; !*res && i < x.u.l->n; i++) *res = jv_equal(x.u.l->items[i], v);
        } else if (x.t == JV_DICT) {
            for (size_t i = 0; !*res && i < x.u.d->n; i++) *res = jv_equal(x.u.d->keys[i], v);
        } else
            return jr_fail(r, "TypeError: 'in' needs a container");
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.t != JV_STR) *res = false;
        else {
            jv o;
            if (!change_case(r, v, name[0] == 'l' ? CASE_LOWER : CASE_UPPER, &o)) return false;
            bool any = false;
            for (size_t i = 0; i < v.u.s.n;) any |= cased(cp_at(v.u.s.p, v.u.s.n, &i));
            *res = any && jv_equal(o, v);
        }
    } else
        *known = false;
    return true;
}

static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper",
                                          "lower", "title", "capitalize", "replace", "find", "count", "join", "isdigit",
                                          "isalpha", "isspace", "isupper", "islower", "splitlines", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const MUTATORS[] = {"append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault",
                                       "popitem", "sort", "reverse", NULL};

static bool in_set(const char *const *set, const char *name, size_t n) {
    for (; *set; set++)
        if (strlen(*set) == n && memcmp(*set, name, n) == 0) return true;
    return false;
}

bool jb_has_method(jv self, const char *name, size_t n) {
    switch (self.t) {
    case JV_STR: return in_set(STR_METHODS, name, n);
    case JV_LIST: return in_set(MUTATORS, name, n);
    case JV_DICT:
        if (self.u.d->kind == JDICT_LOOP) return n == 5 && !memcmp(name, "cycle", 5);
        if (self.u.d->kind != JDICT_PLAIN) return false;
        return in_set(DICT_METHODS, name, n) || in_set(MUTATORS, name, n);
    default: return false;
    }
}

static bool str_pred(jv s, const char *name) {
    bool any = false, all = true, cased_any = false;
    for (size_t i = 0; i < s.u.s.n;) {
        uint32_t c = cp_at(s.u.s.p, s.u.s.n, &i);
        any = true;
        if (!strcmp(name, "isdigit")) all &= c >= '0' && c <= '9';
        else if (!strcmp(name, "isalpha")) all &= cased(c);
        else if (!strcmp(name, "isspace")) all &= py_space(c);
        else if (!strcmp(name, "isupper")) {
            if (cased(c)) cased_any = true, all &= to_upper(c) == c;
        } else if (cased(c))
            cased_any = true, all &= to_lower(c) == c;
    }
    if (!strcmp(name, "isupper") || !strcmp(name, "islower")) return cased_any && all;
    return any && all;
}

bool jb_call_method(jrender *r, jv self, const char *name, const jv *args, int nargs, const char **kwn, const jv *kwv,
                    int nkw, jv *out) {
    bargs a = {args, nargs, kwn, kwv, nkw};
    if (in_set(MUTATORS, name, strlen(name)) && !(self.t == JV_DICT && self.u.d->kind == JDICT_LOOP))
        return jr_fail(r, "SecurityError: access to attribute '%s' of '%s' object is unsafe.", name, jv_type_name(self));
    if (self.t == JV_DICT && self.u.d->kind == JDICT_LOOP) { // loop.cycle
        const jv *idx = jdict_get(self.u.d, "index0", 6);
        if (nargs == 0) return jr_fail(r, "TypeError: no items for cycling given");
        *out = args[idx ? idx->u.i % nargs : 0];
        return true;
    }
    if (self.t == JV_DICT) {
        const jdict *d = self.u.d;
        if (!strcmp(name, "get")) {
            jv key = arg(&a, 0, NULL, jv_undef()), def = arg(&a, 1, NULL, jv_none());
            for (size_t i = 0; i < d->n; i++)
                if (jv_equal(d->keys[i], key)) {
                    *out = d->vals[i];
                    return true;
                }
            *out = def;
            return true;
        }
        jlist *l = jlist_new(&r->arena, d->n);
        if (!l) return jr_oom(r);
        for (size_t i = 0; i < d->n; i++) {
            jv v;
            if (!strcmp(name, "keys")) v = d->keys[i];
            else if (!strcmp(name, "values")) v = d->vals[i];
            else {
                jlist *pair = jlist_new(&r->arena, 2);
                if (!pair) return jr_oom(r);
                jlist_push(&r->arena, pair, d->keys[i]);
                jlist_push(&r->arena, pair, d->vals[i]);
                v = jv_list(pair);
                v.tuple = 1;
            }
            jlist_push(&r->arena, l, v);
        }
        *out = jv_list(l);
        return true;
    }
    // strings
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        jv chars = arg(&a, 0, NULL, jv_none());
        if (chars.t != JV_NONE && !want_str(r, chars, name)) return false;
        *out = strip(self, chars, name[0] != 'r', name[0] != 'l');
        return true;
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        jv max = arg(&a, 1, "maxsplit", jv_int(-1));
        jv sep = arg(&a, 0, "sep", jv_none());
        if (name[0] == 'r' && max.t == JV_INT && max.u.i >= 0) {
            // split fully, then join the leading parts back: the same as rsplit for a separator
            if (sep.t != JV_STR) return jr_fail(r, "rsplit with maxsplit needs a separator here");
            jv all;
            if (!split(r, self, sep, -1, &all)) return false;
            size_t n = all.u.l->n;
            if ((int64_t)n - 1 <= max.u.i) {
                *out = all;
                return true;
            }
            size_t keep = n - (size_t)max.u.i; // parts 0..keep-1 become one
            const char *first = all.u.l->items[0].u.s.p;
            const jv *lastkept = &all.u.l->items[keep - 1];
            jlist *l = jlist_new(&r->arena, (size_t)max.u.i + 1);
            if (!l) return jr_oom(r);
            jlist_push(&r->arena, l, jv_str(first, (size_t)(lastkept->u.s.p + lastkept->u.s.n - first)));
            for (size_t i = keep; i < n; i++) jlist_push(&r->arena, l, all.u.l->items[i]);
            *out = jv_list(l);
            return true;
        }
        return split(r, self, sep, max.t == JV_INT ? max.u.i : -1, out);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        bool res;
        if (nargs != 1) return jr_fail(r, "TypeError: %s takes one argument here", name);
        if (!starts_ends(r, self, args[0], name[0] == 'e', &res)) return false;
        *out = jv_bool(res);
        return true;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize"))
        return change_case(r, self, name[0] == 'u' ? CASE_UPPER : name[0] == 'l' ? CASE_LOWER : name[0] == 't' ? CASE_TITLE_METHOD : CASE_CAPITALIZE, out);
    if (!strcmp(name, "replace")) {
        jv cnt = arg(&a, 2, "count", jv_int(-1));
        return replace(r, self, arg(&a, 0, NULL, jv_undef()), arg(&a, 1, NULL, jv_undef()), cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (!strcmp(name, "find") || !strcmp(name, "count")) {
        jv sub = arg(&a, 0, NULL, jv_undef());
        if (!want_str(r, sub, name)) return false;
        int64_t cnt = 0, at = -1;
        for (size_t i = 0; i + sub.u.s.n <= self.u.s.n;) {
            if (memcmp(self.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0) {
                if (at < 0) at = (int64_t)jv_utf8_len(self.u.s.p, i);
                cnt++;
                i += sub.u.s.n ? sub.u.s.n : 1;
            } else
                i++;
        }
        *out = jv_int(name[0] == 'f' ? at : cnt);
        return true;
    }
    if (!strcmp(name, "join")) {
        jlist *items;
        if (!jr_iter(r, arg(&a, 0, NULL, jv_undef()), &items)) return false;
        jbuf b = {.limit = 64u << 20};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (items->items[i].t != JV_STR) {
                free(b.p);
                return jr_fail(r, "TypeError: sequence item %zu: expected str instance, %s found", i, jv_type_name(items->items[i]));
            }
            if (i) ok = jbuf_put(&b, self.u.s.p, self.u.s.n);
            ok = ok && jbuf_put(&b, items->items[i].u.s.p, items->items[i].u.s.n);
        }
        *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
        free(b.p);
        return (ok && out->t == JV_STR) || jr_oom(r);
    }
    if (!strcmp(name, "splitlines")) {
        jv parts;
        if (!indent(r, self, jv_int(0), false, false, &parts)) return false;
        jlist *l = jlist_new(&r->arena, 0);
        if (!l) return jr_oom(r);
        // lines of self, without their ends (the indent pass normalized them to \n)
        const char *p = parts.u.s.p;
        size_t n = parts.u.s.n, s = 0;
        for (size_t i = 0; i <= n; i++)
            if (i == n || p[i] == '\n') {
                if (i < n || i > s) jlist_push(&r->arena, l, jv_str(p + s, i - s));
                s = i + 1;
            }
        *out = jv_list(l);
        return true;
    }
    *out = jv_bool(str_pred(self, name));
    return true;
}

static const char *const BUILTINS[] = {"range", "namespace", "dict", "raise_exception", "strftime_now", NULL};

bool jb_is_builtin(const char *name, size_t n) { return in_set(BUILTINS, name, n); }

bool jb_call_builtin(jrender *r, const char *name, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
                     jv *out) {
    if (!strcmp(name, "raise_exception")) {
        jv msg = nargs > 0 ? args[0] : jv_str("", 0);
        bool ok;
        msg = jr_str_value(r, msg, &ok);
        if (!ok) return false;
        return jr_fail(r, "%.*s", (int)(msg.u.s.n > 300 ? 300 : msg.u.s.n), msg.u.s.p);
    }
    if (!strcmp(name, "strftime_now")) {
        if (nargs != 1 || args[0].t != JV_STR) return jr_fail(r, "TypeError: strftime_now takes a format string");
        char fmt[256], buf[512];
        snprintf(fmt, sizeof fmt, "%.*s", (int)(args[0].u.s.n < 255 ? args[0].u.s.n : 255), args[0].u.s.p);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof buf, fmt, &tm);
        *out = jv_str_copy(&r->arena, buf, n);
        return out->t == JV_STR || jr_oom(r);
    }
    if (!strcmp(name, "range")) {
        int64_t v[3] = {0, 0, 1};
        if (nargs < 1 || nargs > 3 || nkw) return jr_fail(r, "TypeError: range expects 1 to 3 integers");
        for (int i = 0; i < nargs; i++) {
            if (args[i].t != JV_INT && args[i].t != JV_BOOL) return jr_fail(r, "TypeError: range expects integers");
            v[nargs == 1 ? 1 : i] = args[i].u.i;
        }
        if (v[2] == 0) return jr_fail(r, "ValueError: range() arg 3 must not be zero");
        jlist *l = jlist_new(&r->arena, 0);
        if (!l) return jr_oom(r);
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (l->n >= 100000) return jr_fail(r, "OverflowError: range too big, maximum size for range is 100000");
            if (!jlist_push(&r->arena, l, jv_int(i))) return jr_oom(r);
        }
        *out = jv_list(l);
        return true;
    }
    // namespace(...) and dict(...): keyword arguments, after an optional mapping
    jdict *d = jdict_new(&r->arena, name[0] == 'n' ? JDICT_NAMESPACE : JDICT_PLAIN);
    if (!d) return jr_oom(r);
    if (nargs > 1) return jr_fail(r, "TypeError: %s expected at most 1 positional argument", name);
    if (nargs == 1) {
        if (args[0].t != JV_DICT) return jr_fail(r, "TypeError: %s expects a mapping", name);
        for (size_t i = 0; i < args[0].u.d->n; i++)
            if (!jdict_set(&r->arena, d, args[0].u.d->keys[i], args[0].u.d->vals[i])) return jr_oom(r);
    }
    for (int k = 0; k < nkw; k++)
        if (!jdict_set(&r->arena, d, jv_str(kwn[k], strlen(kwn[k])), kwv[k])) return jr_oom(r);
    *out = jv_dict(d);
    return true;
}
