"""pytest-benchmark of the stc_attention op on CPU: reference, torch.compile(reference) and cpp.

    pytest bench/bench_cpu.py --benchmark-only --benchmark-columns=median,iqr,rounds

Shapes are one STCFormer block's attention (C = 256, 8 heads, 17 joints) at T = 27 / 81 / 243
with the batch of the model benchmarks. Compare rows of one run only (see DESIGN.md,
"Performance method"); bench/cpu_table.py prints the ratios side by side.
"""
import pytest
import torch

from stcformer import dispatch
from stcformer.ops import stc_attention
from stcformer.reference import stc_attention_reference

CASES = {27: 16, 81: 4, 243: 2}  # T: batch
BACKENDS = ("reference", "compiled_reference", "cpp")


def op_inputs(B, T, J=17, C=256, H=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    half, dh = C // 2, C // 2 // H
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    return [r(B, T, J, 3 * C), r(half, 1, 3, 3), r(half), r(half, 1, 3, 3), r(half),
            r(J, dh) * 1e-3, r(J, dh) * 1e-9, H, half ** -0.5]


_compiled = {}


def attention_fn(backend):
    if backend == "reference":
        return stc_attention_reference
    if backend == "compiled_reference":
        if "ref" not in _compiled:
            _compiled["ref"] = torch.compile(stc_attention_reference)
        return _compiled["ref"]
    reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
    if reason:
        pytest.skip(reason)
    return lambda *a: stc_attention(*a, backend="cpp")


@pytest.mark.parametrize("T", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward(benchmark, backend, T):
    fn, args = attention_fn(backend), op_inputs(CASES[T], T)
    benchmark.group = f"stc_attention forward T={T} B={CASES[T]}"

    def run():
        with torch.no_grad():
            return fn(*args)

    run()  # compile / warm up outside the timing
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)


@pytest.mark.parametrize("T", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_backward(benchmark, backend, T):
    fn, args = attention_fn(backend), op_inputs(CASES[T], T)
    leaves = [a.requires_grad_() for a in args[:7]]
    grad = torch.randn(CASES[T], T, 17, 256)
    benchmark.group = f"stc_attention forward+backward T={T} B={CASES[T]}"

    def run():
        return torch.autograd.grad(fn(*args), leaves, grad)

    run()
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)
