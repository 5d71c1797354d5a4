// The bad-input corpus (tests/bad-inputs/, written by make_cases.py): each
// case runs `lora` on a hostile or broken input and must exit with the
// expected status and one stderr line naming what is wrong, leave no
// half-written file and change no file that was there before.
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

#define CORPUS LC_SOURCE_DIR "/tests/bad-inputs"
#define MAX_CASES 256
#define MAX_FILES 512

static char *cases[MAX_CASES];
static int n_cases;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list_cases(void) {
    DIR *d = opendir(CORPUS);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && n_cases < MAX_CASES) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) cases[n_cases++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(cases, (size_t)n_cases, sizeof *cases, cmp_str);
}

// Replaces @CASE@ and @SHARED@ in text (heap result).
static char *expand(const char *text, const char *case_dir) {
    size_t cap = strlen(text) * 2 + 8192, n = 0;
    char *out = malloc(cap);
    for (const char *p = text; *p;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (strncmp(p, "@CASE@", 6) == 0) rep = case_dir, skip = 6;
        else if (strncmp(p, "@SHARED@", 8) == 0) rep = LC_SHARED_DIR, skip = 8;
        if (rep) {
            size_t len = strlen(rep);
            if (n + len + 1 >= cap) out = realloc(out, cap = 2 * (cap + len));
            memcpy(out + n, rep, len);
            n += len;
            p += skip;
        } else {
            if (n + 2 >= cap) out = realloc(out, cap *= 2);
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

// Copies the case folder (recursively) into dst, expanding placeholders in files.
static void copy_tree(const char *src, const char *dst, const char *case_dir) {
    DIR *d = opendir(src);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char s[4200], t[4200];
        snprintf(s, sizeof s, "%s/%s", src, e->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, e->d_name);
        struct stat st;
        ck_assert_int_eq(stat(s, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            ck_assert_int_eq(mkdir(t, 0755), 0);
            copy_tree(s, t, case_dir);
            continue;
        }
        size_t len;
        char *buf = lc_test_read(s, &len);
        if (strlen(buf) == len && (strstr(buf, "@CASE@") || strstr(buf, "@SHARED@"))) {
            char *x = expand(buf, case_dir);
            free(buf);
            buf = x;
            len = strlen(x);
        }
        lc_test_write(dst, e->d_name, buf, len);
        free(buf);
    }
    closedir(d);
}

typedef struct snapshot {
    char *path[MAX_FILES];
    uint64_t hash[MAX_FILES];
    int n;
} snapshot;

static uint64_t file_hash(const char *path) {
    size_t len;
    char *buf = lc_test_read(path, &len);
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
    free(buf);
    return h;
}

// Calls fn for every regular file below dir (recursively, links not followed).
static void walk_files(const char *dir, void (*fn)(const char *path, void *ctx), void *ctx) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) walk_files(p, fn, ctx);
        else if (S_ISREG(st.st_mode)) fn(p, ctx);
    }
    closedir(d);
}

static void snapshot_file(const char *path, void *ctx) {
    snapshot *s = ctx;
    if (s->n == MAX_FILES) return;
    s->path[s->n] = strdup(path);
    s->hash[s->n++] = file_hash(path);
}

// A *.tmp file that was not there before is a half-written file left behind.
static void check_not_temporary(const char *path, void *ctx) {
    const snapshot *before = ctx;
    size_t n = strlen(path);
    int known = 0;
    for (int i = 0; i < before->n && !known; i++) known = strcmp(before->path[i], path) == 0;
    ck_assert_msg(known || n < 4 || strcmp(path + n - 4, ".tmp") != 0, "half-written file left: %s", path);
}

// Splits a line on spaces into argv (in place); returns argc.
static int split(char *line, const char **argv, int cap) {
    int n = 0;
    char *save;
    for (char *tok = strtok_r(line, " ", &save); tok && n < cap - 1; tok = strtok_r(NULL, " ", &save)) argv[n++] = tok;
    argv[n] = NULL;
    return n;
}

static void run_setup(const char *case_src, const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/setup", case_src);
    if (access(path, F_OK) != 0) return;
    char *text = lc_test_read(path, NULL), *expanded = expand(text, dir);
    free(text);
    char *save;
    for (char *line = strtok_r(expanded, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *copy = strdup(line);
        const char *argv[64];
        int argc = split(copy, argv, 64);
        if (argc >= 1 && strcmp(argv[0], "lora") == 0) {
            lc_test_run r = lc_test_lora(argv + 1);
            ck_assert_msg(r.status == 0, "setup \"%s\" failed: %s", line, r.err);
            lc_test_run_free(&r);
        } else if (argc == 2 && strcmp(argv[0], "mkdir") == 0) {
            char cmd[4400];
            snprintf(cmd, sizeof cmd, "mkdir -p '%s'", argv[1]);
            ck_assert_int_eq(system(cmd), 0);
        } else if (argc == 3 && strcmp(argv[0], "copy") == 0) {
            size_t len;
            char *buf = lc_test_read(argv[1], &len);
            FILE *f = fopen(argv[2], "wb");
            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
            fclose(f);
            free(buf);
        } else if (argc == 3 && strcmp(argv[0], "truncate") == 0) {
            ck_assert_int_eq(truncate(argv[1], atol(argv[2])), 0);
        } else if (argc == 3 && strcmp(argv[0], "flip") == 0) {
            FILE *f = fopen(argv[1], "r+b");
            ck_assert_ptr_nonnull(f);
            fseek(f, atol(argv[2]), SEEK_SET);
            int c = fgetc(f);
            fseek(f, atol(argv[2]), SEEK_SET);
            fputc(c ^ 0x40, f);
            fclose(f);
        } else {
            ck_abort_msg("unknown setup line \"%s\"", line);
        }
        free(copy);
    }
    free(expanded);
}

START_TEST(test_case) {
    const char *name = cases[_i];
    char src[4200], path[4300];
    snprintf(src, sizeof src, "%s/%s", CORPUS, name);
    char *dir = lc_test_tmpdir();
    copy_tree(src, dir, dir);
    run_setup(src, dir);

    snprintf(path, sizeof path, "%s/args", src);
    char *args_text = lc_test_read(path, NULL), *args = expand(args_text, dir);
    const char *argv[64];
    int argc = 0;
    for (char *line = strtok(args, "\n"); line && argc < 63; line = strtok(NULL, "\n")) argv[argc++] = line;
    argv[argc] = NULL;
    snprintf(path, sizeof path, "%s/expect", src);
    char *expect_text = lc_test_read(path, NULL), *expect = expand(expect_text, dir);
    int status = atoi(expect);
    char *needle = strchr(expect, '\n') + 1;
    needle[strcspn(needle, "\n")] = '\0';

    snapshot before = {0};
    walk_files(dir, snapshot_file, &before);
    lc_test_run r = lc_test_lora(argv);
    ck_assert_msg(r.status == status, "%s: exit %d, wanted %d: %s", name, r.status, status, r.err);
    // One line, possibly after warnings and progress lines of a training run.
    const char *last = r.err;
    for (const char *p = r.err; *p; p++)
        if (p[0] == '\n' && p[1]) last = p + 1;
    ck_assert_msg(strstr(last, needle) != NULL, "%s: error line \"%s\" lacks \"%s\"", name, last, needle);
    ck_assert_msg(strncmp(last, "lora ", 5) == 0, "%s: error line is not lora's: %s", name, last);
    if (argv[0] && strcmp(argv[0], "train") != 0)
        ck_assert_msg(lc_test_count_lines(r.err) == 1, "%s: stderr is not one line: %s", name, r.err);
    for (int i = 0; i < before.n; i++)
        ck_assert_msg(file_hash(before.path[i]) == before.hash[i], "%s: %s was changed", name, before.path[i]);
    walk_files(dir, check_not_temporary, &before);
    snprintf(path, sizeof path, "%s/exists", src);
    if (access(path, F_OK) == 0) {
        char *text = lc_test_read(path, NULL), *ex = expand(text, dir);
        for (char *line = strtok(ex, "\n"); line; line = strtok(NULL, "\n"))
            ck_assert_msg(access(line, F_OK) == 0, "%s: %s should still exist", name, line);
        free(text);
        free(ex);
    }
    lc_test_run_free(&r);
    for (int i = 0; i < before.n; i++) free(before.path[i]);
    free(args_text);
    free(args);
    free(expect_text);
    free(expect);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}
END_TEST

int main(void) {
    list_cases();
    if (n_cases == 0) {
        fprintf(stderr, "no cases in %s\n", CORPUS);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("bad_inputs");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_case, 0, n_cases);
    suite_add_tcase(s, tc);
    return lc_test_run_suite(s);
}
