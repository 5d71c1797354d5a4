// Chat templates: where a model keeps its template, the variables
// transformers renders it with, and the assistant spans of a rendering.
#include "data/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/json.h"
#include "data/jinja.h"
#include "data/tokenizer_internal.h"

#define MAX_TEMPLATE_BYTES (4u << 20)

struct lc_chat {
    lc_jinja_template *t;
    cJSON *vars; // special tokens and other fixed variables
    char source[4200];
};

lc_status lc_chat_from_text(lc_chat **out, const char *text, size_t len, const char *name) {
    *out = NULL;
    lc_chat *c = calloc(1, sizeof *c);
    if (!c) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    snprintf(c->source, sizeof c->source, "%s", name);
    c->vars = cJSON_CreateObject();
    lc_status st = c->vars ? lc_jinja_parse(&c->t, text, len, name) : lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (st) {
        lc_chat_free(c);
        return st;
    }
    *out = c;
    return LC_STATUS_OK;
}

lc_status lc_chat_from_file(lc_chat **out, const char *path) {
    char *text;
    size_t len;
    lc_status st = lc_file_read(path, MAX_TEMPLATE_BYTES, &text, &len);
    if (st) return st;
    st = lc_chat_from_text(out, text, len, path);
    free(text);
    return st;
}

void lc_chat_free(lc_chat *c) {
    if (!c) return;
    lc_jinja_free(c->t);
    cJSON_Delete(c->vars);
    free(c);
}

const char *lc_chat_source(const lc_chat *c) { return c->source; }

lc_status lc_chat_set_var(lc_chat *c, const char *name, const cJSON *value) {
    cJSON *v = cJSON_Duplicate(value, true);
    if (!v) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(c->vars, name);
    cJSON_AddItemToObject(c->vars, name, v);
    return LC_STATUS_OK;
}

// A special token as tokenizer_config.json writes it: a string, or an
// AddedToken object {"content": ...}; NULL otherwise.
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static lc_status add_special_tokens(lc_chat *c, const cJSON *cfg) {
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *t = token_text(cJSON_GetObjectItemCaseSensitive(cfg, keys[k]));
        if (!t) continue; // transformers leaves an unset token out of the variables
        cJSON *s = cJSON_CreateString(t);
        lc_status st = s ? lc_chat_set_var(c, keys[k], s) : lc_error(LC_STATUS_RUNTIME, "out of memory");
        cJSON_Delete(s);
        if (st) return st;
    }
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
    if (cJSON_IsArray(extra)) {
        cJSON *list = cJSON_CreateArray();
        if (!list) return lc_error(LC_STATUS_RUNTIME, "out of memory");
        const cJSON *e;
        cJSON_ArrayForEach(e, extra) {
            const char *t = token_text(e);
            if (t) cJSON_AddItemToArray(list, cJSON_CreateString(t));
        }
        lc_status st = lc_chat_set_var(c, "additional_special_tokens", list);
        cJSON_Delete(list);
        if (st) return st;
    }
    return LC_STATUS_OK;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// The template: override_path, else cfg's chat_template (cfg_path names
// cfg), else the file jinja_path (may be NULL); none of them: *out stays NULL.
static lc_status load_from(lc_chat **out, const cJSON *cfg, const char *cfg_path, const char *jinja_path,
                           const char *override_path) {
    *out = NULL;
    lc_status st = LC_STATUS_OK;
    char *text = NULL;
    size_t len = 0;
    char name[4200];
    if (override_path) {
        st = lc_file_read(override_path, MAX_TEMPLATE_BYTES, &text, &len);
        snprintf(name, sizeof name, "%s", override_path);
    } else {
        const cJSON *ct = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "chat_template") : NULL;
        if (cJSON_IsArray(ct)) { // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            const cJSON *e, *found = NULL;
            cJSON_ArrayForEach(e, ct) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
                if (cJSON_IsString(n) && strcmp(n->valuestring, "default") == 0) found = cJSON_GetObjectItemCaseSensitive(e, "template");
            }
            if (!cJSON_IsString(found))
                return lc_error(LC_STATUS_INPUT, "%s: chat_template lists no template named \"default\"", cfg_path);
            ct = found;
        }
        if (ct && !cJSON_IsNull(ct) && !cJSON_IsString(ct))
            return lc_error(LC_STATUS_INPUT, "%s: chat_template must be a string or a list of named templates", cfg_path);
        if (cJSON_IsString(ct)) {
            len = strlen(ct->valuestring);
            text = malloc(len + 1);
            if (!text) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
            else memcpy(text, ct->valuestring, len + 1);
            snprintf(name, sizeof name, "%s", cfg_path);
        } else if (jinja_path && file_exists(jinja_path)) {
            st = lc_file_read(jinja_path, MAX_TEMPLATE_BYTES, &text, &len);
            snprintf(name, sizeof name, "%s", jinja_path);
        } else {
            return LC_STATUS_OK; // no template
        }
    }
    lc_chat *c = NULL;
    if (!st) st = lc_chat_from_text(&c, text, len, name);
    free(text);
    if (!st && cfg) st = add_special_tokens(c, cfg);
    if (st) {
        lc_chat_free(c);
        return st;
    }
    *out = c;
    return LC_STATUS_OK;
}

lc_status lc_chat_load(lc_chat **out, const char *model_dir, const char *override_path) {
    *out = NULL;
    char cfg_path[4200], jinja_path[4200];
    lc_status st;
    if ((st = lc_path_join(cfg_path, sizeof cfg_path, model_dir, "tokenizer_config.json"))) return st;
    if ((st = lc_path_join(jinja_path, sizeof jinja_path, model_dir, "chat_template.jinja"))) return st;
    cJSON *cfg = NULL;
    if (file_exists(cfg_path) && (st = lc_json_load_file(cfg_path, 64u << 20, &cfg))) return st;
    st = load_from(out, cfg, cfg_path, jinja_path, override_path);
    cJSON_Delete(cfg);
    return st;
}

lc_status lc_chat_from_config(lc_chat **out, const cJSON *config, const char *name, const char *override_path) {
    return load_from(out, config, name, NULL, override_path);
}

lc_status lc_chat_check_messages(const cJSON *messages, const char *what) {
    if (!cJSON_IsArray(messages)) return lc_error(LC_STATUS_INPUT, "%s: \"messages\" must be a list", what);
    if (!messages->child) return lc_error(LC_STATUS_INPUT, "%s: \"messages\" is empty", what);
    int i = 0;
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) return lc_error(LC_STATUS_INPUT, "%s: message %d is not an object", what, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role)) return lc_error(LC_STATUS_INPUT, "%s: message %d has no string \"role\"", what, i);
        if (!content) return lc_error(LC_STATUS_INPUT, "%s: message %d (%.20s) has no \"content\"", what, i, role->valuestring);
        if (!cJSON_IsString(content))
            return lc_error(LC_STATUS_INPUT, "%s: message %d (%.20s): \"content\" must be a string", what, i,
                            role->valuestring);
        size_t n = strlen(content->valuestring), rn = strlen(role->valuestring);
        if (tok_utf8_valid_prefix((const unsigned char *)role->valuestring, rn) < rn ||
            tok_utf8_valid_prefix((const unsigned char *)content->valuestring, n) < n)
            return lc_error(LC_STATUS_INPUT, "%s: message %d: text that is not valid UTF-8", what, i);
    }
    return LC_STATUS_OK;
}

lc_status lc_chat_render(const lc_chat *c, const cJSON *messages, int n, bool add_generation_prompt, char **out,
                         size_t *len) {
    cJSON *vars = cJSON_Duplicate(c->vars, true);
    cJSON *list = cJSON_CreateArray();
    if (!vars || !list) {
        cJSON_Delete(vars);
        cJSON_Delete(list);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    int i = 0;
    for (const cJSON *m = messages->child; m && (n < 0 || i < n); m = m->next, i++)
        cJSON_AddItemToArray(list, cJSON_Duplicate(m, true));
    cJSON_AddItemToObject(vars, "messages", list);
    if (!cJSON_GetObjectItemCaseSensitive(vars, "tools")) cJSON_AddNullToObject(vars, "tools");
    if (!cJSON_GetObjectItemCaseSensitive(vars, "documents")) cJSON_AddNullToObject(vars, "documents");
    cJSON_DeleteItemFromObjectCaseSensitive(vars, "add_generation_prompt");
    cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt);
    lc_status st = lc_jinja_render(c->t, vars, out, len);
    cJSON_Delete(vars);
    return st;
}

static size_t common_prefix(const char *a, size_t na, const char *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t k) {
    if (k == 0 || k > n) return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

// Where message i's content begins in the full rendering, found by rendering
// the conversation with that content replaced by a marker: -1 when the
// template does not show the marker once, or shows it after text that differs
// from the full rendering (it rewrote something before it).
static lc_status content_start(const lc_chat *c, const cJSON *messages, int i, const char *full, size_t full_len,
                               long *at) {
    *at = -1;
    char marker[32];
    for (int k = 0;; k++) { // a marker the conversation does not hold
        snprintf(marker, sizeof marker, "LcSpanMark%dQz", k);
        if (!find_bytes(full, full_len, marker, strlen(marker))) break;
    }
    cJSON *copy = cJSON_Duplicate(messages, true);
    if (!copy) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    cJSON *m = cJSON_GetArrayItem(copy, i);
    cJSON_ReplaceItemInObjectCaseSensitive(m, "content", cJSON_CreateString(marker));
    char *r = NULL;
    size_t rn = 0;
    lc_status st = lc_chat_render(c, copy, -1, false, &r, &rn);
    cJSON_Delete(copy);
    if (st) { // the template refused the marker (it inspects the content): no help from it
        return LC_STATUS_OK;
    }
    size_t k = strlen(marker);
    const char *hit = find_bytes(r, rn, marker, k);
    if (hit && !find_bytes(hit + k, rn - (size_t)(hit - r) - k, marker, k)) {
        size_t h = (size_t)(hit - r);
        if (h <= full_len && memcmp(r, full, h) == 0) *at = (long)h;
    }
    free(r);
    return LC_STATUS_OK;
}

// Token starts of text (offsets of its encoding, and len): where a span may end.
typedef struct boundaries {
    int32_t *ids;
    size_t *off; // [n] token starts
    size_t n, cap;
} boundaries;

static lc_status boundaries_of(const lc_tokenizer *tok, const char *text, size_t len, boundaries *b) {
    lc_status st = lc_tokenizer_encode(tok, text, len, false, &b->ids, &b->cap, &b->n);
    if (st) return st;
    size_t *off = realloc(b->off, (b->n ? b->n : 1) * sizeof *off);
    if (!off) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    b->off = off;
    return lc_tokenizer_offsets(tok, text, len, b->ids, b->n, b->off);
}

static bool is_boundary(const boundaries *b, size_t len, size_t pos) {
    if (pos == len) return true;
    size_t lo = 0, hi = b->n; // offsets are non-decreasing
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->off[mid] < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo < b->n && b->off[lo] == pos;
}

static void boundaries_free(boundaries *b) {
    free(b->ids);
    free(b->off);
    memset(b, 0, sizeof *b);
}

// The spans, and with tok the whole rendering's tokens (*fb, caller frees).
static lc_status find_spans(const lc_chat *c, const lc_tokenizer *tok, const cJSON *messages, char **full,
                            size_t *full_len, lc_chat_span **spans, int *n_spans, boundaries *fb) {
    *full = NULL;
    *spans = NULL;
    *n_spans = 0;
    int n = cJSON_GetArraySize(messages);
    lc_status st = lc_chat_render(c, messages, -1, false, full, full_len);
    if (st) return st;
    lc_chat_span *sp = calloc((size_t)n + 1, sizeof *sp);
    if (!sp) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    if (!st && tok) st = boundaries_of(tok, *full, *full_len, fb);
    boundaries qb = {0};
    int k = 0, i = 0;
    size_t prev_end = 0;
    for (const cJSON *m = messages->child; m && !st; m = m->next, i++) {
        const char *role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
        if (strcmp(role, "assistant") != 0) continue;
        char *pre = NULL, *upto = NULL;
        size_t npre = 0, nupto = 0;
        if ((st = lc_chat_render(c, messages, i, true, &pre, &npre)) ||
            (st = lc_chat_render(c, messages, i + 1, false, &upto, &nupto))) {
            free(pre);
            break;
        }
        // The span begins where the messages before it with the generation
        // prompt end. A template that rewrites earlier turns makes that no
        // prefix of the whole: then the content is looked for in the rendering.
        size_t agree = common_prefix(pre, npre, *full, *full_len), begin = npre;
        if (agree < npre) {
            long at = -1;
            if ((st = content_start(c, messages, i, *full, *full_len, &at))) {
                free(pre);
                free(upto);
                break;
            }
            if (at < 0) {
                st = lc_error(LC_STATUS_INPUT, "the chat template renders assistant message %d so that its text "
                              "cannot be told from the prompt's (the rendering up to it with the generation prompt is "
                              "not a prefix of the whole conversation's, and its content is not found in it)", i);
                free(pre);
                free(upto);
                break;
            }
            begin = agree > (size_t)at ? agree : (size_t)at; // a generation prompt that reaches into the content keeps that part out
        }
        // It ends where the rendering that ends with it stops agreeing with the
        // whole. Text the template writes after a last message can start like
        // the next turn's header ("<|" of "<|endoftext|>" and "<|user|>"):
        // with a tokenizer the end moves back to a token start of both renderings.
        size_t end = common_prefix(upto, nupto, *full, *full_len);
        if (tok && end < *full_len && end > begin) {
            if ((st = boundaries_of(tok, upto, nupto, &qb))) {
                free(pre);
                free(upto);
                break;
            }
            while (end > begin && !(is_boundary(fb, *full_len, end) && is_boundary(&qb, nupto, end))) end--;
        }
        free(pre);
        free(upto);
        if (begin < prev_end) {
            st = lc_error(LC_STATUS_INPUT, "the chat template's rendering of assistant message %d overlaps the one "
                          "before it", i);
            break;
        }
        if (end < begin) {
            // the renderings disagree before the reply starts: a template whose
            // header depends on the whole conversation (a turn count, tools before the last message)
            st = lc_error(LC_STATUS_INPUT, "the chat template renders the conversation up to assistant message %d "
                          "differently from the whole conversation, so that message's span cannot be found", i);
            break;
        }
        if (end > begin) {
            sp[k].begin = begin;
            sp[k].end = end;
            prev_end = end;
            k++;
        }
    }
    boundaries_free(&qb);
    if (st) {
        free(sp);
        free(*full);
        *full = NULL;
        boundaries_free(fb);
        return st;
    }
    *spans = sp;
    *n_spans = k;
    return LC_STATUS_OK;
}

lc_status lc_chat_assistant_spans(const lc_chat *c, const lc_tokenizer *tok, const cJSON *messages, char **full,
                                  size_t *full_len, lc_chat_span **spans, int *n_spans) {
    boundaries fb = {0};
    lc_status st = find_spans(c, tok, messages, full, full_len, spans, n_spans, &fb);
    boundaries_free(&fb);
    return st;
}

lc_status lc_chat_tokenize(const lc_chat *c, const lc_tokenizer *tok, const cJSON *messages, int32_t **ids,
                           uint8_t **mask, size_t *n) {
    *ids = NULL;
    *mask = NULL;
    *n = 0;
    char *full;
    size_t full_len;
    lc_chat_span *spans;
    int n_spans;
    boundaries fb = {0};
    lc_status st = find_spans(c, tok, messages, &full, &full_len, &spans, &n_spans, &fb);
    if (st) return st;
    uint8_t *mk = calloc(fb.n ? fb.n : 1, 1);
    if (!mk) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    // A token is in the loss when its first byte lies in an assistant span.
    for (size_t j = 0, s = 0; mk && j < fb.n; j++) {
        while (s < (size_t)n_spans && spans[s].end <= fb.off[j]) s++;
        mk[j] = s < (size_t)n_spans && fb.off[j] >= spans[s].begin;
    }
    free(full);
    free(spans);
    if (st) {
        boundaries_free(&fb);
        return st;
    }
    *ids = fb.ids;
    *mask = mk;
    *n = fb.n;
    free(fb.off);
    return LC_STATUS_OK;
}

int lc_chat_end_of_turn_ids(const lc_chat *c, const lc_tokenizer *tok, int32_t *out, int cap) {
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Yes\"}]");
    if (!msgs) return 0;
    char *full = NULL;
    size_t full_len = 0;
    lc_chat_span *spans = NULL;
    int n_spans = 0, found = 0;
    if (!lc_chat_assistant_spans(c, tok, msgs, &full, &full_len, &spans, &n_spans) && n_spans == 1) {
        // the text after the reply in its span: the special tokens there end a turn
        const char *reply = find_bytes(full + spans[0].begin, spans[0].end - spans[0].begin, "Yes", 3);
        if (reply) {
            size_t from = (size_t)(reply - full) + 3;
            int32_t *ids = NULL;
            size_t icap = 0, n = 0;
            if (!lc_tokenizer_encode(tok, full + from, spans[0].end - from, false, &ids, &icap, &n))
                for (size_t j = 0; j < n && found < cap; j++)
                    if (lc_tokenizer_token_kind(tok, ids[j]) == LC_TOKEN_CONTROL) out[found++] = ids[j];
            free(ids);
        }
    }
    free(full);
    free(spans);
    cJSON_Delete(msgs);
    return found;
}
