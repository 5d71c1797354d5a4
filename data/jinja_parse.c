// Jinja statements (if, for, set, macro, filter, break/continue,
// generation) over the expression parser, and the public parse entry point.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_parse_internal.h"

static bool parse_body(parser *ps, nvec *out, const char *const *ends, int nends, int *which);

static bool block_end(parser *ps) {
    if (cur(ps)->kind == TK_BLOCK_END) {
        ps->pos++;
        return true;
    }
    char b[64];
    return jp_err(ps, cur(ps)->line, "expected end of statement block, got %s", jp_tok_desc(cur(ps), b, sizeof b));
}

static bool parse_targets(parser *ps, svec *names) {
    bool paren = skip_op(ps, "(");
    do {
        tok *t = cur(ps);
        if (t->kind != TK_NAME) return jp_err(ps, t->line, "expected a variable name");
        if (!jp_svec_push(ps, names, t->p, t->n)) return false;
        ps->pos++;
    } while (skip_op(ps, ","));
    return !paren || jp_expect_op(ps, ")");
}

// The statements up to {% END %}, which is consumed: blocks with one closing tag.
static bool parse_until(parser *ps, const char *end, jnode ***body, int *n) {
    const char *const ends[] = {end};
    nvec v = {0};
    int which;
    if (!parse_body(ps, &v, ends, 1, &which)) return false;
    ps->pos++;
    if (cur(ps)->kind == TK_NAME && !strcmp(end, "endmacro")) ps->pos++; // {% endmacro name %}
    if (!block_end(ps)) return false;
    *body = v.v;
    *n = v.n;
    return true;
}

static jnode *parse_stmt(parser *ps) {
    tok *t = cur(ps);
    int line = t->line;
    if (t->kind != TK_NAME) {
        jp_err(ps, line, "expected a statement name");
        return NULL;
    }
    ps->pos++;
    jnode *n = NULL;
    if (is_name(t, "if")) {
        n = jp_node(ps, JN_IF, line);
        if (!n || !(n->a = jp_parse_tuple(ps, true)) || !block_end(ps)) return NULL;
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
                jnode *e = jp_node(ps, JN_IF, wl);
                if (!e || !(e->a = jp_parse_tuple(ps, true)) || !block_end(ps)) return NULL;
                at->orelse = jarena_alloc(&ps->t->arena, sizeof(jnode *));
                if (!at->orelse) return NULL;
                at->orelse[0] = e;
                at->norelse = 1;
                at = e;
                continue;
            }
            if (!block_end(ps)) return NULL;
            if (which == 1 && !parse_until(ps, "endif", &at->orelse, &at->norelse)) return NULL;
            break;
        }
    } else if (is_name(t, "for")) {
        n = jp_node(ps, JN_FOR, line);
        svec names = {0};
        if (!n || !parse_targets(ps, &names)) return NULL;
        n->names = names.v;
        n->nnames = names.n;
        if (!skip_name(ps, "in")) {
            jp_err(ps, line, "expected 'in' in a for loop");
            return NULL;
        }
        if (!(n->a = jp_parse_tuple(ps, false))) return NULL;
        if (skip_name(ps, "if") && !(n->c = jp_parse_expr(ps, false))) return NULL;
        if (is_name(cur(ps), "recursive")) {
            jp_err(ps, line, "recursive for loops are not supported");
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
        if (which == 0 && !parse_until(ps, "endfor", &n->orelse, &n->norelse)) return NULL;
    } else if (is_name(t, "set")) {
        tok *nt = cur(ps);
        if (nt->kind == TK_NAME && is_op(&ps->toks[ps->pos + 1], ".")) {
            tok *at = &ps->toks[ps->pos + 2];
            if (at->kind != TK_NAME) {
                jp_err(ps, line, "expected an attribute name in set");
                return NULL;
            }
            n = jp_node(ps, JN_SET, line);
            if (!n) return NULL;
            n->s = nt->p;
            n->sn = nt->n;
            n->s2 = at->p;
            n->s2n = at->n;
            ps->pos += 3;
            if (!jp_expect_op(ps, "=") || !(n->a = jp_parse_tuple(ps, true)) || !block_end(ps)) return NULL;
            return n;
        }
        svec names = {0};
        if (!parse_targets(ps, &names)) return NULL;
        if (skip_op(ps, "=")) {
            n = jp_node(ps, JN_SET, line);
            if (!n) return NULL;
            n->names = names.v;
            n->nnames = names.n;
            if (!(n->a = jp_parse_tuple(ps, true)) || !block_end(ps)) return NULL;
            return n;
        }
        if (names.n != 1) {
            jp_err(ps, line, "expected '=' in set");
            return NULL;
        }
        n = jp_node(ps, JN_SET_BLOCK, line);
        if (!n) return NULL;
        n->s = names.v[0];
        n->sn = strlen(names.v[0]);
        if (is_op(cur(ps), "|")) {
            jnode *chain = jp_parse_filter_test(ps, jp_node(ps, JE_LIT, line));
            if (!chain) return NULL;
            n->a = chain;
        }
        if (!block_end(ps) || !parse_until(ps, "endset", &n->body, &n->nbody)) return NULL;
    } else if (is_name(t, "macro")) {
        n = jp_node(ps, JN_MACRO, line);
        tok *nt = cur(ps);
        if (!n || nt->kind != TK_NAME) {
            jp_err(ps, line, "expected a macro name");
            return NULL;
        }
        n->s = nt->p;
        n->sn = nt->n;
        ps->pos++;
        if (!jp_expect_op(ps, "(")) return NULL;
        svec params = {0};
        nvec defs = {0};
        while (!is_op(cur(ps), ")")) {
            if (params.n && !jp_expect_op(ps, ",")) return NULL;
            if (is_op(cur(ps), ")")) break;
            tok *pt = cur(ps);
            if (pt->kind != TK_NAME) {
                jp_err(ps, pt->line, "expected a parameter name");
                return NULL;
            }
            if (!jp_svec_push(ps, &params, pt->p, pt->n)) return NULL;
            ps->pos++;
            jnode *d = NULL;
            if (skip_op(ps, "=") && !(d = jp_parse_expr(ps, true))) return NULL;
            if (!jp_nvec_push(ps, &defs, d)) return NULL;
        }
        ps->pos++;
        n->names = params.v;
        n->nnames = params.n;
        n->args = defs.v;
        n->nargs = defs.n;
        if (!block_end(ps)) return NULL;
        int loops = ps->loops; // a loop around the definition is not around the body
        ps->loops = 0;
        bool ok = parse_until(ps, "endmacro", &n->body, &n->nbody);
        ps->loops = loops;
        if (!ok) return NULL;
    } else if (is_name(t, "filter")) {
        n = jp_node(ps, JN_FILTER_BLOCK, line);
        tok *nt = cur(ps);
        if (!n || nt->kind != TK_NAME) {
            jp_err(ps, line, "expected a filter name");
            return NULL;
        }
        // the chain "name(args)|more" as filters over a placeholder operand
        jnode *f = jp_node(ps, JE_FILTER, line);
        if (!f) return NULL;
        f->s = nt->p;
        f->sn = nt->n;
        ps->pos++;
        if (skip_op(ps, "(") && !jp_parse_call_args(ps, f)) return NULL;
        if (!(n->a = jp_parse_filter_test(ps, f))) return NULL;
        if (!block_end(ps) || !parse_until(ps, "endfilter", &n->body, &n->nbody)) return NULL;
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        if (!ps->loops) {
            jp_err(ps, line, "'%s' outside a loop", is_name(t, "break") ? "break" : "continue");
            return NULL;
        }
        n = jp_node(ps, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, line);
        if (!n || !block_end(ps)) return NULL;
    } else if (is_name(t, "generation")) { // transformers' assistant-mask marker: renders its body
        n = jp_node(ps, JN_BLOCK, line);
        if (!n || !block_end(ps) || !parse_until(ps, "endgeneration", &n->body, &n->nbody)) return NULL;
    } else {
        jp_err(ps, line, "unknown or unsupported tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        return NULL;
    }
    return n;
}

// Statements up to one of `ends` (left unconsumed, *which its index) or, with
// nends 0, to the end of the template.
static bool parse_body(parser *ps, nvec *out, const char *const *ends, int nends, int *which) {
    if (++ps->depth > MAX_DEPTH) return jp_err(ps, cur(ps)->line, "blocks nested too deep");
    while (true) {
        tok *t = cur(ps);
        if (t->kind == TK_EOF) {
            ps->depth--;
            if (nends == 0) return true;
            return jp_err(ps, t->line, "unexpected end of template: expected '%s'", ends[nends - 1]);
        }
        if (t->kind == TK_TEXT) {
            jnode *n = jp_node(ps, JN_TEXT, t->line);
            if (!n) return false;
            n->s = t->p;
            n->sn = t->n;
            if (!jp_nvec_push(ps, out, n)) return false;
            ps->pos++;
        } else if (t->kind == TK_VAR_BEGIN) {
            ps->pos++;
            jnode *n = jp_node(ps, JN_OUTPUT, t->line);
            if (!n || !(n->a = jp_parse_tuple(ps, true))) return false;
            if (cur(ps)->kind != TK_VAR_END) {
                char b[64];
                return jp_err(ps, cur(ps)->line, "expected end of print statement, got %s", jp_tok_desc(cur(ps), b, sizeof b));
            }
            ps->pos++;
            if (!jp_nvec_push(ps, out, n)) return false;
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
                    return jp_err(ps, nt->line, "unexpected '%s'%s%s", closers[k], nends ? ", expected " : "",
                                nends ? ends[nends - 1] : "");
            jnode *n = parse_stmt(ps);
            if (!n || !jp_nvec_push(ps, out, n)) return false;
        } else {
            char b[64];
            return jp_err(ps, t->line, "unexpected %s", jp_tok_desc(t, b, sizeof b));
        }
    }
}

lc_status lc_jinja_parse(lc_jinja_template **out, const char *src, size_t len, const char *name) {
    *out = NULL;
    lc_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name ? name : "template");
    parser ps = {.t = t, .line_no = 1};
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
    const char *nul = memchr(s, 0, n);
    size_t bad = nul ? (size_t)(nul - s) : jt_utf8_check(s, n);
    if (bad < n) {
        int line = 1;
        for (size_t i = 0; i < bad; i++) line += s[i] == '\n';
        lc_status st = lc_error(LC_STATUS_INPUT, "%s:%d: %s at byte %zu", t->name, line,
                                  nul ? "a NUL byte" : "invalid UTF-8", bad);
        lc_jinja_free(t);
        return st;
    }
    ps.src = s;
    ps.len = n;
    nvec body = {0};
    int which;
    bool ok = jp_lex(&ps) && parse_body(&ps, &body, NULL, 0, &which);
    free(ps.toks);
    if (ok) {
        t->root = jp_node(&ps, JN_BLOCK, 1);
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
