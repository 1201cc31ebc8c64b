"""Where the time goes in our CPU inference and in ONNX Runtime's, per operator, same weights.

    python -m bench.onnx_profile [--T 27 --B 32] [--runs 5]

Our default CPU path under torch.profiler (self time per aten/stcformer op: the GEMMs are MKL's
sgemm through aten::mm/addmm/linear) and the ONNX file of ``python -m stcformer.deploy onnx`` under
ONNX Runtime's own profiler (time per node, summed by operator type: its GEMMs are MLAS's
MatMul/Gemm/FusedMatMul kernels). Prints both tables and the share of GEMM time in each.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import torch

from bench import harness as h

GEMM_TORCH = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul", "aten::baddbmm")
GEMM_ORT = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm", "MatMulNBits")


def torch_profile(model, x, runs: int) -> dict:
    with torch.inference_mode():
        model(x)
        with torch.profiler.profile() as prof:
            for _ in range(runs):
                model(x)
    return {e.key: e.self_cpu_time_total / runs / 1e3 for e in prof.key_averages() if e.self_cpu_time_total > 0}


def ort_profile(path: str, x: np.ndarray, runs: int, threads: int) -> dict:
    from stcformer.deploy.runtime import require, session_options

    ort = require("onnxruntime")
    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(os.path.dirname(path), "ort_profile")
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    s.run(None, {"keypoints_2d": x})
    trace = s.end_profiling()  # warm-up run in a first trace file
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        s.run(None, {"keypoints_2d": x})
    trace = s.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 1)
    return dict(per_op)


def show(title: str, times: dict, gemm: tuple, top: int = 12) -> None:
    total = sum(times.values())
    g = sum(v for k, v in times.items() if k in gemm)
    print(f"## {title}: {total:.1f} ms per forward in operators, GEMMs {g:.1f} ms ({100 * g / total:.0f}%)")
    for k, v in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {k:40s} {v:8.2f} ms  {100 * v / total:5.1f}%")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=27)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    from stcformer.deploy.onnx_export import export_onnx

    model = h.make_model(None, "cpu", layers=6, d_hid=256, train=False)
    x = torch.randn(args.B, args.T, 17, 2, generator=torch.Generator().manual_seed(2))
    print(f"# {h.machine()}; T={args.T} B={args.B}, float32, {torch.get_num_threads()} threads")
    show("ours (torch.profiler, self time)", torch_profile(model, x, args.runs), GEMM_TORCH)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.onnx")
        export_onnx(model, path, frames=args.T)
        show("ONNX Runtime (its profiler, by operator type)",
             ort_profile(path, x.numpy(), args.runs, torch.get_num_threads()), GEMM_ORT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
