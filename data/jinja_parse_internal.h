// Internals of the Jinja parser shared by jinja_lex.c (text to tokens),
// jinja_expr.c (expressions) and jinja_parse.c (statements).
#ifndef LC_JINJA_PARSE_INTERNAL_H
#define LC_JINJA_PARSE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
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
    size_t line_off; // line_at's memo: line_no is the line of src[line_off]
    int line_no;
    char err[768];
} parser;

#define MAX_DEPTH 200

// Records the first error "NAME:LINE: ..." and returns false.
bool jp_err(parser *ps, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// The template text to ps->toks, with Jinja2's whitespace control applied.
bool jp_lex(parser *ps);

static inline tok *cur(parser *ps) { return &ps->toks[ps->pos]; }
static inline bool is_op(const tok *t, const char *op) { return t->kind == TK_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0; }
static inline bool is_name(const tok *t, const char *name) {
    return t->kind == TK_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}
static inline bool skip_op(parser *ps, const char *op) {
    if (!is_op(cur(ps), op)) return false;
    ps->pos++;
    return true;
}
static inline bool skip_name(parser *ps, const char *name) {
    if (!is_name(cur(ps), name)) return false;
    ps->pos++;
    return true;
}

// "'x'", "end of template", ... for messages.
const char *jp_tok_desc(const tok *t, char *buf, size_t cap);
bool jp_expect_op(parser *ps, const char *op);
jnode *jp_node(parser *ps, int kind, int line);

// Growable node array in the arena.
typedef struct nvec {
    jnode **v;
    int n, cap;
} nvec;
bool jp_nvec_push(parser *ps, nvec *a, jnode *x);

typedef struct svec {
    const char **v;
    int n, cap;
} svec;
bool jp_svec_push(parser *ps, svec *a, const char *p, size_t n);

// Expressions (jinja_expr.c): with_cond takes "a if b else c".
jnode *jp_parse_expr(parser *ps, bool with_cond);
// An expression or an unparenthesized tuple (for loop iterables, set values).
jnode *jp_parse_tuple(parser *ps, bool with_cond);
// Filters and tests after an operand: x|f(args)|g, x is [not] t(args).
jnode *jp_parse_filter_test(parser *ps, jnode *e);
// Call arguments after '(': positional into args, keyword into names/args2.
bool jp_parse_call_args(parser *ps, jnode *n);

#endif
