// `lora template`: render a conversation with a chat template, exactly; and
// the helpers the chat-aware commands share (reading a messages file,
// loading a model's template).
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/base.h"
#include "model/gguf_model.h"
#include "common/file.h"
#include "common/json.h"
#include "data/chat.h"
#include "train/cli.h"

static const char template_usage[] =
    "usage: lora template (--model DIR | --template FILE.jinja) --messages FILE.json [options]\n"
    "  --model DIR              model folder or GGUF file: its chat template and special tokens\n"
    "  --template FILE.jinja    a template file (with --model: overrides the folder's template)\n"
    "  --messages FILE.json     a JSON list of {\"role\", \"content\"} messages, or an object with \"messages\"\n"
    "  --add-generation-prompt  end with the header of the assistant's reply\n"
    "  --bos-token TEXT         the bos_token variable (default: the model's)\n"
    "  --eos-token TEXT         the eos_token variable (default: the model's)\n"
    "  --var NAME=JSON          another variable, e.g. --var 'tools=[]' (repeatable)\n"
    "stdout holds the rendered text exactly, nothing added.\n";

lc_status lc_cli_read_messages(const char *path, cJSON **root, const cJSON **messages) {
    *root = NULL;
    *messages = NULL;
    char *text = NULL;
    size_t len = 0;
    lc_status st = lc_file_read(path, 256u << 20, &text, &len);
    if (st) return st;
    if (lc_json_has_nul_escape(text, len)) st = lc_error(LC_STATUS_INPUT, "%s: \\u0000 (NUL) in a string is not supported", path);
    if (!st) st = lc_json_parse(text, len, path, root);
    free(text);
    if (st) return st;
    const cJSON *m = *root;
    if (cJSON_IsObject(m)) m = cJSON_GetObjectItemCaseSensitive(m, "messages");
    if (!m) {
        cJSON_Delete(*root);
        *root = NULL;
        return lc_error(LC_STATUS_INPUT, "%s: expected a list of messages or an object with \"messages\"", path);
    }
    if ((st = lc_chat_check_messages(m, path))) {
        cJSON_Delete(*root);
        *root = NULL;
        return st;
    }
    *messages = m;
    return LC_STATUS_OK;
}

lc_status lc_cli_load_chat(const char *model_dir, const char *template_path, const char *option, lc_chat **out) {
    *out = NULL;
    lc_status st;
    if (model_dir && (st = lc_model_path_check(model_dir))) return st;
    st = model_dir ? lc_base_load_chat(out, model_dir, template_path) : lc_chat_from_file(out, template_path);
    if (st) return st;
    if (!*out)
        return lc_error(LC_STATUS_INPUT, "%s has no chat template (tokenizer_config.json chat_template, "
                        "chat_template.jinja or a GGUF's tokenizer.chat_template); give one with %s FILE.jinja",
                        model_dir, option);
    return LC_STATUS_OK;
}

lc_status lc_cmd_template(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"template", required_argument, 0, 'T'},
        {"messages", required_argument, 0, 'M'},  {"add-generation-prompt", no_argument, 0, 'g'},
        {"bos-token", required_argument, 0, 'b'}, {"eos-token", required_argument, 0, 'e'},
        {"var", required_argument, 0, 'v'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *tmpl = NULL, *msgs = NULL, *bos = NULL, *eos = NULL;
    const char *vars[64];
    int n_vars = 0, agp = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'T': tmpl = optarg; break;
        case 'M': msgs = optarg; break;
        case 'g': agp = 1; break;
        case 'b': bos = optarg; break;
        case 'e': eos = optarg; break;
        case 'v':
            if (n_vars == 64) return lc_error(LC_STATUS_USAGE, "at most 64 --var options");
            vars[n_vars++] = optarg;
            break;
        case 'h': fputs(template_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora template --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!model_dir && !tmpl) return lc_error(LC_STATUS_USAGE, "give --model DIR or --template FILE.jinja");
    if (!msgs) return lc_error(LC_STATUS_USAGE, "--messages FILE.json is required");

    lc_chat *chat = NULL;
    cJSON *root = NULL, *v = NULL;
    const cJSON *messages;
    char *out = NULL;
    size_t n = 0;
    lc_status st = lc_cli_load_chat(model_dir, tmpl, "--template", &chat);
    if (!st) st = lc_cli_read_messages(msgs, &root, &messages);
    for (int k = 0; !st && k < 2; k++) {
        const char *val = k == 0 ? bos : eos;
        if (!val) continue;
        if (!(v = cJSON_CreateString(val))) st = lc_error(LC_STATUS_RUNTIME, "out of memory");
        else st = lc_chat_set_var(chat, k == 0 ? "bos_token" : "eos_token", v);
        cJSON_Delete(v);
        v = NULL;
    }
    for (int k = 0; !st && k < n_vars; k++) {
        const char *eq = strchr(vars[k], '=');
        if (!eq || eq == vars[k]) {
            st = lc_error(LC_STATUS_USAGE, "--var %s: expected NAME=JSON", vars[k]);
            break;
        }
        char name[128];
        if (eq - vars[k] >= (long)sizeof name) {
            st = lc_error(LC_STATUS_USAGE, "--var: a name longer than %zu bytes", sizeof name - 1);
            break;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - vars[k]), vars[k]);
        if (!strcmp(name, "messages") || !strcmp(name, "add_generation_prompt")) {
            st = lc_error(LC_STATUS_USAGE, "--var %s: give it with %s", name,
                          name[0] == 'm' ? "--messages FILE.json" : "--add-generation-prompt");
            break;
        }
        const char *end = NULL;
        v = lc_json_has_nul_escape(eq + 1, strlen(eq + 1)) ? NULL : cJSON_ParseWithOpts(eq + 1, &end, true);
        if (!v) st = lc_error(LC_STATUS_USAGE, "--var %s: the value is not JSON (or holds \\u0000)", vars[k]);
        else st = lc_chat_set_var(chat, name, v);
        cJSON_Delete(v);
        v = NULL;
    }
    if (!st) st = lc_chat_render(chat, messages, -1, agp, &out, &n);
    if (!st) {
        fwrite(out, 1, n, stdout);
        fflush(stdout);
    }
    free(out);
    cJSON_Delete(root);
    lc_chat_free(chat);
    return st;
}
