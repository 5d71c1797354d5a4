// Jinja's filters and tests, with Jinja2 3.1's behaviour and transformers'
// tojson (json.dumps without HTML escaping).
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/jinja_internal.h"

static bool to_list(jrender *r, jv v, jlist **out) {
    if (v.t == JV_NONE) { // filters over none see nothing (Jinja's "if seq:")
        *out = jlist_new(&r->arena, 0);
        return *out || jr_oom(r);
    }
    return jr_iter(r, v, out);
}

static jv fold_case(jrender *r, jv v, bool case_sensitive) {
    if (case_sensitive || v.t != JV_STR) return v;
    jv o;
    if (!jt_change_case(r, v, CASE_LOWER, &o)) return v;
    return o;
}

static bool run_test(jrender *r, jv test, jv v, const jv *targs, int ntargs, bool *res) {
    if (test.t == JV_UNDEF || test.t == JV_NONE) {
        *res = jv_truthy(v);
        return true;
    }
    if (!jt_want_str(r, test, "select")) return false;
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
    jv attr = by_attr ? jt_arg(a, 0, NULL, jv_undef()) : jv_undef();
    if (by_attr && attr.t == JV_UNDEF) return jr_fail(r, "TypeError: selectattr needs an attribute");
    jv test = jt_arg(a, base, NULL, jv_undef());
    int ntargs = a->nargs - base - 1;
    const jv *targs = ntargs > 0 ? a->args + base + 1 : NULL;
    if (ntargs < 0) ntargs = 0;
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->items[i];
        if (by_attr && !jt_attr_path(r, v, attr, &v)) return false;
        bool res;
        if (!run_test(r, test, v, targs, ntargs, &res)) return false;
        if (res == keep && !jlist_push(&r->arena, l, items->items[i])) return jr_oom(r);
    }
    *out = jv_list(l);
    return true;
}

static bool make_str(jrender *r, jv v, jv *out) {
    bool ok;
    *out = jr_str_value(r, v.t == JV_UNDEF ? jv_str("", 0) : v, &ok);
    return ok;
}

static bool tojson(jrender *r, jv v, const bargs *a, jv *out) {
    // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    bool ascii = jv_truthy(jt_arg(a, 0, "ensure_ascii", jv_bool(false)));
    jv ind = jt_arg(a, 1, "indent", jv_none());
    jv seps = jt_arg(a, 2, "separators", jv_none());
    bool sort_keys = jv_truthy(jt_arg(a, 3, "sort_keys", jv_bool(false)));
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
        if (rc == 2) return jr_fail(r, "tojson: a value nested too deep");
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

static int sort_cmp_at(sort_ctx *c, jv a, jv b, int depth);
static int sort_cmp(sort_ctx *c, jv a, jv b) { return sort_cmp_at(c, a, b, 0); }

static int sort_cmp_at(sort_ctx *c, jv a, jv b, int depth) {
    if (c->attr.t != JV_UNDEF) {
        jt_attr_path(c->r, a, c->attr, &a);
        jt_attr_path(c->r, b, c->attr, &b);
    }
    a = fold_case(c->r, a, c->cs);
    b = fold_case(c->r, b, c->cs);
    if (jv_is_number(a) && jv_is_number(b)) return (jv_num(a) > jv_num(b)) - (jv_num(a) < jv_num(b));
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int k = memcmp(a.u.s.p, b.u.s.p, n);
        return k ? k : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.tuple != JV_GENERATOR && b.tuple != JV_GENERATOR && depth < 200) {
        sort_ctx inner = {c->r, true, jv_undef(), true}; // Python compares the items as they are
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i])) continue;
            int k = sort_cmp_at(&inner, a.u.l->items[i], b.u.l->items[i], depth + 1);
            c->ok &= inner.ok;
            return k;
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
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

// A string as Python's int() (1) or float() (2) reads it, underscores between
// digits allowed; 0 when neither does.
static int py_number(jv s, int64_t *iv, double *d) {
    char buf[80];
    size_t n = 0;
    const char *p = s.u.s.p, *e = p + s.u.s.n;
    if (s.u.s.n == 0 || s.u.s.n >= sizeof buf) return 0;
    for (const char *q = p; q < e; q++) {
        if (*q == '_') { // only between two digits
            if (q == p || q + 1 == e || !isdigit((unsigned char)q[-1]) || !isdigit((unsigned char)q[1])) return 0;
            continue;
        }
        buf[n++] = *q;
    }
    buf[n] = 0;
    size_t i = buf[0] == '+' || buf[0] == '-';
    size_t digits = 0;
    while (isdigit((unsigned char)buf[i + digits])) digits++;
    if (digits && !buf[i + digits]) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno) return 0;
        *iv = v;
        return 1;
    }
    // float(): digits with an optional point and exponent, or inf/infinity/nan
    const char *w = buf + i;
    if (!strcasecmp(w, "inf") || !strcasecmp(w, "infinity") || !strcasecmp(w, "nan")) {
        *d = strtod(buf, NULL);
        return 2;
    }
    size_t k = i, before = 0, after = 0;
    while (isdigit((unsigned char)buf[k])) k++, before++;
    if (buf[k] == '.') {
        k++;
        while (isdigit((unsigned char)buf[k])) k++, after++;
    }
    if (!before && !after) return 0;
    if (buf[k] == 'e' || buf[k] == 'E') {
        k++;
        if (buf[k] == '+' || buf[k] == '-') k++;
        if (!isdigit((unsigned char)buf[k])) return 0;
        while (isdigit((unsigned char)buf[k])) k++;
    }
    if (buf[k]) return 0;
    *d = strtod(buf, NULL);
    return 2;
}

static bool filter(jrender *r, const char *name, jv in, const jv *args, int nargs, const char **kwn, const jv *kwv,
                   int nkw, jv *out) {
    bargs a = {args, nargs, kwn, kwv, nkw};
    jv s;
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (in.t) {
        case JV_STR: *out = jv_int((int64_t)jv_utf8_len(in.u.s.p, in.u.s.n)); return true;
        case JV_LIST:
            if (JV_IS_GEN(in)) return jr_fail(r, "TypeError: object of type 'generator' has no len(): add |list");
            *out = jv_int((int64_t)in.u.l->n);
            return true;
        case JV_DICT: *out = jv_int((int64_t)in.u.d->n); return true;
        case JV_UNDEF: *out = jv_int(0); return true;
        default: return jr_fail(r, "TypeError: object of type '%s' has no len()", jv_type_name(in));
        }
    }
    if (!strcmp(name, "safe")) { // Markup: a plain string added to it is escaped (autoescape stays off)
        if (in.t != JV_STR && !make_str(r, in, &in)) return false;
        *out = jv_markup(in, true);
        return true;
    }
    if (!strcmp(name, "string")) return make_str(r, in, out);
    if (!strcmp(name, "trim")) {
        if (!make_str(r, in, &s)) return false;
        *out = jv_markup(jt_strip(s, jt_arg(&a, 0, "chars", jv_none()), true, true), JV_IS_MARKUP(in));
        return true;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        if (!make_str(r, in, &s)) return false;
        int mode = name[0] == 'l' ? CASE_LOWER : name[0] == 'u' ? CASE_UPPER : name[0] == 'c' ? CASE_CAPITALIZE : CASE_TITLE_FILTER;
        if (!jt_change_case(r, s, mode, out)) return false;
        *out = jv_markup(*out, JV_IS_MARKUP(in) && mode != CASE_TITLE_FILTER); // Jinja's title rebuilds a plain str
        return true;
    }
    if (!strcmp(name, "replace")) {
        if (!make_str(r, in, &s)) return false;
        jv cnt = jt_arg(&a, 2, "count", jv_none());
        return jt_replace(r, s, jt_arg(&a, 0, "old", jv_undef()), jt_arg(&a, 1, "new", jv_undef()), cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv def = jt_arg(&a, 0, "default_value", jv_str("", 0));
        bool boolean = jv_truthy(jt_arg(&a, 1, "boolean", jv_bool(false)));
        *out = (in.t == JV_UNDEF || (boolean && !jv_truthy(in))) ? def : in;
        return true;
    }
    if (!strcmp(name, "tojson")) return tojson(r, in, &a, out);
    if (!strcmp(name, "indent")) {
        if (!make_str(r, in, &s)) return false;
        if (!jt_indent(r, s, jt_arg(&a, 0, "width", jv_int(4)), jv_truthy(jt_arg(&a, 1, "first", jv_bool(false))),
                       jv_truthy(jt_arg(&a, 2, "blank", jv_bool(false))), out))
            return false;
        *out = jv_markup(*out, JV_IS_MARKUP(in));
        return true;
    }
    if (!strcmp(name, "list") || !strcmp(name, "first") || !strcmp(name, "last") || !strcmp(name, "reverse") ||
        !strcmp(name, "unique") || !strcmp(name, "join") || !strcmp(name, "map") || !strcmp(name, "sort") ||
        !strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max")) {
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
            bool cs = jv_truthy(jt_arg(&a, 0, "case_sensitive", jv_bool(false)));
            jv attr = jt_arg(&a, 1, "attribute", jv_undef());
            jlist *l = jlist_new(&r->arena, 0), *seen = jlist_new(&r->arena, 0);
            if (!l || !seen) return jr_oom(r);
            if (items->n > 10000) return jr_fail(r, "unique: too many items");
            for (size_t i = 0; i < items->n; i++) {
                jv k = items->items[i];
                if (attr.t != JV_UNDEF && !jt_attr_path(r, k, attr, &k)) return false;
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
            jv sep = jt_arg(&a, 0, "d", jv_str("", 0));
            jv attr = jt_arg(&a, 1, "attribute", jv_undef());
            if (!make_str(r, sep, &sep)) return false;
            jbuf b = {.limit = 64u << 20};
            bool ok = true;
            for (size_t i = 0; ok && i < items->n; i++) {
                jv v = items->items[i];
                if (attr.t != JV_UNDEF && !jt_attr_path(r, v, attr, &v)) {
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
            jv attr = jt_arg(&a, -1, "attribute", jv_undef());
            for (size_t i = 0; i < items->n; i++) {
                jv v = items->items[i];
                if (attr.t != JV_UNDEF) {
                    if (!jt_attr_path(r, v, attr, &v)) return false;
                    if (v.t == JV_UNDEF) v = jt_arg(&a, -1, "default", jv_undef());
                } else {
                    jv fname = jt_arg(&a, 0, NULL, jv_undef());
                    if (!jt_want_str(r, fname, "map")) return false;
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
            if (!sorted(r, items, jv_truthy(jt_arg(&a, 0, "reverse", jv_bool(false))),
                        jv_truthy(jt_arg(&a, 1, "case_sensitive", jv_bool(false))), jt_arg(&a, 2, "attribute", jv_undef()), &l))
                return false;
            *out = jv_list(l);
            return true;
        }
        if (!strcmp(name, "min") || !strcmp(name, "max")) { // the first of the smallest or largest, as Python's
            sort_ctx c = {r, jv_truthy(jt_arg(&a, 0, "case_sensitive", jv_bool(false))), jt_arg(&a, 1, "attribute", jv_undef()),
                          true};
            size_t best = 0;
            for (size_t i = 1; i < items->n; i++) {
                int k = sort_cmp(&c, items->items[i], items->items[best]);
                if (name[1] == 'i' ? k < 0 : k > 0) best = i;
            }
            if (!c.ok) return jr_fail(r, "TypeError: '<' not supported between these values");
            *out = items->n == 0 ? jv_undef() : items->items[best];
            return true;
        }
        // sum
        jv attr = jt_arg(&a, 0, "attribute", jv_undef());
        jv acc = jt_arg(&a, 1, "start", jv_int(0));
        for (size_t i = 0; i < items->n; i++) {
            jv v = items->items[i];
            if (attr.t != JV_UNDEF && !jt_attr_path(r, v, attr, &v)) return false;
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
        jv def = jt_arg(&a, 0, "default", is_int ? jv_int(0) : jv_float(0));
        if (in.t == JV_UNDEF) return jr_fail(r, "UndefinedError: '%.*s' is undefined", (int)in.u.s.n, in.u.s.n ? in.u.s.p : "");
        if (jv_is_number(in)) {
            *out = is_int ? jv_int(in.t == JV_FLOAT ? (int64_t)in.u.f : in.u.i) : jv_float(jv_num(in));
            if (is_int && in.t == JV_FLOAT && !(fabs(in.u.f) < 9.2e18)) *out = def;
            return true;
        }
        jv base = jt_arg(&a, 1, "base", jv_int(10));
        if (is_int && in.t == JV_STR && base.t == JV_INT && base.u.i != 10) {
            // int(s, base): base 0 reads a 0x/0o/0b prefix, else 2..36
            if (base.u.i != 0 && (base.u.i < 2 || base.u.i > 36)) return jr_fail(r, "ValueError: int() base must be >= 2 and <= 36, or 0");
            jv t = jt_strip(in, jv_none(), true, true);
            char buf[80];
            size_t n = 0;
            for (size_t i = 0; i < t.u.s.n && n < sizeof buf - 1; i++)
                if (t.u.s.p[i] != '_') buf[n++] = t.u.s.p[i];
            buf[n] = 0;
            int b = (int)base.u.i;
            const char *digits = buf + (buf[0] == '+' || buf[0] == '-');
            int prefix = 0; // 0x, 0o, 0b: allowed with base 0 or their own base
            if (digits[0] == '0' && digits[1]) {
                char x = (char)(digits[1] | 0x20);
                prefix = x == 'x' ? 16 : x == 'o' ? 8 : x == 'b' ? 2 : 0;
            }
            if (prefix && (b == 0 || b == prefix)) {
                b = prefix;
                memmove((char *)digits, digits + 2, strlen(digits + 2) + 1);
            } else if (b == 0) {
                b = 10;
                if (digits[0] == '0' && digits[1]) b = -1; // Python refuses "012" with base 0
            }
            char *end = buf;
            errno = 0;
            long long v = b > 0 && isalnum((unsigned char)digits[0]) && t.u.s.n < sizeof buf ? strtoll(buf, &end, b) : 0;
            bool ok = b > 0 && end != buf && !errno && *end == 0;
            *out = ok ? jv_int(v) : def;
            return true;
        }
        if (in.t == JV_STR) {
            int64_t iv;
            double d;
            int kind = py_number(jt_strip(in, jv_none(), true, true), &iv, &d);
            if (kind == 1) {
                *out = is_int ? jv_int(iv) : jv_float((double)iv);
                return true;
            }
            if (kind == 2 && (!is_int || fabs(d) < 9.2e18)) { // int(float(s)); inf and nan give the default
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
        jv prec = jt_arg(&a, 0, "precision", jv_int(0));
        jv method = jt_arg(&a, 1, "method", jv_str("common", 6));
        int64_t p = prec.t == JV_INT ? prec.u.i : 0;
        if (p < -300 || p > 300) return jr_fail(r, "round: precision out of range");
        bool common = !(method.t == JV_STR && ((method.u.s.n == 4 && !memcmp(method.u.s.p, "ceil", 4)) ||
                                               (method.u.s.n == 5 && !memcmp(method.u.s.p, "floor", 5))));
        if (common && in.t != JV_FLOAT) { // Python's round keeps an int an int (halves to even)
            int64_t x = in.u.i, m = 1;
            for (int64_t k = 0; k < -p && m <= INT64_MAX / 10; k++) m *= 10;
            if (p >= 0 || -p > 18) {
                *out = jv_int(p >= 0 ? x : 0);
                return true;
            }
            int64_t q = x / m, rem = x % m;
            if (rem < 0) rem += m, q--;
            if (2 * rem > m || (2 * rem == m && (q & 1))) q++;
            *out = jv_int(q * m);
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
        bool cs = jv_truthy(jt_arg(&a, 0, "case_sensitive", jv_bool(false)));
        jv by = jt_arg(&a, 1, "by", jv_str("key", 3));
        bool rev = jv_truthy(jt_arg(&a, 2, "reverse", jv_bool(false)));
        jv pairs;
        if (!jb_call_method(r, in, "items", NULL, 0, NULL, NULL, 0, &pairs)) return false;
        jlist *l;
        bool by_value = by.t == JV_STR && by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5);
        if (!sorted(r, pairs.u.l, rev, cs, jv_int(by_value ? 1 : 0), &l)) return false;
        *out = jv_list(l);
        return true;
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        if (JV_IS_MARKUP(in)) {
            *out = in;
            return true;
        }
        return make_str(r, in, &s) && jt_escape(r, s, out);
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
            if (!jt_change_case(r, v, name[0] == 'l' ? CASE_LOWER : CASE_UPPER, &o)) return false;
            bool any = false;
            for (size_t i = 0; i < v.u.s.n;) any |= jt_cased(jt_cp_at(v.u.s.p, v.u.s.n, &i));
            *res = any && jv_equal(o, v);
        }
    } else
        *known = false;
    return true;
}

bool jb_filter(jrender *r, const char *name, jv in, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
               jv *out) {
    if (!filter(r, name, in, args, nargs, kwn, kwv, nkw, out)) return false;
    static const char *const gens[] = {"map", "select", "reject", "selectattr", "rejectattr", "unique", "reverse", "items"};
    for (size_t k = 0; k < sizeof gens / sizeof *gens; k++)
        if (!strcmp(name, gens[k]) && out->t == JV_LIST) out->tuple = JV_GENERATOR;
    return true;
}
