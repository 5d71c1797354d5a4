// Chat conversations: a model's chat template, rendering a list of messages
// as transformers' apply_chat_template does, and finding the assistant text
// in the rendering so training can take its loss there only.
#ifndef LC_CHAT_H
#define LC_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/status.h"
#include "data/tokenizer.h"

typedef struct lc_chat lc_chat;

// The chat template of a model folder: override_path (a .jinja file) when
// given, else tokenizer_config.json's chat_template (a string, or a list of
// named templates, of which "default"), else chat_template.jinja. The
// special tokens of tokenizer_config.json (bos_token, eos_token, unk_token,
// pad_token, ..., additional_special_tokens) become template variables, as
// transformers passes them. *out is NULL (and OK) when there is no template.
lc_status lc_chat_load(lc_chat **out, const char *model_dir, const char *override_path);
// The same from a parsed tokenizer_config.json-style object (a GGUF base's,
// with tokenizer.chat_template); name stands for it in errors.
lc_status lc_chat_from_config(lc_chat **out, const cJSON *config, const char *name, const char *override_path);
// A template file alone (no special tokens: set them with lc_chat_set_var).
lc_status lc_chat_from_file(lc_chat **out, const char *path);
// A template from text; `name` names it in errors.
lc_status lc_chat_from_text(lc_chat **out, const char *text, size_t len, const char *name);
void lc_chat_free(lc_chat *c);
// Sets (or replaces) a template variable, e.g. bos_token; value is copied.
lc_status lc_chat_set_var(lc_chat *c, const char *name, const cJSON *value);
// Where the template came from (file path, or "DIR/tokenizer_config.json").
const char *lc_chat_source(const lc_chat *c);

// Checks a conversation: a JSON array of objects each with a string "role"
// and a string "content" (other keys pass to the template as they are).
// Errors name `what` (FILE:LINE).
lc_status lc_chat_check_messages(const cJSON *messages, const char *what);

// Renders messages[0..n) (n < 0: all) with add_generation_prompt.
// *out is a heap NUL-terminated string the caller frees.
lc_status lc_chat_render(const lc_chat *c, const cJSON *messages, int n, bool add_generation_prompt, char **out,
                         size_t *len);

typedef struct lc_chat_span {
    size_t begin, end; // bytes [begin, end) of the full rendering
} lc_chat_span;

// Renders the whole conversation (*full, caller frees) and finds each
// assistant message's span in it: from where the rendering of the messages
// before it with the generation prompt ends (for a template that rewrites
// earlier turns, so that this is no prefix of the whole: from where the
// message's content is found in the rendering) as far as the rendering that
// ends with it agrees with the whole: its content and the template's
// end-of-turn text, and an EOS written after the last turn. With tok (may be
// NULL) a span ends on a token start of both renderings, so a next header
// that begins like the template's closing text ("<|") stays out. A
// conversation whose spans cannot be found is refused (LC_STATUS_INPUT).
// *spans is a heap array (caller frees).
lc_status lc_chat_assistant_spans(const lc_chat *c, const lc_tokenizer *tok, const cJSON *messages, char **full,
                                  size_t *full_len, lc_chat_span **spans, int *n_spans);

// The rendered conversation tokenized without adding BOS/EOS (the template
// writes them) and, per token, 1 when its first byte lies in an assistant
// span. *ids and *mask are heap arrays the caller frees.
lc_status lc_chat_tokenize(const lc_chat *c, const lc_tokenizer *tok, const cJSON *messages, int32_t **ids,
                           uint8_t **mask, size_t *n);

// The ids that end an assistant turn in this template (found by rendering a
// one-exchange conversation: the special tokens right after the reply).
// Writes up to cap ids; returns how many.
int lc_chat_end_of_turn_ids(const lc_chat *c, const lc_tokenizer *tok, int32_t *out, int cap);

#endif
