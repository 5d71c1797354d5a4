// JSON helpers over cJSON: load a file, and typed field access that reports
// the file and key on a type mismatch.
#ifndef LC_JSON_H
#define LC_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/status.h"

// Parses a JSON file (at most max_bytes) into *out; the caller frees with cJSON_Delete.
lc_status lc_json_load_file(const char *path, size_t max_bytes, cJSON **out);

// Parses a JSON text from memory; `what` names it in errors (file name or FILE:LINE).
lc_status lc_json_parse(const char *text, size_t len, const char *what, cJSON **out);

// True if JSON text holds a \u0000 escape: cJSON would end the C string there
// and silently drop the rest of it, so such text is refused where it matters.
bool lc_json_has_nul_escape(const char *text, size_t len);

// Typed getters. A missing key or JSON null leaves *out at `def` and returns OK;
// a value of the wrong type is an LC_STATUS_INPUT error naming `what` and `key`.
lc_status lc_json_get_int(const cJSON *obj, const char *key, const char *what, int64_t def, int64_t *out);
lc_status lc_json_get_double(const cJSON *obj, const char *key, const char *what, double def, double *out);
lc_status lc_json_get_bool(const cJSON *obj, const char *key, const char *what, bool def, bool *out);
// Borrowed pointer into obj, or def.
lc_status lc_json_get_string(const cJSON *obj, const char *key, const char *what, const char *def, const char **out);

#endif
