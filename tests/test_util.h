// Helpers shared by the tests: temporary folders, small files, running `lora`.
#ifndef LC_TEST_UTIL_H
#define LC_TEST_UTIL_H

#include <stddef.h>

// Creates a fresh temporary folder; returns its path (the caller frees it).
char *lc_test_tmpdir(void);
// Removes a folder and everything in it.
void lc_test_rmdir(const char *dir);
// Writes len bytes to dir/name.
void lc_test_write(const char *dir, const char *name, const void *data, size_t len);
// Copies a file into dir/name.
void lc_test_copy(const char *src, const char *dir, const char *name);
// Reads a whole file (NUL-terminated, caller frees); aborts the test on failure.
char *lc_test_read(const char *path, size_t *len);

typedef struct lc_test_run {
    int status;   // exit status, or -1 if it did not exit normally
    char *out;    // stdout
    char *err;    // stderr
} lc_test_run;

// Runs the lora binary with argv (NULL-terminated, without argv[0]) and captures its output.
lc_test_run lc_test_lora(const char *const *args);
// The same with `input` as its stdin (NULL: /dev/null).
lc_test_run lc_test_lora_stdin(const char *const *args, const char *input);
void lc_test_run_free(lc_test_run *r);
// Runs every test of s (forking, as Check does by default); the exit status for main.
struct Suite;
int lc_test_run_suite(struct Suite *s);

// Number of lines in s (a final line without newline counts).
int lc_test_count_lines(const char *s);

#endif
