#!/usr/bin/env python3
"""Compare two fixtures (fixture.py format), e.g. an HF reference and logits dumped by dsv4.

    python3 tools/reference/compare_fixtures.py reference.dsv4fix candidate.dsv4fix [--rtol 1e-4]

Per position: r = max|cand - ref| / max|ref| over the vocabulary, and whether the argmax agrees.
Positions are split by whether the indexer top-k is active there (a ratio-4 layer has more than
index_topk compressed rows: floor((p+1)/4) > index_topk), because official-mode selections there
are sensitive to rounding (see README.md).  Exit status 1 if any position outside the top-k
region exceeds --rtol (or any position at all with --strict-topk).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import read_fixture  # noqa: E402


def compare(ref_path, cand_path):
    hr, tr, lr = read_fixture(ref_path)
    hc, tc, lc = read_fixture(cand_path)
    if not np.array_equal(tr, tc):
        raise SystemExit("token ids differ")
    if lr.shape != lc.shape:
        raise SystemExit(f"logit shapes differ: {lr.shape} vs {lc.shape}")
    for k in ("mode",):
        if hr.get(k) != hc.get(k):
            print(f"warning: {k} differs: {hr.get(k)!r} vs {hc.get(k)!r}")
    sr, sc = hr.get("gguf", {}).get("sha256"), hc.get("gguf", {}).get("sha256")
    if sr and sc and sr != sc:
        print(f"warning: GGUF sha256 differs: {sr} vs {sc}")
    r = np.abs(lc - lr).max(axis=1) / np.maximum(np.abs(lr).max(axis=1), 1e-30)
    agree = lr.argmax(axis=1) == lc.argmax(axis=1)
    sched = hr.get("schedule", {})
    topk = sched.get("index_topk")
    has_csa = 4 in sched.get("compress_ratios", [])
    n = len(tr)
    active = np.array([bool(has_csa and topk is not None and (p + 1) // 4 > topk) for p in range(n)])
    return r, agree, active


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference")
    ap.add_argument("candidate")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--strict-topk", action="store_true", help="also require --rtol where the top-k is active")
    ap.add_argument("--verbose", action="store_true", help="print every position")
    a = ap.parse_args(argv)
    r, agree, active = compare(a.reference, a.candidate)
    if a.verbose:
        for p in range(len(r)):
            print(f"{p:5d} {'topk' if active[p] else '    '} {r[p]:10.3e} {'' if agree[p] else 'ARGMAX DIFFERS'}")
    for name, m in (("top-k inactive", ~active), ("top-k active", active)):
        if m.any():
            print(f"{name:15s}: {m.sum():5d} positions, max rel {r[m].max():.3e}, median {np.median(r[m]):.3e}, "
                  f"argmax agreement {agree[m].mean():.4f}, worst position {int(np.flatnonzero(m)[r[m].argmax()])}")
    bad = (r > a.rtol) & (~active | a.strict_topk)
    if bad.any():
        print(f"FAIL: {bad.sum()} positions above rtol {a.rtol}, first {int(np.flatnonzero(bad)[0])}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
