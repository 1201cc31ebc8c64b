"""Model structure (official key names), checkpoints, and torch.compile."""
import os

import pytest
import torch

from stcformer import CheckpointError, STCFormer, load_checkpoint, save_checkpoint

# official-reference.md A.1: the H36M state_dict, in order, per block i = 0..5
H36M_BLOCK = [
    ("layer_norm.weight", (256,)), ("layer_norm.bias", (256,)),
    ("mlp.fc1.weight", (1024, 256)), ("mlp.fc2.weight", (256, 1024)),
    ("stc_att.qkv.weight", (768, 256)), ("stc_att.qkv.bias", (768,)),
    ("stc_att.layer_norm.weight", (256,)), ("stc_att.layer_norm.bias", (256,)),
    ("stc_att.proj.weight", (256, 256)), ("stc_att.proj.bias", (256,)),
    ("stc_att.emb.weight", (5, 16)),
    ("stc_att.sep2_t.weight", (128, 1, 3, 3)), ("stc_att.sep2_t.bias", (128,)),
    ("stc_att.sep2_s.weight", (128, 1, 3, 3)), ("stc_att.sep2_s.bias", (128,)),
]
H36M_MANIFEST = ([("pose_emb.weight", (256, 2))]
                 + [(f"stcformer.stc_block.{i}.{k}", s) for i in range(6) for k, s in H36M_BLOCK]
                 + [("regress_head.weight", (3, 256))])

# official-reference.md A.2: the 3DHP keys (module.-prefixed in the released file)
MPI_BLOCK = {
    "layer_norm1.weight": (256,), "layer_norm1.bias": (256,),
    "layer_norm2.weight": (256,), "layer_norm2.bias": (256,),
    "mlp1.fc1.weight": (1024, 256), "mlp1.fc2.weight": (256, 1024),
    "cross_att.qkv.weight": (768, 256), "cross_att.qkv.bias": (768,),
    "cross_att.layer_norm.weight": (256,), "cross_att.layer_norm.bias": (256,),
    "cross_att.proj.weight": (256, 256), "cross_att.proj.bias": (256,),
    "cross_att.gate_t.weight": (128, 1, 3, 3), "cross_att.gate_t.bias": (128,),
    "cross_att.gate_s.weight": (128, 1, 3, 3), "cross_att.gate_s.bias": (128,),
    "cross_att.emb.weight": (20, 32),
}
MPI_MANIFEST = dict([("pose_emb.weight", (256, 2)), ("pose_lift.weight", (3, 256))]
                    + [(f"mlpmixer.mixerblocks.{i}.{k}", s) for i in range(6) for k, s in MPI_BLOCK.items()])


def shapes(sd):
    return [(k, tuple(v.shape)) for k, v in sd.items()]


def test_h36m_state_dict_matches_official_manifest():
    model = STCFormer()
    assert shapes(model.state_dict()) == H36M_MANIFEST  # names, shapes and order
    assert sum(p.numel() for p in model.parameters()) == 4_748_000


def test_3dhp_state_dict_matches_official_manifest():
    model = STCFormer(family="3dhp")
    assert dict(shapes(model.official_state_dict())) == MPI_MANIFEST
    assert len(MPI_MANIFEST) == 104
    assert sum(p.numel() for p in model.parameters()) == 4_754_432
    assert model.stcformer.stc_block[0].stc_att.emb.padding_idx == 0


@pytest.mark.parametrize("T", [1, 27, 40])
def test_any_number_of_frames(T):
    model = STCFormer(layers=2, d_hid=64).eval()
    assert model(torch.randn(2, T, 17, 2)).shape == (2, T, 17, 3)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, T, J, 2\)"):
        STCFormer(layers=1, d_hid=32)(torch.randn(2, 5, 17, 3))


def _randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("layers,d_hid", [(6, 256), (3, 128)])
def test_load_official_h36m_state_dict(tmp_path, layers, d_hid):
    src = _randomize(STCFormer(layers=layers, d_hid=d_hid, spe_coef=1e-3)).eval()
    path = tmp_path / "no_refine_6_4406.pth"
    torch.save(src.state_dict(), path)  # what the official run_stc.py writes
    model = load_checkpoint(path)
    assert not model.training
    assert model.config["layers"] == layers and model.config["d_hid"] == d_hid
    assert model.config["num_heads"] == 8 and model.config["spe_coef"] == 1e-3
    x = torch.randn(2, 9, 17, 2)
    torch.testing.assert_close(model(x), src(x), rtol=0, atol=0)
    # overrides reach the model, and change the output where they should
    other = load_checkpoint(path, spe_coef=1e-4)
    assert other.config["spe_coef"] == 1e-4


def test_load_module_prefixed_and_3dhp(tmp_path):
    src = _randomize(STCFormer(family="3dhp", layers=2)).eval()
    path = tmp_path / "no_refine_8_2310.pth"
    torch.save({"module." + k: v for k, v in src.official_state_dict().items()}, path)
    model = load_checkpoint(path)
    assert model.family == "3dhp" and model.config["num_heads"] == 4
    assert model.config["spe_coef"] == 1e-4 and model.config["scale"] == 256 ** -0.5
    x = torch.randn(1, 9, 17, 2)
    torch.testing.assert_close(model(x), src(x), rtol=0, atol=0)

    h36m = STCFormer(layers=2, d_hid=64).eval()
    torch.save({"module." + k: v for k, v in h36m.state_dict().items()}, tmp_path / "dp.pth")
    assert load_checkpoint(tmp_path / "dp.pth").config["d_hid"] == 64


def test_save_load_round_trip(tmp_path):
    src = _randomize(STCFormer(layers=2, d_hid=64, spe_coef=5e-3)).eval()
    path = tmp_path / "sub" / "best.pt"
    save_checkpoint(src, path, extra={"epoch": 3})
    assert sorted(os.listdir(path.parent)) == ["best.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "stcformer" and raw["extra"] == {"epoch": 3}
    model = load_checkpoint(path)
    assert model.config == src.config
    x = torch.randn(2, 5, 17, 2)
    torch.testing.assert_close(model(x), src(x), rtol=0, atol=0)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pth: no such file"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "garbage.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: not an STCFormer checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    sd = STCFormer(layers=2, d_hid=64).state_dict()
    del sd["regress_head.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial.pth: .*missing 1 keys .*regress_head.weight"):
        load_checkpoint(tmp_path / "partial.pth")
    torch.save(STCFormer(layers=2, d_hid=64).state_dict(), tmp_path / "w64.pth")
    with pytest.raises(CheckpointError, match="w64.pth: .*has shape"):
        load_checkpoint(tmp_path / "w64.pth", d_hid=128)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth: holds a list"):
        load_checkpoint(tmp_path / "list.pth")


def test_drop_path_on_spe_in_training():
    torch.manual_seed(0)
    att = STCFormer(layers=1, d_hid=32, num_heads=2).stcformer.stc_block[0].stc_att.train()
    e = torch.ones(17, 8)
    draws = {round(att.drop_path(e).mean().item(), 6) for _ in range(50)}
    assert draws == {0.0, 2.0}  # the whole term dropped or doubled, one draw per call
    att.eval()
    assert torch.equal(att.drop_path(e), e)


@pytest.mark.slow  # compile check
def test_torch_compile_fullgraph_forward_backward():
    torch.manual_seed(0)
    model = STCFormer(layers=2, d_hid=32, num_heads=2, backend="reference").eval()
    compiled = torch.compile(model, fullgraph=True)  # raises on any graph break
    x = torch.randn(2, 5, 17, 2)
    y = compiled(x)
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-5)
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_forward_makes_no_backend_choice(monkeypatch):
    """A built model's forward runs the plans its blocks made (at construction, .to(), a settings
    change): no backend choice, no find_spec, per forward or per block."""
    import importlib.util

    from stcformer.ops import attention, dispatch

    model = STCFormer(layers=2, d_hid=32, num_heads=2).eval()
    calls = []
    for owner, name in ((dispatch, "choose"), (attention, "_resolve"), (importlib.util, "find_spec")):
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    x = torch.randn(2, 5, 17, 2)
    with torch.no_grad():
        model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    model.train()(x).sum().backward()
    assert calls == []
    # a settings change re-plans, once per block, at the next forward
    from stcformer import settings

    with settings.override(backend="reference"):
        with torch.no_grad():
            model.eval()(x)
    assert calls.count("_resolve") == 2 * 3  # per block: the parameters' dtype and two autocast dtypes


def test_configure_is_the_one_way_and_set_backend_is_deprecated():
    model = STCFormer(layers=1, d_hid=16, num_heads=2)
    att = model.stcformer.stc_block[0].stc_att
    assert model.configure(backend="reference") is model and att.backend == "reference"
    with pytest.warns(DeprecationWarning, match=r"configure\(backend=b\)"):
        model.set_backend(None)
    assert att.backend is None


def test_head_major_weights_are_permuted_once_for_inference():
    """With a head-major plan the qkv rows are gathered once per weight version in inference,
    every forward in training (the gather is part of the graph there)."""
    pytest.importorskip("triton")
    from stcformer.ops import dispatch

    if dispatch.unavailable_reason("triton", "cpu", torch.float32) is not None:
        pytest.skip(dispatch.unavailable_reason("triton", "cpu", torch.float32))
    model = STCFormer(layers=1, d_hid=16, num_heads=2, backend="triton").eval()
    att = model.stcformer.stc_block[0].stc_att
    assert att._layout == "head_major"
    reference = STCFormer(layers=1, d_hid=16, num_heads=2, backend="reference").eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 17, 2)
    with torch.no_grad():
        first = model(x)
        w = att._qkv_params()[0]
        assert att._qkv_params()[0] is w  # kept
        torch.testing.assert_close(first, reference(x), rtol=1e-4, atol=1e-5)
        att.qkv.weight.add_(0.01)  # a new weight version: gathered again
        assert att._qkv_params()[0] is not w
        torch.testing.assert_close(att._qkv_params()[0], att.qkv.weight[att.head_major])
    assert att._qkv_params()[0] is not att._qkv_params()[0]  # grad enabled: a gather per forward
