"""Evaluate a checkpoint with the official test protocol.

    python -m stcformer.evaluate --dataset h36m --data-dir DIR --keypoints cpn_ft_h36m_dbb \\
        --frames 27 --checkpoint CKPT [--tds 3] [--json OUT]

Human3.6M: every frame of every S9/S11 sequence and camera is the centre of one window of
``frames`` 2D poses ``tds`` frames apart (edges repeated); the model runs on the window and on
its mirror image, the mirrored output is mirrored back and averaged, and the centre frame is
scored with its root joint zeroed. P1/P2 are averaged per action (name up to the first space),
then over the 15 actions. MPI-INF-3DHP: consecutive frames, valid frames only, MPJPE over the 17
joints and PCK@150mm / AUC over 14 joints, per sequence and pooled.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from stcformer.cli.common import check_backend, run, warn_slow_cpu_amp
from stcformer.devices import pick_device
from stcformer.errors import UsageError
from stcformer.evaluation.benchmarks import BENCHMARKS, get_benchmark
from stcformer.evaluation.runner import run_test
from stcformer.io import write_json
from stcformer.model.checkpoint import check_joints, load_checkpoint, trained_window
from stcformer.choices import AMP_CHOICES


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m stcformer.evaluate",
        description="Evaluate an STCFormer checkpoint (official or our own) with the official test "
                    "protocol: per-action P1/P2 on Human3.6M S9/S11, or MPJPE/PCK/AUC per sequence "
                    "on MPI-INF-3DHP. Flip test-time averaging is always on, as in the official code.")
    p.add_argument("--dataset", choices=list(BENCHMARKS), default="h36m", help="dataset (default h36m)")
    p.add_argument("--data-dir", required=True,
                   help="folder with " + "; ".join(f"{q.data_files} ({q.name})" for q in BENCHMARKS.values()))
    p.add_argument("-k", "--keypoints", default=None,
                   help="2D keypoints file suffix for h36m (default cpn_ft_h36m_dbb; synthetic: synth_det or gt)")
    p.add_argument("--checkpoint", required=True, help="official .pth state_dict or a checkpoint of ours")
    p.add_argument("-f", "--frames", type=int, default=None,
                   help="window length T; the official windows use pad=(T-1)//2 (default: the one our checkpoint "
                        "was trained with, else 27 for h36m and 81 for 3dhp)")
    p.add_argument("--tds", type=int, default=None,
                   help="temporal downsampling: frames between window samples (default: as trained, else "
                        "3 for h36m like the official code, 1 for 3dhp)")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    p.add_argument("--official-p2-batch", type=int, default=0, metavar="N",
                   help="credit P2 as the official script does with test batch N (its default: 128): "
                        "windows of a batch that spans two actions all get the batch mean. Default 0: "
                        "P2 per window, which the official numbers can differ from slightly")
    p.add_argument("--spe-coef", type=float, default=None,
                   help="override the spatial SPE coefficient (default: the checkpoint's, 1e-3 for the "
                        "released H36M weights, 1e-4 for 3DHP)")
    p.add_argument("--backend", default=None, help="stc_attention backend (auto, reference, cpp, triton, cuda)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast dtype of the forward passes (default none: float32, the official numbers; "
                        "bf16 is faster on a GPU and moves P1/P2 slightly)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON to OUT")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="bar plot of the per-action (or per-sequence) errors "
                        "(default: per_action.png beside --json, if given)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    benchmark = get_benchmark(args.dataset)
    if args.batch_size < 1 or (args.frames is not None and args.frames < 1) or (args.tds is not None and args.tds < 1):
        raise UsageError("--frames, --tds and --batch-size must be positive")
    device = pick_device(args.device)
    check_backend(args.backend, device)
    overrides = {} if args.spe_coef is None else {"spe_coef": args.spe_coef}
    if args.backend:
        overrides["backend"] = args.backend
    model = load_checkpoint(args.checkpoint, **overrides)
    # our own checkpoints remember the window they were trained with (on this dataset)
    frames, tds = trained_window(model, args.dataset, default=(benchmark.eval_frames, benchmark.eval_tds))
    frames, tds = args.frames or frames, args.tds or tds
    check_joints(model, args.checkpoint)
    if model.family != benchmark.family:
        print(f"warning: {args.checkpoint} is a {model.family}-family model evaluated on {benchmark.name}",
              file=sys.stderr)
    data = benchmark.load(args.data_dir, args.keypoints, train=False)
    model.to(device)
    warn_slow_cpu_amp(device.type, args.amp)
    t0 = time.time()
    report, text = run_test(model, data, frames, tds, args.batch_size, device=device, amp=args.amp,
                            p2_batch=args.official_p2_batch)
    report.update(dataset=benchmark.name, checkpoint=os.path.abspath(args.checkpoint), frames=frames, tds=tds,
                  keypoints=(args.keypoints or benchmark.keypoints),
                  official_p2_batch=args.official_p2_batch or None,
                  amp=args.amp, model=dict(model.config), seconds=round(time.time() - t0, 2))
    print(text)
    print(f"{benchmark.headline(report)}  ({frames} frames, tds {tds})")
    if args.json:
        write_json(args.json, report)
    plot = args.plot or (os.path.join(os.path.dirname(os.path.abspath(args.json)), "per_action.png")
                         if args.json else None)
    if plot:
        benchmark.plot(report, plot)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
