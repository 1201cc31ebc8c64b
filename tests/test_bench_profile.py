"""bench/profile_step.py: the per-kind breakdown of a step that bench/RESULTS.md quotes."""
import json

import pytest
import torch

from bench import profile_step
from stcformer.ops import dispatch


@pytest.mark.parametrize("name, kind", [
    ("aten::mm", "gemm"), ("aten::addmm_", "gemm"), ("mkldnn::_linear_pointwise", "gemm"),
    ("stcformer::stc_attention_bwd", "stc_attention op"),
    ("GeneratedBackwardFor_stcformer_stc_attention", "stc_attention op"),
    ("stcformer::gelu_dropout_fwd", "gelu/dropout kernels"),
    ("aten::native_layer_norm_backward", "layer_norm"), ("aten::mkldnn_convolution", "convolution"),
    ("aten::add", "other aten ops"), ("_ResidualMlpBackward", "autograd/optimizer Python"),
    ("Optimizer.step#Adam.step", "autograd/optimizer Python"),
])
def test_kinds(name, kind):
    assert profile_step.kind_of(name) == kind


def test_gemm_flops_from_shapes():
    assert profile_step.gemm_flops("aten::mm", [[4, 5], [5, 6]]) == 2 * 4 * 5 * 6
    assert profile_step.gemm_flops("aten::addmm", [[6], [4, 5], [5, 6]]) == 2 * 4 * 5 * 6
    assert profile_step.gemm_flops("aten::bmm", [[3, 4, 5], [3, 5, 6]]) == 2 * 3 * 4 * 5 * 6
    assert profile_step.gemm_flops("aten::mm", []) is None


@pytest.mark.skipif(dispatch.unavailable_reason("cpp", "cpu", torch.float32) is not None,
                    reason=str(dispatch.unavailable_reason("cpp", "cpu", torch.float32)))
def test_breakdown_finds_the_op_only_where_it_runs(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert profile_step.main(["--variants", "reference,cpp", "--batch", "1", "--frames", "3",
                              "--steps", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    for name in ("reference", "cpp"):
        r = res[name]
        assert r["gemm"]["ms"] > 0 and r["gemm"]["gflops"] > 0
        assert sum(r[k]["ms"] for k in profile_step.KINDS) == pytest.approx(r["total"]["ms"])
    # the cpp kernels are one op; the reference op is ATen ops (its convs among them)
    assert res["cpp"]["stc_attention op"]["ms"] > 0 and res["reference"]["stc_attention op"]["ms"] == 0
    assert res["reference"]["convolution"]["ms"] > 0 and res["cpp"]["convolution"]["ms"] == 0
    assert "CPU flags" in capsys.readouterr().out


def test_bad_variant_exits_2(capsys):
    assert profile_step.main(["--variants", "nope"]) == 2
    assert "unknown variant" in capsys.readouterr().err
