// Private to data/tokenizer_*.c: the loaded tokenizer and the helpers the
// load, encode and decode files share. Strings read from tokenizer.json live
// in one arena and are referred to by offset, so the arena may grow at load.
#ifndef LC_TOKENIZER_INTERNAL_H
#define LC_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "data/tokenizer.h"

#define TOK_MAX_ID 16000000        // sanity bound on any id read from a file
#define TOK_MAX_PIECE 4096         // longest vocabulary piece / added token accepted
#define TOK_MAX_TEMPLATE 8         // post-processor tokens before / after the text
#define TOK_MAX_STREAM ((size_t)1 << 20) // most bytes one streamed token may decode to
#define TOK_NONE UINT32_MAX

// Growable byte buffer; data stays NUL-terminated when non-NULL.
typedef struct tok_buf {
    char *data;
    size_t len, cap;
} tok_buf;

lc_status tok_buf_reserve(tok_buf *b, size_t extra);
lc_status tok_buf_append(tok_buf *b, const void *p, size_t n);
void tok_buf_free(tok_buf *b);

// String -> int32 map over strings stored in an external arena (by offset).
typedef struct tok_strent {
    uint32_t off, len;
    int32_t val;
} tok_strent;

typedef struct tok_strmap {
    tok_strent *ents;
    size_t n;
    uint32_t *slots; // entry index, or TOK_NONE
    size_t mask;
} tok_strmap;

lc_status tok_strmap_init(tok_strmap *m, size_t expected);
// Returns the index of an existing entry with the same key, or -1 after inserting.
long tok_strmap_insert(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *key, size_t len); // -1 if absent
void tok_strmap_free(tok_strmap *m);

// (left id, right id) -> (rank, merged id).
typedef struct tok_mergeent {
    uint64_t key; // (left << 32 | right) + 1; 0 = empty slot
    int32_t rank, new_id;
} tok_mergeent;

typedef struct tok_mergemap {
    tok_mergeent *slots;
    size_t mask;
} tok_mergemap;

lc_status tok_mergemap_init(tok_mergemap *m, size_t expected);
void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id);
const tok_mergeent *tok_mergemap_get(const tok_mergemap *m, int32_t a, int32_t b);
void tok_mergemap_free(tok_mergemap *m);

// UTF-8. tok_utf8_next returns the length of the valid character at s (and its
// code point), or 0 when s does not start a valid character: then *bad holds
// the length of the maximal invalid subpart (>= 1) as Rust's from_utf8_lossy
// counts it, and *truncated says the bytes were a valid prefix cut by n.
int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad, int *truncated);
size_t tok_utf8_put(uint32_t cp, char *out); // writes 1..4 bytes
// Appends `n` bytes to out replacing invalid sequences with U+FFFD as from_utf8_lossy does.
lc_status tok_utf8_lossy(tok_buf *out, const unsigned char *s, size_t n);
size_t tok_utf8_valid_prefix(const unsigned char *s, size_t n); // bytes of valid UTF-8 at the start

// Compiles a pattern with UTF and UCP (Unicode classes like \p{L}, \s as Unicode).
lc_status tok_regex_compile(pcre2_code **out, const char *pattern, size_t len, bool literal, const char *path);

// A match range list reused across calls.
typedef struct tok_ranges {
    size_t *v; // start0, end0, start1, end1, ...
    size_t n, cap;
} tok_ranges;

// Finds all non-overlapping non-empty matches of re in s[0..n) into r.
lc_status tok_regex_find_all(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, tok_ranges *r);

enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
};

enum tok_norm_kind { TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_LOWERCASE, TOK_NORM_NFC };

typedef struct tok_norm {
    enum tok_norm_kind kind;
    pcre2_code *re;      // REPLACE: pattern (literal or regex)
    uint32_t str, len;   // PREPEND text / REPLACE content (arena)
} tok_norm;

enum tok_pretok_kind {
    TOK_PRE_SPLIT,       // regex split with a behavior
    TOK_PRE_PREFIX,      // ByteLevel add_prefix_space: prepend ' ' unless present
    TOK_PRE_BYTEMAP,     // ByteLevel: bytes -> byte-level alphabet
    TOK_PRE_METASPACE,   // ' ' -> replacement, prepend by scheme
};

enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };

typedef struct tok_pretok {
    enum tok_pretok_kind kind;
    pcre2_code *re;
    enum tok_split_behavior behavior;
    bool invert;
    uint32_t str, len;          // METASPACE replacement (arena)
    enum tok_prepend prepend;
} tok_pretok;

enum tok_dec_kind { TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP, TOK_DEC_BYTELEVEL, TOK_DEC_METASPACE };

typedef struct tok_dec {
    enum tok_dec_kind kind;
    pcre2_code *re;             // REPLACE pattern
    uint32_t str, len;          // REPLACE content / METASPACE replacement / STRIP content (arena)
    uint32_t strip_char;        // STRIP content as a code point
    int64_t start, stop;        // STRIP counts
    bool drop_first;            // METASPACE: replacement chars of token 0 dropped
} tok_dec;

typedef struct tok_added {
    uint32_t off, len;          // content (arena)
    uint32_t moff, mlen;        // text matched: content, normalized when `normalized`
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

// Added tokens matched in one pass (raw or normalized text), leftmost-longest:
// indices into tok->added sorted by first byte, then longer first.
typedef struct tok_added_group {
    uint32_t *order;
    size_t n;
    uint32_t first[257]; // order[first[c]..first[c+1]) start with byte c
} tok_added_group;

struct lc_tokenizer {
    tok_buf arena;
    int32_t vocab_size;          // largest id + 1 over vocab and added tokens
    uint32_t *piece_off;         // [vocab_size] vocab piece, TOK_NONE for none
    uint32_t *piece_len;
    int32_t *added_of_id;        // [vocab_size] index into added, or -1
    tok_strmap vocab;            // piece -> id
    tok_mergemap merges;
    int32_t unk_id;              // -1 if none
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];       // id of <0xNN>, or -1
    uint32_t prefix_off, prefix_len; // continuing_subword_prefix (len 0: none)
    uint32_t suffix_off, suffix_len; // end_of_word_suffix

    tok_added *added;
    size_t n_added;
    tok_strmap added_map;        // content -> index into added
    tok_added_group raw_group, norm_group;

    tok_norm *norms;
    size_t n_norms;
    tok_pretok *pretoks;
    size_t n_pretoks;
    tok_dec *decs;
    size_t n_decs;
    bool has_decoder;

    int32_t tmpl_prefix[TOK_MAX_TEMPLATE], tmpl_suffix[TOK_MAX_TEMPLATE];
    int n_prefix, n_suffix;
    int32_t bos, eos;
    size_t stream_max;           // lc_tokenizer_stream_max_bytes, planned at load

    // ByteLevel alphabet: byte -> UTF-8 of its stand-in char, and back.
    char bl_enc[256][2];
    uint8_t bl_enc_len[256];
    int16_t bl_dec[324];         // code point -> byte, or -1
};

// Applies the normalizer steps to s[0..n) into out (tmp is scratch; both are reused buffers).
lc_status tok_normalize(const lc_tokenizer *tok, const char *s, size_t n, tok_buf *out, tok_buf *tmp,
                        pcre2_match_data *md, tok_ranges *r);
// Unicode White_Space, as Rust's char::is_whitespace and regex \s.
bool tok_is_space(uint32_t cp);

// Token text for decoding: added-token content first, then the vocab piece.
const char *tok_token_text(const lc_tokenizer *tok, int32_t id, size_t *len);
bool tok_is_special(const lc_tokenizer *tok, int32_t id);
// A byte-fallback piece "<0xNN>" -> NN, or -1 for any other piece.
int tok_byte_piece(const char *s, size_t n);
// Appends the bytes a byte-level piece stands for to out; a piece with a char
// outside the alphabet stands for its own bytes, as HF's decoder keeps them.
lc_status tok_byte_level_bytes(const lc_tokenizer *tok, const char *s, size_t n, tok_buf *out);

#endif
