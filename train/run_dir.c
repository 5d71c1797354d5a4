#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"

#define INDEX_NAME "checkpoints.json"
#define LOCK_NAME "train.lock"
#define INDEX_MAX_BYTES ((size_t)16 << 20)

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

// Size of dir/checkpoint-<step>.h5, or -1 when it is not a regular file.
static int64_t checkpoint_bytes(const char *dir, int64_t step) {
    char path[4200];
    struct stat sb;
    if (lc_run_dir_checkpoint_path(path, sizeof path, dir, step) || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return -1;
    return (int64_t)sb.st_size;
}

static int find_entry(const lc_run_dir *r, int64_t step) {
    for (int i = 0; i < r->n; i++)
        if (r->entries[i].step == step) return i;
    return -1;
}

static lc_status push_entry(lc_run_dir *r, int64_t step, int64_t bytes) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        lc_run_entry *grown = realloc(r->entries, sizeof *grown * (size_t)cap);
        if (!grown) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        r->entries = grown;
        r->cap = cap;
    }
    r->entries[r->n++] = (lc_run_entry){step, bytes};
    return LC_STATUS_OK;
}

typedef struct step_pos {
    int64_t step;
    int pos;
} step_pos;

static int cmp_step_pos(const void *a, const void *b) {
    const step_pos *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_step_only(const void *a, const void *b) {
    const step_pos *x = a, *y = b;
    return (x->step > y->step) - (x->step < y->step);
}

// Keeps the first entry of each step, in order: O(n log n), for an index
// may list a great many.
static lc_status drop_repeated_steps(lc_run_dir *r) {
    if (r->n < 2) return LC_STATUS_OK;
    step_pos *order = malloc(sizeof *order * (size_t)r->n);
    unsigned char *repeat = calloc((size_t)r->n, 1);
    if (!order || !repeat) {
        free(order);
        free(repeat);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    for (int i = 0; i < r->n; i++) order[i] = (step_pos){r->entries[i].step, i};
    qsort(order, (size_t)r->n, sizeof *order, cmp_step_pos);
    for (int i = 1; i < r->n; i++)
        if (order[i].step == order[i - 1].step) repeat[order[i].pos] = 1;
    int kept = 0;
    for (int i = 0; i < r->n; i++)
        if (!repeat[i]) r->entries[kept++] = r->entries[i];
    r->n = kept;
    free(order);
    free(repeat);
    return LC_STATUS_OK;
}

// Reads dir's index into r. A missing index is an empty one; an index that
// does not parse is treated as empty (its checkpoints are then only never
// pruned), said on stderr when a run (not a reader) opens it.
static lc_status read_index(lc_run_dir *r, const char *dir, int quiet) {
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, dir, INDEX_NAME);
    if (st || !lc_file_exists(path)) return st;
    cJSON *root;
    if (lc_json_load_file(path, INDEX_MAX_BYTES, &root)) {
        if (!quiet) fprintf(stderr, "lora train: warning: %s; its checkpoints are kept (not pruned)\n", lc_error_message());
        return LC_STATUS_OK;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "checkpoints");
    if (!cJSON_IsArray(list) && !quiet)
        fprintf(stderr, "lora train: warning: %s: no \"checkpoints\" list; its checkpoints are kept (not pruned)\n",
                path);
    for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e && !st; e = e->next) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "step");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(e, "bytes");
        if (!cJSON_IsNumber(s) || !cJSON_IsNumber(b) || s->valuedouble < 0 || s->valuedouble > 9e15 ||
            b->valuedouble < 0 || b->valuedouble > 9e15)
            continue;
        int64_t step = (int64_t)s->valuedouble, bytes = (int64_t)b->valuedouble;
        st = push_entry(r, step, bytes);
    }
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(root, "best");
    if (cJSON_IsNumber(best) && best->valuedouble > 0 && best->valuedouble < 9e15) r->best = (int64_t)best->valuedouble;
    cJSON_Delete(root);
    return st ? st : drop_repeated_steps(r);
}

static lc_status write_index(const lc_run_dir *r) {
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, r->dir, INDEX_NAME);
    if (st) return st;
    size_t cap = 128 + 64 * (size_t)r->n, len = 0;
    char *text = malloc(cap);
    if (!text) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    len += (size_t)snprintf(text, cap,
                            "{\"format\": \"lora.c run index\", \"version\": 1,\n"
                            " \"about\": \"checkpoints written completely, oldest first\",\n \"checkpoints\": [");
    for (int i = 0; i < r->n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\n  {\"step\": %lld, \"bytes\": %lld}", i ? "," : "",
                                (long long)r->entries[i].step, (long long)r->entries[i].bytes);
    len += (size_t)snprintf(text + len, cap - len, "\n ]");
    if (r->best > 0) len += (size_t)snprintf(text + len, cap - len, ",\n \"best\": %lld", (long long)r->best);
    len += (size_t)snprintf(text + len, cap - len, "}\n");
    st = lc_file_write_atomic(path, text, len);
    free(text);
    return st;
}

lc_status lc_run_dir_open(lc_run_dir *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    if (strlen(dir) >= sizeof r->dir) return lc_error(LC_STATUS_INPUT, "%s: path too long", dir);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    struct stat sb;
    int existed = stat(dir, &sb) == 0;
    lc_status st = lc_dir_create(dir);
    if (st) return st;
    r->created = !existed;
    char path[4200];
    if ((st = lc_path_join(path, sizeof path, dir, LOCK_NAME))) return st;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
    // A POSIX record lock, for F_GETLK names the holder; the file stays
    // empty. (Closing any other descriptor of this file would drop it: none
    // is ever opened.)
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &lk) != 0) {
        int err = errno;
        if (err == EACCES || err == EAGAIN) {
            struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
            long holder = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
            close(fd);
            if (holder > 0)
                return lc_error(LC_STATUS_INPUT, "%s is in use by another lora train (process %ld); wait for it to "
                                "end or use another output_dir", dir, holder);
            return lc_error(LC_STATUS_INPUT, "%s is in use by another lora train; wait for it to end or use another "
                            "output_dir", dir);
        }
        // A file system without locks (some network mounts): run unguarded.
        fprintf(stderr, "lora train: warning: %s: cannot lock (%s); make sure no other run uses this folder\n", path,
                strerror(err));
    }
    r->lock_fd = fd;
    if ((st = read_index(r, dir, 0))) lc_run_dir_close(r);
    return st;
}

lc_status lc_run_dir_holder(const char *dir, long *pid) {
    *pid = 0;
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, dir, LOCK_NAME);
    if (st) return st;
    // Read-only and never locked here: asking (F_GETLK) takes nothing.
    // O_NONBLOCK: a FIFO put in its place must not hang the reader.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return LC_STATUS_OK; // no run ever took it
        return lc_error(LC_STATUS_RUNTIME, "%s unreadable: %s", LOCK_NAME, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lc_error(LC_STATUS_RUNTIME, "%s is not a regular file", LOCK_NAME);
    }
    struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_GETLK, &who) != 0) { // no locks here (some network mounts): cannot be told
        int err = errno;
        close(fd);
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot query its lock: %s", LOCK_NAME, strerror(err));
    }
    close(fd);
    if (who.l_type != F_UNLCK) *pid = (long)who.l_pid;
    return LC_STATUS_OK;
}

void lc_run_dir_close(lc_run_dir *r) {
    if (r->lock_fd >= 0) close(r->lock_fd); // drops the flock
    r->lock_fd = -1;
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}

void lc_run_dir_close_failed(lc_run_dir *r) {
    if (r->lock_fd >= 0 && r->created) {
        char path[4200];
        if (!lc_path_join(path, sizeof path, r->dir, LOCK_NAME)) unlink(path);
        rmdir(r->dir); // only when nothing else is in it
    }
    lc_run_dir_close(r);
}

lc_status lc_run_dir_add(lc_run_dir *r, int64_t step) {
    int64_t bytes = checkpoint_bytes(r->dir, step);
    if (bytes < 0) return lc_error(LC_STATUS_RUNTIME, "%s/checkpoint-%lld.h5: missing after writing it", r->dir,
                                   (long long)step);
    int i = find_entry(r, step);
    if (i >= 0) { // rewritten: it moves to the newest place
        memmove(&r->entries[i], &r->entries[i + 1], sizeof *r->entries * (size_t)(r->n - i - 1));
        r->n--;
    }
    lc_status st = push_entry(r, step, bytes);
    return st ? st : write_index(r);
}

lc_status lc_run_dir_forget(lc_run_dir *r, int64_t step) {
    int i = find_entry(r, step);
    if (i < 0) return LC_STATUS_OK;
    memmove(&r->entries[i], &r->entries[i + 1], sizeof *r->entries * (size_t)(r->n - i - 1));
    r->n--;
    return write_index(r);
}

// A listed checkpoint whose file is gone or changed size since it was written.
static int entry_changed(const lc_run_dir *r, const char *dir, int i) {
    return checkpoint_bytes(dir, r->entries[i].step) != r->entries[i].bytes;
}

lc_status lc_run_dir_set_best(lc_run_dir *r, int64_t step) {
    r->best = step;
    return write_index(r);
}

int64_t lc_run_dir_read_best(const char *dir) {
    lc_run_dir own = {.lock_fd = -1};
    int64_t best = read_index(&own, dir, 1) ? 0 : own.best;
    lc_run_dir_close(&own);
    return best;
}

lc_status lc_run_dir_prune(lc_run_dir *r, int keep) {
    if (keep < 1) keep = 1; // never the one just written
    // Changed files are no longer known to be complete: they neither count
    // nor are deleted.
    int kept = 0;
    for (int i = 0; i < r->n; i++)
        if (!entry_changed(r, r->dir, i)) r->entries[kept++] = r->entries[i];
    r->n = kept;
    int has_best = r->n > 0 && r->best > 0 && find_entry(r, r->best) >= 0 && r->best != r->entries[r->n - 1].step;
    int drop = r->n - keep - has_best;
    if (drop <= 0) return LC_STATUS_OK;
    // The index is rewritten first: a crash in between leaves files the
    // index no longer lists (kept for good), never a listed file that is gone.
    lc_run_entry *gone = malloc(sizeof *gone * (size_t)drop);
    if (!gone) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    // The oldest `drop` entries other than the best go.
    int n_gone = 0, n_left = 0;
    for (int i = 0; i < r->n; i++) {
        if (n_gone < drop && r->entries[i].step != r->best) gone[n_gone++] = r->entries[i];
        else r->entries[n_left++] = r->entries[i];
    }
    r->n = n_left;
    lc_status st = write_index(r);
    for (int i = 0; !st && i < drop; i++) {
        char path[4200];
        if (!lc_run_dir_checkpoint_path(path, sizeof path, r->dir, gone[i].step) &&
            checkpoint_bytes(r->dir, gone[i].step) == gone[i].bytes)
            remove(path);
    }
    free(gone);
    return st;
}

lc_status lc_run_dir_find(const char *dir, const lc_run_dir *r, lc_run_dir_try_fn try_fn, void *ctx, int64_t *step,
                          int *n_skipped) {
    *step = 0;
    *n_skipped = 0;
    lc_run_dir own = {.lock_fd = -1};
    if (!r) {
        lc_status st = read_index(&own, dir, 1);
        if (st) return st;
        r = &own;
    }
    int64_t *steps = NULL;
    int n = 0;
    // The listed steps, sorted, for a lookup per file in O(log n).
    step_pos *listed = malloc(sizeof *listed * (size_t)(r->n ? r->n : 1));
    lc_status st = listed ? lc_run_dir_checkpoints(dir, &steps, &n) : lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (listed) {
        for (int i = 0; i < r->n; i++) listed[i] = (step_pos){r->entries[i].step, i};
        qsort(listed, (size_t)r->n, sizeof *listed, cmp_step_pos);
    }
    for (int i = 0; !st && i < n; i++) {
        char path[4200];
        if ((st = lc_run_dir_checkpoint_path(path, sizeof path, dir, steps[i]))) break;
        step_pos key = {steps[i], -1};
        const step_pos *hit = bsearch(&key, listed, (size_t)r->n, sizeof *listed, cmp_step_only);
        int k = hit ? hit->pos : -1, skip = 0;
        lc_status got;
        // A run trusts only files of the size it wrote; a reader reads what
        // is there (the read itself checks it whole).
        if (r != &own && k >= 0 && entry_changed(r, dir, k)) {
            skip = 1;
            got = lc_error(LC_STATUS_INPUT, "%s: %lld bytes, not the %lld it was written with", path,
                           (long long)checkpoint_bytes(dir, steps[i]), (long long)r->entries[k].bytes);
        } else {
            got = try_fn(ctx, path, &skip);
        }
        if (!got) {
            *step = steps[i];
            break;
        }
        if (!skip) {
            st = got;
            break;
        }
        fprintf(stderr, "lora: warning: skipping %s\n", lc_error_message());
        ++*n_skipped;
    }
    free(steps);
    free(listed);
    lc_run_dir_close(&own);
    return st;
}
