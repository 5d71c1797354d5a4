// The vocabulary of a GGUF file (tokenizer.ggml.*) as the tokenizer.json and
// tokenizer_config.json that would give the same tokenization, so one
// tokenizer implementation serves both kinds of base model:
// - "llama" (SentencePiece): pieces with scores and no merges. llama.cpp
//   merges the adjacent pair whose concatenation scores highest; the merges
//   of every piece from two shorter pieces, ordered by the piece's score (ties
//   by the halves' ids), do the same in BPE form, as transformers derives a
//   fast tokenizer from a SentencePiece model.
// - "gpt2" (byte-level BPE): pieces and merges as stored; the pre-tokenizer
//   regex from its name (tokenizer.ggml.pre).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model/gguf_model.h"

// llama.cpp's token types.
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Bloom's Split (with ByteLevel use_regex false): " ?[^(\s|[.,!?…。，、।۔،])]+".
static const char BLOOM_REGEX[] = " ?[^(\\s|[.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C])]+";

const char *lc_gguf_pre_regex(const char *pre) {
    static const struct {
        const char *name, *regex;
    } t[] = {
        {"gpt-2", GPT2_REGEX},      {"default", GPT2_REGEX},     {"olmo", GPT2_REGEX},  {"llama-bpe", LLAMA3_REGEX},
        {"llama3", LLAMA3_REGEX},   {"smaug-bpe", LLAMA3_REGEX}, {"qwen2", QWEN2_REGEX}, {"bloom", BLOOM_REGEX},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].name, pre)) return t[i].regex;
    return NULL;
}

// ---- piece → id lookup (open addressing over the GGUF strings)

typedef struct piece_map {
    const lc_gguf_str *strs;
    int32_t *slot; // id + 1, 0 empty
    size_t cap;
} piece_map;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static bool map_init(piece_map *m, const lc_gguf_str *strs, size_t n) {
    m->strs = strs;
    m->cap = 16;
    while (m->cap < 2 * n) m->cap *= 2;
    if (!(m->slot = calloc(m->cap, sizeof *m->slot))) return false;
    for (size_t id = 0; id < n; id++) {
        size_t i = hash_bytes(strs[id].s, strs[id].len) & (m->cap - 1);
        while (m->slot[i]) {
            const lc_gguf_str *o = &strs[m->slot[i] - 1];
            if (o->len == strs[id].len && !memcmp(o->s, strs[id].s, o->len)) break; // first id wins
            i = (i + 1) & (m->cap - 1);
        }
        if (!m->slot[i]) m->slot[i] = (int32_t)id + 1;
    }
    return true;
}

static int32_t map_get(const piece_map *m, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & (m->cap - 1);
    while (m->slot[i]) {
        const lc_gguf_str *o = &m->strs[m->slot[i] - 1];
        if (o->len == n && !memcmp(o->s, s, n)) return m->slot[i] - 1;
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

typedef struct spm_merge {
    float score;
    int32_t left, right, result;
} spm_merge;

static int cmp_merge(const void *pa, const void *pb) {
    const spm_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->result != b->result) return a->result < b->result ? -1 : 1;
    if (a->left != b->left) return a->left < b->left ? -1 : 1;
    return (a->right > b->right) - (a->right < b->right);
}

static cJSON *str_json(const lc_gguf_str *s) {
    char *c = malloc(s->len + 1);
    if (!c) return NULL;
    memcpy(c, s->s, s->len);
    c[s->len] = '\0';
    cJSON *j = cJSON_CreateString(c);
    free(c);
    return j;
}

// Longest piece the tokenizer accepts (data/'s TOK_MAX_PIECE), and the most
// bytes hashed deriving merges: every cut of every piece hashes both halves,
// so a hostile file of long pieces must not cost hours (a 256k-piece real
// vocabulary hashes about 10^7 bytes).
#define GGUF_MAX_PIECE 4096
#define GGUF_MERGE_WORK ((uint64_t)1 << 30)

// Merges of a SentencePiece vocabulary (see the top of the file) as [a, b] pairs.
static lc_status spm_merges(const lc_gguf_file *f, const lc_gguf_kv *tokens, const lc_gguf_kv *scores,
                            const lc_gguf_kv *types, cJSON *out) {
    size_t n = (size_t)tokens->n;
    piece_map map;
    if (!map_init(&map, tokens->strs, n)) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
    spm_merge *m = NULL;
    size_t nm = 0, cap = 0;
    uint64_t work = 0;
    lc_status st = LC_STATUS_OK;
    for (size_t id = 0; id < n && !st; id++) {
        int64_t type = TT_NORMAL;
        if (types) lc_gguf_kv_int(types, id, &type);
        if (type != TT_NORMAL) continue;
        double score = 0;
        lc_gguf_kv_float(scores, id, &score);
        const lc_gguf_str *p = &tokens->strs[id];
        work += (uint64_t)p->len * p->len;
        if (work > GGUF_MERGE_WORK) {
            st = lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.tokens: the pieces are too long to derive merges from",
                          f->path);
            break;
        }
        for (size_t cut = 1; cut < p->len; cut++) {
            if (((unsigned char)p->s[cut] & 0xC0) == 0x80) continue; // split between characters only
            int32_t l = map_get(&map, p->s, cut), r = map_get(&map, p->s + cut, p->len - cut);
            if (l < 0 || r < 0) continue;
            if (nm == cap) {
                cap = cap ? 2 * cap : 1024;
                spm_merge *g = realloc(m, cap * sizeof *m);
                if (!g) {
                    st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
                    break;
                }
                m = g;
            }
            m[nm++] = (spm_merge){(float)score, l, r, (int32_t)id};
        }
    }
    if (!st && nm) qsort(m, nm, sizeof *m, cmp_merge);
    for (size_t i = 0; i < nm && !st; i++) {
        cJSON *pair = cJSON_CreateArray();
        if (!pair || !cJSON_AddItemToArray(out, pair) || !cJSON_AddItemToArray(pair, str_json(&tokens->strs[m[i].left])) ||
            !cJSON_AddItemToArray(pair, str_json(&tokens->strs[m[i].right])))
            st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
    }
    free(m);
    free(map.slot);
    return st;
}

// tokenizer.ggml.unknown_token_id, else the first piece typed unknown, else -1.
static int64_t unknown_id(const lc_gguf_file *f, const lc_gguf_kv *types, size_t n) {
    int64_t unk = -1, type;
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.unknown_token_id"), 0, &unk);
    for (size_t id = 0; unk < 0 && types && id < n; id++)
        if (lc_gguf_kv_int(types, id, &type) && type == TT_UNKNOWN) unk = (int64_t)id;
    return unk;
}

static bool add_id(cJSON *o, const char *key, int64_t id) {
    return cJSON_AddNumberToObject(o, key, (double)id) != NULL;
}

static bool kv_bool(const lc_gguf_file *f, const char *key, bool def) {
    int64_t v;
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    return kv && kv->type == LC_GGUF_BOOL && lc_gguf_kv_int(kv, 0, &v) ? v != 0 : def;
}

static cJSON *obj_type(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "type", type)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

// {"type": "Replace", "pattern": {"String": from}, "content": to}
static cJSON *replace(const char *from, const char *to) {
    cJSON *o = obj_type("Replace"), *p = cJSON_CreateObject();
    if (!o || !p || !cJSON_AddStringToObject(p, "String", from) || !cJSON_AddItemToObject(o, "pattern", p) ||
        !cJSON_AddStringToObject(o, "content", to)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

// tokenizer_config.json's part: special tokens (their ids as such: a
// piece's text may repeat), whether BOS/EOS are added, the chat template.
static lc_status add_config(const lc_gguf_file *f, const lc_gguf_kv *tokens, size_t n, bool spm, int64_t unk,
                            cJSON *cfg) {
    int64_t bos = -1, eos = -1;
    lc_gguf_str s;
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.bos_token_id"), 0, &bos);
    lc_gguf_kv_int(lc_gguf_find_kv(f, "tokenizer.ggml.eos_token_id"), 0, &eos);
    if ((bos >= 0 && (size_t)bos >= n) || (eos >= 0 && (size_t)eos >= n) || (unk >= 0 && (size_t)unk >= n))
        return lc_error(LC_STATUS_INPUT, "%s: a special token id (BOS %lld, EOS %lld, unknown %lld) is beyond the %zu "
                        "pieces", f->path, (long long)bos, (long long)eos, (long long)unk, n);
    bool ok = true;
    if (bos >= 0)
        ok = cJSON_AddItemToObject(cfg, "bos_token", str_json(&tokens->strs[bos])) && add_id(cfg, "bos_token_id", bos);
    if (ok && eos >= 0)
        ok = cJSON_AddItemToObject(cfg, "eos_token", str_json(&tokens->strs[eos])) && add_id(cfg, "eos_token_id", eos);
    // llama.cpp adds BOS by default for SentencePiece vocabularies, not for byte-level ones.
    if (ok) ok = cJSON_AddBoolToObject(cfg, "add_bos_token", kv_bool(f, "tokenizer.ggml.add_bos_token", spm));
    if (ok) ok = cJSON_AddBoolToObject(cfg, "add_eos_token", kv_bool(f, "tokenizer.ggml.add_eos_token", false));
    if (ok && lc_gguf_kv_str(lc_gguf_find_kv(f, "tokenizer.chat_template"), 0, &s))
        ok = cJSON_AddItemToObject(cfg, "chat_template", str_json(&s));
    return ok ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
}

lc_status lc_gguf_tokenizer_json(const lc_gguf_file *f, cJSON **tokenizer, cJSON **config) {
    if (tokenizer) *tokenizer = NULL;
    *config = NULL;
    const lc_gguf_kv *model = lc_gguf_find_kv(f, "tokenizer.ggml.model");
    const lc_gguf_kv *tokens = lc_gguf_find_kv(f, "tokenizer.ggml.tokens");
    const lc_gguf_kv *scores = lc_gguf_find_kv(f, "tokenizer.ggml.scores");
    const lc_gguf_kv *types = lc_gguf_find_kv(f, "tokenizer.ggml.token_type");
    const lc_gguf_kv *merges = lc_gguf_find_kv(f, "tokenizer.ggml.merges");
    lc_gguf_str kind, s;
    if (!lc_gguf_kv_str(model, 0, &kind) || !tokens || tokens->type != LC_GGUF_ARRAY ||
        tokens->item_type != LC_GGUF_STRING || tokens->n == 0 || tokens->n > (1u << 22))
        return lc_error(LC_STATUS_INPUT, "%s: no vocabulary (tokenizer.ggml.model and .tokens)", f->path);
    bool spm = kind.len == 5 && !memcmp(kind.s, "llama", 5), bpe = kind.len == 4 && !memcmp(kind.s, "gpt2", 4);
    if (!spm && !bpe) {
        char shown[24];
        lc_gguf_str_print(shown, sizeof shown, kind);
        return lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.model \"%s\" is not supported (llama or gpt2)", f->path,
                        shown);
    }
    size_t n = (size_t)tokens->n;
    if (types && (types->type != LC_GGUF_ARRAY || types->n != n || types->item_type == LC_GGUF_STRING ||
                  types->item_type == LC_GGUF_F32 || types->item_type == LC_GGUF_F64 || types->item_type == LC_GGUF_BOOL))
        return lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.token_type must hold one integer per token", f->path);
    for (size_t i = 0; i < n; i++)
        if (tokens->strs[i].len > GGUF_MAX_PIECE)
            return lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.tokens: piece %zu is longer than %d bytes", f->path, i,
                            GGUF_MAX_PIECE);
    if (spm && (!scores || scores->type != LC_GGUF_ARRAY || scores->n != n || scores->item_type != LC_GGUF_F32))
        return lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.scores must hold one f32 per token", f->path);
    if (merges && (merges->type != LC_GGUF_ARRAY || merges->item_type != LC_GGUF_STRING))
        return lc_error(LC_STATUS_INPUT, "%s: tokenizer.ggml.merges must be a list of strings", f->path);
    const char *regex = NULL;
    char pre[64] = "default";
    if (lc_gguf_kv_str(lc_gguf_find_kv(f, "tokenizer.ggml.pre"), 0, &s)) lc_gguf_str_print(pre, sizeof pre, s);
    bool falcon_pre = !strcmp(pre, "falcon");
    if (bpe && !falcon_pre && !(regex = lc_gguf_pre_regex(pre)))
        return lc_error(LC_STATUS_INPUT, "%s: pre-tokenizer \"%s\" is not supported (gpt-2, llama-bpe, qwen2, ...)",
                        f->path, pre);

    lc_status st = LC_STATUS_OK;
    if (!tokenizer) { // the config alone (a chat template): no vocabulary or merges to build
        cJSON *c = cJSON_CreateObject();
        if (!c) return lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
        if ((st = add_config(f, tokens, n, spm, unknown_id(f, types, n), c))) {
            cJSON_Delete(c);
            return st;
        }
        *config = c;
        return LC_STATUS_OK;
    }
    cJSON *root = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    cJSON *m = obj_type("BPE"), *vocab = cJSON_CreateObject(), *ml = cJSON_CreateArray(), *added = cJSON_CreateArray();
    bool ok = root && cfg && m && vocab && ml && added && cJSON_AddItemToObject(root, "model", m) &&
              cJSON_AddItemToObject(m, "vocab", vocab) && cJSON_AddItemToObject(m, "merges", ml) &&
              cJSON_AddItemToObject(root, "added_tokens", added);
    if (!ok) {
        cJSON_Delete(m);
        cJSON_Delete(vocab);
        cJSON_Delete(ml);
        cJSON_Delete(added);
        goto oom;
    }
    int64_t unk = unknown_id(f, types, n);
    piece_map pieces; // a repeated piece keeps its first id (a hash, not cJSON's linear lookup)
    if (!map_init(&pieces, tokens->strs, n)) goto oom;
    for (size_t id = 0; id < n && ok; id++) {
        const lc_gguf_str *p = &tokens->strs[id];
        int64_t type = TT_NORMAL;
        if (types) lc_gguf_kv_int(types, id, &type);
        char *c = malloc(p->len + 1);
        if (!c) {
            free(pieces.slot);
            goto oom;
        }
        memcpy(c, p->s, p->len);
        c[p->len] = '\0';
        // A piece holding a NUL byte cannot be a JSON key the loader reads back.
        bool usable = strlen(c) == p->len;
        if (usable && map_get(&pieces, p->s, p->len) == (int32_t)id) ok = cJSON_AddNumberToObject(vocab, c, (double)id);
        if (ok && usable && (type == TT_CONTROL || type == TT_USER_DEFINED)) {
            cJSON *a = cJSON_CreateObject();
            ok = a && cJSON_AddItemToArray(added, a) && cJSON_AddNumberToObject(a, "id", (double)id) &&
                 cJSON_AddStringToObject(a, "content", c) &&
                 cJSON_AddBoolToObject(a, "special", type == TT_CONTROL) &&
                 cJSON_AddBoolToObject(a, "normalized", false);
        }
        free(c);
    }
    free(pieces.slot);
    if (!ok) goto oom;
    if (spm) {
        if ((st = spm_merges(f, tokens, scores, types, ml))) goto fail;
        bool space_prefix = kv_bool(f, "tokenizer.ggml.add_space_prefix", true);
        cJSON *norm = obj_type("Sequence"), *ns = cJSON_CreateArray();
        cJSON *dec = obj_type("Sequence"), *ds = cJSON_CreateArray();
        ok = norm && ns && dec && ds && cJSON_AddItemToObject(root, "normalizer", norm) &&
             cJSON_AddItemToObject(norm, "normalizers", ns) && cJSON_AddItemToObject(root, "decoder", dec) &&
             cJSON_AddItemToObject(dec, "decoders", ds);
        if (!ok) {
            cJSON_Delete(ns);
            cJSON_Delete(ds);
            goto oom;
        }
        if (space_prefix) {
            cJSON *pp = obj_type("Prepend");
            ok = pp && cJSON_AddItemToArray(ns, pp) && cJSON_AddStringToObject(pp, "prepend", "\xE2\x96\x81");
        }
        ok = ok && cJSON_AddItemToArray(ns, replace(" ", "\xE2\x96\x81")) &&
             cJSON_AddItemToArray(ds, replace("\xE2\x96\x81", " ")) && cJSON_AddItemToArray(ds, obj_type("ByteFallback")) &&
             cJSON_AddItemToArray(ds, obj_type("Fuse"));
        if (ok && space_prefix) {
            cJSON *strip = obj_type("Strip");
            ok = strip && cJSON_AddItemToArray(ds, strip) && cJSON_AddStringToObject(strip, "content", " ") &&
                 cJSON_AddNumberToObject(strip, "start", 1) && cJSON_AddNumberToObject(strip, "stop", 0);
        }
        ok = ok && cJSON_AddBoolToObject(m, "byte_fallback", true) && cJSON_AddBoolToObject(m, "fuse_unk", true);
    } else {
        for (uint64_t i = 0; merges && i < merges->n && ok; i++) ok = cJSON_AddItemToArray(ml, str_json(&merges->strs[i]));
        if (falcon_pre) {
            // Falcon's own: punctuation runs, GPT-2's regex, digit runs split
            // into threes (what its tokenizer.json holds).
            const char *text = "{\"type\": \"Sequence\", \"pretokenizers\": ["
                               "{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"},"
                               "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
                               "{\"type\": \"Digits\", \"individual_digits\": false},"
                               "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[0-9][0-9][0-9]\"}, "
                               "\"behavior\": \"Isolated\", \"invert\": false}]}";
            cJSON *pt = cJSON_Parse(text);
            ok = ok && pt && cJSON_AddItemToObject(root, "pre_tokenizer", pt) &&
                 cJSON_AddItemToObject(root, "decoder", obj_type("ByteLevel"));
            if (!ok) goto oom;
            goto specials;
        }
        cJSON *seq = obj_type("Sequence"), *ps = cJSON_CreateArray(), *split = obj_type("Split"), *pat = cJSON_CreateObject();
        cJSON *bl = obj_type("ByteLevel");
        ok = ok && seq && ps && split && pat && bl && cJSON_AddItemToObject(root, "pre_tokenizer", seq) &&
             cJSON_AddItemToObject(seq, "pretokenizers", ps) && cJSON_AddItemToArray(ps, split) &&
             cJSON_AddItemToObject(split, "pattern", pat) && cJSON_AddStringToObject(pat, "Regex", regex) &&
             cJSON_AddStringToObject(split, "behavior", "Isolated") && cJSON_AddBoolToObject(split, "invert", false) &&
             cJSON_AddItemToArray(ps, bl) && cJSON_AddBoolToObject(bl, "add_prefix_space", false) &&
             cJSON_AddBoolToObject(bl, "use_regex", false) && cJSON_AddItemToObject(root, "decoder", obj_type("ByteLevel"));
        if (!ok) goto oom;
    }
specials:
    if (ok && unk >= 0 && (size_t)unk < n) ok = cJSON_AddItemToObject(m, "unk_token", str_json(&tokens->strs[unk]));
    if (!ok) goto oom;
    if (!ok) goto oom;
    if ((st = add_config(f, tokens, n, spm, unk, cfg))) goto fail;
    *tokenizer = root;
    *config = cfg;
    return LC_STATUS_OK;
oom:
    st = lc_error(LC_STATUS_RUNTIME, "%s: out of memory", f->path);
fail:
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return st;
}
