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

typedef struct lc_gen_options {
    const char *model_dir, *adapter;
    const char *system, *chat_template; // chat: a system message, a template instead of the model's
    const char *cmd; // "lora generate": prefixes notes
    double temperature, top_p;
    long top_k, seed; // seed < 0: from the clock (printed when sampling)
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
// --system, --chat-template, --temperature, --top-k, --top-p, --seed, as
// getopt codes 'm', 'a', 'S', 'C', 't', 'k', 'P', 's'): *used says whether c
// was one of them.
lc_gen_options lc_gen_options_init(const char *cmd); // the defaults: temperature 0.8, top-k 40, top-p 0.95
lc_status lc_gen_parse_option(lc_gen_options *o, int c, const char *arg, bool *used);
#define LC_GEN_OPTIONS                                                                                              \
    {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},                                 \
        {"system", required_argument, 0, 'S'}, {"chat-template", required_argument, 0, 'C'},                     \
        {"temperature", required_argument, 0, 't'}, {"top-k", required_argument, 0, 'k'},                         \
        {"top-p", required_argument, 0, 'P'}, {"seed", required_argument, 0, 's'}

lc_status lc_gen_session_open(lc_gen_session *s, const lc_gen_options *o);
void lc_gen_session_close(lc_gen_session *s);
// Plans the KV cache for `positions` (prompt + reply; clamped to the model's context), once.
lc_status lc_gen_session_plan(lc_gen_session *s, int positions);
// Adds the template's end-of-turn ids to the stops.
void lc_gen_session_add_chat_stops(lc_gen_session *s, const lc_chat *chat);

#endif
