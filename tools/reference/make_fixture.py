#!/usr/bin/env python3
"""Reference logits for dsv4 from Hugging Face transformers' DeepseekV4ForCausalLM.

    python3 tools/reference/make_fixture.py --gguf tiny.gguf --n-tokens 300 --seed 1 \
        --mode official --out tiny-official.dsv4fix [--self-check]
    python3 tools/reference/make_fixture.py --gguf tiny.gguf --tokens-file ids.txt --mode plain --out f.dsv4fix

Loads the GGUF into HF (float32; cuda if available, else cpu), runs the FULL-sequence forward
without cache (use_cache=False) and writes a fixture (fixture.py): the token ids, the logits of
every position (float32 [n_tokens][vocab]), the GGUF's sha256, the mode and a JSON header.

Modes:
  plain     HF as is, except the indexer top-k tie rule (below).  = dsv4 plain mode.
  official  plain + the MODEL.md section 11 simulations patched into HF (sims.py):
            FP8_SIM on the nope dims of every raw and compressed KV row, Hadamard + FP4_SIM on
            indexer queries and indexer rows.  = dsv4 official mode.

Indexer top-k (MODEL.md 7.7): HF's full forward masks rows c >= floor((p+1)/4) with -inf and takes
torch.topk among the rest, i.e. eligibility and "top-k among eligible only" already follow
MODEL.md.  The order among EQUAL scores is torch's, unspecified, and ties are common: a row whose
q.k is negative for every indexer head scores exactly 0 (ReLU) -- and with negative head weights
zero scores sit right at the selection boundary.  This script therefore replaces that single
topk call inside DeepseekV4Indexer.forward by a stable sort (descending, ties -> lower index,
-0.0 == +0.0), the dsv4 rule.  --hf-topk keeps HF's own topk (for diagnosis only).

--self-check additionally runs HF's own incremental (cached) path token by token (or in chunks of
--self-check-chunk tokens) and prints, per position, max|incremental - full| / max|full| of the
logits, once with HF's stock topk and once with the tie rule, so the disagreement described in
MODEL.md section 17 can be seen (and whether the tie rule removes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fixture import write_fixture  # noqa: E402
from gguf_read import file_sha256  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens-file", help="token ids, whitespace/comma separated ('#' starts a comment)")
    src.add_argument("--n-tokens", type=int, help="number of random token ids (uniform in [0, vocab))")
    ap.add_argument("--seed", type=int, default=0, help="seed for --n-tokens (numpy default_rng)")
    ap.add_argument("--mode", choices=["official", "plain"], required=True)
    ap.add_argument("--out", help="fixture file to write (omit with --self-check to only check)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    ap.add_argument("--self-check", action="store_true", help="compare HF's cached path with its full forward")
    ap.add_argument("--self-check-chunk", type=int, default=1, help="tokens per cached call in --self-check")
    ap.add_argument("--self-check-json", help="also write the per-position self-check numbers here")
    ap.add_argument("--hf-topk", action="store_true", help="diagnosis: keep HF's own indexer topk (no tie rule)")
    ap.add_argument("--skip-mtp", action="store_true", help="ignore MTP tensors (HF has no MTP block)")
    a = ap.parse_args(argv)
    if not a.out and not a.self_check:
        ap.error("nothing to do: give --out and/or --self-check")
    if a.n_tokens is not None and a.n_tokens < 1:
        ap.error("--n-tokens must be >= 1")
    if a.self_check_chunk < 1:
        ap.error("--self-check-chunk must be >= 1")
    return a


def load_tokens(a, vocab):
    if a.tokens_file:
        ids = []
        with open(a.tokens_file) as f:
            for line in f:
                line = line.split("#", 1)[0].replace(",", " ")
                ids.extend(int(t) for t in line.split())
        src = {"kind": "file", "path": os.path.basename(a.tokens_file)}
    else:
        rng = np.random.default_rng(a.seed)
        ids = rng.integers(0, vocab, size=a.n_tokens).tolist()
        src = {"kind": "random", "seed": a.seed, "generator": "numpy.random.default_rng(seed).integers(0, vocab, n)"}
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        raise SystemExit("no token ids")
    if ids.min() < 0 or ids.max() >= vocab:
        raise SystemExit(f"token id outside [0, {vocab})")
    return ids, src


def configure_torch():
    import torch

    # float32 must mean IEEE float32 everywhere (RoPE angles come from an f32 matmul in HF).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def full_logits(model, ids, device):
    import torch

    with torch.inference_mode():
        x = torch.as_tensor(ids, dtype=torch.long, device=device)[None]
        out = model(input_ids=x, use_cache=False)
        return out.logits[0].to(torch.float32).cpu().numpy()


def incremental_logits(model, ids, device, chunk=1):
    import torch

    rows = []
    with torch.inference_mode():
        x = torch.as_tensor(ids, dtype=torch.long, device=device)[None]
        past = None
        for s in range(0, x.shape[1], chunk):
            out = model(input_ids=x[:, s:s + chunk], past_key_values=past, use_cache=True)
            past = out.past_key_values
            if past is None:
                raise RuntimeError("HF returned no cache with use_cache=True")
            rows.append(out.logits[0].to(torch.float32).cpu().numpy())
    return np.concatenate(rows, axis=0)


def topk_active(hp, p):
    return any(r == 4 for r in hp.ratios) and (p + 1) // 4 > hp.index_topk


def rel_diff_rows(a, b):
    den = np.maximum(np.abs(b).max(axis=1), np.float32(1e-30))
    return np.abs(a - b).max(axis=1) / den


def run_self_check(model, hp, ids, device, chunk, tiebreak_after, json_path=None):
    from sims import set_indexer_topk_tiebreak

    res, fulls = {}, {}
    for label, tb in (("hf_topk", False), ("tie_rule", True)):
        set_indexer_topk_tiebreak(model, tb)
        fulls[label] = full_logits(model, ids, device)
        inc = incremental_logits(model, ids, device, chunk)
        res[label] = rel_diff_rows(inc, fulls[label])
    # how much the tie rule itself changes HF's full forward
    res["full_hf_vs_rule"] = rel_diff_rows(fulls["hf_topk"], fulls["tie_rule"])
    set_indexer_topk_tiebreak(model, tiebreak_after)
    n = len(ids)
    print(f"\nself-check: HF cached path ({chunk} token(s) per call) vs HF full forward, "
          "max|inc - full| / max|full| of each position's logits")
    print("(columns hf_topk / tie_rule: cached vs full with HF's topk / with the tie rule in both paths;\n"
          " full_hf_vs_rule: HF's full forward with its own topk vs with the tie rule)")
    print("    p  n_comp4  topk_active     hf_topk    tie_rule  full_hf_vs_rule")
    for p in range(n):
        print(f"{p:5d}  {(p + 1) // 4:7d}  {str(topk_active(hp, p)):>11s}  "
              f"{res['hf_topk'][p]:10.3e}  {res['tie_rule'][p]:10.3e}  {res['full_hf_vs_rule'][p]:15.3e}")
    act = np.array([topk_active(hp, p) for p in range(n)])
    summ = {}
    for label, r in res.items():
        summ[label] = {
            "max_inactive": float(r[~act].max()) if (~act).any() else None,
            "max_active": float(r[act].max()) if act.any() else None,
        }
        print(f"summary {label:15s}: max over positions without active top-k "
              f"{summ[label]['max_inactive']}, with active top-k {summ[label]['max_active']}")
    if not act.any():
        print(f"note: the indexer top-k never selects (need a ratio-4 layer and more than "
              f"{hp.index_topk} compressed rows, i.e. position >= {4 * hp.index_topk + 3})")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"chunk": chunk, "summary": summ, "topk_active": act.tolist(),
                       "rel_diff": {k: v.tolist() for k, v in res.items()}}, f, indent=1)
    return res


def check_sim_coverage(hp, stats, n_tokens):
    """Every hook that must have run for this sequence length did run."""
    missing = []
    for l, r in enumerate(hp.ratios):
        if stats.calls[f"layer{l}.raw_kv_fp8"] == 0:
            missing.append(f"layer{l}.raw_kv_fp8")
        if r != 0 and n_tokens >= r and stats.calls[f"layer{l}.compressed_kv_fp8"] == 0:
            missing.append(f"layer{l}.compressed_kv_fp8")
        if r == 4 and stats.calls[f"layer{l}.indexer_had_fp4"] == 0:
            missing.append(f"layer{l}.indexer_had_fp4")
    if missing:
        raise RuntimeError(f"official-mode hooks did not run: {missing}")


def main(argv=None):
    a = parse_args(argv)
    import torch

    from gguf_to_hf import build_hf_model
    from sims import TIE_STATS, install_official_sims, self_test_stable_topk, set_indexer_topk_tiebreak

    configure_torch()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    t0 = time.time()
    model, hp, info = build_hf_model(a.gguf, device=device, skip_mtp=a.skip_mtp)
    print(f"[make_fixture] loaded {a.gguf} into transformers {info['transformers']} / torch {info['torch']} "
          f"on {device}: {hp.n_layer} layers {info['layer_types']}, compress_rates {info['compress_rates']}, "
          f"hash layers {hp.n_hash}, {info['n_params']} tensors, attention {info['attn_implementation']}, "
          f"experts {info['experts_implementation']} ({time.time() - t0:.1f}s)")
    self_test_stable_topk(device)
    n_idx = set_indexer_topk_tiebreak(model, not a.hf_topk)
    stats = None
    if a.mode == "official":
        _, stats = install_official_sims(model)
    ids, src = load_tokens(a, hp.n_vocab)
    n = len(ids)
    first_active = 4 * hp.index_topk + 3 if any(r == 4 for r in hp.ratios) else None
    print(f"[make_fixture] {n} tokens, mode {a.mode}, {n_idx} indexers, tie rule "
          f"{'off (HF topk)' if a.hf_topk else 'lower index'}; indexer top-k active from position {first_active}")

    if a.self_check:
        run_self_check(model, hp, ids, device, a.self_check_chunk, not a.hf_topk, a.self_check_json)
        if stats is not None:
            stats.calls.clear()
    if not a.out:
        return 0

    t0 = time.time()
    TIE_STATS.clear()
    logits = full_logits(model, ids, device)
    ties = dict(TIE_STATS)
    if stats is not None:
        check_sim_coverage(hp, stats, n)
    if logits.shape != (n, hp.n_vocab):
        raise RuntimeError(f"logits shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise RuntimeError("non-finite logits")
    header = {
        "created_by": "tools/reference/make_fixture.py",
        "reference": "huggingface transformers DeepseekV4ForCausalLM, full forward, use_cache=False, float32",
        "gguf": {"file": os.path.basename(a.gguf), "sha256": file_sha256(a.gguf), "bytes": os.path.getsize(a.gguf)},
        "mode": a.mode,
        "simulations": {"fp8_kv_nope": a.mode == "official", "indexer_hadamard_fp4": a.mode == "official",
                        "hook_calls": stats.summary() if stats else {}},
        "indexer_topk": "hf-torch-topk (unpatched, ties unspecified)" if a.hf_topk
        else "descending score, ties to lower index (MODEL.md 7.7)",
        "indexer_topk_stats": ties,
        "token_source": src,
        "schedule": {"compress_ratios": hp.ratios, "hash_layers": hp.n_hash, "index_topk": hp.index_topk,
                     "sliding_window": hp.window, "first_topk_active_position": first_active},
        "hf": info,
    }
    h = write_fixture(a.out, header, ids.astype(np.int32), logits)
    print(f"[make_fixture] wrote {a.out}: {n} x {hp.n_vocab} logits, sha256(gguf) {header['gguf']['sha256'][:16]}..., "
          f"argmax[-1] {h['argmax'][-1]} ({time.time() - t0:.1f}s)")
    if stats is not None:
        print(f"[make_fixture] simulation hook calls: {stats.summary()}")
    if not a.hf_topk:
        print(f"[make_fixture] indexer selections (query rows x CSA layers) where the top-k really selects: "
              f"{ties.get('selecting_rows', 0)}, with an exact tie at the k-th score: {ties.get('boundary_ties', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
