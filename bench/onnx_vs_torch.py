"""Our CPU inference against ONNX Runtime, side by side in one process, same weights.

    python -m bench.onnx_vs_torch                     # the table of bench/RESULTS.md
    python -m bench.onnx_vs_torch --tiny              # a quick smoke run
    python -m bench.onnx_vs_torch --no-compile --json /tmp/ort.json

STCFormer(layers=6, d_hid=256), float32, one set of seeded weights. Variants: ``official``
(the official model's eager inference: the reference op, plain LayerNorm/Linear/MLP modules),
``ours`` (the default CPU path: the cpp op, LayerNorm + MLP + residual in row chunks),
``ours compiled`` (torch.compile of it), ``ort`` (the ONNX file of ``python -m stcformer.deploy
onnx``, window fixed, in ONNX Runtime with its default graph optimisations and thread count) and
``ort threads=N`` (intra_op_num_threads equal to torch's). Inference: (B, T) = (32, 27), (8, 81),
(4, 243); single-window latency: B=2 (a window and its mirror, the streaming case). Each time is
the median of --repeats runs interleaved round-robin (bench/harness.measure); ratios are ours
over each other variant.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import torch

from bench import harness as h

SIZES = ((27, 32), (81, 8), (243, 4))
LATENCY = ((27, 2), (81, 2), (243, 2))


def _ort_fns(model, T: int, x: np.ndarray, folder: str) -> dict:
    from stcformer.deploy.onnx_export import export_onnx
    from stcformer.deploy.runtime import open_session

    path = os.path.join(folder, f"model_T{T}.onnx")
    if not os.path.exists(path):
        export_onnx(model, path, frames=T)
    fns = {}
    for name, threads in (("ort", None), (f"ort threads={torch.get_num_threads()}", torch.get_num_threads())):
        s = open_session(path, threads)
        fns[name] = (lambda s=s: s.run(None, {"keypoints_2d": x}))
    return fns


def variants(model, official, compiled, T: int, B: int, folder: str) -> dict:
    x = torch.randn(B, T, 17, 2, generator=torch.Generator().manual_seed(2))
    xn = x.numpy()

    def torch_fn(m):
        def run():
            with torch.inference_mode():
                return m(x)
        return run

    fns = {"official": torch_fn(official), "ours": torch_fn(model)}
    if compiled is not None:
        fns["ours compiled"] = torch_fn(compiled)
    fns.update(_ort_fns(model, T, xn, folder))
    return fns


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="2 layers, width 64, T=9")
    ap.add_argument("--retries", type=int, default=2, help="re-measure a row while other processes load the CPUs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from stcformer.deploy.prepare import deploy_copy

    layers, width = (2, 64) if args.tiny else (6, 256)
    model = h.make_model(None, "cpu", layers=layers, d_hid=width, train=False)
    official = deploy_copy(model, "reference")
    compiled = None if args.no_compile else torch.compile(model)
    sizes = (("inference", ((9, 4),)), ("latency", ((9, 2),))) if args.tiny else (("inference", SIZES), ("latency", LATENCY))
    print(f"# {h.machine()}; flags {h.cpu_flags_text()}; torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}; STCFormer {layers} layers width {width}, float32")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for what, shapes in sizes:
            for T, B in shapes:
                res = h.measure(variants(model, official, compiled, T, B, folder), repeats=args.repeats, retries=args.retries, warmup=1)
                rows.append(dict(what=what, T=T, B=B, **res))
                cells = ", ".join(f"{k} {v:.1f} ms" for k, v in res.items() if k != "busy")
                ratios = ", ".join(f"ours x{res[k] / res['ours']:.2f} vs {k}" for k in res if k not in ("busy", "ours"))
                print(f"{what} T={T} B={B}: {cells} (busy {res['busy']}); {ratios}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": h.machine(), "flags": h.cpu_flags_text(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
