// Generates tests/fixtures/tokenizer_cases.jsonl: expected ids for tokenizer
// edge cases (added tokens inside text, rstrip, whitespace runs, digits),
// from an independent implementation, Hugging Face's tokenizers.js.
//
//   mkdir /tmp/tokref && cd /tmp/tokref && npm install @huggingface/tokenizers@0.2.0
//   node /path/to/tests/reference/gen_tokenizer_fixtures.mjs ../shared > tests/fixtures/tokenizer_cases.jsonl
//
// (run from the folder holding node_modules; the package is resolved from the
// current directory). Falcon is left out: tokenizers.js does not implement
// the Contiguous split behavior its Punctuation/Digits pre-tokenizers use.
import { createRequire } from "node:module";
import { readFileSync, existsSync } from "node:fs";

const require = createRequire(process.cwd() + "/");
const { Tokenizer } = require("@huggingface/tokenizers");
const shared = process.argv[2] || "../shared";

const CASES = {
  "tokenizers/phi-3-mini": [
    "<|user|>\nHello<|end|>\n<|assistant|>",
    "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
    "Hi <|endoftext|> there",
    "text</s>   more",
    "<s>start",
    "  two leading spaces <|end|>   ",
  ],
  "tokenizers/llama2": ["Hello <s> world", "<s>Hello", "a </s>", "tab\there\nnew line"],
  "tokenizers/gpt2": ["code:\n\tif x:\n        return 1\n", "a<|endoftext|>b", "it's 2024's best", "\u00a0nbsp and\u3000ideographic"],
  "tokenizers/phi-2": ["a                    b", "def f():\n        pass", "x<|endoftext|>  y", "\t\t\ttabs"],
  "tokenizers/olmo": ["Hello world", "<|padding|>x", "numbers 1234567890", "    indented\n\n\n"],
  "models/stories260K": ["Once upon a time", "The cat sat. The dog ran!"],
};

for (const [dir, texts] of Object.entries(CASES)) {
  const json = JSON.parse(readFileSync(`${shared}/${dir}/tokenizer.json`, "utf8"));
  const cfgPath = `${shared}/${dir}/tokenizer_config.json`;
  const cfg = existsSync(cfgPath) ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
  const tok = new Tokenizer(json, cfg);
  for (const text of texts) {
    for (const special of [false, true]) {
      const ids = tok.encode(text, { add_special_tokens: special }).ids.map(Number);
      const decoded = tok.decode(ids, { skip_special_tokens: false });
      console.log(JSON.stringify({ tokenizer: dir, text, add_special: special, ids, decoded }));
    }
  }
}
