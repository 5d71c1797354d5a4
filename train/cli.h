// Subcommands of the `lora` executable. Each returns a status; main turns it
// into the exit code and prints the one-line message.
#ifndef LC_CLI_H
#define LC_CLI_H

#include "common/status.h"

lc_status lc_cmd_generate(int argc, char **argv);
lc_status lc_cmd_tokenize(int argc, char **argv);
lc_status lc_cmd_inspect(int argc, char **argv);
lc_status lc_cmd_train(int argc, char **argv);
lc_status lc_cmd_eval(int argc, char **argv);
lc_status lc_cmd_export(int argc, char **argv);

// Set by --verbose before the subcommand: notes on kernels and timings.
extern int lc_cli_verbose;

// Parses a whole decimal/float argument or fails with a usage error naming the option.
lc_status lc_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
lc_status lc_cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out);


#endif
