// Loading for generation, shared by lora generate and lora chat.
#include "train/base.h"
#include "train/gen_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/adapter.h"
#include "train/cli.h"
#include "train/trainer.h"

static void add_stop(lc_gen_session *s, int32_t id) {
    if (id < 0 || s->n_stop == LC_GEN_MAX_STOPS) return;
    for (int k = 0; k < s->n_stop; k++)
        if (s->stop[k] == id) return;
    s->stop[s->n_stop++] = id;
}

lc_gen_options lc_gen_options_init(const char *cmd) {
    return (lc_gen_options){
        .cmd = cmd, .temperature = 0.8, .top_p = 0.95, .top_k = 40, .seed = -1, .repetition_penalty = 1.0};
}

lc_status lc_gen_parse_option(lc_gen_options *o, int c, const char *arg, bool *used) {
    *used = true;
    switch (c) {
    case 'm': o->model_dir = arg; return LC_STATUS_OK;
    case 'a': o->adapter = arg; return LC_STATUS_OK;
    case 'S': o->system = arg; return LC_STATUS_OK;
    case 'C': o->chat_template = arg; return LC_STATUS_OK;
    case 't': return lc_cli_parse_float("--temperature", arg, 0.0, 100.0, &o->temperature);
    case 'k': return lc_cli_parse_int("--top-k", arg, 0, 1 << 24, &o->top_k);
    case 'P': return lc_cli_parse_float("--top-p", arg, 0.0, 1.0, &o->top_p);
    case 's': return lc_cli_parse_int("--seed", arg, 0, 0x7fffffffL, &o->seed);
    // Above 0 (transformers refuses 0 and negatives); beyond 1000 every seen token is as good as banned.
    case 'R': return lc_cli_parse_float("--repetition-penalty", arg, 0.01, 1000.0, &o->repetition_penalty);
    case 'X':
        if (!*arg) return lc_error(LC_STATUS_USAGE, "--stop: the text is empty");
        if (o->n_stop_text == LC_GEN_MAX_STOP_TEXTS)
            return lc_error(LC_STATUS_USAGE, "--stop: at most %d stop strings", LC_GEN_MAX_STOP_TEXTS);
        o->stop_text[o->n_stop_text++] = arg;
        return LC_STATUS_OK;
    default: *used = false; return LC_STATUS_OK;
    }
}

lc_status lc_gen_session_open(lc_gen_session *s, const lc_gen_options *o) {
    memset(s, 0, sizeof *s);
    lc_status st;
    if ((st = lc_base_load_tokenizer(&s->tok, o->model_dir))) return st;
    if ((st = lc_model_load(&s->model, o->model_dir))) return st;
    s->model_loaded = 1;
    lc_train_warn_model(o->cmd, o->model_dir, &s->model);
    if (o->adapter) {
        unsigned differ;
        if ((st = lc_adapter_load(o->adapter, &s->model, NULL, LC_ADAPTER_USE_AS_IS, &s->lora, &differ))) return st;
        s->has_lora = 1;
        if (differ & LC_ADAPTER_BASE)
            fprintf(stderr, "%s: note: %s was trained on a different base model\n", o->cmd, o->adapter);
    }
    if (lc_tokenizer_vocab_size(s->tok) > s->model.cfg.vocab_size)
        return lc_error(LC_STATUS_INPUT, "%s: tokenizer has %d tokens but the model's vocabulary is %d", o->model_dir,
                        lc_tokenizer_vocab_size(s->tok), s->model.cfg.vocab_size);
    long seed = o->seed;
    if (seed < 0) {
        seed = (long)(time(NULL) & 0x7fffffff);
        if (o->temperature > 0) fprintf(stderr, "%s: seed %ld\n", o->cmd, seed);
    }
    if ((st = lc_sampler_init(&s->sampler, s->model.cfg.vocab_size, (float)o->temperature, (int)o->top_k,
                              (float)o->top_p, (uint64_t)seed)))
        return st;
    if ((st = lc_sampler_set_repetition_penalty(&s->sampler, (float)o->repetition_penalty))) return st;
    // One buffer for every token: the vocabulary's longest piece decides its size.
    s->text_cap = lc_tokenizer_stream_max_bytes(s->tok);
    if (!(s->text = malloc(s->text_cap))) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    // Stop at the tokenizer's EOS (the one training appends to completions)
    // and at every id the model's config lists (eos_token_id may be a list).
    add_stop(s, lc_tokenizer_eos(s->tok));
    for (int i = 0; i < s->model.cfg.n_eos_ids; i++) add_stop(s, s->model.cfg.eos_ids[i]);
    return LC_STATUS_OK;
}

lc_status lc_gen_session_plan(lc_gen_session *s, int positions) {
    int ctx = s->model.cfg.max_position_embeddings;
    s->positions = positions < ctx ? positions : ctx;
    if (s->positions < 1) s->positions = 1;
    int rows = s->positions < 512 ? s->positions : 512;
    lc_status st = lc_forward_state_init(&s->state, &s->model, 1, s->positions, rows, 1);
    if (st) return st;
    s->planned = 1;
    s->state.lora = s->has_lora ? &s->lora : NULL;
    return LC_STATUS_OK;
}

void lc_gen_session_add_chat_stops(lc_gen_session *s, const lc_chat *chat) {
    int32_t ids[8];
    int n = lc_chat_end_of_turn_ids(chat, s->tok, ids, 8);
    for (int i = 0; i < n; i++) add_stop(s, ids[i]);
}

void lc_gen_session_close(lc_gen_session *s) {
    free(s->text);
    lc_sampler_free(&s->sampler);
    if (s->planned) lc_forward_state_free(&s->state);
    if (s->has_lora) lc_lora_free(&s->lora);
    if (s->model_loaded) lc_model_free(&s->model);
    lc_tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}

void lc_gen_output_init(lc_gen_output *o, const char *const *stops, int n_stops, lc_gen_emit_fn emit, void *user) {
    memset(o, 0, sizeof *o);
    o->stops = stops;
    o->n_stops = n_stops;
    o->emit = emit;
    o->user = user;
    for (int k = 0; k < n_stops; k++)
        if (strlen(stops[k]) > o->longest) o->longest = strlen(stops[k]);
}

// Hands held[0..n) and the tokens that end within it to emit; keeps the rest.
static void release(lc_gen_output *o, size_t n) {
    int k = 0;
    while (k < o->n_ids && o->ends[k] <= n) k++;
    if (n || k) o->emit(o->user, o->held, n, o->ids, k);
    if (o->n_held > n) memmove(o->held, o->held + n, o->n_held - n);
    o->n_held -= n;
    for (int i = k; i < o->n_ids; i++) {
        o->ids[i - k] = o->ids[i];
        o->ends[i - k] = o->ends[i] - n;
    }
    o->n_ids -= k;
}

lc_status lc_gen_output_push(lc_gen_output *o, int32_t id, const char *bytes, size_t n, bool *stopped) {
    *stopped = o->stopped != 0;
    if (o->stopped) return LC_STATUS_OK;
    if (!o->held || o->n_held + n > o->cap_held) {
        size_t cap = 2 * (o->n_held + n) + 64;
        char *p = realloc(o->held, cap);
        if (!p) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        o->held = p;
        o->cap_held = cap;
    }
    if (id >= 0 && o->n_ids == o->cap_ids) {
        int cap = 2 * o->cap_ids + 16;
        int32_t *ids = realloc(o->ids, sizeof *ids * (size_t)cap);
        if (ids) o->ids = ids;
        size_t *ends = ids ? realloc(o->ends, sizeof *ends * (size_t)cap) : NULL;
        if (!ends) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        o->ends = ends;
        o->cap_ids = cap;
    }
    if (n) memcpy(o->held + o->n_held, bytes, n);
    o->n_held += n;
    if (id >= 0) {
        o->ids[o->n_ids] = id;
        o->ends[o->n_ids++] = o->n_held;
    }
    // What is held holds no stop string yet (else it would have stopped): look
    // for the earliest one now complete.
    size_t cut = o->n_held;
    for (int k = 0; k < o->n_stops; k++) {
        size_t len = strlen(o->stops[k]);
        for (size_t i = 0; i + len <= o->n_held && i < cut; i++)
            if (memcmp(o->held + i, o->stops[k], len) == 0) {
                cut = i;
                break;
            }
    }
    if (cut < o->n_held) {
        // the tokens after the cut are released by nobody: they reach into the stop string
        o->n_held = cut;
        release(o, cut);
        o->n_ids = 0;
        o->stopped = 1;
        *stopped = true;
        return LC_STATUS_OK;
    }
    // Keep the shortest tail that could still grow into a stop string.
    size_t keep_from = o->n_held;
    size_t start = o->n_held > o->longest ? o->n_held - o->longest + 1 : 0;
    for (size_t i = start; i < o->n_held && keep_from == o->n_held; i++)
        for (int k = 0; k < o->n_stops; k++) {
            size_t tail = o->n_held - i;
            if (tail < strlen(o->stops[k]) && memcmp(o->held + i, o->stops[k], tail) == 0) {
                keep_from = i;
                break;
            }
        }
    release(o, keep_from);
    return LC_STATUS_OK;
}

void lc_gen_output_finish(lc_gen_output *o) {
    if (o->stopped) return;
    release(o, o->n_held);
    o->n_ids = 0; // tokens with no bytes past the end (nothing left to wait for)
}

void lc_gen_output_free(lc_gen_output *o) {
    free(o->held);
    free(o->ids);
    free(o->ends);
    memset(o, 0, sizeof *o);
}
