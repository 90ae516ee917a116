"""Minimal GGUF v3 reader (numpy only), FORMATS.md section 1 and section 4.

    r = GGUFReader("model.gguf")
    r.metadata["deepseek4.block_count"]       # python value (int, float, bool, str, list)
    r.metadata_types["deepseek4.block_count"] # GGUF value type id (4 = u32, ...)
    t = r.tensors["blk.0.attn_q_a.weight"]    # TensorInfo(name, ne, type, offset, nbytes)
    a = r.tensor("blk.0.attn_q_a.weight")     # numpy array, torch order (reversed ne), float32

Dequantisation: F32, F16, BF16, Q8_0 -> float32; I32 -> int32 (passthrough).  Any other type
raises NotImplementedError (the reference tooling only needs what `dsv4 gen-model --types f32`
writes plus the simple types of the published files).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

GGUF_MAGIC = 0x46554747  # b"GGUF" little-endian
DEFAULT_ALIGNMENT = 32

# Metadata value types (FORMATS.md 1.2).
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 = range(13)

_SCALAR_FMT = {
    T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
    T_F32: "<f", T_BOOL: "<B", T_U64: "<Q", T_I64: "<q", T_F64: "<d",
}
_SCALAR_NP = {
    T_U8: "<u1", T_I8: "<i1", T_U16: "<u2", T_I16: "<i2", T_U32: "<u4", T_I32: "<i4",
    T_F32: "<f4", T_BOOL: "<u1", T_U64: "<u8", T_I64: "<i8", T_F64: "<f8",
}

# ggml tensor types (FORMATS.md 1.4 / 4.1): id -> (name, elements per block, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84),
    12: ("Q4_K", 256, 144),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    26: ("I32", 1, 4),
    30: ("BF16", 1, 2),
}
GGML_TYPE_ID = {v[0]: k for k, v in GGML_TYPES.items()}


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ne: tuple          # GGUF order, ne[0] fastest
    type: int          # ggml type id
    offset: int        # relative to the data section
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES.get(self.type, (f"type{self.type}",))[0]

    @property
    def shape(self) -> tuple:
        """PyTorch / numpy (row-major) shape: the reverse of ne."""
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n


def tensor_nbytes(ne, ggml_type: int) -> int:
    if ggml_type not in GGML_TYPES:
        raise GGUFError(f"unknown ggml type id {ggml_type}")
    name, blk, bpb = GGML_TYPES[ggml_type]
    if len(ne) == 0:
        raise GGUFError("tensor with zero dimensions")
    if ne[0] % blk != 0:
        raise GGUFError(f"ne[0]={ne[0]} is not a multiple of the {name} block size {blk}")
    n = (ne[0] // blk) * bpb
    for d in ne[1:]:
        n *= d
    return n


class _Cursor:
    def __init__(self, buf, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def take(self, n: int):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"truncated file: need {n} bytes at offset {self.pos}, size {len(self.buf)}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, t: int):
        fmt = _SCALAR_FMT[t]
        (v,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return v

    def u32(self) -> int:
        return self.scalar(T_U32)

    def u64(self) -> int:
        return self.scalar(T_U64)

    def string(self) -> str:
        n = self.u64()
        return bytes(self.take(n)).decode("utf-8", errors="surrogateescape")


def _read_value(c: _Cursor, t: int):
    if t == T_STRING:
        return c.string()
    if t == T_BOOL:
        v = c.scalar(T_BOOL)
        if v not in (0, 1):
            raise GGUFError(f"bool value {v} is neither 0 nor 1")
        return bool(v)
    if t in _SCALAR_FMT:
        v = c.scalar(t)
        if t == T_F32:
            v = float(np.float32(v))
        return v
    if t == T_ARRAY:
        et = c.u32()
        n = c.u64()
        if et in _SCALAR_NP and et != T_BOOL:
            dt = np.dtype(_SCALAR_NP[et])
            arr = np.frombuffer(bytes(c.take(n * dt.itemsize)), dtype=dt)
            if et in (T_F32, T_F64):
                return [float(x) for x in arr]
            return [int(x) for x in arr]
        return [_read_value(c, et) for _ in range(n)]
    raise GGUFError(f"unknown metadata value type {t}")


class GGUFReader:
    def __init__(self, path: str):
        self.path = path
        self._mm = np.memmap(path, dtype=np.uint8, mode="r")
        buf = memoryview(self._mm)
        c = _Cursor(buf)
        magic = c.u32()
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{path}: bad magic 0x{magic:08x} (not a GGUF file)")
        self.version = c.u32()
        if self.version != 3:
            raise GGUFError(f"{path}: GGUF version {self.version}, only version 3 is supported")
        n_tensors = c.u64()
        n_kv = c.u64()
        self.metadata: dict = {}
        self.metadata_types: dict = {}
        self.metadata_array_types: dict = {}
        for _ in range(n_kv):
            key = c.string()
            t = c.u32()
            if key in self.metadata:
                raise GGUFError(f"duplicate metadata key {key!r}")
            if t == T_ARRAY:
                # peek the element type for callers that check it
                self.metadata_array_types[key] = struct.unpack("<I", bytes(buf[c.pos:c.pos + 4]))[0]
            self.metadata_types[key] = t
            self.metadata[key] = _read_value(c, t)

        infos = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.u32()
            if n_dims == 0 or n_dims > 4:
                raise GGUFError(f"tensor {name!r}: n_dims={n_dims}")
            ne = tuple(c.u64() for _ in range(n_dims))
            t = c.u32()
            off = c.u64()
            infos.append((name, ne, t, off))

        align = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if "general.alignment" in self.metadata and self.metadata_types["general.alignment"] != T_U32:
            raise GGUFError("general.alignment must be u32")
        if align <= 0 or (align & (align - 1)) != 0:
            raise GGUFError(f"general.alignment={align} is not a positive power of two")
        self.alignment = align
        self.data_offset = (c.pos + align - 1) // align * align
        file_size = len(buf)

        self.tensors: dict = {}
        for name, ne, t, off in infos:
            if name in self.tensors:
                raise GGUFError(f"duplicate tensor name {name!r}")
            nbytes = tensor_nbytes(ne, t)
            if off % align != 0:
                raise GGUFError(f"tensor {name!r}: offset {off} not aligned to {align}")
            if self.data_offset + off + nbytes > file_size:
                raise GGUFError(f"tensor {name!r}: data [{off}, {off + nbytes}) beyond end of file")
            self.tensors[name] = TensorInfo(name, ne, t, off, nbytes)

    # ------------------------------------------------------------------ data access
    def raw(self, name: str) -> np.ndarray:
        ti = self.tensors[name]
        start = self.data_offset + ti.offset
        return self._mm[start:start + ti.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Dequantised tensor in torch order (reversed ne): float32, or int32 for I32."""
        if name not in self.tensors:
            raise KeyError(f"no tensor {name!r} in {self.path}")
        ti = self.tensors[name]
        flat = dequantize(self.raw(name), ti.type, ti.n_elements)
        return flat.reshape(ti.shape)

    def sha256(self) -> str:
        return file_sha256(self.path)


def dequantize(raw: np.ndarray, ggml_type: int, n_elements: int) -> np.ndarray:
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if ggml_type == 0:  # F32
        out = raw.view("<f4").astype(np.float32)
    elif ggml_type == 1:  # F16
        out = raw.view("<f2").astype(np.float32)
    elif ggml_type == 30:  # BF16: f32 bits = u16 << 16
        out = (raw.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float32)
    elif ggml_type == 8:  # Q8_0: d f16 @0, qs int8[32] @2
        blocks = raw.reshape(-1, 34)
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)  # [nb, 1]
        qs = blocks[:, 2:34].copy().view(np.int8).astype(np.float32)  # [nb, 32]
        out = (d * qs).reshape(-1).astype(np.float32)
    elif ggml_type == 26:  # I32
        out = raw.view("<i4").astype(np.int32)
    else:
        name = GGML_TYPES.get(ggml_type, (f"type id {ggml_type}",))[0]
        raise NotImplementedError(f"dequantisation of {name} is not implemented in tools/reference")
    if out.size != n_elements:
        raise GGUFError(f"dequantised {out.size} elements, expected {n_elements}")
    return out


def file_sha256(path: str, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="dump a GGUF file's metadata and tensor table")
    ap.add_argument("gguf")
    ap.add_argument("--max-array", type=int, default=16)
    a = ap.parse_args(argv)
    r = GGUFReader(a.gguf)
    print(f"version {r.version}, alignment {r.alignment}, data offset {r.data_offset}")
    for k, v in r.metadata.items():
        if isinstance(v, list) and len(v) > a.max_array:
            v = f"[{len(v)} items] " + repr(v[: a.max_array])[:-1] + ", ...]"
        print(f"  {k} = {v}" if isinstance(v, str) and v.startswith("[") else f"  {k} = {v!r}")
    for ti in r.tensors.values():
        print(f"  {ti.name:48s} {ti.type_name:8s} ne={ti.ne}")


if __name__ == "__main__":
    main()
