#!/usr/bin/python3
"""A GGUF reader written from the format's specification (ggml docs/gguf.md),
independent of the C reader in export/gguf.c and of the `gguf` Python package.

Layout (all little-endian):
  u32 magic "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count,
  kv_count x { string key, u32 value_type, value },
  tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
  padding to general.alignment (default 32), tensor data (each offset relative
  to the start of the data section, aligned).
  string = u64 length + UTF-8 bytes (no NUL); array = u32 item type, u64 count, items.
  ne[0] is the fastest-varying dimension: a row-major [rows, cols] matrix has
  ne = [cols, rows].

Plain Python 3; numpy is used when it is installed (tensor() returns a numpy
array then), otherwise tensors come back as flat Python lists of floats.
CI does not run Python: this is a reference for checking by hand.

Usage: python3 tests/reference/gguf_reader.py FILE.gguf   (prints a summary)
"""
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}
TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]

# ggml tensor types this reader can decode (others are listed but not converted)
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 30: "BF16"}


class GGUFError(Exception):
    pass


class Tensor:
    def __init__(self, name, ne, ggml_type, offset):
        self.name = name
        self.ne = ne            # GGUF order: ne[0] fastest
        self.type = ggml_type
        self.offset = offset    # relative to the data section
        self.data_start = None  # absolute, set once the header is parsed
        self.nbytes = None

    def n_elements(self):
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def shape(self):
        """Row-major shape (reversed ne), as numpy/safetensors write it."""
        return tuple(reversed(self.ne))

    def __repr__(self):
        return "Tensor(%s, ne=%s, %s)" % (self.name, self.ne, GGML_TYPE_NAMES.get(self.type, self.type))


class GGUFFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.blob = f.read()
        self.path = path
        self.pos = 0
        self.kv = {}        # key -> python value
        self.kv_types = {}  # key -> (type, item type for arrays or None)
        self.kv_order = []
        self.tensors = {}
        self.tensor_order = []
        self._parse()

    # -- primitive reads, bounds-checked ------------------------------------
    def _take(self, n):
        if n < 0 or self.pos + n > len(self.blob):
            raise GGUFError("%s: truncated at byte %d (need %d)" % (self.path, self.pos, n))
        b = self.blob[self.pos:self.pos + n]
        self.pos += n
        return b

    def _u(self, fmt):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self):
        n = self._u("<Q")
        if n > len(self.blob) - self.pos:
            raise GGUFError("%s: string length %d past the end" % (self.path, n))
        return self._take(n).decode("utf-8")

    def _value(self, t):
        if t in _SCALAR:
            return self._u(_SCALAR[t])
        if t == STRING:
            return self._string()
        if t == ARRAY:
            it = self._u("<I")
            n = self._u("<Q")
            if n > len(self.blob) - self.pos:
                raise GGUFError("%s: array count %d past the end" % (self.path, n))
            if it in _SCALAR:
                fmt = _SCALAR[it]
                size = struct.calcsize(fmt)
                raw = self._take(n * size)
                return list(struct.unpack("<%d%s" % (n, fmt[1]), raw))
            if it == STRING:
                return [self._string() for _ in range(n)]
            raise GGUFError("%s: array of type %d not supported" % (self.path, it))
        raise GGUFError("%s: bad value type %d" % (self.path, t))

    # -- structure -----------------------------------------------------------
    def _parse(self):
        if self._take(4) != b"GGUF":
            raise GGUFError("%s: not a GGUF file (bad magic)" % self.path)
        self.version = self._u("<I")
        if self.version not in (2, 3):
            raise GGUFError("%s: unsupported GGUF version %d" % (self.path, self.version))
        n_tensors = self._u("<Q")
        n_kv = self._u("<Q")
        for _ in range(n_kv):
            key = self._string()
            t = self._u("<I")
            item = None
            if t == ARRAY:
                item = struct.unpack("<I", self.blob[self.pos:self.pos + 4])[0]
            self.kv[key] = self._value(t)
            self.kv_types[key] = (t, item)
            self.kv_order.append(key)
        for _ in range(n_tensors):
            name = self._string()
            nd = self._u("<I")
            if nd < 1 or nd > 4:
                raise GGUFError("%s: tensor %s has %d dims" % (self.path, name, nd))
            ne = [self._u("<Q") for _ in range(nd)]
            t = self._u("<I")
            off = self._u("<Q")
            self.tensors[name] = Tensor(name, ne, t, off)
            self.tensor_order.append(name)
        self.alignment = self.kv.get("general.alignment", 32)
        start = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        self.data_offset = start
        for t in self.tensors.values():
            n = 1
            for d in t.ne:
                n *= d
            size = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}.get(t.type)
            if t.offset % self.alignment:
                raise GGUFError("%s: tensor %s offset %d not aligned" % (self.path, t.name, t.offset))
            t.data_start = start + t.offset
            t.nbytes = n * size if size else None
            if size and t.data_start + t.nbytes > len(self.blob):
                raise GGUFError("%s: tensor %s data past the end" % (self.path, t.name))

    # -- tensor data -----------------------------------------------------------
    def tensor(self, name):
        """fp32 values of an F32/F16/BF16 tensor: numpy array of row-major shape
        (reversed ne), or a flat list when numpy is missing."""
        t = self.tensors[name]
        raw = self.blob[t.data_start:t.data_start + t.nbytes]
        n = t.nbytes // (4 if t.type == GGML_F32 else 2)
        if np is not None:
            if t.type == GGML_F32:
                a = np.frombuffer(raw, dtype="<f4")
            elif t.type == GGML_F16:
                a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif t.type == GGML_BF16:
                a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                raise GGUFError("%s: tensor %s type %d not decodable" % (self.path, name, t.type))
            return a.reshape(t.shape)
        if t.type == GGML_F32:
            return list(struct.unpack("<%df" % n, raw))
        if t.type == GGML_F16:
            return list(struct.unpack("<%de" % n, raw))
        if t.type == GGML_BF16:
            return [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(n)]
        raise GGUFError("%s: tensor %s type %d not decodable" % (self.path, name, t.type))


    def row(self, name, r):
        """Row r of a 2-D F32/F16/BF16 tensor (row-major [ne[1], ne[0]]) as a
        list of floats, decoded alone: no numpy, no copy of the whole tensor."""
        t = self.tensors[name]
        cols = t.ne[0]
        rows = t.n_elements() // cols
        if not 0 <= r < rows:
            raise GGUFError("%s: row %d of %s out of range (%d rows)" % (self.path, r, name, rows))
        size = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}.get(t.type)
        if size is None:
            raise GGUFError("%s: tensor %s type %d not decodable" % (self.path, name, t.type))
        start = t.data_start + r * cols * size
        raw = self.blob[start:start + cols * size]
        if t.type == GGML_F32:
            return list(struct.unpack("<%df" % cols, raw))
        if t.type == GGML_F16:
            return list(struct.unpack("<%de" % cols, raw))
        return [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(cols)]

    def rows(self, name):
        """A 1-D tensor as a list, a 2-D one as a list of rows (pure Python)."""
        t = self.tensors[name]
        if len(t.ne) == 1:
            return self.row(name, 0)
        return [self.row(name, r) for r in range(t.n_elements() // t.ne[0])]


def _short(v):
    if isinstance(v, list):
        head = ", ".join(repr(x) for x in v[:6])
        return "[%s%s] (%d items)" % (head, ", ..." if len(v) > 6 else "", len(v))
    return repr(v)


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 1
    g = GGUFFile(argv[1])
    print("GGUF v%d: %d KVs, %d tensors, alignment %d, data at %d" % (
        g.version, len(g.kv), len(g.tensors), g.alignment, g.data_offset))
    for k in g.kv_order:
        t, item = g.kv_types[k]
        tn = TYPE_NAMES[t] + ("[%s]" % TYPE_NAMES[item] if item is not None else "")
        print("  %-45s %-12s %s" % (k, tn, _short(g.kv[k])))
    for name in g.tensor_order:
        t = g.tensors[name]
        print("  %-30s %-5s ne=%s offset=%d" % (name, GGML_TYPE_NAMES.get(t.type, t.type), t.ne, t.offset))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
