// `lora generate`: stream a continuation of a prompt from a model folder.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/chat.h"
#include "common/file.h"
#include "data/tokenizer.h"
#include "train/cli.h"
#include "train/gen_session.h"

static const char generate_usage[] =
    "usage: lora generate --model DIR|FILE.gguf [options]\n"
    "  --model DIR         Hugging Face model folder (config.json, safetensors, tokenizer.json),\n"
    "                      or a llama.cpp GGUF file (any of F32, F16, BF16, Q4_0-Q8_0, Q4_K-Q6_K)\n"
    "  --adapter PATH      LoRA adapter: a checkpoint-<step>.h5, a run's output folder (its newest\n"
    "                      checkpoint, or its best with early stopping) or a PEFT adapter folder\n"
    "  --prompt TEXT       text to continue (default: start from BOS alone); - reads it from stdin\n"
    "  --prompt-file F     the text to continue is F's bytes as they are (a final newline is kept)\n"
    "  --chat TEXT         a user turn: rendered with the model's chat template; prints only the reply\n"
    "  --system TEXT       with --chat: a system message before it\n"
    "  --chat-template F   with --chat: a .jinja template instead of the model's\n"
    "  --max-tokens N      tokens to generate (default 256)\n"
    "  --temperature T     0 for greedy (default 0.8)\n"
    "  --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P           keep the smallest set with probability mass P, 1 = off (default 0.95)\n"
    "  --repetition-penalty R  divide the logit of every token already in the prompt or the output\n"
    "                      by R (multiply when negative), as transformers does; 1 = off (default 1)\n"
    "  --stop TEXT         end where the output holds TEXT, which is not printed (repeatable)\n"
    "  --seed S            sampling seed (default: from the clock, printed on stderr)\n"
    "  --ids               print token ids instead of text\n"
    "stdout holds only the prompt followed by the continuation (with --chat: the reply); notes go to stderr.\n";

typedef struct generate_sink {
    lc_detokenizer detok;
    lc_gen_output out; // holds back what may begin a --stop string
    char *text;        // the bytes one token can decode to (lc_tokenizer_stream_max_bytes)
    size_t cap;
    int print_ids;
    lc_status status;
} generate_sink;

static void emit(void *user, const char *text, size_t n, const int32_t *ids, int n_ids) {
    const generate_sink *sink = user;
    if (sink->print_ids)
        for (int i = 0; i < n_ids; i++) printf(" %d", ids[i]);
    else if (n)
        fwrite(text, 1, n, stdout);
    fflush(stdout);
}

static int on_token(void *user, int32_t token) {
    generate_sink *sink = user;
    size_t n;
    bool stopped = false;
    // Decoded with --ids too: --stop looks at the text.
    if (!(sink->status = lc_detokenizer_push(&sink->detok, token, sink->text, sink->cap, &n)))
        sink->status = lc_gen_output_push(&sink->out, token, sink->text, n, &stopped);
    return sink->status || stopped;
}

// The prompt of --prompt - (stdin) or --prompt-file: its bytes as they are.
// The tokenizer takes a C string, so a NUL byte is refused rather than cutting the prompt short.
static lc_status read_prompt(const char *path, char **out) {
    char *buf = NULL;
    size_t len = 0;
    lc_status st;
    const size_t max = (size_t)64 << 20;
    if (strcmp(path, "-") == 0) {
        size_t cap = 0;
        for (;;) {
            if (len == cap) {
                cap = cap ? 2 * cap : 4096;
                char *p = cap <= max + 1 ? realloc(buf, cap + 1) : NULL;
                if (!p) {
                    free(buf);
                    return cap > max + 1 ? lc_error(LC_STATUS_INPUT, "stdin: the prompt is over %zu bytes", max)
                                         : lc_error(LC_STATUS_RUNTIME, "out of memory");
                }
                buf = p;
            }
            size_t got = fread(buf + len, 1, cap - len, stdin);
            len += got;
            if (got == 0) break;
        }
        if (ferror(stdin)) {
            free(buf);
            return lc_error(LC_STATUS_INPUT, "stdin: read failed");
        }
        buf[len] = 0;
        path = "stdin";
    } else if ((st = lc_file_read(path, max, &buf, &len))) {
        return st;
    }
    if (len == 0) {
        // Else generation would silently start from BOS, as if no prompt were given.
        free(buf);
        return strcmp(path, "stdin") == 0 ? lc_error(LC_STATUS_INPUT, "--prompt -: stdin is empty")
                                          : lc_error(LC_STATUS_INPUT, "%s: is empty", path);
    }
    if (strlen(buf) != len) {
        free(buf);
        return lc_error(LC_STATUS_INPUT, "%s: the prompt holds a NUL byte", path);
    }
    *out = buf;
    return LC_STATUS_OK;
}

lc_status lc_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        LC_GEN_OPTIONS,
        {"prompt", required_argument, 0, 'p'},  {"prompt-file", required_argument, 0, 'F'},
        {"chat", required_argument, 0, 'c'},
        {"max-tokens", required_argument, 0, 'n'}, {"ids", no_argument, 0, 'i'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *prompt = NULL, *prompt_file = NULL, *chat_text = NULL;
    lc_gen_options o = lc_gen_options_init("lora generate");
    long max_tokens = 256;
    int print_ids = 0, c;
    lc_status st;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool used;
        if ((st = lc_gen_parse_option(&o, c, optarg, &used))) return st;
        if (used) continue;
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'F': prompt_file = optarg; break;
        case 'c': chat_text = optarg; break;
        case 'n': if ((st = lc_cli_parse_int("--max-tokens", optarg, 0, 1 << 24, &max_tokens))) return st; break;
        case 'i': print_ids = 1; break;
        case 'h': fputs(generate_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora generate --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!o.model_dir) return lc_error(LC_STATUS_USAGE, "--model DIR|FILE.gguf is required (see lora generate --help)");
    if (prompt && prompt_file) return lc_error(LC_STATUS_USAGE, "give --prompt TEXT or --prompt-file FILE, not both");
    if (chat_text && (prompt || prompt_file))
        return lc_error(LC_STATUS_USAGE, "give %s or --chat TEXT, not both",
                        prompt ? "--prompt TEXT" : "--prompt-file FILE");
    if ((o.system || o.chat_template) && !chat_text)
        return lc_error(LC_STATUS_USAGE, "--system and --chat-template go with --chat TEXT");

    lc_gen_session g;
    lc_chat *chat = NULL;
    int32_t *ids = NULL;
    size_t cap = 0, n_ids = 0;
    generate_sink sink = {.print_ids = print_ids};
    char *rendered = NULL, *prompt_buf = NULL;
    lc_gen_output_init(&sink.out, o.stop_text, o.n_stop_text, emit, &sink);
    memset(&g, 0, sizeof g); // closed below even when reading the prompt fails
    if (prompt_file || (prompt && strcmp(prompt, "-") == 0)) {
        if ((st = read_prompt(prompt_file ? prompt_file : "-", &prompt_buf))) goto done;
        prompt = prompt_buf;
    }
    if ((st = lc_gen_session_open(&g, &o))) goto done;
    const lc_tokenizer *tok = g.tok;
    if (chat_text) {
        // {"role": "system"?, "user"} rendered with the generation prompt; the
        // template writes BOS and the headers, so nothing is added when encoding.
        if ((st = lc_cli_load_chat(o.model_dir, o.chat_template, "--chat-template", &chat))) goto done;
        cJSON *msgs = cJSON_CreateArray();
        if (o.system) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "system");
            cJSON_AddStringToObject(m, "content", o.system);
            cJSON_AddItemToArray(msgs, m);
        }
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", chat_text);
        cJSON_AddItemToArray(msgs, m);
        size_t len;
        st = lc_chat_render(chat, msgs, -1, true, &rendered, &len);
        cJSON_Delete(msgs);
        if (!st) st = lc_tokenizer_encode(tok, rendered, len, false, &ids, &cap, &n_ids);
        if (st) goto done;
        lc_gen_session_add_chat_stops(&g, chat);
    } else if (prompt) {
        if ((st = lc_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &cap, &n_ids))) {
            if (st == LC_STATUS_INPUT && prompt_buf) {
                // e.g. invalid UTF-8: say which input holds it
                char msg[512];
                snprintf(msg, sizeof msg, "%s", lc_error_message());
                st = lc_error(st, "%s: %s", prompt_file ? prompt_file : "stdin", msg);
            }
            goto done;
        }
    }
    if (n_ids == 0) {
        // No prompt (or one that encodes to nothing): start from BOS, or from
        // EOS for tokenizers without one (GPT-2 style).
        int32_t start = lc_tokenizer_bos(tok) >= 0 ? lc_tokenizer_bos(tok) : lc_tokenizer_eos(tok);
        if (start < 0) start = g.model.cfg.bos_token_id;
        if (start < 0) {
            st = lc_error(LC_STATUS_INPUT, "%s: the tokenizer has no BOS or EOS token to start from", o.model_dir);
            goto done;
        }
        ids = malloc(sizeof *ids);
        if (!ids) {
            st = lc_error(LC_STATUS_RUNTIME, "out of memory");
            goto done;
        }
        ids[0] = start;
        n_ids = 1;
    }
    int ctx = g.model.cfg.max_position_embeddings;
    if ((long)n_ids > ctx) {
        st = lc_error(LC_STATUS_USAGE, "prompt is %zu tokens, the model's context is %d", n_ids, ctx);
        goto done;
    }
    if ((long)n_ids + max_tokens > ctx) {
        fprintf(stderr, "lora generate: context is %d tokens; generating %ld instead of %ld\n", ctx,
                ctx - (long)n_ids, max_tokens);
        max_tokens = ctx - (long)n_ids;
    }
    if ((st = lc_gen_session_plan(&g, (int)n_ids + (int)max_tokens))) goto done;
    sink.text = g.text;
    sink.cap = g.text_cap;
    lc_detokenizer_init(&sink.detok, tok, true);
    // The prompt's tokens prime the detokenizer so the continuation's first piece
    // keeps its leading space: --stop then matches the same text with or without --ids.
    size_t n_primed;
    for (size_t i = 0; i < n_ids && !st; i++)
        st = lc_detokenizer_push(&sink.detok, ids[i], sink.text, sink.cap, &n_primed);
    if (st) goto done;
    if (print_ids) {
        if (!chat_text)
            for (size_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", ids[i]);
    } else if (prompt) {
        fputs(prompt, stdout); // echoed as given (a chat turn is not)
    }
    fflush(stdout);
    lc_generate_stats stats;
    st = lc_generate(&g.state, &g.model, &g.sampler, ids, (int)n_ids, (int)max_tokens, g.stop, g.n_stop, on_token,
                     &sink, &stats);
    if (!st) st = sink.status;
    if (!st && !sink.out.stopped) {
        // The detokenizer's last bytes may still complete a stop string.
        size_t n;
        bool stopped;
        if (!(st = lc_detokenizer_flush(&sink.detok, sink.text, sink.cap, &n)))
            st = lc_gen_output_push(&sink.out, -1, sink.text, n, &stopped);
        lc_gen_output_finish(&sink.out);
    }
    putchar('\n');
    fflush(stdout);
    if (!st) {
        fprintf(stderr, "lora generate: %d prompt tokens in %.3f s, %d tokens in %.3f s (%.1f tokens/s)\n",
                stats.n_prompt, stats.prefill_s, stats.n_generated, stats.decode_s,
                stats.decode_s > 0 ? stats.n_generated / stats.decode_s : 0.0);
    }
done:
    lc_gen_output_free(&sink.out);
    free(prompt_buf);
    free(rendered);
    free(ids);
    lc_chat_free(chat);
    lc_gen_session_close(&g);
    return st;
}
