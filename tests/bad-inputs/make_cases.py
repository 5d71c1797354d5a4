#!/usr/bin/env python3
"""Writes the bad-input corpus: one folder per failure, each holding the
inputs, `args` (the lora command line, one argument a line) and `expect`
(exit status, then a text the single stderr line must contain). Optional:
`setup` (actions run first, one a line: `lora ARG...`, `mkdir DIR`,
`copy SRC DST`, `truncate FILE BYTES`, `flip FILE OFFSET`) and `exists`
(paths that must exist afterwards, e.g. the checkpoint a failure must keep).
Placeholders: @CASE@ (a scratch copy of the case folder), @SHARED@ (../shared).
tests/test_bad_inputs.c runs them. Plain Python 3 (struct and json only):
    python3 tests/bad-inputs/make_cases.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# A tiny GPT-2 of our own in its checkpoint layout (Conv1D weights [in, out],
# keys without "transformer."): C 8, 1 layer, 2 heads, MLP 16, vocabulary 512
# (stories260K's tokenizer is copied in by the case's setup).
GPT2_CONFIG = {"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_inner": 16, "n_positions": 64,
               "vocab_size": 512, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
               "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
GPT2_SHAPES = {
    "wte.weight": [512, 8], "wpe.weight": [64, 8], "ln_f.weight": [8], "ln_f.bias": [8],
    "h.0.ln_1.weight": [8], "h.0.ln_1.bias": [8], "h.0.ln_2.weight": [8], "h.0.ln_2.bias": [8],
    "h.0.attn.c_attn.weight": [8, 24], "h.0.attn.c_attn.bias": [24],
    "h.0.attn.c_proj.weight": [8, 8], "h.0.attn.c_proj.bias": [8],
    "h.0.mlp.c_fc.weight": [8, 16], "h.0.mlp.c_fc.bias": [16],
    "h.0.mlp.c_proj.weight": [16, 8], "h.0.mlp.c_proj.bias": [8],
}

# A tiny Llama of our own (never a copy of ../shared): C 8, F 16, 1 layer,
# 2 heads of 4, 1 KV head, vocabulary 16.
CONFIG = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "vocab_size": 16,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
SHAPES = {
    "model.embed_tokens.weight": [16, 8], "model.norm.weight": [8],
    "model.layers.0.input_layernorm.weight": [8], "model.layers.0.post_attention_layernorm.weight": [8],
    "model.layers.0.self_attn.q_proj.weight": [8, 8], "model.layers.0.self_attn.k_proj.weight": [4, 8],
    "model.layers.0.self_attn.v_proj.weight": [4, 8], "model.layers.0.self_attn.o_proj.weight": [8, 8],
    "model.layers.0.mlp.gate_proj.weight": [16, 8], "model.layers.0.mlp.up_proj.weight": [16, 8],
    "model.layers.0.mlp.down_proj.weight": [8, 16],
}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def safetensors(shapes, header_edit=None, tensors_dtype="F32"):
    """(header dict, bytes) of a valid file, the header optionally edited before packing."""
    header, off = {}, 0
    for name in sorted(shapes):
        nbytes = 4 * numel(shapes[name])
        header[name] = {"dtype": tensors_dtype, "shape": shapes[name], "data_offsets": [off, off + nbytes]}
        off += nbytes
    data = b"".join(struct.pack("<f", 0.01 * (i % 97)) for i in range(off // 4))
    if header_edit:
        header_edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def gguf(kv_string_len=None, magic=b"GGUF"):
    """A small GGUF v3: one string KV and one F32 tensor."""
    key, value = b"general.architecture", b"llama"
    out = magic + struct.pack("<IQQ", 3, 1, 1)
    out += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)
    out += struct.pack("<Q", kv_string_len if kv_string_len is not None else len(value)) + value
    name = b"token_embd.weight"
    out += struct.pack("<Q", len(name)) + name + struct.pack("<I", 2) + struct.pack("<QQ", 8, 16)
    out += struct.pack("<IQ", 0, 0)
    out += b"\0" * (-len(out) % 32)
    return out + struct.pack("<128f", *[0.5] * 128)


GGUF_TYPES = {"u32": 4, "f32": 6, "bool": 7, "string": 8, "array": 9}


def gguf_model(edit_kv=None, edit_tensors=None, align=32):
    """The tiny Llama above as a GGUF v3 base (llama.cpp's names, F32, a 16-piece
    byte-level vocabulary); edit_kv / edit_tensors change the lists before packing:
    KVs (key, type, value), tensors [name, ne (ggml order), ggml type, offset or None]."""
    kvs = [("general.architecture", "string", "llama"), ("general.type", "string", "model"),
           ("llama.block_count", "u32", 1), ("llama.embedding_length", "u32", 8),
           ("llama.feed_forward_length", "u32", 16), ("llama.attention.head_count", "u32", 2),
           ("llama.attention.head_count_kv", "u32", 1), ("llama.attention.key_length", "u32", 4),
           ("llama.context_length", "u32", 64), ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
           ("tokenizer.ggml.model", "string", "gpt2"), ("tokenizer.ggml.pre", "string", "gpt-2"),
           ("tokenizer.ggml.tokens", "array", ("string", [chr(ord("a") + i) for i in range(16)])),
           ("tokenizer.ggml.merges", "array", ("string", [])), ("tokenizer.ggml.bos_token_id", "u32", 0),
           ("tokenizer.ggml.eos_token_id", "u32", 1)]
    ne = {"token_embd.weight": [8, 16], "output_norm.weight": [8], "blk.0.attn_norm.weight": [8],
          "blk.0.ffn_norm.weight": [8], "blk.0.attn_q.weight": [8, 8], "blk.0.attn_k.weight": [8, 4],
          "blk.0.attn_v.weight": [8, 4], "blk.0.attn_output.weight": [8, 8], "blk.0.ffn_gate.weight": [8, 16],
          "blk.0.ffn_up.weight": [8, 16], "blk.0.ffn_down.weight": [16, 8]}
    tensors = [[name, shape, 0, None] for name, shape in ne.items()]
    if edit_kv:
        kvs = edit_kv(kvs)
    if edit_tensors:
        edit_tensors(tensors)

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def value(t, v):
        if t == "string":
            return s(v)
        if t == "u32":
            return struct.pack("<I", v)
        if t == "f32":
            return struct.pack("<f", v)
        if t == "bool":
            return struct.pack("<?", v)
        it, items = v
        return struct.pack("<IQ", GGUF_TYPES[it], len(items)) + b"".join(value(it, x) for x in items)

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", GGUF_TYPES[t]) + value(t, v)
    data, off = b"", 0
    for name, shape, typ, at in tensors:
        n = numel(shape)
        nbytes = 4 * n if typ == 0 else n // 256 * 84  # F32, or Q2_K blocks
        at = off if at is None else at
        out += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", typ, at)
        chunk = struct.pack("<%df" % n, *[0.01 * (i % 7) for i in range(n)]) if typ == 0 else b"\0" * nbytes
        data += chunk + b"\0" * (-len(chunk) % align)
        off += len(chunk) + (-len(chunk) % align)
    out += b"\0" * (-len(out) % align)
    return out + data


def write(case, files, args, status, text, setup=(), exists=()):
    d = os.path.join(HERE, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for path, content in files.items():
        full = os.path.join(d, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
    with open(os.path.join(d, "args"), "w") as f:
        f.write("\n".join(args) + "\n")
    with open(os.path.join(d, "expect"), "w") as f:
        f.write(f"{status}\n{text}\n")
    if setup:
        with open(os.path.join(d, "setup"), "w") as f:
            f.write("\n".join(setup) + "\n")
    if exists:
        with open(os.path.join(d, "exists"), "w") as f:
            f.write("\n".join(exists) + "\n")


def model_case(case, st_bytes, status, text, config=None, extra=None):
    files = {"model/config.json": json.dumps(config or CONFIG), "model/model.safetensors": st_bytes}
    files.update(extra or {})
    write(case, files, ["inspect", "@CASE@/model"], status, text)


def train_config(data, **over):
    cfg = {"model": "@SHARED@/models/stories260K", "train_data": data, "output_dir": "@CASE@/run",
           "lora": {"r": 2, "alpha": 4}, "batch_size": 2, "max_seq_len": 256, "steps": 12, "seed": 1}
    cfg.update(over)
    return json.dumps(cfg)


def main():
    for name in os.listdir(HERE):
        if os.path.isdir(os.path.join(HERE, name)):
            shutil.rmtree(os.path.join(HERE, name))
    good = safetensors(SHAPES)

    # safetensors
    model_case("st-truncated", good[: len(good) - 100], 2, "model.safetensors: tensor ")
    model_case("st-header-past-end", struct.pack("<Q", 1 << 20) + good[8:], 2, "exceeds the file")
    model_case("st-header-length-huge", struct.pack("<Q", (1 << 64) - 8) + good[8:], 2, "exceeds the file")
    model_case("st-too-short", good[:5], 2, "truncated")
    model_case("st-offsets-past-end",
               safetensors(SHAPES, lambda h: h["model.norm.weight"].update(data_offsets=[0, 1 << 40])), 2,
               "tensor model.norm.weight: data_offsets")
    model_case("st-offsets-reversed",
               safetensors(SHAPES, lambda h: h["model.norm.weight"].update(data_offsets=[64, 32])), 2,
               "tensor model.norm.weight: data_offsets")
    def overlap(h):
        h["model.norm.weight"]["data_offsets"] = list(h["model.embed_tokens.weight"]["data_offsets"][:1]) + [32]
    model_case("st-overlapping-tensors", safetensors(SHAPES, overlap), 2, "overlap")
    model_case("st-shape-overflow",
               safetensors(SHAPES, lambda h: h["model.norm.weight"].update(shape=[1 << 62, 1 << 62, 16])), 2,
               "tensor model.norm.weight: ")
    model_case("st-bytes-disagree-with-shape",
               safetensors(SHAPES, lambda h: h["model.norm.weight"].update(shape=[9])), 2,
               "tensor model.norm.weight: ")
    model_case("st-unknown-dtype",
               safetensors(SHAPES, lambda h: h["model.norm.weight"].update(dtype="F12")), 2, "unknown dtype F12")
    model_case("st-header-not-json", struct.pack("<Q", 16) + b'{"a": "unterm' + b"   " + good[24:], 2,
               "invalid JSON")
    index = lambda target: json.dumps({"weight_map": {"model.norm.weight": target}})
    write("st-shard-escapes-folder", {"model/config.json": json.dumps(CONFIG),
                                       "model/model.safetensors.index.json": index("../outside.safetensors")},
          ["inspect", "@CASE@/model"], 2, "is not a file name in the model folder")
    write("st-shard-absolute-path", {"model/config.json": json.dumps(CONFIG),
                                      "model/model.safetensors.index.json": index("/etc/passwd")},
          ["inspect", "@CASE@/model"], 2, "is not a file name in the model folder")

    # config.json
    model_case("cfg-deep-nesting", good, 2, "config.json: invalid JSON",
               config=None, extra={"model/config.json": "[" * 5000 + "]" * 5000})
    model_case("cfg-absurd-size", good, 2, "\"hidden_size\" is 1000000000000, outside",
               config=dict(CONFIG, hidden_size=10**12))
    model_case("cfg-disagrees-with-tensors", good, 2,
               "tensor model.layers.0.mlp.gate_proj.weight has shape [16, 8], config.json implies [24, 8]",
               config=dict(CONFIG, intermediate_size=24))
    model_case("cfg-unsupported-model-type", good, 2, "model_type \"mamba\" is not supported",
               config=dict(CONFIG, model_type="mamba"))
    model_case("cfg-heads-do-not-divide", good, 2, "the 2 attention heads are not a multiple of the 3 key/value heads",
               config=dict(CONFIG, num_key_value_heads=3))
    model_case("cfg-not-an-object", good, 2, "config.json: not a JSON object", extra={"model/config.json": "[1, 2]"})

    # tokenizer.json
    write("tok-missing", {"model/config.json": json.dumps(CONFIG), "model/model.safetensors": good},
          ["generate", "--model", "@CASE@/model", "--prompt", "x"], 2, "tokenizer.json is missing")
    tok = lambda text: {"tokenizer.json": text}
    tok_args = ["tokenize", "--tokenizer", "@CASE@/tokenizer.json", "--text", "hello"]
    write("tok-malformed-json", tok('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ['), tok_args, 2,
          "tokenizer.json")
    write("tok-unterminated-string", tok('{"model": {"type": "BPE", "vocab": {"a'), tok_args, 2, "tokenizer.json")
    write("tok-deep-nesting", tok('{"model": ' + "[" * 5000 + "]" * 5000 + "}"), tok_args, 2, "tokenizer.json")
    write("tok-id-out-of-range",
          tok(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1 << 40}, "merges": []}})), tok_args, 2,
          "tokenizer.json")

    # training data
    data_args = ["train", "--config", "@CASE@/config.json"]
    good_line = json.dumps({"prompt": "Once upon", "completion": " a time"}) + "\n"
    write("jsonl-invalid-line", {"data.jsonl": good_line * 2 + '{"prompt": "x", "completion": }\n',
                                 "config.json": train_config("@CASE@/data.jsonl")}, data_args, 2, "data.jsonl:3: ")
    write("jsonl-missing-completion", {"data.jsonl": good_line + '{"prompt": "only a prompt"}\n',
                                       "config.json": train_config("@CASE@/data.jsonl")}, data_args, 2,
          "data.jsonl:2: ")
    write("jsonl-empty", {"data.jsonl": "", "config.json": train_config("@CASE@/data.jsonl")}, data_args, 2,
          "data.jsonl")
    write("jsonl-deep-nesting", {"data.jsonl": good_line + '{"prompt": ' + "[" * 5000 + "]" * 5000 + "}\n",
                                 "config.json": train_config("@CASE@/data.jsonl")}, data_args, 2, "data.jsonl:2: ")
    write("jsonl-not-a-string", {"data.jsonl": '{"prompt": 5, "completion": "x"}\n',
                                 "config.json": train_config("@CASE@/data.jsonl")}, data_args, 2, "data.jsonl:1: ")
    write("config-unknown-key", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl", lerning_rate=1)},
          data_args, 2, "unknown key \"lerning_rate\"")
    write("config-unknown-target", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl",
                                                                lora={"r": 2, "targets": ["qkv"]})},
          data_args, 2, "c_attn, c_proj, c_fc (GPT-2), query_key_value")
    # A target the model's family does not have (known only once the model is loaded).
    write("config-target-not-in-family",
          {"gpt2/config.json": json.dumps(GPT2_CONFIG), "gpt2/model.safetensors": safetensors(GPT2_SHAPES),
           "data.jsonl": good_line * 4,
           "config.json": train_config("@CASE@/data.jsonl", model="@CASE@/gpt2", max_seq_len=64,
                                       lora={"r": 2, "targets": ["c_attn", "q_proj"]})},
          data_args, 2, "config.json: lora.targets: gpt2 models have no q_proj module (theirs: c_proj, c_fc, c_attn)",
          setup=["copy @SHARED@/models/stories260K/tokenizer.json @CASE@/gpt2/tokenizer.json"])

    # PEFT adapters (on stories260K)
    peft_args = ["generate", "--model", "@SHARED@/models/stories260K", "--adapter", "@CASE@/peft", "--prompt", "x"]
    prefix = "base_model.model.model.layers.{}.self_attn.q_proj.lora_{}.weight"
    lora = {}
    for l in range(5):
        lora[prefix.format(l, "A")] = [4, 64]
        lora[prefix.format(l, "B")] = [64, 4]
    peft_cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
                "target_modules": ["q_proj"], "bias": "none", "use_rslora": False}
    peft = lambda cfg, st: {"peft/adapter_config.json": json.dumps(cfg), "peft/adapter_model.safetensors": st}
    write("peft-rank-disagrees", peft(dict(peft_cfg, r=8), safetensors(lora)), peft_args, 2,
          "adapter_config.json says r=8")
    write("peft-targets-disagree", peft(dict(peft_cfg, target_modules=["q_proj", "v_proj"]), safetensors(lora)),
          peft_args, 2, "v_proj")
    write("peft-not-lora", peft(dict(peft_cfg, peft_type="IA3"), safetensors(lora)), peft_args, 2, "IA3")
    write("peft-target-not-in-family", peft(dict(peft_cfg, target_modules=["c_attn"]), safetensors(lora)), peft_args,
          2, "\"c_attn\", which is not supported (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
          "down_proj, the modules of llama models)")
    write("peft-truncated-tensors", peft(peft_cfg, safetensors(lora)[:-64]), peft_args, 2,
          "adapter_model.safetensors")

    # checkpoints
    write("ckpt-not-hdf5", {"ckpt.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 100}, ["inspect", "@CASE@/ckpt.h5"], 2,
          "ckpt.h5: not a lora.c checkpoint")
    ck_setup = ["lora train --config @CASE@/config.json --set steps=2"]
    write("ckpt-truncated", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl")},
          ["generate", "--model", "@SHARED@/models/stories260K", "--adapter", "@CASE@/run/checkpoint-2.h5"], 2,
          "checkpoint-2.h5", setup=ck_setup + ["truncate @CASE@/run/checkpoint-2.h5 3000"])
    write("ckpt-other-base", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl", save_every=2)},
          ["train", "--config", "@CASE@/config.json", "--set", "model=@CASE@/other"], 2, "different base model",
          setup=ck_setup + ["mkdir @CASE@/other", "copy @SHARED@/models/stories260K/config.json @CASE@/other/config.json",
                            "copy @SHARED@/models/stories260K/tokenizer.json @CASE@/other/tokenizer.json",
                            "copy @SHARED@/models/stories260K/model.safetensors @CASE@/other/model.safetensors",
                            "flip @CASE@/other/model.safetensors 600000"])

    # A checkpoint crafted to reach a memory-safety bug inside libhdf5 (found by
    # fuzz_checkpoint): lora.c reads checkpoints in a child process, so the
    # crash (or, without a sanitizer, the damaged link table) is reported.
    crafted = os.path.join(HERE, "..", "..", "fuzz", "regressions", "fuzz_checkpoint",
                           "hdf5-dense-link-table-uninit-free.h5")
    with open(crafted, "rb") as f:
        write("ckpt-crafted-hdf5", {"crafted.h5": f.read()}, ["inspect", "@CASE@/crafted.h5"], 2, "crafted.h5: ")

    # GGUF
    g = gguf()
    write("gguf-truncated", {"m.gguf": g[: len(g) - 40]}, ["inspect", "@CASE@/m.gguf"], 2, "m.gguf")
    write("gguf-absurd-string-length", {"m.gguf": gguf(kv_string_len=1 << 60)}, ["inspect", "@CASE@/m.gguf"], 2,
          "m.gguf")
    write("gguf-bad-magic", {"m.gguf": gguf(magic=b"GGML")}, ["inspect", "@CASE@/m.gguf"], 2, "m.gguf")
    # GGUF bases: what the model loader refuses (the reader accepts these files).
    gen = ["generate", "--model", "@CASE@/m.gguf", "--max-tokens", "1"]
    write("gguf-model-loads", {"m.gguf": gguf_model()}, ["eval", "--model", "@CASE@/m.gguf", "--data", "@CASE@/none"],
          2, "none")  # the base itself loads: eval gets as far as the missing data file

    def shape(name, ne):
        return lambda ts: [t.__setitem__(1, ne) for t in ts if t[0] == name]

    write("gguf-shape-disagrees", {"m.gguf": gguf_model(edit_tensors=shape("blk.0.attn_q.weight", [8, 6]))}, gen, 2,
          "tensor blk.0.attn_q.weight (model.layers.0.self_attn.q_proj.weight) has shape [6, 8], the metadata implies [8, 8]")
    write("gguf-unsupported-arch",
          {"m.gguf": gguf_model(edit_kv=lambda kv: [("general.architecture", "string", "mamba")] + kv[1:])}, gen, 2,
          "GGUF architecture \"mamba\" is not supported")
    write("gguf-missing-key", {"m.gguf": gguf_model(edit_kv=lambda kv: [x for x in kv if x[0] != "llama.block_count"])},
          gen, 2, "metadata key llama.block_count is missing")
    # As llama.cpp's adapters are: no vocabulary (which every command reads first).
    write("gguf-adapter-as-model",
          {"m.gguf": gguf_model(edit_kv=lambda kv: [kv[0], ("general.type", "string", "adapter")] +
                                [x for x in kv[2:] if not x[0].startswith("tokenizer.")])}, gen, 2,
          "a LoRA adapter (general.type \"adapter\"), not a base model")

    def q2k_right_shape(ts):
        for t in ts:
            if t[0] == "token_embd.weight":
                t[1], t[2] = [256, 16], 10
    write("gguf-unsupported-type",
          {"m.gguf": gguf_model(edit_kv=lambda kv: [x if x[0] != "llama.embedding_length" else
                                                    ("llama.embedding_length", "u32", 256) for x in kv],
                                edit_tensors=q2k_right_shape)}, gen, 2, "tensor token_embd.weight (model.embed_tokens.weight) has type Q2_K")
    write("gguf-zero-dimension", {"m.gguf": gguf_model(edit_tensors=shape("blk.0.attn_v.weight", [8, 0]))}, gen, 2,
          "blk.0.attn_v.weight: dimension 1 is 0")

    write("gguf-adapter-given-to-adapter", {"m.gguf": gguf_model()},
          ["generate", "--model", "@CASE@/m.gguf", "--adapter", "@CASE@/m.gguf", "--max-tokens", "1"], 2,
          "m.gguf: a GGUF file; lora.c reads adapters from its checkpoints")

    def fewer_pieces(kv):
        return [x if x[0] != "tokenizer.ggml.tokens" else (x[0], "array", ("string", list("abcdefgh"))) for x in kv]
    write("gguf-pieces-fewer-than-rows", {"m.gguf": gguf_model(edit_kv=fewer_pieces)}, gen, 2,
          "tokenizer.ggml.tokens has 8 pieces for the 16 rows of token_embd.weight")

    def bias_unused(ts):
        ts.append(["blk.0.ffn_norm.bias", [8], 0, None])
    write("gguf-tensor-unused", {"m.gguf": gguf_model(edit_tensors=bias_unused)}, gen, 2,
          "tensor blk.0.ffn_norm.bias is not used by lora.c's llama model")

    def extra_layer(ts):
        ts.append(["blk.3.attn_norm.weight", [8], 0, None])
    write("gguf-tensor-beyond-layers", {"m.gguf": gguf_model(edit_tensors=extra_layer)}, gen, 2,
          "tensor blk.3.attn_norm.weight belongs to no layer (block_count is 1)")

    write("gguf-control-bytes-in-a-value",
          {"m.gguf": gguf_model(edit_kv=lambda kv: [("general.architecture", "string", "lla\nma")] + kv[1:])}, gen, 2,
          "GGUF architecture \"lla?ma\" is not supported")

    def overlap(ts):
        ts[1][3] = 0  # output_norm's data at token_embd's offset
    write("gguf-overlapping-data", {"m.gguf": gguf_model(edit_tensors=overlap)}, gen, 2, "overlaps")

    # faults during training
    write("train-nan-loss", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl", save_every=1,
                                                         optimizer={"lr": 1e30})},
          data_args, 3, "training diverged", exists=["@CASE@/run/checkpoint-1.h5"])
    write("train-final-save-fails", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl", save_every=4)},
          data_args, 3, "checkpoint-8.h5 (step 8) is kept",
          setup=["mkdir @CASE@/run/checkpoint-12.h5.tmp"], exists=["@CASE@/run/checkpoint-8.h5"])
    write("train-output-dir-is-a-file", {"config.json": train_config("@SHARED@/data/alpaca_tiny.jsonl",
                                                                     output_dir="@CASE@/config.json/run")},
          data_args, 2, "config.json/run: cannot create folder: Not a directory")


if __name__ == "__main__":
    main()
