// `lora train`: reading the training and validation data (and the chat
// template chat data needs), with the counts a user sees at start.
#include <stdio.h>
#include <string.h>

#include "train/base.h"
#include "train/trainer.h"
#include "train/trainer_internal.h"

lc_status lc_train_load_chat(const char *model_dir, const char *override, lc_chat **chat, char *err, size_t cap) {
    *chat = NULL;
    err[0] = 0;
    lc_status st = lc_base_load_chat(chat, model_dir, override);
    if (st && !override && st == LC_STATUS_INPUT) {
        // Only chat data needs it: prompt/completion data trains on a model whose template cannot be read.
        snprintf(err, cap, "%s", lc_error_message());
        return LC_STATUS_OK;
    }
    return st;
}

lc_status lc_trainer_load_data(trainer *t) {
    const lc_train_config *cfg = t->cfg;
    lc_status st = lc_train_load_chat(cfg->model, cfg->chat_template[0] ? cfg->chat_template : NULL, &t->chat,
                                      t->chat_error, sizeof t->chat_error);
    if (st) return st;
    lc_dataset_options opt = {.max_seq_len = cfg->max_seq_len, .mask_prompt = cfg->mask_prompt, .chat = t->chat,
                              .model_name = cfg->model, .chat_error = t->chat_error[0] ? t->chat_error : NULL};
    st = lc_dataset_load(&t->train, cfg->train_data, t->tok, &opt);
    if (st) return st;
    if (cfg->valid_data[0]) {
        if ((st = lc_dataset_load(&t->valid, cfg->valid_data, t->tok, &opt))) return st;
        t->has_valid = 1;
    } else if (cfg->valid_split > 0.0) {
        lc_dataset all = t->train;
        memset(&t->train, 0, sizeof t->train);
        if ((st = lc_dataset_split(&all, cfg->valid_split, cfg->seed, &t->train, &t->valid))) return st;
        t->has_valid = 1;
    }
    int n_read = t->train.n_examples, n_truncated = t->train.n_truncated;
    int dropped = lc_dataset_drop_untrainable(&t->train);
    fprintf(stderr, "lora train: %s: %d examples", cfg->train_data, n_read);
    if (n_truncated) fprintf(stderr, ", %d truncated to %d tokens", n_truncated, cfg->max_seq_len);
    if (dropped) fprintf(stderr, ", %d left out because truncation removed their whole completion", dropped);
    fprintf(stderr, "; training on %d examples, %lld tokens\n", t->train.n_examples, (long long)t->train.n_tokens);
    if (t->train.n_examples == 0)
        return lc_error(LC_STATUS_INPUT, "%s: no example has a completion token within max_seq_len %d",
                        cfg->train_data, cfg->max_seq_len);
    if (t->has_valid) {
        int n_valid = t->valid.n_examples;
        fprintf(stderr, "lora train: validation: %d examples%s", n_valid,
                cfg->valid_data[0] ? "" : " split from the training data");
        if (cfg->eval_max_examples && cfg->eval_max_examples < n_valid) {
            lc_dataset_keep_first(&t->valid, cfg->eval_max_examples);
            fprintf(stderr, ", the first %d evaluated (eval_max_examples)", t->valid.n_examples);
        }
        fprintf(stderr, "\n");
    }
    // Found now, not after the last step: a validation set with nothing to
    // score, and data the model cannot take.
    if (t->has_valid && lc_train_count_targets(&t->valid) == 0) {
        if (cfg->eval_max_examples && t->valid.n_examples == cfg->eval_max_examples)
            return lc_error(LC_STATUS_INPUT, "%s: none of the first %d validation examples (eval_max_examples) has a "
                            "completion token within max_seq_len %d", cfg->valid_data[0] ? cfg->valid_data :
                            cfg->train_data, cfg->eval_max_examples, cfg->max_seq_len);
        if (cfg->valid_data[0])
            return lc_error(LC_STATUS_INPUT, "%s: no validation example has a completion token within max_seq_len %d",
                            cfg->valid_data, cfg->max_seq_len);
        return lc_error(LC_STATUS_INPUT, "%s: none of the %d examples split off for validation (valid_split %g, seed "
                        "%llu) has a completion token within max_seq_len %d", cfg->train_data, t->valid.n_examples,
                        cfg->valid_split, (unsigned long long)cfg->seed, cfg->max_seq_len);
    }
    lc_status st2 = lc_train_check_dataset(&t->train, cfg->train_data, &t->model, "max_seq_len", cfg->max_seq_len);
    if (!st2 && t->has_valid)
        st2 = lc_train_check_dataset(&t->valid, cfg->valid_data[0] ? cfg->valid_data : cfg->train_data, &t->model,
                                     "max_seq_len", cfg->max_seq_len);
    return st2;
}
