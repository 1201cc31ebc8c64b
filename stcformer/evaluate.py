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
from typing import Optional

import numpy as np
import torch

from . import metrics
from .cli import AMP_CHOICES, UsageError, run, warn_slow_cpu_amp
from .io import write_json
from .data.dataset import PoseData, WindowSet, test_windows
from .predict import predict_centres


def score_h36m(pred: np.ndarray, windows: WindowSet, unit_to_mm: float = 1000.0,
               p2_batch: int = 0) -> metrics.ActionTable:
    """Per-action table of P1, P2, N-MPJPE and MPJVE (mm) of centre predictions (N, J, 3).

    P2 is per window; ``p2_batch`` > 0 credits it batch by batch as the official script does
    with that test batch size (see :func:`metrics.official_batch_credit`).
    """
    target = windows.targets(np.arange(len(windows)))[:, 0].numpy()
    groups = windows.groups(np.arange(len(windows)))
    table = metrics.ActionTable()
    table.add("p1", groups, metrics.mpjpe_per_window(pred, target) * unit_to_mm)
    p2 = metrics.p_mpjpe(pred, target) * unit_to_mm
    if p2_batch:
        p2 = metrics.official_batch_credit(p2, groups, p2_batch)
    table.add("p2", groups, p2)
    table.add("n_p1", groups, metrics.n_mpjpe(pred, target) * unit_to_mm)
    # velocity error between consecutive centres of each sequence
    for s in np.unique(windows.seq):
        rows = np.flatnonzero(windows.seq == s)
        rows = rows[np.argsort(windows.centre[rows])]
        if len(rows) > 1 and np.all(np.diff(windows.centre[rows]) == 1):
            d = np.diff(pred[rows], axis=0) - np.diff(target[rows], axis=0)
            table.add("mpjve", [windows.sequences[s].group] * (len(rows) - 1),
                      np.linalg.norm(d, axis=-1).mean(axis=-1) * unit_to_mm)
    return table


def h36m_report(table: metrics.ActionTable) -> dict:
    p1, p2 = table.means("p1"), table.means("p2")
    return {
        "p1_mm": table.average("p1"), "p2_mm": table.average("p2"),
        "n_p1_mm": table.average("n_p1"), "mpjve_mm": table.average("mpjve"),
        "per_action": {a: {"p1_mm": p1[a], "p2_mm": p2[a], "windows": table.windows(a)} for a in p1},
    }


def score_3dhp(pred: np.ndarray, windows: WindowSet) -> dict:
    """Official 3DHP numbers (mm) of centre predictions on the valid frames."""
    target = windows.targets(np.arange(len(windows)))[:, 0].numpy()
    errors = metrics.joint_errors(pred, target)
    per_seq = {}
    for s, seq in enumerate(windows.sequences):
        per_seq[seq.subject] = errors[windows.seq == s]
    scores = metrics.mpi3dhp_scores(per_seq)
    return {"p1_mm": scores["overall"]["mpjpe_mm"], "mpjpe_mm": scores["overall"]["mpjpe_mm"],
            "pck": scores["overall"]["pck"], "auc": scores["overall"]["auc"], **scores}


def evaluate(model, data: PoseData, frames: int, tds: int, batch_size: int = 256, flip: bool = True,
             device=None, amp: Optional[str] = None, progress: bool = True, p2_batch: int = 0):
    """(report dict, printable table) of ``model`` on ``data``'s test set."""
    windows = test_windows(data, frames, tds)
    pred = predict_centres(model, windows, batch_size, flip, device, amp, progress)
    if data.name == "3dhp":
        report = score_3dhp(pred, windows)
        return report, metrics.format_3dhp(report)
    table = score_h36m(pred, windows, data.unit_to_mm, p2_batch)
    return h36m_report(table), table.format()


def mean_pose_report(data: PoseData, frames: int, tds: int) -> dict:
    """Scores of always predicting the mean training pose (root zeroed) for every test window."""
    poses = np.concatenate([s.poses for s in data.train]).astype(np.float64)
    poses[:, data.root] = 0
    mean = poses.mean(axis=0).astype(np.float32)
    windows = test_windows(data, 1, 1)  # the centre frame is all that is scored
    pred = np.broadcast_to(mean, (len(windows),) + mean.shape).copy()
    if data.name == "3dhp":
        return score_3dhp(pred, windows)
    return h36m_report(score_h36m(pred, windows, data.unit_to_mm))


def load_data(dataset: str, data_dir: str, keypoints: str, train: bool, test: bool = True) -> PoseData:
    if dataset == "h36m":
        from .data.h36m import load_h36m
        from .data.skeleton import H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS
        return load_h36m(data_dir, keypoints, H36M_TRAIN_SUBJECTS if train else (),
                         H36M_TEST_SUBJECTS if test else ())
    from .data.mpi3dhp import load_3dhp
    return load_3dhp(data_dir, train=train, test=test)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m stcformer.evaluate",
        description="Evaluate an STCFormer checkpoint (official or our own) with the official test "
                    "protocol: per-action P1/P2 on Human3.6M S9/S11, or MPJPE/PCK/AUC per sequence "
                    "on MPI-INF-3DHP. Flip test-time averaging is always on, as in the official code.")
    p.add_argument("--dataset", choices=["h36m", "3dhp"], default="h36m", help="dataset (default h36m)")
    p.add_argument("--data-dir", required=True,
                   help="folder with data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz (h36m), "
                        "or data_test_3dhp.npz (3dhp)")
    p.add_argument("-k", "--keypoints", default="cpn_ft_h36m_dbb",
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
    from .checkpoint import load_checkpoint, read_checkpoint
    # our own checkpoints remember the window they were trained with
    trained = ((read_checkpoint(args.checkpoint).get("extra") or {}).get("args") or {})
    if trained.get("dataset", args.dataset) != args.dataset:
        trained = {}
    frames = args.frames or trained.get("frames") or (27 if args.dataset == "h36m" else 81)
    tds = args.tds or trained.get("tds") or (3 if args.dataset == "h36m" else 1)
    if frames < 1 or tds < 1 or args.batch_size < 1:
        raise UsageError("--frames, --tds and --batch-size must be positive")
    overrides = {} if args.spe_coef is None else {"spe_coef": args.spe_coef}
    if args.backend:
        overrides["backend"] = args.backend
    model = load_checkpoint(args.checkpoint, **overrides)
    if model.config["num_joints"] != 17:
        raise UsageError(f"{args.checkpoint}: model has {model.config['num_joints']} joints, the data 17")
    if (model.family == "3dhp") != (args.dataset == "3dhp"):
        print(f"warning: {args.checkpoint} is a {model.family}-family model evaluated on {args.dataset}",
              file=sys.stderr)
    data = load_data(args.dataset, args.data_dir, args.keypoints, train=False)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    warn_slow_cpu_amp(device.type, args.amp)
    t0 = time.time()
    report, text = evaluate(model, data, frames, tds, args.batch_size, device=device, amp=args.amp,
                            p2_batch=args.official_p2_batch)
    report.update(dataset=args.dataset, checkpoint=os.path.abspath(args.checkpoint), frames=frames, tds=tds,
                  keypoints=args.keypoints if args.dataset == "h36m" else None,
                  official_p2_batch=args.official_p2_batch or None,
                  amp=args.amp, model=dict(model.config), seconds=round(time.time() - t0, 2))
    print(text)
    if args.dataset == "h36m":
        print(f"P1 {report['p1_mm']:.2f} mm  P2 {report['p2_mm']:.2f} mm  ({frames} frames, tds {tds})")
    else:
        print(f"MPJPE {report['mpjpe_mm']:.2f} mm  PCK {report['pck']:.1f}  AUC {report['auc']:.1f}")
    if args.json:
        write_json(args.json, report)
    plot = args.plot or (os.path.join(os.path.dirname(os.path.abspath(args.json)), "per_action.png")
                         if args.json else None)
    if plot:
        from .visualize import plot_per_action
        if args.dataset == "h36m":
            plot_per_action(report["per_action"], plot, title=f"P1 {report['p1_mm']:.2f} mm, "
                                                              f"P2 {report['p2_mm']:.2f} mm")
        else:
            plot_per_action(report["per_sequence"], plot, keys=("mpjpe_mm",), labels=("MPJPE",))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
