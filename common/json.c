#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

lc_status lc_json_parse(const char *text, size_t len, const char *what, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!*out) {
        size_t at = (end && end >= text) ? (size_t)(end - text) : 0;
        return lc_error(LC_STATUS_INPUT, "%s: invalid JSON near byte %zu", what, at);
    }
    // One value and nothing after it but white space: a second object or
    // stray text would otherwise be dropped unseen.
    size_t at = end && end >= text ? (size_t)(end - text) : len;
    while (at < len && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) at++;
    if (at < len && text[at] != '\0') {
        cJSON_Delete(*out);
        *out = NULL;
        return lc_error(LC_STATUS_INPUT, "%s: unexpected text after the JSON value at byte %zu", what, at);
    }
    return LC_STATUS_OK;
}

lc_status lc_json_load_file(const char *path, size_t max_bytes, cJSON **out) {
    char *text;
    size_t len;
    *out = NULL;
    lc_status st = lc_file_read(path, max_bytes, &text, &len);
    if (st) return st;
    st = lc_json_parse(text, len, path, out);
    free(text);
    return st;
}

static const cJSON *lc_json_field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

lc_status lc_json_get_int(const cJSON *obj, const char *key, const char *what, int64_t def, int64_t *out) {
    const cJSON *v = lc_json_field(obj, key);
    *out = def;
    if (!v) return LC_STATUS_OK;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < -9.0e15 || d > 9.0e15)
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be an integer", what, key);
    *out = (int64_t)d;
    return LC_STATUS_OK;
}

lc_status lc_json_get_double(const cJSON *obj, const char *key, const char *what, double def, double *out) {
    const cJSON *v = lc_json_field(obj, key);
    *out = def;
    if (!v) return LC_STATUS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be a finite number", what, key);
    *out = v->valuedouble;
    return LC_STATUS_OK;
}

lc_status lc_json_get_bool(const cJSON *obj, const char *key, const char *what, bool def, bool *out) {
    const cJSON *v = lc_json_field(obj, key);
    *out = def;
    if (!v) return LC_STATUS_OK;
    if (!cJSON_IsBool(v)) return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return LC_STATUS_OK;
}

lc_status lc_json_get_string(const cJSON *obj, const char *key, const char *what, const char *def, const char **out) {
    const cJSON *v = lc_json_field(obj, key);
    *out = def;
    if (!v) return LC_STATUS_OK;
    if (!cJSON_IsString(v)) return lc_error(LC_STATUS_INPUT, "%s: \"%s\" must be a string", what, key);
    *out = v->valuestring;
    return LC_STATUS_OK;
}

bool lc_json_has_nul_escape(const char *s, size_t n) {
    for (const char *p = s; (p = memchr(p, '\\', (size_t)(s + n - p))) != NULL;) {
        if (p + 1 < s + n && p[1] == 'u' && (size_t)(s + n - p) >= 6 && memcmp(p + 2, "0000", 4) == 0) return true;
        p += 2; // skip the escaped character (an escaped backslash included)
        if (p >= s + n) break;
    }
    return false;
}
