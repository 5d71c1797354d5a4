// bench_train --write-model: a Hugging Face model folder of a named shape
// with seeded random weights and a real tokenizer, so that the benchmark of
// the real path (bench/run_train.sh) runs the `lora train` command itself.
#include "bench/write_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "model/safetensors.h"

typedef struct entries {
    lc_st_entry *e;
    char (*names)[96];
    int n;
} entries;

static void add(entries *t, const char *name, const float *data, int64_t rows, int64_t cols) {
    snprintf(t->names[t->n], sizeof t->names[t->n], "%s", name);
    lc_st_entry *e = &t->e[t->n++];
    e->name = t->names[t->n - 1];
    e->dtype = LC_DTYPE_F32;
    e->n_dims = cols ? 2 : 1;
    e->shape[0] = rows;
    e->shape[1] = cols;
    e->data = data;
    e->nbytes = sizeof(float) * (size_t)rows * (size_t)(cols ? cols : 1);
}

static lc_status write_text(const char *dir, const char *name, const char *text) {
    char path[4200];
    lc_status st = lc_path_join(path, sizeof path, dir, name);
    return st ? st : lc_file_write_atomic(path, text, strlen(text));
}

lc_status bench_write_model(const char *dir, const char *tokenizer_json, int C, int F, int L, int H, int KVH, int D,
                            int tied, int max_pos, uint64_t seed) {
    lc_tokenizer *tok;
    lc_status st = lc_tokenizer_load(&tok, tokenizer_json, NULL);
    if (st) return st;
    int V = lc_tokenizer_vocab_size(tok);
    int eos = lc_tokenizer_eos(tok), bos = lc_tokenizer_bos(tok);
    size_t json_len = 0;
    char *json = NULL;
    st = lc_file_read(tokenizer_json, (size_t)1 << 30, &json, &json_len);
    lc_tokenizer_free(tok);
    if (st) return st;

    lc_model_config cfg;
    lc_config_init_llama(&cfg, C, F, L, H, KVH, D, V);
    cfg.max_position_embeddings = max_pos;
    cfg.tie_word_embeddings = tied;
    lc_model m;
    if ((st = lc_model_init_random(&m, &cfg, seed, LC_WTYPE_F32))) {
        free(json);
        return st;
    }
    static const char *const kinds[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    int cap = 3 + 9 * L;
    entries t = {calloc((size_t)cap, sizeof *t.e), calloc((size_t)cap, sizeof *t.names), 0};
    if (!t.e || !t.names) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        goto done;
    }
    add(&t, "model.embed_tokens.weight", m.embed.data, V, C);
    for (int l = 0; l < L; l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add(&t, name, m.layers[l].attn_norm.w, C, 0);
        for (int k = 0; k < 7; k++) {
            const lc_linear *lin = &m.layers[l].lin[k];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, kinds[k]);
            add(&t, name, lin->w.data, lin->out, lin->in); // fp32: init_random without bf16
        }
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add(&t, name, m.layers[l].mlp_norm.w, C, 0);
    }
    add(&t, "model.norm.weight", m.final_norm.w, C, 0);
    if (!tied) add(&t, "lm_head.weight", m.lm_head.data, V, C);
    char path[4200], config[2048], bos_s[16] = "null", eos_s[16] = "null";
    if (bos >= 0) snprintf(bos_s, sizeof bos_s, "%d", bos);
    if (eos >= 0) snprintf(eos_s, sizeof eos_s, "%d", eos);
    const char *meta[] = {"format", "pt"};
    if ((st = lc_dir_create(dir)) || (st = lc_path_join(path, sizeof path, dir, "model.safetensors")) ||
        (st = lc_st_write(path, t.e, t.n, meta, 1)))
        goto done;
    snprintf(config, sizeof config,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
             "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
             "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, "
             "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", "
             "\"tie_word_embeddings\": %s, \"bos_token_id\": %s, \"eos_token_id\": %s, \"torch_dtype\": \"float32\"}\n",
             C, F, L, H, KVH, D, V, max_pos, tied ? "true" : "false", bos_s, eos_s);
    if ((st = write_text(dir, "config.json", config))) goto done;
    if ((st = lc_path_join(path, sizeof path, dir, "tokenizer.json"))) goto done;
    st = lc_file_write_atomic(path, json, json_len);
done:
    free(t.e);
    free(t.names);
    free(json);
    lc_model_free(&m);
    return st;
}
