// fuzz_safetensors: one .safetensors file (lc_st_set_add_file), or, when the
// input holds LC_FUZZ_SEP, a sharded folder: part 0 is
// model.safetensors.index.json and parts 1.. are shards s1.safetensors,
// s2.safetensors, ... A valid shard also sits outside the folder
// (../outside.safetensors) and in a sibling folder: opening either is a bug.
#include "fuzz_common.h"

#include "common/status.h"
#include "model/safetensors.h"

static float scratch[1 << 16];

static void touch(const lc_st_set *set) {
    for (int i = 0; i < set->n_tensors; i++) {
        const lc_st_tensor *t = &set->tensors[i];
        if (lc_st_set_find(set, t->name) != t) __builtin_trap();
        if (t->shard < 0 || t->shard >= set->n_files) __builtin_trap();
        const lc_st_file *f = &set->files[t->shard];
        if (t->nbytes && (t->data < f->map.data || t->data + t->nbytes > f->map.data + f->map.size)) __builtin_trap();
        if (t->dtype != LC_DTYPE_OTHER) {
            if ((size_t)t->n_elements * lc_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
            if (t->n_elements <= (int64_t)(sizeof scratch / sizeof scratch[0])) lc_st_tensor_to_f32(t, scratch);
        }
    }
}

static void write_decoy(const char *path) {
    // {"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}
    static const char hdr[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t buf[8 + sizeof hdr - 1 + 4];
    uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    memset(buf + 8 + n, 0, 4);
    lc_fuzz_write(path, buf, sizeof buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    lc_fuzz_subdir("m");
    lc_fuzz_subdir("other");
    write_decoy(lc_fuzz_path(0, NULL, "outside.safetensors"));
    write_decoy(lc_fuzz_path(0, "other", "s1.safetensors"));
    write_decoy(lc_fuzz_path(0, NULL, "model.safetensors"));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lc_fuzz_part parts[LC_FUZZ_MAX_PARTS];
    int n = lc_fuzz_split(data, size, parts, LC_FUZZ_MAX_PARTS);
    lc_st_set set;
    memset(&set, 0, sizeof set);
    if (n == 1) {
        const char *path = lc_fuzz_path(0, NULL, "in.safetensors");
        lc_fuzz_write(path, data, size);
        if (lc_fuzz_note(lc_st_set_add_file(&set, path), "add_file") == LC_STATUS_OK) touch(&set);
        lc_st_set_free(&set);
        return 0;
    }
    const char *dir = lc_fuzz_subdir("m");
    lc_fuzz_write(lc_fuzz_path(0, "m", "model.safetensors.index.json"), parts[0].p, parts[0].n);
    for (int i = 1; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%d.safetensors", i);
        lc_fuzz_write(lc_fuzz_path(1, "m", name), parts[i].p, parts[i].n);
    }
    if (lc_fuzz_note(lc_st_set_open_dir(&set, dir), "open_dir") == LC_STATUS_OK) {
        touch(&set);
        size_t dl = strlen(dir);
        for (int i = 0; i < set.n_files; i++) {
            const char *p = set.files[i].path;
            // Every shard must be a plain file directly inside the folder.
            if (strncmp(p, dir, dl) != 0 || p[dl] != '/' || strchr(p + dl + 1, '/') ||
                !strcmp(p + dl + 1, "..") || !strcmp(p + dl + 1, "."))
                __builtin_trap();
        }
    }
    lc_st_set_free(&set);
    return 0;
}
