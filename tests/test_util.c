#include "test_util.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *lc_test_tmpdir(void) {
    char *t = strdup("/tmp/lc_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t));
    return t;
}

void lc_test_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        // lstat: a link is removed, never followed.
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) lc_test_rmdir(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void lc_test_write(const char *dir, const char *name, const void *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

char *lc_test_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

void lc_test_copy(const char *src, const char *dir, const char *name) {
    size_t n;
    char *buf = lc_test_read(src, &n);
    lc_test_write(dir, name, buf, n);
    free(buf);
}

static char *slurp_fd(int fd) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

lc_test_run lc_test_lora(const char *const *args) { return lc_test_lora_stdin(args, NULL); }

lc_test_run lc_test_lora_stdin(const char *const *args, const char *input) {
    lc_test_run r = {-1, NULL, NULL};
    char in_path[] = "/tmp/lc_in_XXXXXX";
    int in_fd = -1;
    if (input) { // a file, not a pipe: the child reads it to EOF as from a closed pipe
        in_fd = mkstemp(in_path);
        ck_assert(in_fd >= 0);
        ck_assert(write(in_fd, input, strlen(input)) == (ssize_t)strlen(input));
        lseek(in_fd, 0, SEEK_SET);
        unlink(in_path);
    }
    char out_path[] = "/tmp/lc_out_XXXXXX", err_path[] = "/tmp/lc_err_XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    ck_assert(out_fd >= 0 && err_fd >= 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        const char *argv[64];
        int n = 0;
        argv[n++] = LC_LORA_BIN;
        for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
        argv[n] = NULL;
        int devnull = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        execv(LC_LORA_BIN, (char *const *)argv);
        _exit(127);
    }
    int wst;
    waitpid(pid, &wst, 0);
    if (in_fd >= 0) close(in_fd);
    r.status = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
    lseek(out_fd, 0, SEEK_SET);
    lseek(err_fd, 0, SEEK_SET);
    r.out = slurp_fd(out_fd);
    r.err = slurp_fd(err_fd);
    close(out_fd);
    close(err_fd);
    unlink(out_path);
    unlink(err_path);
    return r;
}

void lc_test_run_free(lc_test_run *r) {
    free(r->out);
    free(r->err);
}

int lc_test_count_lines(const char *s) {
    int n = 0;
    for (const char *p = s; *p; p++) n += *p == '\n';
    if (*s && s[strlen(s) - 1] != '\n') n++;
    return n;
}

int lc_test_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
