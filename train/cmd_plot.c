// `lora plot RUN_DIR... [--out FILE.svg]`: a run's loss curve (or several
// runs' on one plot, to compare them) from metrics.jsonl, also while it runs.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "train/cli.h"
#include "train/plot.h"

static const char plot_usage[] =
    "usage: lora plot RUN_DIR... [--out FILE.svg]\n"
    "  draws training loss (raw and smoothed), eval loss, eval accuracy and the learning rate\n"
    "  from each RUN_DIR/metrics.jsonl, also for a run still going; default --out: RUN_DIR/loss.svg\n"
    "  for one run (lora train writes it there at each evaluation too); required for several\n";

lc_status lc_cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *out = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': fputs(plot_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora plot --help)",
                                 argv[optind - 1]);
        }
    }
    int n_runs = argc - optind;
    if (n_runs < 1) return lc_error(LC_STATUS_USAGE, "give at least one RUN_DIR (see lora plot --help)");
    if (n_runs > 1 && !out)
        return lc_error(LC_STATUS_USAGE, "%d runs: give --out FILE.svg for the comparison", n_runs);
    char default_out[4200];
    if (!out) {
        lc_status st = lc_path_join(default_out, sizeof default_out, argv[optind], "loss.svg");
        if (st) return st;
        out = default_out;
    }
    lc_plot_run *runs = calloc((size_t)n_runs, sizeof *runs);
    if (!runs) return lc_error(LC_STATUS_RUNTIME, "out of memory");
    lc_status st = LC_STATUS_OK;
    int loaded = 0;
    for (; !st && loaded < n_runs; loaded++)
        if ((st = lc_plot_run_load(&runs[loaded], argv[optind + loaded]))) break;
    if (!st) st = lc_plot_write(out, runs, n_runs);
    for (int i = 0; i < loaded; i++) lc_plot_run_free(&runs[i]);
    free(runs);
    if (!st) printf("%s\n", out);
    return st;
}
