"""Reference fixture file (numpy only).

Layout (all little-endian):
    offset 0   8 bytes  magic b"DSV4FIX1"
    offset 8   u32      header_len: bytes of the UTF-8 JSON header that follows
    offset 12  u32      0 (reserved)
    offset 16  header_len bytes of JSON
    zero padding up to data_start = align_up(16 + header_len, 64)
    data section; header["tokens"] / header["logits"] give "offset" RELATIVE TO data_start:
        tokens  int32   [n_tokens]
        logits  float32 [n_tokens][vocab]   row p = next-token logits after tokens[0..p]
The JSON also repeats token_ids (and argmax per position) for readability.
"""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"DSV4FIX1"
ALIGN = 64
FORMAT_VERSION = 1


def _align(n, a=ALIGN):
    return (n + a - 1) // a * a


def write_fixture(path, header: dict, tokens, logits):
    tokens = np.ascontiguousarray(tokens, dtype="<i4")
    logits = np.ascontiguousarray(logits, dtype="<f4")
    if tokens.ndim != 1 or logits.ndim != 2 or logits.shape[0] != tokens.shape[0]:
        raise ValueError(f"tokens {tokens.shape} / logits {logits.shape} mismatch")
    if not np.isfinite(logits).all():
        raise ValueError("non-finite logits")
    n, v = logits.shape
    tok_off = 0
    log_off = _align(tokens.nbytes)
    h = dict(header)
    h.update({
        "format": "dsv4-reference-fixture",
        "format_version": FORMAT_VERSION,
        "n_tokens": int(n),
        "vocab_size": int(v),
        "tokens": {"offset": tok_off, "dtype": "int32", "shape": [int(n)]},
        "logits": {"offset": log_off, "dtype": "float32", "shape": [int(n), int(v)]},
        "token_ids": [int(t) for t in tokens],
        "argmax": [int(a) for a in logits.argmax(axis=1)],
    })
    js = json.dumps(h, indent=1, sort_keys=True).encode("utf-8")
    head = MAGIC + struct.pack("<II", len(js), 0) + js
    data_start = _align(len(head))
    with open(path, "wb") as f:
        f.write(head + b"\0" * (data_start - len(head)))
        f.write(tokens.tobytes())
        f.write(b"\0" * (log_off - tokens.nbytes))
        f.write(logits.tobytes())
    return h


def read_fixture(path):
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != MAGIC:
        raise ValueError(f"{path}: not a dsv4 reference fixture")
    hlen, _ = struct.unpack("<II", blob[8:16])
    header = json.loads(blob[16:16 + hlen].decode("utf-8"))
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: fixture format version {header.get('format_version')}")
    base = _align(16 + hlen)
    n, v = header["logits"]["shape"]
    t = header["tokens"]
    tokens = np.frombuffer(blob, dtype="<i4", count=n, offset=base + t["offset"]).copy()
    lg = header["logits"]
    logits = np.frombuffer(blob, dtype="<f4", count=n * v, offset=base + lg["offset"]).reshape(n, v).copy()
    if base + lg["offset"] + logits.nbytes != len(blob):
        raise ValueError(f"{path}: trailing or missing bytes")
    return header, tokens, logits
