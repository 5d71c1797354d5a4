// Loading a base model from a llama.cpp GGUF file: what convert_hf_to_gguf.py
// wrote is undone here (names, q/k row order, Gemma's norms already 1 + w),
// so the rest of lora.c sees the Hugging Face model it was made from, with
// each frozen weight still in its stored type.
#include "model/gguf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model/arch.h"

bool lc_path_is_gguf(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    char magic[4];
    bool yes = fread(magic, 1, 4, fp) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(fp);
    return yes && lc_file_exists(path);
}

static const char *const gguf_linear_names[LC_LINEAR_KIND_COUNT] = {
    [LC_LINEAR_KIND_Q] = "attn_q",      [LC_LINEAR_KIND_K] = "attn_k",      [LC_LINEAR_KIND_V] = "attn_v",
    [LC_LINEAR_KIND_O] = "attn_output", [LC_LINEAR_KIND_GATE] = "ffn_gate", [LC_LINEAR_KIND_UP] = "ffn_up",
    [LC_LINEAR_KIND_DOWN] = "ffn_down", [LC_LINEAR_KIND_QKV] = "attn_qkv",  [LC_LINEAR_KIND_GATE_UP] = "ffn_up",
};

const char *lc_gguf_linear_name(lc_linear_kind kind) { return gguf_linear_names[kind]; }

bool lc_gguf_fused_rows_reordered(const lc_model *m) {
    return m->from_gguf &&
           ((m->cfg.arch == LC_ARCH_FALCON && m->cfg.n_kv_heads > 1) || m->cfg.arch == LC_ARCH_BLOOM);
}

bool lc_gguf_arch_permutes_qk(const char *arch) {
    return !strcmp(arch, "llama") || !strcmp(arch, "olmo");
}

void lc_gguf_permute_rows(void *dst, const void *src, int n_heads, int D, size_t row_bytes, bool to_gguf) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (int h = 0; h < n_heads; h++)
        for (int half = 0; half < 2; half++)
            for (int j = 0; j < D / 2; j++) {
                size_t g = (size_t)h * D + 2 * j + half, hf = (size_t)h * D + half * (D / 2) + j;
                size_t to = to_gguf ? g : hf, from = to_gguf ? hf : g;
                memcpy(d + to * row_bytes, s + from * row_bytes, row_bytes);
            }
}

// The GGUF architectures lora.c reads, and the Hugging Face model_type each is.
static const struct {
    const char *gguf, *model_type, *hf_class;
} gguf_archs[] = {
    {"llama", "llama", "LlamaForCausalLM"},    {"qwen2", "qwen2", "Qwen2ForCausalLM"},
    {"gemma", "gemma", "GemmaForCausalLM"},    {"gemma2", "gemma2", "Gemma2ForCausalLM"},
    {"phi3", "phi3", "Phi3ForCausalLM"},       {"olmo", "olmo", "OlmoForCausalLM"},
    {"gpt2", "gpt2", "GPT2LMHeadModel"},       {"falcon", "falcon", "FalconForCausalLM"},
    {"bloom", "bloom", "BloomForCausalLM"},
    {"olmoe", "olmoe", "OlmoeForCausalLM"},    {"qwen2moe", "qwen2_moe", "Qwen2MoeForCausalLM"},
};

// <arch>.<suffix> as one integer into *out (*present false when absent). A
// per-layer array must have n_layers items that agree: lora.c's families
// have one value for every layer.
static lc_status meta_int(const lc_gguf_file *f, const char *arch, const char *suffix, bool required, int64_t n_layers,
                          int64_t *out, bool *present) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    *present = kv != NULL;
    if (!kv) {
        if (required) return lc_error(LC_STATUS_INPUT, "%s: metadata key %s is missing", f->path, key);
        return LC_STATUS_OK;
    }
    int64_t v, w;
    if (kv->n == 0 || !lc_gguf_kv_int(kv, 0, &v) || kv->item_type == LC_GGUF_BOOL)
        return lc_error(LC_STATUS_INPUT, "%s: metadata key %s is %s, not an integer", f->path, key,
                        lc_gguf_vtype_name(kv->item_type));
    if (kv->type == LC_GGUF_ARRAY && (n_layers <= 0 || kv->n != (uint64_t)n_layers))
        return lc_error(LC_STATUS_INPUT, "%s: metadata key %s lists %llu values for %lld layers", f->path, key,
                        (unsigned long long)kv->n, (long long)n_layers);
    for (uint64_t i = 1; i < kv->n; i++)
        if (!lc_gguf_kv_int(kv, i, &w) || w != v)
            return lc_error(LC_STATUS_INPUT, "%s: metadata key %s differs between layers, which lora.c does not support",
                            f->path, key);
    *out = v;
    return LC_STATUS_OK;
}

// <arch>.<suffix> as a finite number (*present false when absent).
static lc_status meta_float(const lc_gguf_file *f, const char *arch, const char *suffix, double *out, bool *present) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    *present = kv != NULL;
    if (!kv) return LC_STATUS_OK;
    if (kv->type == LC_GGUF_ARRAY || kv->type == LC_GGUF_BOOL || !lc_gguf_kv_float(kv, 0, out))
        return lc_error(LC_STATUS_INPUT, "%s: metadata key %s is %s, not a number", f->path, key,
                        lc_gguf_vtype_name(kv->type));
    if (!isfinite(*out)) return lc_error(LC_STATUS_INPUT, "%s: metadata key %s is not a finite number", f->path, key);
    if (kv->type == LC_GGUF_F32) {
        // The shortest decimal that reads back as the same float (1e-05, not
        // 9.99999974737875e-06), as config.json would hold it.
        char buf[32];
        for (int p = 6; p <= 9; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, *out);
            if ((float)strtod(buf, NULL) == (float)*out) break;
        }
        *out = strtod(buf, NULL);
    }
    return LC_STATUS_OK;
}

static bool add_num(cJSON *o, const char *key, double v) { return cJSON_AddNumberToObject(o, key, v) != NULL; }

// A config.json equivalent of the metadata, read by the same parser as a
// Hugging Face folder's (every check it makes applies to GGUF files too).
static lc_status build_config(lc_model *m, const lc_gguf_file *f, const char *arch, const char *model_type,
                              const char *hf_class) {
    cJSON *root = cJSON_CreateObject(), *classes = cJSON_CreateArray();
    lc_status st = LC_STATUS_OK;
    bool ok = root && classes && cJSON_AddItemToObject(root, "architectures", classes) &&
              cJSON_AddItemToArray(classes, cJSON_CreateString(hf_class)) &&
              cJSON_AddStringToObject(root, "model_type", model_type);
    if (!ok && root && classes && !classes->child) cJSON_Delete(classes);
    static const struct {
        const char *suffix, *key;
        bool required;
    } ints[] = {
        {"block_count", "num_hidden_layers", true},          {"embedding_length", "hidden_size", true},
        {"feed_forward_length", "intermediate_size", true},  {"attention.head_count", "num_attention_heads", true},
        {"attention.head_count_kv", "num_key_value_heads", false}, {"context_length", "max_position_embeddings", false},
        {"attention.key_length", "head_dim", false},
    };
    // What the families without llama's config keys call the MLP width and the
    // key/value heads (Bloom's MLP is always 4 x hidden: its shapes check it).
    bool gpt2 = !strcmp(arch, "gpt2"), falcon = !strcmp(arch, "falcon"), bloom = !strcmp(arch, "bloom");
    int64_t falcon_kv = -1;
    const char *ff_key = gpt2 ? "n_inner" : falcon ? "ffn_hidden_size" : bloom ? NULL : "intermediate_size";
    int64_t v = 0, head_dim = 0, n_layers = 0, heads = 1, hidden = 0;
    bool present;
    for (size_t i = 0; ok && i < sizeof ints / sizeof ints[0]; i++) {
        // The parser checks every range (a negative context length included).
        if ((st = meta_int(f, arch, ints[i].suffix, ints[i].required, n_layers, &v, &present))) goto out;
        if (!present) continue;
        const char *key = ints[i].key;
        if (!strcmp(key, "intermediate_size") && !(key = ff_key)) continue;
        if ((gpt2 || bloom || falcon) && !strcmp(key, "num_key_value_heads")) {
            if (falcon) {
                falcon_kv = v;
            } else if (v != heads) {
                st = lc_error(LC_STATUS_INPUT, "%s: %s has as many key/value heads as heads, not %lld", f->path, arch,
                              (long long)v);
                goto out;
            }
            continue;
        }
        ok = add_num(root, key, (double)v);
        if (!strcmp(ints[i].key, "head_dim")) head_dim = v;
        if (!strcmp(ints[i].key, "num_hidden_layers")) n_layers = v;
        if (!strcmp(ints[i].key, "num_attention_heads")) heads = v;
        if (!strcmp(ints[i].key, "hidden_size")) hidden = v;
    }
    if (head_dim <= 0) head_dim = heads > 0 ? hidden / heads : 0;
    double x;
    if ((st = meta_float(f, arch, "attention.layer_norm_rms_epsilon", &x, &present))) goto out;
    if (ok && present) ok = add_num(root, "rms_norm_eps", x);
    if ((st = meta_float(f, arch, "attention.layer_norm_epsilon", &x, &present))) goto out;
    if (ok && present) ok = add_num(root, "layer_norm_epsilon", x);
    if (falcon && ok) {
        // Falcon-7B: multi-query (1 key/value head) or one per head, one norm;
        // the new decoder (40B, 180B: two norms; Falcon2-11B: one) has groups.
        bool two_norms = lc_gguf_find_tensor(f, "blk.0.attn_norm_2.weight") != NULL;
        int64_t kv = falcon_kv < 0 ? heads : falcon_kv;
        bool new_arch = two_norms || (kv != 1 && kv != heads);
        ok = cJSON_AddBoolToObject(root, "new_decoder_architecture", new_arch) &&
             cJSON_AddBoolToObject(root, "bias", lc_gguf_find_tensor(f, "blk.0.attn_qkv.bias") != NULL);
        if (ok && new_arch)
            ok = add_num(root, "num_kv_heads", (double)kv) && add_num(root, "num_ln_in_parallel_attn", two_norms ? 2 : 1);
        else if (ok)
            ok = cJSON_AddBoolToObject(root, "multi_query", kv == 1) != NULL;
    }
    if ((st = meta_float(f, arch, "rope.freq_base", &x, &present))) goto out;
    if (ok && present) ok = add_num(root, "rope_theta", x);
    // Biases are optional in llama.cpp's graphs: present in the file, used here.
    if (ok && (lc_gguf_find_tensor(f, "blk.0.attn_q.bias") || lc_gguf_find_tensor(f, "blk.0.attn_output.bias")))
        ok = cJSON_AddBoolToObject(root, "attention_bias", true) != NULL;
    if (ok && lc_gguf_find_tensor(f, "blk.0.ffn_down.bias")) ok = cJSON_AddBoolToObject(root, "mlp_bias", true) != NULL;
    const lc_gguf_tensor *embd = lc_gguf_find_tensor(f, "token_embd.weight");
    if (!embd || embd->n_dims != 2) {
        st = lc_error(LC_STATUS_INPUT, "%s: tensor token_embd.weight is missing or not a matrix", f->path);
        goto out;
    }
    if (ok) ok = add_num(root, "vocab_size", (double)embd->ne[1]);
    // llama.cpp sizes the vocabulary by its pieces and refuses an embedding of another size.
    const lc_gguf_kv *tokens = lc_gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (tokens && tokens->n != (uint64_t)embd->ne[1]) {
        st = lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.tokens has %llu pieces for the %lld rows of token_embd.weight",
                      f->path, (unsigned long long)tokens->n, (long long)embd->ne[1]);
        goto out;
    }
    if (ok) ok = cJSON_AddBoolToObject(root, "tie_word_embeddings", !lc_gguf_find_tensor(f, "output.weight")) != NULL;

    const lc_gguf_kv *scaling = NULL;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    scaling = lc_gguf_find_kv(f, key);
    lc_gguf_str s;
    if (scaling && lc_gguf_kv_str(scaling, 0, &s) && !(s.len == 4 && !memcmp(s.s, "none", 4))) {
        double factor = 0;
        if (!(s.len == 6 && !memcmp(s.s, "linear", 6))) {
            char shown[41];
            lc_gguf_str_print(shown, sizeof shown, s);
            st = lc_error(LC_STATUS_INPUT, "%s: rope scaling \"%s\" is not supported (linear is)", f->path, shown);
            goto out;
        }
        if ((st = meta_float(f, arch, "rope.scaling.factor", &factor, &present))) goto out;
        cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
        ok = ok && rs && cJSON_AddStringToObject(rs, "type", "linear") && add_num(rs, "factor", factor);
    }
    if (!strcmp(arch, "qwen2") && ok) ok = cJSON_AddBoolToObject(root, "use_sliding_window", false) != NULL;
    if (!strcmp(arch, "gemma2")) {
        double cap;
        if ((st = meta_float(f, arch, "attn_logit_softcapping", &cap, &present))) goto out;
        if (ok && present) ok = add_num(root, "attn_logit_softcapping", cap);
        if ((st = meta_float(f, arch, "final_logit_softcapping", &cap, &present))) goto out;
        if (ok && present) ok = add_num(root, "final_logit_softcapping", cap);
        if ((st = meta_int(f, arch, "attention.sliding_window", false, n_layers, &v, &present))) goto out;
        if (ok && present) ok = add_num(root, "sliding_window", (double)v);
        // llama.cpp scales queries by 1/sqrt(head_dim), by 1/sqrt(n_embd/n_head) for the 46-layer 27B.
        if (ok) ok = add_num(root, "query_pre_attn_scalar", n_layers == 46 ? (double)(hidden / heads) : (double)head_dim);
    }
    if (!strcmp(arch, "phi3")) {
        if ((st = meta_int(f, arch, "rope.dimension_count", false, n_layers, &v, &present))) goto out;
        if (ok && present && head_dim > 0) ok = add_num(root, "partial_rotary_factor", (double)v / (double)head_dim);
        if ((st = meta_int(f, arch, "attention.sliding_window", false, n_layers, &v, &present))) goto out;
        if (ok && present) ok = add_num(root, "sliding_window", (double)v);
        if (lc_gguf_find_tensor(f, "rope_factors_long.weight")) {
            st = lc_error(LC_STATUS_INPUT, "%s: Phi-3 long-context rope factors are not supported", f->path);
            goto out;
        }
    }
    if (!strcmp(arch, "olmo")) {
        if ((st = meta_float(f, arch, "attention.clamp_kqv", &x, &present))) goto out;
        if (ok && present) ok = add_num(root, "clip_qkv", x);
    }
    // Mixture of experts: the counts, and the widths where they differ from
    // feed_forward_length; llama.cpp's olmoe and qwen2moe weight the top k
    // by the softmax as it is.
    bool mixtral = !strcmp(model_type, "mixtral"), olmoe = !strcmp(arch, "olmoe"), qwen_moe = !strcmp(arch, "qwen2moe");
    if (mixtral || olmoe || qwen_moe) {
        if ((st = meta_int(f, arch, "expert_count", true, n_layers, &v, &present))) goto out;
        if (ok) ok = add_num(root, mixtral ? "num_local_experts" : "num_experts", (double)v);
        if ((st = meta_int(f, arch, "expert_used_count", true, n_layers, &v, &present))) goto out;
        if (ok) ok = add_num(root, "num_experts_per_tok", (double)v);
        if (ok && !mixtral) ok = cJSON_AddBoolToObject(root, "norm_topk_prob", false) != NULL;
    }
    if (qwen_moe) {
        // Optional, as in llama.cpp: feed_forward_length / expert_used_count and feed_forward_length.
        int64_t ff = 0, used = 1;
        if ((st = meta_int(f, arch, "feed_forward_length", true, n_layers, &ff, &present))) goto out;
        if ((st = meta_int(f, arch, "expert_used_count", true, n_layers, &used, &present))) goto out;
        if ((st = meta_int(f, arch, "expert_feed_forward_length", false, n_layers, &v, &present))) goto out;
        if (ok) ok = add_num(root, "moe_intermediate_size", (double)(present ? v : used > 0 ? ff / used : 0));
        if ((st = meta_int(f, arch, "expert_shared_feed_forward_length", false, n_layers, &v, &present))) goto out;
        if (ok) ok = add_num(root, "shared_expert_intermediate_size", (double)(present ? v : ff));
        if (ok) ok = cJSON_AddBoolToObject(root, "use_sliding_window", false) != NULL;
    }
    // Special ids: generation stops at EOS and at the end-of-turn token.
    int64_t bos = -1, eos = -1, eot = -1;
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.bos_token_id"), 0, &bos);
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.eos_token_id"), 0, &eos);
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.eot_token_id"), 0, &eot);
    if (ok && bos >= 0) ok = add_num(root, "bos_token_id", (double)bos);
    if (ok && eos >= 0) {
        cJSON *ids = cJSON_AddArrayToObject(root, "eos_token_id");
        ok = ids && cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)eos));
        if (ok && eot >= 0 && eot != eos) ok = cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)eot));
    }
    if (!ok) {
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
        goto out;
    }
    if ((st = lc_config_parse_json(&m->cfg, root, f->path))) goto out;
    // What the converter changed: Gemma's norms written as 1 + w already,
    // GPT-2's Conv1D weights as [out, in], Falcon's and Bloom's fused
    // query/key/value rows gathered into [q; k; v].
    m->cfg.norm_plus_one = false;
    if (gpt2) m->cfg.weights_transposed = false;
    if (falcon || bloom) m->cfg.qkv = LC_QKV_LAYOUT_CONCAT;
    // llama.cpp takes each llama-style bias on its own (a "llamafied" Qwen
    // has q/k/v biases and none on the output).
    if (!gpt2 && !falcon && !bloom) {
        m->cfg.qkv_bias = lc_gguf_find_tensor(f, "blk.0.attn_q.bias") || lc_gguf_find_tensor(f, "blk.0.attn_qkv.bias");
        m->cfg.o_bias = lc_gguf_find_tensor(f, "blk.0.attn_output.bias") != NULL;
    }
    // config.json for a Hugging Face export of this base.
    char *text = cJSON_Print(root);
    if (!text || !(m->hf_config = lc_model_own(m, strlen(text) + 1))) {
        free(text);
        st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
        goto out;
    }
    memcpy(m->hf_config, text, strlen(text) + 1);
    free(text);
out:
    cJSON_Delete(root);
    return st;
}

// The Hugging Face name of GGUF tensor `name` in this family into out; false
// when it is not one lora.c loads (kept under its own name).
static bool hf_name(const lc_model_config *c, const lc_arch_names *n, const char *name, char *out, size_t cap,
                    lc_linear_kind *kind) {
    *kind = LC_LINEAR_KIND_COUNT;
    const char *suffix = strrchr(name, '.');
    if (!suffix || (strcmp(suffix, ".weight") && strcmp(suffix, ".bias"))) return false;
    size_t stem = (size_t)(suffix - name);
    if (stem == 10 && !strncmp(name, "token_embd", 10) && !strcmp(suffix, ".weight"))
        return snprintf(out, cap, "%s.weight", n->embed) < (int)cap;
    if (stem == 11 && !strncmp(name, "output_norm", 11) && n->final_norm)
        return snprintf(out, cap, "%s%s", n->final_norm, suffix) < (int)cap;
    if (stem == 6 && !strncmp(name, "output", 6) && !strcmp(suffix, ".weight"))
        return snprintf(out, cap, "%s.weight", n->head) < (int)cap;
    if (stem == 13 && !strncmp(name, "position_embd", 13) && n->pos_embed && !strcmp(suffix, ".weight"))
        return snprintf(out, cap, "%s.weight", n->pos_embed) < (int)cap;
    if (stem == 15 && !strncmp(name, "token_embd_norm", 15) && n->embed_norm)
        return snprintf(out, cap, "%s%s", n->embed_norm, suffix) < (int)cap;
    int layer, used = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0 || layer >= c->n_layers) return false;
    const char *mid = name + used;
    size_t mlen = (size_t)(suffix - mid);
    const char *hf = NULL;
    unsigned kinds = lc_model_layer_linear_kinds(c, layer);
    for (int k = 0; k < LC_LINEAR_KIND_COUNT && !hf; k++)
        if ((kinds >> k & 1) && strlen(gguf_linear_names[k]) == mlen && !strncmp(mid, gguf_linear_names[k], mlen)) {
            hf = n->lin[k];
            *kind = (lc_linear_kind)k;
        }
    // Mixture of experts: the router, the shared expert and its gate, OLMoE's q/k norms.
    static const char *const shexp[3] = {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"};
    char moe_path[160];
    if (n->router && mlen == 12 && !strncmp(mid, "ffn_gate_inp", 12)) hf = n->router;
    if (n->shared_gate && mlen == 18 && !strncmp(mid, "ffn_gate_inp_shexp", 18)) hf = n->shared_gate;
    for (int j = 0; j < 3 && n->shared_expert && !hf; j++)
        if (strlen(shexp[j]) == mlen && !strncmp(mid, shexp[j], mlen)) {
            snprintf(moe_path, sizeof moe_path, "%s.%s", n->shared_expert, n->expert_lin[j]);
            hf = moe_path;
        }
    if (n->q_norm && mlen == 11 && !strncmp(mid, "attn_q_norm", 11)) hf = n->q_norm;
    if (n->k_norm && mlen == 11 && !strncmp(mid, "attn_k_norm", 11)) hf = n->k_norm;
    static const char *const norms[5] = {"attn_norm", "ffn_norm", "post_attention_norm", "post_ffw_norm", "attn_norm_2"};
    const char *hf_norms[5] = {n->attn_norm, n->mlp_norm, n->post_attn_norm, n->post_mlp_norm, NULL};
    if (c->parallel_two_norms) { // Falcon's new decoder: attn_norm is ln_mlp, attn_norm_2 ln_attn
        hf_norms[0] = n->mlp_norm;
        hf_norms[1] = NULL;
        hf_norms[4] = n->attn_norm;
    }
    for (int i = 0; i < 5 && !hf; i++)
        if (strlen(norms[i]) == mlen && !strncmp(mid, norms[i], mlen)) hf = hf_norms[i];
    if (!hf) return false;
    char base[128];
    snprintf(base, sizeof base, n->layer, layer);
    return snprintf(out, cap, "%s.%s%s", base, hf, suffix) < (int)cap;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const lc_st_tensor *)a)->name, ((const lc_st_tensor *)b)->name);
}

// If g is a layer's stacked experts ("blk.N.ffn_gate_exps.weight", ggml
// [in, out, experts]), adds one tensor per expert to m->st under its Hugging
// Face name, each a view of its slice, and returns true (*st the outcome);
// false when g is not one.
static bool expert_views(lc_model *m, const lc_gguf_file *f, const lc_gguf_tensor *g, const lc_arch_names *n,
                         size_t cap, lc_status *st) {
    static const char *const exps[LC_EXPERT_PROJ_COUNT] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    const lc_model_config *c = &m->cfg;
    int layer, used = 0, proj = -1;
    *st = LC_STATUS_OK;
    if (!n->expert || sscanf(g->name, "blk.%d.%n", &layer, &used) != 1 || used == 0) return false;
    for (int j = 0; j < LC_EXPERT_PROJ_COUNT; j++) {
        size_t len = strlen(exps[j]);
        if (!strncmp(g->name + used, exps[j], len) && !strcmp(g->name + used + len, ".weight")) proj = j;
    }
    if (proj < 0) return false;
    // Only the canonical spelling ("blk.00." or "blk.+0." would be a second
    // stack of the same layer's experts: left to be refused as unknown).
    char canon[96];
    snprintf(canon, sizeof canon, "blk.%d.%s.weight", layer, exps[proj]);
    if (strcmp(canon, g->name) != 0) return false;
    if (layer < 0 || layer >= c->n_layers || !lc_config_layer_moe(c, layer) || g->n_dims != 3 || g->ne[2] != c->n_experts) {
        *st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is not [in, out, %d experts] of a sparse layer", f->path, g->name,
                       c->n_experts);
        return true;
    }
    lc_wtype wt;
    bool known = lc_wtype_from_ggml(g->type, &wt);
    size_t slice = g->nbytes / (size_t)c->n_experts;
    lc_st_set *set = &m->st;
    if ((size_t)set->n_tensors + (size_t)c->n_experts > cap) { // a layer's stack twice
        *st = lc_error(LC_STATUS_INPUT, "%s: tensor %s: more stacked expert tensors than layers hold", f->path, g->name);
        return true;
    }
    for (int e = 0; e < c->n_experts; e++) {
        lc_st_tensor *t = &set->tensors[set->n_tensors];
        char base[128], path[300];
        snprintf(base, sizeof base, n->layer, layer);
        int len = snprintf(path, sizeof path, "%s.", base);
        snprintf(path + len, sizeof path - (size_t)len, n->expert, e);
        size_t plen = strlen(path);
        snprintf(path + plen, sizeof path - plen, ".%s.weight", n->expert_lin[proj]);
        if (!(t->name = strdup(path))) {
            *st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
            return true;
        }
        set->n_tensors++;
        t->stored_name = g->name;
        t->dtype = known ? (lc_dtype)wt : LC_DTYPE_OTHER;
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", lc_ggml_type_name(g->type));
        t->n_dims = 2;
        t->shape[0] = g->ne[1];
        t->shape[1] = g->ne[0];
        t->n_elements = g->ne[0] * g->ne[1];
        t->data = g->data + (size_t)e * slice;
        t->nbytes = slice;
    }
    return true;
}

// m->st as a view of the GGUF tensors lora.c loads, under Hugging Face names;
// q/k of permuting architectures are copied into Hugging Face row order.
static lc_status build_tensors(lc_model *m, const lc_gguf_file *f, const char *arch) {
    const lc_model_config *c = &m->cfg;
    lc_arch_names n;
    lc_arch_names_get(&n, c);
    lc_st_set *set = &m->st;
    // A stacked expert tensor becomes one view per expert.
    size_t cap = f->n_tensors + (size_t)(c->n_experts > 0 ? c->n_experts : 0) * LC_EXPERT_PROJ_COUNT * c->n_layers;
    if (!(set->files = calloc(1, sizeof *set->files)) || !(set->files[0].path = strdup(f->path)) ||
        (cap && !(set->tensors = calloc(cap, sizeof *set->tensors))))
        return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
    set->n_files = 1;
    bool permute = lc_gguf_arch_permutes_qk(arch);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lc_gguf_tensor *g = &f->tensors[i];
        lc_st_tensor *t = &set->tensors[set->n_tensors];
        char name[320];
        lc_linear_kind kind;
        lc_status xs;
        if (expert_views(m, f, g, &n, cap, &xs)) {
            if (xs) return xs;
            continue; // split into its experts
        }
        if (!hf_name(c, &n, g->name, name, sizeof name, &kind)) {
            // rope_freqs is read from the file where needed; anything else
            // unknown would be silently left out of the computation.
            if (!strcmp(g->name, "rope_freqs.weight")) continue;
            int layer;
            if (sscanf(g->name, "blk.%d.", &layer) == 1 && (layer < 0 || layer >= c->n_layers))
                return lc_error(LC_STATUS_INPUT, "%s: tensor %s belongs to no layer (block_count is %d)", f->path,
                                g->name, c->n_layers);
            return lc_error(LC_STATUS_INPUT, "%s: tensor %s is not part of lora.c's %s model", f->path, g->name, arch);
        }
        if (!(t->name = strdup(name))) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
        set->n_tensors++;
        t->stored_name = g->name;
        lc_wtype wt;
        t->dtype = lc_wtype_from_ggml(g->type, &wt) ? (lc_dtype)wt : LC_DTYPE_OTHER;
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", lc_ggml_type_name(g->type));
        t->n_dims = g->n_dims;
        for (int d = 0; d < g->n_dims; d++) t->shape[d] = g->ne[g->n_dims - 1 - d];
        if (g->n_dims == 1 && n.shared_gate && strstr(name, n.shared_gate)) { // [C] to the Linear's [1, C]
            t->n_dims = 2;
            t->shape[0] = 1;
            t->shape[1] = g->ne[0];
        }
        t->n_elements = g->n_elements;
        t->data = g->data;
        t->nbytes = g->nbytes;
        int heads = kind == LC_LINEAR_KIND_Q ? c->n_heads : kind == LC_LINEAR_KIND_K ? c->n_kv_heads : 0;
        if (permute && heads && t->dtype != LC_DTYPE_OTHER && t->shape[0] == (int64_t)heads * c->head_dim) {
            void *copy = lc_model_own(m, t->nbytes);
            if (!copy) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
            lc_gguf_permute_rows(copy, t->data, heads, c->head_dim, t->nbytes / (size_t)t->shape[0], false);
            t->data = copy;
        }
    }
    qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, cmp_tensor);
    for (int i = 1; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i - 1].name, set->tensors[i].name))
            return lc_error(LC_STATUS_INPUT, "%s: two tensors stand for %s", f->path, set->tensors[i].name);
    return LC_STATUS_OK;
}

// llama.cpp divides each rotary frequency by rope_freqs (Llama 3.1's scaling).
static lc_status apply_rope_freqs(lc_model *m, const lc_gguf_file *f) {
    const lc_gguf_tensor *t = lc_gguf_find_tensor(f, "rope_freqs.weight");
    if (!t) return LC_STATUS_OK;
    int half = m->cfg.rope_dim / 2;
    if (t->type != 0 || t->n_elements != half)
        return lc_error(LC_STATUS_INPUT, "%s: rope_freqs.weight must be F32 with %d values", f->path, half);
    for (int i = 0; i < half; i++) {
        float v;
        memcpy(&v, t->data + 4 * (size_t)i, 4);
        if (!(v > 0.0f) || v != v)
            return lc_error(LC_STATUS_INPUT, "%s: rope_freqs.weight holds a value that is not positive", f->path);
        m->inv_freq[i] /= v;
    }
    m->rope_freqs = true;
    return LC_STATUS_OK;
}

lc_status lc_model_load_gguf(lc_model *m, const char *path, bool bf16_weights) {
    memset(m, 0, sizeof *m);
    m->from_gguf = true;
    lc_status st;
    lc_gguf_file *f = calloc(1, sizeof *f);
    if (!f) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    if ((st = lc_gguf_open(f, path))) {
        free(f);
        return st;
    }
    m->gguf = f;
    lc_gguf_str a;
    if (!lc_gguf_kv_str(lc_gguf_find_kv(f, "general.architecture"), 0, &a)) {
        st = lc_error(LC_STATUS_INPUT, "%s: general.architecture is missing", path);
        goto fail;
    }
    const char *model_type = NULL, *hf_class = NULL;
    char arch[64];
    lc_gguf_str_print(arch, sizeof arch, a);
    for (size_t i = 0; i < sizeof gguf_archs / sizeof gguf_archs[0] && !model_type; i++)
        if (strlen(gguf_archs[i].gguf) == a.len && !memcmp(gguf_archs[i].gguf, a.s, a.len)) {
            model_type = gguf_archs[i].model_type;
            hf_class = gguf_archs[i].hf_class;
        }
    if (!model_type) {
        st = lc_error(LC_STATUS_INPUT, "%s: GGUF architecture \"%s\" is not supported (supported: llama, qwen2, gemma, "
                      "gemma2, phi3, olmo, gpt2, falcon, bloom, olmoe, qwen2moe)",
                      path, arch);
        goto fail;
    }
    // llama.cpp writes Mixtral as llama with experts.
    char experts_key[96];
    snprintf(experts_key, sizeof experts_key, "%s.expert_count", arch);
    int64_t experts = 0;
    if (!strcmp(arch, "llama") && lc_gguf_kv_int(lc_gguf_find_kv(f, experts_key), 0, &experts) && experts > 0) {
        model_type = "mixtral";
        hf_class = "MixtralForCausalLM";
    }
    lc_gguf_str type;
    if (lc_gguf_kv_str(lc_gguf_find_kv(f, "general.type"), 0, &type) && type.len == 7 && !memcmp(type.s, "adapter", 7)) {
        st = lc_error(LC_STATUS_INPUT, "%s: a LoRA adapter (general.type \"adapter\"), not a base model", path);
        goto fail;
    }
    if ((st = build_config(m, f, arch, model_type, hf_class))) goto fail;
    if ((st = build_tensors(m, f, arch))) goto fail;
    if ((st = lc_model_load_tensors(m, bf16_weights))) goto fail;
    // A tensor of the family's names that this configuration does not use
    // (a bias the family has no place for, say) would be silently ignored.
    for (int i = 0; i < m->st.n_tensors; i++)
        if (!m->st.tensors[i].used) {
            st = lc_error(LC_STATUS_INPUT, "%s: tensor %s is not used by lora.c's %s model with this metadata", path,
                          m->st.tensors[i].stored_name, arch);
            goto fail;
        }
    if ((st = apply_rope_freqs(m, f))) goto fail;
    return LC_STATUS_OK;
fail:
    lc_model_free(m);
    return st;
}
