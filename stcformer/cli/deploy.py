"""Export a checkpoint to run outside a training checkout.

    python -m stcformer.deploy onnx --checkpoint CKPT --out model.onnx [--frames T] [--dynamic-frames]
        [--dtype float32|float16]
    python -m stcformer.deploy export --checkpoint CKPT --out model.pt2 [--frames T] [--dynamic-frames]
        [--aoti model_aoti.pt2]

onnx: the model's forward (normalised 2D (B, T, 17, 2) in, root-relative 3D (B, T, 17, 3) out)
with the reference attention as standard ONNX operators (opset 18, default domain only), checked
with onnx.checker, then run once in ONNX Runtime against PyTorch: the largest difference is
printed. Batch is dynamic; the number of frames is fixed to --frames (default the checkpoint's
training window, 27 for the official Human3.6M files) unless --dynamic-frames. --dtype float16
writes a float16 graph (ONNX Runtime's CPU provider runs it); bfloat16 is not offered: that
provider has no bfloat16 MatMul. Run it with ``python -m stcformer.infer --onnx model.onnx``,
``stcformer.lift(..., runtime="onnxruntime")`` or any ONNX runtime. Needs the deploy extra
(pip install 'stcformer[deploy]').

export: a torch.export program with the fused op of the target device (on a CPU:
stcformer::stc_attention_fwd from stcformer._C), saved with torch.export.save and loaded back
to check it. A fresh process runs it with ``import stcformer.deploy`` and
``stcformer.deploy.load_program(path)`` (or ``import stcformer.ops.backends.extension`` then
``torch.export.load(path).module()``). --aoti also compiles it with AOTInductor into a package
that ``torch._inductor.aoti_load_package`` runs, and a C++ program through
``torch::inductor::AOTIModelPackageLoader`` once it has loaded stcformer's _C library (dlopen),
which registers the op.
"""
from __future__ import annotations

import argparse
import os
import sys

from stcformer.errors import UsageError


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m stcformer.deploy", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("onnx", "an ONNX file (standard operators)"), ("export", "a torch.export .pt2 program")):
        s = sub.add_parser(name, help=f"write {what}")
        s.add_argument("--checkpoint", required=True, help="official or own checkpoint")
        s.add_argument("--out", required=True, help="the file to write")
        s.add_argument("-f", "--frames", type=int, default=None,
                       help="window length (odd; default the checkpoint's training window, else 27)")
        s.add_argument("--dynamic-frames", action="store_true",
                       help="any number of frames (default: fixed to --frames; batch is always dynamic)")
    onnx = sub.choices["onnx"]
    onnx.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                      help="graph dtype (default float32; float16 runs in ONNX Runtime's CPU provider)")
    sub.choices["export"].add_argument("--aoti", default=None, metavar="OUT.pt2",
                                       help="also compile an AOTInductor package (a minute or more)")
    return p.parse_args(argv)


def _check(args) -> None:
    if args.frames is not None and (args.frames < 1 or args.frames % 2 == 0):
        raise UsageError(f"--frames must be odd and positive (a centre frame and as many on each side), "
                         f"got {args.frames}")
    for path in (args.out, getattr(args, "aoti", None)):
        if path and os.path.isdir(path):
            raise UsageError(f"{path}: is a folder; --out and --aoti name the file to write")
    if not os.path.isfile(args.checkpoint):
        from stcformer.errors import CheckpointError

        raise CheckpointError(f"{args.checkpoint}: no such file")


def _onnx(args, model) -> int:
    from stcformer.deploy.onnx_export import compare_onnx, export_onnx, onnx_summary

    meta = export_onnx(model, args.out, args.frames, args.dynamic_frames, args.dtype,
                       source=os.path.basename(args.checkpoint))
    info = onnx_summary(args.out)
    dims = ", ".join(str(d) for d in info["inputs"][0][1])
    print(f"{args.out}: {os.path.getsize(args.out) / 2**20:.1f} MiB, opset {info['opset']}, domains "
          f"{'/'.join(info['domains'])}, {len(info['ops'])} operator types ({', '.join(info['ops'])}); input "
          f"{info['inputs'][0][0]} ({dims}) {args.dtype}; onnx.checker: ok")
    diff = compare_onnx(model, args.out, frames=int(meta["stcformer.frames"]))
    print(f"ONNX Runtime vs PyTorch ({args.dtype}, batch {' and '.join(map(str, diff['batches']))}, "
          f"{diff['frames']} frames): largest difference {diff['max_abs']:.3g} "
          f"({diff['max_rel']:.3g} of the largest output)")
    return 0


def _max_diff(model, run, frames: int) -> float:
    import torch

    from stcformer.deploy.prepare import example_input

    worst = 0.0
    for i, b in enumerate((1, 3)):
        x = example_input(model, frames, b, seed=i + 1)
        with torch.no_grad():
            ref = model(x)
            worst = max(worst, float((run(x) - ref).abs().max() / ref.abs().max()))
    return worst


def _export(args, model) -> int:
    from stcformer.deploy.program import aoti_package, export_program, load_program, save_program

    program, meta = export_program(model, args.frames, args.dynamic_frames)
    save_program(program, meta, args.out)
    frames = int(meta["stcformer.frames"])
    loaded, _ = load_program(args.out, meta["stcformer.backend"])
    print(f"{args.out}: {os.path.getsize(args.out) / 2**20:.1f} MiB, torch.export program, stc_attention backend "
          f"{meta['stcformer.backend']}, batch dynamic, frames {'dynamic' if args.dynamic_frames else frames}; "
          f"loaded back: largest difference {_max_diff(model, loaded, frames):.3g} of the largest output")
    if args.aoti:
        import torch._inductor

        print(f"{args.aoti}: compiling with AOTInductor ...", flush=True)
        aoti_package(program, args.aoti)
        runner = torch._inductor.aoti_load_package(args.aoti)
        print(f"{args.aoti}: {os.path.getsize(args.aoti) / 2**20:.1f} MiB AOTInductor package; largest difference "
              f"{_max_diff(model, runner, frames):.3g} of the largest output")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    _check(args)
    if args.command == "onnx":
        from stcformer.deploy.runtime import require

        require("onnx")
        require("onnxruntime")
    from stcformer.model.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    return _onnx(args, model) if args.command == "onnx" else _export(args, model)


if __name__ == "__main__":
    from stcformer.cli.common import run

    sys.exit(run(main))
