// `lora inspect PATH`: what a model folder or safetensors file holds.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "model/arch.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "export/gguf.h"
#include "train/base.h"
#include "train/checkpoint.h"
#include "train/cli.h"
#include "train/trainer.h"

static const char inspect_usage[] =
    "usage: lora inspect PATH\n"
    "  PATH  a Hugging Face model folder, a PEFT adapter folder, a lora train output\n"
    "        folder (its config, checkpoints and losses), a .safetensors file, a lora.c\n"
    "        checkpoint (.h5) or a GGUF file (.gguf)\n";

static void print_tensors(const lc_st_set *set) {
    for (int i = 0; i < set->n_tensors; i++) {
        const lc_st_tensor *t = &set->tensors[i];
        char name[512];
        printf("  %-60s %-5s [", lc_inspect_text(name, sizeof name, t->name), t->dtype_name);
        for (int d = 0; d < t->n_dims; d++) printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
        printf("]\n");
    }
}

static long long count_params(const lc_st_set *set) {
    long long n = 0;
    for (int i = 0; i < set->n_tensors; i++) n += set->tensors[i].n_elements;
    return n;
}

// The family and shape of a loaded base model.
static void print_model(const lc_model *m) {
    const lc_model_config *c = &m->cfg;
    printf("  architecture   %s\n", c->model_type);
    printf("  layers         %d\n", c->n_layers);
    printf("  hidden size    %d (intermediate %d)\n", c->hidden_size, c->intermediate_size);
    printf("  heads          %d query, %d key/value, head_dim %d\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  vocabulary     %d\n", c->vocab_size);
    if (c->pos == LC_POS_KIND_ROPE)
        printf("  context        %d (rope theta %g%s)\n", c->max_position_embeddings, c->rope_theta,
               c->rope_scaling == LC_ROPE_SCALING_LLAMA3   ? ", llama3 scaling"
               : c->rope_scaling == LC_ROPE_SCALING_LINEAR ? ", linear scaling"
                                                           : "");
    else
        printf("  context        %d (%s positions)\n", c->max_position_embeddings,
               c->pos == LC_POS_KIND_ALIBI ? "ALiBi" : "learned");
    if (c->sliding_window) printf("  sliding window %d\n", c->sliding_window);
    if (c->n_experts) {
        int sparse = 0;
        for (int l = 0; l < c->n_layers; l++) sparse += lc_config_layer_moe(c, l);
        printf("  experts        %d of width %d, %d a token (%s) in %d of %d layers%s\n", c->n_experts, c->moe_ff,
               c->experts_per_tok, c->norm_topk_prob ? "weights renormalized" : "softmax weights as they are", sparse,
               c->n_layers, c->shared_ff ? ", plus a gated shared expert" : "");
    }
    printf("  head           %s\n", m->lm_head.data == m->embed.data ? "tied to the embeddings" : "separate lm_head");
    char targets[160];
    lc_arch_target_list(c, targets, sizeof targets);
    printf("  LoRA targets   %s\n", targets);
    printf("  parameters     %lld in %d tensors, %d file%s\n", count_params(&m->st), m->st.n_tensors, m->st.n_files,
           m->st.n_files == 1 ? "" : "s");
}

static lc_status inspect_dir(const char *dir) {
    lc_model m;
    lc_status st = lc_model_load(&m, dir);
    if (st) return st;
    lc_train_warn_model("lora inspect", dir, &m);
    printf("model folder %s\n", dir);
    print_model(&m);
    print_tensors(&m.st);
    lc_model_free(&m);
    return LC_STATUS_OK;
}

// What a GGUF file is to lora.c: a base it can train (family, the stored
// types of the frozen weights) or why not.
static void gguf_summary(const char *path, const lc_gguf_file *f) {
    lc_gguf_str s;
    if (lc_gguf_kv_str(lc_gguf_find_kv(f, "general.type"), 0, &s) && s.len == 7 && !memcmp(s.s, "adapter", 7)) {
        printf("  a LoRA adapter (give it to llama.cpp with --lora; lora.c writes these with --format gguf-lora)\n");
        return;
    }
    lc_model m;
    lc_tokenizer *tok = NULL;
    if (lc_model_load(&m, path)) {
        printf("  lora.c cannot train this file: %s\n", lc_error_message());
        return;
    }
    if (lc_base_load_tokenizer(&tok, path)) {
        printf("  lora.c cannot train this file: %s\n", lc_error_message());
        lc_model_free(&m);
        return;
    }
    lc_tokenizer_free(tok);
    printf("  lora.c can train this file as a base model:\n");
    print_model(&m);
    int counts[LC_WTYPE_COUNT] = {0};
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            if (m.layers[l].lin[k].out) counts[m.layers[l].lin[k].w.type]++;
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int e = 0; e <= m.cfg.n_experts; e++)
            for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
                const lc_linear *lin = lc_model_expert_linear(&m, l, e, (lc_expert_proj)j);
                if (lin) counts[lin->w.type]++;
            }
    printf("  frozen weights ");
    for (int t = 0, first = 1; t < LC_WTYPE_COUNT; t++)
        if (counts[t]) {
            printf("%s%d %s", first ? "" : ", ", counts[t], lc_wtype_name((lc_wtype)t));
            first = 0;
        }
    printf(" (kept in their stored type)\n");
    printf("  embeddings     %s, head %s\n", lc_wtype_name(m.embed.type), lc_wtype_name(m.lm_head.type));
    lc_model_free(&m);
}

static lc_status inspect_safetensors(const char *path) {
    lc_st_set set = {0};
    lc_status st = lc_st_set_add_file(&set, path);
    if (!st) {
        printf("safetensors %s\n  %d tensors, %lld parameters\n", path, set.n_tensors, count_params(&set));
        print_tensors(&set);
    }
    lc_st_set_free(&set);
    return st;
}

static void print_module(void *user, const char *module, const int64_t a[2], const int64_t b[2]) {
    (void)user;
    char name[512];
    printf("  %-44s A [%lld, %lld]  B [%lld, %lld]\n", lc_inspect_text(name, sizeof name, module), (long long)a[0], (long long)a[1], (long long)b[0],
           (long long)b[1]);
}

static lc_status inspect_checkpoint(const char *path) {
    lc_checkpoint_info info;
    lc_status st = lc_checkpoint_read_info(path, &info);
    if (st) return st;
    printf("lora.c checkpoint %s\n", path);
    printf("  step           %lld (data position: epoch %lld, index %lld)\n", (long long)info.step,
           (long long)info.epoch, (long long)info.data_index);
    printf("  LoRA           r %d, alpha %g, dropout %g%s\n", info.lora.r, info.lora.alpha, info.lora.dropout,
           info.lora.rslora ? ", rsLoRA" : "");
    printf("  targets       ");
    for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
        if (info.lora.targets & (1u << k)) printf(" %s", lc_linear_kind_name(k));
    char layers[LC_LORA_MAX_LAYERS * 5 + 1];
    lc_lora_layers_string(layers, sizeof layers, &info.lora);
    printf("\n  layers         %s\n", layers); // "all": written before lora.layers, every layer
    printf("  optimizer      %s\n", info.has_optimizer ? "AdamW moments included (resumable)" : "none (adapter only)");
    lc_inspect_checkpoint_run(path, &info); // base model, config, elapsed time, losses
    st = lc_checkpoint_list_modules(path, print_module, NULL);
    if (!st && info.config_json) {
        printf("  config\n");
        lc_inspect_print_text(info.config_json, strlen(info.config_json), 1);
        printf("\n");
    }
    lc_checkpoint_info_free(&info);
    return st;
}

// A GGUF file: its metadata (arrays summarized) and tensors.
static lc_status inspect_gguf(const char *path) {
    lc_gguf_file f;
    lc_status st = lc_gguf_open(&f, path);
    if (st) return st;
    printf("GGUF v%u %s\n  %zu metadata keys, %zu tensors\n", f.version, path, f.n_kvs, f.n_tensors);
    gguf_summary(path, &f);
    for (size_t i = 0; i < f.n_kvs; i++) {
        const lc_gguf_kv *kv = &f.kvs[i];
        char key[512];
        printf("  %-44s ", lc_inspect_text(key, sizeof key, kv->key));
        int64_t iv;
        double dv;
        lc_gguf_str sv;
        if (kv->type == LC_GGUF_ARRAY) {
            printf("[%s x %llu]", lc_gguf_vtype_name(kv->item_type), (unsigned long long)kv->n);
            if (lc_gguf_kv_str(kv, 0, &sv)) {
                printf(" \"");
                lc_inspect_print_text(sv.s, sv.len > 40 ? 40 : sv.len, 0);
                printf("\", ...");
            }
        } else if (lc_gguf_kv_str(kv, 0, &sv)) {
            printf("\"");
            lc_inspect_print_text(sv.s, sv.len > 200 ? 200 : sv.len, 0);
            printf("\"%s", sv.len > 200 ? "..." : "");
        } else if (lc_gguf_kv_int(kv, 0, &iv)) {
            printf("%lld", (long long)iv);
        } else if (lc_gguf_kv_float(kv, 0, &dv)) {
            printf("%g", dv);
        }
        printf("\n");
    }
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_gguf_tensor *t = &f.tensors[i];
        const char *type = lc_ggml_type_name(t->type);
        char name[512];
        printf("  %-44s %-5s [", lc_inspect_text(name, sizeof name, t->name), type ? type : "?");
        for (int d = 0; d < t->n_dims; d++) printf(d ? ", %lld" : "%lld", (long long)t->ne[d]);
        printf("]\n");
    }
    lc_gguf_close(&f);
    return LC_STATUS_OK;
}

// A PEFT adapter folder: its adapter_config.json and tensors.
static lc_status inspect_peft(const char *dir) {
    char path[4200];
    char *text;
    size_t len;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    lc_status st = lc_file_read(path, 1 << 20, &text, &len);
    if (st) return st;
    printf("PEFT adapter folder %s\n  adapter_config.json\n", dir);
    lc_inspect_print_text(text, len, 1);
    printf("\n");
    free(text);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    return inspect_safetensors(path);
}

lc_status lc_cmd_inspect(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(inspect_usage, stdout);
        return LC_STATUS_OK;
    }
    if (argc != 2) return lc_error(LC_STATUS_USAGE, "expected one PATH (see lora inspect --help)");
    const char *path = argv[1];
    if (lc_dir_exists(path)) {
        char peft[4200];
        snprintf(peft, sizeof peft, "%s/adapter_config.json", path);
        if (lc_file_exists(peft)) return inspect_peft(path);
        int is_run;
        lc_status st = lc_inspect_dir_kind(path, &is_run);
        if (st) return st;
        return is_run ? lc_inspect_run_dir(path) : inspect_dir(path);
    }
    if (!lc_file_exists(path)) return lc_error(LC_STATUS_INPUT, "%s: no such file or folder", path);
    size_t len = strlen(path);
    if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0) return inspect_safetensors(path);
    if (len > 3 && strcmp(path + len - 3, ".h5") == 0) return inspect_checkpoint(path);
    if (len > 5 && strcmp(path + len - 5, ".gguf") == 0) return inspect_gguf(path);
    return lc_error(LC_STATUS_INPUT, "%s: not a model folder, PEFT folder, .safetensors, .h5 or .gguf file", path);
}
