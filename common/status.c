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
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    // Shift the old message right and put "prefix: " in front, truncating the tail.
    size_t cap = sizeof lc_error_buf, pl = strlen(prefix), ol = strlen(lc_error_buf);
    if (pl + 2 >= cap) pl = cap - 3;
    if (pl + 2 + ol >= cap) ol = cap - pl - 3;
    memmove(lc_error_buf + pl + 2, lc_error_buf, ol);
    lc_error_buf[pl + 2 + ol] = '\0';
    memcpy(lc_error_buf, prefix, pl);
    lc_error_buf[pl] = ':';
    lc_error_buf[pl + 1] = ' ';
}
