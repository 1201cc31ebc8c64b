"""pytest-benchmark of the stc_attention op: every variant of bench/harness.op_variants
(reference, torch.compile(reference), SDPA + conv2d compiled, and each dispatch backend; a
backend that cannot run here is skipped with the dispatch's reason), on CUDA if present.

    pytest bench/bench_op.py --benchmark-only --benchmark-columns=median,iqr,rounds

One STCFormer block's attention (C = 256, 8 heads, 17 joints), float32 (and bf16 on CUDA).
Compare rows of one run only; bench/cpu_table.py and bench/gpu_bench.py print the ratios.
"""
import os

import pytest
import torch

from bench import harness as h

DEVICE = h.default_device()
TINY = os.environ.get("STCFORMER_BENCH_SIZE") == "tiny"
CASES = [(9, 2)] if TINY else [(27, 16), (81, 4), (243, 2)]  # (T, B)
DTYPES = [torch.float32] + ([torch.bfloat16] if DEVICE == "cuda" else [])
_variants = {}


def variant(name, dtype):
    if dtype not in _variants:
        _variants[dtype] = {v.name: v for v in h.op_variants(DEVICE, dtype, compiled=not TINY, sdpa=not TINY)}
    v = _variants[dtype].get(name)
    if v is None:
        pytest.skip(f"{name}: not measured at the tiny size" if name in ("compiled", "sdpa")
                    else f"{name}: a second-layout row exists only on CUDA for backends that read both")
    if v.fn is None:
        pytest.skip(v.reason)
    return v


def names():
    base = ["reference", "compiled", "sdpa"]
    return base + [b for b in h.dispatch.BACKENDS if b != "reference"] + ["triton_interleaved", "cuda_interleaved"]


def _bench(benchmark, run, leaves, backward):
    def timed():
        run()
        h.sync(DEVICE)
        if backward:
            for x in leaves:
                x.grad = None
    timed()  # compile / warm up outside the timing
    benchmark.pedantic(timed, rounds=3 if TINY else 7, warmup_rounds=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("T,B", CASES)
@pytest.mark.parametrize("name", names())
def test_forward(benchmark, name, T, B, dtype):
    v = variant(name, dtype)
    benchmark.group = f"stc_attention forward {str(dtype)[6:]} T={T} B={B}"
    run, leaves = h.op_fwd_bwd(v, B, T, dtype, DEVICE, backward=False)
    _bench(benchmark, run, leaves, False)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("T,B", CASES)
@pytest.mark.parametrize("name", names())
def test_forward_backward(benchmark, name, T, B, dtype):
    v = variant(name, dtype)
    benchmark.group = f"stc_attention forward+backward {str(dtype)[6:]} T={T} B={B}"
    run, leaves = h.op_fwd_bwd(v, B, T, dtype, DEVICE)
    _bench(benchmark, run, leaves, True)
