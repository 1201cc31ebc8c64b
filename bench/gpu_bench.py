"""GPU benchmark: stc_attention backends and the model's default training / inference paths.

    python bench/gpu_bench.py [--out DIR] [--budget-s 420] [--sections op,profile,train,memory,infer]
    python bench/gpu_bench.py --cpu-smoke     # tiny CPU run of the same code (no triton, no timing claims)

Built on bench/harness.py (inputs, variants, timing, JSON rows). Every time is the median of
``triton.testing.do_bench`` (CUDA events, warm-up first, grads set to None between runs), every
ratio is measured side by side in this one process on one GPU.
Sections, in order of importance (each row catches its own failure; rows past the budget are
SKIPPED):
  ceil     the GPU's measured ceilings: device-to-device copy bandwidth, bf16 GEMM rate
  op       stc_attention forward+backward, B=42, C=256, H=8, J=17, T = 27, 81, 243, bf16 and
           float32: reference, torch.compile(reference), ``sdpa`` (the same math written with
           F.scaled_dot_product_attention for both halves plus F.conv2d, under torch.compile),
           and every backend of stcformer.dispatch (harness.op_variants): triton and cuda in
           their preferred layout (head-major) and ``<name>_interleaved`` (official layout);
           a backend that cannot run is a SKIPPED row with the dispatch's reason
  profile  per-kernel GPU time (torch.profiler) against each kernel's floor: its bytes over the
           measured bandwidth, or its exps over the SFU rate, whichever is larger
  train    one training step of STCFormer(6 x 256), B=42, with the defaults of
           ``python -m stcformer.train`` on CUDA (bf16 autocast, torch.compile, fused Adam),
           against our model with backend=reference in float32 eager
  memory   peak memory of a bf16 training step at T=243, B=128 (eager), with and without
           activation recompute
  infer    flip-averaged inference of 256 windows at T=243 (two forwards), bf16 and float32
  sweep    the triton op (bf16, B=42) with one block shape / warp count changed at a time
The table is printed last and written to DIR/gpu_bench.md and DIR/gpu_bench.json
(``python bench/render.py DIR/gpu_bench.json --write bench/RESULTS.md`` puts it into RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import harness as h
from harness import C, H, J, sdpa_composition  # noqa: F401  (sdpa_composition: cited in RESULTS.md)
from render import render_run

EXP_RATE = 16 * 132 * 1.755e9  # ex2 per second: 16 per SM per clock (SFU), 132 SMs, boost clock


def op_case(bench, v, B, T, dtype):
    run, leaves = h.op_fwd_bwd(v, B, T, dtype, bench.device)
    run()
    ms = bench.time_ms(run, grads=leaves)
    if bench.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run()
        return dict(ms=round(ms, 3), peak_gb=round(torch.cuda.max_memory_allocated() / 2**30, 3))
    return dict(ms=round(ms, 3))


def section_op(bench, frames, dtypes, B, fp32_baselines=True):
    for dtype in dtypes:
        variants = h.op_variants(bench.device, dtype)
        for T in frames:
            # compile costs ~10 s a shape: float32 only at the longest T, compiler baselines
            # only with --fp32-baselines
            if dtype == torch.float32 and T != frames[-1]:
                continue
            case = f"fwd+bwd {str(dtype)[6:]} T={T} B={B}"
            for v in variants:
                if dtype == torch.float32 and not fp32_baselines and v.name in ("compiled", "sdpa"):
                    continue
                if v.fn is None:
                    bench.skip("op", case, v.name, v.reason)
                else:
                    bench.row("op", case, v.name, lambda v=v: op_case(bench, v, B, T, dtype))


# one knob at a time away from the launcher's choice (stcformer.backends.triton.override_config)
SWEEP = [{}, {"block_m": 64}, {"warps_fwd_t": 4}, {"block_m_bwd": 64}, {"warps_bwd_t": 4},
         {"frames_bwd": 2}, {"frames_bwd": 8}, {"warps_s": 8}, {"frames": 4}, {"frames": 16},
         {"nsplit": 1}, {"nsplit": 8}]


def section_sweep(bench, frames, B):
    from stcformer.backends import triton as tb
    v = next(v for v in h.op_variants("cuda", torch.bfloat16, compiled=False, sdpa=False) if v.name == "triton")
    for T in frames:
        for cfg in SWEEP:
            def run(cfg=cfg):
                with tb.override_config(**cfg):
                    return op_case(bench, v, B, T, torch.bfloat16)
            bench.row("sweep", f"fwd+bwd bf16 T={T} B={B}", json.dumps(cfg), run)


class Bench(h.Bench):
    def __init__(self, device, budget_s, smoke, argv=None):
        super().__init__("gpu_bench.py", device, budget_s, argv=argv)
        self.smoke = smoke

    def time_ms(self, fn, grads=None) -> float:
        if self.smoke:  # CPU: one timed run after a warm-up (no claims are made from it)
            return h.measure({"fn": fn}, "cpu", repeats=1, warmup=1, retries=0)["fn"]
        return h.measure({"fn": fn}, "cuda", grads={"fn": grads})["fn"]


# ---------------------------------------------------------------------------------------------
def kernel_floor(name, B, T, es):
    """(bytes, exps) a kernel must move / compute at least, C=256, H=8, J=17, dtype size es."""
    half = C // 2
    rows = B * T * J
    io = rows * half * es * (3 + 1)                 # q, k, v of its half in; its out half
    if "spatial" in name:
        exps = B * T * H * J * J
        lse = B * H * T * J * 4
    else:
        exps = B * J * H * T * T
        lse = B * H * J * T * 4
    if "bwd" in name:                               # + grad_out in, grad q/k/v out (- out)
        io = rows * half * es * (3 + 1 + 3)
    return io + lse, exps


def section_profile(bench, B, frames, bw_bytes_s):
    from torch.profiler import ProfilerActivity, profile
    from stcformer import ops
    for T in frames:
        def run_profile():
            args = h.op_inputs(B, T, torch.bfloat16, "cuda", "head_major")
            leaves = args[:7]
            grad = torch.randn(B, T, J, C, device="cuda", dtype=torch.bfloat16)

            def run():
                out = ops.stc_attention(*args, backend="triton", layout="head_major")
                torch.autograd.backward(out, grad)
                for x in leaves:
                    x.grad = None
            for _ in range(3):
                run()
            torch.cuda.synchronize()
            n = 10
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(n):
                    run()
                torch.cuda.synchronize()
            res = {}
            total = 0.0
            for evt in prof.key_averages():
                us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
                if us <= 0:
                    continue
                total += us / n
                if "_kernel" in evt.key and ("spatial" in evt.key or "temporal" in evt.key):
                    nbytes, exps = kernel_floor(evt.key, B, T, 2)
                    floor_us = max(nbytes / bw_bytes_s, exps / EXP_RATE) * 1e6
                    res[evt.key] = dict(us=round(us / n, 1), floor_us=round(floor_us, 1),
                                        roofline_frac=round(floor_us / (us / n), 3))
            res["all_gpu_us_per_call"] = round(total, 1)
            return dict(kernels=res)
        bench.row("profile", f"bf16 T={T} B={B}", "triton", run_profile)


# ---------------------------------------------------------------------------------------------
def train_case(bench, T, B, *, backend, amp, compile_, recompute=False, fused=True, measure_mem=False,
               cuda_graphs=False):
    dev = torch.device(bench.device)
    h.set_tf32(dev, amp != "none" or compile_)
    model = h.make_model(backend, dev, recompute=recompute)
    step = h.train_step(model, B, T, device=dev, amp=amp, compile_=compile_, fused_adam=fused,
                        cuda_graphs=cuda_graphs)
    t0 = time.time()
    step()
    h.sync(dev)
    out = dict(first_step_s=round(time.time() - t0, 1))
    if measure_mem and dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        out["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return out
    out["ms"] = round(bench.time_ms(step), 2)
    h.set_tf32(dev, False)
    return out


def section_train(bench, frames, B):
    on_gpu = bench.device == "cuda"
    for T in frames:
        case = f"train step T={T} B={B}"
        bench.row("train", case, "default (bf16+compile+fused Adam, triton)" if on_gpu else "reference eager",
                  lambda: train_case(bench, T, B, backend=None, amp="bf16" if on_gpu else "none",
                                     compile_=on_gpu))
        bench.row("train", case, "reference fp32 eager, unfused Adam", lambda: train_case(
            bench, T, B, backend="reference", amp="none", compile_=False, fused=False))
        if on_gpu:
            bench.row("train", case, "default + --cuda-graphs", lambda: train_case(
                bench, T, B, backend=None, amp="bf16", compile_=True, cuda_graphs=True))
            bench.row("train", case, "triton fp32 eager (--amp none --no-compile)", lambda: train_case(
                bench, T, B, backend=None, amp="none", compile_=False))


def section_memory(bench, T, B):
    for compile_ in (False, True):
        for rec in (False, True):
            bench.row("memory", f"bf16 train step T={T} B={B} ({'compiled' if compile_ else 'eager'})",
                      f"recompute={rec}", lambda rec=rec, compile_=compile_: train_case(
                          bench, T, B, backend=None, amp="bf16", compile_=compile_, recompute=rec,
                          measure_mem=True))


def section_infer(bench, T, B):
    def case(backend, amp, compile_=False):
        model = h.make_model(backend, bench.device, train=False)
        model = torch.compile(model, dynamic=False) if compile_ else model
        run = h.infer_fn(model, B, T, device=bench.device, amp=torch.bfloat16 if amp == "bf16" else None,
                         flip=True)  # the flipped copy: a second forward of the same cost
        t0 = time.time()
        run()
        h.sync(torch.device(bench.device))
        return dict(ms=round(bench.time_ms(run), 2), first_call_s=round(time.time() - t0, 1))

    for backend, amp, compile_ in ((None, "bf16", True), (None, "bf16", False), (None, "none", True),
                                   (None, "none", False), ("reference", "none", False)):
        bench.row("infer", f"flip-averaged T={T} B={B}",
                  f"{backend or 'auto'} {amp}{' compiled' if compile_ else ''}",
                  lambda backend=backend, amp=amp, compile_=compile_: case(backend, amp, compile_))


def section_ceilings(bench):
    def run():
        n = 1 << 30  # 1 GiB each way
        a = torch.empty(n, dtype=torch.uint8, device="cuda")
        b = torch.empty_like(a)
        ms = bench.time_ms(lambda: b.copy_(a))
        bw = 2 * n / (ms * 1e-3)
        del a, b
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        ms_mm = bench.time_ms(lambda: x @ y)
        return dict(copy_TB_s=round(bw / 1e12, 2), bf16_gemm_TFLOP_s=round(2 * 8192**3 / (ms_mm * 1e-3) / 1e12, 0))
    return bench.row("ceil", "device", "measured", run)


# ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/stcformer_bench"))
    ap.add_argument("--budget-s", type=float, default=420.0, help="rows past this are SKIPPED")
    ap.add_argument("--sections", default="ceil,op,profile,train,memory,infer,sweep")
    ap.add_argument("--frames", default="27,81,243")
    ap.add_argument("--no-fp32-baselines", dest="fp32_baselines", action="store_false",
                    help="float32 rows: only triton and reference (no compiled baselines)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the same code paths")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_bench.py: no CUDA device (use --cpu-smoke for a CPU dry run)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench("cpu" if smoke else "cuda", args.budget_s, smoke, argv=argv)
    frames = [int(f) for f in args.frames.split(",")]
    sections = args.sections.split(",")
    B = 2 if smoke else 42
    if smoke:
        frames = [min(f, 9) for f in frames[:1]] + [min(frames[-1], 12)]
    dev_name = "CPU smoke run" if smoke else (
        f"{torch.cuda.get_device_name()} ({time.strftime('%Y-%m-%d')}), torch {torch.__version__}, "
        f"triton {__import__('triton').__version__}")
    bw = 3.0e12
    if "ceil" in sections and not smoke:
        rec = section_ceilings(bench)
        bw = rec.get("copy_TB_s", 3.0) * 1e12
    if "op" in sections:
        section_op(bench, frames, [torch.bfloat16, torch.float32], B, args.fp32_baselines)
    if "profile" in sections and not smoke:
        section_profile(bench, B, [frames[0], frames[-1]], bw)
    if "train" in sections:
        section_train(bench, [frames[0], frames[-1]], 4 if smoke else 42)
    if "memory" in sections and not smoke:
        section_memory(bench, 243, 128)
    if "infer" in sections:
        section_infer(bench, frames[-1], 4 if smoke else 256)
    if "sweep" in sections and not smoke:
        section_sweep(bench, [frames[-1], frames[0]], B)
    bench.meta["machine"] = dev_name
    bench.save(out / "gpu_bench.json")
    text = render_run(dict(meta=bench.meta, rows=bench.rows))
    (out / "gpu_bench.md").write_text(text)
    print(text)
    return 0 if bench.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
