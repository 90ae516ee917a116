import struct

import numpy as np
import pytest

import gguf_writer as W
from gguf_read import GGUFError, GGUFReader, T_ARRAY, T_F32, T_U32, T_U64, dequantize


def _meta():
    return [
        ("general.architecture", W.STRING, "deepseek4"),
        ("t.u8", W.U8, 250), ("t.i8", W.I8, -5), ("t.u16", W.U16, 65000), ("t.i16", W.I16, -30000),
        ("t.u32", W.U32, 4000000000), ("t.i32", W.I32, -2000000000), ("t.f32", W.F32, 1.5),
        ("t.bool", W.BOOL, True), ("t.false", W.BOOL, False), ("t.str", W.STRING, "héllo ｜"),
        ("t.u64", W.U64, 2**63 + 5), ("t.i64", W.I64, -(2**62)), ("t.f64", W.F64, 0.1),
        ("t.arr_u32", ("array", W.U32), [0, 0, 4, 128, 4]),
        ("t.arr_f32", ("array", W.F32), [10.0, 0.5]),
        ("t.arr_str", ("array", W.STRING), ["a", "", "<｜User｜>"]),
        ("t.arr_bool", ("array", W.BOOL), [True, False]),
        ("t.arr_arr", ("array", ("array", W.I16)), [[1, 2], [], [-3]]),
        ("t.arr_empty", ("array", W.F64), []),
    ]


def _tensors(rng):
    return [
        ("a.f32", "F32", (3, 2), rng.standard_normal((2, 3)).astype(np.float32)),
        ("b.f16", "F16", (8,), rng.standard_normal(8).astype(np.float16).astype(np.float32)),
        ("c.bf16", "BF16", (4, 2, 3), rng.standard_normal((3, 2, 4)).astype(np.float32)),
        ("d.q8", "Q8_0", (64, 3), rng.standard_normal((3, 64)).astype(np.float32)),
        ("e.i32", "I32", (6, 5), rng.integers(-1000, 1000, (5, 6)).astype(np.int32)),
        ("f.q8zero", "Q8_0", (32,), np.zeros(32, np.float32)),
    ]


@pytest.mark.parametrize("alignment,key", [(32, True), (32, False), (64, True), (256, True)])
def test_roundtrip(tmp_path, alignment, key):
    rng = np.random.default_rng(0)
    p = tmp_path / "t.gguf"
    tens = _tensors(rng)
    W.write_gguf(p, _meta(), tens, alignment=alignment, write_alignment_key=key)
    r = GGUFReader(str(p))
    assert r.version == 3 and r.alignment == alignment and r.data_offset % alignment == 0
    md = r.metadata
    assert md["general.architecture"] == "deepseek4"
    assert (md["t.u8"], md["t.i8"], md["t.u16"], md["t.i16"]) == (250, -5, 65000, -30000)
    assert (md["t.u32"], md["t.i32"]) == (4000000000, -2000000000)
    assert md["t.f32"] == 1.5 and md["t.bool"] is True and md["t.false"] is False
    assert md["t.str"] == "héllo ｜"
    assert md["t.u64"] == 2**63 + 5 and md["t.i64"] == -(2**62) and md["t.f64"] == 0.1
    assert md["t.arr_u32"] == [0, 0, 4, 128, 4]
    assert md["t.arr_f32"] == [10.0, 0.5]
    assert md["t.arr_str"] == ["a", "", "<｜User｜>"]
    assert md["t.arr_bool"] == [True, False]
    assert md["t.arr_arr"] == [[1, 2], [], [-3]]
    assert md["t.arr_empty"] == []
    assert r.metadata_types["t.u32"] == T_U32 and r.metadata_types["t.u64"] == T_U64
    assert r.metadata_types["t.f32"] == T_F32 and r.metadata_types["t.arr_u32"] == T_ARRAY
    assert r.metadata_array_types["t.arr_u32"] == T_U32

    want = {name: (tn, ne, arr) for name, tn, ne, arr in tens}
    assert set(r.tensors) == set(want)
    for name, (tn, ne, arr) in want.items():
        ti = r.tensors[name]
        assert ti.ne == ne and ti.type_name == tn and ti.shape == arr.shape
        got = r.tensor(name)
        assert got.shape == arr.shape
        if tn == "I32":
            assert got.dtype == np.int32 and np.array_equal(got, arr)
            continue
        assert got.dtype == np.float32
        if tn in ("F32", "F16"):
            assert np.array_equal(got, arr)
        elif tn == "BF16":
            bits = arr.view(np.uint32)
            exp = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
            assert np.array_equal(got, exp)
        elif tn == "Q8_0":
            blob = W.encode_tensor("Q8_0", arr)
            assert np.array_equal(got.reshape(-1), W.dequant_q8_0_ref(blob))
            assert np.allclose(got, arr, atol=np.abs(arr).max() / 127 + 1e-7)


def test_q8_0_hand_block():
    # d = 0.5 (f16 0x3800), qs = -128..., check w = d * q
    qs = np.arange(-16, 16, dtype=np.int8)
    blob = np.frombuffer(struct.pack("<H", 0x3800) + qs.tobytes(), dtype=np.uint8)
    out = dequantize(blob, 8, 32)
    assert np.array_equal(out, qs.astype(np.float32) * 0.5)


def test_bf16_hand():
    raw = np.array([0x3F80, 0xC000, 0x0001, 0x7F80], dtype="<u2").view(np.uint8)
    out = dequantize(raw, 30, 4)
    assert out[0] == 1.0 and out[1] == -2.0 and out[2] == np.uint32(0x10000).view(np.float32) and np.isinf(out[3])


def test_errors(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "t.gguf"
    W.write_gguf(p, _meta(), _tensors(rng))
    blob = bytearray(p.read_bytes())
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUG" + bytes(blob[4:]))
    with pytest.raises(GGUFError, match="magic"):
        GGUFReader(str(bad))
    W.write_gguf(bad, _meta(), _tensors(rng), version=2)
    with pytest.raises(GGUFError, match="version"):
        GGUFReader(str(bad))
    bad.write_bytes(bytes(blob[:-40]))
    with pytest.raises(GGUFError, match="beyond end of file"):
        GGUFReader(str(bad))
    r = GGUFReader(str(p))
    with pytest.raises(KeyError):
        r.tensor("nope")
    with pytest.raises(NotImplementedError):
        dequantize(np.zeros(84, np.uint8), 10, 256)
