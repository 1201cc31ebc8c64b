"""Centre-frame vs seq2seq inference: P1 on a Human3.6M-layout test set, and throughput.

    python bench/infer_modes.py --checkpoint runs/quick/best.pth --data-dir DATA [-k synth_det]
        [--throughput-frames 3000] [--repeats 3] [--threads N]

P1 (mm): every test frame scored once, flip-averaged in both modes; ``center`` lifts each frame as
the centre of its own window (the evaluation protocol), ``seq2seq`` keeps every frame of
non-overlapping windows (stcformer.predict.predict_seq2seq). Reported as the mean over all frames
and as the mean of the per-action means (the protocol's P1).
Throughput: one sequence of --throughput-frames frames (test keypoints, concatenated), lifted with
stcformer.predict.predict_sequence in each mode; frames per second, the median of --repeats runs
after one warm-up. The window (frames, tds) is the checkpoint's training window unless given.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stcformer.checkpoint import load_checkpoint  # noqa: E402
from stcformer.data.dataset import test_windows  # noqa: E402
from stcformer.data.h36m import load_h36m  # noqa: E402
from stcformer.predict import (predict_centres, predict_seq2seq, predict_sequence,  # noqa: E402
                               seq2seq_windows, trained_window)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    shown = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs, "
            f"flags {' '.join(shown)}{'' if any(f.startswith('avx512') for f in flags) else ' (no AVX-512)'}")


def p1(pred: np.ndarray, target: np.ndarray, groups) -> tuple:
    err = np.linalg.norm(pred - target, axis=-1).mean(-1) * 1000  # (N,) mm
    groups = np.asarray(groups)
    per_action = [err[groups == g].mean() for g in sorted(set(groups))]
    return float(err.mean()), float(np.mean(per_action))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-dir", required=True, help="Human3.6M-layout folder (e.g. stcformer.data.synthetic's)")
    p.add_argument("-k", "--keypoints", default="synth_det")
    p.add_argument("-f", "--frames", type=int, default=None)
    p.add_argument("--tds", type=int, default=None)
    p.add_argument("--throughput-frames", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-b", "--batch-size", type=int, default=256)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, tds = trained_window(args.checkpoint)
    frames, tds = args.frames or frames, args.tds or tds
    model = load_checkpoint(args.checkpoint).eval()
    print(f"cpu: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model: {model.config['layers']} layers, width {model.config['d_hid']}; window {frames}, tds {tds}")

    data = load_h36m(args.data_dir, args.keypoints, train_subjects=(), require_all_actions=False)
    target = np.concatenate([s.poses for s in data.test]).astype(np.float32)
    target[:, 0] = 0
    groups = np.concatenate([[s.group] * len(s) for s in data.test])
    t0 = time.perf_counter()
    centre = predict_centres(model, test_windows(data, frames, tds), args.batch_size, progress=False)
    t_centre = time.perf_counter() - t0
    t0 = time.perf_counter()
    s2s = predict_seq2seq(model, seq2seq_windows(data.test, frames, tds, data.root, data.left, data.right),
                          args.batch_size, progress=False)
    t_s2s = time.perf_counter() - t0
    c_all, c_act = p1(centre, target, groups)
    s_all, s_act = p1(s2s, target, groups)
    print(f"P1 on {len(data.test)} test sequences, {len(target)} frames ({args.keypoints}):")
    print(f"  center : {c_all:.2f} mm over frames, {c_act:.2f} mm action-averaged ({t_centre:.1f} s)")
    print(f"  seq2seq: {s_all:.2f} mm over frames, {s_act:.2f} mm action-averaged ({t_s2s:.1f} s)")
    print(f"  seq2seq - center: {s_all - c_all:+.2f} mm over frames, {s_act - c_act:+.2f} mm action-averaged")

    kp = np.concatenate([s.keypoints for s in data.test])
    while len(kp) < args.throughput_frames:
        kp = np.concatenate([kp, kp])
    kp = np.ascontiguousarray(kp[:args.throughput_frames])
    print(f"throughput, one sequence of {len(kp)} frames (median of {args.repeats} after a warm-up):")
    for mode in ("center", "seq2seq"):
        predict_sequence(model, kp[:200], frames, tds, mode, args.batch_size)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predict_sequence(model, kp, frames, tds, mode, args.batch_size)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        print(f"  {mode:8s}: {t:.2f} s, {len(kp) / t:.0f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
