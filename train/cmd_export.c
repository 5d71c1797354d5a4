// `lora export`: the adapter as a PEFT folder, or merged into the base as a
// Hugging Face folder or one GGUF file.
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "train/base.h"
#include "export/export.h"
#include "data/tokenizer.h"
#include "train/adapter.h"
#include "train/cli.h"
#include "train/trainer.h"

static const char export_usage[] =
    "usage: lora export --model DIR|FILE.gguf --adapter PATH --out PATH --format peft|hf|gguf|gguf-lora\n"
    "                   [--dtype f32|f16|bf16|q8_0] [--base-name NAME]\n"
    "  --model         the base the adapter was trained on: a model folder or a GGUF file\n"
    "  --adapter PATH  checkpoint-<step>.h5, a run's output folder, or a PEFT adapter folder\n"
    "  --out PATH      a folder for peft and hf, a file for gguf and gguf-lora; missing folders are\n"
    "                  made, and a failed export removes what it created\n"
    "  --format        peft: adapter_model.safetensors + adapter_config.json (PeftModel.from_pretrained)\n"
    "                  hf:   the base with the adapter merged, a complete Hugging Face folder\n"
    "                  gguf: the merged model as one GGUF file for llama.cpp; from a GGUF base\n"
    "                        every tensor the adapter does not change keeps its stored type and\n"
    "                        the changed ones (a mixture of experts' whole stack) are in --dtype\n"
    "                  gguf-lora: the adapter alone for llama.cpp (llama-cli -m BASE.gguf --lora FILE)\n"
    "  --dtype         f32 (default), f16 or bf16 (q8_0 too for gguf: the merged weights);\n"
    "                  merging is always done in f32; gguf-lora is always f32\n"
    "  --base-name NAME  peft: base_model_name_or_path, e.g. a Hub id (default: config.json's\n"
    "                  _name_or_path when it is a Hub id org/name, else the model folder's name)\n";

// A file size as MB below a GB, else GB.
static double size_value(off_t n) { return (double)n / (n < 1000000000 ? 1e6 : 1e9); }
static const char *size_unit(off_t n) { return n < 1000000000 ? "MB" : "GB"; }

// The stored type of the first weight the adapter changes (F32 when none).
static lc_wtype adapted_type(const lc_model *m, const lc_lora *lora) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LC_LINEAR_KIND_COUNT; k++)
            if (lc_lora_get(lora, l, (lc_linear_kind)k)) return m->layers[l].lin[k].w.type;
    lc_lora_expert x;
    int cursor = 0;
    return lc_lora_expert_next(lora, m, &cursor, &x) ? x.lin->w.type : LC_WTYPE_F32;
}

// A name for JSON: valid UTF-8 without control characters (a Hub id or a path).
static bool printable_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 && *p >= 0xC2 ? 1 : (*p & 0xF0) == 0xE0 ? 2
              : (*p & 0xF8) == 0xF0 && *p <= 0xF4 ? 3 : -1;
        if (n < 0 || *p < 0x20 || *p == 0x7F) return false;
        unsigned cp = n == 0 ? *p : *p & (0x3F >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        // overlong forms, UTF-16 surrogates, beyond U+10FFFF
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

lc_status lc_cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},
        {"out", required_argument, 0, 'o'},   {"format", required_argument, 0, 'f'},
        {"dtype", required_argument, 0, 'd'}, {"base-name", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *adapter = NULL, *out = NULL, *format = NULL, *dtype_name = "f32";
    const char *base_name = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'a': adapter = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'd': dtype_name = optarg; break;
        case 'b': base_name = optarg; break;
        case 'h': fputs(export_usage, stdout); return LC_STATUS_OK;
        default: return lc_error(LC_STATUS_USAGE, "unknown or incomplete option %s (see lora export --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc) return lc_error(LC_STATUS_USAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!model_dir || !adapter || !out || !format)
        return lc_error(LC_STATUS_USAGE, "--model, --adapter, --out and --format are required (see lora export --help)");
    lc_dtype dtype;
    if (strcmp(dtype_name, "f32") == 0) dtype = LC_DTYPE_F32;
    else if (strcmp(dtype_name, "f16") == 0) dtype = LC_DTYPE_F16;
    else if (strcmp(dtype_name, "bf16") == 0) dtype = LC_DTYPE_BF16;
    else if (strcmp(dtype_name, "q8_0") == 0) dtype = (lc_dtype)LC_WTYPE_Q8_0;
    else return lc_error(LC_STATUS_USAGE, "--dtype must be f32, f16, bf16 or q8_0, not \"%s\"", dtype_name);
    int fmt = !strcmp(format, "peft") ? 0 : !strcmp(format, "hf") ? 1 : !strcmp(format, "gguf") ? 2
            : !strcmp(format, "gguf-lora") ? 3 : -1;
    if (fmt < 0) return lc_error(LC_STATUS_USAGE, "--format must be peft, hf, gguf or gguf-lora, not \"%s\"", format);
    if (base_name && fmt != 0) return lc_error(LC_STATUS_USAGE, "--base-name is for --format peft only");
    if (base_name && (!*base_name || !printable_utf8(base_name)))
        return lc_error(LC_STATUS_USAGE, "--base-name: expected a name (UTF-8 text without control characters)");
    if (dtype == (lc_dtype)LC_WTYPE_Q8_0 && fmt != 2)
        return lc_error(LC_STATUS_USAGE, "--dtype q8_0 is for --format gguf only");
    if (fmt == 3 && dtype != LC_DTYPE_F32)
        return lc_error(LC_STATUS_USAGE, "--format gguf-lora writes f32 tensors (as llama.cpp's converter does); drop --dtype");
    // A folder where a file is written (or the reverse) would fail only after the whole export.
    size_t out_len = strlen(out);
    bool slash = out_len > 0 && out[out_len - 1] == '/';
    if (fmt >= 2 && (slash || lc_dir_exists(out))) {
        while (out_len > 1 && out[out_len - 1] == '/') out_len--;
        return lc_error(LC_STATUS_INPUT, "%s: %s a folder; --format %s writes a file (e.g. %.*s/%s)", out,
                        lc_dir_exists(out) ? "is" : "names", format, (int)out_len, out,
                        fmt == 2 ? "model.gguf" : "adapter.gguf");
    }
    if (fmt < 2 && lc_file_exists(out) && !lc_dir_exists(out))
        return lc_error(LC_STATUS_INPUT, "%s: is a file; --format %s writes a folder", out, format);
    lc_status tst = fmt >= 2 ? lc_file_check_replaceable(out) : LC_STATUS_OK;
    if (tst) return tst; // a device or a pipe: refused before any work
    // Writing over the base or the adapter being read would lose it.
    struct stat so, si;
    const char *inputs[2] = {model_dir, adapter};
    bool out_exists = fmt >= 2 && stat(out, &so) == 0;
    for (int i = 0; i < 2 && out_exists; i++)
        if (stat(inputs[i], &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return lc_error(LC_STATUS_INPUT, "%s: is the %s being read (%s); write the export elsewhere", out,
                            i ? "adapter" : "base model", inputs[i]);

    lc_model model;
    lc_lora lora;
    lc_tokenizer *tok = NULL;
    unsigned differ;
    lc_status st = lc_model_load(&model, model_dir);
    if (st) return st;
    lc_train_warn_model("lora export", model_dir, &model);
    if ((st = lc_adapter_load(adapter, &model, NULL, LC_ADAPTER_USE_AS_IS, &lora, &differ))) goto done_model;
    if (differ & LC_ADAPTER_BASE)
        fprintf(stderr, "lora export: note: %s was trained on a different base model\n", adapter);
    // The base's size before the export, which may replace it.
    struct stat sb;
    bool base_sized = fmt == 2 && model.gguf && stat(model_dir, &sb) == 0;
    off_t base_size = base_sized ? sb.st_size : 0;
    if (fmt == 0) {
        st = lc_export_peft_named(out, model_dir, base_name, &model, &lora, dtype);
    } else if (fmt == 1) {
        st = lc_export_hf(out, model_dir, &model, &lora, dtype);
    } else if (fmt == 3) {
        st = lc_export_gguf_lora(out, model_dir, &model, &lora);
    } else {
        if (!(st = lc_base_load_tokenizer(&tok, model_dir)))
            st = lc_export_gguf(out, model_dir, &model, &lora, tok, dtype);
        lc_tokenizer_free(tok);
    }
    if (!st) fprintf(stderr, "lora export: wrote %s (%s, %s)\n", out, format, dtype_name);
    // A GGUF base's changed weights widened to f32 can make the file many
    // times larger: say so, naming the dtype that keeps it near the base's.
    struct stat sw;
    lc_wtype base_type = adapted_type(&model, &lora);
    if (!st && base_sized && dtype == LC_DTYPE_F32 && base_type != LC_WTYPE_F32 && stat(out, &sw) == 0 &&
        sw.st_size > base_size + base_size / 2)
        fprintf(stderr, "lora export: note: %.1f %s, the base %.1f %s: the merged weights are f32, the base's %s; "
                "--dtype %s writes them as %s\n", size_value(sw.st_size), size_unit(sw.st_size),
                size_value(base_size), size_unit(base_size), lc_wtype_name(base_type),
                base_type == LC_WTYPE_F16 ? "f16" : base_type == LC_WTYPE_BF16 ? "bf16" : "q8_0",
                base_type == LC_WTYPE_F16 ? "F16" : base_type == LC_WTYPE_BF16 ? "BF16" : "Q8_0");
    lc_lora_free(&lora);
done_model:
    lc_model_free(&model);
    return st;
}
