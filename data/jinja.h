// Jinja templates as Hugging Face chat templates use them, rendered the way
// transformers' apply_chat_template renders them with Python Jinja2: an
// immutable sandboxed environment with trim_blocks and lstrip_blocks on,
// keep_trailing_newline off, loop controls, Python value semantics (True,
// None, repr, '' != false) and transformers' tojson (ensure_ascii off).
// Parse once, render many times; rendering is bounded in depth, steps and
// output size, and every failure is an error naming the template line.
#ifndef LC_JINJA_H
#define LC_JINJA_H

#include <stddef.h>

#include <cJSON.h>

#include "common/status.h"

typedef struct lc_jinja_template lc_jinja_template;

// Parses src[0..len); `name` (a file name) prefixes error messages. A syntax
// error or an unsupported construct is LC_STATUS_INPUT "NAME:LINE: reason".
lc_status lc_jinja_parse(lc_jinja_template **out, const char *src, size_t len, const char *name);
void lc_jinja_free(lc_jinja_template *t);

// Renders with the members of `vars` (a JSON object; may be NULL) as the
// template's variables, plus the callables raise_exception, strftime_now,
// namespace, range and dict. *out is a heap NUL-terminated string the caller
// frees. A template that raises (raise_exception, an undefined value used,
// a type error) is LC_STATUS_INPUT "NAME:LINE: reason"; for
// raise_exception the reason is the template's own message.
lc_status lc_jinja_render(const lc_jinja_template *t, const cJSON *vars, char **out, size_t *out_len);

#endif
