// Training data: JSONL of {"prompt","completion"} or {"text"} records,
// tokenized once into examples with a loss mask, then batched (padded or
// packed) in a seeded per-epoch shuffled order.
#ifndef LC_DATASET_H
#define LC_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "data/chat.h"
#include "data/tokenizer.h"

// One tokenized record. Token t (0 <= t < n-1) is trained to predict token
// t+1 when t+1 >= n_prompt; with mask_prompt off n_prompt is 1 (everything
// after BOS, or after the first token when there is no BOS).
typedef struct lc_example {
    int32_t *ids;  // [n] BOS? + prompt + completion + EOS (or a rendered conversation), truncated to max_seq_len
    uint8_t *target; // [n] 1 where token t is trained (predicted from t-1): t >= n_prompt, or in an assistant span
    int n;
    int n_prompt;  // the first trained token (n when none)
    int line;      // 1-based line in the source file
    bool truncated; // cut to max_seq_len (lc_dataset_split recounts n_truncated from it)
} lc_example;

typedef struct lc_dataset {
    lc_example *examples; // [n_examples]
    int n_examples;
    int n_truncated;      // examples cut to max_seq_len
    int n_no_targets;     // examples left with no target token after truncation
    int64_t n_tokens;     // total tokens after truncation
    int32_t *storage;     // one block holding every example's ids
    uint8_t *target_storage; // the same for their target flags
} lc_dataset;

typedef struct lc_dataset_options {
    int max_seq_len;  // >= 2
    bool mask_prompt; // loss on completion tokens only (assistant messages for chat data)
    const lc_chat *chat;    // the model's chat template for {"messages"} lines; NULL: none
    const char *model_name; // named when chat data meets a model without a template
    const char *chat_error; // why the model's template could not be read (chat NULL), or NULL
} lc_dataset_options;

// Reads and tokenizes a JSONL file. Each non-blank line must be a JSON object
// with string "prompt" and "completion", a string "text", or "messages" (a
// chat conversation, rendered with opt->chat and tokenized without adding
// BOS/EOS: the template writes them; with mask_prompt the loss is on the
// tokens whose first byte lies in an assistant span); the first bad
// line stops the load with "FILE:LINE: reason" (LC_STATUS_INPUT). An empty
// file is an error. EOS is appended to every completion (and text).
// The prompt/completion boundary is found by tokenizing prompt+completion
// together and taking the common prefix with the prompt alone, so pieces
// that merge across the boundary are tokenized as the model will see them.
lc_status lc_dataset_load(lc_dataset *ds, const char *path, const lc_tokenizer *tok, const lc_dataset_options *opt);
void lc_dataset_free(lc_dataset *ds);

// Removes examples left with no target token (their completion was cut by
// truncation): they cannot train anything. Returns how many were removed.
int lc_dataset_drop_untrainable(lc_dataset *ds);

// Keeps the first n examples (all when there are fewer), recounting the
// totals; the storage stays as it is.
void lc_dataset_keep_first(lc_dataset *ds, int n);

// Moves a seeded random `fraction` (at least one example, leaving at least
// one) of ds into valid; the rest stays in train. ds is consumed (freed), on
// error too; train/valid may alias it. Both parts keep file order.
lc_status lc_dataset_split(lc_dataset *ds, double fraction, uint64_t seed, lc_dataset *train, lc_dataset *valid);

// 16 hex digits of the examples as tokenized (ids and loss mask, in order):
// equal copies of a file read with the same tokenizer and settings agree.
void lc_dataset_fingerprint(const lc_dataset *ds, char out[17]);

// A batch of B sequences of T positions (row-major [B, T]).
typedef struct lc_batch {
    int B, T;
    int32_t *tokens;    // [B*T] input ids; padding uses id 0
    int32_t *targets;   // [B*T] id to predict at each position, -1 where no loss
    int32_t *pos;       // [B*T] position within its example (restarts per packed example)
    int32_t *seg_start; // [B*T] first position of the token's example in its row: attention
                        //       from this token sees keys seg_start..t only
    int n_tokens;       // real (non-padding) tokens
    int n_targets;      // positions with a target
    int cap;            // allocated B*T
} lc_batch;

lc_status lc_batch_init(lc_batch *b, int B, int max_seq_len);
void lc_batch_free(lc_batch *b);

// Walks a dataset in a shuffled order (re-shuffled each epoch from the seed)
// and fills batches. The position (epoch, index) is all the state there is,
// so a checkpoint can restore it exactly.
typedef struct lc_batcher {
    const lc_dataset *ds;
    int B, max_seq_len;
    bool packing;  // several examples per row, no attention across them
    bool shuffle;  // false: file order (evaluation)
    uint64_t seed;
    int64_t epoch; // 0-based
    int index;     // next position in the epoch's order
    int *order;    // [n_examples] this epoch's permutation
    int64_t epochs; // 0: epochs run into each other; else the walk's epoch count (lc_batcher_set_epochs)
} lc_batcher;

lc_status lc_batcher_init(lc_batcher *it, const lc_dataset *ds, int B, int max_seq_len, bool packing, bool shuffle,
                          uint64_t seed);
void lc_batcher_free(lc_batcher *it);
// Restores a saved position (recomputes that epoch's order).
void lc_batcher_seek(lc_batcher *it, int64_t epoch, int index);
// Fills the next batch, continuing into the next epoch when this one runs out.
// Unpadded: B examples, T = the longest of them. Packed: each row filled in
// order with whole examples up to max_seq_len, T = the longest row.
// With lc_batcher_set_epochs, a batch holds one epoch's examples only.
void lc_batcher_next(lc_batcher *it, lc_batch *b);
// Makes the walk `epochs` epochs long (an epoch-based run, which must train
// each example exactly once an epoch): an epoch's last batch ends short (fewer
// rows) instead of being filled from the next epoch, and once the last epoch
// is served lc_batcher_next gives empty batches (B 0, no targets). 0, the
// default, is the endless walk of a steps-based run. The position stays
// (epoch, index), index n_examples at an epoch's end, so seek is unchanged.
void lc_batcher_set_epochs(lc_batcher *it, int64_t epochs);
// The batches lc_batcher_next makes over `epochs` epochs from the start when
// set to that many, with batches of lc_batch_init(b, B, max_seq_len): packed
// rows depend on the order, so each epoch is counted in its own shuffle.
lc_status lc_batcher_count_batches(const lc_batcher *it, int64_t epochs, int64_t *n_batches);
// For evaluation: fills the next batch of the current epoch only; returns
// false (and an empty batch) once every example has been served.
bool lc_batcher_next_in_epoch(lc_batcher *it, lc_batch *b);

#endif
