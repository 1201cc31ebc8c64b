"""Model throughput: forward (inference) and one training step, per backend.

    pytest bench/bench_model.py --benchmark-only --benchmark-columns=median,iqr,rounds

Variants: ``reference``, ``compiled`` (torch.compile of the reference model, the compiler
baseline) and every fused backend that can run here. Throughput (frames/s) and, on CUDA, peak
memory are in each result's extra_info (``--benchmark-json``). Compare ratios within one run.
"""
import pytest
import torch

from stcformer import STCFormer, dispatch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (frames, batch): CPU sizes keep a round under a few seconds on 2 cores
SIZES = [(27, 128), (81, 64), (243, 32)] if DEVICE == "cuda" else [(27, 16), (81, 4), (243, 2)]


def variants():
    out = ["reference", "compiled"]
    for name in ("cpp", "cuda", "triton"):
        if dispatch.unavailable_reason(name, DEVICE, torch.float32) is None and not (
                name == "triton" and DEVICE == "cpu"):  # the interpreter is not a speed path
            out.append(name)
    return out


def make(variant, train):
    torch.manual_seed(0)
    backend = "reference" if variant in ("reference", "compiled") else variant
    model = STCFormer(layers=6, d_hid=256, backend=backend).to(DEVICE).train(train)
    run = torch.compile(model) if variant == "compiled" else model
    return model, run


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _bench(benchmark, fn, frames):
    for _ in range(2):  # warm-up: compilation, autotuning, allocator
        fn()
    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(lambda: (fn(), sync()), rounds=5 if DEVICE == "cpu" else 20, iterations=1)
    benchmark.extra_info["frames_per_s"] = frames / benchmark.stats.stats.median
    if DEVICE == "cuda":
        benchmark.extra_info["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20


@pytest.mark.parametrize("variant", variants())
@pytest.mark.parametrize("T,B", SIZES)
def test_forward(benchmark, variant, T, B):
    _, run = make(variant, train=False)
    x = torch.randn(B, T, 17, 2, device=DEVICE)
    benchmark.group = f"forward T={T} B={B}"

    def step():
        with torch.no_grad():
            return run(x)
    _bench(benchmark, step, B * T)


@pytest.mark.parametrize("variant", variants())
@pytest.mark.parametrize("T,B", SIZES)
def test_train_step(benchmark, variant, T, B):
    model, run = make(variant, train=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    x = torch.randn(B, T, 17, 2, device=DEVICE)
    y = torch.randn(B, T, 17, 3, device=DEVICE)
    benchmark.group = f"train step T={T} B={B}"

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (run(x) - y).norm(dim=-1).mean()
        loss.backward()
        opt.step()
    _bench(benchmark, step, B * T)
