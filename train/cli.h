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
lc_status lc_cmd_template(int argc, char **argv);
lc_status lc_cmd_chat(int argc, char **argv);
lc_status lc_cmd_plot(int argc, char **argv);

// `lora inspect` of a run (cmd_inspect_run.c): whether dir is a run's
// output folder (*is_run 1: checkpoints, metrics or a run index, which win
// over a config.json kept beside them) or a model folder (0: config.json);
// an error for a folder that is neither or cannot be read. Then a summary of
// the run; and, for one checkpoint, what its run was.
struct lc_checkpoint_info;
lc_status lc_inspect_dir_kind(const char *dir, int *is_run);
lc_status lc_inspect_run_dir(const char *dir);
void lc_inspect_checkpoint_run(const char *path, const struct lc_checkpoint_info *info);
// Text read from a file, printed with its control characters escaped (\x1b,
// \n) so it cannot drive the terminal; keep_lines leaves newlines and tabs
// as they are (a JSON document's layout).
void lc_inspect_print_text(const char *s, size_t n, int keep_lines);
// The same into out (cut short to fit), for a padded printf field.
const char *lc_inspect_text(char *out, size_t cap, const char *s);

// Set by --verbose before the subcommand: notes on kernels and timings.
extern int lc_cli_verbose;

// Parses a whole decimal/float argument or fails with a usage error naming the option.
lc_status lc_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
lc_status lc_cli_parse_float(const char *opt, const char *s, double lo, double hi, double *out);

// Chat helpers (cmd_template.c). A messages file is a JSON list of messages or
// an object with "messages"; *messages points into *root (caller deletes root).
struct cJSON;
struct lc_chat;
lc_status lc_cli_read_messages(const char *path, struct cJSON **root, const struct cJSON **messages);
// The chat template of a model folder (template_path overrides it), or of a
// template file alone when model_dir is NULL; a folder without one is an error
// that tells to give one with `option` (the command's own).
lc_status lc_cli_load_chat(const char *model_dir, const char *template_path, const char *option, struct lc_chat **out);

#endif
