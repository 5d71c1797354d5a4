// Jinja lexer: template text to tokens, with Jinja2's whitespace rules as
// transformers configures them (trim_blocks: the first newline after a block
// or comment tag goes; lstrip_blocks: spaces and tabs from the start of a
// line to a block or comment tag go; '-' strips all whitespace on its side,
// '+' keeps it) and {% raw %} blocks.
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_parse_internal.h"

bool jp_err(parser *ps, int line, const char *fmt, ...) {
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
        if (!nt) return jp_err(ps, t.line, "out of memory");
        ps->toks = nt;
        ps->cap = cap;
    }
    ps->toks[ps->ntok++] = t;
    return true;
}

// Line of a source offset; tokens come in order, so count on from the last answer.
static int line_at(parser *ps, size_t off) {
    if (off < ps->line_off) {
        ps->line_off = 0;
        ps->line_no = 1;
    }
    for (; ps->line_off < off && ps->line_off < ps->len; ps->line_off++) ps->line_no += ps->src[ps->line_off] == '\n';
    return ps->line_no;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Whitespace as Python's \s and str.strip see it (Unicode: NBSP, U+3000, ...):
// the bytes of the whitespace character at src[i], or 0.
static size_t ws_at(const parser *ps, size_t i) {
    if (i >= ps->len) return 0;
    size_t j = i;
    uint32_t c = jt_cp_at(ps->src, ps->len, &j);
    return jt_space(c) ? j - i : 0;
}

// The same for the character that ends at src[i] (after lo).
static size_t ws_before(const parser *ps, size_t i, size_t lo) {
    if (i <= lo) return 0;
    size_t k = i - 1;
    while (k > lo && ((unsigned char)ps->src[k] & 0xC0) == 0x80) k--;
    return ws_at(ps, k) == i - k ? i - k : 0;
}

static int hexdig(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A string literal at src[*i] (the quote): Python's escapes, as Jinja2 decodes them.
static bool lex_string(parser *ps, size_t *i, int line, tok *out) {
    char q = ps->src[*i];
    size_t j = *i + 1;
    size_t end = j;
    while (end < ps->len && ps->src[end] != q) end += ps->src[end] == '\\' ? 2 : 1;
    if (end >= ps->len) return jp_err(ps, line, "unterminated string literal");
    char *v = jarena_alloc(&ps->t->arena, end - j + 1);
    if (!v) return jp_err(ps, line, "out of memory");
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
                if (h < 0) return jp_err(ps, line, "bad \\%c escape in a string literal", e);
                cp = cp * 16 + (uint32_t)h;
                j++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return jp_err(ps, line, "\\%c escape outside Unicode in a string literal", e);
            o += jt_cp_put(cp, v + o); // never longer than the escape itself
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && j < end && ps->src[j] >= '0' && ps->src[j] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(ps->src[j++] - '0');
                o += jt_cp_put(cp, v + o);
            } else if (e == 'N') {
                return jp_err(ps, line, "\\N{...} escapes are not supported; write the character itself");
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
        if (*i >= ps->len) return jp_err(ps, line, "unexpected end of template: an unclosed %s tag", block ? "{%" : "{{");
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
                if (errno) return jp_err(ps, line, "integer literal %s too large", num);
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
            if (k == sizeof OPS / sizeof *OPS) return jp_err(ps, line, "unexpected character '%c'", s[0]);
            t.kind = TK_OP;
            t.p = s;
            t.n = strlen(OPS[k]);
            char c = s[0];
            if (t.n == 1 && (c == '(' || c == '[' || c == '{')) {
                if (sp == MAX_DEPTH) return jp_err(ps, line, "brackets nested too deep");
                stack[sp++] = c;
            } else if (t.n == 1 && (c == ')' || c == ']' || c == '}')) {
                char want = c == ')' ? '(' : c == ']' ? '[' : '{';
                if (sp == 0 || stack[sp - 1] != want) return jp_err(ps, line, "unexpected '%c'", c);
                sp--;
            }
            *i += t.n;
        }
        if (!push_tok(ps, t)) return false;
    }
}

bool jp_lex(parser *ps) {
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
            for (size_t w; ts < te && (w = ws_at(ps, ts));) ts += w;
        else if (trim_nl && ts < te && ps->src[ts] == '\n')
            ts++;
        char kind = open ? open[1] : 0;
        char sign = open && j + 2 < ps->len ? ps->src[j + 2] : 0;
        if (open && sign == '-') {
            for (size_t w; te > ts && (w = ws_before(ps, te, ts));) te -= w;
        } else if (open && kind != '{' && sign != '+') {
            // lstrip_blocks: whitespace from the line start to the tag
            size_t l = te;
            while (l > ts && ps->src[l - 1] != '\n') l--;
            bool at_line = l > ts || line_start;
            bool blank = l < te;
            for (size_t k = l, w; k < te && blank; k += w)
                if (!(w = ws_at(ps, k))) blank = false;
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
            if (!end) return jp_err(ps, line, "unclosed comment");
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
                    if (dash) // no trim_blocks after {% raw %}: Jinja2 keeps that newline
                        for (size_t w; (w = ws_at(ps, body));) body += w;
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
                    if (!endraw) return jp_err(ps, line, "unclosed raw block");
                    size_t re = (size_t)(endraw - ps->src);
                    if (ps->src[re + 2] == '-')
                        for (size_t w; re > body && (w = ws_before(ps, re, body));) re -= w;
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
