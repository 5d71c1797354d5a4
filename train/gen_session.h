// What lora generate and lora chat share: the model, its tokenizer, an
// optional adapter, a sampler and a KV-cache state planned once, and the ids
// generation stops at.
#ifndef LC_GEN_SESSION_H
#define LC_GEN_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "model/generate.h"
#include "model/model.h"

#define LC_GEN_MAX_STOPS 32
#define LC_GEN_MAX_STOP_TEXTS 16

typedef struct lc_gen_options {
    const char *model_dir, *adapter;
    const char *system, *chat_template; // chat: a system message, a template instead of the model's
    const char *cmd; // "lora generate": prefixes notes
    double temperature, top_p;
    long top_k, seed; // seed < 0: from the clock (printed when sampling)
    double repetition_penalty; // 1: off
    const char *stop_text[LC_GEN_MAX_STOP_TEXTS]; // --stop: generation ends where the text holds one
    int n_stop_text;
} lc_gen_options;

typedef struct lc_gen_session {
    lc_tokenizer *tok;
    lc_model model;
    int model_loaded;
    lc_lora lora;
    int has_lora;
    lc_sampler sampler;
    lc_forward_state state;
    int planned;                    // the state is allocated
    int positions;                  // what the state holds
    int32_t stop[LC_GEN_MAX_STOPS]; // EOS, the config's eos_token_id, and chat end-of-turn ids
    int n_stop;
    char *text;                     // one token's decoded bytes (lc_tokenizer_stream_max_bytes)
    size_t text_cap;
} lc_gen_session;

// The options lora generate and lora chat share (--model, --adapter,
// --system, --chat-template, --temperature, --top-k, --top-p, --seed,
// --repetition-penalty, --stop, as getopt codes 'm', 'a', 'S', 'C', 't', 'k',
// 'P', 's', 'R', 'X'): *used says whether c was one of them.
// The defaults: temperature 0.8, top-k 40, top-p 0.95, repetition penalty 1.
lc_gen_options lc_gen_options_init(const char *cmd);
lc_status lc_gen_parse_option(lc_gen_options *o, int c, const char *arg, bool *used);
#define LC_GEN_OPTIONS                                                                                              \
    {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},                                 \
        {"system", required_argument, 0, 'S'}, {"chat-template", required_argument, 0, 'C'},                     \
        {"temperature", required_argument, 0, 't'}, {"top-k", required_argument, 0, 'k'},                         \
        {"top-p", required_argument, 0, 'P'}, {"seed", required_argument, 0, 's'},                               \
        {"repetition-penalty", required_argument, 0, 'R'}, {"stop", required_argument, 0, 'X'}

lc_status lc_gen_session_open(lc_gen_session *s, const lc_gen_options *o);
void lc_gen_session_close(lc_gen_session *s);
// Plans the KV cache for `positions` (prompt + reply; clamped to the model's context), once.
lc_status lc_gen_session_plan(lc_gen_session *s, int positions);
// Adds the template's end-of-turn ids to the stops.
void lc_gen_session_add_chat_stops(lc_gen_session *s, const lc_chat *chat);

// What reaches stdout of the generated text, with --stop: bytes that might be
// the start of a stop string are held back until the next token says whether
// they are, so text is never printed and then taken back; a stop string and
// what follows it are never printed. The tokens follow their bytes: one is
// released once all of its bytes are (with --ids, printed); one whose bytes
// reach into a stop string is dropped, though its bytes before the stop string
// are released (so chat keeps the printed bytes, not the ids, as history).
typedef void (*lc_gen_emit_fn)(void *user, const char *text, size_t n, const int32_t *ids, int n_ids);
typedef struct lc_gen_output {
    const char *const *stops;
    int n_stops;
    size_t longest;
    lc_gen_emit_fn emit;
    void *user;
    char *held; // [n_held] decoded, not yet released
    size_t n_held, cap_held;
    int32_t *ids; // [n_ids] tokens not yet released; ends[i]: the end of id i's bytes in held
    size_t *ends;
    int n_ids, cap_ids;
    int stopped; // a stop string was found: nothing more is released
} lc_gen_output;

void lc_gen_output_init(lc_gen_output *o, const char *const *stops, int n_stops, lc_gen_emit_fn emit, void *user);
// One token (id < 0: bytes that belong to no token, e.g. the detokenizer's
// flush) and its decoded bytes. *stopped: a stop string is complete; what
// came before it is released.
lc_status lc_gen_output_push(lc_gen_output *o, int32_t id, const char *bytes, size_t n, bool *stopped);
// Releases what is held (at the end of generation, unless stopped).
void lc_gen_output_finish(lc_gen_output *o);
void lc_gen_output_free(lc_gen_output *o);

#endif
