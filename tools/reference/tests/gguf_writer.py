"""Tiny GGUF v3 writer used by the tests (and by synth_gguf.py).  Independent of gguf_read.py.

metadata: list of (key, value_type, value); for arrays value_type is ("array", element_type).
tensors:  list of (name, ggml_type_name, ne, numpy array in torch order (reversed ne)).
"""

import struct

import numpy as np

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
        U64: "<Q", I64: "<q", F64: "<d"}
_TYPE_IDS = {"F32": 0, "F16": 1, "Q8_0": 8, "I32": 26, "BF16": 30}


def _str(s) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _value(t, v) -> bytes:
    if isinstance(t, tuple):
        assert t[0] == "array"
        et = t[1]
        out = struct.pack("<I", et if not isinstance(et, tuple) else ARRAY) + struct.pack("<Q", len(v))
        return out + b"".join(_value(et, x) for x in v)
    if t == STRING:
        return _str(v)
    if t == BOOL:
        return struct.pack("<B", 1 if v else 0)
    return struct.pack(_FMT[t], v)


def _kv(key, t, v) -> bytes:
    tid = ARRAY if isinstance(t, tuple) else t
    return _str(key) + struct.pack("<I", tid) + _value(t, v)


def quantize_q8_0(x: np.ndarray) -> bytes:
    x = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = (amax / 127.0).astype(np.float32)
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    d16 = d.astype("<f2")
    out = bytearray()
    for i in range(x.shape[0]):
        out += d16[i:i + 1].tobytes() + q[i].tobytes()
    return bytes(out)


def dequant_q8_0_ref(blob: bytes) -> np.ndarray:
    """Straightforward per-block reference dequantiser for the tests."""
    out = []
    for i in range(0, len(blob), 34):
        d = np.frombuffer(blob[i:i + 2], dtype="<f2")[0].astype(np.float32)
        qs = np.frombuffer(blob[i + 2:i + 34], dtype=np.int8).astype(np.float32)
        out.append(d * qs)
    return np.concatenate(out).astype(np.float32)


def encode_tensor(type_name: str, arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if type_name == "F32":
        return a.astype("<f4").tobytes()
    if type_name == "F16":
        return a.astype("<f2").tobytes()
    if type_name == "BF16":
        bits = a.astype(np.float32).view(np.uint32)
        # round to nearest even
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        return rounded.tobytes()
    if type_name == "Q8_0":
        return quantize_q8_0(a)
    if type_name == "I32":
        return a.astype("<i4").tobytes()
    raise ValueError(type_name)


def write_gguf(path, metadata, tensors, alignment=32, write_alignment_key=True, version=3):
    kvs = list(metadata)
    if write_alignment_key:
        kvs = [("general.alignment", U32, alignment)] + kvs
    blobs = []
    infos = b""
    off = 0
    for name, tname, ne, arr in tensors:
        ne = tuple(int(x) for x in ne)
        assert tuple(reversed(ne)) == tuple(np.shape(arr)), (name, ne, np.shape(arr))
        blob = encode_tensor(tname, arr)
        infos += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<I", _TYPE_IDS[tname]) + struct.pack("<Q", off)
        blobs.append((off, blob))
        off += len(blob)
        off = (off + alignment - 1) // alignment * alignment
    head = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    head += b"".join(_kv(k, t, v) for k, t, v in kvs) + infos
    pad = (-len(head)) % alignment
    with open(path, "wb") as f:
        f.write(head + b"\0" * pad)
        pos = 0
        for o, blob in blobs:
            f.write(b"\0" * (o - pos))
            f.write(blob)
            pos = o + len(blob)
        f.write(b"\0" * ((-pos) % alignment))
