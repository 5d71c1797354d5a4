// Internals of the Jinja engine: arena, values, syntax tree, and the
// interpreter's entry points shared by jinja_parse.c, jinja_value.c,
// jinja_render.c and jinja_builtins.c.
#ifndef LC_JINJA_INTERNAL_H
#define LC_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/jinja.h"
#include "data/tokenizer_internal.h"

// Bump allocator: a template's tree lives in one, a render's values in another.
typedef struct jarena_block jarena_block;
typedef struct jarena {
    jarena_block *head;
    size_t used_total; // bytes handed out, checked against the limit
    size_t limit;
} jarena;

void *jarena_alloc(jarena *a, size_t n); // zeroed; NULL when out of memory or over the limit
void jarena_free(jarena *a);

typedef enum jv_type {
    JV_UNDEF, // Jinja's Undefined: prints empty, false, iterates empty, fails on use
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, // also tuples (flag)
    JV_DICT, // also namespaces and the loop object (flag)
    JV_FUNC, // macros, builtins, bound methods
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;

typedef struct jv {
    uint8_t t;     // jv_type
    uint8_t tuple; // JV_LIST: JV_TUPLE or JV_GENERATOR (0: a list); JV_STR: a Markup string (|safe, |escape)
    union {
        int64_t i; // JV_BOOL (0/1), JV_INT
        double f;
        struct {
            const char *p;
            size_t n;
        } s;  // JV_STR; JV_UNDEF: the name it was looked up by (may be empty)
        jlist *l;
        jdict *d;
        jfunc *fn;
    } u;
} jv;

struct jlist {
    jv *items;
    size_t n, cap;
};

typedef enum jdict_kind { JDICT_PLAIN, JDICT_NAMESPACE, JDICT_LOOP } jdict_kind;

struct jdict {
    jv *keys, *vals;
    size_t n, cap;
    int kind; // jdict_kind
};

typedef struct jnode jnode;

typedef enum jfunc_kind { JFUNC_MACRO, JFUNC_BUILTIN, JFUNC_METHOD } jfunc_kind;

struct jfunc {
    int kind;
    const jnode *macro;     // JFUNC_MACRO
    struct jframe *closure; // JFUNC_MACRO: the scope it was defined in
    const char *name;       // builtin or method name
    jv self;                // JFUNC_METHOD: the bound object
};

// --- syntax tree ---

typedef enum jnode_kind {
    // statements
    JN_TEXT,   // s
    JN_OUTPUT, // a
    JN_IF,     // a cond, body, orelse
    JN_FOR,    // names (targets), a iter, c filter (may be NULL), body, orelse
    JN_SET,    // names (targets) or name+attr (s = ns, s2 = attr), a value
    JN_SET_BLOCK, // s name, body, a: filter chain applied (operand NULL) or NULL
    JN_MACRO,  // s name, names params, args defaults (NULL entries), body
    JN_FILTER_BLOCK, // a: filter chain (innermost operand NULL), body
    JN_BREAK,
    JN_CONTINUE,
    JN_BLOCK, // a plain sequence (generation blocks, template root)
    // expressions
    JE_LIT,     // lit
    JE_NAME,    // s
    JE_LIST,    // args
    JE_TUPLE,   // args
    JE_DICT,    // args keys, args2 values
    JE_ATTR,    // a, s
    JE_ITEM,    // a, b
    JE_SLICE,   // a, slice[3] (NULL when absent)
    JE_CALL,    // a callee, args, names kw + args2 kw values
    JE_FILTER,  // a operand (NULL in filter blocks), s name, args, names/args2 kwargs
    JE_TEST,    // a operand, s name, args, op 1 = negated
    JE_BINOP,   // op, a, b
    JE_NEG,     // a
    JE_POS,     // a
    JE_NOT,     // a
    JE_AND,     // a, b
    JE_OR,      // a, b
    JE_COND,    // a value, b condition, c else (NULL: undefined)
    JE_COMPARE, // a first, args operands, ops
} jnode_kind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
} jop;

struct jnode {
    int kind;
    int line;
    int op;
    const char *s, *s2;
    size_t sn, s2n;
    jnode *a, *b, *c;
    jnode *slice[3];
    jnode **body, **orelse;
    int nbody, norelse;
    jnode **args, **args2;
    int nargs, nargs2;
    const char **names;
    int nnames;
    int *ops; // JE_COMPARE: one jop per operand
    jv lit;
};

struct lc_jinja_template {
    jarena arena;
    jnode *root;
    char name[256];
};

// --- values (jinja_value.c) ---

typedef struct jbuf {
    char *p;
    size_t n, cap;
    size_t limit; // appends past it fail
    bool too_deep; // a write failed on a value nested too deep (not the limit)
    bool generator; // a write failed on a generator (Python prints its address)
} jbuf;

bool jbuf_put(jbuf *b, const char *p, size_t n);
bool jbuf_puts(jbuf *b, const char *s);

static inline jv jv_undef(void) { jv v = {0}; v.t = JV_UNDEF; return v; }
static inline jv jv_none(void) { jv v = {0}; v.t = JV_NONE; return v; }
static inline jv jv_bool(bool b) { jv v = {0}; v.t = JV_BOOL; v.u.i = b; return v; }
static inline jv jv_int(int64_t i) { jv v = {0}; v.t = JV_INT; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {0}; v.t = JV_FLOAT; v.u.f = f; return v; }
static inline jv jv_str(const char *p, size_t n) { jv v = {0}; v.t = JV_STR; v.u.s.p = p; v.u.s.n = n; return v; }
// Markup is Jinja's "safe" string: a plain string added to it is HTML-escaped
// first (transformers turns autoescape off, but Markup still escapes).
#define JV_IS_MARKUP(v) ((v).t == JV_STR && (v).tuple)
// What Jinja2's map/select/reject/unique/reverse/items filters give is a
// generator: always true, no len(), not JSON, printed as an address (refused
// here), undefined when subscripted. Held as a list with this flag.
enum { JV_TUPLE = 1, JV_GENERATOR = 2 };
#define JV_IS_GEN(v) ((v).t == JV_LIST && (v).tuple == JV_GENERATOR)
static inline jv jv_markup(jv v, bool m) { if (v.t == JV_STR) v.tuple = m; return v; }

jv jv_str_copy(jarena *a, const char *p, size_t n); // JV_UNDEF when the arena is exhausted
jlist *jlist_new(jarena *a, size_t cap);
bool jlist_push(jarena *a, jlist *l, jv v);
jdict *jdict_new(jarena *a, int kind);
bool jdict_set(jarena *a, jdict *d, jv key, jv val); // replaces an equal key
const jv *jdict_get(const jdict *d, const char *key, size_t n);
jv jv_list(jlist *l);
jv jv_dict(jdict *d);

bool jv_truthy(jv v);
bool jv_equal(jv a, jv b); // Python's ==
// Whether a jv_equal since the last call gave up (too deep or too costly); clears it.
bool jv_equal_overflowed(void);
bool jv_is_number(jv v); // bool, int, float
double jv_num(jv v);
// Python str(v): strings as they are, everything else as repr. false when the buffer is full.
bool jv_write_str(jbuf *b, jv v);
bool jv_write_repr(jbuf *b, jv v);
bool jv_write_float(jbuf *b, double f);
// json.dumps(v, ensure_ascii, indent, separators, sort_keys); indent NULL for none.
// Returns 0, or -1 when the buffer is full, 1 for a value JSON cannot hold, 2 for one nested too deep.
int jv_write_json(jbuf *b, jv v, const char *indent, size_t indent_n, int level, const char *item_sep,
                  const char *key_sep, bool sort_keys, bool ascii);
const char *jv_type_name(jv v); // Python's name: 'str', 'int', 'dict', ...
jv jv_from_json(jarena *a, const cJSON *j);
size_t jv_utf8_len(const char *p, size_t n); // code points
// Byte offset of code point i (clamped to n).
size_t jv_utf8_offset(const char *p, size_t n, size_t i);

// --- the interpreter (jinja_render.c), used by the builtins ---

typedef struct jframe jframe;
struct jframe {
    jframe *parent;
    jdict *vars;
};

typedef struct jrender {
    const lc_jinja_template *t;
    jarena arena;
    jbuf out;
    jframe *globals;
    int depth;
    int64_t steps;
    int line;           // line of the node being evaluated, for errors
    char err[768];      // first error
    bool failed;
} jrender;

// Records the first error ("NAME:LINE: ..."), returns false for chaining.
bool jr_fail(jrender *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool jr_oom(jrender *r);
// Calls a callable value with positional and keyword arguments.
bool jr_call_value(jrender *r, jv fn, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw, jv *out);
jv jr_str_value(jrender *r, jv v, bool *ok); // str(v) as a JV_STR in the render arena
// The items a for loop walks: list items, dict keys, string characters; undefined: none.
bool jr_iter(jrender *r, jv v, jlist **out);

// --- builtins (jinja_builtins.c) ---

bool jb_filter(jrender *r, const char *name, jv in, const jv *args, int nargs, const char **kwn, const jv *kwv,
               int nkw, jv *out);
// *known false when there is no such test.
bool jb_test(jrender *r, const char *name, jv v, const jv *args, int nargs, bool *known, bool *result);
bool jb_call_builtin(jrender *r, const char *name, const jv *args, int nargs, const char **kwn, const jv *kwv,
                     int nkw, jv *out);
bool jb_call_method(jrender *r, jv self, const char *name, const jv *args, int nargs, const char **kwn,
                    const jv *kwv, int nkw, jv *out);
bool jb_is_builtin(const char *name, size_t n);
// Whether `self.name` is a method of self's type (str, dict, list, loop).
bool jb_has_method(jv self, const char *name, size_t n);

// --- shared by the builtins (jinja_text.c) ---

typedef struct bargs {
    const jv *args;
    int nargs;
    const char **kwn;
    const jv *kwv;
    int nkw;
} bargs;

// Argument `pos` (positional index, -1 for keyword only) or keyword `name`; def when absent.
jv jt_arg(const bargs *a, int pos, const char *name, jv def);
bool jt_want_str(jrender *r, jv v, const char *what); // false (and the error) unless a string
uint32_t jt_cp_at(const char *p, size_t n, size_t *i); // the code point at p[*i], advancing *i
size_t jt_cp_put(uint32_t cp, char *o);                // its UTF-8 bytes (1..4)
bool jt_space(uint32_t c);                             // Python's str.isspace
uint32_t jt_lower(uint32_t c);
uint32_t jt_upper(uint32_t c);
bool jt_cased(uint32_t c);
enum { CASE_LOWER, CASE_UPPER, CASE_CAPITALIZE, CASE_TITLE_METHOD, CASE_TITLE_FILTER };
bool jt_change_case(jrender *r, jv s, int mode, jv *out);
jv jt_strip(jv s, jv chars, bool left, bool right); // chars none: Python's whitespace
bool jt_split(jrender *r, jv s, jv sep, int64_t maxsplit, jv *out);
bool jt_replace(jrender *r, jv s, jv old, jv new_, int64_t count, jv *out);
bool jt_starts_ends(jrender *r, jv s, jv pre, bool ends, bool *res);
// item.attr, with dotted paths ("a.b") and integer parts as Jinja's make_attrgetter does.
bool jt_attr_path(jrender *r, jv item, jv attr, jv *out);
// Jinja's indent filter (str.splitlines' line ends).
bool jt_indent(jrender *r, jv s, jv width, bool first, bool blank, jv *out);
bool jt_escape(jrender *r, jv s, jv *out); // Markup's escape: & < > " ' as entities
// Offset of the first byte that is not valid UTF-8, or n (the tokenizer's validator).
static inline size_t jt_utf8_check(const char *p, size_t n) { return tok_utf8_valid_prefix((const unsigned char *)p, n); }

#endif
