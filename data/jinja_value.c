// Jinja values with Python semantics: truthiness, equality, str/repr and
// json.dumps as transformers' tojson calls it.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_internal.h"

struct jarena_block {
    jarena_block *next;
    size_t used, cap;
    max_align_t data[];
};

void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->limit && a->used_total + n > a->limit) return NULL;
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    a->used_total += n;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena *a) {
    while (a->head) {
        jarena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
    a->used_total = 0;
}

bool jbuf_put(jbuf *b, const char *p, size_t n) {
    if (b->limit && b->n + n > b->limit) return false;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool jbuf_puts(jbuf *b, const char *s) { return jbuf_put(b, s, strlen(s)); }

jv jv_str_copy(jarena *a, const char *p, size_t n) {
    char *q = jarena_alloc(a, n + 1);
    if (!q) return jv_undef();
    if (n) memcpy(q, p, n);
    return jv_str(q, n);
}

jlist *jlist_new(jarena *a, size_t cap) {
    jlist *l = jarena_alloc(a, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        l->items = jarena_alloc(a, cap * sizeof(jv));
        if (!l->items) return NULL;
        l->cap = cap;
    }
    return l;
}

bool jlist_push(jarena *a, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jv *items = jarena_alloc(a, cap * sizeof(jv));
        if (!items) return false;
        if (l->n) memcpy(items, l->items, l->n * sizeof(jv));
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = v;
    return true;
}

jdict *jdict_new(jarena *a, int kind) {
    jdict *d = jarena_alloc(a, sizeof *d);
    if (d) d->kind = kind;
    return d;
}

bool jdict_set(jarena *a, jdict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->keys[i], key)) {
            d->vals[i] = val;
            return true;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = jarena_alloc(a, cap * sizeof(jv)), *v = jarena_alloc(a, cap * sizeof(jv));
        if (!k || !v) return false;
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(jv));
            memcpy(v, d->vals, d->n * sizeof(jv));
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return true;
}

const jv *jdict_get(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++) {
        const jv *k = &d->keys[i];
        if (k->t == JV_STR && k->u.s.n == n && memcmp(k->u.s.p, key, n) == 0) return &d->vals[i];
    }
    return NULL;
}

jv jv_list(jlist *l) {
    jv v = {0};
    v.t = JV_LIST;
    v.u.l = l;
    return v;
}

jv jv_dict(jdict *d) {
    jv v = {0};
    v.t = JV_DICT;
    v.u.d = d;
    return v;
}

bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL:
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s.n > 0;
    case JV_LIST: return v.tuple == JV_GENERATOR || v.u.l->n > 0;
    case JV_DICT: return v.u.d->kind != JDICT_PLAIN || v.u.d->n > 0;
    default: return true;
    }
}

bool jv_is_number(jv v) { return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT; }

double jv_num(jv v) { return v.t == JV_FLOAT ? v.u.f : (double)v.u.i; }

// Equality walks nested values: bounded in depth and in work (a template can
// build a value whose parts are shared exponentially often), with Python's
// identity shortcut for the same container.
#define EQ_MAX_DEPTH 200
#define EQ_MAX_WORK 2000000
static _Thread_local int64_t eq_work;
static _Thread_local bool eq_overflow;

static bool equal_rec(jv a, jv b, int depth) {
    if (++eq_work > EQ_MAX_WORK || depth > EQ_MAX_DEPTH) {
        eq_overflow = true;
        return false;
    }
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return a.u.i == b.u.i;
        return jv_num(a) == jv_num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
        if (a.tuple != b.tuple || a.u.l->n != b.u.l->n) return false;
        if (a.u.l == b.u.l) return true;
        if (a.tuple == JV_GENERATOR) return false; // generators compare by identity
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_rec(a.u.l->items[i], b.u.l->items[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.u.d == b.u.d) return true;
        if (a.u.d->kind != JDICT_PLAIN || b.u.d->kind != JDICT_PLAIN) return false;
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            bool found = false;
            for (size_t j = 0; j < b.u.d->n && !found; j++)
                if (equal_rec(a.u.d->keys[i], b.u.d->keys[j], depth + 1)) {
                    if (!equal_rec(a.u.d->vals[i], b.u.d->vals[j], depth + 1)) return false;
                    found = true;
                }
            if (!found) return false;
        }
        return true;
    case JV_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

bool jv_equal(jv a, jv b) {
    eq_work = 0;
    return equal_rec(a, b, 0);
}

bool jv_equal_overflowed(void) {
    bool o = eq_overflow;
    eq_overflow = false;
    return o;
}

size_t jv_utf8_len(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80) k++;
    return k;
}

size_t jv_utf8_offset(const char *p, size_t n, size_t i) {
    size_t k = 0;
    for (size_t b = 0; b < n; b++)
        if (((unsigned char)p[b] & 0xC0) != 0x80) {
            if (k == i) return b;
            k++;
        }
    return n;
}

// Python's float repr: the shortest digits that read back, positional
// between 1e-4 and 1e16, else exponent form with at least two digits.
bool jv_write_float(jbuf *b, double f) {
    if (isnan(f)) return jbuf_puts(b, "nan");
    if (isinf(f)) return jbuf_puts(b, f < 0 ? "-inf" : "inf");
    char tmp[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    // tmp: [-]d.ddde[+-]XX
    char digits[32];
    int nd = 0;
    const char *q = tmp;
    bool neg = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char out[64];
    int o = 0;
    if (neg) out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    return jbuf_put(b, out, o);
}

// Python's str.isprintable, for the characters repr escapes.
static bool cp_printable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
    if ((c >= 0x205F && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0x3000 || c == 0xFEFF) return false;
    if ((c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
    if (c >= 0xE0000 && c <= 0xE007F) return false; // tag characters (Cf)
    return true;
}

static bool write_str_repr(jbuf *b, const char *p, size_t n) {
    char quote = '\'';
    if (memchr(p, '\'', n) && !memchr(p, '"', n)) quote = '"';
    if (!jbuf_put(b, &quote, 1)) return false;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t c = jt_cp_at(p, n, &i);
        char esc[16];
        const char *e = NULL;
        if (c == (uint32_t)quote || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc[2] = 0;
            e = esc;
        } else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (!cp_printable(c)) {
            if (c < 0x100) snprintf(esc, sizeof esc, "\\x%02x", c);
            else if (c < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", c);
            else snprintf(esc, sizeof esc, "\\U%08x", c);
            e = esc;
        }
        if (!(e ? jbuf_puts(b, e) : jbuf_put(b, p + start, i - start))) return false;
    }
    return jbuf_put(b, &quote, 1);
}

static bool write_repr(jbuf *b, jv v, int depth);

bool jv_write_repr(jbuf *b, jv v) { return write_repr(b, v, 0); }

static bool write_repr(jbuf *b, jv v, int depth) {
    if (depth > 200) { // Python stops with a RecursionError too; so do cycles through a namespace
        b->too_deep = true;
        return false;
    }
    switch (v.t) {
    case JV_UNDEF: return true;
    case JV_NONE: return jbuf_puts(b, "None");
    case JV_BOOL: return jbuf_puts(b, v.u.i ? "True" : "False");
    case JV_INT: {
        char tmp[32];
        int k = snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return jbuf_put(b, tmp, k);
    }
    case JV_FLOAT: return jv_write_float(b, v.u.f);
    case JV_STR:
        if (v.tuple) return jbuf_puts(b, "Markup(") && write_str_repr(b, v.u.s.p, v.u.s.n) && jbuf_puts(b, ")");
        return write_str_repr(b, v.u.s.p, v.u.s.n);
    case JV_LIST: {
        if (v.tuple == JV_GENERATOR) {
            b->generator = true;
            return false;
        }
        if (!jbuf_puts(b, v.tuple ? "(" : "[")) return false;
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i && !jbuf_puts(b, ", ")) return false;
            if (!write_repr(b, v.u.l->items[i], depth + 1)) return false;
        }
        if (v.tuple && v.u.l->n == 1 && !jbuf_puts(b, ",")) return false;
        return jbuf_puts(b, v.tuple ? ")" : "]");
    }
    case JV_DICT: {
        if (v.u.d->kind == JDICT_NAMESPACE) {
            if (!jbuf_puts(b, "<Namespace {")) return false;
        } else if (v.u.d->kind == JDICT_LOOP) {
            return jbuf_puts(b, "<LoopContext>");
        } else if (!jbuf_puts(b, "{")) return false;
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i && !jbuf_puts(b, ", ")) return false;
            if (!write_repr(b, v.u.d->keys[i], depth + 1) || !jbuf_puts(b, ": ") || !write_repr(b, v.u.d->vals[i], depth + 1))
                return false;
        }
        return jbuf_puts(b, v.u.d->kind == JDICT_NAMESPACE ? "}>" : "}");
    }
    case JV_FUNC: return jbuf_puts(b, "<function>");
    }
    return true;
}

bool jv_write_str(jbuf *b, jv v) {
    if (v.t == JV_STR) return jbuf_put(b, v.u.s.p, v.u.s.n);
    return jv_write_repr(b, v);
}

static bool write_json_str(jbuf *b, const char *p, size_t n, bool ascii) {
    if (!jbuf_put(b, "\"", 1)) return false;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *e = NULL;
        char esc[16];
        if (ascii && c >= 0x80) { // \uXXXX, astral characters as a surrogate pair
            size_t j = i;
            uint32_t cp = jt_cp_at(p, n, &j);
            if (cp >= 0x10000)
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            if (!jbuf_put(b, p + run, i - run) || !jbuf_puts(b, esc)) return false;
            i = j - 1;
            run = j;
            continue;
        }
        if (c == '"') e = "\\\"";
        else if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == '\b') e = "\\b";
        else if (c == '\f') e = "\\f";
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            e = esc;
        }
        if (e) {
            if (!jbuf_put(b, p + run, i - run) || !jbuf_puts(b, e)) return false;
            run = i + 1;
        }
    }
    return jbuf_put(b, p + run, n - run) && jbuf_put(b, "\"", 1);
}

static bool json_newline(jbuf *b, const char *indent, size_t indent_n, int level) {
    if (!jbuf_put(b, "\n", 1)) return false;
    for (int i = 0; i < level; i++)
        if (!jbuf_put(b, indent, indent_n)) return false;
    return true;
}

// A dict key as json.dumps writes it: strings as they are, numbers, bools and None converted.
static int json_key(jbuf *b, jv k, bool ascii) {
    switch (k.t) {
    case JV_STR: return write_json_str(b, k.u.s.p, k.u.s.n, ascii) ? 0 : -1;
    case JV_NONE: return jbuf_puts(b, "\"null\"") ? 0 : -1;
    case JV_BOOL: return jbuf_puts(b, k.u.i ? "\"true\"" : "\"false\"") ? 0 : -1;
    case JV_INT:
    case JV_FLOAT: {
        jbuf t = {0};
        bool ok = jv_write_repr(&t, k) && jbuf_put(b, "\"", 1) && jbuf_put(b, t.p, t.n) && jbuf_put(b, "\"", 1);
        free(t.p);
        return ok ? 0 : -1;
    }
    default: return 1;
    }
}

static int cmp_str_keys(const jv *a, const jv *b) {
    size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
    int c = memcmp(a->u.s.p, b->u.s.p, n);
    return c ? c : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
}

int jv_write_json(jbuf *b, jv v, const char *indent, size_t indent_n, int level, const char *item_sep,
                  const char *key_sep, bool sort_keys, bool ascii) {
    if (level > 200) return 2;
    switch (v.t) {
    case JV_NONE: return jbuf_puts(b, "null") ? 0 : -1;
    case JV_BOOL: return jbuf_puts(b, v.u.i ? "true" : "false") ? 0 : -1;
    case JV_INT: return jv_write_repr(b, v) ? 0 : -1;
    case JV_FLOAT:
        if (isnan(v.u.f)) return jbuf_puts(b, "NaN") ? 0 : -1;
        if (isinf(v.u.f)) return jbuf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity") ? 0 : -1;
        return jv_write_float(b, v.u.f) ? 0 : -1;
    case JV_STR: return write_json_str(b, v.u.s.p, v.u.s.n, ascii) ? 0 : -1;
    case JV_LIST: {
        if (v.tuple == JV_GENERATOR) return 1;
        size_t n = v.u.l->n;
        if (n == 0) return jbuf_puts(b, "[]") ? 0 : -1;
        if (!jbuf_puts(b, "[")) return -1;
        for (size_t i = 0; i < n; i++) {
            if (i && !jbuf_puts(b, item_sep)) return -1;
            if (indent && !json_newline(b, indent, indent_n, level + 1)) return -1;
            int r = jv_write_json(b, v.u.l->items[i], indent, indent_n, level + 1, item_sep, key_sep, sort_keys, ascii);
            if (r) return r;
        }
        if (indent && !json_newline(b, indent, indent_n, level)) return -1;
        return jbuf_puts(b, "]") ? 0 : -1;
    }
    case JV_DICT: {
        const jdict *d = v.u.d;
        if (d->kind != JDICT_PLAIN) return 1;
        if (d->n == 0) return jbuf_puts(b, "{}") ? 0 : -1;
        size_t order_stack[64], *order = d->n <= 64 ? order_stack : malloc(d->n * sizeof *order);
        if (!order) return -1;
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        int r = 0;
        if (sort_keys) { // insertion sort: dicts here are small; keys must all be strings
            for (size_t i = 0; i < d->n && !r; i++)
                if (d->keys[i].t != JV_STR) r = 1;
            for (size_t i = 1; i < d->n && !r; i++)
                for (size_t j = i; j > 0 && cmp_str_keys(&d->keys[order[j - 1]], &d->keys[order[j]]) > 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        }
        if (!r && !jbuf_puts(b, "{")) r = -1;
        for (size_t k = 0; k < d->n && !r; k++) {
            size_t i = order[k];
            if (k && !jbuf_puts(b, item_sep)) r = -1;
            else if (indent && !json_newline(b, indent, indent_n, level + 1)) r = -1;
            else if ((r = json_key(b, d->keys[i], ascii))) break;
            else if (!jbuf_puts(b, key_sep)) r = -1;
            else r = jv_write_json(b, d->vals[i], indent, indent_n, level + 1, item_sep, key_sep, sort_keys, ascii);
        }
        if (!r && indent && !json_newline(b, indent, indent_n, level)) r = -1;
        if (!r && !jbuf_puts(b, "}")) r = -1;
        if (order != order_stack) free(order);
        return r;
    }
    default: return 1;
    }
}

const char *jv_type_name(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.tuple == JV_GENERATOR ? "generator" : v.tuple ? "tuple" : "list";
    case JV_DICT: return v.u.d->kind == JDICT_NAMESPACE ? "Namespace" : v.u.d->kind == JDICT_LOOP ? "LoopContext" : "dict";
    default: return "function";
    }
}

jv jv_from_json(jarena *a, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return jv_none();
    if (cJSON_IsBool(j)) return jv_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        // JSON gives no int/float distinction here: whole numbers read as Python would read "3".
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return jv_int((int64_t)d);
        return jv_float(d);
    }
    if (cJSON_IsString(j)) return jv_str_copy(a, j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        jlist *l = jlist_new(a, (size_t)cJSON_GetArraySize(j));
        if (!l) return jv_undef();
        for (const cJSON *c = j->child; c; c = c->next)
            if (!jlist_push(a, l, jv_from_json(a, c))) return jv_undef();
        return jv_list(l);
    }
    if (cJSON_IsObject(j)) {
        jdict *d = jdict_new(a, JDICT_PLAIN);
        if (!d) return jv_undef();
        for (const cJSON *c = j->child; c; c = c->next)
            if (!jdict_set(a, d, jv_str_copy(a, c->string, strlen(c->string)), jv_from_json(a, c))) return jv_undef();
        return jv_dict(d);
    }
    return jv_none();
}
