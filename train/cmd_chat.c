// `lora chat`: a multi-turn conversation on the terminal (or a pipe). Each
// line of stdin is a user turn; the reply streams to stdout. The history is
// rendered with the model's chat template every turn and trimmed from the
// oldest exchange when it outgrows the context.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/chat.h"
#include "train/cli.h"
#include "train/gen_session.h"

static const char chat_usage[] =
    "usage: lora chat --model DIR|FILE.gguf [options]\n"
    "  --model DIR          Hugging Face model folder or GGUF file with a chat template\n"
    "  --adapter PATH       LoRA adapter: a checkpoint-<step>.h5, a run's output folder or a PEFT folder\n"
    "  --system TEXT        a system message at the start of the conversation\n"
    "  --chat-template F    a .jinja template instead of the model's\n"
    "  --max-tokens N       longest reply in tokens (default 512)\n"
    "  --ctx N              tokens of history kept, prompt and reply (default: the model's context, at most 4096)\n"
    "  --temperature T      0 for greedy (default 0.8)\n"
    "  --top-k K            keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P            nucleus mass, 1 = off (default 0.95)\n"
    "  --repetition-penalty R  divide the logit of every token already in the conversation by R\n"
    "                       (multiply when negative), as transformers does; 1 = off (default 1)\n"
    "  --stop TEXT          end the reply where it holds TEXT, which is neither printed nor kept (repeatable)\n"
    "  --seed S             sampling seed (default: from the clock)\n"
    "Each line on stdin is a user turn; EOF ends the conversation. Each reply goes to stdout followed by a\n"
    "newline; a line per turn on stderr counts its tokens.\n";

typedef struct chat_sink {
    lc_detokenizer detok;
    lc_gen_output out; // holds back what may begin a --stop string
    lc_gen_session *g;
    // The reply's bytes as printed: the history keeps these, not the released ids, since a
    // token reaching into a --stop string has its leading bytes printed but is itself dropped.
    char *reply;
    size_t n, cap;
    int max_tokens;
    int generated; // tokens of the reply, printed or not
    lc_status status;
} chat_sink;

static void emit(void *user, const char *text, size_t n, const int32_t *ids, int n_ids) {
    chat_sink *s = user;
    (void)ids;
    (void)n_ids;
    if (s->n + n + 1 > s->cap) {
        size_t cap = 2 * (s->n + n) + 256;
        char *p = realloc(s->reply, cap);
        if (!p) {
            s->status = lc_error(LC_STATUS_RUNTIME, "out of memory");
            return;
        }
        s->reply = p;
        s->cap = cap;
    }
    memcpy(s->reply + s->n, text, n);
    s->n += n;
    s->reply[s->n] = '\0';
    if (n) fwrite(text, 1, n, stdout);
    fflush(stdout);
}

static int on_token(void *user, int32_t token) {
    chat_sink *s = user;
    for (int k = 0; k < s->g->n_stop; k++)
        if (s->g->stop[k] == token) return 0; // the end of the turn: not part of the reply's text
    s->generated++;
    size_t n;
    bool stopped = false;
    lc_status st = lc_detokenizer_push(&s->detok, token, s->g->text, s->g->text_cap, &n);
    if (!st) st = lc_gen_output_push(&s->out, token, s->g->text, n, &stopped);
    if (st) s->status = st; // else keep what emit said
    return s->status || stopped;
}

static cJSON *message(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

lc_status lc_cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {
        LC_GEN_OPTIONS,
        {"max-tokens", required_argument, 0, 'n'}, {"ctx", required_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    lc_gen_options o = lc_gen_options_init("lora chat");
    long max_tokens = 512, ctx = 0;
    int c;
    lc_status st;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool used;
        if ((st = lc_gen_parse_option(&o, c, optarg, &used))) return st;
        if (used) continue;
        switch (c) {
        case 'n': if ((st = lc_cli_parse_int("--max-tokens", optarg, 1, 1 << 24, &max_tokens))) return st; break;
        case 'x': if ((st = lc_cli_parse_int("--ctx", optarg, 2, 1 << 24, &ctx))) return st; break;
        case 'h': fputs(chat_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora chat --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!o.model_dir) return lc_error(LC_STATUS_USAGE, "--model DIR|FILE.gguf is required (see lora chat --help)");

    lc_gen_session g;
    lc_chat *chat = NULL;
    cJSON *history = NULL;
    chat_sink sink = {0};
    char *line = NULL, *rendered = NULL;
    size_t line_cap = 0;
    int32_t *ids = NULL;
    size_t ids_cap = 0;
    if ((st = lc_gen_session_open(&g, &o))) goto done;
    if ((st = lc_cli_load_chat(o.model_dir, o.chat_template, "--chat-template", &chat))) goto done;
    if (ctx == 0) ctx = g.model.cfg.max_position_embeddings < 4096 ? g.model.cfg.max_position_embeddings : 4096;
    if ((st = lc_gen_session_plan(&g, (int)ctx))) goto done;
    if (max_tokens >= g.positions) max_tokens = g.positions / 2;
    lc_gen_session_add_chat_stops(&g, chat);
    sink.g = &g;
    sink.max_tokens = (int)max_tokens;
    if (!(sink.reply = malloc(sink.cap = 256)) || !(history = cJSON_CreateArray())) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        goto done;
    }
    if (o.system) cJSON_AddItemToArray(history, message("system", o.system));
    int first_turn = o.system ? 1 : 0; // history[first_turn..] are the exchanges that may be dropped
    bool tty = isatty(STDIN_FILENO);
    int turn = 0, line_no = 0;
    while (!st) {
        if (tty) fputs("> ", stderr);
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (strlen(line) != (size_t)len) {
            fprintf(stderr, "lora chat: stdin line %d holds a NUL byte; the turn is skipped\n", line_no);
            continue;
        }
        cJSON_AddItemToArray(history, message("user", line));
        char what[64];
        snprintf(what, sizeof what, "stdin line %d", line_no);
        st = lc_chat_check_messages(history, what); // e.g. invalid UTF-8
        // Render; drop the oldest exchange while prompt + reply outgrow the context.
        size_t n_ids = 0;
        while (!st) {
            size_t rlen;
            free(rendered);
            rendered = NULL;
            if ((st = lc_chat_render(chat, history, -1, true, &rendered, &rlen))) break;
            if ((st = lc_tokenizer_encode(g.tok, rendered, rlen, false, &ids, &ids_cap, &n_ids))) break;
            if ((long)n_ids + max_tokens <= g.positions) break;
            if (cJSON_GetArraySize(history) - first_turn <= 1) {
                st = lc_error(LC_STATUS_USAGE, "this turn is %zu tokens: with a %ld-token reply it does not fit the %d "
                              "tokens of context (--ctx)", n_ids, max_tokens, g.positions);
                break;
            }
            cJSON_DeleteItemFromArray(history, first_turn); // the user turn
            if (cJSON_GetArraySize(history) - first_turn > 1) {
                cJSON *next = cJSON_GetArrayItem(history, first_turn);
                const cJSON *role = cJSON_GetObjectItemCaseSensitive(next, "role");
                if (cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0)
                    cJSON_DeleteItemFromArray(history, first_turn); // and its reply
            }
        }
        if (st == LC_STATUS_INPUT || st == LC_STATUS_USAGE) {
            // a turn that cannot be answered (bad text, too long, a template that refuses it) is skipped
            fprintf(stderr, "lora chat: %s; the turn is skipped\n", lc_error_message());
            cJSON_DeleteItemFromArray(history, cJSON_GetArraySize(history) - 1);
            st = LC_STATUS_OK;
            continue;
        }
        if (st) break;
        lc_detokenizer_init(&sink.detok, g.tok, true);
        lc_gen_output_free(&sink.out);
        lc_gen_output_init(&sink.out, o.stop_text, o.n_stop_text, emit, &sink);
        sink.n = 0;
        sink.reply[0] = '\0';
        sink.generated = 0;
        sink.status = LC_STATUS_OK;
        // Prime the detokenizer with the prompt so the reply's first piece decodes as it will read.
        size_t n;
        for (size_t i = 0; i < n_ids && !st; i++) st = lc_detokenizer_push(&sink.detok, ids[i], g.text, g.text_cap, &n);
        if (st) break;
        lc_generate_stats stats;
        st = lc_generate(&g.state, &g.model, &g.sampler, ids, (int)n_ids, (int)max_tokens, g.stop, g.n_stop, on_token,
                         &sink, &stats);
        if (!st) st = sink.status;
        if (!st && !sink.out.stopped) {
            // The detokenizer's last bytes may still complete a stop string.
            bool stopped;
            if (!(st = lc_detokenizer_flush(&sink.detok, g.text, g.text_cap, &n)))
                st = lc_gen_output_push(&sink.out, -1, g.text, n, &stopped);
            lc_gen_output_finish(&sink.out);
            if (!st) st = sink.status; // emit's
        }
        putchar('\n');
        fflush(stdout);
        if (st) break;
        turn++;
        fprintf(stderr, "lora chat: turn %d: %d prompt tokens, %d reply tokens (%.1f tokens/s)%s\n", turn, stats.n_prompt,
                stats.n_generated, stats.decode_s > 0 ? stats.n_generated / stats.decode_s : 0.0,
                sink.generated >= sink.max_tokens && !sink.out.stopped ? "; cut at --max-tokens" : "");
        cJSON_AddItemToArray(history, message("assistant", sink.reply));
    }
done:
    free(line);
    free(rendered);
    free(ids);
    free(sink.reply);
    lc_gen_output_free(&sink.out);
    cJSON_Delete(history);
    lc_chat_free(chat);
    lc_gen_session_close(&g);
    return st;
}
