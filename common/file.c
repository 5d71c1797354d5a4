#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

lc_status lc_file_read(const char *path, size_t max_bytes, char **out_data, size_t *out_len) {
    *out_data = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lc_error(LC_STATUS_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lc_error(LC_STATUS_INPUT, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return lc_error(LC_STATUS_INPUT, "%s: file is %lld bytes, over the limit of %zu",
                        path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != n) {
        free(buf);
        return lc_error(LC_STATUS_INPUT, "%s: read failed", path);
    }
    buf[n] = '\0';
    *out_data = buf;
    *out_len = n;
    return LC_STATUS_OK;
}

lc_status lc_file_map_open(lc_file_map *map, const char *path) {
    map->data = NULL;
    map->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lc_error(LC_STATUS_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lc_error(LC_STATUS_INPUT, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return lc_error(LC_STATUS_INPUT, "%s: cannot map: %s", path, strerror(errno));
        }
        map->data = p;
        map->size = (size_t)st.st_size;
    }
    close(fd);
    return LC_STATUS_OK;
}

void lc_file_map_close(lc_file_map *map) {
    if (map->data) munmap((void *)map->data, map->size);
    map->data = NULL;
    map->size = 0;
}

int lc_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int lc_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

lc_status lc_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return lc_error(LC_STATUS_INPUT, "%s/%s: path too long", dir, name);
    return LC_STATUS_OK;
}

lc_status lc_dir_create(const char *dir) { return lc_dir_create_made(dir, NULL); }

lc_status lc_dir_create_made(const char *dir, lc_dir_made *made) {
    char buf[4096];
    size_t n = strlen(dir);
    if (made) made->n = 0;
    if (n == 0 || n >= sizeof buf) return lc_error(LC_STATUS_INPUT, "%s: invalid folder name", dir);
    memcpy(buf, dir, n + 1);
    if (made) memcpy(made->path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) == 0) {
            if (made && made->n < (int)(sizeof made->end / sizeof made->end[0]))
                made->end[made->n++] = (unsigned short)i;
        } else if (errno != EEXIST) {
            // A file where the path needs a folder is the user's input.
            lc_status st = lc_error(errno == ENOTDIR ? LC_STATUS_INPUT : LC_STATUS_RUNTIME,
                                    "%s: cannot create folder: %s", buf, strerror(errno));
            if (made) {
                lc_dir_remove_made(made);
                made->n = 0;
            }
            return st;
        }
        buf[i] = c;
    }
    if (!lc_dir_exists(dir)) return lc_error(LC_STATUS_INPUT, "%s: exists and is not a folder", dir);
    return LC_STATUS_OK;
}

void lc_dir_remove_made(const lc_dir_made *made) {
    if (!made) return;
    char buf[4096];
    // Last made first: each folder is empty of the ones made inside it by then.
    for (int k = made->n - 1; k >= 0; k--) {
        memcpy(buf, made->path, made->end[k]);
        buf[made->end[k]] = '\0';
        rmdir(buf); // fails, harmlessly, on a folder that holds something
    }
}

lc_status lc_path_dirname(char *out, size_t cap, const char *path) {
    const char *slash = strrchr(path, '/');
    int n = !slash ? snprintf(out, cap, ".")
            : slash == path ? snprintf(out, cap, "/")
                            : snprintf(out, cap, "%.*s", (int)(slash - path), path);
    if (n < 0 || (size_t)n >= cap) return lc_error(LC_STATUS_INPUT, "%s: path too long", path);
    return LC_STATUS_OK;
}

lc_status lc_file_sync_parent(const char *path) {
    char dir[4096];
    lc_status st = lc_path_dirname(dir, sizeof dir, path);
    if (st) return st;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return lc_error(LC_STATUS_RUNTIME, "%s: cannot open folder: %s", dir, strerror(errno));
    int ok = fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP;
    int err = errno;
    close(fd);
    return ok ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "%s: written, but fsync of its folder failed: %s", path,
                                        strerror(err));
}

lc_status lc_file_check_replaceable(const char *path) {
    struct stat sb;
    // Not there (or unreachable): the write itself makes it, or says why not.
    if (lstat(path, &sb) != 0 || S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) return LC_STATUS_OK;
    return lc_error(LC_STATUS_INPUT, "%s: not a regular file (a device, pipe, socket or folder); give the path of a "
                    "file to write", path);
}

lc_status lc_file_write_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    lc_status st = lc_file_check_replaceable(path);
    if (st) return st;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return lc_error(LC_STATUS_INPUT, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lc_error(LC_STATUS_RUNTIME, "%s: cannot create: %s", path, strerror(errno)); // not tmp: the user named path
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(tmp);
        return lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", path, strerror(err));
    }
    return lc_file_sync_parent(path);
}

double lc_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
