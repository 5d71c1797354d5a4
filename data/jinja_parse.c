// Jinja lexer and parser: template text to a syntax tree, with Jinja2's
// whitespace rules as transformers configures them (trim_blocks: the first
// newline after a block or comment tag goes; lstrip_blocks: spaces and tabs
// from the start of a line to a block or comment tag go; '-' strips all
// whitespace on its side, '+' keeps it) and Jinja2's operator precedence.
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_internal.h"

enum { TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF };

typedef struct tok {
    int kind;
    int line;
    const char *p; // TK_TEXT/TK_NAME/TK_OP: the source; TK_STRING: the unescaped value (arena)
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct parser {
    lc_jinja_template *t;
    const char *src; // normalized source (arena)
    size_t len;
    tok *toks;
    size_t ntok, cap;
    size_t pos;
    int depth;
    int loops; // for loops open around the statement being parsed (macros reset it)
    char err[768];
} parser;

#define MAX_DEPTH 200

static bool perr(parser *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool perr(parser *ps, int line, const char *fmt, ...) {
    if (ps->err[0]) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, sizeof ps->err, "%s:%d: %s", ps->t->name, line, msg);
    return false;
}

static bool push_tok(parser *ps, tok t) {
    if (ps->ntok == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        tok *nt = realloc(ps->toks, cap * sizeof *nt);
        if (!nt) return perr(ps, t.line, "out of memory");
        ps->toks = nt;
        ps->cap = cap;
    }
    ps->toks[ps->ntok++] = t;
    return true;
}

static int line_at(const parser *ps, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && i < ps->len; i++) line += ps->src[i] == '\n';
    return line;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int hexdig(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(uint32_t cp, char *o) {
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

// A string literal at src[*i] (the quote): Python's escapes, as Jinja2 decodes them.
static bool lex_string(parser *ps, size_t *i, int line, tok *out) {
    char q = ps->src[*i];
    size_t j = *i + 1;
    size_t end = j;
    while (end < ps->len && ps->src[end] != q) end += ps->src[end] == '\\' ? 2 : 1;
    if (end >= ps->len) return perr(ps, line, "unterminated string literal");
    char *v = jarena_alloc(&ps->t->arena, end - j + 1);
    if (!v) return perr(ps, line, "out of memory");
    size_t o = 0;
    while (j < end) {
        char c = ps->src[j++];
        if (c != '\\') {
            v[o++] = c;
            continue;
        }
        char e = ps->src[j++];
        switch (e) {
        case '\n': break;
        case '\\': v[o++] = '\\'; break;
        case '\'': v[o++] = '\''; break;
        case '"': v[o++] = '"'; break;
        case 'a': v[o++] = '\a'; break;
        case 'b': v[o++] = '\b'; break;
        case 'f': v[o++] = '\f'; break;
        case 'n': v[o++] = '\n'; break;
        case 'r': v[o++] = '\r'; break;
        case 't': v[o++] = '\t'; break;
        case 'v': v[o++] = '\v'; break;
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++) {
                int h = j < end ? hexdig(ps->src[j]) : -1;
                if (h < 0) return perr(ps, line, "bad \\%c escape in a string literal", e);
                cp = cp * 16 + (uint32_t)h;
                j++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return perr(ps, line, "\\%c escape outside Unicode in a string literal", e);
            o += put_utf8(cp, v + o); // never longer than the escape itself
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && j < end && ps->src[j] >= '0' && ps->src[j] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(ps->src[j++] - '0');
                o += put_utf8(cp, v + o);
            } else { // Python keeps an unknown escape as written
                v[o++] = '\\';
                v[o++] = e;
            }
        }
    }
    v[o] = 0;
    out->kind = TK_STRING;
    out->p = v;
    out->n = o;
    *i = end + 1;
    return true;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                  ".", ",", ":", "|", "(", ")", "[", "]", "{", "}"};

// Tokens inside a tag up to its end; returns the offset after the end marker.
static bool lex_tag(parser *ps, size_t *i, bool block, int *strip_after, bool *trim_nl) {
    char stack[MAX_DEPTH];
    int sp = 0;
    while (true) {
        while (*i < ps->len && is_ws(ps->src[*i])) (*i)++;
        int line = line_at(ps, *i);
        if (*i >= ps->len) return perr(ps, line, "unexpected end of template: an unclosed %s tag", block ? "{%" : "{{");
        const char *s = ps->src + *i;
        size_t rest = ps->len - *i;
        if (sp == 0) {
            const char *end = block ? "%}" : "}}";
            if ((s[0] == '-' || s[0] == '+') && rest >= 3 && memcmp(s + 1, end, 2) == 0) {
                *strip_after = s[0] == '-';
                *trim_nl = false;
                *i += 3;
                return push_tok(ps, (tok){.kind = block ? TK_BLOCK_END : TK_VAR_END, .line = line});
            }
            if (rest >= 2 && memcmp(s, end, 2) == 0) {
                *strip_after = 0;
                *trim_nl = block;
                *i += 2;
                return push_tok(ps, (tok){.kind = block ? TK_BLOCK_END : TK_VAR_END, .line = line});
            }
        }
        tok t = {.line = line};
        if (isalpha((unsigned char)s[0]) || s[0] == '_') {
            size_t n = 1;
            while (n < rest && (isalnum((unsigned char)s[n]) || s[n] == '_')) n++;
            t.kind = TK_NAME;
            t.p = s;
            t.n = n;
            *i += n;
        } else if (isdigit((unsigned char)s[0])) {
            size_t n = 0;
            bool is_float = false;
            char num[64];
            size_t k = 0;
            while (n < rest && (isdigit((unsigned char)s[n]) || s[n] == '_')) {
                if (s[n] != '_' && k < sizeof num - 1) num[k++] = s[n];
                n++;
            }
            if (n + 1 < rest && s[n] == '.' && isdigit((unsigned char)s[n + 1])) {
                is_float = true;
                num[k++] = s[n++];
                while (n < rest && (isdigit((unsigned char)s[n]) || s[n] == '_')) {
                    if (s[n] != '_' && k < sizeof num - 1) num[k++] = s[n];
                    n++;
                }
            }
            if (n < rest && (s[n] == 'e' || s[n] == 'E')) {
                size_t m = n + 1;
                if (m < rest && (s[m] == '+' || s[m] == '-')) m++;
                if (m < rest && isdigit((unsigned char)s[m])) {
                    is_float = true;
                    while (n < m && k < sizeof num - 1) num[k++] = s[n++];
                    while (n < rest && isdigit((unsigned char)s[n])) {
                        if (k < sizeof num - 1) num[k++] = s[n];
                        n++;
                    }
                }
            }
            num[k] = 0;
            errno = 0;
            if (is_float) {
                t.kind = TK_FLOAT;
                t.f = strtod(num, NULL);
            } else {
                t.kind = TK_INT;
                t.i = strtoll(num, NULL, 10);
                if (errno) return perr(ps, line, "integer literal %s too large", num);
            }
            *i += n;
        } else if (s[0] == '\'' || s[0] == '"') {
            if (!lex_string(ps, i, line, &t)) return false;
        } else {
            size_t k = 0;
            for (; k < sizeof OPS / sizeof *OPS; k++) {
                size_t n = strlen(OPS[k]);
                if (rest >= n && memcmp(s, OPS[k], n) == 0) break;
            }
            if (k == sizeof OPS / sizeof *OPS) return perr(ps, line, "unexpected character '%c'", s[0]);
            t.kind = TK_OP;
            t.p = s;
            t.n = strlen(OPS[k]);
            char c = s[0];
            if (t.n == 1 && (c == '(' || c == '[' || c == '{')) {
                if (sp == MAX_DEPTH) return perr(ps, line, "brackets nested too deep");
                stack[sp++] = c;
            } else if (t.n == 1 && (c == ')' || c == ']' || c == '}')) {
                char want = c == ')' ? '(' : c == ']' ? '[' : '{';
                if (sp == 0 || stack[sp - 1] != want) return perr(ps, line, "unexpected '%c'", c);
                sp--;
            }
            *i += t.n;
        }
        if (!push_tok(ps, t)) return false;
    }
}

static bool lex(parser *ps) {
    size_t i = 0;
    int strip_next = 0;     // '-' at the previous tag's end: strip leading whitespace
    bool trim_nl = false;   // trim_blocks: drop one newline
    bool line_start = true; // the previous tag ended a line (or this is the start)
    while (i <= ps->len) {
        // the next tag start
        size_t j = i;
        const char *open = NULL;
        while (j + 1 < ps->len) {
            if (ps->src[j] == '{' && (ps->src[j + 1] == '{' || ps->src[j + 1] == '%' || ps->src[j + 1] == '#')) {
                open = ps->src + j;
                break;
            }
            j++;
        }
        if (!open) j = ps->len;
        size_t ts = i, te = j; // the text between
        if (strip_next)
            while (ts < te && is_ws(ps->src[ts])) ts++;
        else if (trim_nl && ts < te && ps->src[ts] == '\n')
            ts++;
        char kind = open ? open[1] : 0;
        char sign = open && j + 2 < ps->len ? ps->src[j + 2] : 0;
        if (open && sign == '-') {
            while (te > ts && is_ws(ps->src[te - 1])) te--;
        } else if (open && kind != '{' && sign != '+') {
            // lstrip_blocks: whitespace from the line start to the tag
            size_t l = te;
            while (l > ts && ps->src[l - 1] != '\n') l--;
            bool at_line = l > ts || line_start;
            bool blank = l < te;
            for (size_t k = l; k < te && blank; k++)
                if (!is_ws(ps->src[k])) blank = false;
            if (at_line && blank) te = l;
        }
        if (te > ts && !push_tok(ps, (tok){.kind = TK_TEXT, .line = line_at(ps, ts), .p = ps->src + ts, .n = te - ts}))
            return false;
        if (!open) break;
        int line = line_at(ps, j);
        i = j + 2 + (sign == '-' || sign == '+');
        strip_next = 0;
        trim_nl = false;
        if (kind == '#') {
            const char *end = NULL;
            for (size_t k = i; k + 1 < ps->len; k++)
                if (ps->src[k] == '#' && ps->src[k + 1] == '}') {
                    end = ps->src + k;
                    break;
                }
            if (!end) return perr(ps, line, "unclosed comment");
            size_t e = (size_t)(end - ps->src);
            char before = e > i ? ps->src[e - 1] : 0;
            if (before == '-') strip_next = 1;
            else if (before != '+') trim_nl = true;
            i = e + 2;
        } else {
            bool block = kind == '%';
            if (!push_tok(ps, (tok){.kind = block ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, .line = line})) return false;
            // {% raw %}: text up to {% endraw %} as it is
            size_t k = i;
            while (k < ps->len && is_ws(ps->src[k])) k++;
            if (block && ps->len - k >= 3 && memcmp(ps->src + k, "raw", 3) == 0) {
                size_t m = k + 3;
                while (m < ps->len && is_ws(ps->src[m])) m++;
                bool dash = m < ps->len && ps->src[m] == '-';
                if (dash) m++;
                if (ps->len - m >= 2 && memcmp(ps->src + m, "%}", 2) == 0) {
                    ps->ntok--; // no block token for raw
                    size_t body = m + 2;
                    if (dash) while (body < ps->len && is_ws(ps->src[body])) body++;
                    else if (body < ps->len && ps->src[body] == '\n') body++;
                    const char *endraw = NULL;
                    size_t close = 0;
                    for (size_t q = body; q + 1 < ps->len && !endraw; q++) {
                        if (ps->src[q] != '{' || ps->src[q + 1] != '%') continue;
                        size_t r = q + 2;
                        if (r < ps->len && (ps->src[r] == '-' || ps->src[r] == '+')) r++;
                        while (r < ps->len && is_ws(ps->src[r])) r++;
                        if (ps->len - r >= 6 && memcmp(ps->src + r, "endraw", 6) == 0) {
                            r += 6;
                            while (r < ps->len && is_ws(ps->src[r])) r++;
                            int sa = r < ps->len && ps->src[r] == '-';
                            if (r < ps->len && (ps->src[r] == '-' || ps->src[r] == '+')) r++;
                            if (ps->len - r >= 2 && memcmp(ps->src + r, "%}", 2) == 0) {
                                endraw = ps->src + q;
                                close = r + 2;
                                strip_next = sa;
                                trim_nl = !sa;
                            }
                        }
                    }
                    if (!endraw) return perr(ps, line, "unclosed raw block");
                    size_t re = (size_t)(endraw - ps->src);
                    if (ps->src[re + 2] == '-')
                        while (re > body && is_ws(ps->src[re - 1])) re--;
                    if (re > body &&
                        !push_tok(ps, (tok){.kind = TK_TEXT, .line = line_at(ps, body), .p = ps->src + body, .n = re - body}))
                        return false;
                    i = close;
                    line_start = ps->src[i - 1] == '\n';
                    continue;
                }
            }
            if (!lex_tag(ps, &i, block, &strip_next, &trim_nl)) return false;
        }
        line_start = trim_nl && i < ps->len && ps->src[i] == '\n';
    }
    return push_tok(ps, (tok){.kind = TK_EOF, .line = line_at(ps, ps->len)});
}

// --- parser ---

static tok *cur(parser *ps) { return &ps->toks[ps->pos]; }
static bool is_op(const tok *t, const char *op) { return t->kind == TK_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0; }
static bool is_name(const tok *t, const char *name) {
    return t->kind == TK_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}
static bool skip_op(parser *ps, const char *op) {
    if (!is_op(cur(ps), op)) return false;
    ps->pos++;
    return true;
}
static bool skip_name(parser *ps, const char *name) {
    if (!is_name(cur(ps), name)) return false;
    ps->pos++;
    return true;
}

static const char *tok_desc(const tok *t, char *buf, size_t cap) {
    switch (t->kind) {
    case TK_EOF: return "end of template";
    case TK_BLOCK_END: return "end of statement block";
    case TK_VAR_END: return "end of print statement";
    case TK_STRING: return "string";
    case TK_INT:
    case TK_FLOAT: return "number";
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p); return buf;
    }
}

static bool expect_op(parser *ps, const char *op) {
    if (skip_op(ps, op)) return true;
    char b[64];
    return perr(ps, cur(ps)->line, "expected '%s', got %s", op, tok_desc(cur(ps), b, sizeof b));
}

static jnode *node(parser *ps, int kind, int line) {
    jnode *n = jarena_alloc(&ps->t->arena, sizeof *n);
    if (!n) {
        perr(ps, line, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    return n;
}

// Growable node array in the arena.
typedef struct nvec {
    jnode **v;
    int n, cap;
} nvec;

static bool nvec_push(parser *ps, nvec *a, jnode *x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        jnode **v = jarena_alloc(&ps->t->arena, (size_t)cap * sizeof *v);
        if (!v) return perr(ps, x ? x->line : 0, "out of memory");
        if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

typedef struct svec {
    const char **v;
    int n, cap;
} svec;

static bool svec_push(parser *ps, svec *a, const char *p, size_t n) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        const char **v = jarena_alloc(&ps->t->arena, (size_t)cap * sizeof *v);
        if (!v) return perr(ps, 0, "out of memory");
        if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    char *s = jarena_alloc(&ps->t->arena, n + 1);
    if (!s) return perr(ps, 0, "out of memory");
    memcpy(s, p, n);
    a->v[a->n++] = s;
    return true;
}

static jnode *parse_expr(parser *ps, bool with_cond);
static jnode *parse_unary(parser *ps, bool with_filter);
static jnode *parse_primary(parser *ps);

// Call arguments after '(': positional into args, keyword into names/args2.
static bool parse_call_args(parser *ps, jnode *n) {
    nvec args = {0}, kwv = {0};
    svec kwn = {0};
    while (!is_op(cur(ps), ")")) {
        if (args.n + kwv.n > 0 && !expect_op(ps, ",")) return false;
        if (is_op(cur(ps), ")")) break;
        tok *t = cur(ps);
        if (t->kind == TK_NAME && is_op(&ps->toks[ps->pos + 1], "=")) {
            if (!svec_push(ps, &kwn, t->p, t->n)) return false;
            ps->pos += 2;
            jnode *v = parse_expr(ps, true);
            if (!v || !nvec_push(ps, &kwv, v)) return false;
        } else {
            if (kwv.n) return perr(ps, t->line, "a positional argument after keyword arguments");
            jnode *v = parse_expr(ps, true);
            if (!v || !nvec_push(ps, &args, v)) return false;
        }
    }
    ps->pos++;
    n->args = args.v;
    n->nargs = args.n;
    n->args2 = kwv.v;
    n->nargs2 = kwv.n;
    n->names = kwn.v;
    n->nnames = kwn.n;
    return true;
}

static jnode *parse_postfix(parser *ps, jnode *e) {
    while (e) {
        tok *t = cur(ps);
        if (is_op(t, ".")) {
            ps->pos++;
            tok *nt = cur(ps);
            jnode *n;
            if (nt->kind == TK_NAME) {
                n = node(ps, JE_ATTR, t->line);
                if (!n) return NULL;
                n->s = nt->p;
                n->sn = nt->n;
            } else if (nt->kind == TK_INT) { // x.0 is x[0]
                n = node(ps, JE_ITEM, t->line);
                jnode *k = node(ps, JE_LIT, t->line);
                if (!n || !k) return NULL;
                k->lit = jv_int(nt->i);
                n->b = k;
            } else {
                char b[64];
                perr(ps, t->line, "expected an attribute name after '.', got %s", tok_desc(nt, b, sizeof b));
                return NULL;
            }
            ps->pos++;
            n->a = e;
            e = n;
        } else if (is_op(t, "[")) {
            ps->pos++;
            jnode *parts[3] = {0};
            int np = 0;
            bool slice = false;
            while (true) {
                if (!is_op(cur(ps), ":") && !is_op(cur(ps), "]")) {
                    parts[np] = parse_expr(ps, true);
                    if (!parts[np]) return NULL;
                }
                if (is_op(cur(ps), ":")) {
                    if (np == 2) {
                        perr(ps, t->line, "too many ':' in a subscript");
                        return NULL;
                    }
                    slice = true;
                    np++;
                    ps->pos++;
                    continue;
                }
                break;
            }
            if (!expect_op(ps, "]")) return NULL;
            jnode *n = node(ps, slice ? JE_SLICE : JE_ITEM, t->line);
            if (!n) return NULL;
            n->a = e;
            if (slice) memcpy(n->slice, parts, sizeof parts);
            else if (!parts[0]) {
                perr(ps, t->line, "an empty subscript");
                return NULL;
            } else
                n->b = parts[0];
            e = n;
        } else if (is_op(t, "(")) {
            ps->pos++;
            jnode *n = node(ps, JE_CALL, t->line);
            if (!n || !parse_call_args(ps, n)) return NULL;
            n->a = e;
            e = n;
        } else
            break;
    }
    return e;
}

// Filters and tests after an operand: x|f(args)|g, x is [not] t(args)
static jnode *parse_filter_test(parser *ps, jnode *e) {
    while (e) {
        tok *t = cur(ps);
        if (is_op(t, "|")) {
            ps->pos++;
            tok *nt = cur(ps);
            if (nt->kind != TK_NAME) {
                perr(ps, t->line, "expected a filter name after '|'");
                return NULL;
            }
            jnode *n = node(ps, JE_FILTER, t->line);
            if (!n) return NULL;
            n->s = nt->p;
            n->sn = nt->n;
            ps->pos++;
            while (is_op(cur(ps), ".")) { // dotted filter names are not used by templates
                perr(ps, t->line, "unknown filter '%.*s.'", (int)nt->n, nt->p);
                return NULL;
            }
            if (skip_op(ps, "(") && !parse_call_args(ps, n)) return NULL;
            n->a = e;
            e = n;
            e = parse_postfix(ps, e);
        } else if (is_name(t, "is")) {
            ps->pos++;
            jnode *n = node(ps, JE_TEST, t->line);
            if (!n) return NULL;
            if (skip_name(ps, "not")) n->op = 1;
            tok *nt = cur(ps);
            if (nt->kind != TK_NAME && !is_op(nt, "==") && !is_op(nt, "!=") && !is_op(nt, "<") && !is_op(nt, ">") &&
                !is_op(nt, "<=") && !is_op(nt, ">=")) {
                perr(ps, t->line, "expected a test name after 'is'");
                return NULL;
            }
            n->s = nt->p;
            n->sn = nt->n;
            ps->pos++;
            tok *at = cur(ps);
            if (is_op(at, "(")) {
                ps->pos++;
                if (!parse_call_args(ps, n)) return NULL;
            } else if ((at->kind == TK_NAME || at->kind == TK_STRING || at->kind == TK_INT || at->kind == TK_FLOAT ||
                        is_op(at, "[") || is_op(at, "{")) &&
                       !is_name(at, "else") && !is_name(at, "or") && !is_name(at, "and")) {
                jnode *arg = parse_primary(ps);
                arg = parse_postfix(ps, arg);
                if (!arg) return NULL;
                nvec a = {0};
                if (!nvec_push(ps, &a, arg)) return NULL;
                n->args = a.v;
                n->nargs = 1;
            }
            n->a = e;
            e = n;
        } else
            break;
    }
    return e;
}

static jnode *parse_primary(parser *ps) {
    tok *t = cur(ps);
    jnode *n = NULL;
    if (++ps->depth > MAX_DEPTH) {
        perr(ps, t->line, "expression nested too deep");
        return NULL;
    }
    switch (t->kind) {
    case TK_NAME:
        n = node(ps, JE_LIT, t->line);
        if (!n) break;
        if (is_name(t, "true") || is_name(t, "True")) n->lit = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->lit = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->lit = jv_none();
        else {
            n->kind = JE_NAME;
            n->s = t->p;
            n->sn = t->n;
        }
        ps->pos++;
        break;
    case TK_STRING: {
        // adjacent literals concatenate
        size_t total = 0;
        size_t k = ps->pos;
        for (; ps->toks[k].kind == TK_STRING; k++) total += ps->toks[k].n;
        char *s = jarena_alloc(&ps->t->arena, total + 1);
        n = node(ps, JE_LIT, t->line);
        if (!s || !n) return NULL;
        size_t o = 0;
        for (; ps->pos < k; ps->pos++) {
            memcpy(s + o, ps->toks[ps->pos].p, ps->toks[ps->pos].n);
            o += ps->toks[ps->pos].n;
        }
        n->lit = jv_str(s, total);
        break;
    }
    case TK_INT:
    case TK_FLOAT:
        n = node(ps, JE_LIT, t->line);
        if (!n) break;
        n->lit = t->kind == TK_INT ? jv_int(t->i) : jv_float(t->f);
        ps->pos++;
        break;
    case TK_OP:
        if (is_op(t, "(")) {
            ps->pos++;
            if (skip_op(ps, ")")) {
                n = node(ps, JE_TUPLE, t->line);
                break;
            }
            jnode *first = parse_expr(ps, true);
            if (!first) return NULL;
            if (is_op(cur(ps), ",")) {
                nvec items = {0};
                if (!nvec_push(ps, &items, first)) return NULL;
                while (skip_op(ps, ",")) {
                    if (is_op(cur(ps), ")")) break;
                    jnode *x = parse_expr(ps, true);
                    if (!x || !nvec_push(ps, &items, x)) return NULL;
                }
                n = node(ps, JE_TUPLE, t->line);
                if (!n) return NULL;
                n->args = items.v;
                n->nargs = items.n;
            } else
                n = first;
            if (!expect_op(ps, ")")) return NULL;
        } else if (is_op(t, "[")) {
            ps->pos++;
            nvec items = {0};
            while (!is_op(cur(ps), "]")) {
                if (items.n && !expect_op(ps, ",")) return NULL;
                if (is_op(cur(ps), "]")) break;
                jnode *x = parse_expr(ps, true);
                if (!x || !nvec_push(ps, &items, x)) return NULL;
            }
            ps->pos++;
            n = node(ps, JE_LIST, t->line);
            if (!n) return NULL;
            n->args = items.v;
            n->nargs = items.n;
        } else if (is_op(t, "{")) {
            ps->pos++;
            nvec keys = {0}, vals = {0};
            while (!is_op(cur(ps), "}")) {
                if (keys.n && !expect_op(ps, ",")) return NULL;
                if (is_op(cur(ps), "}")) break;
                jnode *k = parse_expr(ps, true);
                if (!k || !expect_op(ps, ":")) return NULL;
                jnode *v = parse_expr(ps, true);
                if (!v || !nvec_push(ps, &keys, k) || !nvec_push(ps, &vals, v)) return NULL;
            }
            ps->pos++;
            n = node(ps, JE_DICT, t->line);
            if (!n) return NULL;
            n->args = keys.v;
            n->nargs = keys.n;
            n->args2 = vals.v;
            n->nargs2 = vals.n;
        } else {
            char b[64];
            perr(ps, t->line, "unexpected %s", tok_desc(t, b, sizeof b));
        }
        break;
    default: {
        char b[64];
        perr(ps, t->line, "unexpected %s", tok_desc(t, b, sizeof b));
    }
    }
    ps->depth--;
    return n;
}

static jnode *parse_unary(parser *ps, bool with_filter) {
    tok *t = cur(ps);
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        ps->pos++;
        if (++ps->depth > MAX_DEPTH) {
            perr(ps, t->line, "expression nested too deep");
            return NULL;
        }
        jnode *x = parse_unary(ps, false);
        ps->depth--;
        if (!x) return NULL;
        n = node(ps, is_op(t, "-") ? JE_NEG : JE_POS, t->line);
        if (!n) return NULL;
        n->a = x;
    } else {
        n = parse_primary(ps);
        n = parse_postfix(ps, n);
    }
    if (with_filter) n = parse_filter_test(ps, n);
    return n;
}

static jnode *binop(parser *ps, int op, jnode *a, jnode *b, int line) {
    if (!a || !b) return NULL;
    jnode *n = node(ps, JE_BINOP, line);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *ps) {
    jnode *a = parse_unary(ps, true);
    while (a && is_op(cur(ps), "**")) {
        int line = cur(ps)->line;
        ps->pos++;
        a = binop(ps, JOP_POW, a, parse_unary(ps, true), line);
    }
    return a;
}

static jnode *parse_math2(parser *ps) {
    jnode *a = parse_pow(ps);
    while (a) {
        tok *t = cur(ps);
        int op = is_op(t, "*") ? JOP_MUL : is_op(t, "/") ? JOP_DIV : is_op(t, "//") ? JOP_FLOORDIV : is_op(t, "%") ? JOP_MOD : -1;
        if (op < 0) break;
        ps->pos++;
        a = binop(ps, op, a, parse_pow(ps), t->line);
    }
    return a;
}

static jnode *parse_concat(parser *ps) {
    jnode *a = parse_math2(ps);
    while (a && is_op(cur(ps), "~")) {
        int line = cur(ps)->line;
        ps->pos++;
        a = binop(ps, JOP_CONCAT, a, parse_math2(ps), line);
    }
    return a;
}

static jnode *parse_math1(parser *ps) {
    jnode *a = parse_concat(ps);
    while (a) {
        tok *t = cur(ps);
        int op = is_op(t, "+") ? JOP_ADD : is_op(t, "-") ? JOP_SUB : -1;
        if (op < 0) break;
        ps->pos++;
        a = binop(ps, op, a, parse_concat(ps), t->line);
    }
    return a;
}

static jnode *parse_compare(parser *ps) {
    jnode *a = parse_math1(ps);
    if (!a) return NULL;
    nvec operands = {0};
    int ops[64];
    int line = cur(ps)->line;
    while (true) {
        tok *t = cur(ps);
        int op = is_op(t, "==") ? JOP_EQ : is_op(t, "!=") ? JOP_NE : is_op(t, "<") ? JOP_LT : is_op(t, "<=") ? JOP_LE
               : is_op(t, ">") ? JOP_GT : is_op(t, ">=") ? JOP_GE : is_name(t, "in") ? JOP_IN : -1;
        if (op < 0 && is_name(t, "not") && is_name(&ps->toks[ps->pos + 1], "in")) {
            op = JOP_NOTIN;
            ps->pos++;
        }
        if (op < 0) break;
        ps->pos++;
        if (operands.n == 64) {
            perr(ps, t->line, "too many chained comparisons");
            return NULL;
        }
        ops[operands.n] = op;
        jnode *b = parse_math1(ps);
        if (!b || !nvec_push(ps, &operands, b)) return NULL;
    }
    if (!operands.n) return a;
    jnode *n = node(ps, JE_COMPARE, line);
    int *o = jarena_alloc(&ps->t->arena, (size_t)operands.n * sizeof *o);
    if (!n || !o) return NULL;
    memcpy(o, ops, (size_t)operands.n * sizeof *o);
    n->a = a;
    n->args = operands.v;
    n->nargs = operands.n;
    n->ops = o;
    return n;
}

static jnode *parse_not(parser *ps) {
    tok *t = cur(ps);
    if (is_name(t, "not")) {
        ps->pos++;
        if (++ps->depth > MAX_DEPTH) {
            perr(ps, t->line, "expression nested too deep");
            return NULL;
        }
        jnode *x = parse_not(ps);
        ps->depth--;
        if (!x) return NULL;
        jnode *n = node(ps, JE_NOT, t->line);
        if (n) n->a = x;
        return n;
    }
    return parse_compare(ps);
}

static jnode *parse_and(parser *ps) {
    jnode *a = parse_not(ps);
    while (a && is_name(cur(ps), "and")) {
        int line = cur(ps)->line;
        ps->pos++;
        jnode *b = parse_not(ps);
        jnode *n = b ? node(ps, JE_AND, line) : NULL;
        if (!n) return NULL;
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

static jnode *parse_or(parser *ps) {
    jnode *a = parse_and(ps);
    while (a && is_name(cur(ps), "or")) {
        int line = cur(ps)->line;
        ps->pos++;
        jnode *b = parse_and(ps);
        jnode *n = b ? node(ps, JE_OR, line) : NULL;
        if (!n) return NULL;
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

static jnode *parse_expr(parser *ps, bool with_cond) {
    if (++ps->depth > MAX_DEPTH) {
        perr(ps, cur(ps)->line, "expression nested too deep");
        return NULL;
    }
    jnode *a = parse_or(ps);
    while (with_cond && a && is_name(cur(ps), "if")) {
        int line = cur(ps)->line;
        ps->pos++;
        jnode *cond = parse_or(ps);
        if (!cond) return NULL;
        jnode *other = NULL;
        if (skip_name(ps, "else") && !(other = parse_expr(ps, true))) return NULL;
        jnode *n = node(ps, JE_COND, line);
        if (!n) return NULL;
        n->a = a;
        n->b = cond;
        n->c = other;
        a = n;
    }
    ps->depth--;
    return a;
}

// An expression or an unparenthesized tuple (for loop iterables, set values).
static jnode *parse_tuple(parser *ps, bool with_cond) {
    int line = cur(ps)->line;
    jnode *first = parse_expr(ps, with_cond);
    if (!first || !is_op(cur(ps), ",")) return first;
    nvec items = {0};
    if (!nvec_push(ps, &items, first)) return NULL;
    while (skip_op(ps, ",")) {
        tok *t = cur(ps);
        if (t->kind == TK_BLOCK_END || t->kind == TK_VAR_END || is_name(t, "if")) break;
        jnode *x = parse_expr(ps, with_cond);
        if (!x || !nvec_push(ps, &items, x)) return NULL;
    }
    jnode *n = node(ps, JE_TUPLE, line);
    if (!n) return NULL;
    n->args = items.v;
    n->nargs = items.n;
    return n;
}

// --- statements ---

static bool parse_body(parser *ps, nvec *out, const char *const *ends, int nends, int *which);

static bool block_end(parser *ps) {
    if (cur(ps)->kind == TK_BLOCK_END) {
        ps->pos++;
        return true;
    }
    char b[64];
    return perr(ps, cur(ps)->line, "expected end of statement block, got %s", tok_desc(cur(ps), b, sizeof b));
}

static bool parse_targets(parser *ps, svec *names) {
    bool paren = skip_op(ps, "(");
    do {
        tok *t = cur(ps);
        if (t->kind != TK_NAME) return perr(ps, t->line, "expected a variable name");
        if (!svec_push(ps, names, t->p, t->n)) return false;
        ps->pos++;
    } while (skip_op(ps, ","));
    return !paren || expect_op(ps, ")");
}

static jnode *parse_stmt(parser *ps) {
    tok *t = cur(ps);
    int line = t->line;
    if (t->kind != TK_NAME) {
        perr(ps, line, "expected a statement name");
        return NULL;
    }
    ps->pos++;
    jnode *n = NULL;
    if (is_name(t, "if")) {
        n = node(ps, JN_IF, line);
        if (!n || !(n->a = parse_tuple(ps, true)) || !block_end(ps)) return NULL;
        jnode *at = n;
        while (true) {
            static const char *const ends[] = {"elif", "else", "endif"};
            nvec body = {0};
            int which;
            if (!parse_body(ps, &body, ends, 3, &which)) return NULL;
            at->body = body.v;
            at->nbody = body.n;
            int wl = cur(ps)->line;
            ps->pos++;
            if (which == 0) {
                jnode *e = node(ps, JN_IF, wl);
                if (!e || !(e->a = parse_tuple(ps, true)) || !block_end(ps)) return NULL;
                at->orelse = jarena_alloc(&ps->t->arena, sizeof(jnode *));
                if (!at->orelse) return NULL;
                at->orelse[0] = e;
                at->norelse = 1;
                at = e;
                continue;
            }
            if (!block_end(ps)) return NULL;
            if (which == 1) {
                static const char *const end[] = {"endif"};
                nvec other = {0};
                if (!parse_body(ps, &other, end, 1, &which)) return NULL;
                at->orelse = other.v;
                at->norelse = other.n;
                ps->pos++;
                if (!block_end(ps)) return NULL;
            }
            break;
        }
    } else if (is_name(t, "for")) {
        n = node(ps, JN_FOR, line);
        svec names = {0};
        if (!n || !parse_targets(ps, &names)) return NULL;
        n->names = names.v;
        n->nnames = names.n;
        if (!skip_name(ps, "in")) {
            perr(ps, line, "expected 'in' in a for loop");
            return NULL;
        }
        if (!(n->a = parse_tuple(ps, false))) return NULL;
        if (skip_name(ps, "if") && !(n->c = parse_expr(ps, false))) return NULL;
        if (is_name(cur(ps), "recursive")) {
            perr(ps, line, "recursive for loops are not supported");
            return NULL;
        }
        if (!block_end(ps)) return NULL;
        static const char *const ends[] = {"else", "endfor"};
        nvec body = {0};
        int which;
        ps->loops++;
        bool ok = parse_body(ps, &body, ends, 2, &which);
        ps->loops--;
        if (!ok) return NULL;
        n->body = body.v;
        n->nbody = body.n;
        ps->pos++;
        if (!block_end(ps)) return NULL;
        if (which == 0) {
            static const char *const end[] = {"endfor"};
            nvec other = {0};
            if (!parse_body(ps, &other, end, 1, &which)) return NULL;
            n->orelse = other.v;
            n->norelse = other.n;
            ps->pos++;
            if (!block_end(ps)) return NULL;
        }
    } else if (is_name(t, "set")) {
        tok *nt = cur(ps);
        if (nt->kind == TK_NAME && is_op(&ps->toks[ps->pos + 1], ".")) {
            tok *at = &ps->toks[ps->pos + 2];
            if (at->kind != TK_NAME) {
                perr(ps, line, "expected an attribute name in set");
                return NULL;
            }
            n = node(ps, JN_SET, line);
            if (!n) return NULL;
            n->s = nt->p;
            n->sn = nt->n;
            n->s2 = at->p;
            n->s2n = at->n;
            ps->pos += 3;
            if (!expect_op(ps, "=") || !(n->a = parse_tuple(ps, true)) || !block_end(ps)) return NULL;
            return n;
        }
        svec names = {0};
        if (!parse_targets(ps, &names)) return NULL;
        if (skip_op(ps, "=")) {
            n = node(ps, JN_SET, line);
            if (!n) return NULL;
            n->names = names.v;
            n->nnames = names.n;
            if (!(n->a = parse_tuple(ps, true)) || !block_end(ps)) return NULL;
            return n;
        }
        if (names.n != 1) {
            perr(ps, line, "expected '=' in set");
            return NULL;
        }
        n = node(ps, JN_SET_BLOCK, line);
        if (!n) return NULL;
        n->s = names.v[0];
        n->sn = strlen(names.v[0]);
        if (is_op(cur(ps), "|")) {
            jnode *chain = parse_filter_test(ps, node(ps, JE_LIT, line));
            if (!chain) return NULL;
            n->a = chain;
        }
        if (!block_end(ps)) return NULL;
        static const char *const end[] = {"endset"};
        nvec body = {0};
        int which;
        if (!parse_body(ps, &body, end, 1, &which)) return NULL;
        n->body = body.v;
        n->nbody = body.n;
        ps->pos++;
        if (!block_end(ps)) return NULL;
    } else if (is_name(t, "macro")) {
        n = node(ps, JN_MACRO, line);
        tok *nt = cur(ps);
        if (!n || nt->kind != TK_NAME) {
            perr(ps, line, "expected a macro name");
            return NULL;
        }
        n->s = nt->p;
        n->sn = nt->n;
        ps->pos++;
        if (!expect_op(ps, "(")) return NULL;
        svec params = {0};
        nvec defs = {0};
        while (!is_op(cur(ps), ")")) {
            if (params.n && !expect_op(ps, ",")) return NULL;
            if (is_op(cur(ps), ")")) break;
            tok *pt = cur(ps);
            if (pt->kind != TK_NAME) {
                perr(ps, pt->line, "expected a parameter name");
                return NULL;
            }
            if (!svec_push(ps, &params, pt->p, pt->n)) return NULL;
            ps->pos++;
            jnode *d = NULL;
            if (skip_op(ps, "=") && !(d = parse_expr(ps, true))) return NULL;
            if (!nvec_push(ps, &defs, d)) return NULL;
        }
        ps->pos++;
        n->names = params.v;
        n->nnames = params.n;
        n->args = defs.v;
        n->nargs = defs.n;
        if (!block_end(ps)) return NULL;
        static const char *const end[] = {"endmacro"};
        nvec body = {0};
        int which, loops = ps->loops;
        ps->loops = 0;
        bool ok = parse_body(ps, &body, end, 1, &which);
        ps->loops = loops;
        if (!ok) return NULL;
        n->body = body.v;
        n->nbody = body.n;
        ps->pos++;
        if (cur(ps)->kind == TK_NAME) ps->pos++; // {% endmacro name %}
        if (!block_end(ps)) return NULL;
    } else if (is_name(t, "filter")) {
        n = node(ps, JN_FILTER_BLOCK, line);
        tok *nt = cur(ps);
        if (!n || nt->kind != TK_NAME) {
            perr(ps, line, "expected a filter name");
            return NULL;
        }
        // the chain "name(args)|more" as filters over a placeholder operand
        jnode *f = node(ps, JE_FILTER, line);
        if (!f) return NULL;
        f->s = nt->p;
        f->sn = nt->n;
        ps->pos++;
        if (skip_op(ps, "(") && !parse_call_args(ps, f)) return NULL;
        if (!(n->a = parse_filter_test(ps, f))) return NULL;
        if (!block_end(ps)) return NULL;
        static const char *const end[] = {"endfilter"};
        nvec body = {0};
        int which;
        if (!parse_body(ps, &body, end, 1, &which)) return NULL;
        n->body = body.v;
        n->nbody = body.n;
        ps->pos++;
        if (!block_end(ps)) return NULL;
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        if (!ps->loops) {
            perr(ps, line, "'%s' outside a loop", is_name(t, "break") ? "break" : "continue");
            return NULL;
        }
        n = node(ps, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, line);
        if (!n || !block_end(ps)) return NULL;
    } else if (is_name(t, "generation")) { // transformers' assistant-mask marker: renders its body
        n = node(ps, JN_BLOCK, line);
        if (!n || !block_end(ps)) return NULL;
        static const char *const end[] = {"endgeneration"};
        nvec body = {0};
        int which;
        if (!parse_body(ps, &body, end, 1, &which)) return NULL;
        n->body = body.v;
        n->nbody = body.n;
        ps->pos++;
        if (!block_end(ps)) return NULL;
    } else {
        perr(ps, line, "unknown or unsupported tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        return NULL;
    }
    return n;
}

// Statements up to one of `ends` (left unconsumed, *which its index) or, with
// nends 0, to the end of the template.
static bool parse_body(parser *ps, nvec *out, const char *const *ends, int nends, int *which) {
    if (++ps->depth > MAX_DEPTH) return perr(ps, cur(ps)->line, "blocks nested too deep");
    while (true) {
        tok *t = cur(ps);
        if (t->kind == TK_EOF) {
            ps->depth--;
            if (nends == 0) return true;
            return perr(ps, t->line, "unexpected end of template: expected '%s'", ends[nends - 1]);
        }
        if (t->kind == TK_TEXT) {
            jnode *n = node(ps, JN_TEXT, t->line);
            if (!n) return false;
            n->s = t->p;
            n->sn = t->n;
            if (!nvec_push(ps, out, n)) return false;
            ps->pos++;
        } else if (t->kind == TK_VAR_BEGIN) {
            ps->pos++;
            jnode *n = node(ps, JN_OUTPUT, t->line);
            if (!n || !(n->a = parse_tuple(ps, true))) return false;
            if (cur(ps)->kind != TK_VAR_END) {
                char b[64];
                return perr(ps, cur(ps)->line, "expected end of print statement, got %s", tok_desc(cur(ps), b, sizeof b));
            }
            ps->pos++;
            if (!nvec_push(ps, out, n)) return false;
        } else if (t->kind == TK_BLOCK_BEGIN) {
            ps->pos++;
            tok *nt = cur(ps);
            for (int k = 0; k < nends; k++)
                if (is_name(nt, ends[k])) {
                    *which = k;
                    ps->depth--;
                    return true;
                }
            static const char *const closers[] = {"endif", "endfor", "endmacro", "endset", "endfilter", "elif", "else",
                                                  "endgeneration"};
            for (size_t k = 0; k < sizeof closers / sizeof *closers; k++)
                if (is_name(nt, closers[k]))
                    return perr(ps, nt->line, "unexpected '%s'%s%s", closers[k], nends ? ", expected " : "",
                                nends ? ends[nends - 1] : "");
            jnode *n = parse_stmt(ps);
            if (!n || !nvec_push(ps, out, n)) return false;
        } else {
            char b[64];
            return perr(ps, t->line, "unexpected %s", tok_desc(t, b, sizeof b));
        }
    }
}

lc_status lc_jinja_parse(lc_jinja_template **out, const char *src, size_t len, const char *name) {
    *out = NULL;
    lc_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name ? name : "template");
    parser ps = {.t = t};
    // Newlines normalized to \n, and one trailing newline dropped (keep_trailing_newline off).
    char *s = jarena_alloc(&t->arena, len + 1);
    if (!s) {
        free(t);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else
            s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;
    ps.src = s;
    ps.len = n;
    nvec body = {0};
    int which;
    bool ok = lex(&ps) && parse_body(&ps, &body, NULL, 0, &which);
    free(ps.toks);
    if (ok) {
        t->root = node(&ps, JN_BLOCK, 1);
        ok = t->root != NULL;
        if (ok) {
            t->root->body = body.v;
            t->root->nbody = body.n;
        }
    }
    if (!ok) {
        lc_status st = lc_error(LC_STATUS_INPUT, "%s", ps.err[0] ? ps.err : "template: parse failed");
        lc_jinja_free(t);
        return st;
    }
    *out = t;
    return LC_STATUS_OK;
}

void lc_jinja_free(lc_jinja_template *t) {
    if (!t) return;
    jarena_free(&t->arena);
    free(t);
}
