#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"

// checkpoint-<digits>.h5 exactly.
static int parse_name(const char *name, int64_t *step) {
    if (strncmp(name, "checkpoint-", 11) != 0) return 0;
    const char *p = name + 11;
    if (*p < '0' || *p > '9') return 0;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    if (strcmp(p, ".h5") != 0) return 0;
    *step = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

lc_status lc_run_dir_checkpoints(const char *dir, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return LC_STATUS_OK;
        return lc_error(LC_STATUS_INPUT, "%s: cannot open folder: %s", dir, strerror(errno));
    }
    int cap = 0;
    struct dirent *e;
    lc_status st = LC_STATUS_OK;
    while ((e = readdir(d))) {
        int64_t step;
        if (!parse_name(e->d_name, &step)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *grown = realloc(*steps, sizeof *grown * (size_t)cap);
            if (!grown) {
                st = lc_error(LC_STATUS_RUNTIME, "out of memory");
                break;
            }
            *steps = grown;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
    return st;
}

lc_status lc_run_dir_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step) {
    int n = snprintf(out, cap, "%s/checkpoint-%lld.h5", dir, (long long)step);
    if (n < 0 || (size_t)n >= cap) return lc_error(LC_STATUS_INPUT, "%s: path too long", dir);
    return LC_STATUS_OK;
}

void lc_run_dir_prune(const char *dir, int keep) {
    int64_t *steps;
    int n;
    if (lc_run_dir_checkpoints(dir, &steps, &n)) return;
    char path[4200];
    for (int i = keep; i < n; i++)
        if (!lc_run_dir_checkpoint_path(path, sizeof path, dir, steps[i])) remove(path);
    free(steps);
}
