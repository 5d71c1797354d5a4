#include "family_fixture.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "model/safetensors.h"

const char *const lc_family_names[] = {
    "mistral", "qwen2", "gemma", "gemma2", "phi3", "gpt2", "falcon", "falcon_new", "olmo", "bloom", NULL,
};

const char *const lc_moe_family_names[] = {"mixtral", "olmoe", "qwen2_moe", NULL};

float lc_family_value(const char *name, uint64_t i, double scale, double offset) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    uint64_t z = h + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(float)(z >> 40) * (1.0 / 16777216.0);
    return (float)((2.0 * u - 1.0) * scale + offset);
}

// Writes the tensors of a fixture list (array of {name, shape, scale, offset[, fill]}) as F32 safetensors.
static void write_tensors(const cJSON *list, const char *path) {
    int n = cJSON_GetArraySize(list);
    lc_st_entry *e = calloc((size_t)n, sizeof *e);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    ck_assert(e && bufs);
    for (int t = 0; t < n; t++) {
        const cJSON *it = cJSON_GetArrayItem(list, t);
        const char *name = cJSON_GetObjectItem(it, "name")->valuestring;
        const cJSON *shape = cJSON_GetObjectItem(it, "shape");
        double scale = cJSON_GetObjectItem(it, "scale")->valuedouble;
        double offset = cJSON_GetObjectItem(it, "offset")->valuedouble;
        const cJSON *fill = cJSON_GetObjectItem(it, "fill");
        e[t].name = name;
        e[t].dtype = LC_DTYPE_F32;
        e[t].n_dims = cJSON_GetArraySize(shape);
        ck_assert(e[t].n_dims >= 1 && e[t].n_dims <= LC_MAX_DIMS);
        uint64_t count = 1;
        for (int d = 0; d < e[t].n_dims; d++) {
            e[t].shape[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            count *= (uint64_t)e[t].shape[d];
        }
        float *b = malloc(sizeof(float) * count);
        ck_assert(b != NULL);
        int64_t cols = e[t].shape[e[t].n_dims - 1];
        for (uint64_t i = 0; i < count; i++) {
            if (fill && strcmp(fill->valuestring, "tril") == 0) {
                int64_t r = (int64_t)(i / (uint64_t)cols) % (e[t].n_dims > 1 ? e[t].shape[e[t].n_dims - 2] : 1);
                b[i] = (int64_t)(i % (uint64_t)cols) <= r ? 1.0f : 0.0f;
            } else {
                b[i] = lc_family_value(name, i, scale, offset);
            }
        }
        bufs[t] = b;
        e[t].data = b;
        e[t].nbytes = sizeof(float) * count;
    }
    ck_assert_msg(lc_st_write(path, e, n, NULL, 0) == 0, "writing %s", path);
    for (int t = 0; t < n; t++) free(bufs[t]);
    free(bufs);
    free(e);
}

static void write_json(const cJSON *obj, const char *dir, const char *name) {
    char *text = cJSON_Print(obj);
    ck_assert(text != NULL);
    lc_test_write(dir, name, text, strlen(text));
    free(text);
}

void lc_family_fixture_load(lc_family_fixture *f, const char *family, const char *dir) {
    memset(f, 0, sizeof *f);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/families/%s.json", LC_SOURCE_DIR, family);
    size_t len;
    char *text = lc_test_read(path, &len);
    f->root = cJSON_Parse(text);
    free(text);
    ck_assert_msg(f->root != NULL, "%s: not JSON", path);
    f->expected = cJSON_GetObjectItem(f->root, "expected");

    snprintf(f->model_dir, sizeof f->model_dir, "%s/model", dir);
    snprintf(f->adapter_dir, sizeof f->adapter_dir, "%s/adapter", dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s'", f->model_dir, f->adapter_dir);
    ck_assert(system(cmd) == 0);

    write_json(cJSON_GetObjectItem(f->root, "config"), f->model_dir, "config.json");
    snprintf(path, sizeof path, "%s/model.safetensors", f->model_dir);
    write_tensors(cJSON_GetObjectItem(f->root, "tensors"), path);
    snprintf(path, sizeof path, "%s/%s", LC_SHARED_DIR, cJSON_GetObjectItem(f->root, "tokenizer")->valuestring);
    lc_test_copy(path, f->model_dir, "tokenizer.json");

    const cJSON *lora = cJSON_GetObjectItem(f->root, "lora");
    cJSON *acfg = cJSON_CreateObject();
    cJSON_AddStringToObject(acfg, "peft_type", "LORA");
    cJSON_AddStringToObject(acfg, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(acfg, "r", cJSON_GetObjectItem(lora, "r")->valuedouble);
    cJSON_AddNumberToObject(acfg, "lora_alpha", cJSON_GetObjectItem(lora, "alpha")->valuedouble);
    cJSON_AddNumberToObject(acfg, "lora_dropout", 0.0);
    cJSON_AddStringToObject(acfg, "bias", "none");
    cJSON_AddBoolToObject(acfg, "use_rslora", 0);
    cJSON_AddBoolToObject(acfg, "fan_in_fan_out", cJSON_IsTrue(cJSON_GetObjectItem(lora, "fan_in_fan_out")));
    cJSON_AddItemToObject(acfg, "target_modules", cJSON_Duplicate(cJSON_GetObjectItem(lora, "target_modules"), 1));
    write_json(acfg, f->adapter_dir, "adapter_config.json");
    cJSON_Delete(acfg);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", f->adapter_dir);
    write_tensors(cJSON_GetObjectItem(lora, "tensors"), path);

    const cJSON *tokens = cJSON_GetObjectItem(f->root, "tokens");
    f->B = cJSON_GetArraySize(tokens);
    f->T = cJSON_GetArraySize(cJSON_GetArrayItem(tokens, 0));
    f->tokens = malloc(sizeof(int32_t) * (size_t)f->B * f->T);
    ck_assert(f->tokens != NULL);
    for (int b = 0; b < f->B; b++)
        for (int t = 0; t < f->T; t++)
            f->tokens[b * f->T + t] = (int32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(tokens, b), t)->valuedouble;
}

void lc_family_fixture_free(lc_family_fixture *f) {
    cJSON_Delete(f->root);
    free(f->tokens);
    memset(f, 0, sizeof *f);
}
