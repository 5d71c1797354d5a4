#include "train/resume_check.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

typedef enum field_type {
    F_STR, F_PATH, F_DBL, F_FLT, F_INT, F_I64, F_U64, F_BOOL, F_TARGETS, F_LAYERS, F_SCHEDULE, F_COMPUTE
} field_type;

#define AT(member) offsetof(lc_train_config, member)

// Every key of the config but the order-free ones above; `refuse` when
// continuing with another value would make the checkpoint's run another run.
static const struct {
    const char *key;
    field_type type;
    size_t off;
    bool refuse;
} keys[] = {
    // The base is checked by its weights' fingerprint, not its path: a
    // copy or another spelling of the same folder resumes (with a note).
    {"model", F_PATH, AT(model), false},
    {"train_data", F_PATH, AT(train_data), true},
    {"chat_template", F_PATH, AT(chat_template), true}, // renders chat data: other tokens
    // Evaluation does not change training; its rows before and after differ.
    {"valid_data", F_PATH, AT(valid_data), false},
    {"valid_split", F_DBL, AT(valid_split), true},
    {"lora.r", F_INT, AT(lora.r), true},
    {"lora.alpha", F_FLT, AT(lora.alpha), true},
    {"lora.dropout", F_FLT, AT(lora.dropout), true},
    {"lora.rslora", F_BOOL, AT(lora.rslora), true},
    {"lora.targets", F_TARGETS, AT(lora.targets), true},
    {"lora.layers", F_LAYERS, AT(lora), true},
    {"optimizer.lr", F_FLT, AT(lr), true},
    {"optimizer.beta1", F_FLT, AT(adamw.beta1), true},
    {"optimizer.beta2", F_FLT, AT(adamw.beta2), true},
    {"optimizer.eps", F_FLT, AT(adamw.eps), true},
    {"optimizer.weight_decay", F_FLT, AT(adamw.weight_decay), true},
    {"schedule.type", F_SCHEDULE, AT(schedule.type), true},
    {"schedule.warmup_steps", F_I64, AT(schedule.warmup_steps), true},
    {"schedule.min_lr", F_FLT, AT(schedule.min_lr), true},
    {"batch_size", F_INT, AT(batch_size), true},
    {"grad_accum", F_INT, AT(grad_accum), true},
    {"max_seq_len", F_INT, AT(max_seq_len), true},
    {"max_grad_norm", F_FLT, AT(max_grad_norm), true},
    {"seed", F_U64, AT(seed), true},
    {"packing", F_BOOL, AT(packing), true},
    {"mask_prompt", F_BOOL, AT(mask_prompt), true},
    {"bf16_weights", F_BOOL, AT(bf16_weights), true}, // rounds the frozen weights: another forward pass
    // Only the length of the run (raising it continues training), how often
    // it evaluates or saves, where it writes, and how fast it runs.
    {"steps", F_I64, AT(steps), false},
    {"epochs", F_INT, AT(epochs), false},
    {"eval_every", F_INT, AT(eval_every), false},
    {"save_every", F_INT, AT(save_every), false},
    {"keep_checkpoints", F_INT, AT(keep_checkpoints), false},
    {"threads", F_INT, AT(threads), false},
    {"skip_nonfinite", F_BOOL, AT(skip_nonfinite), false},
    {"activation_checkpointing", F_BOOL, AT(activation_checkpointing), false},
    // bf16 products approximate the same model: a run may switch to them to go faster (or back).
    {"compute", F_COMPUTE, AT(compute), false},
    {"eval_max_examples", F_INT, AT(eval_max_examples), false},
    {"log_every", F_INT, AT(log_every), false},
    {"eval_generate.every", F_INT, AT(eval_generate.every), false},
    {"eval_generate.limit", F_INT, AT(eval_generate.limit), false},
    {"early_stopping.patience", F_INT, AT(early_stopping.patience), false},
    {"early_stopping.min_delta", F_FLT, AT(early_stopping.min_delta), false},
    {"output_dir", F_STR, AT(output_dir), false},
    {"init_adapter", F_STR, AT(init_adapter), false}, // read only when a run starts
};

#define FIELD(cfg, i, T) ((const T *)((const char *)(cfg) + keys[i].off))

// Two spellings of one file or folder (a symlink, "..", "./") are the same
// path; a path that no longer resolves compares as written.
static bool same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    if (!a[0] || !b[0]) return false;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// c's lora.layers as the layers of a model of n_layers layers; a selection
// that does not fit it stays as written (it compares as itself).
static lc_lora_config layers_of(const lc_train_config *c, int n_layers) {
    lc_lora_config l = c->lora;
    if (lc_lora_layers_resolve(&l, n_layers)) l = c->lora;
    return l;
}

static bool same(const lc_train_config *a, const lc_train_config *b, int i, unsigned target_mask, int n_layers) {
    switch (keys[i].type) {
    case F_STR: return strcmp(FIELD(a, i, char), FIELD(b, i, char)) == 0;
    case F_PATH: return same_file(FIELD(a, i, char), FIELD(b, i, char));
    case F_DBL: return *FIELD(a, i, double) == *FIELD(b, i, double);
    case F_FLT: return *FIELD(a, i, float) == *FIELD(b, i, float);
    case F_INT: return *FIELD(a, i, int) == *FIELD(b, i, int);
    case F_I64: return *FIELD(a, i, int64_t) == *FIELD(b, i, int64_t);
    case F_U64: return *FIELD(a, i, uint64_t) == *FIELD(b, i, uint64_t);
    case F_BOOL: return *FIELD(a, i, bool) == *FIELD(b, i, bool);
    case F_TARGETS: return (*FIELD(a, i, unsigned) & target_mask) == (*FIELD(b, i, unsigned) & target_mask);
    case F_LAYERS: {
        lc_lora_config la = layers_of(a, n_layers), lb = layers_of(b, n_layers);
        return la.layers_last == lb.layers_last && memcmp(la.layers, lb.layers, sizeof la.layers) == 0;
    }
    case F_SCHEDULE: return *FIELD(a, i, lc_schedule_type) == *FIELD(b, i, lc_schedule_type);
    case F_COMPUTE: return *FIELD(a, i, lc_compute) == *FIELD(b, i, lc_compute);
    }
    return false;
}

static void format_value(char *out, size_t cap, const lc_train_config *c, int i, unsigned target_mask) {
    static const char *schedules[] = {"constant", "linear", "cosine"};
    switch (keys[i].type) {
    case F_STR:
    case F_PATH: snprintf(out, cap, "\"%s\"", FIELD(c, i, char)); break;
    case F_DBL: snprintf(out, cap, "%g", *FIELD(c, i, double)); break;
    case F_FLT: snprintf(out, cap, "%g", *FIELD(c, i, float)); break;
    case F_INT: snprintf(out, cap, "%d", *FIELD(c, i, int)); break;
    case F_I64: snprintf(out, cap, "%lld", (long long)*FIELD(c, i, int64_t)); break;
    case F_U64: snprintf(out, cap, "%llu", (unsigned long long)*FIELD(c, i, uint64_t)); break;
    case F_BOOL: snprintf(out, cap, "%s", *FIELD(c, i, bool) ? "true" : "false"); break;
    case F_TARGETS: lc_lora_targets_string(out, cap, *FIELD(c, i, unsigned) & target_mask); break;
    case F_LAYERS: lc_lora_layers_string(out, cap, &c->lora); break;
    case F_COMPUTE: snprintf(out, cap, "\"%s\"", lc_compute_name(*FIELD(c, i, lc_compute))); break;
    case F_SCHEDULE: {
        unsigned t = (unsigned)*FIELD(c, i, lc_schedule_type);
        snprintf(out, cap, "%s", t < 3 ? schedules[t] : "?");
        break;
    }
    }
}

// Appends text to out (cap bytes), keeping it terminated when it is full.
static void append(char *out, size_t cap, const char *text) {
    size_t len = strlen(out);
    if (len + 1 < cap) snprintf(out + len, cap - len, "%s", text);
}

lc_status lc_resume_check_config(const char *path, const char *stored_json, const lc_train_config *now,
                                 unsigned target_mask, int n_layers, char *note, size_t note_cap) {
    if (note_cap) note[0] = '\0';
    if (!stored_json)
        return lc_error(LC_STATUS_INPUT, "%s: holds no config to compare with; use another output_dir", path);
    char what[4300];
    snprintf(what, sizeof what, "%s: attribute 'config'", path);
    lc_train_config old;
    lc_status st = lc_train_config_parse(&old, stored_json, what);
    if (st) {
        char reason[1024];
        snprintf(reason, sizeof reason, "%s", lc_error_message());
        lc_train_config_free(&old);
        return lc_error(st, "%s; the run cannot be compared with the config: use another output_dir", reason);
    }
    char refused[512] = "", details[1024] = "", noted[1024] = "";
    for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++) {
        if (same(&old, now, i, target_mask, n_layers)) continue;
        char was[300], is[300], item[700];
        format_value(was, sizeof was, &old, i, target_mask);
        format_value(is, sizeof is, now, i, target_mask);
        snprintf(item, sizeof item, "%s %s -> %s", keys[i].key, was, is);
        char *list = keys[i].refuse ? details : noted;
        size_t cap = keys[i].refuse ? sizeof details : sizeof noted;
        if (list[0]) append(list, cap, ", ");
        append(list, cap, item);
        if (keys[i].refuse) {
            if (refused[0]) append(refused, sizeof refused, ", ");
            append(refused, sizeof refused, keys[i].key);
        }
    }
    lc_train_config_free(&old);
    if (refused[0])
        return lc_error(LC_STATUS_INPUT,
                        "%s: was written with other values of %s; continuing it would train another run from its data "
                        "position: use another output_dir for a new run, or restore these keys to resume (%s)",
                        path, refused, details);
    if (note_cap) snprintf(note, note_cap, "%s", noted);
    return LC_STATUS_OK;
}
