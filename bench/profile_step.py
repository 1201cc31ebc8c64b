"""Where a CPU training (or inference) step's time goes: torch.profiler over a few steps of the
model variants of bench/cpu_table.py, self time grouped by kind, per step.

    python -m bench.profile_step                                  # reference and cpp, training T=27 B=16
    python -m bench.profile_step --variants cpp --mode infer --frames 243 --batch 4
    python -m bench.profile_step --json /tmp/profile.json

Kinds: the GEMMs (aten mm / addmm / addmm_ / bmm and oneDNN linears; their GFLOP/s from the
recorded shapes), the stc_attention op (the cpp kernels; the reference op is made of ATen ops
and lands in the other kinds), the fused GELU/dropout kernels, LayerNorm, convolutions, the other
ATen ops, the autograd Functions' and optimizer's own Python (time inside a recorded Python-level
event but in no ATen op) and the time between recorded events (Python, dispatch). Minor page
faults per step (getrusage) show how often large fresh tensors touch new pages. The profiler
adds a little time to every op, most to the small ones: read the shares, and time with
bench/cpu_table.py.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from bench import cpu_table as ct
from bench import harness as h

GEMMS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")
KINDS = ("gemm", "stc_attention op", "gelu/dropout kernels", "layer_norm", "convolution",
         "other aten ops", "autograd/optimizer Python", "between events")


def kind_of(name: str) -> str:
    if name in GEMMS or name.startswith("mkldnn::_linear") or name == "aten::mkldnn_linear":
        return "gemm"
    if "stc_attention" in name:
        return "stc_attention op"
    if name.startswith("stcformer::gelu_dropout"):
        return "gelu/dropout kernels"
    if "layer_norm" in name:
        return "layer_norm"
    if "convolution" in name or name.startswith("aten::conv"):
        return "convolution"
    if name.startswith(("aten::", "mkldnn::", "stcformer::")):
        return "other aten ops"
    return "autograd/optimizer Python"


def gemm_flops(name: str, shapes: List[list]) -> Optional[float]:
    """2*M*N*K of one call from its recorded input shapes (None when they are not recorded)."""
    try:
        a, b = (shapes[0], shapes[1]) if name in ("aten::mm", "aten::bmm") else (shapes[1], shapes[2])
        if len(a) == 3:  # bmm / baddbmm: batch x M x K
            return 2.0 * a[0] * a[1] * a[2] * b[2]
        return 2.0 * a[0] * a[1] * b[1]
    except (IndexError, TypeError):
        return None


def profile_steps(fn, steps: int) -> Dict[str, dict]:
    """Per-step milliseconds of each kind over ``steps`` profiled calls of ``fn``, and the minor
    page faults per call over as many calls before (after three warm-up calls)."""
    for _ in range(3):  # warm-up: the C allocator's heap reaches its steady size
        fn()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # unprofiled: the profiler allocates too
    for _ in range(steps):
        fn()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        wall = time.perf_counter() - t0
    ms = dict.fromkeys(KINDS, 0.0)
    flops = gemm_us = 0.0
    for ev in prof.key_averages(group_by_input_shape=True):
        us = ev.self_cpu_time_total
        kind = kind_of(ev.key)
        ms[kind] += us / 1e3 / steps
        if kind == "gemm" and ev.key in GEMMS:
            f = gemm_flops(ev.key, ev.input_shapes)
            if f is not None:
                flops += f * ev.count
                gemm_us += us
    recorded = sum(ms.values())
    ms["between events"] = max(wall * 1e3 / steps - recorded, 0.0)
    total = sum(ms.values())
    out = {k: {"ms": v, "share": v / total if total else 0.0} for k, v in ms.items()}
    out["gemm"]["gflops"] = flops / (gemm_us * 1e-6) / 1e9 if gemm_us else None
    out["total"] = {"ms": total, "share": 1.0, "minor_faults": faults}
    return out


def print_table(label: str, res: Dict[str, dict]) -> None:
    print(f"\n{label}: {res['total']['ms']:.0f} ms/step, {res['total']['minor_faults']:.0f} minor page faults/step")
    for k in KINDS:
        r = res[k]
        note = f"  {r['gflops']:.0f} GFLOP/s" if k == "gemm" and r.get("gflops") else ""
        print(f"  {k:28s} {r['ms']:8.1f} ms  {100 * r['share']:5.1f}%{note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="reference,cpp",
                    help="comma-separated names of bench/cpu_table.variants (default: reference,cpp)")
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    ap.add_argument("--frames", type=int, default=27)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="profiled steps per variant (after three warm-up and as many page-fault-counting steps)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json", help="write the per-kind figures to this JSON file")
    args = ap.parse_args(argv)
    known = ct.variants(False, True)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or args.frames < 1 or args.batch < 1 or args.steps < 1:
        what = f"unknown variant(s) {', '.join(bad)} (choose from {', '.join(known)})" if bad else \
            "--frames, --batch and --steps must be positive"
        print(f"profile_step.py: {what}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    where = f"{h.machine()}; CPU flags: {h.cpu_flags_text()}"
    print(where)
    results = {}
    for name in names:
        model = ct.build(known[name])
        fn = (h.train_step(model, args.batch, args.frames) if args.mode == "train"
              else h.infer_fn(model, args.batch, args.frames))
        results[name] = profile_steps(fn, args.steps)
        print_table(f"{name} {args.mode} T={args.frames} B={args.batch}", results[name])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": where, "args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
