#!/usr/bin/env python3
"""Builds the seed corpora for the fuzz targets from the real files in ../shared
and tests/fixtures (never committed: written under build-fuzz/work/seeds/<target>/).

usage: make_seeds.py SHARED_DIR REPO_DIR OUT_DIR [CHECKPOINT_DIR...]

Large files are also cut down (tokenizer vocabularies trimmed, GGUF arrays and
safetensors tensor lists shortened) so that the fuzzers run fast on them.
"""
import glob
import json
import os
import shutil
import struct
import sys

SEP = b"\n=====LCFUZZ=====\n"


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- safetensors ----

def st_parse(buf):
    n = struct.unpack("<Q", buf[:8])[0]
    hdr = json.loads(buf[8:8 + n])
    return hdr, buf[8 + n:]


def st_build(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr, data, off = {}, b"", 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, b in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32_to(dtype, b):
    vals = struct.unpack("<%df" % (len(b) // 4), b)
    if dtype == "F16":
        return b"".join(struct.pack("<e", max(-65504.0, min(65504.0, v))) for v in vals)
    if dtype == "BF16":
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in vals)
    return b


def small_tensors(path, limit=2048, count=6):
    hdr, data = st_parse(read(path))
    out = []
    for name, e in sorted(hdr.items()):
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        if b - a <= limit:
            out.append((name, e["dtype"], e["shape"], data[a:b]))
        if len(out) >= count:
            break
    return out


def seeds_safetensors(shared, repo, out):
    model = os.path.join(shared, "models/stories260K/model.safetensors")
    put(out, "fuzz_safetensors", "stories260k.safetensors", read(model))
    put(out, "fuzz_safetensors", "peft_adapter.safetensors",
        read(os.path.join(repo, "tests/fixtures/peft_stories260k/adapter_model.safetensors")))
    ts = small_tensors(model)
    put(out, "fuzz_safetensors", "small_f32.safetensors", st_build(ts, {"format": "pt"}))
    for dt in ("F16", "BF16"):
        put(out, "fuzz_safetensors", "small_%s.safetensors" % dt.lower(),
            st_build([(n, dt, s, f32_to(dt, b)) for n, _, s, b in ts]))
    put(out, "fuzz_safetensors", "other_dtypes.safetensors",
        st_build([("i64", "I64", [2], b"\1" * 16), ("u8", "U8", [3, 1], b"abc"), ("bool", "BOOL", [], b"\1"),
                  ("e", "F32", [0, 4], b""), ("f8", "F8_E4M3", [2], b"xy")]))
    # Sharded: index + two shards.
    half = len(ts) // 2
    s1, s2 = st_build(ts[:half]), st_build(ts[half:])
    wm = {n: "s1.safetensors" for n, _, _, _ in ts[:half]}
    wm.update({n: "s2.safetensors" for n, _, _, _ in ts[half:]})
    idx = json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}, indent=2).encode()
    put(out, "fuzz_safetensors", "sharded.bin", idx + SEP + s1 + SEP + s2)
    # Hostile shard names (the harness traps if any of them is opened).
    for i, bad in enumerate(["../outside.safetensors", "../other/s1.safetensors", "/dev/shm/x", "..", "s1.safetensors/"]):
        idx = json.dumps({"weight_map": {"x": bad}}).encode()
        put(out, "fuzz_safetensors", "escape%d.bin" % i, idx + SEP + s1)


# ---- config ----

def seeds_config(shared, out):
    base = json.loads(read(os.path.join(shared, "models/stories260K/config.json")))
    put(out, "fuzz_config", "stories260k.json", read(os.path.join(shared, "models/stories260K/config.json")))
    variants = {
        "mistral": dict(model_type="mistral", sliding_window=16),
        "qwen2": dict(model_type="qwen2", tie_word_embeddings=False),
        "llama3_rope": dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
        "linear_rope": dict(rope_scaling={"type": "linear", "factor": 2.0}),
        "bias": dict(attention_bias=True, mlp_bias=True),
        "no_head_dim": dict(head_dim=None),
        "mha": dict(num_key_value_heads=8),
        "eos_list": dict(eos_token_id=[2, 3]),
    }
    for name, upd in variants.items():
        c = dict(base)
        c.update(upd)
        c = {k: v for k, v in c.items() if v is not None}
        put(out, "fuzz_config", name + ".json", json.dumps(c, indent=2).encode())
    put(out, "fuzz_config", "deep.json", b"[" * 5000 + b"]" * 5000)


# ---- tokenizer ----

def trim_tokenizer(tj, n_keep):
    d = json.loads(tj)
    m = d.get("model", {})
    vocab = m.get("vocab")
    if isinstance(vocab, dict):
        keep = {k: v for k, v in vocab.items() if v < n_keep}
        # keep the byte/special pieces too
        for k, v in vocab.items():
            if k.startswith("<0x") or (k.startswith("<") and k.endswith(">") and len(k) < 16):
                keep[k] = v
        m["vocab"] = keep
        merges = []
        for mg in m.get("merges", []):
            a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
            if a in keep and b in keep and (a + b) in keep:
                merges.append(mg)
        m["merges"] = merges
    d["added_tokens"] = d.get("added_tokens", [])[:12]
    return json.dumps(d, ensure_ascii=False).encode()


def test_texts(shared):
    p = os.path.join(shared, "tokenizers/llamacpp-vectors/input.inp")
    try:
        parts = read(p).split(b"\n__ggml_vocab_test__\n")
    except OSError:
        return [b"Hello world"]
    return [t for t in parts if t][:24]


def seeds_tokenizer(shared, out):
    texts = test_texts(shared)
    st = os.path.join(shared, "models/stories260K")
    tj, tc = read(os.path.join(st, "tokenizer.json")), read(os.path.join(st, "tokenizer_config.json"))
    put(out, "fuzz_tokenizer", "stories260k.json", tj)
    for i, t in enumerate(texts[:8]):
        put(out, "fuzz_tokenizer", "stories260k_%d.bin" % i, tj + SEP + tc + SEP + t)
    for j, name in enumerate(("llama2", "gpt2", "falcon", "olmo", "phi-2", "phi-3-mini")):
        p = os.path.join(shared, "tokenizers", name, "tokenizer.json")
        if not os.path.exists(p):
            continue
        small = trim_tokenizer(read(p), 600)
        cp = os.path.join(shared, "tokenizers", name, "tokenizer_config.json")
        cfg = read(cp) if os.path.exists(cp) and os.path.getsize(cp) < 16384 else b"{}"
        put(out, "fuzz_tokenizer", name + ".json", small)
        for i, t in enumerate(texts[j * 3 % len(texts):][:3] if texts else []):
            put(out, "fuzz_tokenizer", "%s_%d.bin" % (name, i), small + SEP + cfg + SEP + t)
    q = os.path.join(shared, "tokenizers/chat-templates/qwen2.5.tokenizer_config.json")
    if os.path.exists(q):
        put(out, "fuzz_tokenizer", "stories260k_qwencfg.bin", tj + SEP + read(q) + SEP + b"<|im_start|>hi")
    put(out, "fuzz_tokenizer", "deep.json", b'{"model":' + b"[" * 5000 + b"]" * 5000 + b"}")


# ---- jsonl ----

def seeds_jsonl(shared, out):
    for p in sorted(glob.glob(os.path.join(shared, "data", "*.jsonl"))):
        lines = read(p).split(b"\n")
        name = os.path.basename(p)[:-6]
        for k, start in enumerate((0, 7)):
            chunk = b"\n".join(l[:1500] if len(l) > 1500 else l for l in lines[start:start + 3]) + b"\n"
            put(out, "fuzz_jsonl", "%s_%d.jsonl" % (name, k), chunk)
    put(out, "fuzz_jsonl", "text.jsonl", b'{"text": "Once upon a time"}\n\n{"text": "x"}\n')
    put(out, "fuzz_jsonl", "long.jsonl",
        b'{"prompt": "' + b"Lily " * 80 + b'", "completion": "' + b"the dog " * 40 + b'"}\n')
    put(out, "fuzz_jsonl", "escapes.jsonl", b'{"prompt": "\\u00e9\\ud83d\\ude00\\n", "completion": "\\t\\"ok\\""}\r\n')


# ---- jinja ----

def seeds_jinja(shared, repo, out):
    for p in sorted(glob.glob(os.path.join(shared, "chat-templates", "*.jinja"))):
        put(out, "fuzz_jinja", os.path.basename(p), read(p))
    # the semantic cases' templates, with their variables after the separator
    sep = SEP
    fx = os.path.join(repo, "tests/fixtures/jinja_semantics.jsonl")
    for k, line in enumerate(read(fx).split(b"\n")[::7]):
        if not line.strip():
            continue
        c = json.loads(line)
        put(out, "fuzz_jinja", "case_%03d.bin" % k, c["template"].encode() + sep + json.dumps(c["vars"]).encode())


# ---- peft ----

def seeds_peft(repo, out, extra_dirs):
    fx = os.path.join(repo, "tests/fixtures/peft_stories260k")
    put(out, "fuzz_peft", "fixture.bin",
        read(os.path.join(fx, "adapter_config.json")) + SEP + read(os.path.join(fx, "adapter_model.safetensors")))
    for d in extra_dirs:
        for sub in sorted(glob.glob(os.path.join(d, "peft_*"))):
            c, s = os.path.join(sub, "adapter_config.json"), os.path.join(sub, "adapter_model.safetensors")
            if os.path.exists(c) and os.path.exists(s):
                put(out, "fuzz_peft", os.path.basename(sub) + ".bin", read(c) + SEP + read(s))
    put(out, "fuzz_peft", "config_only.bin", read(os.path.join(fx, "adapter_config.json")))


# ---- checkpoint ----

def seeds_checkpoint(out, dirs):
    n = 0
    for d in dirs:
        for p in sorted(glob.glob(os.path.join(d, "**", "*.h5"), recursive=True)):
            if os.path.getsize(p) <= 256 * 1024:
                put(out, "fuzz_checkpoint", "%02d_%s" % (n, os.path.basename(p)), read(p))
                n += 1


# ---- gguf ----

class GGUFReader:
    SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def __init__(self, buf):
        self.b, self.o = buf, 0

    def take(self, n):
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u64())

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            it, n = self.u32(), self.u64()
            return (it, [self.value(it) for _ in range(n)])
        return self.take(self.SIZES[t])


def gguf_str(s):
    return struct.pack("<Q", len(s)) + s


def gguf_value(t, v):
    if t == 8:
        return gguf_str(v)
    if t == 9:
        it, items = v
        return struct.pack("<IQ", it, len(items)) + b"".join(gguf_value(it, x) for x in items)
    return v


def trim_gguf(buf, max_items=48, max_tensor_bytes=4096):
    r = GGUFReader(buf)
    magic, ver = r.take(4), r.u32()
    nt, nkv = r.u64(), r.u64()
    kvs = []
    align = 32
    for _ in range(nkv):
        k = r.string()
        t = r.u32()
        v = r.value(t)
        if t == 9:
            v = (v[0], v[1][:max_items])
        if k == b"general.alignment":
            align = struct.unpack("<I", v)[0]
        kvs.append((k, t, v))
    infos = []
    for _ in range(nt):
        name = r.string()
        nd = r.u32()
        ne = [r.u64() for _ in range(nd)]
        typ, off = r.u32(), r.u64()
        infos.append((name, nd, ne, typ, off))
    data_start = (r.o + align - 1) // align * align
    sizes = {0: 4, 1: 2, 30: 2}
    keep = []
    for name, nd, ne, typ, off in infos:
        n = 1
        for x in ne:
            n *= x
        if typ in sizes and n * sizes[typ] <= max_tensor_bytes:
            keep.append((name, nd, ne, typ, buf[data_start + off:data_start + off + n * sizes[typ]]))
    out = b"GGUF" + struct.pack("<IQQ", ver, len(keep), len(kvs))
    for k, t, v in kvs:
        out += gguf_str(k) + struct.pack("<I", t) + gguf_value(t, v)
    off, datas = 0, b""
    for name, nd, ne, typ, d in keep:
        out += gguf_str(name) + struct.pack("<I", nd) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", typ, off)
        pad = -len(d) % align
        datas += d + b"\0" * pad
        off += len(d) + pad
    out += b"\0" * (-len(out) % align)
    return out + datas


def seeds_gguf(shared, out):
    files = [os.path.join(shared, "models/stories260K.gguf")] + sorted(
        glob.glob(os.path.join(shared, "tokenizers/llamacpp-vectors/*.gguf"))) + sorted(
        glob.glob(os.path.join(shared, "models/gguf/*.gguf")))  # quantized bases (<= 2 MB but the f32 one)
    for p in files:
        if not os.path.exists(p):
            continue
        name = os.path.basename(p)[:-5]
        buf = read(p)
        put(out, "fuzz_gguf", name + ".gguf", buf)
        try:
            put(out, "fuzz_gguf", name + "_trim.gguf", trim_gguf(buf))
        except Exception as e:  # a reader bug here must not stop seeding
            print("make_seeds: cannot trim %s: %s" % (p, e), file=sys.stderr)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    shared, repo, out = sys.argv[1:4]
    extra = sys.argv[4:]
    if os.path.exists(out):
        shutil.rmtree(out)
    seeds_safetensors(shared, repo, out)
    seeds_config(shared, out)
    seeds_tokenizer(shared, out)
    seeds_jsonl(shared, out)
    seeds_peft(repo, out, extra)
    seeds_checkpoint(out, extra)
    seeds_gguf(shared, out)
    seeds_jinja(shared, repo, out)


if __name__ == "__main__":
    main()
