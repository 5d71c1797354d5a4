#include "data/score.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int lc_metric_parse(const char *name) {
    if (!strcmp(name, "exact")) return LC_METRIC_EXACT;
    if (!strcmp(name, "number")) return LC_METRIC_NUMBER;
    if (!strcmp(name, "contains")) return LC_METRIC_CONTAINS;
    return -1;
}

const char *lc_metric_name(lc_metric m) {
    return m == LC_METRIC_EXACT ? "exact" : m == LC_METRIC_NUMBER ? "number" : "contains";
}

// Thousands separators: ',' '.' and spaces (ASCII, no-break U+00A0, narrow
// no-break U+202F) as English, German, Spanish or French answers write them.
static size_t separator(const char *p) {
    if (*p == ',' || *p == '.' || *p == ' ') return 1;
    if ((unsigned char)p[0] == 0xC2 && (unsigned char)p[1] == 0xA0) return 2;
    if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x80 && (unsigned char)p[2] == 0xAF) return 3;
    return 0;
}

static bool three_digits(const char *p) {
    return isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
           !isdigit((unsigned char)p[3]);
}

// A number at s (a digit): digits in groups of three after one kind of
// separator ("1,234,567", "70 000", "80.000"), then a decimal part after '.'
// or ',' ("2,5", "0.50"); a '-' right before it is its sign unless it
// follows a letter or digit ("8-3" is not -3). Its length (0 if none); its
// digits, without separators, with '.' for the decimal mark, in out.
static size_t read_number(const char *s, const char *start, char *out, size_t cap) {
    const char *p = s;
    size_t n = 0;
    char buf[128];
    if (p > start && p[-1] == '-' && (p - 1 == start || !isalnum((unsigned char)p[-2]))) buf[n++] = '-';
    if (!isdigit((unsigned char)*p)) return 0;
    int lead = 0;
    while (isdigit((unsigned char)*p) && n + 1 < sizeof buf) buf[n++] = *p++, lead++;
    char kind = 0; // the grouping separator seen
    for (size_t w; lead <= 3 && (w = separator(p)) && three_digits(p + w) && (!kind || kind == *p);) {
        kind = *p;
        for (int i = 0; i < 3 && n + 1 < sizeof buf; i++) buf[n++] = p[w + i];
        p += w + 3;
    }
    // A decimal mark: '.' or ',' other than the grouping one, before digits.
    if ((*p == '.' || *p == ',') && *p != kind && isdigit((unsigned char)p[1])) {
        if (n + 1 < sizeof buf) buf[n++] = '.';
        for (p++; isdigit((unsigned char)*p); p++)
            if (n + 1 < sizeof buf) buf[n++] = *p;
    }
    buf[n] = 0;
    if (n + 1 > cap) return 0;
    memcpy(out, buf, n + 1);
    return (size_t)(p - s);
}

// "0042.500" -> "42.5", "-0" -> "0".
static void normalize(char *num) {
    char *dot = strchr(num, '.');
    if (dot) {
        char *end = num + strlen(num);
        while (end > dot + 1 && end[-1] == '0') *--end = 0;
        if (end == dot + 1) *dot = 0;
    }
    char *digits = num[0] == '-' ? num + 1 : num;
    size_t lead = 0;
    while (digits[lead] == '0' && isdigit((unsigned char)digits[lead + 1])) lead++;
    memmove(digits, digits + lead, strlen(digits + lead) + 1);
    if (num[0] == '-' && !strcmp(digits, "0")) memmove(num, num + 1, strlen(num));
}

// The first number at or after from (first) or the last one in the text.
static bool find_number(const char *text, const char *from, bool first, char *out, size_t cap) {
    bool found = false;
    char buf[128];
    for (const char *p = from; *p;) {
        size_t len = isdigit((unsigned char)*p) && (p == text || !isdigit((unsigned char)p[-1]))
                         ? read_number(p, text, buf, sizeof buf) : 0;
        if (!len) {
            p++;
            continue;
        }
        if (strlen(buf) < cap) {
            strcpy(out, buf);
            found = true;
        }
        if (first) break;
        p += len;
    }
    if (found) normalize(out);
    return found;
}

static const char *last_occurrence(const char *text, const char *needle, bool fold) {
    const char *last = NULL;
    size_t n = strlen(needle);
    for (const char *p = text; *p; p++)
        if (fold ? strncasecmp(p, needle, n) == 0 : strncmp(p, needle, n) == 0) last = p;
    return last ? last + n : NULL;
}

bool lc_score_number(const char *text, bool reference, char *out, size_t cap) {
    const char *at = last_occurrence(text, "####", false);
    if (at) return find_number(text, at, true, out, cap);
    if (!reference && (at = last_occurrence(text, "answer is", true)) && find_number(text, at, true, out, cap))
        return true;
    return find_number(text, text, false, out, cap);
}

// text without surrounding whitespace: [*b, *e).
static void trim(const char *text, const char **b, const char **e) {
    const char *s = text, *t = text + strlen(text);
    while (s < t && isspace((unsigned char)*s)) s++;
    while (t > s && isspace((unsigned char)t[-1])) t--;
    *b = s;
    *e = t;
}

bool lc_score_match(lc_metric m, const char *prediction, const char *reference) {
    if (m == LC_METRIC_NUMBER) {
        char a[128], b[128];
        return lc_score_number(prediction, false, a, sizeof a) && lc_score_number(reference, true, b, sizeof b) &&
               !strcmp(a, b);
    }
    const char *pb, *pe, *rb, *re;
    trim(prediction, &pb, &pe);
    trim(reference, &rb, &re);
    size_t pn = (size_t)(pe - pb), rn = (size_t)(re - rb);
    if (m == LC_METRIC_EXACT) return pn == rn && memcmp(pb, rb, pn) == 0;
    if (rn == 0) return true;
    for (const char *p = pb; p + rn <= pe; p++)
        if (memcmp(p, rb, rn) == 0) return true;
    return false;
}
