"""safetensors read and written from the format's specification (8-byte
little-endian header length, JSON header, raw data), with numpy only, for the
reference scripts: no safetensors or transformers package is needed."""
import json
import struct

import numpy as np

DTYPES = {"F32": "<f4", "F16": "<f2"}


def load_safetensors_np(path):
    """{name: float32 array} for every tensor (F32, F16 and BF16 widened)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + hlen])
    data = blob[8 + hlen :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(data[b:en], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[b:en], dtype=DTYPES[e["dtype"]]).astype(np.float32)
        out[name] = arr.reshape(e["shape"]).copy()
    return out


def read_safetensors_metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__")


def save_safetensors(path, tensors, metadata):
    """F32 tensors ({name: array-like}) in name order, as the safetensors package
    orders tensors of one dtype; header padded with spaces to 8 bytes."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        raw = np.asarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(tensors[name])),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
