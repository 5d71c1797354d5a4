// The Python methods templates call on strings, dicts and the loop object
// (mutating ones refused, as Jinja2's immutable sandbox does), and the
// globals: range, namespace, dict, raise_exception, strftime_now.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/jinja_internal.h"

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
        uint32_t c = jt_cp_at(s.u.s.p, s.u.s.n, &i);
        any = true;
        if (!strcmp(name, "isdigit")) all &= c >= '0' && c <= '9';
        else if (!strcmp(name, "isalpha")) all &= jt_cased(c);
        else if (!strcmp(name, "isspace")) all &= jt_space(c);
        else if (!strcmp(name, "isupper")) {
            if (jt_cased(c)) cased_any = true, all &= jt_upper(c) == c;
        } else if (jt_cased(c))
            cased_any = true, all &= jt_lower(c) == c;
    }
    if (!strcmp(name, "isupper") || !strcmp(name, "islower")) return cased_any && all;
    return any && all;
}

static bool call_method(jrender *r, jv self, const char *name, const jv *args, int nargs, const char **kwn,
                        const jv *kwv, int nkw, jv *out) {
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
            jv key = jt_arg(&a, 0, NULL, jv_undef()), def = jt_arg(&a, 1, NULL, jv_none());
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
        jv chars = jt_arg(&a, 0, NULL, jv_none());
        if (chars.t != JV_NONE && !jt_want_str(r, chars, name)) return false;
        *out = jt_strip(self, chars, name[0] != 'r', name[0] != 'l');
        return true;
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        jv max = jt_arg(&a, 1, "maxsplit", jv_int(-1));
        jv sep = jt_arg(&a, 0, "sep", jv_none());
        if (name[0] == 'r' && max.t == JV_INT && max.u.i >= 0) {
            // split fully, then join the leading parts back: the same as rsplit for a separator
            if (sep.t != JV_STR) return jr_fail(r, "rsplit with maxsplit needs a separator here");
            jv all;
            if (!jt_split(r, self, sep, -1, &all)) return false;
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
        return jt_split(r, self, sep, max.t == JV_INT ? max.u.i : -1, out);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        bool res;
        if (nargs != 1) return jr_fail(r, "TypeError: %s takes one argument here", name);
        if (!jt_starts_ends(r, self, args[0], name[0] == 'e', &res)) return false;
        *out = jv_bool(res);
        return true;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize"))
        return jt_change_case(r, self, name[0] == 'u' ? CASE_UPPER : name[0] == 'l' ? CASE_LOWER : name[0] == 't' ? CASE_TITLE_METHOD : CASE_CAPITALIZE, out);
    if (!strcmp(name, "replace")) {
        jv cnt = jt_arg(&a, 2, "count", jv_int(-1));
        return jt_replace(r, self, jt_arg(&a, 0, NULL, jv_undef()), jt_arg(&a, 1, NULL, jv_undef()), cnt.t == JV_INT ? cnt.u.i : -1, out);
    }
    if (!strcmp(name, "find") || !strcmp(name, "count")) {
        jv sub = jt_arg(&a, 0, NULL, jv_undef());
        if (!jt_want_str(r, sub, name)) return false;
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
        if (!jr_iter(r, jt_arg(&a, 0, NULL, jv_undef()), &items)) return false;
        jbuf b = {.limit = 64u << 20};
        bool ok = true;
        for (size_t i = 0; ok && i < items->n; i++) {
            if (items->items[i].t != JV_STR) {
                free(b.p);
                return jr_fail(r, "TypeError: sequence item %zu: expected str instance, %s found", i, jv_type_name(items->items[i]));
            }
            jv item = items->items[i];
            if (JV_IS_MARKUP(self) && !JV_IS_MARKUP(item) && !jt_escape(r, item, &item)) { // Markup.join escapes
                free(b.p);
                return false;
            }
            if (i) ok = jbuf_put(&b, self.u.s.p, self.u.s.n);
            ok = ok && jbuf_put(&b, item.u.s.p, item.u.s.n);
        }
        *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
        free(b.p);
        return (ok && out->t == JV_STR) || jr_oom(r);
    }
    if (!strcmp(name, "splitlines")) {
        jv parts;
        if (!jt_indent(r, self, jv_int(0), false, false, &parts)) return false;
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

bool jb_call_method(jrender *r, jv self, const char *name, const jv *args, int nargs, const char **kwn, const jv *kwv,
                    int nkw, jv *out) {
    if (!call_method(r, self, name, args, nargs, kwn, kwv, nkw, out)) return false;
    if (JV_IS_MARKUP(self)) { // Markup's string methods give Markup
        *out = jv_markup(*out, true);
        if (out->t == JV_LIST)
            for (size_t i = 0; i < out->u.l->n; i++) out->u.l->items[i] = jv_markup(out->u.l->items[i], true);
    }
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
