// Chat data: assistant spans over the 16 real templates (templates that
// rewrite earlier turns included), token masks where spans begin and end
// inside a token, and the whole path on a tiny Phi-3 model with the real
// Phi-3 tokenizer and template: lora template, tokenize --mask, eval over
// assistant tokens (counted here independently), train, generate --chat and
// lora chat on piped lines.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "family_fixture.h"
#include "test_util.h"

#define SHARED LC_SHARED_DIR
#define CHAT SHARED "/chat-templates/"

static cJSON *load_json(const char *path) {
    size_t n;
    char *text = lc_test_read(path, &n);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: not JSON", path);
    return j;
}

static bool span_holds(const char *full, const lc_chat_span *sp, int n, const char *text, size_t len) {
    for (int k = 0; k < n; k++)
        for (size_t i = sp[k].begin; i + len <= sp[k].end; i++)
            if (memcmp(full + i, text, len) == 0) return true;
    return false;
}

static bool text_holds(const char *full, size_t n, const char *text, size_t len) {
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(full + i, text, len) == 0) return true;
    return false;
}

// Every template x conversation that renders: the spans never hold a user or
// system message's text, and each assistant message's text as the template
// shows it (after a <think> block, stripped) lies inside a span.
START_TEST(test_real_template_spans) {
    cJSON *index = load_json(CHAT "INDEX.json"), *convs = load_json(CHAT "conversations.json");
    const cJSON *tpl;
    int checked = 0, assistant_checked = 0;
    cJSON_ArrayForEach(tpl, cJSON_GetObjectItem(index, "templates")) {
        char path[512];
        snprintf(path, sizeof path, CHAT "%s", cJSON_GetObjectItem(tpl, "file")->valuestring);
        lc_chat *chat;
        ck_assert_int_eq(lc_chat_from_file(&chat, path), LC_STATUS_OK);
        static const char *const vars[] = {"bos_token", "eos_token"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItem(tpl, vars[k]);
            if (cJSON_IsString(v)) ck_assert_int_eq(lc_chat_set_var(chat, vars[k], v), LC_STATUS_OK);
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(tpl, "extra")) ck_assert_int_eq(lc_chat_set_var(chat, e->string, e), 0);
        const cJSON *conv;
        cJSON_ArrayForEach(conv, convs) {
            const cJSON *msgs = cJSON_GetObjectItem(conv, "messages");
            char *full;
            size_t full_len;
            lc_chat_span *sp;
            int n;
            if (lc_chat_assistant_spans(chat, NULL, msgs, &full, &full_len, &sp, &n)) {
                // only a template that raises for this conversation may refuse it
                char *out = NULL;
                ck_assert_msg(lc_chat_render(chat, msgs, -1, false, &out, NULL) != LC_STATUS_OK, "%s x %s: %s", path,
                              cJSON_GetObjectItem(conv, "id")->valuestring, lc_error_message());
                free(out);
                continue;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, msgs) {
                const char *role = cJSON_GetObjectItem(m, "role")->valuestring;
                const char *content = cJSON_GetObjectItem(m, "content")->valuestring;
                if (strcmp(role, "assistant") != 0) {
                    if (strlen(content) >= 4)
                        ck_assert_msg(!span_holds(full, sp, n, content, strlen(content)), "%s x %s: %s text in the loss",
                                      path, cJSON_GetObjectItem(conv, "id")->valuestring, role);
                    continue;
                }
                const char *shown = strstr(content, "</think>") ? strstr(content, "</think>") + 8 : content;
                while (*shown == ' ' || *shown == '\n') shown++;
                size_t len = strlen(shown);
                while (len && (shown[len - 1] == ' ' || shown[len - 1] == '\n' || shown[len - 1] == '\t')) len--;
                if (len == 0 || !text_holds(full, full_len, shown, len)) continue; // the template does not show it
                ck_assert_msg(span_holds(full, sp, n, shown, len), "%s x %s: assistant text outside the spans", path,
                              cJSON_GetObjectItem(conv, "id")->valuestring);
                assistant_checked++;
            }
            for (int k = 1; k < n; k++) ck_assert(sp[k].begin >= sp[k - 1].end);
            checked++;
            free(full);
            free(sp);
        }
        lc_chat_free(chat);
    }
    ck_assert_int_gt(checked, 180);
    ck_assert_int_gt(assistant_checked, 150);
    cJSON_Delete(index);
    cJSON_Delete(convs);
}
END_TEST

// A template that rewrites past turns: DeepSeek-R1 drops <think> from earlier
// assistant turns, and the span of each holds the reply as shown.
START_TEST(test_rewriting_template_spans) {
    lc_chat *chat;
    ck_assert_int_eq(lc_chat_from_file(&chat, CHAT "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"), LC_STATUS_OK);
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Q1\"},"
                              "{\"role\":\"assistant\",\"content\":\"<think>hmm</think>A1\"},"
                              "{\"role\":\"user\",\"content\":\"Q2\"},"
                              "{\"role\":\"assistant\",\"content\":\"<think>more</think>A2\"}]");
    char *full;
    size_t len;
    lc_chat_span *sp;
    int n;
    ck_assert_int_eq(lc_chat_assistant_spans(chat, NULL, msgs, &full, &len, &sp, &n), LC_STATUS_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_ptr_null(strstr(full, "hmm")); // rewritten away
    char a[64], b[64];
    snprintf(a, sizeof a, "%.*s", (int)(sp[0].end - sp[0].begin), full + sp[0].begin);
    snprintf(b, sizeof b, "%.*s", (int)(sp[1].end - sp[1].begin), full + sp[1].begin);
    ck_assert_msg(strncmp(a, "A1", 2) == 0 && !strstr(a, "Q2") && !strstr(a, "User"), "span 0: %s", a);
    ck_assert_msg(strncmp(b, "A2", 2) == 0 && !strstr(b, "Q"), "span 1: %s", b);
    free(full);
    free(sp);
    cJSON_Delete(msgs);
    lc_chat_free(chat);
}
END_TEST

// Masks where spans begin and end inside a token: a token is in the loss
// exactly when its first byte lies in an assistant span.
START_TEST(test_mask_inside_tokens) {
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load(&tok, SHARED "/tokenizers/gpt2/tokenizer.json", NULL), LC_STATUS_OK);
    // The header "A" (what the generation prompt writes) glues onto the reply:
    // "Answer" is one token starting in the header.
    const char *src = "{% for m in messages %}{% if m.role == 'user' %}Q{{ m.content }}\n"
                      "{% else %}A{{ m.content }}!{% endif %}{% endfor %}{% if add_generation_prompt %}A{% endif %}";
    lc_chat *chat;
    ck_assert_int_eq(lc_chat_from_text(&chat, src, strlen(src), "glue.jinja"), LC_STATUS_OK);
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"nswer is"
                              " yes\"},{\"role\":\"user\",\"content\":\"ok\"}]");
    char *full;
    size_t len;
    lc_chat_span *sp;
    int n;
    ck_assert_int_eq(lc_chat_assistant_spans(chat, NULL, msgs, &full, &len, &sp, &n), LC_STATUS_OK);
    ck_assert_str_eq(full, "Qhi\nAnswer is yes!Qok\n");
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(sp[0].begin, 5);  // "nswer": the header "A" the generation prompt writes is not the reply's
    ck_assert_int_eq(sp[0].end, 18);   // through the end-of-turn "!", not the next "Q"
    int32_t *ids;
    uint8_t *mask;
    size_t k;
    ck_assert_int_eq(lc_chat_tokenize(chat, tok, msgs, &ids, &mask, &k), LC_STATUS_OK);
    // Each token's first byte decides, checked against its text: the text
    // before it (decoded prefix) gives where it starts.
    size_t at = 0;
    int in_loss = 0;
    for (size_t j = 0; j < k; j++) {
        char *piece;
        size_t pn;
        ck_assert_int_eq(lc_tokenizer_decode(tok, ids + j, 1, false, &piece, &pn), LC_STATUS_OK);
        bool want = at >= sp[0].begin && at < sp[0].end;
        ck_assert_msg(mask[j] == want, "token %zu \"%s\" at byte %zu: mask %d", j, piece, at, mask[j]);
        in_loss += mask[j];
        at += pn;
        free(piece);
    }
    ck_assert_int_eq(at, len);
    ck_assert_int_gt(in_loss, 1);
    // "Answer" starts in the header: out; "!Q" may merge: the token starting at '!' is in, one at 'Q' is out.
    ck_assert_int_eq(mask[2], 0);
    free(ids);
    free(mask);
    free(full);
    free(sp);
    cJSON_Delete(msgs);
    lc_chat_free(chat);
    lc_tokenizer_free(tok);
}
END_TEST

// The span starts where the generation prompt ends: what the model must write
// after it at inference is trained, a separating space included (Llama 2's
// "[/INST] " + reply), so SentencePiece's "▁word" tokens are in the loss.
START_TEST(test_span_starts_after_generation_prompt) {
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, SHARED "/tokenizers/llama2"), LC_STATUS_OK);
    const char *src = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content | trim }} [/INST]"
                      "{% else %} {{ m.content | trim }} {{ eos_token }}{% endif %}{% endfor %}";
    lc_chat *chat;
    ck_assert_int_eq(lc_chat_from_text(&chat, src, strlen(src), "llama2.jinja"), LC_STATUS_OK);
    cJSON *bos = cJSON_CreateString("<s>"), *eos = cJSON_CreateString("</s>");
    lc_chat_set_var(chat, "bos_token", bos);
    lc_chat_set_var(chat, "eos_token", eos);
    cJSON_Delete(bos);
    cJSON_Delete(eos);
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Name a color.\"},{\"role\":\"assistant\",\"content\":"
                              "\"Blue is a color.\"},{\"role\":\"user\",\"content\":\"Another?\"},"
                              "{\"role\":\"assistant\",\"content\":\"Green.\"}]");
    int32_t *ids;
    uint8_t *mask;
    size_t n;
    ck_assert_int_eq(lc_chat_tokenize(chat, tok, msgs, &ids, &mask, &n), LC_STATUS_OK);
    // every token of " Blue is a color. </s>" and " Green. </s>" is in the loss, nothing else
    char *in = NULL, *out = NULL;
    int32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    size_t na = 0, nb = 0, len;
    for (size_t j = 0; j < n; j++) {
        if (mask[j]) a[na++] = ids[j];
        else b[nb++] = ids[j];
    }
    ck_assert_int_eq(lc_tokenizer_decode(tok, a, na, false, &in, &len), LC_STATUS_OK);
    ck_assert_int_eq(lc_tokenizer_decode(tok, b, nb, false, &out, &len), LC_STATUS_OK);
    ck_assert_msg(strstr(in, "Blue is a color.") && strstr(in, "Green.") && !strstr(in, "INST") && !strstr(in, "color?"),
                  "in the loss: %s", in);
    ck_assert_msg(!strstr(out, "Blue") && !strstr(out, "Green"), "out of the loss: %s", out);
    free(in);
    free(out);
    free(a);
    free(b);
    free(ids);
    free(mask);
    cJSON_Delete(msgs);
    lc_chat_free(chat);
    lc_tokenizer_free(tok);
}
END_TEST

// The closing text a template writes after a last message ("</s>") begins
// like the next header ("<|user|>" in a vocabulary without it as one token):
// the shared "<" stays out of the loss.
START_TEST(test_span_end_not_into_next_header) {
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, SHARED "/models/stories260K"), LC_STATUS_OK);
    lc_chat *chat;
    ck_assert_int_eq(lc_chat_from_file(&chat, CHAT "phi-3-mini.jinja"), LC_STATUS_OK);
    cJSON *eos = cJSON_CreateString("</s>");
    lc_chat_set_var(chat, "eos_token", eos);
    cJSON_Delete(eos);
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"},"
                              "{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"assistant\",\"content\":\"fine\"}]");
    char *full;
    size_t len;
    lc_chat_span *sp;
    int k;
    ck_assert_int_eq(lc_chat_assistant_spans(chat, tok, msgs, &full, &len, &sp, &k), LC_STATUS_OK);
    ck_assert_int_eq(k, 2);
    ck_assert_int_eq(full[sp[0].end], '<'); // the next "<|user|>" starts right after the first span
    ck_assert(sp[0].end >= 8 && memcmp(full + sp[0].end - 8, "<|end|>\n", 8) == 0); // its end-of-turn text, whole
    ck_assert_int_eq(sp[1].end, len); // the last span takes the closing "</s>"
    free(full);
    free(sp);
    cJSON_Delete(msgs);
    lc_chat_free(chat);
    lc_tokenizer_free(tok);
}
END_TEST

// A template whose generation prompt is not where the reply starts and whose
// content it cannot find is refused, not guessed.
START_TEST(test_unfindable_spans_refused) {
    // The reply is never shown and the generation prompt differs from the turn header.
    const char *src = "{% for m in messages %}[{{ m.role }}]{% if m.role != 'assistant' %}{{ m.content }}{% endif %}"
                      "{% endfor %}{% if add_generation_prompt %}<gen>{% endif %}";
    lc_chat *chat;
    ck_assert_int_eq(lc_chat_from_text(&chat, src, strlen(src), "odd.jinja"), LC_STATUS_OK);
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]");
    char *full;
    size_t len;
    lc_chat_span *sp;
    int n;
    ck_assert_int_eq(lc_chat_assistant_spans(chat, NULL, msgs, &full, &len, &sp, &n), LC_STATUS_INPUT);
    ck_assert_ptr_nonnull(strstr(lc_error_message(), "assistant message 1"));
    cJSON_Delete(msgs);
    lc_chat_free(chat);
    // A header that depends on the whole conversation (a turn count first): every shorter
    // rendering disagrees from the first byte, so no span can be found; refused, not left out.
    const char *count = "{{ messages|length }} turns\n{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n"
                        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    ck_assert_int_eq(lc_chat_from_text(&chat, count, strlen(count), "count.jinja"), LC_STATUS_OK);
    msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"U1\"},{\"role\":\"assistant\",\"content\":\"A1\"},"
                       "{\"role\":\"user\",\"content\":\"U2\"},{\"role\":\"assistant\",\"content\":\"A2\"}]");
    ck_assert_int_eq(lc_chat_assistant_spans(chat, NULL, msgs, &full, &len, &sp, &n), LC_STATUS_INPUT);
    ck_assert_ptr_nonnull(strstr(lc_error_message(), "assistant message 1"));
    cJSON_Delete(msgs);
    lc_chat_free(chat);
}
END_TEST

// The rendering the Phi-3 template gives, built here by hand, with the
// assistant spans as the issue defines them: each reply's content and its
// "<|end|>\n", and the EOS written after the last turn.
static size_t phi3_expected_targets(const lc_tokenizer *tok, const cJSON *msgs) {
    char full[65536];
    size_t n = 0, starts[64], ends[64];
    int k = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const char *role = cJSON_GetObjectItem(m, "role")->valuestring;
        const char *content = cJSON_GetObjectItem(m, "content")->valuestring;
        n += (size_t)snprintf(full + n, sizeof full - n, "<|%s|>\n", role);
        if (!strcmp(role, "assistant")) starts[k] = n;
        n += (size_t)snprintf(full + n, sizeof full - n, "%s<|end|>\n", content);
        if (!strcmp(role, "assistant")) ends[k++] = n;
        ck_assert(n < sizeof full - 64 && k < 64);
    }
    n += (size_t)snprintf(full + n, sizeof full - n, "<|endoftext|>");
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    if (k && !strcmp(cJSON_GetObjectItem(last, "role")->valuestring, "assistant")) ends[k - 1] = n;
    // Every span edge sits at a special token here, so the tokens of a prefix
    // ending there are the whole text's first tokens: count by prefixes.
    size_t total = 0;
    int32_t *ids = NULL;
    size_t cap = 0, a, b;
    for (int i = 0; i < k; i++) {
        ck_assert_int_eq(lc_tokenizer_encode(tok, full, starts[i], false, &ids, &cap, &a), LC_STATUS_OK);
        ck_assert_int_eq(lc_tokenizer_encode(tok, full, ends[i], false, &ids, &cap, &b), LC_STATUS_OK);
        total += b - a;
    }
    free(ids);
    return total;
}

static long json_int(const char *out, const char *key) {
    cJSON *j = cJSON_Parse(out);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    long v = (long)cJSON_GetObjectItem(j, key)->valuedouble;
    cJSON_Delete(j);
    return v;
}

static double json_num(const char *out, const char *key) {
    cJSON *j = cJSON_Parse(out);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    double v = cJSON_GetObjectItem(j, key)->valuedouble;
    cJSON_Delete(j);
    return v;
}

START_TEST(test_phi3_chat_path) {
    char *tmp = lc_test_tmpdir();
    lc_family_fixture f;
    lc_family_fixture_load(&f, "phi3", tmp);
    lc_test_copy(SHARED "/tokenizers/phi-3-mini/tokenizer_config.json", f.model_dir, "tokenizer_config.json");
    const char *data = SHARED "/data/alpaca_tiny_chat.jsonl";

    // lora template: byte for byte what Python Jinja2 renders (cases.jsonl, phi-3-mini x c12)
    cJSON *convs = load_json(CHAT "conversations.json");
    const cJSON *conv, *c12 = NULL;
    cJSON_ArrayForEach(conv, convs) if (!strcmp(cJSON_GetObjectItem(conv, "id")->valuestring, "c12_system_multi_turn_training")) c12 = conv;
    ck_assert_ptr_nonnull(c12);
    char *c12_text = cJSON_PrintUnformatted(c12);
    lc_test_write(tmp, "c12.json", c12_text, strlen(c12_text));
    free(c12_text);
    char c12_path[600], want_text[8192] = "";
    snprintf(c12_path, sizeof c12_path, "%s/c12.json", tmp);
    size_t cl;
    char *cases = lc_test_read(CHAT "cases.jsonl", &cl);
    for (char *line = strtok(cases, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        if (!strcmp(cJSON_GetObjectItem(c, "template_file")->valuestring, "phi-3-mini.jinja") &&
            !strcmp(cJSON_GetObjectItem(c, "conversation_id")->valuestring, "c12_system_multi_turn_training") &&
            !cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")))
            snprintf(want_text, sizeof want_text, "%s", cJSON_GetObjectItem(c, "text")->valuestring);
        cJSON_Delete(c);
    }
    free(cases);
    ck_assert(want_text[0]);
    lc_test_run r = lc_test_lora((const char *[]){"template", "--model", f.model_dir, "--messages", c12_path, NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_str_eq(r.out, want_text);
    lc_test_run_free(&r);

    // lora tokenize --mask: as many ids in the loss as counted by hand
    lc_tokenizer *tok;
    ck_assert_int_eq(lc_tokenizer_load_dir(&tok, f.model_dir), LC_STATUS_OK);
    r = lc_test_lora((const char *[]){"tokenize", "--model", f.model_dir, "--messages", c12_path, "--mask", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(lc_test_count_lines(r.out), 2);
    size_t ones = 0, n_ids = 0, n_mask = 0;
    const char *second = strchr(r.out, '\n') + 1;
    for (const char *p = r.out; p < second; p++) n_ids += *p == ' ';
    for (const char *p = second; *p; p++) {
        ones += *p == '1';
        n_mask += *p == '0' || *p == '1';
    }
    ck_assert_int_eq(n_mask, n_ids + 1);
    ck_assert_int_eq(ones, phi3_expected_targets(tok, cJSON_GetObjectItem(c12, "messages")));
    lc_test_run_free(&r);

    // lora eval over the chat data: its tokens are the assistant tokens, counted independently
    size_t want = 0, len;
    char *text = lc_test_read(data, &len);
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        want += phi3_expected_targets(tok, cJSON_GetObjectItem(j, "messages"));
        cJSON_Delete(j);
        lines++;
    }
    free(text);
    ck_assert_int_eq(lines, 100);
    r = lc_test_lora((const char *[]){"eval", "--model", f.model_dir, "--data", data, "--max-seq-len", "4096", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(json_int(r.out, "tokens"), (long)want);
    double base_loss = json_num(r.out, "loss");
    lc_test_run_free(&r);

    // lora train on it: assistant-only loss; the tuned adapter lowers that loss
    char cfg[4096], run[600];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(cfg, sizeof cfg,
             "{\"model\": \"%s\", \"train_data\": \"%s\", \"output_dir\": \"%s\", \"steps\": 8, "
             "\"batch_size\": 4, \"max_seq_len\": 512, \"lora\": {\"r\": 4, \"alpha\": 8, \"targets\": "
             "[\"qkv_proj\", \"o_proj\"]}, \"optimizer\": {\"lr\": 0.02}, \"threads\": 2}",
             f.model_dir, data, run);
    lc_test_write(tmp, "chat.json", cfg, strlen(cfg));
    char cfg_path[600];
    snprintf(cfg_path, sizeof cfg_path, "%s/chat.json", tmp);
    r = lc_test_lora((const char *[]){"train", "--config", cfg_path, NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    lc_test_run_free(&r);
    r = lc_test_lora((const char *[]){"eval", "--model", f.model_dir, "--adapter", run, "--data", data, "--max-seq-len",
                                      "4096", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(json_int(r.out, "tokens"), (long)want);
    ck_assert_msg(json_num(r.out, "loss") < base_loss - 0.05, "loss %s vs base %f", r.out, base_loss);
    lc_test_run_free(&r);

    // generate --chat prints only the reply; lora chat answers two piped lines, one line each
    r = lc_test_lora((const char *[]){"generate", "--model", f.model_dir, "--adapter", run, "--chat", "Hi there",
                                      "--system", "Be brief.", "--max-tokens", "6", "--temperature", "0", NULL});
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_null(strstr(r.out, "Hi there"));
    ck_assert_ptr_nonnull(strstr(r.err, " prompt tokens")); // the rendered turn, tokenized
    lc_test_run_free(&r);
    r = lc_test_lora_stdin((const char *[]){"chat", "--model", f.model_dir, "--adapter", run, "--max-tokens", "5",
                                            "--temperature", "0", NULL},
                           "Hello!\nWhat is 2 + 2?\n");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "lora chat: turn 1: "));
    ck_assert_ptr_nonnull(strstr(r.err, "lora chat: turn 2: "));
    ck_assert_ptr_null(strstr(r.err, "lora chat: turn 3: "));
    int p1, r1, p2;
    ck_assert_int_eq(sscanf(strstr(r.err, "turn 1: "), "turn 1: %d prompt tokens, %d reply", &p1, &r1), 2);
    ck_assert_int_eq(sscanf(strstr(r.err, "turn 2: "), "turn 2: %d prompt", &p2), 1);
    ck_assert_int_gt(p2, p1 + r1); // the second turn sees the first exchange
    ck_assert(r.out[0] && r.out[strlen(r.out) - 1] == '\n');
    lc_test_run_free(&r);
    // a line that cannot be a turn (not UTF-8) is skipped with a note; the next one is answered
    r = lc_test_lora_stdin((const char *[]){"chat", "--model", f.model_dir, "--max-tokens", "3", "--temperature", "0", NULL},
                           "bad \xff line\nHello!\n");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "stdin line 1: message 0: text that is not valid UTF-8; the turn is skipped"));
    ck_assert_ptr_nonnull(strstr(r.err, "lora chat: turn 1: "));
    ck_assert_ptr_null(strstr(r.err, "lora chat: turn 2: "));
    lc_test_run_free(&r);
    // --stop cuts the reply before a stop string it is known to hold (two bytes from its middle), and the
    // history keeps only what was printed: the second turn's prompt is shorter than without --stop
    r = lc_test_lora_stdin((const char *[]){"chat", "--model", f.model_dir, "--max-tokens", "8", "--temperature", "0",
                                            NULL}, "Hello!\nAgain\n");
    ck_assert_msg(r.status == 0, "%s", r.err);
    size_t reply_len = (size_t)(strchr(r.out, '\n') - r.out);
    ck_assert_msg(reply_len >= 4, "short reply: %s", r.out);
    char stop[3] = {r.out[reply_len / 2], r.out[reply_len / 2 + 1], 0}, want_out[64];
    snprintf(want_out, sizeof want_out, "%.*s\n", (int)(strstr(r.out, stop) - r.out), r.out);
    int full_p2;
    ck_assert_int_eq(sscanf(strstr(r.err, "turn 2: "), "turn 2: %d prompt", &full_p2), 1);
    lc_test_run_free(&r);
    r = lc_test_lora_stdin((const char *[]){"chat", "--model", f.model_dir, "--max-tokens", "8", "--temperature", "0",
                                            "--stop", stop, NULL}, "Hello!\nAgain\n");
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strncmp(r.out, want_out, strlen(want_out)) == 0, "\"%s\" does not start with \"%s\"", r.out, want_out);
    int cut_p2;
    ck_assert_int_eq(sscanf(strstr(r.err, "turn 2: "), "turn 2: %d prompt", &cut_p2), 1);
    ck_assert_int_lt(cut_p2, full_p2);
    lc_test_run_free(&r);
    // lora template: --var cannot replace what --messages and --add-generation-prompt give
    r = lc_test_lora((const char *[]){"template", "--model", f.model_dir, "--messages", c12_path, "--var", "messages=[]", NULL});
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "--var messages: give it with --messages"));
    lc_test_run_free(&r);

    // chat data with a model that has no template is refused before training, naming the folder
    char bare[600];
    snprintf(bare, sizeof bare, "%s/model/tokenizer_config.json", tmp);
    ck_assert_int_eq(unlink(bare), 0);
    r = lc_test_lora((const char *[]){"eval", "--model", f.model_dir, "--data", data, NULL});
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "alpaca_tiny_chat.jsonl:1: chat data"));
    ck_assert_ptr_nonnull(strstr(r.err, f.model_dir));
    lc_test_run_free(&r);

    lc_tokenizer_free(tok);
    cJSON_Delete(convs);
    lc_family_fixture_free(&f);
    lc_test_rmdir(tmp);
    free(tmp);
}
END_TEST

int main(void) {
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("spans");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_real_template_spans);
    tcase_add_test(tc, test_rewriting_template_spans);
    tcase_add_test(tc, test_mask_inside_tokens);
    tcase_add_test(tc, test_unfindable_spans_refused);
    tcase_add_test(tc, test_span_starts_after_generation_prompt);
    tcase_add_test(tc, test_span_end_not_into_next_header);
    suite_add_tcase(s, tc);
    TCase *cli = tcase_create("phi3");
    tcase_set_timeout(cli, 300);
    tcase_add_test(cli, test_phi3_chat_path);
    suite_add_tcase(s, cli);
    return lc_test_run_suite(s);
}
