// 64-bit fingerprints of bytes: files and data that must match between runs
// or processes (a base model's weights, a dataset, a config), not a defence
// against anyone crafting collisions.
#ifndef LC_HASH_H
#define LC_HASH_H

#include <stddef.h>
#include <stdint.h>

#define LC_HASH_INIT 0xcbf29ce484222325ull

// FNV-1a over n bytes, continuing from h.
uint64_t lc_hash_bytes(uint64_t h, const void *data, size_t n);
// The same job a 64-bit word at a time (gigabytes per second), for large
// buffers; the last n % 8 bytes go through lc_hash_bytes.
uint64_t lc_hash_words(uint64_t h, const void *data, size_t n);
// h as 16 lowercase hex digits.
void lc_hash_hex(uint64_t h, char out[17]);

#endif
