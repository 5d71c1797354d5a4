// Encodes and decodes with Hugging Face's tokenizers.js, an implementation
// independent of lora.c's, for reference scripts (greedy_reference.py).
// stdin: {"tokenizer": PATH, "encode": [text...], "decode": [[id...]...]}
// stdout: {"encode": [[id...]...], "decode": [text...]}  (encode adds BOS as
// the tokenizer's post-processor says; decode skips special tokens)
//   run from a folder holding node_modules with @huggingface/tokenizers@0.2.0
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(process.cwd() + "/");
const { Tokenizer } = require("@huggingface/tokenizers");
const req = JSON.parse(readFileSync(0, "utf8"));
const tok = new Tokenizer(JSON.parse(readFileSync(req.tokenizer + "/tokenizer.json", "utf8")),
                          JSON.parse(readFileSync(req.tokenizer + "/tokenizer_config.json", "utf8")));
const out = {
  encode: (req.encode || []).map((t) => tok.encode(t).ids),
  decode: (req.decode || []).map((ids) => tok.decode(ids, { skip_special_tokens: true })),
};
process.stdout.write(JSON.stringify(out) + "\n");
