// HDF5 checkpoints: a save/load round trip of the LoRA tensors, AdamW moments
// and training position is bit-identical; half-written, foreign, hostile or
// mismatched files are refused with LC_STATUS_INPUT naming the file and the
// object; failed saves (missing folder, disk full) leave nothing behind.
#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cJSON.h>

#include "model/lora.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/resume_check.h"
#include "train/run_dir.h"
#include "train/adapter.h"
#include "train/trainer.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define TARGETS_QVD ((1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_V) | (1u << LC_LINEAR_KIND_DOWN))
// The seven projections of a Llama-architecture model: what "all" adapts there.
#define TARGETS_LLAMA ((1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_K) | (1u << LC_LINEAR_KIND_V) | \
                       (1u << LC_LINEAR_KIND_O) | (1u << LC_LINEAR_KIND_GATE) | (1u << LC_LINEAR_KIND_UP) | \
                       (1u << LC_LINEAR_KIND_DOWN))
#define CONFIG_JSON "{\"lora\": {\"r\": 4, \"alpha\": 8}, \"note\": \"caf\xc3\xa9\"}"
#define RNG_STATE 0xdeadbeefcafef00dull // above INT64_MAX: stored unsigned

static lc_model model;
static lc_lora lora;
static lc_adamw opt;
static char *tmp;
static char ckpt[4096];
static char fingerprint[17];
static const lc_adamw_config adam_cfg = {0.9f, 0.999f, 1e-8f, 0.01f};

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// Uniform non-zero values in (-1, 1), or (0, 1) when positive.
static void fill_random(float *x, size_t n, uint64_t seed, int positive) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        float u = (float)((rng_next(&s) >> 40) + 1) / (float)(1ull << 24); // (0, 1]
        x[i] = positive ? u : (i & 1 ? u : -u);
    }
}

static void make_lora(lc_lora *l, int r, unsigned targets, float alpha, int rslora) {
    lc_lora_config cfg = {.r = r, .alpha = alpha, .dropout = 0.05f, .rslora = rslora, .targets = targets};
    lc_status st = lc_lora_init(l, &model, &cfg, 1234, false);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
}

static lc_checkpoint_meta make_meta(const char *config) {
    return (lc_checkpoint_meta){.step = 7,
                                .epoch = 2,
                                .data_index = 123,
                                .rng_state = RNG_STATE,
                                .config_json = config,
                                .base_fingerprint = fingerprint};
}

static void setup(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    lc_status st = lc_model_load(&model, MODEL_DIR);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    lc_model_fingerprint(&model, fingerprint);
    tmp = lc_test_tmpdir();
    make_lora(&lora, 4, TARGETS_QVD, 8.0f, 0);
    fill_random(lora.params, lora.n_params, 1, 0);
    ck_assert_int_eq(lc_adamw_init(&opt, lora.n_params, &adam_cfg), LC_STATUS_OK);
    fill_random(opt.m, opt.n, 2, 0);
    fill_random(opt.v, opt.n, 3, 1);
    opt.step = 7;
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint-7.h5", tmp);
    lc_checkpoint_meta meta = make_meta(CONFIG_JSON);
    st = lc_checkpoint_save(ckpt, &model, &lora, &opt, &meta);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
}

static void teardown(void) {
    // Every HDF5 file, group, dataset and attribute opened was closed again.
    ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    ck_assert_msg(open_objects == 0, "%zd HDF5 objects left open", open_objects);
    lc_adamw_free(&opt);
    lc_lora_free(&lora);
    lc_model_free(&model);
    lc_test_rmdir(tmp);
    free(tmp);
}

// Number of entries in dir, and whether one ends in ".tmp".
static int count_entries(const char *dir, int *n_tmp) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    if (n_tmp) *n_tmp = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        size_t len = strlen(e->d_name);
        if (n_tmp && len >= 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) (*n_tmp)++;
    }
    closedir(d);
    return n;
}

static void assert_error(lc_status got, lc_status want, const char *needle1, const char *needle2) {
    const char *msg = lc_error_message();
    ck_assert_msg(got == want, "status %d, want %d: %s", got, want, msg);
    if (needle1) ck_assert_msg(strstr(msg, needle1) != NULL, "message lacks \"%s\": %s", needle1, msg);
    if (needle2) ck_assert_msg(strstr(msg, needle2) != NULL, "message lacks \"%s\": %s", needle2, msg);
}

// A copy of the checkpoint at tmp/name; returns its path (static buffer).
static const char *copy_ckpt(const char *name) {
    static char path[4096];
    lc_test_copy(ckpt, tmp, name);
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return path;
}

START_TEST(test_round_trip) {
    int n_tmp;
    ck_assert_int_eq(count_entries(tmp, &n_tmp), 1);
    ck_assert_int_eq(n_tmp, 0);

    lc_checkpoint_info info;
    lc_status st = lc_checkpoint_read_info(ckpt, &info);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(info.lora.r, 4);
    ck_assert_float_eq(info.lora.alpha, 8.0f);
    ck_assert_float_eq(info.lora.dropout, 0.05f);
    ck_assert(!info.lora.rslora);
    ck_assert_uint_eq(info.lora.targets, TARGETS_QVD);
    ck_assert_int_eq(info.step, 7);
    ck_assert_int_eq(info.epoch, 2);
    ck_assert_int_eq(info.data_index, 123);
    ck_assert(info.rng_state == RNG_STATE);
    ck_assert_str_eq(info.config_json, CONFIG_JSON);
    ck_assert_str_eq(info.base_fingerprint, fingerprint);
    ck_assert_int_eq(info.has_optimizer, 1);

    lc_lora back;
    make_lora(&back, info.lora.r, info.lora.targets, info.lora.alpha, info.lora.rslora);
    ck_assert_uint_eq(back.n_params, lora.n_params);
    ck_assert(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) != 0); // B starts at zero
    lc_adamw back_opt;
    ck_assert_int_eq(lc_adamw_init(&back_opt, back.n_params, &adam_cfg), LC_STATUS_OK);
    st = lc_checkpoint_load(ckpt, &model, &back, &back_opt);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(back_opt.m, opt.m, opt.n * sizeof(float)) == 0);
    ck_assert(memcmp(back_opt.v, opt.v, opt.n * sizeof(float)) == 0);
    ck_assert_int_eq(back_opt.step, 7);
    // Each module's tensors land where lc_lora_get finds them.
    const lc_lora_ref *a = lc_lora_get(&lora, 4, LC_LINEAR_KIND_DOWN), *b = lc_lora_get(&back, 4, LC_LINEAR_KIND_DOWN);
    ck_assert(memcmp(a->B, b->B, sizeof(float) * 64 * 4) == 0);

    // Loading only the adapter leaves no need for an optimizer.
    lc_lora back2;
    make_lora(&back2, 4, TARGETS_QVD, 8.0f, 0);
    st = lc_checkpoint_load(ckpt, &model, &back2, NULL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(memcmp(back2.params, lora.params, lora.n_params * sizeof(float)) == 0);
    lc_lora_free(&back2);
    lc_adamw_free(&back_opt);
    lc_lora_free(&back);
    lc_checkpoint_info_free(&info);
}
END_TEST

START_TEST(test_adapter_only_large_config) {
    // rsLoRA on every linear, r = 1, no optimizer, and a config larger than
    // the 64 KiB an HDF5 compact attribute can hold.
    lc_lora all;
    make_lora(&all, 1, LC_LINEAR_KIND_ALL, 3.5f, 1);
    // "All" is every projection the model has: the seven of a Llama.
    ck_assert_uint_eq(lc_model_linear_kinds(&model.cfg), TARGETS_LLAMA);
    ck_assert_uint_eq(all.cfg.targets, TARGETS_LLAMA);
    fill_random(all.params, all.n_params, 9, 0);
    size_t n = 300000;
    char *config = malloc(n + 1);
    for (size_t i = 0; i < n; i++) config[i] = (char)('a' + i % 26);
    config[n] = '\0';
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter.h5", tmp);
    lc_checkpoint_meta meta = make_meta(config);
    meta.base_fingerprint = NULL; // written as ""
    lc_status st = lc_checkpoint_save(path, &model, &all, NULL, &meta);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());

    lc_checkpoint_info info;
    st = lc_checkpoint_read_info(path, &info);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(info.has_optimizer, 0);
    ck_assert(info.lora.rslora);
    ck_assert_int_eq(info.lora.r, 1);
    ck_assert_float_eq(info.lora.alpha, 3.5f);
    ck_assert_uint_eq(info.lora.targets, TARGETS_LLAMA);
    ck_assert_str_eq(info.config_json, config);
    ck_assert_str_eq(info.base_fingerprint, "");

    lc_lora back;
    make_lora(&back, 1, info.lora.targets, 3.5f, 1);
    st = lc_checkpoint_load(path, &model, &back, NULL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(memcmp(back.params, all.params, all.n_params * sizeof(float)) == 0);

    // Asking for optimizer state from an adapter-only file is an input error.
    lc_adamw o;
    ck_assert_int_eq(lc_adamw_init(&o, back.n_params, &adam_cfg), LC_STATUS_OK);
    assert_error(lc_checkpoint_load(path, &model, &back, &o), LC_STATUS_INPUT, path, "/optimizer");
    lc_adamw_free(&o);
    lc_lora_free(&back);
    lc_checkpoint_info_free(&info);
    lc_lora_free(&all);
    free(config);
}
END_TEST

START_TEST(test_overwrite_replaces) {
    fill_random(lora.params, lora.n_params, 77, 0);
    opt.step = 8;
    lc_checkpoint_meta meta = make_meta("{}");
    meta.step = 8;
    lc_status st = lc_checkpoint_save(ckpt, &model, &lora, &opt, &meta);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    int n_tmp;
    ck_assert_int_eq(count_entries(tmp, &n_tmp), 1);
    ck_assert_int_eq(n_tmp, 0);
    lc_checkpoint_info info;
    ck_assert_int_eq(lc_checkpoint_read_info(ckpt, &info), LC_STATUS_OK);
    ck_assert_int_eq(info.step, 8);
    ck_assert_str_eq(info.config_json, "{}");
    lc_checkpoint_info_free(&info);
    lc_lora back;
    make_lora(&back, 4, TARGETS_QVD, 8.0f, 0);
    lc_adamw o;
    ck_assert_int_eq(lc_adamw_init(&o, back.n_params, &adam_cfg), LC_STATUS_OK);
    ck_assert_int_eq(lc_checkpoint_load(ckpt, &model, &back, &o), LC_STATUS_OK);
    ck_assert(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) == 0);
    ck_assert_int_eq(o.step, 8);
    lc_adamw_free(&o);
    lc_lora_free(&back);
}
END_TEST

START_TEST(test_truncated) {
    size_t len;
    char *data = lc_test_read(ckpt, &len);
    ck_assert_uint_gt(len, 1000);
    size_t cuts[] = {len / 2, len - 1, 100, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char name[64], path[4096];
        snprintf(name, sizeof name, "cut%zu.h5", cuts[i]);
        lc_test_write(tmp, name, data, cuts[i]);
        snprintf(path, sizeof path, "%s/%s", tmp, name);
        lc_checkpoint_info info;
        assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, NULL);
        ck_assert_ptr_null(info.config_json);
        lc_lora back;
        make_lora(&back, 4, TARGETS_QVD, 8.0f, 0);
        lc_adamw o;
        ck_assert_int_eq(lc_adamw_init(&o, back.n_params, &adam_cfg), LC_STATUS_OK);
        assert_error(lc_checkpoint_load(path, &model, &back, &o), LC_STATUS_INPUT, path, NULL);
        lc_adamw_free(&o);
        lc_lora_free(&back);
    }
    free(data);
}
END_TEST

START_TEST(test_not_a_checkpoint) {
    // Random bytes.
    size_t n = 65536;
    unsigned char *junk = malloc(n);
    uint64_t s = 42;
    for (size_t i = 0; i < n; i++) junk[i] = (unsigned char)rng_next(&s);
    lc_test_write(tmp, "junk.h5", junk, n);
    free(junk);
    char path[4096];
    snprintf(path, sizeof path, "%s/junk.h5", tmp);
    lc_checkpoint_info info;
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, NULL);
    assert_error(lc_checkpoint_load(path, &model, &lora, &opt), LC_STATUS_INPUT, path, NULL);

    // No such file; a folder.
    snprintf(path, sizeof path, "%s/absent.h5", tmp);
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, NULL);
    assert_error(lc_checkpoint_read_info(tmp, &info), LC_STATUS_INPUT, tmp, NULL);

    // A valid HDF5 file that is not ours.
    snprintf(path, sizeof path, "%s/other.h5", tmp);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t g = H5Gcreate2(f, "lora", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Fclose(f);
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, "not a lora.c checkpoint");
    assert_error(lc_checkpoint_load(path, &model, &lora, &opt), LC_STATUS_INPUT, path, "not a lora.c checkpoint");
}
END_TEST

// Rewrites attribute `name` of object `obj` in the file at path.
static void set_attr(const char *path, const char *obj, const char *name, hid_t type, const void *val) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    ck_assert_int_ge(o, 0);
    if (H5Aexists(o, name) > 0) ck_assert_int_ge(H5Adelete(o, name), 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, type, val), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    H5Fclose(f);
}

static void set_attr_str(const char *path, const char *obj, const char *name, const char *val, int variable) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, variable ? H5T_VARIABLE : strlen(val) + 1);
    if (variable) {
        set_attr(path, obj, name, t, &val);
    } else {
        set_attr(path, obj, name, t, val);
    }
    H5Tclose(t);
}

START_TEST(test_hostile_attributes) {
    lc_checkpoint_info info;
    const char *p;
    int64_t v;
    double d;

    p = copy_ckpt("version.h5");
    v = 2;
    set_attr(p, "/", "format_version", H5T_NATIVE_INT64, &v);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "not a lora.c checkpoint");

    p = copy_ckpt("format.h5");
    set_attr_str(p, "/", "format", "lora.c checkpoinT", 0);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "not a lora.c checkpoint");

    p = copy_ckpt("r0.h5");
    v = 0;
    set_attr(p, "/lora", "r", H5T_NATIVE_INT64, &v);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "'r' of /lora");

    p = copy_ckpt("rfloat.h5");
    d = 4.0;
    set_attr(p, "/lora", "r", H5T_NATIVE_DOUBLE, &d);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "'r' of /lora");

    p = copy_ckpt("dropout.h5");
    d = 1.0;
    set_attr(p, "/lora", "dropout", H5T_NATIVE_DOUBLE, &d);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "'dropout' of /lora");

    p = copy_ckpt("alpha.h5");
    d = NAN;
    set_attr(p, "/lora", "alpha", H5T_NATIVE_DOUBLE, &d);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "'alpha' of /lora");

    p = copy_ckpt("targets.h5");
    set_attr_str(p, "/lora", "targets", "q_proj,foo_proj", 0);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "foo_proj");

    // lora.layers: a list of indices and first-last runs, each index once.
    static const char *const bad_layers[][2] = {
        {"1,", "\"1,\" is not a list of layer indices 0..1023"},
        {"4-2", "\"4-2\" is not a list of layer indices 0..1023"},
        {"1024", "\"1024\" is not a list of layer indices 0..1023"},
        {"", "\"\" is not a list of layer indices 0..1023"},
        {" 1", "\" 1\" is not a list of layer indices 0..1023"},
        {"0-2,2", "layer 2 is listed twice"},
    };
    for (size_t i = 0; i < sizeof bad_layers / sizeof bad_layers[0]; i++) {
        p = copy_ckpt("layers.h5");
        set_attr_str(p, "/lora", "layers", bad_layers[i][0], 1);
        char want[4400];
        snprintf(want, sizeof want, "%s: attribute 'layers' of /lora: %s", p, bad_layers[i][1]);
        ck_assert_int_eq(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT);
        ck_assert_str_eq(lc_error_message(), want);
    }
    p = copy_ckpt("layers.h5");
    set_attr_str(p, "/lora", "layers", "3,0-1", 1);
    ck_assert_msg(lc_checkpoint_read_info(p, &info) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(info.lora.layers[0], 0xbu);
    lc_checkpoint_info_free(&info);
    // Written before lora.layers: no attribute, every layer.
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(H5Adelete_by_name(f, "/lora", "layers", H5P_DEFAULT), 0);
    H5Fclose(f);
    ck_assert_msg(lc_checkpoint_read_info(p, &info) == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(info.lora.layers[0], 0);
    ck_assert_int_eq(info.lora.layers_last, 0);
    lc_checkpoint_info_free(&info);

    p = copy_ckpt("step.h5");
    v = -1;
    set_attr(p, "/", "step", H5T_NATIVE_INT64, &v);
    assert_error(lc_checkpoint_read_info(p, &info), LC_STATUS_INPUT, p, "'step'");

    // Variable-length strings (as h5py writes str) are read as well.
    p = copy_ckpt("vlen.h5");
    set_attr_str(p, "/", "config", "{\"vlen\": true}", 1);
    set_attr_str(p, "/lora", "targets", "down_proj, q_proj,v_proj", 1);
    lc_status st = lc_checkpoint_read_info(p, &info);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_str_eq(info.config_json, "{\"vlen\": true}");
    ck_assert_uint_eq(info.lora.targets, TARGETS_QVD);
    lc_checkpoint_info_free(&info);
}
END_TEST

// elapsed_s, the training time so far: written when known, read back as it
// was; absent (as older checkpoints are) it reads as unknown (< 0); a value
// that is no time is damage.
START_TEST(test_elapsed_time) {
    lc_checkpoint_info info;
    char path[4300];
    snprintf(path, sizeof path, "%s/time.h5", tmp);
    lc_checkpoint_meta meta = make_meta(CONFIG_JSON);
    meta.elapsed_s = 12.25;
    ck_assert_int_eq(lc_checkpoint_save(path, &model, &lora, &opt, &meta), LC_STATUS_OK);
    ck_assert_int_eq(lc_checkpoint_read_info(path, &info), LC_STATUS_OK);
    ck_assert(info.elapsed_s == 12.25);
    lc_checkpoint_info_free(&info);
    meta.elapsed_s = -1;
    ck_assert_int_eq(lc_checkpoint_save(path, &model, &lora, &opt, &meta), LC_STATUS_OK);
    ck_assert_int_eq(lc_checkpoint_read_info(path, &info), LC_STATUS_OK);
    ck_assert(info.elapsed_s < 0);
    lc_checkpoint_info_free(&info);

    double d = -3;
    set_attr(path, "/", "elapsed_s", H5T_NATIVE_DOUBLE, &d);
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, "'elapsed_s' of /: -3 is not a time");
    d = NAN;
    set_attr(path, "/", "elapsed_s", H5T_NATIVE_DOUBLE, &d);
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, "'elapsed_s' of /");
    set_attr_str(path, "/", "elapsed_s", "1 s", 0);
    assert_error(lc_checkpoint_read_info(path, &info), LC_STATUS_INPUT, path, "'elapsed_s' of /: has the wrong type");
}
END_TEST

// Replaces dataset `obj` with one of the given type and shape holding `data`.
static void replace_dataset(const char *path, const char *obj, hid_t type, int rank, const hsize_t *dims,
                            hid_t mtype, const void *data) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_ge(H5Ldelete(f, obj, H5P_DEFAULT), 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dset = H5Dcreate2(f, obj, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(dset, 0);
    ck_assert_int_ge(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(dset);
    H5Sclose(sp);
    H5Fclose(f);
}

START_TEST(test_hostile_datasets) {
    const lc_lora_ref *ref = lc_lora_get(&lora, 1, LC_LINEAR_KIND_V); // B [32, 4]
    ck_assert_ptr_nonnull(ref);
    const char *obj = "/lora/model.layers.1.self_attn.v_proj/B";
    lc_lora back;
    make_lora(&back, 4, TARGETS_QVD, 8.0f, 0);
    const char *p;

    // float64 of the right shape: converted, same values.
    double d64[32 * 4];
    for (int i = 0; i < 32 * 4; i++) d64[i] = ref->B[i];
    hsize_t dims2[2] = {32, 4};
    p = copy_ckpt("f64.h5");
    replace_dataset(p, obj, H5T_IEEE_F64BE, 2, dims2, H5T_NATIVE_DOUBLE, d64);
    lc_status st = lc_checkpoint_load(p, &model, &back, NULL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) == 0);

    // Transposed.
    hsize_t dimsT[2] = {4, 32};
    p = copy_ckpt("transposed.h5");
    replace_dataset(p, obj, H5T_IEEE_F32LE, 2, dimsT, H5T_NATIVE_FLOAT, ref->B);
    assert_error(lc_checkpoint_load(p, &model, &back, NULL), LC_STATUS_INPUT, obj, "[4, 32], expected [32, 4]");

    // 3-D and 1-D.
    hsize_t dims3[3] = {32, 2, 2}, dims1[1] = {128};
    p = copy_ckpt("rank3.h5");
    replace_dataset(p, obj, H5T_IEEE_F32LE, 3, dims3, H5T_NATIVE_FLOAT, ref->B);
    assert_error(lc_checkpoint_load(p, &model, &back, NULL), LC_STATUS_INPUT, obj, "2-D");
    p = copy_ckpt("rank1.h5");
    replace_dataset(p, obj, H5T_IEEE_F32LE, 1, dims1, H5T_NATIVE_FLOAT, ref->B);
    assert_error(lc_checkpoint_load(p, &model, &back, NULL), LC_STATUS_INPUT, obj, "2-D");

    // Integers.
    int32_t ints[32 * 4] = {0};
    p = copy_ckpt("int.h5");
    replace_dataset(p, obj, H5T_STD_I32LE, 2, dims2, H5T_NATIVE_INT32, ints);
    assert_error(lc_checkpoint_load(p, &model, &back, NULL), LC_STATUS_INPUT, obj, "floating point");

    // A moment with the wrong shape is caught the same way.
    const char *mobj = "/optimizer/exp_avg_sq/model.layers.4.mlp.down_proj/A";
    p = copy_ckpt("moment.h5");
    replace_dataset(p, mobj, H5T_IEEE_F32LE, 2, dimsT, H5T_NATIVE_FLOAT, ref->B);
    lc_adamw o;
    ck_assert_int_eq(lc_adamw_init(&o, back.n_params, &adam_cfg), LC_STATUS_OK);
    assert_error(lc_checkpoint_load(p, &model, &back, &o), LC_STATUS_INPUT, p, mobj);
    lc_adamw_free(&o);

    // A module the model does not have (layer 5 of 5).
    p = copy_ckpt("extra_layer.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_ge(H5Lcopy(f, "/lora/model.layers.4.mlp.down_proj", f, "/lora/model.layers.5.mlp.down_proj",
                             H5P_DEFAULT, H5P_DEFAULT),
                     0);
    H5Fclose(f);
    assert_error(lc_checkpoint_load(p, &model, &back, NULL), LC_STATUS_INPUT, p, "model.layers.5.mlp.down_proj");
    lc_lora_free(&back);
}
END_TEST

START_TEST(test_rank_mismatch) {
    lc_lora other;
    make_lora(&other, 8, TARGETS_QVD, 8.0f, 0);
    assert_error(lc_checkpoint_load(ckpt, &model, &other, NULL), LC_STATUS_INPUT,
                 "dataset /lora/model.layers.0.self_attn.q_proj/A", "[4, 64], expected [8, 64]");
    ck_assert(strstr(lc_error_message(), ckpt) != NULL);
    lc_lora_free(&other);
}
END_TEST

START_TEST(test_targets_mismatch) {
    // The file adapts down_proj, the LoRA does not: refused, naming the module.
    lc_lora fewer;
    make_lora(&fewer, 4, (1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_V), 8.0f, 0);
    assert_error(lc_checkpoint_load(ckpt, &model, &fewer, NULL), LC_STATUS_INPUT, ckpt,
                 "adapter has module /lora/model.layers.0.mlp.down_proj");
    lc_lora_free(&fewer);

    // The LoRA adapts k_proj, the file does not.
    lc_lora more;
    make_lora(&more, 4, TARGETS_QVD | (1u << LC_LINEAR_KIND_K), 8.0f, 0);
    assert_error(lc_checkpoint_load(ckpt, &model, &more, NULL), LC_STATUS_INPUT, ckpt,
                 "dataset /lora/model.layers.0.self_attn.k_proj/A: missing");
    lc_lora_free(&more);
}
END_TEST

// lc_adapter_load gives the adapter as it was trained, dropout included, and
// without gradients (what keeps inference free of dropout).
START_TEST(test_adapter_load_as_stored) {
    lc_lora back;
    unsigned differ = ~0u;
    lc_status st = lc_adapter_load(ckpt, &model, NULL, LC_ADAPTER_USE_AS_IS, &back, &differ);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_uint_eq(differ, 0);
    ck_assert_int_eq(back.cfg.r, 4);
    ck_assert_float_eq(back.cfg.alpha, 8.0f);
    ck_assert_float_eq(back.cfg.dropout, 0.05f);
    ck_assert_uint_eq(back.cfg.targets, TARGETS_QVD);
    ck_assert_ptr_null(back.grads);
    ck_assert_uint_eq(back.n_params, lora.n_params);
    ck_assert(memcmp(back.params, lora.params, sizeof(float) * lora.n_params) == 0);
    lc_lora_free(&back);
}
END_TEST

START_TEST(test_save_missing_dir) {
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/no/such", tmp);
    snprintf(path, sizeof path, "%s/checkpoint-1.h5", dir);
    lc_checkpoint_meta meta = make_meta("{}");
    assert_error(lc_checkpoint_save(path, &model, &lora, &opt, &meta), LC_STATUS_RUNTIME, path,
                 "No such file or directory");
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(access(dir, F_OK), -1);
    ck_assert_int_eq(count_entries(tmp, NULL), 1);
}
END_TEST

START_TEST(test_save_disk_full) {
    // A file-size limit makes writes fail as a full disk does, part-way
    // through; the partial temporary file must be removed.
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 20000;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/full.h5", tmp);
    lc_checkpoint_meta meta = make_meta(CONFIG_JSON);
    lc_status st = lc_checkpoint_save(path, &model, &lora, &opt, &meta);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_error(st, LC_STATUS_RUNTIME, path, "File too large");
    ck_assert_int_eq(access(path, F_OK), -1);
    int n_tmp;
    ck_assert_int_eq(count_entries(tmp, &n_tmp), 1);
    ck_assert_int_eq(n_tmp, 0);
    // The earlier checkpoint is untouched.
    lc_checkpoint_info info;
    ck_assert_int_eq(lc_checkpoint_read_info(ckpt, &info), LC_STATUS_OK);
    lc_checkpoint_info_free(&info);
}
END_TEST


// ---------------------------------------------------------------------------
// Families with fused projections: a model of the family's shape (config from
// tests/fixtures/families/, random weights) with every projection adapted.

#define MAX_MODULE_NAME 96

typedef struct module_list {
    int n;
    char name[64][MAX_MODULE_NAME];
    int64_t a[64][2], b[64][2];
} module_list;

static void collect_module(void *user, const char *module, const int64_t a[2], const int64_t b[2]) {
    module_list *l = user;
    if (l->n == 64) return;
    snprintf(l->name[l->n], sizeof l->name[0], "%s", module);
    memcpy(l->a[l->n], a, sizeof l->a[0]);
    memcpy(l->b[l->n], b, sizeof l->b[0]);
    l->n++;
}

static int find_module(const module_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->name[i], name) == 0) return i;
    return -1;
}

// Loads the config of fixture `family` and builds a model of it with random weights.
static void family_model(lc_model *m, const char *family) {
    char path[4096], name[64];
    snprintf(path, sizeof path, "%s/tests/fixtures/families/%s.json", LC_SOURCE_DIR, family);
    char *text = lc_test_read(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    ck_assert_ptr_nonnull(root);
    char *cfg_text = cJSON_Print(cJSON_GetObjectItem(root, "config"));
    cJSON_Delete(root);
    ck_assert_ptr_nonnull(cfg_text);
    snprintf(name, sizeof name, "%s_config.json", family);
    lc_test_write(tmp, name, cfg_text, strlen(cfg_text));
    free(cfg_text);
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    lc_model_config cfg;
    lc_status st = lc_config_load(&cfg, path);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    st = lc_model_init_random(m, &cfg, 5, LC_WTYPE_F32);
    ck_assert_msg(st == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    unlink(path);
}

START_TEST(test_fused_families) {
    static const struct {
        const char *family;
        unsigned kinds; // what "all" adapts
        const char *modules[4]; // of layer 0, canonical names
    } cases[] = {
        {"phi3",
         (1u << LC_LINEAR_KIND_QKV) | (1u << LC_LINEAR_KIND_O) | (1u << LC_LINEAR_KIND_GATE_UP) |
             (1u << LC_LINEAR_KIND_DOWN),
         {"model.layers.0.self_attn.qkv_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_up_proj",
          "model.layers.0.mlp.down_proj"}},
        {"gpt2",
         (1u << LC_LINEAR_KIND_QKV) | (1u << LC_LINEAR_KIND_O) | (1u << LC_LINEAR_KIND_UP) |
             (1u << LC_LINEAR_KIND_DOWN),
         {"model.layers.0.self_attn.qkv_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.up_proj",
          "model.layers.0.mlp.down_proj"}},
        {"falcon",
         (1u << LC_LINEAR_KIND_QKV) | (1u << LC_LINEAR_KIND_O) | (1u << LC_LINEAR_KIND_UP) |
             (1u << LC_LINEAR_KIND_DOWN),
         {"model.layers.0.self_attn.qkv_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.up_proj",
          "model.layers.0.mlp.down_proj"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *fam = cases[c].family;
        lc_model m;
        family_model(&m, fam);
        ck_assert_uint_eq(lc_model_linear_kinds(&m.cfg), cases[c].kinds);
        lc_lora_config lcfg = {.r = 3, .alpha = 6.0f, .targets = LC_LINEAR_KIND_ALL};
        lc_lora l;
        ck_assert_int_eq(lc_lora_init(&l, &m, &lcfg, 11, false), LC_STATUS_OK);
        ck_assert_uint_eq(l.cfg.targets, cases[c].kinds);
        fill_random(l.params, l.n_params, 21, 0);
        lc_adamw o;
        ck_assert_int_eq(lc_adamw_init(&o, l.n_params, &adam_cfg), LC_STATUS_OK);
        fill_random(o.m, o.n, 22, 0);
        fill_random(o.v, o.n, 23, 1);
        o.step = 3;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.h5", tmp, fam);
        lc_checkpoint_meta meta = make_meta("{}");
        lc_status st = lc_checkpoint_save(path, &m, &l, &o, &meta);
        ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());

        lc_checkpoint_info info;
        ck_assert_int_eq(lc_checkpoint_read_info(path, &info), LC_STATUS_OK);
        ck_assert_uint_eq(info.lora.targets, cases[c].kinds);
        // One group per adapted projection, named canonically whatever the family
        // calls it; a fused projection's B covers its whole output.
        module_list list = {0};
        ck_assert_int_eq(lc_checkpoint_list_modules(path, collect_module, &list), LC_STATUS_OK);
        ck_assert_int_eq(list.n, 4 * m.cfg.n_layers);
        for (int i = 0; i < 4; i++) {
            int at = find_module(&list, cases[c].modules[i]);
            ck_assert_msg(at >= 0, "%s: no module %s", fam, cases[c].modules[i]);
            lc_linear_kind kind = LC_LINEAR_KIND_COUNT;
            for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
                const char *dot = strrchr(cases[c].modules[i], '.');
                if (strcmp(dot + 1, lc_linear_kind_name((lc_linear_kind)k)) == 0) kind = (lc_linear_kind)k;
            }
            ck_assert_int_lt(kind, LC_LINEAR_KIND_COUNT);
            const lc_linear *lin = &m.layers[0].lin[kind];
            ck_assert(list.a[at][0] == 3 && list.a[at][1] == lin->in);
            ck_assert(list.b[at][0] == lin->out && list.b[at][1] == 3);
        }
        if (m.cfg.qkv != LC_QKV_LAYOUT_SEPARATE) {
            int at = find_module(&list, "model.layers.0.self_attn.qkv_proj");
            ck_assert_int_eq(list.b[at][0], (m.cfg.n_heads + 2 * m.cfg.n_kv_heads) * m.cfg.head_dim);
        }

        lc_lora back;
        lc_adamw bo;
        ck_assert_int_eq(lc_lora_init(&back, &m, &info.lora, 99, false), LC_STATUS_OK);
        ck_assert_int_eq(lc_adamw_init(&bo, back.n_params, &adam_cfg), LC_STATUS_OK);
        st = lc_checkpoint_load(path, &m, &back, &bo);
        ck_assert_msg(st == LC_STATUS_OK, "%s: %s", fam, lc_error_message());
        ck_assert(memcmp(back.params, l.params, sizeof(float) * l.n_params) == 0);
        ck_assert(memcmp(bo.m, o.m, sizeof(float) * o.n) == 0 && memcmp(bo.v, o.v, sizeof(float) * o.n) == 0);
        ck_assert_int_eq(bo.step, 3);
        lc_adamw_free(&bo);
        lc_lora_free(&back);

        // On a Llama (stories260K) the fused projections do not exist: refused, naming them.
        lc_lora wrong;
        assert_error(lc_adapter_load(path, &model, NULL, LC_ADAPTER_USE_AS_IS, &wrong, NULL), LC_STATUS_INPUT, path,
                     "adapts qkv_proj, which llama models do not have");
        ck_assert_ptr_null(wrong.params);

        lc_checkpoint_info_free(&info);
        lc_adamw_free(&o);
        lc_lora_free(&l);
        lc_model_free(&m);
        unlink(path);
    }
}
END_TEST

// One comparison for every use of an adapter: resume needs every field
// equal, init rank and targets, as it is nothing; each refusal names the
// differing fields with both values.
START_TEST(test_adapter_identity) {
    lc_lora_config a = {.r = 4, .alpha = 8.0f, .dropout = 0.1f, .rslora = false, .targets = TARGETS_QVD};
    lc_lora_config b = a;
    lc_adapter_identity have, want;
    unsigned differ;
    lc_adapter_identity_set(&have, &a, fingerprint, NULL);
    lc_adapter_identity_set(&want, &b, fingerprint, MODEL_DIR);
    for (int use = 0; use < 3; use++)
        ck_assert_int_eq(lc_adapter_identity_check("x.h5", &have, &want, (lc_adapter_use)use, &differ), LC_STATUS_OK);

    // Same rank, other targets: the targets are named, each side's.
    b.targets = (1u << LC_LINEAR_KIND_Q) | (1u << LC_LINEAR_KIND_K);
    lc_adapter_identity_set(&want, &b, fingerprint, MODEL_DIR);
    assert_error(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_INIT, &differ), LC_STATUS_INPUT,
                 "x.h5: the adapter has targets q_proj,v_proj,down_proj; the config has targets q_proj,k_proj;", NULL);
    ck_assert_uint_eq(differ, LC_ADAPTER_TARGETS);

    // Rank, alpha and dropout differ: init refuses the rank only (alpha is
    // rescaled, dropout is the run's), resume all three, as it is none.
    b = a;
    b.r = 8;
    b.alpha = 32.0f;
    b.dropout = 0.0f;
    lc_adapter_identity_set(&want, &b, fingerprint, MODEL_DIR);
    assert_error(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_INIT, &differ), LC_STATUS_INPUT,
                 "the adapter has rank 4; the config has rank 8;", NULL);
    ck_assert_uint_eq(differ, LC_ADAPTER_RANK | LC_ADAPTER_ALPHA | LC_ADAPTER_DROPOUT);
    assert_error(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_RESUME, NULL), LC_STATUS_INPUT,
                 "the checkpoint has rank 4, alpha 8, dropout 0.1; the config has rank 8, alpha 32, dropout 0;",
                 "use another output_dir");
    ck_assert_int_eq(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_AS_IS, NULL), LC_STATUS_OK);
    b = a;
    b.rslora = true;
    lc_adapter_identity_set(&want, &b, fingerprint, MODEL_DIR);
    assert_error(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_RESUME, NULL), LC_STATUS_INPUT,
                 "the checkpoint has rsLoRA off; the config has rsLoRA on;", NULL);

    // Another base: refused for resume only; an unknown base (PEFT) differs
    // from none but cannot be resumed; a malformed fingerprint matches none.
    lc_adapter_identity_set(&want, &a, "0123456789abcdef", MODEL_DIR);
    assert_error(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_RESUME, NULL), LC_STATUS_INPUT,
                 "x.h5: was trained on a different base model than " MODEL_DIR, "0123456789abcdef");
    ck_assert_int_eq(lc_adapter_identity_check("x.h5", &have, &want, LC_ADAPTER_USE_INIT, &differ), LC_STATUS_OK);
    ck_assert_uint_eq(differ, LC_ADAPTER_BASE);
    lc_adapter_identity_set(&have, &a, NULL, NULL);
    ck_assert_int_eq(lc_adapter_identity_check("x", &have, &want, LC_ADAPTER_USE_AS_IS, &differ), LC_STATUS_OK);
    ck_assert_uint_eq(differ, 0);
    assert_error(lc_adapter_identity_check("x", &have, &want, LC_ADAPTER_USE_RESUME, NULL), LC_STATUS_INPUT,
                 "different base model", "not recorded");
    char longer[40];
    snprintf(longer, sizeof longer, "%sff", fingerprint);
    lc_adapter_identity_set(&have, &a, longer, NULL);
    lc_adapter_identity_set(&want, &a, fingerprint, NULL);
    ck_assert_uint_eq(lc_adapter_identity_diff(&have, &want), LC_ADAPTER_BASE);
}
END_TEST

// init: B rescaled so the run's scale times B is the adapter's scale times
// the stored B; a run whose scale is 0 cannot, and is refused naming both alphas.
START_TEST(test_adapter_rescale) {
    lc_lora run;
    make_lora(&run, 4, TARGETS_QVD, 16.0f, 0);
    memcpy(run.params, lora.params, sizeof(float) * lora.n_params);
    float f = 0;
    ck_assert_int_eq(lc_adapter_rescale(&run, &model, &lora.cfg, "x.h5", &f), LC_STATUS_OK);
    ck_assert_float_eq(f, 0.5f);
    const lc_lora_ref *a = lc_lora_get(&lora, 0, LC_LINEAR_KIND_DOWN), *b = lc_lora_get(&run, 0, LC_LINEAR_KIND_DOWN);
    ck_assert_float_eq(b->B[5] * run.scale, a->B[5] * lora.scale);
    ck_assert_float_eq(b->A[5], a->A[5]);
    lc_lora_free(&run);
    make_lora(&run, 4, TARGETS_QVD, 0.0f, 0);
    assert_error(lc_adapter_rescale(&run, &model, &lora.cfg, "x.h5", &f), LC_STATUS_INPUT,
                 "x.h5: the adapter was trained with alpha 8, which the config's alpha 0 cannot express", NULL);
    lc_lora_free(&run);
}
END_TEST

// An adapter trained on another base of the same family (other sizes) is
// refused as that, not as a module or shape the LoRA lacks.
START_TEST(test_adapter_other_base) {
    lc_model m;
    family_model(&m, "mistral");
    char fp[17];
    lc_model_fingerprint(&m, fp);
    lc_lora_config lcfg = {.r = 2, .alpha = 4.0f, .targets = LC_LINEAR_KIND_ALL};
    lc_lora l;
    ck_assert_int_eq(lc_lora_init(&l, &m, &lcfg, 3, false), LC_STATUS_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/mistral.h5", tmp);
    lc_checkpoint_meta meta = make_meta("{}");
    meta.base_fingerprint = fp;
    ck_assert_int_eq(lc_checkpoint_save(path, &m, &l, NULL, &meta), LC_STATUS_OK);
    lc_lora back;
    unsigned differ;
    assert_error(lc_adapter_load(path, &model, NULL, LC_ADAPTER_USE_AS_IS, &back, &differ), LC_STATUS_INPUT, path,
                 ": was trained on a different base model");
    const char *msg = lc_error_message();
    ck_assert_msg(strstr(msg, fp) && strstr(msg, fingerprint) && strstr(msg + strlen(path) + 1, path) == NULL,
                  "%s", msg);
    ck_assert_ptr_null(back.params);
    lc_lora_free(&l);
    lc_model_free(&m);
}
END_TEST

// The stored config against the current one: "all" targets and the model's
// full list are the same adapter; a stored config that does not parse is
// refused (nothing to compare with); epochs, like steps, only lengthen it.
START_TEST(test_resume_check_config) {
    const char *stored = "{\"model\": \"m\", \"train_data\": \"d.jsonl\", \"output_dir\": \"o\", \"epochs\": 1}";
    lc_train_config now;
    ck_assert_int_eq(lc_train_config_parse(&now, "{\"model\": \"m\", \"train_data\": \"d.jsonl\", \"output_dir\": "
                                                 "\"o\", \"epochs\": 3, \"lora\": {\"targets\": [\"q_proj\", "
                                                 "\"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", "
                                                 "\"down_proj\"]}}", "now"),
                     LC_STATUS_OK);
    char note[256];
    ck_assert_int_eq(lc_resume_check_config("c.h5", stored, &now, TARGETS_LLAMA, 4, note, sizeof note), LC_STATUS_OK);
    ck_assert_str_eq(note, "epochs 1 -> 3");
    // For a family with more kinds than the seven, "all" is another adapter: refused.
    assert_error(lc_resume_check_config("c.h5", stored, &now, LC_LINEAR_KIND_ALL, 4, note, sizeof note),
                 LC_STATUS_INPUT, "c.h5: was written with other values of lora.targets;", NULL);
    assert_error(lc_resume_check_config("c.h5", "{\"model\": ", &now, TARGETS_LLAMA, 4, note, sizeof note),
                 LC_STATUS_INPUT, "c.h5: attribute 'config'", "use another output_dir");
    assert_error(lc_resume_check_config("c.h5", "{\"model\": \"m\", \"train_data\": \"d.jsonl\", \"output_dir\": "
                                                "\"o\", \"epochs\": 1, \"lerning_rate\": 1}",
                                        &now, TARGETS_LLAMA, 4, note, sizeof note),
                 LC_STATUS_INPUT, "unknown key \"lerning_rate\"", "use another output_dir");
    lc_train_config_free(&now);
}
END_TEST

// An index listing each of 200000 steps twice keeps the first of each, in
// written order (a lookup per entry made this quadratic: minutes).
START_TEST(test_run_dir_index_repeats) {
    const int n = 200000;
    size_t cap = (size_t)n * 2 * 48 + 64, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text, cap, "{\"checkpoints\": [");
    for (int i = 1; i <= n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s{\"step\": %d, \"bytes\": %d}, {\"step\": %d, \"bytes\": 5}",
                                i > 1 ? ", " : "", i, i, i);
    len += (size_t)snprintf(text + len, cap - len, "]}");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    ck_assert_int_eq(lc_dir_create(dir), LC_STATUS_OK);
    lc_test_write(dir, "checkpoints.json", text, len);
    free(text);
    lc_run_dir r;
    lc_status st = lc_run_dir_open(&r, dir);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
    ck_assert_int_eq(r.n, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(r.entries[i].step == i + 1 && r.entries[i].bytes == i + 1, "entry %d: step %lld bytes %lld", i,
                      (long long)r.entries[i].step, (long long)r.entries[i].bytes);
    lc_run_dir_close(&r);
}
END_TEST

static lc_status accept_any(void *ctx, const char *path, int *skip) {
    (void)path;
    (void)skip;
    ++*(int *)ctx;
    return LC_STATUS_OK;
}

// A listed checkpoint whose size is not the one written: a run passes over
// it (it is not known complete), a reader reads it (the read checks it).
START_TEST(test_run_dir_changed_size) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/run", tmp);
    ck_assert_int_eq(lc_dir_create(dir), LC_STATUS_OK);
    lc_test_copy(ckpt, dir, "checkpoint-7.h5");
    const char *index = "{\"checkpoints\": [{\"step\": 7, \"bytes\": 1}]}";
    lc_test_write(dir, "checkpoints.json", index, strlen(index));
    int64_t step;
    int n_skipped, n_tried = 0;
    ck_assert_int_eq(lc_run_dir_find(dir, NULL, accept_any, &n_tried, &step, &n_skipped), LC_STATUS_OK);
    ck_assert(step == 7 && n_skipped == 0 && n_tried == 1);
    lc_run_dir r;
    ck_assert_int_eq(lc_run_dir_open(&r, dir), LC_STATUS_OK);
    n_tried = 0;
    ck_assert_int_eq(lc_run_dir_find(dir, &r, accept_any, &n_tried, &step, &n_skipped), LC_STATUS_OK);
    ck_assert(step == 0 && n_skipped == 1 && n_tried == 0);
    lc_run_dir_close(&r);
}
END_TEST

static Suite *checkpoint_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("hdf5");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_adapter_only_large_config);
    tcase_add_test(tc, test_overwrite_replaces);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_not_a_checkpoint);
    tcase_add_test(tc, test_hostile_attributes);
    tcase_add_test(tc, test_elapsed_time);
    tcase_add_test(tc, test_hostile_datasets);
    tcase_add_test(tc, test_rank_mismatch);
    tcase_add_test(tc, test_targets_mismatch);
    tcase_add_test(tc, test_adapter_load_as_stored);
    tcase_add_test(tc, test_save_missing_dir);
    tcase_add_test(tc, test_save_disk_full);
    tcase_add_test(tc, test_fused_families);
    tcase_add_test(tc, test_adapter_identity);
    tcase_add_test(tc, test_adapter_other_base);
    tcase_add_test(tc, test_adapter_rescale);
    tcase_add_test(tc, test_resume_check_config);
    tcase_add_test(tc, test_run_dir_index_repeats);
    tcase_add_test(tc, test_run_dir_changed_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return lc_test_run_suite(checkpoint_suite());
}
