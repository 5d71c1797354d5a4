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
#include "train/dist.h"
#include "version.h" // generated at build time: LC_VERSION, LC_COMMIT

int lc_cli_verbose = 0;

static const char usage[] =
    "usage: lora [--verbose] COMMAND [options]\n"
    "       lora --version\n"
    "\n"
    "commands:\n"
    "  train      fine-tune a LoRA adapter from a JSON config (the base: a model folder or a GGUF file)\n"
    "  eval       mean loss of a model (and adapter) on a JSONL file\n"
    "  export     write an adapter as PEFT or a llama.cpp GGUF adapter, or merged as a Hugging Face folder or GGUF\n"
    "  generate   continue a prompt (--prompt, --prompt-file, stdin) with a model folder or GGUF file;\n"
    "             --chat TEXT: one chat turn\n"
    "  chat       a multi-turn conversation on stdin/stdout with the model's chat template\n"
    "  template   render a conversation with a chat template, exactly\n"
    "  tokenize   print the token ids of a text or a conversation\n"
    "  inspect    show what a model folder, safetensors, checkpoint, PEFT folder or GGUF holds\n"
    "  plot       draw a run's loss curve (or compare runs) as SVG from metrics.jsonl\n"
    "\n"
    "Run 'lora COMMAND --help' for the options of a command; 'lora --version' prints the version.\n";

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

// A failure: one line on stderr (the rank named when it is not rank 0), on
// the rank that found it. With several ranks, one that failed alone ends the
// whole job, since the others may be waiting for it in a collective.
static int fail(const char *cmd, lc_status st) {
    if (lc_dist_size() > 1 && !lc_dist_error_is_shared()) {
        fprintf(stderr, "lora %s: rank %d: %s\n", cmd, lc_dist_rank(), lc_error_message());
        fflush(stderr);
        lc_dist_abort((int)st);
    }
    if (!lc_dist_error_is_quiet()) {
        if (lc_dist_rank() > 0) fprintf(stderr, "lora %s: rank %d: %s\n", cmd, lc_dist_rank(), lc_error_message());
        else fprintf(stderr, "lora %s: %s\n", cmd, lc_error_message());
    }
    lc_dist_finalize();
    return (int)st;
}

int main(int argc, char **argv) {
    lc_blas_pick_core(argv);
    // After the re-execution above, which must happen before MPI starts.
    if (lc_dist_init(&argc, &argv)) {
        fprintf(stderr, "lora: %s\n", lc_error_message());
        return LC_STATUS_RUNTIME;
    }
    atexit(lc_dist_finalize); // also after a usage error: mpirun expects every rank to finalize
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            lc_cli_verbose = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            if (lc_dist_rank() == 0) {
                if (*LC_COMMIT) printf("lora.c %s (commit %s)\n", LC_VERSION, LC_COMMIT);
                else printf("lora.c %s\n", LC_VERSION);
            }
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            if (lc_dist_rank() == 0) fputs(usage, stdout);
            return 0;
        } else {
            if (lc_dist_rank() == 0) fprintf(stderr, "lora: unknown option %s (see lora --help)\n", argv[i]);
            return LC_STATUS_USAGE;
        }
        i++;
    }
    if (i >= argc) {
        if (lc_dist_rank() == 0) fputs(usage, stderr);
        return LC_STATUS_USAGE;
    }
    if (lc_cli_verbose && lc_dist_rank() == 0) {
        char mpi[64];
        if (!lc_dist_compiled()) snprintf(mpi, sizeof mpi, "not compiled in");
        else snprintf(mpi, sizeof mpi, "compiled in, %d rank%s", lc_dist_size(), lc_dist_size() == 1 ? "" : "s");
        fprintf(stderr, "lora: OpenBLAS %s, kernels for %s, %d threads (OpenBLAS single-threaded on each); "
                "bf16 products: %s; MPI: %s\n",
                openblas_get_config(), openblas_get_corename(), lc_parallel_threads(), lc_bf16_kernel_describe(), mpi);
    }
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
        {"plot", lc_cmd_plot},
    };
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        if (strcmp(cmd, cmds[c].name) != 0) continue;
        lc_status st;
        if (lc_dist_size() > 1 && cmds[c].fn != lc_cmd_train)
            st = lc_dist_error_shared(lc_error(LC_STATUS_USAGE, "only lora train runs across MPI ranks; run it "
                                               "without mpirun"));
        else
            st = cmds[c].fn(argc - i, argv + i);
        fflush(stdout);
        if (st) return fail(cmd, st);
        lc_dist_finalize();
        return 0;
    }
    if (lc_dist_rank() == 0) fprintf(stderr, "lora: unknown command \"%s\" (see lora --help)\n", cmd);
    return LC_STATUS_USAGE;
}
