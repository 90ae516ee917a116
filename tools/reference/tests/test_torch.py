"""Torch-side checks (skipped where torch / transformers are missing): the torch simulations are
bit-identical to the numpy twins, the tie rule holds on every device, and the HF patches sit where
sims.py says on a real DeepseekV4ForCausalLM built from a synthetic GGUF."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sims  # noqa: E402
import synth_gguf  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _no_tf32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def _rand(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * np.exp(rng.uniform(-12, 12, shape[:-1] + (1,)))
    x = x.astype(np.float32)
    x[..., :3] = [0.0, -0.0, 1e-40]  # zero, negative zero, subnormal
    return x


@pytest.mark.parametrize("device", DEVICES)
def test_torch_sims_bitexact(device):
    x = _rand((9, 5, 448), 1)
    t = torch.from_numpy(x).to(device)
    assert np.array_equal(sims.fp8_sim(t).cpu().numpy(), sims.fp8_sim_np(x))
    for n in (32, 64, 128):
        y = _rand((7, 3, n), n)
        ty = torch.from_numpy(y).to(device)
        assert np.array_equal(sims.hadamard(ty).cpu().numpy(), sims.hadamard_np(y))
        assert np.array_equal(sims.fp4_sim(ty).cpu().numpy(), sims.fp4_sim_np(y))
        assert np.array_equal(sims.indexer_sim(ty).cpu().numpy(), sims.indexer_sim_np(y))
    row = _rand((4, 96), 2)
    assert np.array_equal(sims.fp8_sim_nope(torch.from_numpy(row).to(device), 64).cpu().numpy(),
                          sims.fp8_sim_nope_np(row, 64))
    for shape in [(1, 0, 64), (0, 448), (2, 0, 4, 128)]:
        e = torch.zeros(shape, device=device)
        assert sims.fp8_sim(e).shape == shape and sims.fp4_sim(e).shape == shape
        if shape[-1] != 448:
            assert sims.indexer_sim(e).shape == shape
    # e4m3 rounding agrees with torch's own float8_e4m3fn cast (RNE) inside the clamp range
    z = torch.from_numpy(np.random.default_rng(3).uniform(-448, 448, 100000).astype(np.float32)).to(device)
    assert torch.equal(sims.round_grid(z, sims.E4M3), z.to(torch.float8_e4m3fn).to(torch.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_stable_topk_device(device):
    sims.self_test_stable_topk(device)
    r = torch.randint(-2, 3, (16, 1000), generator=torch.Generator().manual_seed(1)).float()
    r[r == 0] = -0.0
    got = sims.stable_topk(r.to(device), 100).indices.cpu().numpy()
    assert np.array_equal(got, sims.stable_topk_np(r.numpy(), 100))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("transformers")
    from gguf_to_hf import build_hf_model

    p = tmp_path_factory.mktemp("hf") / "tiny.gguf"
    synth_gguf.build(str(p), "tiny", seed=11)
    model, hp, info = build_hf_model(str(p), device="cpu", log=lambda *_: None)
    return model, hp


def _fwd(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.as_tensor(ids)[None], use_cache=False).logits[0]


def test_hf_hooks_and_tiebreak(tiny_model):
    model, hp = tiny_model
    ids = np.random.default_rng(0).integers(0, hp.n_vocab, 80)
    assert sims.set_indexer_topk_tiebreak(model, True) == sum(r == 4 for r in hp.ratios)
    plain = _fwd(model, ids)
    seen = {}

    def grab(tag, before):
        def hook(mod, args, out):
            seen[(tag, before)] = out.detach().clone()
        return hook

    def grab_scorer(tag, before):
        def hook(mod, args):
            seen[(tag, before)] = (args[0].detach().clone(), args[1].detach().clone())
        return hook

    attn1 = model.model.layers[1].self_attn    # CSA layer
    hs = [attn1.kv_norm.register_forward_hook(grab("kv", True)),
          attn1.compressor.kv_norm.register_forward_hook(grab("ckv", True)),
          attn1.compressor.indexer.scorer.register_forward_pre_hook(grab_scorer("idx", True))]
    handles, stats = sims.install_official_sims(model)
    hs += [attn1.kv_norm.register_forward_hook(grab("kv", False)),
           attn1.compressor.kv_norm.register_forward_hook(grab("ckv", False)),
           attn1.compressor.indexer.scorer.register_forward_pre_hook(grab_scorer("idx", False))]
    try:
        official = _fwd(model, ids)
    finally:
        for h in handles + hs:
            h.remove()
    dn = hp.n_nope
    for tag in ("kv", "ckv"):
        b, a = seen[(tag, True)].numpy(), seen[(tag, False)].numpy()
        assert np.array_equal(a, sims.fp8_sim_nope_np(b, dn)), tag
        assert np.array_equal(a[..., dn:], b[..., dn:])
    (qb, kb), (qa, ka) = seen[("idx", True)], seen[("idx", False)]
    assert np.array_equal(qa.numpy(), sims.indexer_sim_np(qb.numpy()))
    assert np.array_equal(ka.numpy(), sims.indexer_sim_np(kb.numpy()))
    assert ka.shape[-2] == len(ids) // 4
    calls = stats.summary()
    assert calls["layer1.raw_kv_fp8"] == 1 and calls["layer2.compressed_kv_fp8"] == 1
    assert calls["layer3.indexer_had_fp4"] == 1
    assert not torch.equal(plain, official)
    assert torch.equal(_fwd(model, ids), plain)   # hooks removed -> plain again


def test_hf_prefix_consistency(tiny_model):
    """Full forward is causal: logits of a prefix equal the first rows of the longer run."""
    model, hp = tiny_model
    sims.set_indexer_topk_tiebreak(model, True)
    ids = np.random.default_rng(1).integers(0, hp.n_vocab, 90)
    a = _fwd(model, ids)
    b = _fwd(model, ids[:61])
    assert torch.allclose(a[:61], b, rtol=1e-4, atol=1e-4)
