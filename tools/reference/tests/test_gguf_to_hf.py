import numpy as np
import pytest

import gguf_writer as W
import synth_gguf
from gguf_read import GGUFReader
from gguf_to_hf import (CSA, HCA, SLIDING, ConversionError, build_state_dict, expected_hf_shapes,
                        hf_config_kwargs, read_hparams, rope_inv_freq_reference)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "tiny.gguf"
    synth_gguf.build(str(p), "tiny", seed=3)
    return str(p)


def test_hparams_and_config(tiny):
    r = GGUFReader(tiny)
    hp = read_hparams(r)
    assert (hp.n_layer, hp.n_embd, hp.n_vocab, hp.head_dim, hp.n_rot) == (4, 128, 512, 96, 32)
    assert hp.ratios == [0, 4, 16, 4]  # the trailing MTP entry is dropped
    kw = hf_config_kwargs(hp)
    assert kw["layer_types"] == [SLIDING, CSA, HCA, CSA]
    assert kw["compress_rates"] == {CSA: 4, HCA: 16}
    assert kw["mlp_layer_types"] == ["hash_moe", "hash_moe", "moe", "moe"]
    assert kw["partial_rotary_factor"] * kw["head_dim"] == 32
    c = kw["rope_parameters"]["compress"]
    assert c["rope_type"] == "yarn" and c["attention_factor"] == 1.0 and c["rope_theta"] == 160000.0
    assert c["factor"] == 16.0 and c["original_max_position_embeddings"] == 65536
    assert kw["rope_parameters"]["main"] == {"rope_type": "default", "rope_theta": 10000.0,
                                             "partial_rotary_factor": 32 / 96}
    assert kw["index_topk"] == 8 and kw["sliding_window"] == 16 and kw["swiglu_limit"] == 10.0
    assert kw["hc_mult"] == 4 and kw["hc_sinkhorn_iters"] == 20 and kw["routed_scaling_factor"] == 1.5


def test_state_dict_complete(tiny):
    r = GGUFReader(tiny)
    hp = read_hparams(r)
    sd = build_state_dict(r, hp, log=lambda *_: None)
    shapes = expected_hf_shapes(hp)
    assert set(sd) == set(shapes)
    for k, v in sd.items():
        assert v.shape == shapes[k], k
        assert v.dtype == (np.int64 if k.endswith("tid2eid") else np.float32), k
    # gate first, then up, both in torch order [E, F, D]
    g = r.tensor("blk.2.ffn_gate_exps.weight")
    u = r.tensor("blk.2.ffn_up_exps.weight")
    gu = sd["model.layers.2.mlp.experts.gate_up_proj"]
    assert np.array_equal(gu[:, :hp.n_ff], g) and np.array_equal(gu[:, hp.n_ff:], u)
    # the GGUF data are never transposed: row o of a weight is contiguous input values
    raw = r.raw("blk.1.attn_q_b.weight").view(np.float32)
    assert np.array_equal(sd["model.layers.1.self_attn.q_b_proj.weight"][5], raw[5 * hp.q_lora:6 * hp.q_lora])
    # APE: GGUF ne = (c*d, r); HF position_bias[k] = APE row k = data[k*c*d:(k+1)*c*d]
    raw = r.raw("blk.1.attn_compressor_ape.weight").view(np.float32)
    pb = sd["model.layers.1.self_attn.compressor.position_bias"]
    assert pb.shape == (4, 2 * hp.head_dim) and np.array_equal(pb[3], raw[3 * 2 * hp.head_dim:4 * 2 * hp.head_dim])
    assert sd["model.layers.2.self_attn.compressor.position_bias"].shape == (16, hp.head_dim)
    t2e = sd["model.layers.0.mlp.gate.tid2eid"]
    assert t2e.shape == (hp.n_vocab, hp.n_expert_used)
    raw = r.raw("blk.0.ffn_gate_tid2eid.weight").view(np.int32)
    assert np.array_equal(t2e[7], raw[7 * hp.n_expert_used:8 * hp.n_expert_used])
    assert "model.layers.2.mlp.gate.e_score_correction_bias" in sd
    assert "model.layers.1.self_attn.compressor.indexer.scorer.weights_proj.weight" in sd
    assert "model.layers.2.self_attn.compressor.indexer.q_b_proj.weight" not in sd  # HCA: no indexer
    # legacy HF naming of the indexer weights projection is picked when the model has it
    keys = set(shapes)
    legacy = {k.replace("indexer.scorer.weights_proj", "indexer.weights_proj") for k in keys}
    sd2 = build_state_dict(r, hp, hf_keys=legacy, log=lambda *_: None)
    assert set(sd2) == legacy


def test_f16_q8_file(tmp_path):
    p = tmp_path / "m.gguf"
    synth_gguf.build(str(p), "micro", seed=1, types="f16q8")
    r = GGUFReader(str(p))
    hp = read_hparams(r)
    assert r.tensors["blk.0.attn_q_a.weight"].type_name == "Q8_0"
    assert r.tensors["token_embd.weight"].type_name == "F16"
    sd = build_state_dict(r, hp, log=lambda *_: None)
    assert set(sd) == set(expected_hf_shapes(hp))


def _rewrite(tmp_path, preset="micro", drop=(), add=(), meta_over=None, rename=None):
    p = synth_gguf.PRESETS[preset].copy()
    md = synth_gguf.metadata(p)
    if meta_over:
        md = [(k, t, meta_over.get(k, v)) for k, t, v in md]
    ts = [t for t in synth_gguf.tensors(p, 0) if t[0] not in drop] + list(add)
    if rename:
        ts = [(rename.get(n, n), *rest) for n, *rest in ts]
    out = tmp_path / "x.gguf"
    W.write_gguf(out, md, ts)
    return GGUFReader(str(out))


def test_failures(tmp_path):
    quiet = dict(log=lambda *_: None)
    r = _rewrite(tmp_path, drop=("blk.1.attn_sinks.weight",))
    with pytest.raises(ConversionError, match="without a GGUF tensor"):
        build_state_dict(r, read_hparams(r), **quiet)
    r = _rewrite(tmp_path, add=[("blk.0.mystery.weight", "F32", (4,), np.zeros(4, np.float32))])
    with pytest.raises(ConversionError, match="without an HF parameter"):
        build_state_dict(r, read_hparams(r), **quiet)
    r = _rewrite(tmp_path, add=[("mtp.0.enorm.weight", "F32", (32,), np.ones(32, np.float32))])
    with pytest.raises(ConversionError, match="MTP"):
        build_state_dict(r, read_hparams(r), **quiet)
    build_state_dict(r, read_hparams(r), skip_mtp=True, **quiet)
    # a compressor tensor on a ratio-0 layer
    r = _rewrite(tmp_path, add=[("blk.0.attn_compressor_norm.weight", "F32", (32,), np.ones(32, np.float32))])
    with pytest.raises(ConversionError, match="not expected"):
        build_state_dict(r, read_hparams(r), **quiet)
    # exp_probs_b on a hash layer
    r = _rewrite(tmp_path, add=[("blk.0.exp_probs_b.bias", "F32", (4,), np.zeros(4, np.float32))])
    with pytest.raises(ConversionError, match="not expected"):
        build_state_dict(r, read_hparams(r), **quiet)
    # wrong shape
    r = _rewrite(tmp_path, drop=("blk.1.attn_sinks.weight",),
                 add=[("blk.1.attn_sinks.weight", "F32", (3,), np.zeros(3, np.float32))])
    with pytest.raises(ConversionError, match="shape"):
        build_state_dict(r, read_hparams(r), **quiet)
    P = "deepseek4."
    r = _rewrite(tmp_path, meta_over={P + "attention.compress_ratios": [0, 4, 8, 0]})
    read_hparams(r)
    for over, msg in [
        ({P + "swiglu_clamp_exp": [10.0, 7.0, 10.0]}, "varies per layer"),
        ({P + "swiglu_clamp_exp": [0.0, 0.0, 0.0]}, "clamp"),
        ({P + "attention.head_count_kv": 2}, "head_count_kv"),
        ({P + "expert_weights_norm": False}, "expert_weights_norm"),
        ({P + "expert_gating_func": 2}, "expert_gating_func"),
        ({P + "attention.compress_ratios": [0, 4]}, "entries < block_count"),
    ]:
        with pytest.raises(ConversionError, match=msg):
            read_hparams(_rewrite(tmp_path, meta_over=over))


def test_two_hca_rates_rejected(tmp_path):
    p = synth_gguf.PRESETS["micro"].copy()
    p["ratios"] = [0, 8, 16]
    out = tmp_path / "y.gguf"
    W.write_gguf(out, synth_gguf.metadata(p), synth_gguf.tensors(p, 0))
    with pytest.raises(ConversionError, match="ONE other"):
        read_hparams(GGUFReader(str(out)))


def test_rope_reference_matches_model_md_table():
    class H:  # Flash values
        n_rot, rope_base, compress_rope_base, yarn_factor, yarn_orig_ctx = 64, 10000.0, 160000.0, 16.0, 65536
        yarn_beta_fast, yarn_beta_slow = 32.0, 1.0

    main = rope_inv_freq_reference(H, False)
    comp = rope_inv_freq_reference(H, True)
    table_main = {0: 1.0, 1: 7.498942e-01, 8: 1.0e-01, 16: 1.0e-02, 31: 1.333522e-04}
    table_comp = {0: 1.0, 1: 6.876560e-01, 8: 5.0e-02, 15: 3.635539e-03, 16: 2.265625e-03, 17: 1.396801e-03,
                  20: 2.969778e-04, 24: 1.953125e-05, 25: 5.372312e-06, 31: 5.680529e-07}
    for j, v in table_main.items():
        assert abs(main[j] - v) <= 2e-6 * v, j
    for j, v in table_comp.items():
        assert abs(comp[j] - v) <= 2e-6 * v, j
