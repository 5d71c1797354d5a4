// `lora generate`: stream a continuation of a prompt from a model folder.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/tokenizer.h"
#include "model/generate.h"
#include "model/model.h"
#include "train/adapter.h"
#include "train/cli.h"
#include "train/trainer.h"

static const char generate_usage[] =
    "usage: lora generate --model DIR [options]\n"
    "  --model DIR         Hugging Face model folder (config.json, safetensors, tokenizer.json)\n"
    "  --adapter PATH      LoRA adapter: a checkpoint-<step>.h5 of lora train, or a run's output folder\n"
    "  --prompt TEXT       text to continue (default: start from BOS alone)\n"
    "  --max-tokens N      tokens to generate (default 256)\n"
    "  --temperature T     0 for greedy (default 0.8)\n"
    "  --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P           keep the smallest set with probability mass P, 1 = off (default 0.95)\n"
    "  --seed S            sampling seed (default: from the clock, printed on stderr)\n"
    "  --ids               print token ids instead of text\n"
    "stdout holds only the prompt followed by the continuation; notes go to stderr.\n";

typedef struct generate_sink {
    lc_detokenizer detok;
    char *text; // the bytes one token can decode to (lc_tokenizer_stream_max_bytes)
    size_t cap;
    int print_ids;
    lc_status status;
} generate_sink;

static int on_token(void *user, int32_t token) {
    generate_sink *sink = user;
    if (sink->print_ids) {
        printf(" %d", token);
    } else {
        size_t n;
        sink->status = lc_detokenizer_push(&sink->detok, token, sink->text, sink->cap, &n);
        if (sink->status) return 1;
        fwrite(sink->text, 1, n, stdout);
    }
    fflush(stdout);
    return 0;
}

lc_status lc_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"adapter", required_argument, 0, 'a'},
        {"prompt", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},   {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},    {"ids", no_argument, 0, 'i'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *prompt = NULL, *adapter = NULL;
    long max_tokens = 256, top_k = 40, seed = -1;
    double temperature = 0.8, top_p = 0.95;
    int print_ids = 0, c;
    lc_status st;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'a': adapter = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': if ((st = lc_cli_parse_int("--max-tokens", optarg, 0, 1 << 24, &max_tokens))) return st; break;
        case 't': if ((st = lc_cli_parse_float("--temperature", optarg, 0.0, 100.0, &temperature))) return st; break;
        case 'k': if ((st = lc_cli_parse_int("--top-k", optarg, 0, 1 << 24, &top_k))) return st; break;
        case 'P': if ((st = lc_cli_parse_float("--top-p", optarg, 0.0, 1.0, &top_p))) return st; break;
        case 's': if ((st = lc_cli_parse_int("--seed", optarg, 0, 0x7fffffffL, &seed))) return st; break;
        case 'i': print_ids = 1; break;
        case 'h': fputs(generate_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora generate --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!model_dir) return lc_error(LC_STATUS_USAGE, "--model DIR is required (see lora generate --help)");
    int seed_from_clock = seed < 0;
    if (seed_from_clock) seed = (long)(time(NULL) & 0x7fffffff);

    lc_tokenizer *tok = NULL;
    lc_model model;
    lc_forward_state state = {0};
    lc_sampler sampler = {0};
    lc_lora lora = {0};
    int has_lora = 0;
    int32_t *ids = NULL;
    size_t cap = 0, n_ids = 0;
    int model_loaded = 0;
    generate_sink sink = {.print_ids = print_ids};
    if ((st = lc_tokenizer_load_dir(&tok, model_dir))) goto done;
    if ((st = lc_model_load(&model, model_dir))) goto done;
    model_loaded = 1;
    lc_train_warn_model("lora generate", model_dir, &model);
    if (adapter) {
        unsigned differ;
        if ((st = lc_adapter_load(adapter, &model, NULL, LC_ADAPTER_USE_AS_IS, &lora, &differ))) goto done;
        has_lora = 1;
        if (differ & LC_ADAPTER_BASE)
            fprintf(stderr, "lora generate: note: %s was trained on a different base model\n", adapter);
    }
    if (lc_tokenizer_vocab_size(tok) > model.cfg.vocab_size) {
        st = lc_error(LC_STATUS_INPUT, "%s: tokenizer has %d tokens but the model's vocabulary is %d", model_dir,
                      lc_tokenizer_vocab_size(tok), model.cfg.vocab_size);
        goto done;
    }

    if (prompt) {
        if ((st = lc_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &cap, &n_ids))) goto done;
    }
    if (n_ids == 0) {
        // No prompt (or one that encodes to nothing): start from BOS, or from
        // EOS for tokenizers without one (GPT-2 style).
        int32_t start = lc_tokenizer_bos(tok) >= 0 ? lc_tokenizer_bos(tok) : lc_tokenizer_eos(tok);
        if (start < 0) start = model.cfg.bos_token_id;
        if (start < 0) {
            st = lc_error(LC_STATUS_INPUT, "%s: the tokenizer has no BOS or EOS token to start from", model_dir);
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
    int ctx = model.cfg.max_position_embeddings;
    if ((long)n_ids > ctx) {
        st = lc_error(LC_STATUS_USAGE, "prompt is %zu tokens, the model's context is %d", n_ids, ctx);
        goto done;
    }
    if ((long)n_ids + max_tokens > ctx) {
        fprintf(stderr, "lora generate: context is %d tokens; generating %ld instead of %ld\n", ctx,
                ctx - (long)n_ids, max_tokens);
        max_tokens = ctx - (long)n_ids;
    }
    int total = (int)n_ids + (int)max_tokens;
    int rows = total < 512 ? total : 512;
    if ((st = lc_forward_state_init(&state, &model, 1, total, rows, 1))) goto done;
    state.lora = has_lora ? &lora : NULL;
    if ((st = lc_sampler_init(&sampler, model.cfg.vocab_size, (float)temperature, (int)top_k, (float)top_p,
                              (uint64_t)seed)))
        goto done;

    if (seed_from_clock && temperature > 0) fprintf(stderr, "lora generate: seed %ld\n", seed);
    // One buffer for every token: the vocabulary's longest piece decides its size.
    sink.cap = lc_tokenizer_stream_max_bytes(tok);
    if (!(sink.text = malloc(sink.cap))) {
        st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        goto done;
    }
    lc_detokenizer_init(&sink.detok, tok, true);
    if (print_ids) {
        for (size_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", ids[i]);
    } else {
        // The prompt is echoed as given; its tokens still prime the detokenizer
        // so the continuation's first piece keeps its leading space.
        size_t n;
        for (size_t i = 0; i < n_ids && !st; i++)
            st = lc_detokenizer_push(&sink.detok, ids[i], sink.text, sink.cap, &n);
        if (st) goto done;
        if (prompt) fputs(prompt, stdout);
    }
    fflush(stdout);
    // Stop at the tokenizer's EOS (the one training appends to completions)
    // and at every id the model's config lists (eos_token_id may be a list).
    int32_t stop[1 + LC_MAX_EOS_IDS];
    int n_stop = 0;
    if (lc_tokenizer_eos(tok) >= 0) stop[n_stop++] = lc_tokenizer_eos(tok);
    for (int i = 0; i < model.cfg.n_eos_ids; i++) {
        int k = 0;
        while (k < n_stop && stop[k] != model.cfg.eos_ids[i]) k++;
        if (k == n_stop) stop[n_stop++] = model.cfg.eos_ids[i];
    }
    lc_generate_stats stats;
    st = lc_generate(&state, &model, &sampler, ids, (int)n_ids, (int)max_tokens, stop, n_stop, on_token, &sink,
                     &stats);
    if (!st) st = sink.status;
    if (!st && !print_ids) {
        size_t n;
        if (!(st = lc_detokenizer_flush(&sink.detok, sink.text, sink.cap, &n))) fwrite(sink.text, 1, n, stdout);
    }
    putchar('\n');
    fflush(stdout);
    if (!st) {
        fprintf(stderr, "lora generate: %d prompt tokens in %.3f s, %d tokens in %.3f s (%.1f tokens/s)\n",
                stats.n_prompt, stats.prefill_s, stats.n_generated, stats.decode_s,
                stats.decode_s > 0 ? stats.n_generated / stats.decode_s : 0.0);
    }
done:
    free(sink.text);
    free(ids);
    lc_sampler_free(&sampler);
    lc_forward_state_free(&state);
    if (has_lora) lc_lora_free(&lora);
    if (model_loaded) lc_model_free(&model);
    lc_tokenizer_free(tok);
    return st;
}
