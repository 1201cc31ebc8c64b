"""The public op's argument checks and backend dispatch."""
import pytest
import torch

from stcformer import dispatch
from stcformer.ops import stc_attention
from stcformer.reference import stc_attention_reference

from test_reference import random_inputs


def test_auto_on_cpu_matches_reference():
    args = random_inputs(2, 5, 17, 32, 2)
    torch.testing.assert_close(stc_attention(*args), stc_attention_reference(*args), rtol=1e-5, atol=1e-5)


def test_unknown_backend_is_an_error():
    with pytest.raises(RuntimeError, match="unknown backend"):
        stc_attention(*random_inputs(1, 2, 17, 16, 2), backend="fast")


def test_named_backend_that_cannot_run_raises_with_reason():
    args = random_inputs(1, 2, 17, 16, 2)
    with pytest.raises(RuntimeError, match="cuda: tensors are on cpu"):
        stc_attention(*args, backend="cuda")


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("STCFORMER_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="cuda: tensors are on cpu"):
        stc_attention(*random_inputs(1, 2, 17, 16, 2))
    monkeypatch.setenv("STCFORMER_BACKEND", "reference")
    stc_attention(*random_inputs(1, 2, 17, 16, 2))


def test_reasons_are_one_sentence_per_backend():
    reasons = dispatch.available_backends("cpu", torch.float32)
    assert reasons["reference"] is None
    assert reasons["cuda"].startswith("cuda: ")
    assert reasons["cpp"] is None or reasons["cpp"].startswith("cpp: ")
    assert dispatch.unavailable_reason("triton", "cpu", torch.float64).startswith("triton: dtype")
    assert dispatch.choose("auto", "cpu", torch.float32) in ("cpp", "reference")


def test_triton_on_cpu_needs_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert dispatch.unavailable_reason("triton", "cpu", torch.float32) == \
        "triton: tensors are on CPU and TRITON_INTERPRET is not set"


@pytest.mark.parametrize("change,match", [
    (lambda a: (a[0][..., :-1],) + a[1:], "qkv must be"),
    (lambda a: a[:1] + (a[1][:-1],) + a[2:], "w_s must be"),
    (lambda a: a[:6] + (a[6][:-1],) + a[7:], "spe_t must be"),
    (lambda a: a[:7] + (3,) + a[8:], "not divisible by num_heads"),
])
def test_argument_checks(change, match):
    with pytest.raises(ValueError, match=match):
        stc_attention(*change(random_inputs(1, 2, 17, 16, 2)))
