"""GPU benchmark: stc_attention backends and the model's default training / inference paths.

    python bench/gpu_bench.py [--out DIR] [--budget-s 420] [--sections op,profile,train,memory,infer]
    python bench/gpu_bench.py --cpu-smoke     # tiny CPU run of the same code (no triton, no timing claims)

Every time is the median of ``triton.testing.do_bench`` (CUDA events, warm-up first, grads set
to None between runs), every ratio is measured side by side in this one process on one GPU.
Sections, in order of importance (each row catches its own failure; rows past the budget are
SKIPPED):
  ceil     the GPU's measured ceilings: device-to-device copy bandwidth, bf16 GEMM rate
  op       stc_attention forward+backward, B=42, C=256, H=8, J=17, T = 27, 81, 243, bf16 and
           float32: triton (head-major qkv, the model's layout on a GPU), triton (official
           layout), reference, torch.compile(reference), and ``sdpa``: the same math written with
           F.scaled_dot_product_attention for both halves plus F.conv2d, under torch.compile
  profile  per-kernel GPU time (torch.profiler) against each kernel's floor: its bytes over the
           measured bandwidth, or its exps over the SFU rate, whichever is larger
  train    one training step of STCFormer(6 x 256), B=42, with the defaults of
           ``python -m stcformer.train`` on CUDA (bf16 autocast, torch.compile, fused Adam),
           against our model with backend=reference in float32 eager
  memory   peak memory of a bf16 training step at T=243, B=128 (eager), with and without
           activation recompute
  infer    flip-averaged inference of 256 windows at T=243 (two forwards), bf16 and float32
  sweep    the triton op (bf16, B=42) with one block shape / warp count changed at a time
The table is printed last and written to DIR/gpu_bench.md and DIR/gpu_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from stcformer.reference import head_major_index, stc_attention_reference

J, C, H = 17, 256, 8
EXP_RATE = 16 * 132 * 1.755e9  # ex2 per second: 16 per SM per clock (SFU), 132 SMs, boost clock


def sdpa_composition(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale):
    """The op as a user could write it without us: SDPA for both halves plus F.conv2d."""
    B, T, Jn, C3 = qkv.shape
    half = C3 // 6
    dh = half // num_heads
    q, k, v = qkv.view(B, T, Jn, C3 // 3, 3).unbind(-1)

    def part(x, lo):
        return x[..., lo:lo + half].reshape(B, T, Jn, num_heads, dh)

    def conv(x, w, b):  # (B, T, J, half) -> (B, T, J, H, dh)
        y = F.conv2d(x.permute(0, 3, 1, 2), w.to(x.dtype), b.to(x.dtype), padding=1, groups=half)
        return y.permute(0, 2, 3, 1).reshape(B, T, Jn, num_heads, dh)

    # SDPA on 4D (batch, heads, sequence, dh) tensors
    qs, ks, vs = (part(x, 0).permute(0, 1, 3, 2, 4).reshape(B * T, num_heads, Jn, dh) for x in (q, k, v))
    o_s = F.scaled_dot_product_attention(qs, ks, vs, scale=scale)
    o_s = o_s.reshape(B, T, num_heads, Jn, dh).permute(0, 1, 3, 2, 4)
    o_s = o_s + conv(v[..., :half], w_s, b_s) + spe_s.to(qkv.dtype)[:, None, :]
    qt, kt, vt = (part(x, half).permute(0, 2, 3, 1, 4).reshape(B * Jn, num_heads, T, dh) for x in (q, k, v))
    o_t = F.scaled_dot_product_attention(qt, kt, vt, scale=scale)
    o_t = o_t.reshape(B, Jn, num_heads, T, dh).permute(0, 3, 1, 2, 4)
    o_t = o_t + conv(v[..., half:], w_t, b_t) + spe_t.to(qkv.dtype)[:, None, :]
    return torch.stack([o_s, o_t], dim=-2).reshape(B, T, Jn, C3 // 3)


class Bench:
    def __init__(self, device: str, budget_s: float, smoke: bool):
        self.device, self.smoke = device, smoke
        self.deadline = time.time() + budget_s
        self.rows: list = []
        self.notes: list = []

    def time_ms(self, fn, grads=None) -> float:
        if self.smoke:  # CPU: run it twice, report one wall time (no claims are made from it)
            fn()
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        from triton.testing import do_bench
        return do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")

    def row(self, section, case, variant, fn, **extra):
        """Run fn() -> dict(ms=..., ...) into a table row; failures and budget become rows."""
        rec = dict(section=section, case=case, variant=variant, **extra)
        if time.time() > self.deadline:
            rec["status"] = "SKIPPED"
        else:
            t0 = time.time()
            try:
                rec.update(fn())
                rec["status"] = "ok"
            except torch.cuda.OutOfMemoryError:
                rec["status"] = "OOM"
            except Exception as exc:  # keep going: one broken row must not hide the rest
                rec["status"] = "FAILED"
                rec["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                traceback.print_exc()
            rec["wall_s"] = round(time.time() - t0, 1)
            if self.device == "cuda":
                torch.cuda.empty_cache()
        print(f"[{rec['status']}] {section} {case} {variant}: "
              + ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("section", "case", "variant", "status")),
              flush=True)
        self.rows.append(rec)
        return rec


# ---------------------------------------------------------------------------------------------
def op_inputs(B, T, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    half, dh = C // 2, C // 2 // H
    qkv = torch.randn(B, T, J, 3 * C, generator=g).to(device, dtype)
    p = [torch.randn(half, 1, 3, 3, generator=g) * 0.3, torch.randn(half, generator=g) * 0.1,
         torch.randn(half, 1, 3, 3, generator=g) * 0.3, torch.randn(half, generator=g) * 0.1,
         torch.randn(J, dh, generator=g) * 1e-3, torch.randn(J, dh, generator=g) * 1e-9]
    return [qkv] + [x.to(device) for x in p]  # parameters float32 (the autocast case)


def op_variants(smoke: bool):
    from stcformer import ops
    out = {
        "reference": (lambda *a: stc_attention_reference(*a), "interleaved"),
        "compiled": (torch.compile(stc_attention_reference, dynamic=False), "interleaved"),
        "sdpa": (torch.compile(sdpa_composition, dynamic=False), "interleaved"),
    }
    if not smoke:
        out["triton"] = (lambda *a: ops.stc_attention(*a, backend="triton", layout="head_major"), "head_major")
        out["triton_interleaved"] = (lambda *a: ops.stc_attention(*a, backend="triton"), "interleaved")
    return out


def op_case(bench, fn, layout, B, T, dtype):
    tensors = op_inputs(B, T, dtype, bench.device)
    if layout == "head_major":
        tensors[0] = tensors[0][..., head_major_index(C, H, bench.device)].contiguous()
    leaves = [t.requires_grad_(True) for t in tensors]
    grad = torch.randn(B, T, J, C, device=bench.device, dtype=dtype)

    def run():
        out = fn(*leaves, H, (C // 2) ** -0.5)
        torch.autograd.backward(out, grad)

    run()
    ms = bench.time_ms(run, grads=leaves)
    if bench.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run()
        return dict(ms=round(ms, 3), peak_gb=round(torch.cuda.max_memory_allocated() / 2**30, 3))
    return dict(ms=round(ms, 3))


def section_op(bench, frames, dtypes, B, fp32_baselines=True):
    variants = op_variants(bench.smoke)
    for dtype in dtypes:
        for T in frames:
            names = list(variants)
            # compile costs ~10 s a shape: float32 only at the longest T, compiler baselines
            # only with --fp32-baselines
            if dtype == torch.float32:
                if T != frames[-1]:
                    continue
                if not fp32_baselines:
                    names = [n for n in names if n in ("reference", "triton")]
            for name in names:
                fn, layout = variants[name]
                bench.row("op", f"fwd+bwd {str(dtype)[6:]} T={T} B={B}", name,
                          lambda: op_case(bench, fn, layout, B, T, dtype))


# one knob at a time away from the launcher's choice (stcformer.backends.triton.OVERRIDES)
SWEEP = [{}, {"block_m": 64}, {"warps_fwd_t": 4}, {"block_m_bwd": 64}, {"warps_bwd_t": 4},
         {"frames_bwd": 2}, {"frames_bwd": 8}, {"warps_s": 8}, {"frames": 4}, {"frames": 16},
         {"nsplit": 1}, {"nsplit": 8}]


def section_sweep(bench, frames, B):
    from stcformer.backends import triton as tb
    fn, layout = op_variants(False)["triton"]
    for T in frames:
        for cfg in SWEEP:
            def run():
                tb.OVERRIDES.clear()
                tb.OVERRIDES.update(cfg)
                try:
                    return op_case(bench, fn, layout, B, T, torch.bfloat16)
                finally:
                    tb.OVERRIDES.clear()
            bench.row("sweep", f"fwd+bwd bf16 T={T} B={B}", json.dumps(cfg), run)


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
            tensors = op_inputs(B, T, torch.bfloat16, "cuda")
            tensors[0] = tensors[0][..., head_major_index(C, H, "cuda")].contiguous()
            leaves = [t.requires_grad_(True) for t in tensors]
            grad = torch.randn(B, T, J, C, device="cuda", dtype=torch.bfloat16)

            def run():
                out = ops.stc_attention(*leaves, H, (C // 2) ** -0.5, backend="triton", layout="head_major")
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
def make_model(backend, device):
    from stcformer import STCFormer
    torch.manual_seed(0)
    return STCFormer(layers=6, d_hid=C, backend=backend).to(device).train()


def train_case(bench, T, B, *, backend, amp, compile_, recompute=False, fused=True, measure_mem=False):
    from stcformer.train import compile_model, make_optimizer, make_train_step, set_tf32
    dev = torch.device(bench.device)
    set_tf32(dev, amp != "none" or compile_)
    model = make_model(backend, dev).set_recompute(recompute)
    opt = make_optimizer(model.parameters(), 1e-3, dev) if fused else torch.optim.Adam(
        model.parameters(), lr=1e-3, amsgrad=True)
    net = compile_model(model) if compile_ else model
    step = make_train_step(net, opt, amp=amp, device=dev)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, J, 2, generator=g).to(dev)
    y = torch.randn(B, T, J, 3, generator=g).to(dev) * 0.2
    t0 = time.time()
    step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    first_s = time.time() - t0
    out = dict(first_step_s=round(first_s, 1))
    if measure_mem and dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step(x, y)
        torch.cuda.synchronize()
        out["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return out
    out["ms"] = round(bench.time_ms(lambda: step(x, y)), 2)
    set_tf32(dev, False)
    return out


def section_train(bench, frames, B):
    on_gpu = bench.device == "cuda"
    for T in frames:
        case = f"train step T={T} B={B}"
        bench.row("train", case, "default (bf16+compile+fused Adam, triton)" if on_gpu else "reference eager",
                  lambda: train_case(bench, T, B, backend=None, amp="bf16" if on_gpu else "none",
                                     compile_=on_gpu))
        bench.row("train", case, "reference fp32 eager, Adam", lambda: train_case(
            bench, T, B, backend="reference", amp="none", compile_=False, fused=False))
        if on_gpu:
            bench.row("train", case, "triton fp32 eager (--amp none --no-compile)", lambda: train_case(
                bench, T, B, backend=None, amp="none", compile_=False))


def section_memory(bench, T, B):
    for rec in (False, True):
        bench.row("memory", f"bf16 train step T={T} B={B} (eager)", f"recompute={rec}",
                  lambda: train_case(bench, T, B, backend=None, amp="bf16", compile_=False,
                                     recompute=rec, measure_mem=True))


def section_infer(bench, T, B):
    dev = torch.device(bench.device)

    def case(backend, amp):
        model = make_model(backend, dev).eval()
        x = torch.randn(B, T, J, 2, device=dev)
        xf = x.flip(2)  # a stand-in for the flipped copy (same cost)

        @torch.no_grad()
        def run():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                return (model(x) + model(xf)) * 0.5
        return dict(ms=round(bench.time_ms(run), 2))

    for backend, amp in ((None, "bf16"), (None, "none"), ("reference", "none")):
        bench.row("infer", f"flip-averaged T={T} B={B}", f"{backend or 'auto'} {amp}",
                  lambda: case(backend, amp))


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
def render(bench, device_name) -> str:
    lines = [f"## {device_name}", ""]
    ops = [r for r in bench.rows if r["section"] == "op"]
    if ops:
        lines += ["| case | variant | ms | x vs reference | x vs compiled | x vs sdpa | peak GB |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in ops:
            base = {x["variant"]: x.get("ms") for x in ops if x["case"] == r["case"] and x.get("ms")}
            ms = r.get("ms")
            rat = lambda k: f"{base[k] / ms:.2f}" if ms and base.get(k) else "-"  # noqa: E731
            lines.append(f"| {r['case']} | {r['variant']} | {ms if ms else r['status']} | {rat('reference')} | "
                         f"{rat('compiled')} | {rat('sdpa')} | {r.get('peak_gb', '-')} |")
        lines.append("")
    prof = [r for r in bench.rows if r["section"] == "profile" and r["status"] == "ok"]
    for r in prof:
        lines += [f"Per kernel, {r['case']} (all GPU time per call: {r['kernels']['all_gpu_us_per_call']} us):", "",
                  "| kernel | us | floor us | fraction of roofline |", "| --- | --- | --- | --- |"]
        for k, v in r["kernels"].items():
            if isinstance(v, dict):
                lines.append(f"| {k} | {v['us']} | {v['floor_us']} | {v['roofline_frac']:.2f} |")
        lines.append("")
    rest = [r for r in bench.rows if r["section"] not in ("op", "profile")]
    if rest:
        lines += ["| section | case | variant | result |", "| --- | --- | --- | --- |"]
        for r in rest:
            res = {k: v for k, v in r.items() if k not in ("section", "case", "variant", "status", "wall_s")}
            lines.append(f"| {r['section']} | {r['case']} | {r['variant']} | "
                         f"{r['status'] if r['status'] != 'ok' else ''} {res} |")
    return "\n".join(lines) + "\n"


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
    bench = Bench("cpu" if smoke else "cuda", args.budget_s, smoke)
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
    text = render(bench, dev_name)
    (out / "gpu_bench.md").write_text(text)
    (out / "gpu_bench.json").write_text(json.dumps(dict(device=dev_name, rows=bench.rows), indent=1))
    print(text)
    return 0 if all(r["status"] in ("ok", "SKIPPED") for r in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
