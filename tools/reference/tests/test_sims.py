"""numpy twins of the MODEL.md section 11 simulations against hand-derived values and an
independent exact reference (fractions, enumeration of the code grids)."""

import math
from fractions import Fraction

import numpy as np
import pytest

import sims

f32 = np.float32


def up(x):
    return np.nextafter(f32(x), f32(np.inf))


def down(x):
    return np.nextafter(f32(x), f32(-np.inf))


# ----------------------------------------------------------------- independent exact reference
def e4m3_codes():
    vals = [Fraction(m, 8) * Fraction(2) ** -6 for m in range(8)]          # codes 0..7 (subnormal)
    for e in range(1, 16):
        for m in range(8):
            if e == 15 and m == 7:
                continue                                                     # NaN code
            vals.append((1 + Fraction(m, 8)) * Fraction(2) ** (e - 7))
    return vals                                                              # index = code


def e2m1_codes():
    return [Fraction(v) for v in ("0", "0.5", "1", "1.5", "2", "3", "4", "6")]


def round_codes(v, codes):
    """Nearest code value, ties to the even code; sign preserved."""
    a = abs(Fraction(float(v)))
    best = min(range(len(codes)), key=lambda i: (abs(codes[i] - a), i % 2))
    r = float(codes[best])
    return -r if v < 0 else r


def pow2ceil_ref(f):
    f = Fraction(float(f))
    k = math.floor(math.log2(f))
    while Fraction(2) ** k > f:
        k -= 1
    while Fraction(2) ** (k + 1) <= f:
        k += 1
    return float(Fraction(2) ** k) if Fraction(2) ** k == f else float(Fraction(2) ** (k + 1))


def block_sim_ref(x, block, floor, inv, vmax, codes):
    x = [f32(v) for v in x]
    out = []
    for b in range(0, len(x), block):
        blk = x[b:b + block]
        amax = max(max(abs(v) for v in blk), floor)
        s = pow2ceil_ref(f32(f32(amax) * inv))                               # float32 product
        for v in blk:
            y = max(-vmax, min(vmax, float(v) / s))                          # exact: s = 2^k
            out.append(f32(round_codes(y, codes) * s))
    return np.array(out, dtype=np.float32)


# ----------------------------------------------------------------- POW2CEIL
def test_pow2ceil_hand():
    vals = np.array([1.0, 1.5, 0.75, 3.0, 2.0 ** -126, 2.0 ** 127, 0.5, up(1.0), down(1.0), down(2.0 ** -125)], f32)
    want = np.array([1.0, 2.0, 1.0, 4.0, 2.0 ** -126, 2.0 ** 127, 0.5, 2.0, 1.0, 2.0 ** -125], f32)
    assert np.array_equal(sims.pow2ceil_np(vals), want)
    with pytest.raises(ValueError):
        sims.pow2ceil_np(np.array([0.0], f32))
    with pytest.raises(ValueError):
        sims.pow2ceil_np(np.array([1e-45], f32))       # subnormal
    with pytest.raises(OverflowError):
        sims.pow2ceil_np(np.array([up(2.0 ** 127)], f32))


def test_scale_constants():
    # fl32(1/448) is slightly ABOVE 1/448, fl32(1/6) slightly above 1/6; the product rule below
    # depends on these exact values.
    assert sims.INV_448 == f32(0.002232143) and Fraction(float(sims.INV_448)) > Fraction(1, 448)
    assert Fraction(float(sims.INV_6)) > Fraction(1, 6)
    # amax = 448: fl32(448 * fl32(1/448)) rounds to exactly 1.0 -> s = 1 (not 2)
    assert f32(f32(448) * sims.INV_448) == 1.0
    # one ulp below 448 also gives exactly 1.0; one ulp above gives 1 + 2^-23 -> s = 2
    assert f32(down(448) * sims.INV_448) == 1.0
    assert f32(up(448) * sims.INV_448) == up(1.0)
    assert f32(f32(6) * sims.INV_6) == 1.0 and f32(up(6) * sims.INV_6) == up(1.0)
    assert f32(f32(3) * sims.INV_6) == 0.5


# ----------------------------------------------------------------- E4M3 / E2M1 rounding
E4M3_CASES = [
    (0.0, 0.0), (1.0, 1.0), (1.0625, 1.0), (1.1875, 1.25), (1.125, 1.125), (1.09375, 1.125),
    (2.0 ** -10, 0.0), (3 * 2.0 ** -10, 2.0 ** -8), (2.0 ** -9, 2.0 ** -9), (5 * 2.0 ** -11, 2.0 ** -9),
    (7.5 * 2.0 ** -9, 2.0 ** -6),                     # between subnormal 7 and normal 1.0*2^-6: tie -> even (8)
    (448.0, 448.0), (440.0, 448.0), (432.0, 448.0), (424.0, 416.0), (400.0, 384.0), (17.0, 16.0),
    (-1.0625, -1.0), (-3 * 2.0 ** -10, -2.0 ** -8), (0.3, 0.3125), (-0.3, -0.3125),
]


@pytest.mark.parametrize("x,want", E4M3_CASES)
def test_e4m3_hand(x, want):
    got = sims.round_grid_np(np.array([x], f32), sims.E4M3)[0]
    assert got == f32(want)
    assert round_codes(f32(x), e4m3_codes()) == want


E2M1_CASES = [(0.25, 0.0), (0.75, 1.0), (1.25, 1.0), (1.75, 2.0), (2.5, 2.0), (3.5, 4.0), (5.0, 4.0),
              (-0.75, -1.0), (-2.5, -2.0), (6.0, 6.0), (5.5, 6.0), (0.2, 0.0), (0.3, 0.5), (4.9, 4.0),
              (2.75, 3.0), (1.0, 1.0), (0.0, 0.0), (-5.0, -4.0)]


@pytest.mark.parametrize("x,want", E2M1_CASES)
def test_e2m1_hand(x, want):
    assert sims.round_grid_np(np.array([x], f32), sims.E2M1)[0] == f32(want)
    assert round_codes(f32(x), e2m1_codes()) == want


def test_round_grids_exhaustive_against_enumeration():
    rng = np.random.default_rng(0)
    codes8 = e4m3_codes()
    # every code value, every midpoint between neighbours, and random values
    vals = sorted(set(codes8))
    mids = [(a + b) / 2 for a, b in zip(vals, vals[1:])]
    xs = [float(v) for v in vals + mids] + list(rng.uniform(0, 448, 2000)) + list(rng.uniform(0, 2.0 ** -5, 500))
    xs = np.array(xs, f32)
    xs = np.concatenate([xs, -xs])
    got = sims.round_grid_np(xs, sims.E4M3)
    want = np.array([round_codes(v, codes8) for v in xs], f32)
    assert np.array_equal(got, want)
    codes4 = e2m1_codes()
    v4 = sorted(set(codes4))
    xs = [float(v) for v in v4] + [float((a + b) / 2) for a, b in zip(v4, v4[1:])] + list(rng.uniform(0, 6, 2000))
    xs = np.array(xs, f32)
    xs = np.concatenate([xs, -xs])
    assert np.array_equal(sims.round_grid_np(xs, sims.E2M1), np.array([round_codes(v, codes4) for v in xs], f32))


# ----------------------------------------------------------------- FP8_SIM / FP4_SIM blocks
def test_fp8_block_hand():
    # amax 448 -> s = 1: values are rounded on the plain e4m3 grid
    x = np.zeros(64, f32)
    x[:6] = [448.0, 1.0625, 440.0, -432.0, 0.3, 2.0 ** -10]
    y = sims.fp8_sim_np(x)
    assert list(y[:6]) == [448.0, 1.0, 448.0, -448.0, 0.3125, 0.0] and not y[6:].any()
    # amax one ulp above 448 -> s = 2: 1.0625 / 2 = 0.53125 -> 0.5 (tie to even) -> 1.0
    x[0] = up(448)
    y = sims.fp8_sim_np(x)
    assert y[0] == 448.0 and y[1] == 1.0 and y[2] == 448.0 and y[4] == 0.3125
    x[1] = 1.1875                                            # /2 = 0.59375 -> 0.5625... exact code? -> check ref
    assert np.array_equal(sims.fp8_sim_np(x), block_sim_ref(x, 64, sims.FP8_AMAX_FLOOR, sims.INV_448, 448.0, e4m3_codes()))
    # all zeros -> zeros; tiny block uses the 1e-4 amax floor
    assert not sims.fp8_sim_np(np.zeros(128, f32)).any()
    t = np.full(64, 3e-6, f32)
    s = sims.pow2ceil_np(np.array([f32(f32(1e-4) * sims.INV_448)]))[0]
    assert s == f32(2.0 ** -22)
    assert np.all(sims.fp8_sim_np(t) == f32(round_codes(f32(3e-6) / s, e4m3_codes()) * s))


def test_fp8_blocks_independent_and_partial():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 448)) * np.exp(rng.uniform(-8, 8, (5, 1)))).astype(f32)
    y = sims.fp8_sim_np(x)
    for r in range(5):
        assert np.array_equal(y[r], block_sim_ref(x[r], 64, sims.FP8_AMAX_FLOOR, sims.INV_448, 448.0, e4m3_codes()))
    # block independence: changing block 3 does not touch other blocks
    x2 = x.copy()
    x2[:, 3 * 64:4 * 64] *= 100
    y2 = sims.fp8_sim_np(x2)
    assert np.array_equal(np.delete(y, np.s_[192:256], axis=1), np.delete(y2, np.s_[192:256], axis=1))
    # partial last block (nope width 96 = 64 + 32): amax over the 32 values present
    z = rng.standard_normal(96).astype(f32)
    want = np.concatenate([block_sim_ref(z[:64], 64, sims.FP8_AMAX_FLOOR, sims.INV_448, 448.0, e4m3_codes()),
                           block_sim_ref(z[64:], 64, sims.FP8_AMAX_FLOOR, sims.INV_448, 448.0, e4m3_codes())])
    assert np.array_equal(sims.fp8_sim_np(z), want)
    # results are e4m3 x 2^k exactly: idempotent
    assert np.array_equal(sims.fp8_sim_np(y), y)


def test_empty_inputs():
    # the HF indexer scores against zero compressed rows before the first window closes
    for shape in [(1, 0, 64), (0, 448), (2, 3, 0, 128)]:
        e = np.zeros(shape, f32)
        assert sims.fp8_sim_np(e).shape == shape and sims.fp4_sim_np(e).shape == shape
        if shape[-1] != 448:
            assert sims.hadamard_np(e).shape == shape


def test_fp8_nope_leaves_rope_dims():
    rng = np.random.default_rng(4)
    row = rng.standard_normal((3, 512)).astype(f32)
    out = sims.fp8_sim_nope_np(row, 448)
    assert np.array_equal(out[:, 448:], row[:, 448:])
    assert np.array_equal(out[:, :448], sims.fp8_sim_np(row[:, :448]))
    assert not np.array_equal(out[:, :448], row[:, :448])


def test_fp4_block_hand():
    # amax 6 -> s = 1: the MODEL.md 11.4 tie table
    x = np.array([6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.75, -2.5, 0.2, 0.3] + [0.0] * 20, f32)
    y = sims.fp4_sim_np(x)
    assert list(y[:12]) == [6.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -1.0, -2.0, 0.0, 0.5]
    # amax 3 -> s = 0.5: everything halves
    assert list(sims.fp4_sim_np(x * f32(0.5))[:12]) == list(y[:12] * f32(0.5))
    # amax one ulp above 6 -> s = 2: 0.75/2 = 0.375 -> 0.5 -> 1.0 ; 5/2 = 2.5 -> 2 -> 4 ; 6.0000005/2 -> 3 -> 6
    x[0] = up(6.0)
    y = sims.fp4_sim_np(x)
    assert y[0] == 6.0 and y[2] == 1.0 and y[7] == 4.0 and y[1] == 0.0 and y[11] == 0.0
    assert np.array_equal(y, block_sim_ref(x, 32, sims.FP4_AMAX_FLOOR, sims.INV_6, 6.0, e2m1_codes()))
    assert not sims.fp4_sim_np(np.zeros(64, f32)).any()


def test_fp4_random_against_reference():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 128)) * np.exp(rng.uniform(-10, 10, (4, 1)))).astype(f32)
    y = sims.fp4_sim_np(x)
    for r in range(4):
        assert np.array_equal(y[r], block_sim_ref(x[r], 32, sims.FP4_AMAX_FLOOR, sims.INV_6, 6.0, e2m1_codes()))
    assert np.array_equal(sims.fp4_sim_np(y), y)


# ----------------------------------------------------------------- Hadamard
def sylvester(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def test_hadamard_small_hand():
    got = sims.hadamard_np(np.array([1.0, 2.0, 3.0, 4.0], f32))
    assert np.array_equal(got, np.array([10.0, -2.0, -4.0, 0.0], f32) * f32(0.5))
    got = sims.hadamard_np(np.array([1.0, 0.0], f32))
    assert np.allclose(got, [1 / math.sqrt(2)] * 2)


@pytest.mark.parametrize("n", [32, 64, 128])
def test_hadamard_matches_sylvester(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((7, n)).astype(f32)
    ref = (x.astype(np.float64) @ sylvester(n).T) / math.sqrt(n)
    got = sims.hadamard_np(x)
    assert got.dtype == np.float32
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-5)
    # H[i][j] = (-1)^popcount(i & j): row 1 of H is +,-,+,-...
    e1 = np.zeros(n, f32)
    e1[1] = 1.0
    col = sims.hadamard_np(e1) * f32(math.sqrt(n))
    assert np.allclose(col, [(-1) ** bin(i & 1).count("1") for i in range(n)])
    # orthonormal: applying it twice returns the input (rounding aside), dot products preserved
    assert np.allclose(sims.hadamard_np(got), x, atol=1e-5)
    assert np.allclose(got @ got.T, x @ x.T, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        sims.hadamard_np(np.zeros(96, f32))


def test_hadamard_scale_constant():
    assert f32(1.0 / math.sqrt(128)) == f32(0.08838834764831845)


# ----------------------------------------------------------------- top-k tie rule
def test_stable_topk_np():
    s = np.array([0.0, -0.0, 1.0, 0.0, -np.inf, 1.0, -0.0, 2.0, 0.0], f32)
    assert list(sims.stable_topk_np(s, 6)) == [7, 2, 5, 0, 1, 3]
    s2 = np.array([[3, 1, 3, 2, 3], [0, 0, 0, 0, 0]], f32)
    assert sims.stable_topk_np(s2, 3).tolist() == [[0, 2, 4], [0, 1, 2]]
    with pytest.raises(ValueError):
        sims.stable_topk_np(np.array([np.nan, 1], f32), 1)
