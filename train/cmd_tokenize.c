// `lora tokenize`: print the token ids of a text, space-separated.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/base.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "train/cli.h"

static const char tokenize_usage[] =
    "usage: lora tokenize (--model DIR|FILE.gguf | --tokenizer FILE) --text TEXT [--no-bos]\n"
    "       lora tokenize --model DIR --messages FILE.json [--mask] [--chat-template FILE.jinja]\n"
    "  --model DIR       model folder holding tokenizer.json (and tokenizer_config.json), or a GGUF file\n"
    "  --tokenizer FILE  a tokenizer.json file\n"
    "  --text TEXT       text to encode\n"
    "  --no-bos          do not add BOS (or other special tokens the tokenizer adds)\n"
    "  --messages FILE   a conversation (JSON list of messages, or an object with \"messages\"), rendered\n"
    "                    with the model's chat template and tokenized as training does (no BOS/EOS added)\n"
    "  --mask            with --messages: a second line of 0/1 per id, 1 where the id is in the loss\n"
    "  --chat-template F with --messages: a .jinja template instead of the model's\n";

// A conversation as training sees it: ids, and with --mask which are in the loss.
static lc_status tokenize_messages(const char *model_dir, const char *tok_file, const char *text, int no_bos,
                                   const char *msgs, int mask, const char *chat_template) {
    if (!model_dir || tok_file) return lc_error(LC_STATUS_USAGE, "--messages needs --model DIR (its chat template)");
    if (text || no_bos) return lc_error(LC_STATUS_USAGE, "--messages does not go with --text or --no-bos");
    lc_tokenizer *tok = NULL;
    lc_chat *chat = NULL;
    cJSON *root = NULL;
    const cJSON *messages;
    int32_t *ids = NULL;
    uint8_t *flags = NULL;
    size_t n = 0;
    lc_status st = lc_base_load_tokenizer(&tok, model_dir);
    if (!st) st = lc_cli_load_chat(model_dir, chat_template, "--chat-template", &chat);
    if (!st) st = lc_cli_read_messages(msgs, &root, &messages);
    if (!st) st = lc_chat_tokenize(chat, tok, messages, &ids, &flags, &n);
    if (!st) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        if (mask) {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", i ? flags[i] : 0); // token 0 predicts, is never predicted
            putchar('\n');
        }
    }
    free(ids);
    free(flags);
    cJSON_Delete(root);
    lc_chat_free(chat);
    lc_tokenizer_free(tok);
    return st;
}

lc_status lc_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'T'},
        {"text", required_argument, 0, 't'},  {"no-bos", no_argument, 0, 'n'},
        {"messages", required_argument, 0, 'M'}, {"mask", no_argument, 0, 'k'},
        {"chat-template", required_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *tok_file = NULL, *text = NULL, *msgs = NULL, *chat_template = NULL;
    int no_bos = 0, mask = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'T': tok_file = optarg; break;
        case 't': text = optarg; break;
        case 'n': no_bos = 1; break;
        case 'M': msgs = optarg; break;
        case 'k': mask = 1; break;
        case 'C': chat_template = optarg; break;
        case 'h': fputs(tokenize_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora tokenize --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (msgs) return tokenize_messages(model_dir, tok_file, text, no_bos, msgs, mask, chat_template);
    if (mask || chat_template) return lc_error(LC_STATUS_USAGE, "--mask and --chat-template go with --messages FILE");
    if (!text) return lc_error(LC_STATUS_USAGE, "--text TEXT or --messages FILE is required");
    if (!model_dir == !tok_file) return lc_error(LC_STATUS_USAGE, "give exactly one of --model DIR and --tokenizer FILE");

    lc_tokenizer *tok = NULL;
    lc_status st;
    if (model_dir) {
        st = lc_base_load_tokenizer(&tok, model_dir);
    } else {
        // tokenizer_config.json beside the file, when there, supplies BOS/EOS.
        char cfg[4096];
        const char *slash = strrchr(tok_file, '/');
        int dir_len = slash ? (int)(slash - tok_file) : 1;
        int n = snprintf(cfg, sizeof cfg, "%.*s/tokenizer_config.json", dir_len, slash ? tok_file : ".");
        int have_cfg = n > 0 && (size_t)n < sizeof cfg && access(cfg, F_OK) == 0;
        st = lc_tokenizer_load(&tok, tok_file, have_cfg ? cfg : NULL);
    }
    if (st) return st;
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    st = lc_tokenizer_encode(tok, text, strlen(text), !no_bos, &ids, &cap, &n);
    if (!st) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(ids);
    lc_tokenizer_free(tok);
    return st;
}
