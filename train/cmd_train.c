// `lora train --config FILE [--set key=value]...` and `lora eval`.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/bf16_gemm.h"
#include "train/base.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "train/adapter.h"
#include "train/cli.h"
#include "train/dist.h"
#include "train/eval_generate.h"
#include "train/trainer.h"

static const char train_usage[] =
    "usage: lora train --config FILE.json [--set key=value]...\n"
    "  --config FILE     training config (see configs/ and SPEC); unknown or duplicate keys are errors\n"
    "  --set key=value   override a config key; dotted for nested keys (lora.r=8); the value is JSON\n"
    "                    (text for string keys: output_dir=runs/x); key= removes the key (steps=)\n"
    "Writes output_dir/metrics.jsonl and output_dir/checkpoint-<step>.h5 (the last is the adapter).\n"
    "Relative input paths in the file are taken from the working directory, else from the config file's\n"
    "folder; output_dir and --set values from the working directory only.\n"
    "\n"
    "config keys (nested ones as \"lora\": {\"r\": 8}):\n"
    "  key                        default      meaning\n";

lc_status lc_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    const char *config = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, c;
    if (!sets) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    optind = 1;
    opterr = 0;
    lc_status st = LC_STATUS_OK;
    while (!st && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'h':
            if (lc_dist_rank() == 0) {
                fputs(train_usage, stdout);
                lc_train_config_describe(stdout);
            }
            free(sets);
            return LC_STATUS_OK;
        default:
            st = lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora train --help)", argv[optind - 1]);
        }
    }
    if (!st && optind < argc) st = lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!st && !config) st = lc_error(LC_STATUS_USAGE, "--config FILE is required (see lora train --help)");
    lc_train_config cfg;
    if (!st) st = lc_train_config_load(&cfg, config, sets, n_sets);
    free(sets);
    // Every rank learns whether any could not read its config (a file
    // missing on one machine), so none waits for the others.
    if ((st = lc_dist_agree(st))) return st;
    if (lc_dist_rank() == 0) fputs(cfg.notes, stderr);
    st = lc_train_run(&cfg);
    lc_train_config_free(&cfg);
    return st;
}

static const char eval_usage[] =
    "usage: lora eval --model DIR|FILE.gguf [--adapter PATH] --data FILE.jsonl [--max-seq-len N] [--batch-size B]\n"
    "                 [--chat-template FILE.jinja] [--compute fp32|bf16]\n"
    "                 [--limit K]\n"
    "  prints {\"loss\":..,\"ppl\":..,\"tokens\":..,\"examples\":..,\"truncated\":..,\"left_out\":..}: mean\n"
    "  cross-entropy over completion tokens (for chat data, {\"messages\": [...]}, over the assistant messages) of\n"
    "  the examples scored, how many were cut to --max-seq-len (default: the model's context), and how many\n"
    "  the cut left without a completion token; --limit K: the first K examples only\n"
    "       lora eval --generate --model DIR|FILE.gguf [--adapter PATH] --data FILE.jsonl\n"
    "                 [--metric exact|number|contains] [--max-tokens N] [--limit K] [--predictions OUT.jsonl]\n"
    "                 [--batch-size B] [--chat-template FILE.jinja]\n"
    "  greedy-generates an answer to every prompt (batch-size prompts at a time; stopping at EOS, the\n"
    "  end of an assistant turn, or a blank line for plain prompts) and scores it against the reference\n"
    "  (the completion, or the last assistant message): exact (equal after trimming), number (the final\n"
    "  number, GSM8K's \"#### N\"; default) or contains; prints\n"
    "  {\"metric\":..,\"accuracy\":..,\"correct\":..,\"n\":..,\"tokens_per_s\":..}\n";

// lora eval --generate: accuracy of greedy answers.
static lc_status eval_generate(const lc_model *m, const lc_lora *lora, const lc_tokenizer *tok, const lc_chat *chat,
                               const lc_dataset *ds, const char *data, lc_metric metric, int max_tokens, int limit,
                               int batch, const char *predictions) {
    char **refs = NULL;
    bool is_chat;
    lc_status st = lc_gen_eval_refs_load(data, ds, &refs, &is_chat);
    if (st) return st;
    int32_t stop[16];
    int n_stop = lc_gen_eval_stop_ids(m, tok, is_chat ? chat : NULL, stop, 16);
    FILE *pf = NULL;
    if (predictions && !(pf = fopen(predictions, "w"))) {
        lc_gen_eval_refs_free(refs, ds->n_examples);
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot write: %s", predictions, strerror(errno));
    }
    lc_gen_eval_options o = {.metric = metric, .max_tokens = max_tokens, .limit = limit, .batch = batch,
                             .stop = stop, .n_stop = n_stop, .stop_blank_line = !is_chat, .predictions = pf};
    lc_gen_eval_result r;
    st = lc_eval_generate(m, lora, tok, ds, refs, &o, &r);
    if (pf && fclose(pf) && !st) st = lc_error(LC_STATUS_RUNTIME, "%s: write failed: %s", predictions, strerror(errno));
    lc_gen_eval_refs_free(refs, ds->n_examples);
    if (st) return st;
    printf("{\"metric\": \"%s\", \"accuracy\": %.6f, \"correct\": %d, \"n\": %d, \"tokens_per_s\": %.1f}\n",
           lc_metric_name(metric), r.n ? (double)r.correct / r.n : 0.0, r.correct, r.n,
           r.seconds > 0 ? r.n_generated / r.seconds : 0.0);
    return LC_STATUS_OK;
}

lc_status lc_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"adapter", required_argument, 0, 'a'},
        {"data", required_argument, 0, 'd'},        {"max-seq-len", required_argument, 0, 'n'},
        {"batch-size", required_argument, 0, 'b'},  {"help", no_argument, 0, 'h'},
        {"chat-template", required_argument, 0, 'C'}, {"compute", required_argument, 0, 'c'},
        {"generate", no_argument, 0, 'g'},          {"metric", required_argument, 0, 'M'},
        {"max-tokens", required_argument, 0, 'x'},  {"limit", required_argument, 0, 'l'},
        {"predictions", required_argument, 0, 'p'}, {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *chat_template = NULL, *predictions = NULL;
    const char *gen_only = NULL; // an option that needs --generate
    lc_compute compute = LC_COMPUTE_FP32;
    long max_seq_len = 0, batch = 8, max_tokens = 256, limit = 0;
    int generate = 0, metric = LC_METRIC_NUMBER;
    int c;
    lc_status st;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'a': adapter = optarg; break;
        case 'd': data = optarg; break;
        case 'C': chat_template = optarg; break;
        case 'n': if ((st = lc_cli_parse_int("--max-seq-len", optarg, 2, 1 << 20, &max_seq_len))) return st; break;
        case 'b': if ((st = lc_cli_parse_int("--batch-size", optarg, 1, 4096, &batch))) return st; break;
        case 'c':
            if (lc_compute_parse(optarg) < 0)
                return lc_error(LC_STATUS_USAGE, "--compute \"%s\" is not fp32 or bf16", optarg);
            compute = (lc_compute)lc_compute_parse(optarg);
            break;
        case 'g': generate = 1; break;
        case 'M':
            if ((metric = lc_metric_parse(optarg)) < 0)
                return lc_error(LC_STATUS_USAGE, "--metric \"%s\" is not exact, number or contains", optarg);
            gen_only = "--metric";
            break;
        case 'x':
            if ((st = lc_cli_parse_int("--max-tokens", optarg, 1, 1 << 20, &max_tokens))) return st;
            gen_only = "--max-tokens";
            break;
        case 'l':
            if ((st = lc_cli_parse_int("--limit", optarg, 1, 0x7fffffffL, &limit))) return st;
            break;
        case 'p': predictions = optarg; gen_only = "--predictions"; break;
        case 'h': fputs(eval_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora eval --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!model_dir || !data) return lc_error(LC_STATUS_USAGE, "--model DIR and --data FILE are required");
    if (gen_only && !generate) return lc_error(LC_STATUS_USAGE, "%s needs --generate", gen_only);

    lc_tokenizer *tok = NULL;
    lc_chat *chat = NULL;
    lc_model model;
    lc_lora lora = {0};
    lc_dataset ds = {0};
    int loaded = 0, has_lora = 0;
    if ((st = lc_base_load_tokenizer(&tok, model_dir))) goto done;
    if ((st = lc_model_load(&model, model_dir))) goto done;
    loaded = 1;
    lc_train_warn_model("lora eval", model_dir, &model);
    if (max_seq_len == 0) max_seq_len = model.cfg.max_position_embeddings;
    if (adapter) {
        unsigned differ;
        if ((st = lc_adapter_load(adapter, &model, NULL, LC_ADAPTER_USE_AS_IS, &lora, &differ))) goto done;
        has_lora = 1;
        if (differ & LC_ADAPTER_BASE)
            fprintf(stderr, "lora eval: note: %s was trained on a different base model\n", adapter);
    }
    char chat_error[512];
    if ((st = lc_train_load_chat(model_dir, chat_template, &chat, chat_error, sizeof chat_error))) goto done;
    lc_dataset_options opt = {.max_seq_len = (int)max_seq_len, .mask_prompt = true, .chat = chat,
                              .model_name = model_dir, .chat_error = chat_error[0] ? chat_error : NULL};
    if ((st = lc_dataset_load(&ds, data, tok, &opt))) goto done;
    if (limit && !generate) lc_dataset_keep_first(&ds, (int)limit); // --generate takes its own limit
    if ((st = lc_train_check_dataset(&ds, data, &model, "--max-seq-len", (int)max_seq_len))) goto done;
    if (compute == LC_COMPUTE_BF16 && lc_compute_effective(compute) != LC_COMPUTE_BF16)
        fprintf(stderr, "lora eval: note: --compute bf16: %s\n", lc_bf16_kernel_describe());
    if (generate) {
        st = eval_generate(&model, has_lora ? &lora : NULL, tok, chat, &ds, data, (lc_metric)metric, (int)max_tokens,
                           (int)limit, (int)batch, predictions);
        goto done;
    }
    lc_eval_result r;
    if ((st = lc_evaluate(&model, has_lora ? &lora : NULL, &ds, (int)batch, (int)max_seq_len, compute, 0, 1, NULL, NULL, &r))) {
        if (st == LC_STATUS_INPUT) lc_error_prefix("%s", data);
        goto done;
    }
    // What was scored: examples cut to --max-seq-len, and those the cut left
    // without a completion token (they add nothing to the loss).
    printf("{\"loss\": %.6f, \"ppl\": %.6f, \"tokens\": %lld, \"examples\": %d, \"truncated\": %d, \"left_out\": %d}\n",
           r.loss, exp(r.loss), (long long)r.n_targets, ds.n_examples - ds.n_no_targets, ds.n_truncated,
           ds.n_no_targets);
done:
    lc_dataset_free(&ds);
    lc_chat_free(chat);
    if (has_lora) lc_lora_free(&lora);
    if (loaded) lc_model_free(&model);
    lc_tokenizer_free(tok);
    return st;
}
