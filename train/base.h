// The tokenizer and chat template of a base model, whichever form it has: a
// Hugging Face folder (tokenizer.json, tokenizer_config.json,
// chat_template.jinja) or a GGUF file (tokenizer.ggml.*, tokenizer.chat_template).
#ifndef LC_BASE_H
#define LC_BASE_H

#include "common/status.h"
#include "data/chat.h"
#include "data/tokenizer.h"

lc_status lc_base_load_tokenizer(lc_tokenizer **out, const char *model);
// override_path (a .jinja file) wins; *out is NULL (and OK) when there is no template.
lc_status lc_base_load_chat(lc_chat **out, const char *model, const char *override_path);

#endif
