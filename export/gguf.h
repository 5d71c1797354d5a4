// GGUF writer: streaming (metadata and tensor infos first, then each
// tensor's data in order, under a temporary name renamed into place when
// complete). lc_export_gguf (export/export.h) is built on it. The reader and
// the format's layout are in model/gguf.h.
#ifndef LC_GGUF_H
#define LC_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/file.h"
#include "common/status.h"
#include "data/tokenizer.h"
#include "model/gguf.h"

// ---- writer ----

typedef struct lc_gguf_writer lc_gguf_writer;

// A writer for path (the file is written to path.tmp and renamed by finish).
lc_status lc_gguf_writer_new(lc_gguf_writer **out, const char *path);
// Frees the writer; if it was not finished, the temporary file is removed.
void lc_gguf_writer_free(lc_gguf_writer *w);

// Metadata, in the order added. A repeated key is an error. Setting
// general.alignment (u32, a power of two) changes the data alignment.
lc_status lc_gguf_set_u32(lc_gguf_writer *w, const char *key, uint32_t v);
lc_status lc_gguf_set_i32(lc_gguf_writer *w, const char *key, int32_t v);
lc_status lc_gguf_set_f32(lc_gguf_writer *w, const char *key, float v);
lc_status lc_gguf_set_bool(lc_gguf_writer *w, const char *key, bool v);
lc_status lc_gguf_set_str(lc_gguf_writer *w, const char *key, const char *s);
// lens may be NULL (strlen of each string).
lc_status lc_gguf_set_arr_str(lc_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              size_t n);
lc_status lc_gguf_set_arr_f32(lc_gguf_writer *w, const char *key, const float *v, size_t n);
lc_status lc_gguf_set_arr_i32(lc_gguf_writer *w, const char *key, const int32_t *v, size_t n);

// Copies a metadata entry as read from another file (any type, arrays too).
lc_status lc_gguf_copy_kv(lc_gguf_writer *w, const lc_gguf_kv *kv);

// Declares the next tensor: ggml type (one lora.c holds: F32, F16, BF16 or a
// quantization, rows a multiple of its block) and its row-major
// shape (shape[0] slowest), which the file stores reversed as ne.
lc_status lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *shape);
// Writes the header (all metadata and tensor infos); no metadata or tensor may be added after it.
lc_status lc_gguf_write_header(lc_gguf_writer *w);
// Data of the next declared tensor, exactly its size in bytes (little-endian).
lc_status lc_gguf_write_tensor_data(lc_gguf_writer *w, const void *data, size_t nbytes);
// The next tensor's data in parts, in order (a stacked tensor one slice at a
// time); the tensor is done when its declared bytes are in.
lc_status lc_gguf_write_tensor_part(lc_gguf_writer *w, const void *data, size_t nbytes);
// Checks that every tensor was written, flushes, fsyncs and renames into place.
lc_status lc_gguf_writer_finish(lc_gguf_writer *w);

// The tokenizer as llama.cpp's convert_hf_to_gguf.py writes it:
// tokenizer.ggml.model ("llama" for SentencePiece-style BPE, "gpt2" for
// byte-level BPE), .pre (byte-level: named from the pre-tokenizer of
// tokenizer_json, which may be NULL: gpt-2, llama-bpe, qwen2, falcon, bloom,
// else "default"), .tokens, .scores (SPM: minus the rank of the first merge
// producing the piece, pieces no merge produces after them in id order,
// special and byte tokens 0), .token_type, .merges (gpt2 only),
// BOS/EOS/unknown/padding ids, add_bos/add_eos, and add_space_prefix false
// for a SentencePiece vocabulary whose normalizer or Metaspace prepends no
// "▁" (Gemma's). n_vocab is the model's vocabulary (ids beyond the
// tokenizer's become [PAD<id>], unused). bos/eos/pad: ids to write when the
// tokenizer has none (-1: none).
lc_status lc_gguf_add_vocab(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json,
                            int32_t n_vocab, int32_t bos, int32_t eos, int32_t pad);
// The same with bos/eos/pad taking precedence over the tokenizer's own ids,
// and arch (the GGUF architecture or NULL) naming the pre-tokenizer where two
// names share one regex (OLMo's GPT-NeoX tokenizer is "olmo", else "gpt-2").
lc_status lc_gguf_add_vocab_ids(lc_gguf_writer *w, const lc_tokenizer *tok, const char *tokenizer_json,
                                int32_t n_vocab, int32_t bos, int32_t eos, int32_t pad, const char *arch);

#endif
