"""Random synthetic DeepSeek V4 GGUF (numpy), laid out exactly as FORMATS.md section 2 / 3.

A stand-in for `dsv4 gen-model` when testing the reference tooling itself (the presets copy the
geometry of src/model/synthetic.cc at the time of writing; the weights are different).

    python3 tools/reference/tests/synth_gguf.py --preset tiny --seed 1 --out /tmp/tiny.gguf
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as W  # noqa: E402

PRESETS = {
    # name: layers, D, V, ctx, H, Dh, Dr, q_lora, o_lora, groups, window, idx heads, idx dim, top_k,
    #       n_hc, E, k, F, n_hash, ratios
    "tiny": dict(L=4, D=128, V=512, ctx=4096, H=4, Dh=96, Dr=32, Rq=64, Ro=32, G=2, W=16, HI=4,
                 DI=64, K=8, hc=4, E=8, k=2, F=64, n_hash=2, ratios=[0, 4, 16, 4]),
    "small": dict(L=5, D=256, V=1024, ctx=65536, H=8, Dh=512, Dr=64, Rq=128, Ro=64, G=2, W=128,
                  HI=4, DI=128, K=16, hc=4, E=16, k=6, F=256, n_hash=3, ratios=[0, 0, 4, 128, 4]),
    # the configuration of MODEL.md section 17 (HF cached vs full disagreement observed there)
    "spec17": dict(L=5, D=256, V=1024, ctx=65536, H=8, Dh=512, Dr=64, Rq=128, Ro=64, G=2, W=16,
                   HI=4, DI=128, K=8, hc=4, E=16, k=6, F=256, n_hash=3, ratios=[0, 0, 4, 128, 4]),
    # minimal model for fast unit tests of the converter
    "micro": dict(L=3, D=32, V=64, ctx=1024, H=2, Dh=32, Dr=8, Rq=16, Ro=8, G=2, W=8, HI=2,
                  DI=32, K=2, hc=2, E=4, k=2, F=16, n_hash=1, ratios=[0, 4, 8]),
}


def metadata(p):
    P = "deepseek4."
    L = p["L"]
    md = [
        ("general.architecture", W.STRING, "deepseek4"),
        ("general.name", W.STRING, "reference-tools synthetic"),
        (P + "block_count", W.U32, L),
        (P + "embedding_length", W.U32, p["D"]),
        (P + "vocab_size", W.U32, p["V"]),
        (P + "context_length", W.U64, p["ctx"]),
        (P + "attention.head_count", W.U32, p["H"]),
        (P + "attention.head_count_kv", W.U32, 1),
        (P + "attention.key_length", W.U32, p["Dh"]),
        (P + "attention.value_length", W.U32, p["Dh"]),
        (P + "rope.dimension_count", W.U32, p["Dr"]),
        (P + "attention.q_lora_rank", W.U32, p["Rq"]),
        (P + "attention.output_lora_rank", W.U32, p["Ro"]),
        (P + "attention.output_group_count", W.U32, p["G"]),
        (P + "attention.sliding_window", W.U32, p["W"]),
        (P + "attention.indexer.head_count", W.U32, p["HI"]),
        (P + "attention.indexer.key_length", W.U32, p["DI"]),
        (P + "attention.indexer.top_k", W.U32, p["K"]),
        (P + "attention.compress_ratios", ("array", W.U32), list(p["ratios"]) + [0]),
        (P + "attention.compress_rope_freq_base", W.F32, 160000.0),
        (P + "attention.layer_norm_rms_epsilon", W.F32, 1e-6),
        (P + "rope.freq_base", W.F32, 10000.0),
        (P + "rope.scaling.factor", W.F32, 16.0),
        (P + "rope.scaling.original_context_length", W.U32, 65536),
        (P + "rope.scaling.yarn_beta_fast", W.F32, 32.0),
        (P + "rope.scaling.yarn_beta_slow", W.F32, 1.0),
        (P + "hyper_connection.count", W.U32, p["hc"]),
        (P + "hyper_connection.sinkhorn_iterations", W.U32, 20),
        (P + "hyper_connection.epsilon", W.F32, 1e-6),
        (P + "expert_count", W.U32, p["E"]),
        (P + "expert_used_count", W.U32, p["k"]),
        (P + "expert_feed_forward_length", W.U32, p["F"]),
        (P + "expert_shared_count", W.U32, 1),
        (P + "hash_layer_count", W.U32, p["n_hash"]),
        (P + "expert_weights_scale", W.F32, 1.5),
        (P + "expert_weights_norm", W.BOOL, True),
        (P + "expert_gating_func", W.U32, 4),
        (P + "swiglu_clamp_exp", ("array", W.F32), [10.0] * L),
    ]
    return md


def tensors(p, seed, types="f32"):
    rng = np.random.default_rng(seed)
    D, V, H, Dh, Rq, Ro, G = p["D"], p["V"], p["H"], p["Dh"], p["Rq"], p["Ro"], p["G"]
    HI, DI, hc, E, k, F = p["HI"], p["DI"], p["hc"], p["E"], p["k"], p["F"]
    M = (2 + hc) * hc
    small = "F32" if types == "f32" else "F16"
    proj = "F32" if types == "f32" else "Q8_0"
    out = []

    def add(name, tname, torch_shape, arr):
        arr = np.asarray(arr).reshape(torch_shape)
        if tname == "Q8_0" and torch_shape[-1] % 32:
            tname = "F16"
        out.append((name, tname, tuple(reversed(torch_shape)), arr))

    def lin(out_dim, in_dim, gain=1.0):
        return (rng.standard_normal((out_dim, in_dim)) * gain / np.sqrt(in_dim)).astype(np.float32)

    def vec(n, mean=0.0, std=1.0):
        return (mean + std * rng.standard_normal(n)).astype(np.float32)

    add("token_embd.weight", small, (V, D), vec(V * D, 0, 1.0))
    add("output.weight", proj, (V, D), lin(V, D, 2.0))
    add("output_norm.weight", "F32", (D,), vec(D, 1.0, 0.1))
    add("output_hc_fn.weight", small, (hc, hc * D), lin(hc, hc * D, 2.0))
    add("output_hc_base.weight", "F32", (hc,), vec(hc, 0, 0.5))
    add("output_hc_scale.weight", "F32", (1,), vec(1, 1.0, 0.2))
    for l, r in enumerate(p["ratios"]):
        x = f"blk.{l}."
        for sub in ("attn", "ffn"):
            add(x + f"hc_{sub}_fn.weight", small, (M, hc * D), lin(M, hc * D, 2.0))
            add(x + f"hc_{sub}_scale.weight", "F32", (3,), vec(3, 1.0, 0.2))
            add(x + f"hc_{sub}_base.weight", "F32", (M,), vec(M, 0, 0.5))
        add(x + "attn_norm.weight", "F32", (D,), vec(D, 1.0, 0.1))
        add(x + "ffn_norm.weight", "F32", (D,), vec(D, 1.0, 0.1))
        add(x + "attn_q_a.weight", proj, (Rq, D), lin(Rq, D))
        add(x + "attn_q_a_norm.weight", "F32", (Rq,), vec(Rq, 1.0, 0.1))
        add(x + "attn_q_b.weight", proj, (H * Dh, Rq), lin(H * Dh, Rq))
        add(x + "attn_kv.weight", proj, (Dh, D), lin(Dh, D))
        add(x + "attn_kv_a_norm.weight", "F32", (Dh,), vec(Dh, 1.0, 0.1))
        add(x + "attn_sinks.weight", "F32", (H,), vec(H, 0, 1.0))
        add(x + "attn_output_a.weight", proj, (G * Ro, H * Dh // G), lin(G * Ro, H * Dh // G))
        add(x + "attn_output_b.weight", proj, (D, G * Ro), lin(D, G * Ro))
        if r != 0:
            c = 2 if r == 4 else 1
            add(x + "attn_compressor_ape.weight", small, (r, c * Dh), vec(r * c * Dh, 0, 0.5))
            add(x + "attn_compressor_kv.weight", small, (c * Dh, D), lin(c * Dh, D))
            add(x + "attn_compressor_gate.weight", small, (c * Dh, D), lin(c * Dh, D))
            add(x + "attn_compressor_norm.weight", "F32", (Dh,), vec(Dh, 1.0, 0.1))
        if r == 4:
            add(x + "indexer.attn_q_b.weight", small, (HI * DI, Rq), lin(HI * DI, Rq))
            add(x + "indexer.proj.weight", small, (HI, D), lin(HI, D))
            add(x + "indexer_compressor_ape.weight", small, (4, 2 * DI), vec(8 * DI, 0, 0.5))
            add(x + "indexer_compressor_kv.weight", small, (2 * DI, D), lin(2 * DI, D))
            add(x + "indexer_compressor_gate.weight", small, (2 * DI, D), lin(2 * DI, D))
            add(x + "indexer_compressor_norm.weight", "F32", (DI,), vec(DI, 1.0, 0.1))
        add(x + "ffn_gate_inp.weight", small, (E, D), lin(E, D))
        if l < p["n_hash"]:
            t2e = np.stack([rng.permutation(E)[:k] for _ in range(V)]).astype(np.int32)
            add(x + "ffn_gate_tid2eid.weight", "I32", (V, k), t2e)
        else:
            add(x + "exp_probs_b.bias", "F32", (E,), vec(E, 0, 0.1))
        add(x + "ffn_gate_exps.weight", "F32", (E, F, D), np.stack([lin(F, D) for _ in range(E)]))
        add(x + "ffn_up_exps.weight", "F32", (E, F, D), np.stack([lin(F, D) for _ in range(E)]))
        add(x + "ffn_down_exps.weight", "F32", (E, D, F), np.stack([lin(D, F) for _ in range(E)]))
        add(x + "ffn_gate_shexp.weight", proj, (F, D), lin(F, D))
        add(x + "ffn_up_shexp.weight", proj, (F, D), lin(F, D))
        add(x + "ffn_down_shexp.weight", proj, (D, F), lin(D, F))
    return out


def build(path, preset="tiny", seed=1, types="f32", overrides=None):
    p = dict(PRESETS[preset])
    p.update(overrides or {})
    p["L"] = len(p["ratios"])
    W.write_gguf(path, metadata(p), tensors(p, seed, types))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--types", default="f32", choices=["f32", "f16q8"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    build(a.out, a.preset, a.seed, a.types)


if __name__ == "__main__":
    main()
