"""Model throughput: inference and one training step (``python -m stcformer.train``'s step), per
variant: ``reference``, ``compiled`` (torch.compile of the reference model, the compiler
baseline) and every dispatch backend that can run here (others skipped with the reason).

    pytest bench/bench_model.py --benchmark-only --benchmark-columns=median,iqr,rounds

Throughput (frames/s) and, on CUDA, peak memory are in each result's extra_info
(``--benchmark-json``). Compare ratios within one run.
"""
import os

import pytest
import torch

from bench import harness as h

DEVICE = h.default_device()
TINY = os.environ.get("STCFORMER_BENCH_SIZE") == "tiny"
# (frames, batch): CPU sizes keep a round under a few seconds on 2 cores
if TINY:
    SIZES, LAYERS = [(9, 2)], 2
else:
    SIZES, LAYERS = ([(27, 128), (81, 64), (243, 32)] if DEVICE == "cuda" else [(27, 16), (81, 4), (243, 2)]), 6
VARIANTS = ["reference", "compiled"] + [b for b in h.dispatch.BACKENDS if b != "reference"]


def make(variant, train):
    if variant not in ("reference", "compiled"):
        reason = h.dispatch.unavailable_reason(variant, DEVICE, torch.float32)
        if reason is None and variant == "triton" and DEVICE == "cpu":
            reason = "triton: the Triton interpreter is not a speed path"
        if reason:
            pytest.skip(reason)
    if TINY and variant == "compiled":
        pytest.skip("compiled: not measured at the tiny size")
    backend = "reference" if variant in ("reference", "compiled") else variant
    model = h.make_model(backend, DEVICE, layers=LAYERS, train=train)
    return model, variant == "compiled"


def _bench(benchmark, fn, frames):
    for _ in range(2):  # warm-up: compilation, autotuning, allocator
        fn()
    h.sync(DEVICE)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(lambda: (fn(), h.sync(DEVICE)), rounds=3 if TINY or DEVICE == "cpu" else 20, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run, nothing timed)
        benchmark.extra_info["frames_per_s"] = frames / benchmark.stats.stats.median
    if DEVICE == "cuda":
        benchmark.extra_info["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T,B", SIZES)
def test_forward(benchmark, variant, T, B):
    model, compiled = make(variant, train=False)
    run = h.infer_fn(torch.compile(model) if compiled else model, B, T, device=DEVICE)
    benchmark.group = f"forward T={T} B={B}"
    _bench(benchmark, run, B * T)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T,B", SIZES)
def test_train_step(benchmark, variant, T, B):
    model, compiled = make(variant, train=True)
    step = h.train_step(model, B, T, device=DEVICE, compile_=compiled)
    benchmark.group = f"train step T={T} B={B}"
    _bench(benchmark, step, B * T)
