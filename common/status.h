// Status codes shared by every library in lora.c. Values are the process
// exit codes of the `lora` command (SPEC: 1 usage, 2 bad input, 3 runtime).
#ifndef LC_STATUS_H
#define LC_STATUS_H

typedef enum lc_status {
    LC_STATUS_OK = 0,
    LC_STATUS_USAGE = 1,   // bad command line
    LC_STATUS_INPUT = 2,   // unreadable or invalid file, bad config
    LC_STATUS_RUNTIME = 3, // out of memory, disk full, NaN loss
    LC_STATUS_INTERRUPTED = 130, // SIGINT/SIGTERM: work saved, then stopped (128 + SIGINT)
} lc_status;

// Records a one-line message for the caller (main prints it) and returns
// `status`, so library code can write `return lc_error(LC_STATUS_INPUT, ...)`.
lc_status lc_error(lc_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// The message of the most recent lc_error on this thread ("" if none).
const char *lc_error_message(void);

// Prefixes the current message with "prefix: " (adds file context on the way up).
void lc_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
