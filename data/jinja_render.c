// The Jinja interpreter: statements and expressions over Python-semantics
// values, with Jinja2's scoping (a for loop's assignments stay in it, an if's
// do not; macros see the template's top-level names) and its lookup rules
// (x.y tries the attribute, then the item; a missing one is undefined).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_internal.h"

#define MAX_CALL_DEPTH 100
#define MAX_STEPS 5000000
#define MAX_OUTPUT (64u << 20)
#define MAX_ARENA ((size_t)256 << 20)
#define MAX_ARGS 32

enum { FLOW_OK, FLOW_BREAK, FLOW_CONTINUE, FLOW_ERROR };

bool jr_fail(jrender *r, const char *fmt, ...) {
    if (r->failed) return false;
    r->failed = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof r->err, "%s:%d: %s", r->t->name, r->line, msg);
    return false;
}

bool jr_oom(jrender *r) { return jr_fail(r, "out of memory (or over the template's memory limit)"); }

// A write into a jbuf failed: say why.
static bool write_failed(jrender *r, const jbuf *b) {
    if (b->too_deep) return jr_fail(r, "a value nested too deep to print");
    if (b->generator)
        return jr_fail(r, "printing a generator (from map, select, ...; Python prints its address): add |list");
    return jr_fail(r, "output too large (over %u MiB)", MAX_OUTPUT >> 20);
}

static jframe *frame_new(jrender *r, jframe *parent) {
    jframe *f = jarena_alloc(&r->arena, sizeof *f);
    if (!f) return NULL;
    f->parent = parent;
    f->vars = jdict_new(&r->arena, JDICT_PLAIN);
    return f->vars ? f : NULL;
}

static const jv *frame_lookup(const jframe *f, const char *name, size_t n) {
    for (; f; f = f->parent) {
        const jv *v = jdict_get(f->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

static bool frame_set(jrender *r, jframe *f, const char *name, size_t n, jv v) {
    return jdict_set(&r->arena, f->vars, jv_str(name, n), v) || jr_oom(r);
}

jv jr_str_value(jrender *r, jv v, bool *ok) {
    *ok = true;
    if (v.t == JV_STR) return v;
    jbuf b = {.limit = MAX_OUTPUT};
    if (!jv_write_str(&b, v)) {
        *ok = write_failed(r, &b);
        free(b.p);
        return jv_undef();
    }
    jv s = jv_str_copy(&r->arena, b.p ? b.p : "", b.n);
    free(b.p);
    if (s.t != JV_STR) *ok = jr_oom(r);
    return s;
}

static bool eval(jrender *r, const jnode *e, jframe *f, jv *out);
static bool write_failed(jrender *r, const jbuf *b);

static bool undefined_use(jrender *r, jv v) {
    if (v.u.s.n) return jr_fail(r, "UndefinedError: '%.*s' is undefined", (int)v.u.s.n, v.u.s.p);
    return jr_fail(r, "UndefinedError: an undefined value was used");
}

// x.name (attribute, then item)
static bool get_attr(jrender *r, jv obj, const char *name, size_t n, jv *out) {
    if (obj.t == JV_UNDEF) return undefined_use(r, obj);
    if (jb_has_method(obj, name, n)) {
        jfunc *fn = jarena_alloc(&r->arena, sizeof *fn);
        char *nm = jarena_alloc(&r->arena, n + 1);
        if (!fn || !nm) return jr_oom(r);
        memcpy(nm, name, n);
        fn->kind = JFUNC_METHOD;
        fn->name = nm;
        fn->self = obj;
        out->t = JV_FUNC;
        out->tuple = 0;
        out->u.fn = fn;
        return true;
    }
    if (obj.t == JV_DICT) {
        const jv *v = jdict_get(obj.u.d, name, n);
        if (v) {
            *out = *v;
            return true;
        }
    }
    *out = jv_undef();
    char *nm = jarena_alloc(&r->arena, n + 1);
    if (nm) {
        memcpy(nm, name, n);
        out->u.s.p = nm;
        out->u.s.n = n;
    }
    return true;
}

// x[key] (item, then attribute for a string key)
static bool get_item(jrender *r, jv obj, jv key, jv *out) {
    if (obj.t == JV_UNDEF) return undefined_use(r, obj);
    if (JV_IS_GEN(obj)) { // not subscriptable: Jinja2 gives undefined
        *out = jv_undef();
        return true;
    }
    if ((obj.t == JV_LIST || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jv_utf8_len(obj.u.s.p, obj.u.s.n);
        int64_t i = key.u.i < 0 ? key.u.i + n : key.u.i;
        if (i < 0 || i >= n) {
            *out = jv_undef();
            return true;
        }
        if (obj.t == JV_LIST) *out = obj.u.l->items[i];
        else {
            size_t a = jv_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i), b = jv_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);
            *out = jv_markup(jv_str(obj.u.s.p + a, b - a), JV_IS_MARKUP(obj));
        }
        return true;
    }
    if (obj.t == JV_DICT && obj.u.d->kind == JDICT_PLAIN) {
        for (size_t i = 0; i < obj.u.d->n; i++)
            if (jv_equal(obj.u.d->keys[i], key)) {
                *out = obj.u.d->vals[i];
                return true;
            }
    }
    if (key.t == JV_STR) return get_attr(r, obj, key.u.s.p, key.u.s.n, out);
    *out = jv_undef();
    return true;
}

static int64_t clamp_index(int64_t i, int64_t n, int64_t step) {
    if (i < 0) {
        i += n;
        if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n)
        i = step < 0 ? n - 1 : n;
    return i;
}

static bool get_slice(jrender *r, jv obj, const jv *parts, jv *out) {
    if (obj.t == JV_UNDEF) return undefined_use(r, obj);
    if (JV_IS_GEN(obj)) {
        *out = jv_undef();
        return true;
    }
    if (obj.t != JV_LIST && obj.t != JV_STR) return jr_fail(r, "TypeError: '%s' object is not subscriptable", jv_type_name(obj));
    for (int k = 0; k < 3; k++)
        if (parts[k].t != JV_NONE && parts[k].t != JV_INT && parts[k].t != JV_BOOL)
            return jr_fail(r, "TypeError: slice indices must be integers or None");
    int64_t step = parts[2].t == JV_NONE ? 1 : parts[2].u.i;
    if (step == 0) return jr_fail(r, "ValueError: slice step cannot be zero");
    int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jv_utf8_len(obj.u.s.p, obj.u.s.n);
    int64_t start = parts[0].t == JV_NONE ? (step < 0 ? n - 1 : 0) : clamp_index(parts[0].u.i, n, step);
    int64_t stop = parts[1].t == JV_NONE ? (step < 0 ? -1 : n) : clamp_index(parts[1].u.i, n, step);
    if (obj.t == JV_LIST) {
        jlist *l = jlist_new(&r->arena, 0);
        if (!l) return jr_oom(r);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            if (!jlist_push(&r->arena, l, obj.u.l->items[i])) return jr_oom(r);
        *out = jv_list(l);
        out->tuple = obj.tuple;
        return true;
    }
    if (step == 1) {
        size_t a = jv_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)start);
        size_t b = stop > start ? jv_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)stop) : a;
        *out = jv_markup(jv_str(obj.u.s.p + a, b - a), JV_IS_MARKUP(obj));
        return true;
    }
    // where each character starts, once: n + 1 offsets
    size_t *at = jarena_alloc(&r->arena, ((size_t)n + 1) * sizeof *at);
    if (!at) return jr_oom(r);
    for (size_t k = 0, c = 0; k <= obj.u.s.n; k++)
        if (k == obj.u.s.n || ((unsigned char)obj.u.s.p[k] & 0xC0) != 0x80) at[c++] = k;
    jbuf b = {.limit = MAX_OUTPUT};
    bool ok = true;
    for (int64_t i = start; ok && (step > 0 ? i < stop : i > stop); i += step)
        ok = jbuf_put(&b, obj.u.s.p + at[i], at[i + 1] - at[i]);
    *out = ok ? jv_str_copy(&r->arena, b.p ? b.p : "", b.n) : jv_undef();
    free(b.p);
    return (ok && out->t == JV_STR) || jr_oom(r);
}

static bool str_concat(jrender *r, jv a, jv b, jv *out) {
    char *p = jarena_alloc(&r->arena, a.u.s.n + b.u.s.n + 1);
    if (!p) return jr_oom(r);
    memcpy(p, a.u.s.p, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
    *out = jv_str(p, a.u.s.n + b.u.s.n);
    return true;
}

static bool arith(jrender *r, int op, jv a, jv b, jv *out) {
    if (a.t == JV_UNDEF) return undefined_use(r, a);
    if (b.t == JV_UNDEF) return undefined_use(r, b);
    if (op == JOP_ADD && a.t == JV_STR && b.t == JV_STR) {
        bool markup = JV_IS_MARKUP(a) || JV_IS_MARKUP(b);
        if (markup && !JV_IS_MARKUP(a) && !jt_escape(r, a, &a)) return false;
        if (markup && !JV_IS_MARKUP(b) && !jt_escape(r, b, &b)) return false;
        if (!str_concat(r, a, b, out)) return false;
        *out = jv_markup(*out, markup);
        return true;
    }
    if (op == JOP_ADD && a.t == JV_LIST && b.t == JV_LIST) {
        if (a.tuple != b.tuple) return jr_fail(r, "TypeError: can only concatenate %s to %s", jv_type_name(a), jv_type_name(a));
        jlist *l = jlist_new(&r->arena, a.u.l->n + b.u.l->n);
        if (!l) return jr_oom(r);
        for (size_t i = 0; i < a.u.l->n; i++) jlist_push(&r->arena, l, a.u.l->items[i]);
        for (size_t i = 0; i < b.u.l->n; i++) jlist_push(&r->arena, l, b.u.l->items[i]);
        *out = jv_list(l);
        out->tuple = a.tuple;
        return true;
    }
    if (op == JOP_MUL && ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))) {
        jv t = a;
        a = b;
        b = t;
    }
    if (op == JOP_MUL && (a.t == JV_INT || a.t == JV_BOOL) && (b.t == JV_STR || b.t == JV_LIST)) {
        int64_t k = a.u.i < 0 ? 0 : a.u.i;
        size_t unit = b.t == JV_STR ? b.u.s.n : b.u.l->n;
        if (unit && (uint64_t)k > MAX_OUTPUT / unit) return jr_fail(r, "repetition too large");
        if (b.t == JV_STR) {
            char *p = jarena_alloc(&r->arena, unit * (size_t)k + 1);
            if (!p) return jr_oom(r);
            for (int64_t i = 0; i < k; i++) memcpy(p + (size_t)i * unit, b.u.s.p, unit);
            *out = jv_markup(jv_str(p, unit * (size_t)k), JV_IS_MARKUP(b));
        } else {
            jlist *l = jlist_new(&r->arena, unit * (size_t)k);
            if (!l) return jr_oom(r);
            for (int64_t i = 0; i < k; i++)
                for (size_t j = 0; j < unit; j++) jlist_push(&r->arena, l, b.u.l->items[j]);
            *out = jv_list(l);
        }
        return true;
    }
    static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**"};
    if (!jv_is_number(a) || !jv_is_number(b))
        return jr_fail(r, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", sym[op], jv_type_name(a),
                       jv_type_name(b));
    bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
    if (op == JOP_DIV) {
        if (jv_num(b) == 0) return jr_fail(r, "ZeroDivisionError: division by zero");
        *out = jv_float(jv_num(a) / jv_num(b));
        return true;
    }
    if (!fl) {
        int64_t x = a.u.i, y = b.u.i, z;
        switch (op) {
        case JOP_ADD:
            if (__builtin_add_overflow(x, y, &z)) return jr_fail(r, "integer overflow");
            break;
        case JOP_SUB:
            if (__builtin_sub_overflow(x, y, &z)) return jr_fail(r, "integer overflow");
            break;
        case JOP_MUL:
            if (__builtin_mul_overflow(x, y, &z)) return jr_fail(r, "integer overflow");
            break;
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (y == 0) return jr_fail(r, "ZeroDivisionError: integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) return jr_fail(r, "integer overflow");
            z = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) z--;
            if (op == JOP_MOD) z = x - z * y;
            break;
        default: // POW
            if (y < 0) {
                *out = jv_float(pow((double)x, (double)y));
                return true;
            }
            z = 1;
            for (int64_t i = 0; i < y; i++)
                if (__builtin_mul_overflow(z, x, &z)) return jr_fail(r, "integer overflow");
        }
        *out = jv_int(z);
        return true;
    }
    double x = jv_num(a), y = jv_num(b), z;
    switch (op) {
    case JOP_ADD: z = x + y; break;
    case JOP_SUB: z = x - y; break;
    case JOP_MUL: z = x * y; break;
    case JOP_FLOORDIV:
    case JOP_MOD:
        if (y == 0) return jr_fail(r, "ZeroDivisionError: float division by zero");
        z = fmod(x, y);
        if (z != 0 && ((z < 0) != (y < 0))) z += y;
        if (op == JOP_FLOORDIV) z = (x - z) / y;
        break;
    default: z = pow(x, y);
    }
    *out = jv_float(z);
    return true;
}

static int str_cmp(jv a, jv b) {
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int c = memcmp(a.u.s.p, b.u.s.p, n);
    return c ? c : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
}

// Python's <, <=, >, >= as a three-way compare; false on a type error.
static bool order(jrender *r, jv a, jv b, int *c, int depth) {
    if (depth > 200) return jr_fail(r, "a comparison of values nested too deep");
    if (jv_is_number(a) && jv_is_number(b)) {
        double x = jv_num(a), y = jv_num(b);
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) *c = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        else *c = (x > y) - (x < y);
        return true;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        *c = str_cmp(a, b);
        return true;
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i])) continue;
            return order(r, a.u.l->items[i], b.u.l->items[i], c, depth + 1);
        }
        *c = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return true;
    }
    return jr_fail(r, "TypeError: '<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

static bool contains(jrender *r, jv needle, jv hay, bool *res) {
    *res = false;
    switch (hay.t) {
    case JV_STR:
        if (needle.t != JV_STR)
            return jr_fail(r, "TypeError: 'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        if (needle.u.s.n == 0) *res = true;
        for (size_t i = 0; !*res && i + needle.u.s.n <= hay.u.s.n; i++)
            *res = memcmp(hay.u.s.p + i, needle.u.s.p, needle.u.s.n) == 0;
        return true;
    case JV_LIST:
        for (size_t i = 0; !*res && i < hay.u.l->n; i++) *res = jv_equal(hay.u.l->items[i], needle);
        return true;
    case JV_DICT:
        for (size_t i = 0; !*res && i < hay.u.d->n; i++) *res = jv_equal(hay.u.d->keys[i], needle);
        return true;
    case JV_UNDEF: return true;
    default: return jr_fail(r, "TypeError: argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

static bool compare(jrender *r, int op, jv a, jv b, bool *res) {
    int c;
    switch (op) {
    case JOP_EQ: *res = jv_equal(a, b); return true;
    case JOP_NE: *res = !jv_equal(a, b); return true;
    case JOP_IN: return contains(r, a, b, res);
    case JOP_NOTIN:
        if (!contains(r, a, b, res)) return false;
        *res = !*res;
        return true;
    default:
        if (!order(r, a, b, &c, 0)) return false;
        *res = op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0;
        return true;
    }
}

// Evaluates a node's positional and keyword arguments.
static bool eval_args(jrender *r, const jnode *e, jframe *f, jv *args, jv *kwv) {
    if (e->nargs > MAX_ARGS || e->nargs2 > MAX_ARGS) return jr_fail(r, "too many arguments");
    for (int i = 0; i < e->nargs; i++)
        if (!eval(r, e->args[i], f, &args[i])) return false;
    for (int i = 0; i < e->nargs2; i++)
        if (!eval(r, e->args2[i], f, &kwv[i])) return false;
    return true;
}

static int exec_body(jrender *r, jnode *const *body, int n, jframe *f);

// Runs a body into a string of its own (a macro's value, a set or filter block's text).
static bool render_to_string(jrender *r, jnode *const *body, int n, jframe *f, jv *out) {
    jbuf saved = r->out;
    r->out = (jbuf){.limit = MAX_OUTPUT};
    int flow = exec_body(r, body, n, f);
    jbuf mine = r->out;
    r->out = saved;
    if (flow == FLOW_ERROR) {
        free(mine.p);
        return false;
    }
    *out = jv_str_copy(&r->arena, mine.p ? mine.p : "", mine.n);
    free(mine.p);
    return out->t == JV_STR || jr_oom(r);
}

static bool call_macro(jrender *r, const jfunc *fn, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
                       jv *out) {
    const jnode *m = fn->macro;
    if (nargs > m->nnames)
        return jr_fail(r, "TypeError: macro '%.*s' takes not more than %d argument(s)", (int)m->sn, m->s, m->nnames);
    if (r->depth >= MAX_CALL_DEPTH) return jr_fail(r, "macro calls nested too deep");
    jframe *mf = frame_new(r, fn->closure);
    if (!mf) return jr_oom(r);
    for (int i = 0; i < m->nnames; i++) {
        jv v = jv_undef();
        bool set = false;
        if (i < nargs) {
            v = args[i];
            set = true;
        }
        for (int k = 0; k < nkw; k++)
            if (strcmp(kwn[k], m->names[i]) == 0) {
                if (set) return jr_fail(r, "TypeError: macro '%.*s' got multiple values for argument '%s'", (int)m->sn, m->s, kwn[k]);
                v = kwv[k];
                set = true;
            }
        if (!set && m->args[i] && !eval(r, m->args[i], mf, &v)) return false;
        if (!set && !m->args[i]) {
            v.u.s.p = m->names[i];
            v.u.s.n = strlen(m->names[i]);
        }
        if (!frame_set(r, mf, m->names[i], strlen(m->names[i]), v)) return false;
    }
    for (int k = 0; k < nkw; k++) {
        bool known = false;
        for (int i = 0; i < m->nnames && !known; i++) known = strcmp(kwn[k], m->names[i]) == 0;
        if (!known) return jr_fail(r, "TypeError: macro '%.*s' takes no keyword argument '%s'", (int)m->sn, m->s, kwn[k]);
    }
    // The macro's output is its value: render into a fresh buffer.
    r->depth++;
    bool ok = render_to_string(r, m->body, m->nbody, mf, out);
    r->depth--;
    return ok;
}

bool jr_call_value(jrender *r, jv fn, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw, jv *out) {
    if (fn.t == JV_UNDEF) return undefined_use(r, fn);
    if (fn.t != JV_FUNC) return jr_fail(r, "TypeError: '%s' object is not callable", jv_type_name(fn));
    switch (fn.u.fn->kind) {
    case JFUNC_MACRO: return call_macro(r, fn.u.fn, args, nargs, kwn, kwv, nkw, out);
    case JFUNC_METHOD: return jb_call_method(r, fn.u.fn->self, fn.u.fn->name, args, nargs, kwn, kwv, nkw, out);
    default: return jb_call_builtin(r, fn.u.fn->name, args, nargs, kwn, kwv, nkw, out);
    }
}

static bool apply_filter(jrender *r, const jnode *e, jframe *f, jv in, jv *out) {
    jv args[MAX_ARGS], kwv[MAX_ARGS];
    if (!eval_args(r, e, f, args, kwv)) return false;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(e->sn < 63 ? e->sn : 63), e->s);
    r->line = e->line;
    return jb_filter(r, name, in, args, e->nargs, e->names, kwv, e->nargs2, out);
}

// A filter chain whose innermost operand is a placeholder (filter blocks, set blocks).
static bool apply_chain(jrender *r, const jnode *e, jframe *f, jv in, jv *out) {
    if (e->kind == JE_LIT) {
        *out = in;
        return true;
    }
    if (e->kind != JE_FILTER) return jr_fail(r, "only filters may follow a block's name");
    jv inner;
    if (e->a) {
        if (!apply_chain(r, e->a, f, in, &inner)) return false;
    } else
        inner = in;
    return apply_filter(r, e, f, inner, out);
}

static bool eval_node(jrender *r, const jnode *e, jframe *f, jv *out);

static bool eval(jrender *r, const jnode *e, jframe *f, jv *out) {
    bool ok = eval_node(r, e, f, out);
    if (jv_equal_overflowed()) return jr_fail(r, "a comparison of values nested too deep, or too costly");
    return ok;
}

static bool eval_node(jrender *r, const jnode *e, jframe *f, jv *out) {
    if (++r->steps > MAX_STEPS) return jr_fail(r, "the template ran too long");
    r->line = e->line;
    switch (e->kind) {
    case JE_LIT: *out = e->lit; return true;
    case JE_NAME: {
        const jv *v = frame_lookup(f, e->s, e->sn);
        if (v) *out = *v;
        else if (jb_is_builtin(e->s, e->sn)) {
            jfunc *fn = jarena_alloc(&r->arena, sizeof *fn);
            char *nm = jarena_alloc(&r->arena, e->sn + 1);
            if (!fn || !nm) return jr_oom(r);
            memcpy(nm, e->s, e->sn);
            fn->kind = JFUNC_BUILTIN;
            fn->name = nm;
            *out = (jv){.t = JV_FUNC, .u.fn = fn};
        } else {
            *out = jv_undef();
            out->u.s.p = e->s;
            out->u.s.n = e->sn;
        }
        return true;
    }
    case JE_LIST:
    case JE_TUPLE: {
        jlist *l = jlist_new(&r->arena, (size_t)e->nargs);
        if (!l) return jr_oom(r);
        for (int i = 0; i < e->nargs; i++) {
            jv v;
            if (!eval(r, e->args[i], f, &v)) return false;
            jlist_push(&r->arena, l, v);
        }
        *out = jv_list(l);
        out->tuple = e->kind == JE_TUPLE;
        return true;
    }
    case JE_DICT: {
        jdict *d = jdict_new(&r->arena, JDICT_PLAIN);
        if (!d) return jr_oom(r);
        for (int i = 0; i < e->nargs; i++) {
            jv k, v;
            if (!eval(r, e->args[i], f, &k) || !eval(r, e->args2[i], f, &v)) return false;
            if (k.t == JV_LIST && !k.tuple) return jr_fail(r, "TypeError: unhashable type: 'list'");
            if (k.t == JV_DICT) return jr_fail(r, "TypeError: unhashable type: 'dict'");
            if (!jdict_set(&r->arena, d, k, v)) return jr_oom(r);
        }
        *out = jv_dict(d);
        return true;
    }
    case JE_ATTR: {
        jv obj;
        if (!eval(r, e->a, f, &obj)) return false;
        r->line = e->line;
        return get_attr(r, obj, e->s, e->sn, out);
    }
    case JE_ITEM: {
        jv obj, key;
        if (!eval(r, e->a, f, &obj) || !eval(r, e->b, f, &key)) return false;
        r->line = e->line;
        return get_item(r, obj, key, out);
    }
    case JE_SLICE: {
        jv obj, parts[3] = {jv_none(), jv_none(), jv_none()};
        if (!eval(r, e->a, f, &obj)) return false;
        for (int k = 0; k < 3; k++)
            if (e->slice[k] && !eval(r, e->slice[k], f, &parts[k])) return false;
        r->line = e->line;
        return get_slice(r, obj, parts, out);
    }
    case JE_CALL: {
        jv fn, args[MAX_ARGS], kwv[MAX_ARGS];
        if (!eval(r, e->a, f, &fn) || !eval_args(r, e, f, args, kwv)) return false;
        r->line = e->line;
        return jr_call_value(r, fn, args, e->nargs, e->names, kwv, e->nargs2, out);
    }
    case JE_FILTER: {
        jv in;
        if (!eval(r, e->a, f, &in)) return false;
        return apply_filter(r, e, f, in, out);
    }
    case JE_TEST: {
        jv v, args[MAX_ARGS], kwv[MAX_ARGS];
        if (!eval(r, e->a, f, &v) || !eval_args(r, e, f, args, kwv)) return false;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(e->sn < 63 ? e->sn : 63), e->s);
        bool known, res;
        r->line = e->line;
        if (!jb_test(r, name, v, args, e->nargs, &known, &res)) return false;
        if (!known) return jr_fail(r, "TemplateAssertionError: no test named '%s'", name);
        *out = jv_bool(e->op ? !res : res);
        return true;
    }
    case JE_BINOP: {
        jv a, b;
        if (!eval(r, e->a, f, &a) || !eval(r, e->b, f, &b)) return false;
        r->line = e->line;
        if (e->op == JOP_CONCAT) {
            bool ok1, ok2;
            jv sa = jr_str_value(r, a, &ok1), sb = jr_str_value(r, b, &ok2);
            return ok1 && ok2 && str_concat(r, sa, sb, out);
        }
        return arith(r, e->op, a, b, out);
    }
    case JE_NEG:
    case JE_POS: {
        jv a;
        if (!eval(r, e->a, f, &a)) return false;
        if (a.t == JV_UNDEF) return undefined_use(r, a);
        if (!jv_is_number(a)) return jr_fail(r, "TypeError: bad operand type for unary %c: '%s'", e->kind == JE_NEG ? '-' : '+', jv_type_name(a));
        if (e->kind == JE_POS) *out = a.t == JV_BOOL ? jv_int(a.u.i) : a;
        else if (a.t == JV_FLOAT) *out = jv_float(-a.u.f);
        else if (a.u.i == INT64_MIN) return jr_fail(r, "integer overflow");
        else *out = jv_int(-a.u.i);
        return true;
    }
    case JE_NOT: {
        jv a;
        if (!eval(r, e->a, f, &a)) return false;
        *out = jv_bool(!jv_truthy(a));
        return true;
    }
    case JE_AND:
    case JE_OR: {
        jv a;
        if (!eval(r, e->a, f, &a)) return false;
        if (jv_truthy(a) == (e->kind == JE_OR)) {
            *out = a;
            return true;
        }
        return eval(r, e->b, f, out);
    }
    case JE_COND: {
        jv c;
        if (!eval(r, e->b, f, &c)) return false;
        if (jv_truthy(c)) return eval(r, e->a, f, out);
        if (e->c) return eval(r, e->c, f, out);
        *out = jv_undef();
        return true;
    }
    case JE_COMPARE: {
        jv a;
        if (!eval(r, e->a, f, &a)) return false;
        for (int i = 0; i < e->nargs; i++) {
            jv b;
            bool res;
            if (!eval(r, e->args[i], f, &b)) return false;
            r->line = e->line;
            if (!compare(r, e->ops[i], a, b, &res)) return false;
            if (!res) {
                *out = jv_bool(false);
                return true;
            }
            a = b;
        }
        *out = jv_bool(true);
        return true;
    }
    default: return jr_fail(r, "internal error: a statement where an expression belongs");
    }
}

// Items a for loop walks (lists, dict keys, string characters); undefined walks nothing.
static bool iter_items(jrender *r, jv v, jlist **out) {
    switch (v.t) {
    case JV_LIST: *out = v.u.l; return true;
    case JV_UNDEF: *out = jlist_new(&r->arena, 0); return *out || jr_oom(r);
    case JV_DICT: {
        if (v.u.d->kind != JDICT_PLAIN) break;
        jlist *l = jlist_new(&r->arena, v.u.d->n);
        if (!l) return jr_oom(r);
        for (size_t i = 0; i < v.u.d->n; i++) jlist_push(&r->arena, l, v.u.d->keys[i]);
        *out = l;
        return true;
    }
    case JV_STR: {
        jlist *l = jlist_new(&r->arena, v.u.s.n);
        if (!l) return jr_oom(r);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t j = i + 1;
            while (j < v.u.s.n && ((unsigned char)v.u.s.p[j] & 0xC0) == 0x80) j++;
            jlist_push(&r->arena, l, jv_str(v.u.s.p + i, j - i));
            i = j;
        }
        *out = l;
        return true;
    }
    default: break;
    }
    return jr_fail(r, "TypeError: '%s' object is not iterable", jv_type_name(v));
}

bool jr_iter(jrender *r, jv v, jlist **out) { return iter_items(r, v, out); }

static bool assign_targets(jrender *r, jframe *f, const char **names, int n, jv v) {
    if (n == 1) return frame_set(r, f, names[0], strlen(names[0]), v);
    jlist *items;
    if (!iter_items(r, v, &items)) return false;
    if ((int)items->n != n)
        return jr_fail(r, "ValueError: %s values to unpack (expected %d, got %zu)", (int)items->n > n ? "too many" : "not enough", n,
                       items->n);
    for (int i = 0; i < n; i++)
        if (!frame_set(r, f, names[i], strlen(names[i]), items->items[i])) return false;
    return true;
}

static bool loop_set(jrender *r, jdict *d, const char *k, jv v) {
    return jdict_set(&r->arena, d, jv_str(k, strlen(k)), v) || jr_oom(r);
}

static int exec_for(jrender *r, const jnode *s, jframe *f) {
    jv it;
    if (!eval(r, s->a, f, &it)) return FLOW_ERROR;
    jlist *items;
    if (!iter_items(r, it, &items)) return FLOW_ERROR;
    jframe *lf = frame_new(r, f);
    if (!lf) return jr_oom(r), FLOW_ERROR;
    if (s->c) { // for .. if: filter first, so loop.* counts the kept items
        jlist *kept = jlist_new(&r->arena, items->n);
        if (!kept) return jr_oom(r), FLOW_ERROR;
        for (size_t i = 0; i < items->n; i++) {
            jv c;
            if (!assign_targets(r, lf, s->names, s->nnames, items->items[i]) || !eval(r, s->c, lf, &c)) return FLOW_ERROR;
            if (jv_truthy(c)) jlist_push(&r->arena, kept, items->items[i]);
        }
        items = kept;
    }
    size_t n = items->n;
    bool completed = false; // Jinja2 runs the else block unless an iteration ran to its end
    for (size_t i = 0; i < n; i++) {
        // each iteration its own scope: an assignment in one is not seen by the next
        jframe *it = frame_new(r, f);
        if (!it) return jr_oom(r), FLOW_ERROR;
        jdict *loop = jdict_new(&r->arena, JDICT_LOOP);
        if (!loop) return jr_oom(r), FLOW_ERROR;
        jv prev = jv_undef(), next = jv_undef();
        if (i > 0) prev = items->items[i - 1];
        if (i + 1 < n) next = items->items[i + 1];
        if (!loop_set(r, loop, "index", jv_int((int64_t)i + 1)) || !loop_set(r, loop, "index0", jv_int((int64_t)i)) ||
            !loop_set(r, loop, "revindex", jv_int((int64_t)(n - i))) ||
            !loop_set(r, loop, "revindex0", jv_int((int64_t)(n - i - 1))) || !loop_set(r, loop, "first", jv_bool(i == 0)) ||
            !loop_set(r, loop, "last", jv_bool(i + 1 == n)) || !loop_set(r, loop, "length", jv_int((int64_t)n)) ||
            !loop_set(r, loop, "previtem", prev) || !loop_set(r, loop, "nextitem", next) ||
            !loop_set(r, loop, "depth", jv_int(1)) || !loop_set(r, loop, "depth0", jv_int(0)))
            return FLOW_ERROR;
        if (!frame_set(r, it, "loop", 4, jv_dict(loop))) return FLOW_ERROR;
        if (!assign_targets(r, it, s->names, s->nnames, items->items[i])) return FLOW_ERROR;
        int flow = exec_body(r, s->body, s->nbody, it);
        if (flow == FLOW_ERROR) return flow;
        if (flow == FLOW_BREAK) break;
        if (flow == FLOW_OK) completed = true;
    }
    if (!completed && s->norelse) return exec_body(r, s->orelse, s->norelse, f);
    return FLOW_OK;
}

static int exec_stmt(jrender *r, const jnode *s, jframe *f) {
    if (++r->steps > MAX_STEPS) return jr_fail(r, "the template ran too long"), FLOW_ERROR;
    r->line = s->line;
    switch (s->kind) {
    case JN_TEXT: return jbuf_put(&r->out, s->s, s->sn) ? FLOW_OK : (jr_fail(r, "output too large"), FLOW_ERROR);
    case JN_OUTPUT: {
        jv v;
        if (!eval(r, s->a, f, &v)) return FLOW_ERROR;
        return jv_write_str(&r->out, v) ? FLOW_OK : (write_failed(r, &r->out), FLOW_ERROR);
    }
    case JN_IF: {
        jv c;
        if (!eval(r, s->a, f, &c)) return FLOW_ERROR;
        if (jv_truthy(c)) return exec_body(r, s->body, s->nbody, f);
        return exec_body(r, s->orelse, s->norelse, f);
    }
    case JN_FOR: return exec_for(r, s, f);
    case JN_SET: {
        jv v;
        if (!eval(r, s->a, f, &v)) return FLOW_ERROR;
        r->line = s->line;
        if (s->s2) { // ns.attr = v
            const jv *ns = frame_lookup(f, s->s, s->sn);
            if (!ns || ns->t != JV_DICT || ns->u.d->kind != JDICT_NAMESPACE)
                return jr_fail(r, "TemplateRuntimeError: cannot assign attribute on non-namespace object"), FLOW_ERROR;
            return jdict_set(&r->arena, ns->u.d, jv_str(s->s2, s->s2n), v) ? FLOW_OK : (jr_oom(r), FLOW_ERROR);
        }
        return assign_targets(r, f, s->names, s->nnames, v) ? FLOW_OK : FLOW_ERROR;
    }
    case JN_SET_BLOCK:
    case JN_FILTER_BLOCK: {
        jv text, v;
        if (!render_to_string(r, s->body, s->nbody, f, &text)) return FLOW_ERROR;
        v = text;
        if (s->a && !apply_chain(r, s->a, f, text, &v)) return FLOW_ERROR;
        if (s->kind == JN_SET_BLOCK) return frame_set(r, f, s->s, s->sn, v) ? FLOW_OK : FLOW_ERROR;
        return jv_write_str(&r->out, v) ? FLOW_OK : (write_failed(r, &r->out), FLOW_ERROR);
    }
    case JN_MACRO: {
        jfunc *fn = jarena_alloc(&r->arena, sizeof *fn);
        if (!fn) return jr_oom(r), FLOW_ERROR;
        fn->kind = JFUNC_MACRO;
        fn->macro = s;
        fn->closure = f;
        return frame_set(r, f, s->s, s->sn, (jv){.t = JV_FUNC, .u.fn = fn}) ? FLOW_OK : FLOW_ERROR;
    }
    case JN_BREAK: return FLOW_BREAK;
    case JN_CONTINUE: return FLOW_CONTINUE;
    case JN_BLOCK: return exec_body(r, s->body, s->nbody, f);
    default: return jr_fail(r, "internal error: an expression where a statement belongs"), FLOW_ERROR;
    }
}

static int exec_body(jrender *r, jnode *const *body, int n, jframe *f) {
    for (int i = 0; i < n; i++) {
        int flow = exec_stmt(r, body[i], f);
        if (flow != FLOW_OK) return flow;
    }
    return FLOW_OK;
}

// Every string and key of a variable is valid UTF-8 (cJSON checks none).
static bool json_utf8_ok(const cJSON *j) {
    if (j->string && jt_utf8_check(j->string, strlen(j->string)) != strlen(j->string)) return false;
    if (cJSON_IsString(j) && jt_utf8_check(j->valuestring, strlen(j->valuestring)) != strlen(j->valuestring)) return false;
    for (const cJSON *c = j->child; c; c = c->next)
        if (!json_utf8_ok(c)) return false;
    return true;
}

lc_status lc_jinja_render(const lc_jinja_template *t, const cJSON *vars, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    jrender r = {.t = t, .out = {.limit = MAX_OUTPUT}};
    r.arena.limit = MAX_ARENA;
    lc_status st = LC_STATUS_OK;
    r.globals = frame_new(&r, NULL);
    jframe *top = r.globals ? frame_new(&r, r.globals) : NULL;
    if (!top) {
        jarena_free(&r.arena);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    if (vars && !cJSON_IsObject(vars)) {
        jarena_free(&r.arena);
        return lc_error(LC_STATUS_INPUT, "%s: template variables must be a JSON object", t->name);
    }
    const char *bad_var = NULL;
    for (const cJSON *c = vars ? vars->child : NULL; c && !bad_var; c = c->next)
        if (!json_utf8_ok(c)) bad_var = c->string;
    if (bad_var) {
        jarena_free(&r.arena);
        return lc_error(LC_STATUS_INPUT, "%s: template variable \"%.40s\" holds text that is not valid UTF-8", t->name,
                        jt_utf8_check(bad_var, strlen(bad_var)) == strlen(bad_var) ? bad_var : "?");
    }
    bool ok = true;
    for (const cJSON *c = vars ? vars->child : NULL; c && ok; c = c->next) {
        jv v = jv_from_json(&r.arena, c);
        ok = !(v.t == JV_UNDEF) && frame_set(&r, r.globals, c->string, strlen(c->string), v);
    }
    if (!ok) {
        jarena_free(&r.arena);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    if (!jbuf_put(&r.out, "", 0)) ok = false;
    int flow = ok ? exec_body(&r, t->root->body, t->root->nbody, top) : FLOW_ERROR;
    if (flow == FLOW_BREAK || flow == FLOW_CONTINUE) flow = FLOW_OK; // Jinja2 rejects these at parse time
    if (flow != FLOW_OK) {
        st = lc_error(LC_STATUS_INPUT, "%s", r.err[0] ? r.err : "template: render failed (out of memory)");
        free(r.out.p);
    } else {
        *out = r.out.p;
        if (out_len) *out_len = r.out.n;
    }
    jarena_free(&r.arena);
    return st;
}
