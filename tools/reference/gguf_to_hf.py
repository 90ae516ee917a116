"""GGUF (FORMATS.md) -> Hugging Face transformers DeepseekV4ForCausalLM (transformers 5.17).

Pure-python / numpy part (testable without torch):
    hp  = read_hparams(GGUFReader(path))   every deepseek4.* key of FORMATS.md 2.2, validated
    kw  = hf_config_kwargs(hp)             kwargs for transformers.DeepseekV4Config
    sd  = build_state_dict(reader, hp)     {HF parameter name: numpy array (float32 / int64)}

Torch part:
    model, info = build_hf_model(path, device)   constructs the config and the model, loads every
                                                 parameter strictly and verifies the result.

Facts about HF's implementation this relies on (read from modeling_deepseek_v4.py /
configuration_deepseek_v4.py of transformers 5.17.0):
  * layer kinds are `config.layer_types` entries "sliding_attention" (ratio 0),
    "compressed_sparse_attention" (CSA: overlapping compressor + indexer) and
    "heavily_compressed_attention" (HCA: non-overlapping compressor), with ONE compression rate
    per kind in `config.compress_rates` -> a GGUF schedule may use ratio 0, 4 (CSA) and at most
    one other value (HCA).  Without an explicit `layer_types` HF falls back to V4-Pro's pattern,
    so it is always passed explicitly here.
  * hash-routed layers are `config.mlp_layer_types == "hash_moe"` (first hash_layer_count).
  * RoPE is the checkpoint's interleaved-pair layout (rotate_half pairs x[2j], x[2j+1]) on the
    LAST rope dims of each head ([nope | rope]); GGUF keeps the checkpoint row order and HF's own
    checkpoint conversion only renames keys, so no permutation is needed.
  * rope_parameters is nested {"main": default rope, "compress": yarn with attention_factor 1}.
  * experts: gate_up_proj [E, 2F, D] = concat(w1 (gate), w3 (up)) along dim 1; down_proj [E, D, F].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from gguf_read import GGUFReader, T_BOOL, T_F32, T_F64, T_STRING

P = "deepseek4."

SLIDING, CSA, HCA = "sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"
GATING_SQRT_SOFTPLUS = 4  # llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE value written by ds4 / gen-model


class ConversionError(ValueError):
    pass


@dataclass
class Hparams:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ctx: int
    n_head: int
    head_dim: int
    n_rot: int
    q_lora: int
    o_lora: int
    n_group: int
    window: int
    n_index_head: int
    index_dim: int
    index_topk: int
    ratios: list
    compress_rope_base: float
    rms_eps: float
    rope_base: float
    yarn_factor: float
    yarn_orig_ctx: int
    yarn_beta_fast: float
    yarn_beta_slow: float
    n_hc: int
    sinkhorn_iters: int
    hc_eps: float
    n_expert: int
    n_expert_used: int
    n_ff: int
    n_hash: int
    route_scale: float
    swiglu_limit: float
    warnings: list = field(default_factory=list)

    @property
    def n_nope(self) -> int:
        return self.head_dim - self.n_rot


# keys consumed (FORMATS.md 2.2); anything else under deepseek4. is reported
_KNOWN_KEYS = {
    "block_count", "embedding_length", "vocab_size", "context_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "attention.value_length",
    "rope.dimension_count", "attention.q_lora_rank", "attention.output_lora_rank",
    "attention.output_group_count", "attention.sliding_window", "attention.indexer.head_count",
    "attention.indexer.key_length", "attention.indexer.top_k", "attention.compress_ratios",
    "attention.compress_rope_freq_base", "attention.layer_norm_rms_epsilon", "rope.freq_base",
    "rope.scaling.factor", "rope.scaling.original_context_length", "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_beta_slow", "hyper_connection.count", "hyper_connection.sinkhorn_iterations",
    "hyper_connection.epsilon", "expert_count", "expert_used_count", "expert_feed_forward_length",
    "expert_shared_count", "hash_layer_count", "expert_weights_scale", "expert_weights_norm",
    "swiglu_clamp_exp", "expert_group_count", "expert_group_used_count", "expert_gating_func",
    "swiglu_clamp_shexp", "nextn_predict_layers",
}


def _get(md, types, key, kind, default=None, required=True):
    full = P + key
    if full not in md:
        if required:
            raise ConversionError(f"missing metadata key {full}")
        return default
    v, t = md[full], types[full]
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or t in (T_F32, T_F64, T_BOOL, T_STRING):
            raise ConversionError(f"{full} must be an integer, got {v!r} (type id {t})")
        return int(v)
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or t in (T_BOOL, T_STRING):
            raise ConversionError(f"{full} must be a number, got {v!r} (type id {t})")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConversionError(f"{full} must be a bool, got {v!r}")
        return v
    if kind == "int_list":
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ConversionError(f"{full} must be an integer array, got {v!r}")
        return [int(x) for x in v]
    if kind == "float_list":
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise ConversionError(f"{full} must be a numeric array, got {v!r}")
        return [float(x) for x in v]
    raise AssertionError(kind)


def read_hparams(reader: GGUFReader) -> Hparams:
    md, ty = reader.metadata, reader.metadata_types
    arch = md.get("general.architecture")
    if arch is not None and arch != "deepseek4":
        raise ConversionError(f"general.architecture is {arch!r}, expected 'deepseek4'")
    warnings = []
    unknown = sorted(k[len(P):] for k in md if k.startswith(P) and k[len(P):] not in _KNOWN_KEYS)
    if unknown:
        warnings.append(f"metadata keys not used by the HF conversion: {unknown}")

    g = lambda k, kind, **kw: _get(md, ty, k, kind, **kw)  # noqa: E731
    L = g("block_count", "int")
    hp = Hparams(
        n_layer=L,
        n_embd=g("embedding_length", "int"),
        n_vocab=g("vocab_size", "int"),
        n_ctx=g("context_length", "int", default=1048576, required=False),
        n_head=g("attention.head_count", "int"),
        head_dim=g("attention.key_length", "int"),
        n_rot=g("rope.dimension_count", "int"),
        q_lora=g("attention.q_lora_rank", "int"),
        o_lora=g("attention.output_lora_rank", "int"),
        n_group=g("attention.output_group_count", "int"),
        window=g("attention.sliding_window", "int"),
        n_index_head=g("attention.indexer.head_count", "int"),
        index_dim=g("attention.indexer.key_length", "int"),
        index_topk=g("attention.indexer.top_k", "int"),
        ratios=g("attention.compress_ratios", "int_list"),
        compress_rope_base=g("attention.compress_rope_freq_base", "float"),
        rms_eps=g("attention.layer_norm_rms_epsilon", "float"),
        rope_base=g("rope.freq_base", "float"),
        yarn_factor=g("rope.scaling.factor", "float"),
        yarn_orig_ctx=g("rope.scaling.original_context_length", "int"),
        yarn_beta_fast=g("rope.scaling.yarn_beta_fast", "float"),
        yarn_beta_slow=g("rope.scaling.yarn_beta_slow", "float"),
        n_hc=g("hyper_connection.count", "int"),
        sinkhorn_iters=g("hyper_connection.sinkhorn_iterations", "int"),
        hc_eps=g("hyper_connection.epsilon", "float"),
        n_expert=g("expert_count", "int"),
        n_expert_used=g("expert_used_count", "int"),
        n_ff=g("expert_feed_forward_length", "int"),
        n_hash=g("hash_layer_count", "int"),
        route_scale=g("expert_weights_scale", "float"),
        swiglu_limit=0.0,
        warnings=warnings,
    )

    def need(cond, msg):
        if not cond:
            raise ConversionError(msg)

    # ---- invariants HF (and the model) require
    need(g("attention.head_count_kv", "int") == 1, "attention.head_count_kv must be 1 (MQA, K = V)")
    need(g("attention.value_length", "int") == hp.head_dim, "attention.value_length must equal key_length")
    need(g("expert_shared_count", "int") == 1, "expert_shared_count must be 1 (HF builds exactly one shared expert)")
    need(g("expert_weights_norm", "bool"), "expert_weights_norm=false is not expressible in HF (it always normalises)")
    for k in ("expert_group_count", "expert_group_used_count"):
        v = g(k, "int", default=0, required=False)
        need(v == 0, f"{P}{k}={v}: group-limited routing is not part of DeepSeek V4 / HF")
    gf = g("expert_gating_func", "int", default=None, required=False)
    need(gf is None or gf == GATING_SQRT_SOFTPLUS,
         f"{P}expert_gating_func={gf}: only sqrt(softplus) ({GATING_SQRT_SOFTPLUS}) is supported")
    need(len(hp.ratios) >= L, f"attention.compress_ratios has {len(hp.ratios)} entries < block_count {L}")
    hp.ratios = hp.ratios[:L]
    need(all(r >= 0 for r in hp.ratios), f"negative compress ratio in {hp.ratios}")
    other = sorted({r for r in hp.ratios if r not in (0, 4)})
    need(len(other) <= 1,
         f"compress ratios {hp.ratios}: HF supports one rate for ratio-4 (CSA) layers and ONE other "
         f"non-zero rate for all non-overlapping (HCA) layers; found {other}")
    need(not other or other[0] >= 2, f"compress ratio {other} < 2")
    clamp = g("swiglu_clamp_exp", "float_list")
    need(len(clamp) >= L, f"swiglu_clamp_exp has {len(clamp)} entries < block_count {L}")
    clamp = clamp[:L]
    need(all(c == clamp[0] for c in clamp),
         f"swiglu_clamp_exp varies per layer {clamp}: HF has one swiglu_limit for every layer")
    need(clamp[0] > 1e-6,
         f"swiglu_clamp_exp={clamp[0]} (<= 1e-6 means 'no clamp' in MODEL.md 8.5, HF always clamps)")
    hp.swiglu_limit = clamp[0]
    shexp = g("swiglu_clamp_shexp", "float_list", default=None, required=False)
    need(shexp is None or all(c == hp.swiglu_limit for c in shexp[:L]),
         f"swiglu_clamp_shexp {shexp} differs from swiglu_clamp_exp: HF uses one limit")
    need(hp.n_head % hp.n_group == 0, "output_group_count must divide head_count")
    need(hp.n_rot % 2 == 0 and 0 < hp.n_rot <= hp.head_dim, f"rope.dimension_count={hp.n_rot} invalid")
    need(hp.n_rot <= hp.index_dim, "rope.dimension_count > indexer key_length")
    need(int(hp.head_dim * (hp.n_rot / hp.head_dim)) == hp.n_rot,
         "HF derives the rope width as int(head_dim * partial_rotary_factor); that is not exact here")
    need(0 < hp.n_expert_used <= hp.n_expert, "expert_used_count must be in [1, expert_count]")
    need(0 <= hp.n_hash <= L, "hash_layer_count must be in [0, block_count]")
    need(hp.index_topk > 0, "attention.indexer.top_k must be > 0")
    need(hp.window > 0, "attention.sliding_window must be > 0")
    need(hp.yarn_factor >= 1.0, "rope.scaling.factor < 1")
    need(hp.sinkhorn_iters >= 1, "hyper_connection.sinkhorn_iterations < 1")

    # ---- things only official mode cares about (MODEL.md 11): warn, sims.py enforces
    if hp.n_nope % 64 != 0:
        warnings.append(f"nope width {hp.n_nope} is not a multiple of the FP8 block (64): the last "
                        "FP8_SIM block is partial (amax over the remaining values)")
    if hp.index_dim & (hp.index_dim - 1):
        warnings.append(f"indexer key_length {hp.index_dim} is not a power of two: no Hadamard (official mode impossible)")
    if hp.index_dim % 32 != 0:
        warnings.append(f"indexer key_length {hp.index_dim} is not a multiple of the FP4 block (32)")
    return hp


def hf_schedule(hp: Hparams):
    kinds = {0: SLIDING, 4: CSA}
    hca = sorted({r for r in hp.ratios if r not in (0, 4)})
    layer_types = [kinds.get(r, HCA) for r in hp.ratios]
    compress_rates = {CSA: 4, HCA: hca[0] if hca else 128}
    mlp_layer_types = ["hash_moe" if l < hp.n_hash else "moe" for l in range(hp.n_layer)]
    return layer_types, compress_rates, mlp_layer_types


def hf_config_kwargs(hp: Hparams) -> dict:
    layer_types, compress_rates, mlp_layer_types = hf_schedule(hp)
    prf = hp.n_rot / hp.head_dim
    return dict(
        vocab_size=hp.n_vocab,
        hidden_size=hp.n_embd,
        moe_intermediate_size=hp.n_ff,
        num_hidden_layers=hp.n_layer,
        num_attention_heads=hp.n_head,
        num_key_value_heads=1,
        head_dim=hp.head_dim,
        q_lora_rank=hp.q_lora,
        num_experts_per_tok=hp.n_expert_used,
        n_routed_experts=hp.n_expert,
        n_shared_experts=1,
        scoring_func="sqrtsoftplus",
        norm_topk_prob=True,
        routed_scaling_factor=hp.route_scale,
        max_position_embeddings=hp.n_ctx,
        rope_theta=hp.rope_base,
        layer_types=layer_types,
        compress_rates=compress_rates,
        compress_rope_theta=hp.compress_rope_base,
        hc_mult=hp.n_hc,
        hc_sinkhorn_iters=hp.sinkhorn_iters,
        hc_eps=hp.hc_eps,
        mlp_layer_types=mlp_layer_types,
        swiglu_limit=hp.swiglu_limit,
        sliding_window=hp.window,
        o_groups=hp.n_group,
        o_lora_rank=hp.o_lora,
        index_n_heads=hp.n_index_head,
        index_head_dim=hp.index_dim,
        index_topk=hp.index_topk,
        num_nextn_predict_layers=0,
        hidden_act="silu",
        rms_norm_eps=hp.rms_eps,
        tie_word_embeddings=False,
        partial_rotary_factor=prf,
        # explicit nested form: HF's __post_init__ keeps it as is (both sub-dicts present)
        rope_parameters={
            "main": {"rope_type": "default", "rope_theta": hp.rope_base, "partial_rotary_factor": prf},
            "compress": {
                "rope_type": "yarn",
                "rope_theta": hp.compress_rope_base,
                "partial_rotary_factor": prf,
                "factor": hp.yarn_factor,
                "original_max_position_embeddings": hp.yarn_orig_ctx,
                "beta_fast": hp.yarn_beta_fast,
                "beta_slow": hp.yarn_beta_slow,
                "attention_factor": 1.0,  # MODEL.md 7.4: no YaRN magnitude scaling
            },
        },
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def rope_inv_freq_reference(hp: Hparams, compressed: bool) -> np.ndarray:
    """MODEL.md 7.4 frequencies (float32): theta_main without YaRN, or theta_comp with YaRN."""
    dr = hp.n_rot
    base = hp.compress_rope_base if compressed else hp.rope_base
    j = np.arange(dr // 2, dtype=np.float64)
    w = (1.0 / np.power(np.float32(base), (2 * j / dr).astype(np.float32))).astype(np.float32)
    if not compressed:
        return w
    corr = lambda beta: dr * math.log(hp.yarn_orig_ctx / (2 * math.pi * beta)) / (2 * math.log(base))  # noqa: E731
    lo = max(0, math.floor(corr(hp.yarn_beta_fast)))
    hi = min(dr - 1, math.ceil(corr(hp.yarn_beta_slow)))
    if lo == hi:
        hi += 0.001
    ramp = np.clip((j - lo) / (hi - lo), 0, 1).astype(np.float32)
    return (w * (1 - ramp) + (w / np.float32(hp.yarn_factor)) * ramp).astype(np.float32)


# --------------------------------------------------------------------------- tensor mapping
_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
    "output_norm.weight": "model.norm.weight",
    "output_hc_fn.weight": "model.hc_head.hc_fn",
    "output_hc_base.weight": "model.hc_head.hc_base",
    "output_hc_scale.weight": "model.hc_head.hc_scale",
}
# GGUF per-layer suffix -> (HF suffix candidates (first = transformers 5.17), layer condition)
_LAYER = {
    "hc_attn_fn.weight": (("attn_hc.fn",), "all"),
    "hc_attn_scale.weight": (("attn_hc.scale",), "all"),
    "hc_attn_base.weight": (("attn_hc.base",), "all"),
    "hc_ffn_fn.weight": (("ffn_hc.fn",), "all"),
    "hc_ffn_scale.weight": (("ffn_hc.scale",), "all"),
    "hc_ffn_base.weight": (("ffn_hc.base",), "all"),
    "attn_norm.weight": (("input_layernorm.weight",), "all"),
    "ffn_norm.weight": (("post_attention_layernorm.weight",), "all"),
    "attn_q_a.weight": (("self_attn.q_a_proj.weight",), "all"),
    "attn_q_a_norm.weight": (("self_attn.q_a_norm.weight",), "all"),
    "attn_q_b.weight": (("self_attn.q_b_proj.weight",), "all"),
    "attn_kv.weight": (("self_attn.kv_proj.weight",), "all"),
    "attn_kv_a_norm.weight": (("self_attn.kv_norm.weight",), "all"),
    "attn_sinks.weight": (("self_attn.sinks",), "all"),
    "attn_output_a.weight": (("self_attn.o_a_proj.weight",), "all"),
    "attn_output_b.weight": (("self_attn.o_b_proj.weight",), "all"),
    "attn_compressor_ape.weight": (("self_attn.compressor.position_bias",), "compressed"),
    "attn_compressor_kv.weight": (("self_attn.compressor.kv_proj.weight",), "compressed"),
    "attn_compressor_gate.weight": (("self_attn.compressor.gate_proj.weight",), "compressed"),
    "attn_compressor_norm.weight": (("self_attn.compressor.kv_norm.weight",), "compressed"),
    "indexer.attn_q_b.weight": (("self_attn.compressor.indexer.q_b_proj.weight",), "csa"),
    "indexer.proj.weight": (("self_attn.compressor.indexer.scorer.weights_proj.weight",
                             "self_attn.compressor.indexer.weights_proj.weight"), "csa"),
    "indexer_compressor_ape.weight": (("self_attn.compressor.indexer.position_bias",), "csa"),
    "indexer_compressor_kv.weight": (("self_attn.compressor.indexer.kv_proj.weight",), "csa"),
    "indexer_compressor_gate.weight": (("self_attn.compressor.indexer.gate_proj.weight",), "csa"),
    "indexer_compressor_norm.weight": (("self_attn.compressor.indexer.kv_norm.weight",), "csa"),
    "ffn_gate_inp.weight": (("mlp.gate.weight",), "all"),
    "exp_probs_b.bias": (("mlp.gate.e_score_correction_bias",), "topk"),
    "ffn_gate_tid2eid.weight": (("mlp.gate.tid2eid",), "hash"),
    "ffn_gate_exps.weight": (("mlp.experts.gate_up_proj",), "all"),   # first half  (gate = w1)
    "ffn_up_exps.weight": (("mlp.experts.gate_up_proj",), "all"),     # second half (up = w3)
    "ffn_down_exps.weight": (("mlp.experts.down_proj",), "all"),
    "ffn_gate_shexp.weight": (("mlp.shared_experts.gate_proj.weight",), "all"),
    "ffn_up_shexp.weight": (("mlp.shared_experts.up_proj.weight",), "all"),
    "ffn_down_shexp.weight": (("mlp.shared_experts.down_proj.weight",), "all"),
}
_BLK = re.compile(r"^blk\.(\d+)\.(.+)$")


def _layer_has(hp: Hparams, l: int, cond: str) -> bool:
    r = hp.ratios[l]
    return {"all": True, "compressed": r != 0, "csa": r == 4, "hash": l < hp.n_hash,
            "topk": l >= hp.n_hash}[cond]


def is_mtp_tensor(name: str, hp: Hparams) -> bool:
    m = _BLK.match(name)
    return name.startswith("mtp.") or (m is not None and int(m.group(1)) >= hp.n_layer)


def expected_hf_shapes(hp: Hparams, indexer_scorer: bool = True) -> dict:
    """HF parameter/buffer name -> torch shape, for every entry of model.state_dict()."""
    D, V, H, Dh, Rq, Ro, G = hp.n_embd, hp.n_vocab, hp.n_head, hp.head_dim, hp.q_lora, hp.o_lora, hp.n_group
    HI, DI, hc, E, k, F = hp.n_index_head, hp.index_dim, hp.n_hc, hp.n_expert, hp.n_expert_used, hp.n_ff
    M = (2 + hc) * hc
    s = {
        "model.embed_tokens.weight": (V, D), "lm_head.weight": (V, D), "model.norm.weight": (D,),
        "model.hc_head.hc_fn": (hc, hc * D), "model.hc_head.hc_base": (hc,), "model.hc_head.hc_scale": (1,),
    }
    for l, r in enumerate(hp.ratios):
        x = f"model.layers.{l}."
        for sub in ("attn_hc", "ffn_hc"):
            s[x + sub + ".fn"] = (M, hc * D)
            s[x + sub + ".base"] = (M,)
            s[x + sub + ".scale"] = (3,)
        s[x + "input_layernorm.weight"] = (D,)
        s[x + "post_attention_layernorm.weight"] = (D,)
        a = x + "self_attn."
        s[a + "q_a_proj.weight"] = (Rq, D)
        s[a + "q_a_norm.weight"] = (Rq,)
        s[a + "q_b_proj.weight"] = (H * Dh, Rq)
        s[a + "kv_proj.weight"] = (Dh, D)
        s[a + "kv_norm.weight"] = (Dh,)
        s[a + "sinks"] = (H,)
        s[a + "o_a_proj.weight"] = (G * Ro, H * Dh // G)
        s[a + "o_b_proj.weight"] = (D, G * Ro)
        if r != 0:
            c = 2 if r == 4 else 1
            s[a + "compressor.position_bias"] = (r, c * Dh)
            s[a + "compressor.kv_proj.weight"] = (c * Dh, D)
            s[a + "compressor.gate_proj.weight"] = (c * Dh, D)
            s[a + "compressor.kv_norm.weight"] = (Dh,)
        if r == 4:
            i = a + "compressor.indexer."
            s[i + "q_b_proj.weight"] = (HI * DI, Rq)
            s[i + ("scorer.weights_proj.weight" if indexer_scorer else "weights_proj.weight")] = (HI, D)
            s[i + "position_bias"] = (4, 2 * DI)
            s[i + "kv_proj.weight"] = (2 * DI, D)
            s[i + "gate_proj.weight"] = (2 * DI, D)
            s[i + "kv_norm.weight"] = (DI,)
        m = x + "mlp."
        s[m + "gate.weight"] = (E, D)
        if l < hp.n_hash:
            s[m + "gate.tid2eid"] = (V, k)
        else:
            s[m + "gate.e_score_correction_bias"] = (E,)
        s[m + "experts.gate_up_proj"] = (E, 2 * F, D)
        s[m + "experts.down_proj"] = (E, D, F)
        s[m + "shared_experts.gate_proj.weight"] = (F, D)
        s[m + "shared_experts.up_proj.weight"] = (F, D)
        s[m + "shared_experts.down_proj.weight"] = (D, F)
    return s


def build_state_dict(reader: GGUFReader, hp: Hparams, hf_keys=None, skip_mtp: bool = False, log=print):
    """Map EVERY GGUF tensor to its HF parameter (numpy, torch order).  Raises on anything unmapped,
    on a missing tensor, on a shape mismatch and on an out-of-range tid2eid entry."""

    def resolve(cands):
        if hf_keys is None:
            return cands[0]
        hits = [c for c in cands if c in hf_keys]
        if len(hits) != 1:
            raise ConversionError(f"HF model has {len(hits)} of the candidate names {cands}")
        return hits[0]

    indexer_scorer = hf_keys is None or any(k.endswith("indexer.scorer.weights_proj.weight") for k in hf_keys)
    shapes = expected_hf_shapes(hp, indexer_scorer=indexer_scorer)
    sd = {}
    gate_up = {}  # layer -> {"gate": arr, "up": arr}
    unmapped, skipped = [], []
    for name, ti in reader.tensors.items():
        if name in _GLOBAL:
            target = _GLOBAL[name]
        else:
            m = _BLK.match(name)
            if is_mtp_tensor(name, hp):
                if skip_mtp:
                    skipped.append(name)
                    continue
                unmapped.append(name + " (MTP tensor: HF has no MTP block; pass skip_mtp)")
                continue
            if m is None or m.group(2) not in _LAYER:
                unmapped.append(name)
                continue
            l, suffix = int(m.group(1)), m.group(2)
            cands, cond = _LAYER[suffix]
            if not _layer_has(hp, l, cond):
                raise ConversionError(f"{name}: not expected on layer {l} (ratio {hp.ratios[l]}, "
                                      f"hash layers {hp.n_hash}); the model would ignore it")
            target = resolve(tuple(f"model.layers.{l}.{c}" for c in cands))
            if suffix in ("ffn_gate_exps.weight", "ffn_up_exps.weight"):
                arr = reader.tensor(name).astype(np.float32)
                want = (hp.n_expert, hp.n_ff, hp.n_embd)
                if arr.shape != want:
                    raise ConversionError(f"{name}: shape {arr.shape} (torch order), expected {want}")
                gate_up.setdefault(l, {})["gate" if suffix.startswith("ffn_gate") else "up"] = arr
                continue
        arr = reader.tensor(name)
        if target.endswith("gate.tid2eid"):
            if arr.dtype != np.int32:
                raise ConversionError(f"{name}: type {ti.type_name}, expected I32")
            if arr.size and (arr.min() < 0 or arr.max() >= hp.n_expert):
                raise ConversionError(f"{name}: expert id outside [0, {hp.n_expert})")
            arr = arr.astype(np.int64)
        else:
            if arr.dtype != np.float32:
                raise ConversionError(f"{name}: type {ti.type_name} is not a float tensor")
        if target in sd:
            raise ConversionError(f"two GGUF tensors map to {target}")
        sd[target] = np.ascontiguousarray(arr)
    for l, gu in gate_up.items():
        if set(gu) != {"gate", "up"}:
            raise ConversionError(f"layer {l}: ffn_gate_exps / ffn_up_exps incomplete ({sorted(gu)})")
        sd[f"model.layers.{l}.mlp.experts.gate_up_proj"] = np.ascontiguousarray(
            np.concatenate([gu["gate"], gu["up"]], axis=1))
    if unmapped:
        raise ConversionError("GGUF tensors without an HF parameter: " + ", ".join(unmapped))
    if skipped:
        log(f"[gguf_to_hf] skipped {len(skipped)} MTP tensors (HF transformers has no MTP block)")
    missing = sorted(set(shapes) - set(sd))
    extra = sorted(set(sd) - set(shapes))
    if missing or extra:
        raise ConversionError(f"HF parameters without a GGUF tensor: {missing}; unexpected: {extra}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(shapes[k]):
            raise ConversionError(f"{k}: shape {tuple(v.shape)}, expected {tuple(shapes[k])}")
    return sd


# --------------------------------------------------------------------------- torch part
def check_hf_config(config, hp: Hparams):
    layer_types, compress_rates, mlp_layer_types = hf_schedule(hp)
    problems = []
    if list(config.layer_types) != layer_types:
        problems.append(f"layer_types {config.layer_types} != {layer_types}")
    if list(config.mlp_layer_types) != mlp_layer_types:
        problems.append(f"mlp_layer_types {config.mlp_layer_types} != {mlp_layer_types}")
    if dict(config.compress_rates) != compress_rates:
        problems.append(f"compress_rates {config.compress_rates} != {compress_rates}")
    if getattr(config, "qk_rope_head_dim", None) != hp.n_rot:
        problems.append(f"qk_rope_head_dim {getattr(config, 'qk_rope_head_dim', None)} != {hp.n_rot}")
    rp = config.rope_parameters
    if rp["compress"].get("rope_type") != "yarn" or float(rp["compress"].get("attention_factor")) != 1.0:
        problems.append(f"compress rope parameters {rp['compress']}")
    if float(rp["compress"]["rope_theta"]) != hp.compress_rope_base or float(rp["main"]["rope_theta"]) != hp.rope_base:
        problems.append(f"rope thetas {rp}")
    if problems:
        raise ConversionError("HF config does not carry the GGUF schedule: " + "; ".join(problems))


def check_rotary(model, hp: Hparams, rtol=2e-6):
    """Every rotary module: inv_freq equals MODEL.md 7.4 and the cos/sin scaling is exactly 1."""
    import torch

    want = {"main": rope_inv_freq_reference(hp, False), "compress": rope_inv_freq_reference(hp, True)}
    n = 0
    for name, mod in model.named_modules():
        if type(mod).__name__ != "DeepseekV4RotaryEmbedding":
            continue
        for kind, ref in want.items():
            got = getattr(mod, f"{kind}_inv_freq").detach().to("cpu", torch.float32).numpy()
            scale = getattr(mod, f"{kind}_attention_scaling")
            if got.shape != ref.shape or not np.allclose(got, ref, rtol=rtol, atol=0):
                raise ConversionError(f"{name}.{kind}_inv_freq {got} != MODEL.md 7.4 {ref}")
            if float(scale) != 1.0:
                raise ConversionError(f"{name}.{kind}_attention_scaling = {scale}, expected 1.0")
        n += 1
    if n == 0:
        raise ConversionError("no DeepseekV4RotaryEmbedding module found")
    return n


def build_hf_model(gguf_path: str, device: str = "cpu", skip_mtp: bool = False, log=print):
    """Returns (model, info).  float32 weights, eval mode, eager attention."""
    import torch
    import transformers
    from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

    reader = GGUFReader(gguf_path)
    hp = read_hparams(reader)
    for w in hp.warnings:
        log(f"[gguf_to_hf] warning: {w}")
    config = DeepseekV4Config(**hf_config_kwargs(hp))
    check_hf_config(config, hp)
    with torch.device("cpu"):
        model = DeepseekV4ForCausalLM(config)
    model = model.to(torch.float32)
    if model.config._attn_implementation != "eager":
        raise ConversionError(f"attention implementation is {model.config._attn_implementation!r}, need eager")
    # routed experts: HF's own per-expert loop ("eager"), not a grouped-GEMM kernel
    experts_impl = getattr(model.config, "_experts_implementation", None)
    if experts_impl not in (None, "eager"):
        setter = getattr(model, "set_experts_implementation", None)
        if setter is not None:
            setter("eager")
        else:
            model.config._experts_implementation = "eager"
        experts_impl = getattr(model.config, "_experts_implementation", None)
        if experts_impl != "eager":
            raise ConversionError(f"could not select the eager experts implementation ({experts_impl!r})")
    hf_sd = model.state_dict()
    sd = build_state_dict(reader, hp, hf_keys=set(hf_sd), skip_mtp=skip_mtp, log=log)
    if set(sd) != set(hf_sd):
        raise ConversionError(f"state_dict keys differ: missing {sorted(set(hf_sd) - set(sd))}, "
                              f"extra {sorted(set(sd) - set(hf_sd))}")
    tsd = {}
    for k, v in sd.items():
        if tuple(hf_sd[k].shape) != v.shape:
            raise ConversionError(f"{k}: HF shape {tuple(hf_sd[k].shape)} vs GGUF {v.shape}")
        t = torch.from_numpy(v)
        if hf_sd[k].dtype != t.dtype:
            raise ConversionError(f"{k}: HF dtype {hf_sd[k].dtype} vs {t.dtype}")
        tsd[k] = t
    res = model.load_state_dict(tsd, strict=True)
    if res.missing_keys or res.unexpected_keys:
        raise ConversionError(f"load_state_dict: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    # every parameter / buffer of the model now holds GGUF data: verify by value
    for k, t in model.state_dict().items():
        if not torch.equal(t, tsd[k]):
            raise ConversionError(f"{k} was not loaded")
    n_rot = check_rotary(model, hp)
    model = model.to(device).eval()
    info = dict(
        transformers=transformers.__version__, torch=torch.__version__, device=str(device),
        layer_types=list(config.layer_types), mlp_layer_types=list(config.mlp_layer_types),
        compress_rates=dict(config.compress_rates), n_params=len(tsd), rotary_modules_checked=n_rot,
        attn_implementation=model.config._attn_implementation, experts_implementation=experts_impl,
    )
    return model, hp, info
