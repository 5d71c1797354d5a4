// Batched greedy decoding for evaluation. Prompts of a batch are left-padded
// to the longest: each real token attends from its own prompt's first cache
// position (seg_start) and takes rotary/learned positions from 0 there, so a
// padded row computes what it would alone; pad rows attend among themselves
// only, which keeps their (unused) values finite.

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/file.h"
#include "model/forward.h"
#include "train/eval_generate.h"

void lc_gen_eval_refs_free(char **refs, int n) {
    for (int i = 0; refs && i < n; i++) free(refs[i]);
    free(refs);
}

// The reference of one parsed JSONL record, or NULL.
static const char *record_reference(const cJSON *row) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(row, "completion");
    if (cJSON_IsString(c)) return c->valuestring;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(row, "messages"), *m, *last = NULL;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "assistant")) last = m;
    }
    const cJSON *content = last ? cJSON_GetObjectItemCaseSensitive(last, "content") : NULL;
    return cJSON_IsString(content) ? content->valuestring : NULL;
}

lc_status lc_gen_eval_refs_load(const char *path, const lc_dataset *ds, char ***refs, bool *chat) {
    *chat = false;
    char *text;
    size_t len;
    lc_status st = lc_file_read(path, (size_t)1 << 32, &text, &len);
    if (st) return st;
    *refs = calloc((size_t)(ds->n_examples ? ds->n_examples : 1), sizeof **refs);
    if (!*refs) {
        free(text);
        return lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    // Examples keep file order; walk the lines once.
    char *line = text;
    int line_no = 1;
    for (int i = 0; !st && i < ds->n_examples; i++) {
        int want = ds->examples[i].line;
        while (line && line_no < want) {
            char *nl = strchr(line, '\n');
            line = nl ? nl + 1 : NULL;
            line_no++;
        }
        if (!line) {
            st = lc_error(LC_STATUS_INPUT, "%s:%d: line not found", path, want);
            break;
        }
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *row = cJSON_ParseWithLength(line, n);
        const char *ref = row ? record_reference(row) : NULL;
        *chat |= row && cJSON_HasObjectItem(row, "messages");
        if (!ref)
            st = lc_error(LC_STATUS_INPUT, "%s:%d: no reference answer to score (a \"completion\", or an assistant "
                          "message)", path, want);
        else if (!((*refs)[i] = strdup(ref)))
            st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        cJSON_Delete(row);
    }
    free(text);
    if (st) {
        lc_gen_eval_refs_free(*refs, ds->n_examples);
        *refs = NULL;
    }
    return st;
}

static int add_stop(int32_t *out, int n, int cap, int32_t id) {
    if (id < 0 || n == cap) return n;
    for (int k = 0; k < n; k++)
        if (out[k] == id) return n;
    out[n] = id;
    return n + 1;
}

int lc_gen_eval_stop_ids(const lc_model *m, const lc_tokenizer *tok, const lc_chat *chat, int32_t *out, int cap) {
    int n = add_stop(out, 0, cap, lc_tokenizer_eos(tok));
    for (int i = 0; i < m->cfg.n_eos_ids; i++) n = add_stop(out, n, cap, m->cfg.eos_ids[i]);
    if (chat) {
        int32_t turn[8];
        int n_turn = lc_chat_end_of_turn_ids(chat, tok, turn, 8);
        for (int i = 0; i < n_turn; i++) n = add_stop(out, n, cap, turn[i]);
    }
    return n;
}

// Tokens before the example's last trained span: what the model is asked.
static int prompt_length(const lc_example *e) {
    int t = e->n - 1;
    while (t > 0 && !e->target[t]) t--;
    while (t > 0 && e->target[t]) t--;
    return t + 1;
}

static int32_t argmax(const float *row, int V) {
    int32_t best = 0;
    for (int32_t v = 1; v < V; v++)
        if (row[v] > row[best]) best = v; // the first of equal maxima, as torch.argmax
    return best;
}

static int cmp_by_length(const void *a, const void *b) {
    const int *x = a, *y = b;
    return x[1] != y[1] ? (x[1] > y[1]) - (x[1] < y[1]) : (x[0] > y[0]) - (x[0] < y[0]);
}

typedef struct decode_buf {
    int32_t *tokens, *pos, *seg; // [B, L] inputs of one call
    int32_t *out;                // [B, max_tokens] generated ids
    int *n_out, *done, *pad;     // [B]
    lc_detokenizer *det;         // [B] each answer's text as it grows (blank-line stops)
    bool *newline;               // [B] its last byte was '\n'
    char *bytes;                 // [lc_tokenizer_stream_max_bytes] one token's text
    char **preds;                // [n] answers, by example
    bool *ok;                    // [n] their verdicts
} decode_buf;

// Whether token t, appended to row b's answer, completes a blank line
// ("\n\n"): its bytes come from the row's streaming detokenizer, so no
// answer is decoded again per token.
static bool ends_blank_line(decode_buf *d, int b, int32_t t, size_t cap) {
    size_t n = 0;
    if (lc_detokenizer_push(&d->det[b], t, d->bytes, cap, &n)) return false;
    for (size_t i = 0; i < n; i++) {
        bool nl = d->bytes[i] == '\n';
        if (nl && d->newline[b]) return true;
        d->newline[b] = nl;
    }
    return false;
}

// Decodes row b's answer so far (stop ids excluded); NULL on failure.
static char *answer_text(const lc_tokenizer *tok, const decode_buf *d, int b, int max_tokens) {
    char *text;
    size_t len;
    if (lc_tokenizer_decode(tok, d->out + (size_t)b * max_tokens, (size_t)d->n_out[b], true, &text, &len))
        return NULL;
    return text;
}

static lc_status write_prediction(FILE *f, const lc_tokenizer *tok, const lc_example *e, int n_prompt,
                                  const char *pred, const char *ref, bool ok) {
    char *prompt;
    size_t len;
    lc_status st = lc_tokenizer_decode(tok, e->ids, (size_t)n_prompt, true, &prompt, &len);
    if (st) return st;
    cJSON *row = cJSON_CreateObject();
    cJSON_AddNumberToObject(row, "line", e->line);
    cJSON_AddStringToObject(row, "prompt", prompt);
    cJSON_AddStringToObject(row, "prediction", pred);
    cJSON_AddStringToObject(row, "reference", ref);
    cJSON_AddBoolToObject(row, "correct", ok);
    char *s = cJSON_PrintUnformatted(row);
    if (s) fprintf(f, "%s\n", s);
    cJSON_free(s);
    cJSON_Delete(row);
    free(prompt);
    return s ? LC_STATUS_OK : lc_error(LC_STATUS_RUNTIME, "out of memory");
}

lc_status lc_eval_generate(const lc_model *m, const lc_lora *lora, const lc_tokenizer *tok, const lc_dataset *ds,
                           char *const *refs, const lc_gen_eval_options *o, lc_gen_eval_result *out) {
    memset(out, 0, sizeof *out);
    int n = o->limit > 0 && o->limit < ds->n_examples ? o->limit : ds->n_examples, B = o->batch, M = o->max_tokens;
    int V = m->cfg.vocab_size, ctx = m->cfg.max_position_embeddings;
    if (n == 0) return LC_STATUS_OK;
    // Longest prompts last, so a batch holds prompts of similar length.
    int *order = malloc(sizeof(int) * 2 * (size_t)n), L_max = 0;
    if (!order) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    for (int i = 0; i < n; i++) {
        order[2 * i] = i;
        order[2 * i + 1] = prompt_length(&ds->examples[i]);
        if (order[2 * i + 1] > L_max) L_max = order[2 * i + 1];
    }
    qsort(order, (size_t)n, 2 * sizeof(int), cmp_by_length);
    lc_status st = LC_STATUS_OK;
    // Answers end where the model's positions do (a batch's own longest
    // prompt decides, so one long prompt shortens only its batch).
    int cap = ctx > 0 && L_max + M > ctx ? ctx : L_max + M;
    if (cap - L_max < 1)
        st = lc_error(LC_STATUS_INPUT, "a prompt of %d tokens leaves no room in the model's %d positions", L_max, ctx);
    if (B > n) B = n;
    lc_forward_state s;
    decode_buf d = {0};
    int planned = 0;
    if (!st && !(st = lc_forward_state_init(&s, m, B, cap, B * L_max, B))) {
        planned = 1;
        s.lora = lora;
        d.tokens = malloc(sizeof(int32_t) * (size_t)B * L_max);
        d.pos = malloc(sizeof(int32_t) * (size_t)B * L_max);
        d.seg = malloc(sizeof(int32_t) * (size_t)B * L_max);
        d.out = malloc(sizeof(int32_t) * (size_t)B * M);
        d.n_out = malloc(sizeof(int) * (size_t)B);
        d.done = malloc(sizeof(int) * (size_t)B);
        d.pad = malloc(sizeof(int) * (size_t)B);
        d.det = malloc(sizeof *d.det * (size_t)B);
        d.newline = malloc(sizeof(bool) * (size_t)B);
        d.bytes = malloc(lc_tokenizer_stream_max_bytes(tok));
        d.preds = calloc((size_t)n, sizeof *d.preds);
        d.ok = calloc((size_t)n, sizeof *d.ok);
        if (!d.tokens || !d.pos || !d.seg || !d.out || !d.n_out || !d.done || !d.pad || !d.preds || !d.ok || !d.det ||
            !d.newline || !d.bytes)
            st = lc_error(LC_STATUS_RUNTIME, "out of memory");
    }
    double t0 = lc_now_s();
    for (int first = 0; !st && first < n; first += B) {
        int nb = n - first < B ? n - first : B, L = order[2 * (first + nb - 1) + 1], *pad = d.pad;
        int Mb = cap - L < M ? cap - L : M; // this batch's answers
        for (int b = 0; b < nb; b++) {
            const lc_example *e = &ds->examples[order[2 * (first + b)]];
            int len = order[2 * (first + b) + 1];
            pad[b] = L - len;
            for (int t = 0; t < L; t++) {
                size_t at = (size_t)b * L + t;
                bool real = t >= pad[b];
                d.tokens[at] = real ? e->ids[t - pad[b]] : e->ids[0];
                d.pos[at] = real ? t - pad[b] : t;
                d.seg[at] = real ? pad[b] : 0;
            }
            d.n_out[b] = d.done[b] = 0;
            lc_detokenizer_init(&d.det[b], tok, true);
            d.newline[b] = false;
        }
        lc_forward_input in = {d.tokens, nb, L, d.pos, d.seg, 0};
        st = lc_forward_input_run(&s, m, &in, LC_LOGITS_MODE_LAST);
        for (int i = 0; !st && i < Mb; i++) {
            int active = 0;
            for (int b = 0; b < nb; b++) {
                if (d.done[b]) {
                    d.tokens[b] = ds->examples[order[2 * (first + b)]].ids[0]; // a valid id; its row is not read
                    continue;
                }
                int32_t t = argmax(s.logits + (size_t)b * V, V);
                bool stop = false;
                for (int k = 0; k < o->n_stop; k++) stop |= t == o->stop[k];
                if (!stop) {
                    d.out[(size_t)b * M + d.n_out[b]++] = t;
                    out->n_generated++;
                }
                if (!stop && o->stop_blank_line) stop = ends_blank_line(&d, b, t, lc_tokenizer_stream_max_bytes(tok));
                d.done[b] = stop || d.n_out[b] == Mb;
                d.tokens[b] = t;
                d.pos[b] = L + i - pad[b];
                d.seg[b] = pad[b];
                active += !d.done[b];
            }
            if (!active) break;
            lc_forward_input step = {d.tokens, nb, 1, d.pos, d.seg, L + i};
            st = lc_forward_input_run(&s, m, &step, LC_LOGITS_MODE_LAST);
        }
        for (int b = 0; !st && b < nb; b++) {
            int idx = order[2 * (first + b)];
            char *pred = answer_text(tok, &d, b, M);
            if (!pred) {
                st = lc_error(LC_STATUS_RUNTIME, "out of memory");
                break;
            }
            if (o->stop_blank_line) {
                char *blank = strstr(pred, "\n\n");
                if (blank) *blank = 0;
            }
            d.ok[idx] = lc_score_match(o->metric, pred, refs[idx]);
            d.preds[idx] = pred;
            out->correct += d.ok[idx];
            out->n++;
        }
    }
    out->seconds = lc_now_s() - t0;
    // Predictions in file order.
    for (int i = 0; !st && o->predictions && i < n; i++)
        st = write_prediction(o->predictions, tok, &ds->examples[i], prompt_length(&ds->examples[i]), d.preds[i],
                              refs[i], d.ok[i]);
    for (int i = 0; d.preds && i < n; i++) free(d.preds[i]);
    free(d.preds);
    free(d.ok);
    free(d.pad);
    free(d.det);
    free(d.newline);
    free(d.bytes);
    free(d.tokens);
    free(d.pos);
    free(d.seg);
    free(d.out);
    free(d.n_out);
    free(d.done);
    if (planned) lc_forward_state_free(&s);
    free(order);
    return st;
}
