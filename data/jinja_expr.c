// Jinja expressions with Jinja2's precedence: conditional, or, and, not,
// comparisons (chained, in, not in), + -, ~, * / // %, **, unary - +,
// then primaries with attributes, subscripts, slices, calls, filters and tests.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_parse_internal.h"

const char *jp_tok_desc(const tok *t, char *buf, size_t cap) {
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

bool jp_expect_op(parser *ps, const char *op) {
    if (skip_op(ps, op)) return true;
    char b[64];
    return jp_err(ps, cur(ps)->line, "expected '%s', got %s", op, jp_tok_desc(cur(ps), b, sizeof b));
}

jnode *jp_node(parser *ps, int kind, int line) {
    jnode *n = jarena_alloc(&ps->t->arena, sizeof *n);
    if (!n) {
        jp_err(ps, line, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    return n;
}


bool jp_nvec_push(parser *ps, nvec *a, jnode *x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        jnode **v = jarena_alloc(&ps->t->arena, (size_t)cap * sizeof *v);
        if (!v) return jp_err(ps, x ? x->line : 0, "out of memory");
        if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}


bool jp_svec_push(parser *ps, svec *a, const char *p, size_t n) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        const char **v = jarena_alloc(&ps->t->arena, (size_t)cap * sizeof *v);
        if (!v) return jp_err(ps, 0, "out of memory");
        if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    char *s = jarena_alloc(&ps->t->arena, n + 1);
    if (!s) return jp_err(ps, 0, "out of memory");
    memcpy(s, p, n);
    a->v[a->n++] = s;
    return true;
}

static jnode *parse_unary(parser *ps, bool with_filter);
static jnode *parse_primary(parser *ps);

// Call arguments after '(': positional into args, keyword into names/args2.
bool jp_parse_call_args(parser *ps, jnode *n) {
    nvec args = {0}, kwv = {0};
    svec kwn = {0};
    while (!is_op(cur(ps), ")")) {
        if (args.n + kwv.n > 0 && !jp_expect_op(ps, ",")) return false;
        if (is_op(cur(ps), ")")) break;
        tok *t = cur(ps);
        if (t->kind == TK_NAME && is_op(&ps->toks[ps->pos + 1], "=")) {
            if (!jp_svec_push(ps, &kwn, t->p, t->n)) return false;
            ps->pos += 2;
            jnode *v = jp_parse_expr(ps, true);
            if (!v || !jp_nvec_push(ps, &kwv, v)) return false;
        } else {
            if (kwv.n) return jp_err(ps, t->line, "a positional argument after keyword arguments");
            jnode *v = jp_parse_expr(ps, true);
            if (!v || !jp_nvec_push(ps, &args, v)) return false;
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
                n = jp_node(ps, JE_ATTR, t->line);
                if (!n) return NULL;
                n->s = nt->p;
                n->sn = nt->n;
            } else if (nt->kind == TK_INT) { // x.0 is x[0]
                n = jp_node(ps, JE_ITEM, t->line);
                jnode *k = jp_node(ps, JE_LIT, t->line);
                if (!n || !k) return NULL;
                k->lit = jv_int(nt->i);
                n->b = k;
            } else {
                char b[64];
                jp_err(ps, t->line, "expected an attribute name after '.', got %s", jp_tok_desc(nt, b, sizeof b));
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
                    parts[np] = jp_parse_expr(ps, true);
                    if (!parts[np]) return NULL;
                }
                if (is_op(cur(ps), ":")) {
                    if (np == 2) {
                        jp_err(ps, t->line, "too many ':' in a subscript");
                        return NULL;
                    }
                    slice = true;
                    np++;
                    ps->pos++;
                    continue;
                }
                break;
            }
            if (!jp_expect_op(ps, "]")) return NULL;
            jnode *n = jp_node(ps, slice ? JE_SLICE : JE_ITEM, t->line);
            if (!n) return NULL;
            n->a = e;
            if (slice) memcpy(n->slice, parts, sizeof parts);
            else if (!parts[0]) {
                jp_err(ps, t->line, "an empty subscript");
                return NULL;
            } else
                n->b = parts[0];
            e = n;
        } else if (is_op(t, "(")) {
            ps->pos++;
            jnode *n = jp_node(ps, JE_CALL, t->line);
            if (!n || !jp_parse_call_args(ps, n)) return NULL;
            n->a = e;
            e = n;
        } else
            break;
    }
    return e;
}

// Filters and tests after an operand: x|f(args)|g, x is [not] t(args)
jnode *jp_parse_filter_test(parser *ps, jnode *e) {
    while (e) {
        tok *t = cur(ps);
        if (is_op(t, "|")) {
            ps->pos++;
            tok *nt = cur(ps);
            if (nt->kind != TK_NAME) {
                jp_err(ps, t->line, "expected a filter name after '|'");
                return NULL;
            }
            jnode *n = jp_node(ps, JE_FILTER, t->line);
            if (!n) return NULL;
            n->s = nt->p;
            n->sn = nt->n;
            ps->pos++;
            while (is_op(cur(ps), ".")) { // dotted filter names are not used by templates
                jp_err(ps, t->line, "unknown filter '%.*s.'", (int)nt->n, nt->p);
                return NULL;
            }
            if (skip_op(ps, "(") && !jp_parse_call_args(ps, n)) return NULL;
            n->a = e;
            e = n;
            e = parse_postfix(ps, e);
        } else if (is_name(t, "is")) {
            ps->pos++;
            jnode *n = jp_node(ps, JE_TEST, t->line);
            if (!n) return NULL;
            if (skip_name(ps, "not")) n->op = 1;
            tok *nt = cur(ps);
            if (nt->kind != TK_NAME && !is_op(nt, "==") && !is_op(nt, "!=") && !is_op(nt, "<") && !is_op(nt, ">") &&
                !is_op(nt, "<=") && !is_op(nt, ">=")) {
                jp_err(ps, t->line, "expected a test name after 'is'");
                return NULL;
            }
            n->s = nt->p;
            n->sn = nt->n;
            ps->pos++;
            tok *at = cur(ps);
            if (is_op(at, "(")) {
                ps->pos++;
                if (!jp_parse_call_args(ps, n)) return NULL;
            } else if ((at->kind == TK_NAME || at->kind == TK_STRING || at->kind == TK_INT || at->kind == TK_FLOAT ||
                        is_op(at, "[") || is_op(at, "{")) &&
                       !is_name(at, "else") && !is_name(at, "or") && !is_name(at, "and")) {
                jnode *arg = parse_primary(ps);
                arg = parse_postfix(ps, arg);
                if (!arg) return NULL;
                nvec a = {0};
                if (!jp_nvec_push(ps, &a, arg)) return NULL;
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
        jp_err(ps, t->line, "expression nested too deep");
        return NULL;
    }
    switch (t->kind) {
    case TK_NAME:
        n = jp_node(ps, JE_LIT, t->line);
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
        n = jp_node(ps, JE_LIT, t->line);
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
        n = jp_node(ps, JE_LIT, t->line);
        if (!n) break;
        n->lit = t->kind == TK_INT ? jv_int(t->i) : jv_float(t->f);
        ps->pos++;
        break;
    case TK_OP:
        if (is_op(t, "(")) {
            ps->pos++;
            if (skip_op(ps, ")")) {
                n = jp_node(ps, JE_TUPLE, t->line);
                break;
            }
            jnode *first = jp_parse_expr(ps, true);
            if (!first) return NULL;
            if (is_op(cur(ps), ",")) {
                nvec items = {0};
                if (!jp_nvec_push(ps, &items, first)) return NULL;
                while (skip_op(ps, ",")) {
                    if (is_op(cur(ps), ")")) break;
                    jnode *x = jp_parse_expr(ps, true);
                    if (!x || !jp_nvec_push(ps, &items, x)) return NULL;
                }
                n = jp_node(ps, JE_TUPLE, t->line);
                if (!n) return NULL;
                n->args = items.v;
                n->nargs = items.n;
            } else
                n = first;
            if (!jp_expect_op(ps, ")")) return NULL;
        } else if (is_op(t, "[")) {
            ps->pos++;
            nvec items = {0};
            while (!is_op(cur(ps), "]")) {
                if (items.n && !jp_expect_op(ps, ",")) return NULL;
                if (is_op(cur(ps), "]")) break;
                jnode *x = jp_parse_expr(ps, true);
                if (!x || !jp_nvec_push(ps, &items, x)) return NULL;
            }
            ps->pos++;
            n = jp_node(ps, JE_LIST, t->line);
            if (!n) return NULL;
            n->args = items.v;
            n->nargs = items.n;
        } else if (is_op(t, "{")) {
            ps->pos++;
            nvec keys = {0}, vals = {0};
            while (!is_op(cur(ps), "}")) {
                if (keys.n && !jp_expect_op(ps, ",")) return NULL;
                if (is_op(cur(ps), "}")) break;
                jnode *k = jp_parse_expr(ps, true);
                if (!k || !jp_expect_op(ps, ":")) return NULL;
                jnode *v = jp_parse_expr(ps, true);
                if (!v || !jp_nvec_push(ps, &keys, k) || !jp_nvec_push(ps, &vals, v)) return NULL;
            }
            ps->pos++;
            n = jp_node(ps, JE_DICT, t->line);
            if (!n) return NULL;
            n->args = keys.v;
            n->nargs = keys.n;
            n->args2 = vals.v;
            n->nargs2 = vals.n;
        } else {
            char b[64];
            jp_err(ps, t->line, "unexpected %s", jp_tok_desc(t, b, sizeof b));
        }
        break;
    default: {
        char b[64];
        jp_err(ps, t->line, "unexpected %s", jp_tok_desc(t, b, sizeof b));
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
            jp_err(ps, t->line, "expression nested too deep");
            return NULL;
        }
        jnode *x = parse_unary(ps, false);
        ps->depth--;
        if (!x) return NULL;
        n = jp_node(ps, is_op(t, "-") ? JE_NEG : JE_POS, t->line);
        if (!n) return NULL;
        n->a = x;
    } else {
        n = parse_primary(ps);
        n = parse_postfix(ps, n);
    }
    if (with_filter) n = jp_parse_filter_test(ps, n);
    return n;
}

static jnode *binop(parser *ps, int op, jnode *a, jnode *b, int line) {
    if (!a || !b) return NULL;
    jnode *n = jp_node(ps, JE_BINOP, line);
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
            jp_err(ps, t->line, "too many chained comparisons");
            return NULL;
        }
        ops[operands.n] = op;
        jnode *b = parse_math1(ps);
        if (!b || !jp_nvec_push(ps, &operands, b)) return NULL;
    }
    if (!operands.n) return a;
    jnode *n = jp_node(ps, JE_COMPARE, line);
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
            jp_err(ps, t->line, "expression nested too deep");
            return NULL;
        }
        jnode *x = parse_not(ps);
        ps->depth--;
        if (!x) return NULL;
        jnode *n = jp_node(ps, JE_NOT, t->line);
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
        jnode *n = b ? jp_node(ps, JE_AND, line) : NULL;
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
        jnode *n = b ? jp_node(ps, JE_OR, line) : NULL;
        if (!n) return NULL;
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

jnode *jp_parse_expr(parser *ps, bool with_cond) {
    if (++ps->depth > MAX_DEPTH) {
        jp_err(ps, cur(ps)->line, "expression nested too deep");
        return NULL;
    }
    jnode *a = parse_or(ps);
    while (with_cond && a && is_name(cur(ps), "if")) {
        int line = cur(ps)->line;
        ps->pos++;
        jnode *cond = parse_or(ps);
        if (!cond) return NULL;
        jnode *other = NULL;
        if (skip_name(ps, "else") && !(other = jp_parse_expr(ps, true))) return NULL;
        jnode *n = jp_node(ps, JE_COND, line);
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
jnode *jp_parse_tuple(parser *ps, bool with_cond) {
    int line = cur(ps)->line;
    jnode *first = jp_parse_expr(ps, with_cond);
    if (!first || !is_op(cur(ps), ",")) return first;
    nvec items = {0};
    if (!jp_nvec_push(ps, &items, first)) return NULL;
    while (skip_op(ps, ",")) {
        tok *t = cur(ps);
        if (t->kind == TK_BLOCK_END || t->kind == TK_VAR_END || is_name(t, "if")) break;
        jnode *x = jp_parse_expr(ps, with_cond);
        if (!x || !jp_nvec_push(ps, &items, x)) return NULL;
    }
    jnode *n = jp_node(ps, JE_TUPLE, line);
    if (!n) return NULL;
    n->args = items.v;
    n->nargs = items.n;
    return n;
}
