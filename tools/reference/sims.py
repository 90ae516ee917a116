"""Official-mode activation simulations (MODEL.md section 11) and the HF patches.

numpy twins (always importable):      fp8_sim_np, fp4_sim_np, hadamard_np, pow2ceil_np, ...
torch implementations (need torch):   fp8_sim, fp4_sim, hadamard, pow2ceil, ...
HF patches (need torch + a DeepseekV4ForCausalLM):
    install_official_sims(model)      FP8 on KV nope dims, Hadamard + FP4 on indexer q and rows
    set_indexer_topk_tiebreak(model)  indexer top-k = descending score, ties -> lower index

Definitions (MODEL.md 11.1 - 11.4), all in float32:
  POW2CEIL(f)  = 2^(e + (m != 0)) for a positive normal f32 with unbiased exponent e and
                 mantissa field m (computed on the bits, never with log2).
  FP8_SIM      per block of 64: amax = max(max|v|, 1e-4); s = POW2CEIL(fl32(amax * fl32(1/448)));
               v' = E4M3_RNE(clamp(v / s, -448, 448)) * s
  FP4_SIM      per block of 32: amax = max(max|v|, 6 * 2^-126); s = POW2CEIL(fl32(amax * fl32(1/6)));
               v' = E2M1_RNE(clamp(v / s, -6, 6)) * s
  HADAMARD(v)  Sylvester (natural order) butterfly with strides 1, 2, 4, ..., n/2,
               (a, b) -> (a + b, a - b), then * fl32(1/sqrt(n)); no random signs.
  E4M3 / E2M1 round to nearest with ties to the even code.  Both grids are "floating point with
  M mantissa bits and minimum normal exponent Emin", so rounding is done as
  round_half_even(|v| / q) * q with q = 2^(max(floor(log2|v|), Emin) - M): E4M3 M=3 Emin=-6
  (subnormal step 2^-9, max 448), E2M1 M=1 Emin=0 (0, 0.5, 1, 1.5, 2, 3, 4, 6).  Within one
  binade |v|/q = 2^M + mantissa, so "even integer" is exactly "even code" (also at the binade
  edges and for subnormals).
  A block that does not fill 64 (32) values (a nope width that is not a multiple of 64) is a
  partial block: amax over the values present (zero padding, which cannot change amax).
"""

from __future__ import annotations

import collections
import functools
import math
import threading

import numpy as np

FP8_BLOCK = 64
FP4_BLOCK = 32
FP8_MAX = 448.0
FP4_MAX = 6.0
INV_448 = np.float32(1.0 / 448.0)          # fl32(1/448)
INV_6 = np.float32(1.0 / 6.0)              # fl32(1/6)
FP8_AMAX_FLOOR = np.float32(1e-4)
FP4_AMAX_FLOOR = np.float32(6.0 * 2.0 ** -126)
E4M3 = (3, -6)   # mantissa bits, minimum normal exponent
E2M1 = (1, 0)


# =============================================================================== numpy twins
def pow2ceil_np(f):
    f = np.ascontiguousarray(f, dtype=np.float32)
    bits = f.view(np.uint32)
    e = (bits >> np.uint32(23)) & np.uint32(0xFF)
    m = bits & np.uint32(0x7FFFFF)
    if np.any(bits >> np.uint32(31)) or np.any(e == 0) or np.any(e == 255):
        raise ValueError("POW2CEIL needs positive normal finite float32 inputs")
    er = e + (m != 0).astype(np.uint32)
    if np.any(er >= 255):
        raise OverflowError("POW2CEIL overflow")
    return (er << np.uint32(23)).view(np.float32)


def _pow2_np(k):
    k = np.asarray(k, dtype=np.int64)
    if np.any(k < -126) or np.any(k > 127):
        raise ValueError("power of two outside the normal float32 range")
    return ((k + 127).astype(np.uint32) << np.uint32(23)).view(np.float32)


def round_grid_np(x, fmt):
    """Round float32 x to the e4m3 (fmt=E4M3) or e2m1 (fmt=E2M1) grid, nearest, ties to even.
    |x| must already be within the format's range."""
    mant_bits, emin = fmt
    x = np.asarray(x, dtype=np.float32)
    ax = np.abs(x)
    _, ex = np.frexp(ax)                       # ax = mant * 2^ex, mant in [0.5, 1); 0 -> ex 0
    q = _pow2_np(np.maximum(ex.astype(np.int64) - 1, emin) - mant_bits)
    r = (np.rint(ax / q) * q).astype(np.float32)
    return np.copysign(r, x).astype(np.float32)


def _block_sim_np(x, block, floor, inv_max, vmax, fmt):
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    pad = (-n) % block
    xp = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1) if pad else x
    xb = xp.reshape(x.shape[:-1] + (xp.shape[-1] // block, block))
    amax = np.maximum(np.abs(xb).max(axis=-1, keepdims=True), floor).astype(np.float32)
    s = pow2ceil_np((amax * inv_max).astype(np.float32))
    y = np.clip(xb / s, -vmax, vmax).astype(np.float32)
    out = (round_grid_np(y, fmt) * s).astype(np.float32)
    return out.reshape(xp.shape)[..., :n]


def fp8_sim_np(x, block=FP8_BLOCK):
    return _block_sim_np(x, block, FP8_AMAX_FLOOR, INV_448, np.float32(FP8_MAX), E4M3)


def fp4_sim_np(x, block=FP4_BLOCK):
    return _block_sim_np(x, block, FP4_AMAX_FLOOR, INV_6, np.float32(FP4_MAX), E2M1)


def hadamard_np(x):
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size {n} is not a power of two")
    y = x.copy()
    h = 1
    while h < n:
        y = y.reshape(x.shape[:-1] + (n // (2 * h), 2, h))
        a, b = y[..., 0, :], y[..., 1, :]
        y = np.stack([a + b, a - b], axis=-2).reshape(x.shape)
        h *= 2
    return (y * np.float32(1.0 / math.sqrt(n))).astype(np.float32)


def fp8_sim_nope_np(row, n_nope):
    row = np.asarray(row, dtype=np.float32)
    return np.concatenate([fp8_sim_np(row[..., :n_nope]), row[..., n_nope:]], axis=-1)


def indexer_sim_np(v):
    return fp4_sim_np(hadamard_np(v))


def stable_topk_np(scores, k):
    """Indices of the k largest scores, descending, ties -> lower index (MODEL.md 7.7)."""
    s = np.asarray(scores, dtype=np.float32) + np.float32(0.0)
    if np.isnan(s).any():
        raise ValueError("NaN score")
    idx = np.argsort(-s, axis=-1, kind="stable")
    return idx[..., :k]


# =============================================================================== torch
def _torch():
    import torch

    return torch


def pow2ceil(f):
    torch = _torch()
    if f.dtype != torch.float32:
        raise TypeError("POW2CEIL is defined on float32")
    bits = f.contiguous().view(torch.int32)
    e = (bits >> 23) & 0xFF
    m = bits & 0x7FFFFF
    if bool(((bits < 0) | (e == 0) | (e == 255)).any()):
        raise ValueError("POW2CEIL needs positive normal finite float32 inputs")
    er = e + (m != 0).to(torch.int32)
    if bool((er >= 255).any()):
        raise OverflowError("POW2CEIL overflow")
    return (er << 23).view(torch.float32)


def _pow2(k):
    torch = _torch()
    if bool(((k < -126) | (k > 127)).any()):
        raise ValueError("power of two outside the normal float32 range")
    return ((k.to(torch.int32) + 127) << 23).view(torch.float32)


def round_grid(x, fmt):
    torch = _torch()
    mant_bits, emin = fmt
    ax = x.abs()
    _, ex = torch.frexp(ax)
    q = _pow2(torch.clamp(ex.to(torch.int32) - 1, min=emin) - mant_bits)
    r = torch.round(ax / q) * q           # torch.round: half to even
    return torch.copysign(r, x)


def _block_sim(x, block, floor, inv_max, vmax, fmt):
    torch = _torch()
    if x.dtype != torch.float32:
        raise TypeError(f"simulation input must be float32, got {x.dtype}")
    n = x.shape[-1]
    pad = (-n) % block
    xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
    xb = xp.reshape(*x.shape[:-1], xp.shape[-1] // block, block)
    amax = torch.clamp(xb.abs().amax(dim=-1, keepdim=True), min=float(floor))
    s = pow2ceil(amax * torch.tensor(inv_max, dtype=torch.float32, device=x.device))
    y = torch.clamp(xb / s, -vmax, vmax)
    out = round_grid(y, fmt) * s
    return out.reshape(xp.shape)[..., :n]


def fp8_sim(x, block=FP8_BLOCK):
    return _block_sim(x, block, FP8_AMAX_FLOOR, INV_448, FP8_MAX, E4M3)


def fp4_sim(x, block=FP4_BLOCK):
    return _block_sim(x, block, FP4_AMAX_FLOOR, INV_6, FP4_MAX, E2M1)


def hadamard(x):
    torch = _torch()
    if x.dtype != torch.float32:
        raise TypeError("Hadamard input must be float32")
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size {n} is not a power of two")
    shape = x.shape
    y = x
    h = 1
    while h < n:
        y = y.reshape(*shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack([a + b, a - b], dim=-2).reshape(shape)
        h *= 2
    return y * torch.tensor(np.float32(1.0 / math.sqrt(n)), dtype=torch.float32, device=x.device)


def fp8_sim_nope(row, n_nope):
    torch = _torch()
    return torch.cat([fp8_sim(row[..., :n_nope]), row[..., n_nope:]], dim=-1)


def indexer_sim(v):
    return fp4_sim(hadamard(v))


TopK = collections.namedtuple("TopK", "values indices")

# Diagnostics of the selections made by stable_topk: rows where more than k entries are finite
# (the top-k really selects) and, among those, rows whose k-th and (k+1)-th scores are EQUAL
# (the tie rule decides the selected set).
TIE_STATS = collections.Counter()


def stable_topk(x, k, dim=-1, largest=True, sorted=True):
    """torch.topk replacement: descending, ties -> lower index; -0.0 and +0.0 compare equal."""
    torch = _torch()
    if not largest:
        raise NotImplementedError("stable_topk: largest=False")
    if dim % x.dim() != x.dim() - 1:
        raise NotImplementedError("stable_topk: only the last dimension")
    if not 0 <= k <= x.shape[-1]:
        raise ValueError(f"stable_topk: k={k} of {x.shape[-1]}")
    if bool(torch.isnan(x).any()):
        raise ValueError("stable_topk: NaN score")
    vals, idx = torch.sort(x + 0.0, dim=-1, descending=True, stable=True)  # + 0.0 turns -0.0 into +0.0
    if 0 < k < x.shape[-1]:
        nxt = vals[..., k]
        active = torch.isfinite(nxt)
        TIE_STATS["selecting_rows"] += int(active.sum())
        TIE_STATS["boundary_ties"] += int((active & (vals[..., k - 1] == nxt)).sum())
    return TopK(vals[..., :k], idx[..., :k])


# =============================================================================== HF patches
#
# Where MODEL.md puts the simulations and where the hooks sit in transformers 5.17
# (modeling_deepseek_v4.py):
#
# * raw KV row (MODEL.md 7.3): kv = RMSNorm_kv(W_kv x); RoPE(kv[Dn:]); FP8_SIM(kv[:Dn]).
#   HF DeepseekV4Attention.forward: `kv = self.kv_norm(self.kv_proj(h)).view(...)`, then
#   `apply_rotary_pos_emb(kv, cos, sin)`, which rewrites only the last rope dims and passes the
#   first Dn = head_dim - rope dims through untouched (torch.cat([nope, rotated])).  FP8_SIM
#   reads and writes only the first Dn dims, so FP8 on the output of `self_attn.kv_norm`
#   (forward hook) is bit-identical to FP8 after norm + RoPE.  The hooked row is what the cache
#   stores in the incremental path and what attention reads in both paths.
# * compressed row (MODEL.md 7.6): C = RMSNorm(P); RoPE(C[Dn:], w*r); FP8_SIM(C[:Dn]).
#   HF DeepseekV4{CSA,HCA}Compressor.forward: `compressed = self.kv_norm(pooled)`, then
#   apply_rotary_pos_emb on the rope slice -> same argument, forward hook on
#   `self_attn.compressor.kv_norm` (NOT on `compressor.indexer.kv_norm`).
# * indexer (MODEL.md 7.7 / 11.5): Hadamard + FP4 on every query head and every indexer row,
#   all dims, AFTER RoPE.  HF DeepseekV4Indexer.forward applies RoPE to the rows and to q and
#   then calls `self.scorer(q, compressed_kv, hidden_states)` (DeepseekV4IndexerScorer); both
#   tensors are consumed nowhere else.  A forward pre-hook on `indexer.scorer` replaces
#   (q, compressed_kv) by their simulated versions: exactly "after RoPE, before the scores".
#   In the cached path compressed_kv are the stored un-simulated rows; the simulation is a pure
#   function of each row, so simulating at scoring time equals simulating at emission time.
#   The indexer weights (weights_proj, inside the scorer) are not simulated, as in MODEL.md.

class SimStats:
    def __init__(self):
        self.calls = collections.Counter()

    def summary(self):
        return dict(sorted(self.calls.items()))


def _expect_f32(t, what):
    torch = _torch()
    if t.dtype != torch.float32:
        raise TypeError(f"{what}: simulations need float32 activations, got {t.dtype}")


def install_official_sims(model):
    """Registers the hooks described above on a DeepseekV4ForCausalLM.  Returns (handles, stats)."""
    cfg = model.config
    dh, dr, di = cfg.head_dim, cfg.qk_rope_head_dim, cfg.index_head_dim
    dn = dh - dr
    if di & (di - 1):
        raise ValueError(f"index_head_dim {di} is not a power of two: no Hadamard")
    stats = SimStats()
    handles = []

    def kv_hook(mod, args, out, tag):
        _expect_f32(out, tag)
        if out.shape[-1] != dh:
            raise RuntimeError(f"{tag}: row width {out.shape[-1]} != head_dim {dh}")
        stats.calls[tag] += 1
        return fp8_sim_nope(out, dn)

    def scorer_pre_hook(mod, args, kwargs, tag):
        if kwargs or len(args) != 3:
            raise RuntimeError(f"{tag}: unexpected scorer call signature ({len(args)} args, kwargs {list(kwargs)})")
        q, rows, hidden = args
        _expect_f32(q, tag + ".q")
        _expect_f32(rows, tag + ".rows")
        if q.shape[-1] != di or rows.shape[-1] != di:
            raise RuntimeError(f"{tag}: q {tuple(q.shape)} / rows {tuple(rows.shape)} width != {di}")
        stats.calls[tag] += 1
        return (indexer_sim(q), indexer_sim(rows), hidden), {}

    n_csa = 0
    for l, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        handles.append(attn.kv_norm.register_forward_hook(functools.partial(kv_hook, tag=f"layer{l}.raw_kv_fp8")))
        comp = attn.compressor
        if comp is None:
            continue
        handles.append(comp.kv_norm.register_forward_hook(functools.partial(kv_hook, tag=f"layer{l}.compressed_kv_fp8")))
        if type(comp).__name__ == "DeepseekV4CSACompressor":
            scorer = getattr(comp.indexer, "scorer", None)
            if scorer is None:
                raise RuntimeError("this transformers version has no DeepseekV4IndexerScorer; the indexer "
                                   "simulation hook point (5.17) is missing")
            handles.append(scorer.register_forward_pre_hook(
                functools.partial(scorer_pre_hook, tag=f"layer{l}.indexer_had_fp4"), with_kwargs=True))
            n_csa += 1
        elif type(comp).__name__ != "DeepseekV4HCACompressor":
            raise RuntimeError(f"unknown compressor class {type(comp).__name__}")
    return handles, stats


# ---- indexer top-k tie-break
_topk_state = threading.local()
_orig_tensor_topk = None


def _topk_dispatch(self, *args, **kwargs):
    if getattr(_topk_state, "active", False):
        _topk_state.calls += 1
        return stable_topk(self, *args, **kwargs)
    return _orig_tensor_topk(self, *args, **kwargs)


def set_indexer_topk_tiebreak(model, enabled: bool):
    """HF's DeepseekV4Indexer.forward selects with `index_scores.topk(top_k, dim=-1)`, whose order
    among equal scores is unspecified (and differs between the S x T full-forward call and the
    1 x T decode call).  When enabled, that one call (and only calls made while an indexer forward
    runs) uses stable_topk: descending score, ties -> lower index, the dsv4 rule of MODEL.md 7.7.
    Eligibility (c < floor((p+1)/4) via the -inf mask) and "top-k among eligible only" are HF's
    own and already match MODEL.md 7.7.  Each wrapped call checks that exactly one topk ran."""
    global _orig_tensor_topk
    torch = _torch()
    if _orig_tensor_topk is None:
        _orig_tensor_topk = torch.Tensor.topk
        torch.Tensor.topk = _topk_dispatch
    n = 0
    for mod in model.modules():
        if type(mod).__name__ != "DeepseekV4Indexer":
            continue
        n += 1
        if not hasattr(mod, "_dsv4_orig_forward"):
            mod._dsv4_orig_forward = mod.forward

            def fwd(*a, _mod=mod, **kw):
                if not _mod._dsv4_tiebreak:
                    return _mod._dsv4_orig_forward(*a, **kw)
                _topk_state.active, _topk_state.calls = True, 0
                try:
                    out = _mod._dsv4_orig_forward(*a, **kw)
                finally:
                    _topk_state.active = False
                if _topk_state.calls != 1:
                    raise RuntimeError(f"DeepseekV4Indexer.forward made {_topk_state.calls} topk calls, expected 1 "
                                       "(HF code changed: re-check the tie-break patch)")
                return out

            mod.forward = fwd
        mod._dsv4_tiebreak = bool(enabled)
    return n


def self_test_stable_topk(device="cpu"):
    """Quick runtime check of the tie rule on the actual device (ties, -0.0, -inf)."""
    torch = _torch()
    x = torch.tensor([[0.0, -0.0, 1.0, 0.0, float("-inf"), 1.0, -0.0, 2.0, 0.0]], device=device)
    got = stable_topk(x, 6).indices.cpu().tolist()[0]
    want = [7, 2, 5, 0, 1, 3]
    if got != want:
        raise RuntimeError(f"stable_topk tie rule broken on {device}: {got} != {want}")
    g = torch.Generator(device="cpu").manual_seed(0)
    r = torch.randint(-3, 4, (64, 300), generator=g).to(torch.float32)
    got = stable_topk(r.to(device), 40).indices.cpu().numpy()
    want = stable_topk_np(r.numpy(), 40)
    if not np.array_equal(got, want):
        raise RuntimeError(f"stable_topk disagrees with the numpy rule on {device}")
