"""GPU benchmark table: the triton backend vs reference vs torch.compile(reference).

    python bench/gpu_table.py [--out DIR] [--frames 27,81,243] [--budget-s 330]
    python bench/gpu_table.py --cpu-smoke      # tiny CPU run of the same code paths (no triton)

Rows (each timed side by side in one process on one GPU; median of CUDA-event timings after a
warm-up; peak = torch.cuda.max_memory_allocated over one run, inputs and weights included):
  op fwd+bwd   stc_attention forward + backward, C=256, H=8, J=17, (T, B) = (27, 128),
               (81, 64), (243, 32), float32 and bfloat16
  train step   STCFormer(layers=6, d_hid=256) forward + loss + backward + Adam step, float32,
               the same (T, B)
  bf16 memory  bf16-autocast training step at T=243, B=128 (issue target: <= 24 GB with triton)
Any failure (OOM included) prints FAILED / OOM for that row and the table goes on. Rows run in
order of importance (T=243 first, then the memory check, then the shorter T); rows past the time
budget print SKIPPED. The table is printed last and written to DIR/gpu_table.md and
DIR/gpu_table.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from stcformer.reference import stc_attention_reference

J = 17
TARGETS = """Targets (reported, not asserted): op fwd+bwd at T=243 >= 3x faster than reference and
>= 1.5x than torch.compile(reference); 6-layer training step at T=243 >= 1.8x faster than
reference with peak memory <= 0.4x; bf16-autocast T=243 B=128 training step in <= 24 GB."""


class Ctx:
    def __init__(self, device: str, reps: int, budget_s: float):
        self.device = device
        self.reps = reps
        self.deadline = time.time() + budget_s
        self.cuda = device == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_mem(self):
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self):
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")

    def time_ms(self, fn, warmup: int = 3):
        """Median ms of ``reps`` runs of fn (CUDA events on GPU, perf_counter on CPU)."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(self.reps):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def peak_of(self, fn):
        """Peak GB of allocated memory during one run of fn (after a warm run)."""
        fn()
        self.sync()
        self.reset_mem()
        fn()
        self.sync()
        return self.peak_gb()


# ---------------------------------------------------------------------------------------------
# op rows

def op_impl(variant: str):
    if variant == "triton":
        from stcformer.backends.triton import stc_attention
        return stc_attention
    if variant == "reference":
        return stc_attention_reference
    if variant == "compiled":
        return torch.compile(stc_attention_reference, dynamic=False)
    raise ValueError(variant)


def op_case(ctx: Ctx, variant: str, T: int, B: int, C: int, H: int, dtype: torch.dtype):
    fn = op_impl(variant)
    dev = ctx.device
    g = torch.Generator(device="cpu").manual_seed(0)
    half, dh = C // 2, C // 2 // H
    qkv = torch.randn(B, T, J, 3 * C, generator=g).to(dev, dtype).requires_grad_(True)
    params = [torch.randn(*s, generator=g).mul_(0.1).to(dev).requires_grad_(True)
              for s in ((half, 1, 3, 3), (half,), (half, 1, 3, 3), (half,), (J, dh), (J, dh))]
    grad = torch.randn(B, T, J, C, generator=g).to(dev, dtype)

    def step():
        for x in [qkv] + params:
            x.grad = None
        out = fn(qkv, *params, H, half ** -0.5)
        out.backward(grad)

    ms = ctx.time_ms(step)
    peak = ctx.peak_of(step)
    return ms, peak


# ---------------------------------------------------------------------------------------------
# model rows

def model_case(ctx: Ctx, variant: str, T: int, B: int, layers: int, width: int,
               autocast_bf16: bool = False):
    from stcformer.model import STCFormer

    backend = "reference" if variant in ("reference", "compiled") else variant
    torch.manual_seed(0)
    model = STCFormer(layers=layers, d_hid=width, backend=backend).to(ctx.device).train()
    run = torch.compile(model, dynamic=False) if variant == "compiled" else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(B, T, J, 2, device=ctx.device)
    y = torch.randn(B, T, J, 3, device=ctx.device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(ctx.device, dtype=torch.bfloat16, enabled=autocast_bf16):
            loss = (run(x).float() - y).norm(dim=-1).mean()
        loss.backward()
        opt.step()

    ms = ctx.time_ms(step, warmup=2)
    peak = ctx.peak_of(step)
    del model, run, opt
    return ms, peak


# ---------------------------------------------------------------------------------------------

def fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or None, help="folder for the table files")
    ap.add_argument("--frames", default="27,81,243")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=270.0, help="skip rows started after this")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="tiny shapes on CPU (reference and compiled only): checks the script")
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile(reference)")
    ap.add_argument("--no-memory-check", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="only print the CUDA kernel times of the triton op at T=243, B=32")
    args = ap.parse_args(argv)
    if args.profile:
        return profile_op()

    frames = [int(t) for t in args.frames.split(",")]
    batch_of = {27: 128, 81: 64, 243: 32}
    if args.cpu_smoke:
        device, frames = "cpu", frames[:2] if len(frames) > 1 else frames
        ctx = Ctx(device, reps=2, budget_s=args.budget_s)
        op_shape, model_shape = dict(C=32, H=2), dict(layers=1, width=32)
        bsz = lambda T: 1  # noqa: E731
        variants = ["reference"] + ([] if args.no_compile else ["compiled"])
        op_dtypes = [torch.float32]
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: use --cpu-smoke", file=sys.stderr)
            return 2
        os.environ.pop("TRITON_INTERPRET", None)
        device = "cuda"
        ctx = Ctx(device, reps=args.reps, budget_s=args.budget_s)
        op_shape, model_shape = dict(C=256, H=8), dict(layers=6, width=256)
        bsz = lambda T: batch_of.get(T, max(1, 7776 // T))  # noqa: E731
        variants = ["triton", "reference"] + ([] if args.no_compile else ["compiled"])
        op_dtypes = [torch.float32, torch.bfloat16]

    rows = []

    def record(what, T, B, variant, fn):
        row = dict(what=what, T=T, B=B, variant=variant, ms=None, peak_gb=None, status="ok")
        if time.time() > ctx.deadline:
            row["status"] = "SKIPPED"
        else:
            t0 = time.time()
            try:
                row["ms"], row["peak_gb"] = fn()
            except torch.cuda.OutOfMemoryError:
                row["status"] = "OOM"
            except Exception as exc:  # one failure must not stop the table
                row["status"] = "FAILED"
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                traceback.print_exc()
            row["wall_s"] = round(time.time() - t0, 1)
            torch._dynamo.reset()
            if ctx.cuda:
                torch.cuda.empty_cache()
        rows.append(row)
        print(f"[{row['status']}] {what} T={T} B={B} {variant}: ms={fmt(row['ms'], '.3f')} "
              f"peak={fmt(row['peak_gb'], '.3f')} GB ({row.get('wall_s', 0)} s)", flush=True)

    # most important first (the targets are at T=243): rows past the time budget print SKIPPED
    frames = sorted(frames, reverse=True)
    mem_T, mem_B = (243, 128) if not args.cpu_smoke else (9, 2)

    def op_rows(T):
        for dtype in op_dtypes:
            dname = str(dtype).replace("torch.", "")
            for v in variants:
                record(f"op fwd+bwd {dname}", T, bsz(T), v,
                       lambda v=v, dtype=dtype: op_case(ctx, v, T, bsz(T), op_shape["C"], op_shape["H"], dtype))

    def train_rows(T):
        for v in variants:
            record(f"train step {model_shape['layers']}x{model_shape['width']} fp32", T, bsz(T), v,
                   lambda v=v: model_case(ctx, v, T, bsz(T), model_shape["layers"], model_shape["width"]))

    def memory_rows():
        for v in [x for x in variants if x != "compiled"]:
            record("bf16-autocast train step memory", mem_T, mem_B, v,
                   lambda v=v: model_case(ctx, v, mem_T, mem_B, model_shape["layers"], model_shape["width"],
                                          autocast_bf16=True))

    op_rows(frames[0])
    train_rows(frames[0])
    if not args.no_memory_check:
        memory_rows()
    for T in frames[1:]:
        op_rows(T)
    for T in frames[1:]:
        train_rows(T)

    table = render(rows, device_name(ctx))
    print(table, flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_table.md").write_text(table + "\n")
        (out / "gpu_table.json").write_text(json.dumps(dict(device=device_name(ctx), rows=rows), indent=1))
    return 0


def profile_op(T: int = 243, B: int = 32, C: int = 256, H: int = 8) -> int:
    """torch.profiler table of the triton op's kernels (forward + backward)."""
    from torch.profiler import ProfilerActivity, profile

    ctx = Ctx("cuda", reps=3, budget_s=1e9)
    for dtype in (torch.bfloat16, torch.float32):
        for variant in ("triton", "reference"):
            op_case(ctx, variant, T, B, C, H, dtype)  # warm-up (compiles the kernels)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                op_case(ctx, variant, T, B, C, H, dtype)
            print(f"== {variant} {dtype} T={T} B={B} C={C} H={H} (totals over 3 + 1 + 2 runs)")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    return 0


def device_name(ctx: Ctx) -> str:
    if ctx.cuda:
        import triton
        return (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__}")
    return f"CPU smoke | torch {torch.__version__}"


def render(rows, device: str) -> str:
    """Markdown table with ratios against reference and compiled within each (what, T)."""
    by_key = {}
    for r in rows:
        by_key.setdefault((r["what"], r["T"]), {})[r["variant"]] = r
    lines = [f"## GPU table ({device})", "",
             "| case | T | B | backend | ms (median) | x vs reference | x vs compiled | peak GB | peak / reference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (what, T), group in by_key.items():
        ref, comp = group.get("reference"), group.get("compiled")
        for v, r in group.items():
            if r["status"] != "ok":
                lines.append(f"| {what} | {T} | {r['B']} | {v} | {r['status']} | | | | |")
                continue
            def ratio(base, key, inverse=False):
                if not base or base["status"] != "ok" or not base.get(key) or not r.get(key):
                    return "-"
                if math.isnan(base[key]) or math.isnan(r[key]):
                    return "-"
                return f"{(r[key] / base[key]) if inverse else (base[key] / r[key]):.2f}"
            lines.append(f"| {what} | {T} | {r['B']} | {v} | {fmt(r['ms'], '.3f')} | {ratio(ref, 'ms')} | "
                         f"{ratio(comp, 'ms')} | {fmt(r['peak_gb'], '.3f')} | {ratio(ref, 'peak_gb', True)} |")
    lines += ["", TARGETS]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
