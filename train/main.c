// `lora`: LoRA fine-tuning toolkit. Dispatches subcommands; the only place a
// status becomes an exit code and a message on stderr.
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/parallel.h"
#include "autograd/bf16_gemm.h"
#include "autograd/blas.h"
#include "common/status.h"
#include "data/tokenizer.h"
#include "train/cli.h"

int lc_cli_verbose = 0;

static const char usage[] =
    "usage: lora [--verbose] COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  train      fine-tune a LoRA adapter from a JSON config (the base: a model folder or a GGUF file)\n"
    "  eval       mean loss of a model (and adapter) on a JSONL file\n"
    "  export     write an adapter as PEFT or a llama.cpp GGUF adapter, or merged as a Hugging Face folder or GGUF\n"
    "  generate   generate text from a model folder or GGUF file (--chat TEXT: one chat turn)\n"
    "  chat       a multi-turn conversation on stdin/stdout with the model's chat template\n"
    "  template   render a conversation with a chat template, exactly\n"
    "  tokenize   print the token ids of a text or a conversation\n"
    "  inspect    show what a model folder, safetensors, checkpoint, PEFT folder or GGUF holds\n"
    "\n"
    "Run 'lora COMMAND --help' for the options of a command.\n";

lc_status lc_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return lc_error(LC_STATUS_USAGE, "%s: expected an integer in %ld..%ld, got \"%s\"", opt, lo, hi, s);
    *out = v;
    return LC_STATUS_OK;
}

lc_status lc_cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return lc_error(LC_STATUS_USAGE, "%s: expected a number in %g..%g, got \"%s\"", opt, lo, hi, s);
    *out = v;
    return LC_STATUS_OK;
}

int main(int argc, char **argv) {
    lc_blas_pick_core(argv);
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            lc_cli_verbose = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "lora: unknown option %s\n%s", argv[i], usage);
            return LC_STATUS_USAGE;
        }
        i++;
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return LC_STATUS_USAGE;
    }
    if (lc_cli_verbose)
        fprintf(stderr, "lora: OpenBLAS %s, kernels for %s, %d threads (OpenBLAS single-threaded on each); "
                "bf16 products: %s\n",
                openblas_get_config(), openblas_get_corename(), lc_parallel_threads(), lc_bf16_kernel_describe());
    const char *cmd = argv[i];
    static const struct {
        const char *name;
        lc_status (*fn)(int, char **);
    } cmds[] = {
        {"train", lc_cmd_train},
        {"eval", lc_cmd_eval},
        {"export", lc_cmd_export},
        {"generate", lc_cmd_generate},
        {"tokenize", lc_cmd_tokenize},
        {"template", lc_cmd_template},
        {"chat", lc_cmd_chat},
        {"inspect", lc_cmd_inspect},
    };
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        if (strcmp(cmd, cmds[c].name) != 0) continue;
        lc_status st = cmds[c].fn(argc - i, argv + i);
        fflush(stdout);
        if (st) fprintf(stderr, "lora %s: %s\n", cmd, lc_error_message());
        return (int)st;
    }
    fprintf(stderr, "lora: unknown command \"%s\"\n%s", cmd, usage);
    return LC_STATUS_USAGE;
}
