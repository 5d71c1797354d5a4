// Task accuracy from generation: greedy completions of a dataset's prompts,
// decoded in batches through the KV cache, scored against the references.
#ifndef LC_EVAL_GENERATE_H
#define LC_EVAL_GENERATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "data/chat.h"
#include "data/dataset.h"
#include "data/score.h"
#include "data/tokenizer.h"
#include "model/lora.h"
#include "model/model.h"

typedef struct lc_gen_eval_options {
    lc_metric metric;
    int max_tokens;          // new tokens per prompt
    int limit;               // the first `limit` examples (0: all)
    int batch;               // prompts decoded together
    const int32_t *stop;     // [n_stop] ids that end an answer (EOS, end of turn)
    int n_stop;
    bool stop_blank_line;    // plain prompts: a blank line ends the answer too
    FILE *predictions;       // a JSONL row per example, or NULL
} lc_gen_eval_options;

typedef struct lc_gen_eval_result {
    int n, correct;
    int64_t n_generated; // tokens generated (not counting rows already finished)
    double seconds;
} lc_gen_eval_result;

// The reference answer of each example of ds (loaded from `path`): the
// completion of a prompt/completion line, the last assistant message of a
// chat line. refs [ds->n_examples] are heap strings (lc_gen_eval_refs_free).
// A {"text"} line has none: an LC_STATUS_INPUT error naming FILE:LINE.
// *chat: the file holds chat lines.
lc_status lc_gen_eval_refs_load(const char *path, const lc_dataset *ds, char ***refs, bool *chat);
void lc_gen_eval_refs_free(char **refs, int n);

// The ids that end an answer, at most cap of them, each once: the
// tokenizer's EOS, the model's eos_token_id list and, for chat data (chat
// not NULL), the template's end-of-turn ids. Returns the count.
int lc_gen_eval_stop_ids(const lc_model *m, const lc_tokenizer *tok, const lc_chat *chat, int32_t *out, int cap);

// Greedy-generates an answer for each example's prompt (its tokens before
// its last trained span, the completion or the last assistant turn; ds
// loaded with mask_prompt) and scores it. lora may be NULL.
lc_status lc_eval_generate(const lc_model *m, const lc_lora *lora, const lc_tokenizer *tok, const lc_dataset *ds,
                           char *const *refs, const lc_gen_eval_options *o, lc_gen_eval_result *out);

#endif
