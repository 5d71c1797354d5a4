// Tokenizer read from a Hugging Face tokenizer.json (BPE model): SentencePiece
// style (Prepend/Replace normalizer or Metaspace pre-tokenizer, byte_fallback)
// and byte-level (ByteLevel pre-tokenizer/decoder, Split with the file's own
// regex run by PCRE2), added/special tokens, BOS/EOS, and decoding.
#ifndef LC_TOKENIZER_H
#define LC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lc_tokenizer lc_tokenizer;

// Loads tokenizer.json; config_path (tokenizer_config.json) may be NULL or a
// missing file. BOS/EOS and whether BOS is added come from tokenizer_config
// (bos_token, eos_token, add_bos_token) and the post_processor.
lc_status lc_tokenizer_load(lc_tokenizer **out, const char *json_path, const char *config_path);
void lc_tokenizer_free(lc_tokenizer *tok);
// The same from parsed tokenizer.json and tokenizer_config.json objects
// (config may be NULL); name stands for both in errors.
typedef struct cJSON cJSON;
lc_status lc_tokenizer_load_json(lc_tokenizer **out, const cJSON *root, const cJSON *config, const char *name);

// Loads DIR/tokenizer.json with DIR/tokenizer_config.json when present; a
// missing folder or tokenizer.json is an LC_STATUS_INPUT error naming DIR.
lc_status lc_tokenizer_load_dir(lc_tokenizer **out, const char *dir);

int32_t lc_tokenizer_vocab_size(const lc_tokenizer *tok); // largest id + 1
int32_t lc_tokenizer_bos(const lc_tokenizer *tok);        // -1 if none
int32_t lc_tokenizer_eos(const lc_tokenizer *tok);        // -1 if none
bool lc_tokenizer_adds_bos(const lc_tokenizer *tok);      // post-processor / add_bos_token

// Token text as stored in the vocabulary (e.g. "▁the", "Ġthe", "<0x0A>"), or NULL.
const char *lc_tokenizer_piece(const lc_tokenizer *tok, int32_t id);
// Id of an exact piece or added token content, or -1.
int32_t lc_tokenizer_find(const lc_tokenizer *tok, const char *piece);

// Encodes text[0..len) the way HF tokenizers' encode(text, add_special_tokens)
// does: added tokens in the text are matched first; add_special adds BOS (and
// whatever else the post_processor adds) when the tokenizer adds it.
// *ids is a heap array the caller grows/reuses: pass *ids/*cap from a previous
// call (or NULL/0); on return *n_ids holds the count. Text that is not valid
// UTF-8 is an LC_STATUS_INPUT error. Safe to call from several threads at once.
lc_status lc_tokenizer_encode(const lc_tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *cap, size_t *n_ids);

// Decodes ids to text as HF decode(ids, skip_special_tokens) does (ids with
// no token are skipped, as HF does). *out is a heap NUL-terminated string the
// caller frees.
lc_status lc_tokenizer_decode(const lc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                              char **out, size_t *out_len);

// Where each token of ids = encode(text, add_special=false) begins in text:
// offsets[j] is the byte offset of the first byte of text that token j
// stands for. A token that stands for no byte of text (the dummy-prefix "▁"
// a SentencePiece normalizer inserts, alone) gets the offset of the next
// token's first byte (len at the end). An added token begins where its own
// text does: whitespace its lstrip took before it lies between tokens, what
// its rstrip took after it is its own. Fails (LC_STATUS_INPUT) when the
// tokens' bytes cannot be aligned with text (a normalizer rewrote it, the ids
// are not this text's, or an unknown-token id stands for unknown characters).
lc_status lc_tokenizer_offsets(const lc_tokenizer *tok, const char *text, size_t len, const int32_t *ids, size_t n,
                               size_t *offsets /*[n]*/);

// Streaming decode for generation: push one id at a time and receive the bytes
// that are now final. Incomplete UTF-8 (byte-fallback or byte-level pieces
// split across tokens) is held back until complete; the leading-space strip
// of SentencePiece decoders applies only to the first token of the stream.
typedef struct lc_detokenizer {
    const lc_tokenizer *tok;
    bool skip_special;
    size_t n_pushed; // tokens that produced text so far (the first gets the strip)
    unsigned char pending[16]; // bytes of an unfinished UTF-8 sequence
    size_t n_pending;
} lc_detokenizer;

void lc_detokenizer_init(lc_detokenizer *d, const lc_tokenizer *tok, bool skip_special);
// The most bytes one push or flush can write with this vocabulary (planned at
// load from its longest token: OLMo's 512 spaces after a held partial UTF-8
// character are 515): size the output buffer once with it.
size_t lc_tokenizer_stream_max_bytes(const lc_tokenizer *tok);
// Writes up to cap bytes to out (lc_tokenizer_stream_max_bytes is always
// enough; a smaller cap may fail) and sets *n_out.
lc_status lc_detokenizer_push(lc_detokenizer *d, int32_t id, char *out, size_t cap, size_t *n_out);
// Flushes whatever is held (invalid trailing bytes become U+FFFD as HF does).
lc_status lc_detokenizer_flush(lc_detokenizer *d, char *out, size_t cap, size_t *n_out);

// Vocabulary details for exporters (GGUF), read-only (data/tokenizer_vocab.c).

typedef enum lc_tokenizer_style {
    LC_TOKENIZER_SENTENCEPIECE, // Metaspace / Prepend+Replace, byte fallback: llama.cpp's "llama" (SPM)
    LC_TOKENIZER_BYTE_LEVEL,    // ByteLevel pre-tokenizer or decoder: llama.cpp's "gpt2" (BPE)
} lc_tokenizer_style;

typedef enum lc_token_kind {
    LC_TOKEN_NONE,    // no token has this id
    LC_TOKEN_NORMAL,  // an ordinary vocabulary piece
    LC_TOKEN_UNKNOWN, // the model's unk_token
    LC_TOKEN_CONTROL, // an added token marked special
    LC_TOKEN_ADDED,   // an added token not marked special
    LC_TOKEN_BYTE,    // a byte-fallback piece <0xNN>
} lc_token_kind;

typedef struct lc_tokenizer_merge {
    int32_t left, right, result; // vocabulary ids
    int32_t rank;                // position in tokenizer.json's merges (lower merges first)
} lc_tokenizer_merge;

lc_tokenizer_style lc_tokenizer_get_style(const lc_tokenizer *tok);
int32_t lc_tokenizer_unk(const lc_tokenizer *tok);   // -1 if none
bool lc_tokenizer_adds_eos(const lc_tokenizer *tok); // the post-processor appends EOS
lc_token_kind lc_tokenizer_token_kind(const lc_tokenizer *tok, int32_t id);
// Token text as decoding sees it (added-token content, else the vocabulary
// piece) and its length in bytes; NULL when no token has the id.
const char *lc_tokenizer_token_text(const lc_tokenizer *tok, int32_t id, size_t *len);
// The BPE merges sorted by rank into a heap array (*out, caller frees; NULL when none).
lc_status lc_tokenizer_merges(const lc_tokenizer *tok, lc_tokenizer_merge **out, size_t *n);

#endif
