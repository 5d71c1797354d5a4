// lora.targets "all-linear" and lora.layers on stories260K (5 layers): a
// short `lora train` each, then what every reader and writer of the adapter
// makes of it: the parameter count, `lora inspect`, PEFT export and its
// round trip through --adapter, GGUF adapter export, merged exports (the
// unselected layers byte for byte the base), and the identity checks.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/status.h"
#include "export/export.h"
#include "model/gguf.h"
#include "model/arch.h"
#include "model/lora.h"
#include "model/sample.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "train/adapter.h"
#include "train/checkpoint.h"
#include "train/resume_check.h"
#include "train/train_config.h"
#include "family_fixture.h"

#define MODEL_DIR LC_SHARED_DIR "/models/stories260K"
#define DATA LC_SHARED_DIR "/data/alpaca_tiny.jsonl"

static char *tmp;
static lc_model model;

static void setup(void) {
    tmp = lc_test_tmpdir();
    lc_status st = lc_model_load(&model, MODEL_DIR);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
}

static void teardown(void) {
    lc_model_free(&model);
    lc_test_rmdir(tmp);
    free(tmp);
}

static char *in_tmp(const char *name) {
    static char buf[4][4200];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmp, name);
    return p;
}

// Trains 2 steps into tmp/<name> with `lora` as the config's LoRA object;
// returns the checkpoint's path.
static char *train(const char *name, const char *lora) {
    char text[4096], file[300];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/%s\", \"lora\": %s,\n"
                     " \"optimizer\": {\"lr\": 3e-3}, \"batch_size\": 2, \"max_seq_len\": 128, \"steps\": 2, "
                     "\"seed\": 5}\n",
                     MODEL_DIR, DATA, tmp, name, lora);
    snprintf(file, sizeof file, "%s.json", name);
    lc_test_write(tmp, file, text, (size_t)n);
    lc_test_run r = lc_test_lora((const char *[]){"train", "--config", in_tmp(file), NULL});
    ck_assert_msg(r.status == 0, "lora train: %s", r.err);
    lc_test_run_free(&r);
    snprintf(file, sizeof file, "%s/checkpoint-2.h5", name);
    return strdup(in_tmp(file));
}

// Parameters of r-4 adapters on every linear of the layers in `mask`: the
// model's shapes, not a count written down.
static size_t params_of(unsigned mask) {
    size_t n = 0;
    for (int l = 0; l < model.cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            if ((mask >> l & 1) && model.layers[l].lin[k].out)
                n += 4 * (size_t)(model.layers[l].lin[k].in + model.layers[l].lin[k].out);
    return n;
}

static void load_adapter(const char *path, lc_lora *lora) {
    lc_status st = lc_adapter_load(path, &model, NULL, LC_ADAPTER_USE_AS_IS, lora, NULL);
    ck_assert_msg(st == LC_STATUS_OK, "%s", lc_error_message());
}

// Whether any B of (layer, kind) moved from its zero start: training reached it.
static int trained(const lc_lora *lora, int layer, int kind) {
    const lc_lora_ref *ref = lc_lora_get(lora, layer, (lc_linear_kind)kind);
    int n = model.layers[layer].lin[kind].out * ref->r;
    for (int i = 0; i < n; i++)
        if (ref->B[i] != 0.0f) return 1;
    return 0;
}

START_TEST(test_all_linear_is_the_full_list) {
    char *a = train("all", "{\"r\": 4, \"alpha\": 8, \"targets\": \"all-linear\"}");
    char *b = train("list", "{\"r\": 4, \"alpha\": 8, \"targets\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", "
                            "\"gate_proj\", \"up_proj\", \"down_proj\"]}");
    lc_lora la, lb;
    load_adapter(a, &la);
    load_adapter(b, &lb);
    ck_assert_uint_eq(la.n_params, params_of(0x1f));
    ck_assert_uint_eq(lb.n_params, la.n_params);
    ck_assert_uint_eq(la.cfg.targets, lb.cfg.targets);
    ck_assert(trained(&la, 4, LC_LINEAR_KIND_DOWN));
    ck_assert_msg(memcmp(la.params, lb.params, la.n_params * sizeof(float)) == 0, "the trained adapters differ");
    lc_lora_free(&la);
    lc_lora_free(&lb);
    free(a);
    free(b);
}
END_TEST

// Every tensor of the safetensors files a and b whose name has none of the
// `changed` substrings is byte for byte the same; returns how many differ.
static int st_compare(const char *a, const char *b, const char *const *changed) {
    lc_st_set sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    ck_assert_int_eq(lc_st_set_add_file(&sa, a), LC_STATUS_OK);
    ck_assert_int_eq(lc_st_set_add_file(&sb, b), LC_STATUS_OK);
    ck_assert_int_eq(sa.n_tensors, sb.n_tensors);
    int differ = 0;
    for (int i = 0; i < sa.n_tensors; i++) {
        const lc_st_tensor *ta = &sa.tensors[i], *tb = lc_st_set_find(&sb, ta->name);
        ck_assert_ptr_nonnull(tb);
        int same = ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0;
        int may_change = 0;
        for (int c = 0; changed[c]; c++) may_change |= strstr(ta->name, changed[c]) != NULL;
        ck_assert_msg(same || may_change, "%s changed", ta->name);
        differ += !same;
    }
    lc_st_set_free(&sa);
    lc_st_set_free(&sb);
    return differ;
}

// The same for two GGUF files.
static int gguf_compare(const char *a, const char *b, const char *const *changed) {
    lc_gguf_file fa, fb;
    ck_assert_int_eq(lc_gguf_open(&fa, a), LC_STATUS_OK);
    ck_assert_int_eq(lc_gguf_open(&fb, b), LC_STATUS_OK);
    ck_assert_uint_eq(fa.n_tensors, fb.n_tensors);
    int differ = 0;
    for (size_t i = 0; i < fa.n_tensors; i++) {
        const lc_gguf_tensor *ta = &fa.tensors[i], *tb = lc_gguf_find_tensor(&fb, ta->name);
        ck_assert_ptr_nonnull(tb);
        int same = ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0;
        int may_change = 0;
        for (int c = 0; changed[c]; c++) may_change |= strstr(ta->name, changed[c]) != NULL;
        ck_assert_msg(same || may_change, "%s changed", ta->name);
        differ += !same;
    }
    lc_gguf_close(&fa);
    lc_gguf_close(&fb);
    return differ;
}

// stdout of a lora command that must succeed (caller frees).
static char *output_of(const char *const *args) {
    lc_test_run r = lc_test_lora(args);
    ck_assert_msg(r.status == 0, "%s: %s", args[0], r.err);
    char *out = strdup(r.out);
    lc_test_run_free(&r);
    return out;
}

START_TEST(test_layers_everywhere) {
    char *ckpt = train("run", "{\"r\": 4, \"alpha\": 8, \"layers\": [3, 0]}");
    lc_lora lora;
    load_adapter(ckpt, &lora);
    ck_assert_uint_eq(lora.n_params, params_of(1u << 0 | 1u << 3));
    for (int l = 0; l < model.cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
            if (!model.layers[l].lin[k].out) continue;
            ck_assert_msg((lc_lora_get(&lora, l, (lc_linear_kind)k) != NULL) == (l == 0 || l == 3), "layer %d", l);
            if (l == 0 || l == 3) ck_assert_msg(trained(&lora, l, k), "layer %d kind %d untrained", l, k);
        }

    // lora inspect names the layers and lists only their modules.
    char *out = output_of((const char *[]){"inspect", ckpt, NULL});
    ck_assert_msg(strstr(out, "\n  layers         0,3\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "model.layers.3.mlp.down_proj") && !strstr(out, "model.layers.1.") &&
                      !strstr(out, "model.layers.4."),
                  "%s", out);
    free(out);
    // and so does the run folder's summary (not for a run on every layer).
    out = output_of((const char *[]){"inspect", in_tmp("run"), NULL});
    ck_assert_msg(strstr(out, "down_proj; layers 0,3\n") != NULL, "%s", out);
    free(out);

    // PEFT: layers_to_transform as PEFT writes it, only those tensors, and
    // the same eval loss and generation through --adapter.
    char *peft = strdup(in_tmp("peft"));
    free(output_of((const char *[]){"export", "--model", MODEL_DIR, "--adapter", ckpt, "--out", peft, "--format",
                                    "peft", NULL}));
    char *text = lc_test_read(in_tmp("peft/adapter_config.json"), NULL);
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    char *layers = cJSON_PrintUnformatted(cJSON_GetObjectItem(cfg, "layers_to_transform"));
    ck_assert_str_eq(layers, "[0,3]");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cfg, "layers_pattern")));
    free(layers);
    cJSON_Delete(cfg);
    lc_st_set set;
    memset(&set, 0, sizeof set);
    ck_assert_int_eq(lc_st_set_add_file(&set, in_tmp("peft/adapter_model.safetensors")), LC_STATUS_OK);
    ck_assert_int_eq(set.n_tensors, 2 * 2 * 7);
    for (int i = 0; i < set.n_tensors; i++)
        ck_assert_msg(strstr(set.tensors[i].name, ".layers.0.") || strstr(set.tensors[i].name, ".layers.3."), "%s",
                      set.tensors[i].name);
    lc_st_set_free(&set);
    const char *adapters[2] = {ckpt, peft};
    char *eval[2], *gen[2];
    for (int i = 0; i < 2; i++) {
        eval[i] = output_of((const char *[]){"eval", "--model", MODEL_DIR, "--adapter", adapters[i], "--data", DATA,
                                             "--max-seq-len", "128", NULL});
        gen[i] = output_of((const char *[]){"generate", "--model", MODEL_DIR, "--adapter", adapters[i], "--prompt",
                                            "Once upon", "--max-tokens", "12", "--temperature", "0", NULL});
    }
    ck_assert_str_eq(eval[0], eval[1]);
    ck_assert_str_eq(gen[0], gen[1]);
    for (int i = 0; i < 2; i++) free(eval[i]), free(gen[i]);
    lc_lora back;
    load_adapter(peft, &back);
    ck_assert_uint_eq(back.n_params, lora.n_params);
    ck_assert(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) == 0);
    lc_lora_free(&back);

    // GGUF adapter: only the selected layers' tensors.
    ck_assert_int_eq(lc_export_gguf_lora(in_tmp("a.gguf"), MODEL_DIR, &model, &lora), LC_STATUS_OK);
    lc_gguf_file g;
    ck_assert_int_eq(lc_gguf_open(&g, in_tmp("a.gguf")), LC_STATUS_OK);
    ck_assert_uint_eq(g.n_tensors, 2 * 2 * 7);
    for (size_t i = 0; i < g.n_tensors; i++)
        ck_assert_msg(!strncmp(g.tensors[i].name, "blk.0.", 6) || !strncmp(g.tensors[i].name, "blk.3.", 6), "%s",
                      g.tensors[i].name);
    lc_gguf_close(&g);

    // Merged: the unselected layers (and all but the adapted linears) are
    // the base's bytes; the selected ones changed.
    static const char *const sel_hf[] = {"layers.0.", "layers.3.", NULL};
    static const char *const sel_gguf[] = {"blk.0.", "blk.3.", NULL};
    ck_assert_int_eq(lc_export_hf(in_tmp("merged"), MODEL_DIR, &model, &lora, LC_DTYPE_F32), LC_STATUS_OK);
    ck_assert_int_eq(st_compare(MODEL_DIR "/model.safetensors", in_tmp("merged/model.safetensors"), sel_hf), 2 * 7);
    ck_assert_int_eq(lc_export_gguf(in_tmp("m.gguf"), MODEL_DIR, &model, &lora, NULL, LC_DTYPE_F32), LC_STATUS_OK);
    ck_assert_int_eq(lc_export_gguf(in_tmp("base.gguf"), MODEL_DIR, &model, NULL, NULL, LC_DTYPE_F32), LC_STATUS_OK);
    ck_assert_int_eq(gguf_compare(in_tmp("base.gguf"), in_tmp("m.gguf"), sel_gguf), 2 * 7);

    // A run starting from it must adapt the same layers.
    char text2[4096];
    int n = snprintf(text2, sizeof text2,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/init\", \"init_adapter\": "
                     "\"%s\", \"lora\": {\"r\": 4, \"alpha\": 8, \"layers\": {\"last\": 2}}, \"max_seq_len\": 128, "
                     "\"steps\": 1}\n",
                     MODEL_DIR, DATA, tmp, ckpt);
    lc_test_write(tmp, "init.json", text2, (size_t)n);
    lc_test_run r = lc_test_lora((const char *[]){"train", "--config", in_tmp("init.json"), NULL});
    ck_assert_int_eq(r.status, 2);
    const char *last = r.err + strlen(r.err);
    while (last > r.err && last[-1] == '\n') last--;
    while (last > r.err && last[-1] != '\n') last--;
    char want[9000];
    snprintf(want, sizeof want,
             "lora train: %s: the adapter has layers 0,3; the config has layers 3,4; set lora.r, lora.targets and "
             "lora.layers to the adapter's\n",
             ckpt);
    ck_assert_str_eq(last, want);
    lc_test_run_free(&r);
    lc_lora_free(&lora);
    free(peft);
    free(ckpt);
}
END_TEST

START_TEST(test_layer_out_of_range_cli) {
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s/bad\", \"lora\": "
                     "{\"layers\": [1, 5]}, \"max_seq_len\": 128, \"steps\": 1}\n",
                     MODEL_DIR, DATA, tmp);
    lc_test_write(tmp, "bad.json", text, (size_t)n);
    lc_test_run r = lc_test_lora((const char *[]){"train", "--config", in_tmp("bad.json"), NULL});
    ck_assert_int_eq(r.status, 2);
    char want[4400];
    snprintf(want, sizeof want, "lora train: %s: lora.layers: layer 5 is out of range: the model has 5 layers (0..4)\n",
             in_tmp("bad.json"));
    const char *last = strstr(r.err, "lora train: /");
    while (last && strstr(last + 1, "\nlora train: ")) last = strstr(last + 1, "\nlora train: ") + 1;
    ck_assert_ptr_nonnull(last);
    ck_assert_str_eq(last, want);
    lc_test_run_free(&r);
}
END_TEST

// A PEFT folder of an adapter on layer 2 only, with adapter_config.json's
// `key` set to the JSON `value`.
static char *peft_on_layer_2(const char *key, const char *value) {
    lc_lora_config c = {.r = 2, .alpha = 4.0f, .targets = 1u << LC_LINEAR_KIND_Q | 1u << LC_LINEAR_KIND_V};
    c.layers[0] = 1u << 2;
    lc_lora lora;
    ck_assert_int_eq(lc_lora_init(&lora, &model, &c, 3, false), LC_STATUS_OK);
    char *dir = strdup(in_tmp("p2"));
    ck_assert_int_eq(lc_export_peft(dir, MODEL_DIR, &model, &lora, LC_DTYPE_F32), LC_STATUS_OK);
    lc_lora_free(&lora);
    char *text = lc_test_read(in_tmp("p2/adapter_config.json"), NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON_ReplaceItemInObject(j, key, cJSON_Parse(value));
    text = cJSON_Print(j);
    lc_test_write(dir, "adapter_config.json", text, strlen(text));
    free(text);
    cJSON_Delete(j);
    return dir;
}

static void expect_peft_refusal(const char *key, const char *value, const char *what) {
    char *dir = peft_on_layer_2(key, value);
    lc_lora lora;
    ck_assert_int_eq(lc_peft_load(dir, &model, &lora), LC_STATUS_INPUT);
    char want[4600];
    snprintf(want, sizeof want, what, dir, dir);
    ck_assert_str_eq(lc_error_message(), want);
    free(dir);
}

START_TEST(test_peft_layers_read) {
    // PEFT takes one int as [int], and asks only whether a layer is listed.
    const char *forms[] = {"2", "[2]", "[2, 2]"};
    for (int i = 0; i < 3; i++) {
        char *dir = peft_on_layer_2("layers_to_transform", forms[i]);
        lc_lora lora;
        ck_assert_msg(lc_peft_load(dir, &model, &lora) == LC_STATUS_OK, "%s", lc_error_message());
        ck_assert_ptr_nonnull(lc_lora_get(&lora, 2, LC_LINEAR_KIND_Q));
        ck_assert_ptr_null(lc_lora_get(&lora, 1, LC_LINEAR_KIND_Q));
        lc_lora_free(&lora);
        free(dir);
    }
    char *dir = peft_on_layer_2("layers_pattern", "\"layers\"");
    lc_lora lora;
    ck_assert_msg(lc_peft_load(dir, &model, &lora) == LC_STATUS_OK, "%s", lc_error_message());
    lc_lora_free(&lora);
    free(dir);
    expect_peft_refusal("layers_to_transform", "[7]",
                        "%s/adapter_config.json: layers_to_transform: layer 7 is out of range: the model has 5 layers "
                        "(0..4)%.0s");
    expect_peft_refusal("layers_to_transform", "[2, -1]",
                        "%s/adapter_config.json: layers_to_transform: layer -1 is out of range: the model has 5 "
                        "layers (0..4)%.0s");
    // Empty is falsy to PEFT: [] every layer (so layer 0's tensors are
    // missing here), "" or [] any layer container.
    expect_peft_refusal("layers_to_transform", "[]",
                        "%s/adapter_model.safetensors: tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A."
                        "weight is missing%.0s");
    const char *empty[][2] = {{"layers_pattern", "\"\""}, {"layers_pattern", "[]"}};
    for (int i = 0; i < 2; i++) {
        dir = peft_on_layer_2(empty[i][0], empty[i][1]);
        ck_assert_msg(lc_peft_load(dir, &model, &lora) == LC_STATUS_OK, "%s %s: %s", empty[i][0], empty[i][1],
                      lc_error_message());
        ck_assert_ptr_nonnull(lc_lora_get(&lora, 2, LC_LINEAR_KIND_Q));
        lc_lora_free(&lora);
        free(dir);
    }
    expect_peft_refusal("layers_to_transform", "[1]",
                        "%s/adapter_model.safetensors: tensor base_model.model.model.layers.2.self_attn.q_proj.lora_A."
                        "weight is for layer 2, which %s/adapter_config.json does not list in layers_to_transform");
    expect_peft_refusal("layers_pattern", "\"h\"",
                        "%s/adapter_config.json: layers_pattern does not name \"layers\", the layers of llama "
                        "models%.0s");
}
END_TEST

START_TEST(test_checkpoint_layers_attribute) {
    // Layers 0 and 2-4 of 5: written as a range, read back as the same set,
    // and loaded only into a LoRA of those layers.
    lc_lora_config c = {.r = 2, .alpha = 4.0f, .targets = 1u << LC_LINEAR_KIND_V};
    c.layers[0] = 1u << 0 | 1u << 2 | 1u << 3 | 1u << 4;
    lc_lora lora;
    ck_assert_int_eq(lc_lora_init(&lora, &model, &c, 3, false), LC_STATUS_OK);
    lc_checkpoint_meta meta = {.config_json = "{}", .base_fingerprint = "0123456789abcdef"};
    char *path = in_tmp("c.h5");
    ck_assert_msg(lc_checkpoint_save(path, &model, &lora, NULL, &meta) == LC_STATUS_OK, "%s", lc_error_message());
    lc_checkpoint_info info;
    ck_assert_msg(lc_checkpoint_read_info(path, &info) == LC_STATUS_OK, "%s", lc_error_message());
    char s[64];
    lc_lora_layers_string(s, sizeof s, &info.lora);
    ck_assert_str_eq(s, "0,2-4");
    ck_assert(memcmp(info.lora.layers, lora.cfg.layers, sizeof c.layers) == 0);
    lc_checkpoint_info_free(&info);
    // Every layer: an adapter of layers 0 and 2-4 does not fit it.
    lc_lora all;
    c.layers[0] = 0;
    ck_assert_int_eq(lc_lora_init(&all, &model, &c, 3, false), LC_STATUS_OK);
    ck_assert_int_eq(lc_checkpoint_load(path, &model, &all, NULL), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "model.layers.1.self_attn.v_proj/A: missing"), "%s", lc_error_message());
    lc_lora_free(&all);
    lc_lora_free(&lora);
}
END_TEST

START_TEST(test_resume_compares_layers) {
    // {"last": 2} of 5 layers is [3, 4]: the same run; [0] is another.
    const char *base = "{\"model\": \"m\", \"train_data\": \"d.jsonl\", \"output_dir\": \"o\", \"steps\": 3, ";
    char stored[512], now_text[512];
    snprintf(stored, sizeof stored, "%s\"lora\": {\"layers\": {\"last\": 2}}}", base);
    lc_train_config now;
    snprintf(now_text, sizeof now_text, "%s\"lora\": {\"layers\": [4, 3]}}", base);
    ck_assert_int_eq(lc_train_config_parse(&now, now_text, "now"), LC_STATUS_OK);
    char note[256];
    ck_assert_msg(lc_resume_check_config("c.h5", stored, &now, LC_LINEAR_KIND_ALL, 5, note, sizeof note) ==
                      LC_STATUS_OK,
                  "%s", lc_error_message());
    lc_train_config_free(&now);
    snprintf(now_text, sizeof now_text, "%s\"lora\": {\"layers\": [0]}}", base);
    ck_assert_int_eq(lc_train_config_parse(&now, now_text, "now"), LC_STATUS_OK);
    ck_assert_int_eq(lc_resume_check_config("c.h5", stored, &now, LC_LINEAR_KIND_ALL, 5, note, sizeof note),
                     LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "other values of lora.layers;") &&
                      strstr(lc_error_message(), "(lora.layers last 2 -> 0)"),
                  "%s", lc_error_message());
    lc_train_config_free(&now);
    // "all" (the --help default) is every layer: the same run as none given.
    snprintf(stored, sizeof stored, "%s\"lora\": {\"layers\": \"all\"}}", base);
    snprintf(now_text, sizeof now_text, "%s\"lora\": {}}", base);
    ck_assert_int_eq(lc_train_config_parse(&now, now_text, "now"), LC_STATUS_OK);
    ck_assert_msg(lc_resume_check_config("c.h5", stored, &now, LC_LINEAR_KIND_ALL, 5, note, sizeof note) ==
                      LC_STATUS_OK,
                  "%s", lc_error_message());
    lc_train_config_free(&now);
    snprintf(now_text, sizeof now_text, "%s\"lora\": {\"layers\": \"some\"}}", base);
    ck_assert_int_eq(lc_train_config_parse(&now, now_text, "now"), LC_STATUS_INPUT);
    ck_assert_msg(strstr(lc_error_message(), "\"all\"") != NULL, "%s", lc_error_message());
}
END_TEST

// The families whose names differ from Llama's (fused Phi-3, Conv1D GPT-2
// under "h", Falcon's query_key_value; the others share these layouts, and
// test_export covers each of them): all-linear on the last layer only. The PEFT folder names
// that layer and every linear of the block (never the head), reads back as
// the same adapter, and the merged folder changes that layer alone.
START_TEST(test_family_last_layer) {
    static const char *const families[] = {"phi3", "gpt2", "falcon"};
    const char *family = families[_i];
    char *dir = lc_test_tmpdir();
    lc_family_fixture f;
    lc_family_fixture_load(&f, family, dir);
    lc_model m;
    ck_assert_msg(lc_model_load(&m, f.model_dir) == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    int n = m.cfg.n_layers, last = n - 1;
    ck_assert_int_ge(n, 2);
    lc_lora_config c = {.r = 2, .alpha = 4.0f, .targets = LC_LINEAR_KIND_ALL, .layers_last = 1};
    lc_lora lora;
    ck_assert_msg(lc_lora_init(&lora, &m, &c, 3, false) == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    lc_rng rng;
    lc_rng_seed(&rng, 9);
    for (size_t i = 0; i < lora.n_params; i++) lora.params[i] = 2.0f * lc_rng_uniform(&rng) - 1.0f; // B too
    int per_layer = 0;
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++) {
        per_layer += m.layers[last].lin[k].out != 0;
        for (int l = 0; l < n; l++)
            ck_assert((lc_lora_get(&lora, l, (lc_linear_kind)k) != NULL) == (l == last && m.layers[l].lin[k].out));
    }

    char peft[700], merged[700], file[800];
    snprintf(peft, sizeof peft, "%s/peft", dir);
    snprintf(merged, sizeof merged, "%s/merged", dir);
    ck_assert_msg(lc_export_peft(peft, f.model_dir, &m, &lora, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", family,
                  lc_error_message());
    snprintf(file, sizeof file, "%s/adapter_config.json", peft);
    char *text = lc_test_read(file, NULL);
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    const cJSON *ltt = cJSON_GetObjectItem(cfg, "layers_to_transform");
    ck_assert_msg(cJSON_GetArraySize(ltt) == 1 && ltt->child->valuedouble == last, "%s", family);
    for (const cJSON *e = cJSON_GetObjectItem(cfg, "target_modules")->child; e; e = e->next)
        ck_assert_msg(!strstr(e->valuestring, "lm_head") && strcmp(e->valuestring, "embed_out") != 0, "%s: %s",
                      family, e->valuestring);
    cJSON_Delete(cfg);
    lc_lora back;
    ck_assert_msg(lc_peft_load(peft, &m, &back) == LC_STATUS_OK, "%s: %s", family, lc_error_message());
    ck_assert_uint_eq(back.n_params, lora.n_params);
    ck_assert_msg(memcmp(back.params, lora.params, lora.n_params * sizeof(float)) == 0, "%s", family);
    lc_lora_free(&back);

    ck_assert_msg(lc_export_hf(merged, f.model_dir, &m, &lora, LC_DTYPE_F32) == LC_STATUS_OK, "%s: %s", family,
                  lc_error_message());
    lc_arch_names names;
    lc_arch_names_get(&names, &m.cfg);
    // "layers.1." / "h.1.": a stored name may drop the family's key prefix (GPT-2's "transformer.").
    const char *d = strstr(names.layer, ".%d"), *start = d;
    while (start > names.layer && start[-1] != '.') start--;
    char layer_path[96];
    snprintf(layer_path, sizeof layer_path, "%.*s.%d.", (int)(d - start), start, last);
    const char *changed[] = {layer_path, NULL};
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/model.safetensors", f.model_dir);
    snprintf(b, sizeof b, "%s/model.safetensors", merged);
    // A fused family stores fewer weights than it has kinds: at most one per kind.
    int differ = st_compare(a, b, changed);
    ck_assert_msg(differ >= 1 && differ <= per_layer, "%s: %d of %d", family, differ, per_layer);
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_family_fixture_free(&f);
    lc_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lora_layers");
    TCase *tc = tcase_create("layers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_all_linear_is_the_full_list);
    tcase_add_test(tc, test_layers_everywhere);
    tcase_add_test(tc, test_layer_out_of_range_cli);
    tcase_add_test(tc, test_peft_layers_read);
    tcase_add_test(tc, test_checkpoint_layers_attribute);
    tcase_add_test(tc, test_resume_compares_layers);
    suite_add_tcase(s, tc);
    TCase *fam = tcase_create("families");
    tcase_add_loop_test(fam, test_family_last_layer, 0, 3);
    suite_add_tcase(s, fam);
    return lc_test_run_suite(s);
}
