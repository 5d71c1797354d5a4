#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char lc_error_buf[1024];

lc_status lc_error(lc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lc_error_buf, sizeof lc_error_buf, fmt, ap);
    va_end(ap);
    return status;
}

const char *lc_error_message(void) { return lc_error_buf; }

void lc_error_prefix(const char *fmt, ...) {
    char prefix[512];
    char old[sizeof lc_error_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, lc_error_buf, sizeof old);
    snprintf(lc_error_buf, sizeof lc_error_buf, "%s: %s", prefix, old);
}
