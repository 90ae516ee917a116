import json
import struct

import numpy as np
import pytest

from fixture import read_fixture, write_fixture


def test_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 500, 37).astype(np.int32)
    logits = rng.standard_normal((37, 500)).astype(np.float32)
    p = tmp_path / "f.dsv4fix"
    write_fixture(p, {"mode": "official", "gguf": {"sha256": "ab" * 32}}, toks, logits)
    h, t, lg = read_fixture(p)
    assert np.array_equal(t, toks) and np.array_equal(lg, logits)
    assert h["mode"] == "official" and h["n_tokens"] == 37 and h["vocab_size"] == 500
    assert h["token_ids"] == toks.tolist() and h["argmax"] == logits.argmax(1).tolist()
    # the documented layout, parsed by hand
    blob = p.read_bytes()
    assert blob[:8] == b"DSV4FIX1"
    hlen = struct.unpack("<I", blob[8:12])[0]
    hj = json.loads(blob[16:16 + hlen])
    base = (16 + hlen + 63) // 64 * 64
    assert base % 64 == 0 and hj["tokens"]["offset"] == 0 and hj["logits"]["offset"] % 64 == 0
    row3 = np.frombuffer(blob, "<f4", 500, base + hj["logits"]["offset"] + 3 * 500 * 4)
    assert np.array_equal(row3, logits[3])


def test_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_fixture(tmp_path / "a", {}, np.zeros(3, np.int32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError):
        write_fixture(tmp_path / "a", {}, np.zeros(1, np.int32), np.full((1, 4), np.nan, np.float32))


def test_compare_fixtures(tmp_path, capsys):
    import compare_fixtures

    rng = np.random.default_rng(1)
    toks = rng.integers(0, 50, 60).astype(np.int32)
    lg = rng.standard_normal((60, 50)).astype(np.float32)
    hdr = {"mode": "plain", "schedule": {"compress_ratios": [0, 4], "index_topk": 8}}
    write_fixture(tmp_path / "a", hdr, toks, lg)
    lg2 = lg.copy()
    lg2[50] += 0.5          # position 50: (50+1)//4 = 12 > 8 -> top-k active, tolerated
    write_fixture(tmp_path / "b", hdr, toks, lg2)
    assert compare_fixtures.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert compare_fixtures.main([str(tmp_path / "a"), str(tmp_path / "b"), "--strict-topk"]) == 1
    lg2[3] += 0.5
    write_fixture(tmp_path / "c", hdr, toks, lg2)
    assert compare_fixtures.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
