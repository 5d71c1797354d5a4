// Scoring generated answers against references: exact match, the final
// number (GSM8K / MGSM style), or containment.
#ifndef LC_SCORE_H
#define LC_SCORE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum lc_metric {
    LC_METRIC_EXACT,    // equal after trimming surrounding whitespace
    LC_METRIC_NUMBER,   // the same final number
    LC_METRIC_CONTAINS, // the trimmed reference occurs in the prediction
} lc_metric;

// "exact" / "number" / "contains"; -1 if unknown.
int lc_metric_parse(const char *name);
const char *lc_metric_name(lc_metric m);

// The final numeric answer of text, normalized (thousands separators
// removed, "42.0" -> "42", "-0.50" -> "-0.5") into out; false when text has
// none (or out is too small). The answer is the number after the last
// "####" (GSM8K); else, for a prediction (reference false), the number after
// the last "answer is" (any case); else the last number in the text (an
// MGSM reference is a bare number).
bool lc_score_number(const char *text, bool reference, char *out, size_t cap);

bool lc_score_match(lc_metric m, const char *prediction, const char *reference);

#endif
