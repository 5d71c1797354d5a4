#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
