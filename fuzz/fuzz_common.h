// Shared helpers for the libFuzzer harnesses: a per-process scratch folder in
// /dev/shm (the parsers take paths), file writing, and splitting one fuzz input
// into several files on a separator line.
#ifndef LC_FUZZ_COMMON_H
#define LC_FUZZ_COMMON_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LC_SHARED_DIR
#define LC_SHARED_DIR "../shared"
// With LC_FUZZ_VERBOSE=1 in the environment, prints why an input was refused
// (for checking that seeds load; the fuzzers run without it).
#include "common/status.h"
static inline lc_status lc_fuzz_note(lc_status st, const char *what) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("LC_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, st ? lc_error_message() : "ok");
    return st;
}

#endif

// Separator between the parts of a multi-file input (also in fuzz/lcfuzz.dict).
#define LC_FUZZ_SEP "\n=====LCFUZZ=====\n"
#define LC_FUZZ_SEP_LEN (sizeof LC_FUZZ_SEP - 1)
#define LC_FUZZ_MAX_PARTS 8

typedef struct lc_fuzz_part {
    const uint8_t *p;
    size_t n;
} lc_fuzz_part;

static char lc_fuzz_dir_buf[256];

static inline void lc_fuzz_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            lc_fuzz_rmtree(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

static inline void lc_fuzz_cleanup(void) {
    if (lc_fuzz_dir_buf[0]) {
        lc_fuzz_rmtree(lc_fuzz_dir_buf);
        rmdir(lc_fuzz_dir_buf);
    }
}

// The scratch folder of this process, created on first use and removed at exit.
static inline const char *lc_fuzz_dir(void) {
    if (!lc_fuzz_dir_buf[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(lc_fuzz_dir_buf, sizeof lc_fuzz_dir_buf, "%s/lcfuzz.%ld", base, (long)getpid());
        lc_fuzz_rmtree(lc_fuzz_dir_buf);
        mkdir(lc_fuzz_dir_buf, 0700);
        atexit(lc_fuzz_cleanup);
    }
    return lc_fuzz_dir_buf;
}

// dir/name, in a static buffer per slot (slots 0..7).
static inline const char *lc_fuzz_path(int slot, const char *sub, const char *name) {
    static char buf[8][1024];
    if (sub && sub[0])
        snprintf(buf[slot], sizeof buf[slot], "%s/%s/%s", lc_fuzz_dir(), sub, name);
    else
        snprintf(buf[slot], sizeof buf[slot], "%s/%s", lc_fuzz_dir(), name);
    return buf[slot];
}

// A fresh, empty subfolder of the scratch folder; returns its path.
static inline const char *lc_fuzz_subdir(const char *sub) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", lc_fuzz_dir(), sub);
    lc_fuzz_rmtree(buf);
    mkdir(buf, 0700);
    return buf;
}

static inline void lc_fuzz_write(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

// Splits data on LC_FUZZ_SEP into at most max parts (the last keeps any
// further separators). Returns the number of parts (>= 1).
static inline int lc_fuzz_split(const uint8_t *data, size_t size, lc_fuzz_part *parts, int max) {
    int n = 0;
    const uint8_t *p = data, *end = data + size;
    while (n < max - 1) {
        const uint8_t *q = (size_t)(end - p) >= LC_FUZZ_SEP_LEN
                               ? memmem(p, (size_t)(end - p), LC_FUZZ_SEP, LC_FUZZ_SEP_LEN)
                               : NULL;
        if (!q) break;
        parts[n].p = p;
        parts[n].n = (size_t)(q - p);
        n++;
        p = q + LC_FUZZ_SEP_LEN;
    }
    parts[n].p = p;
    parts[n].n = (size_t)(end - p);
    return n + 1;
}

// A shared fixture path (env LC_SHARED overrides the compiled-in folder).
static inline const char *lc_fuzz_shared(const char *rel) {
    static char buf[4][1024];
    static int slot;
    const char *base = getenv("LC_SHARED");
    if (!base || !base[0]) base = LC_SHARED_DIR;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", base, rel);
    return buf[slot];
}

// With LC_FUZZ_VERBOSE=1 in the environment, prints why an input was refused
// (for checking that seeds load; the fuzzers run without it).
#include "common/status.h"
static inline lc_status lc_fuzz_note(lc_status st, const char *what) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("LC_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, st ? lc_error_message() : "ok");
    return st;
}

#endif
