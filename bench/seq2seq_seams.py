"""Seams of seq2seq lifting: P1, frames/s and the jump of the 3D where blocks meet, per mode.

    python -m bench.seq2seq_seams --checkpoint CKPT --data-dir DATA [-k synth_det] [--cameras 0]
        [--overlaps 0,0.25,0.5,0.75] [--threads N] [--json OUT.json]

Modes, all flip-averaged float32 on the test subjects of a Human3.6M-layout folder (e.g.
``python -m stcformer.data.synthetic --out DATA --subjects S9,S11 --takes 1``, takes of 225-375
frames, longer than a 27 x 3 = 81-frame block): ``center`` (every frame the centre of its own
window) and ``seq2seq`` at each ``--overlaps`` value (0: the non-overlapping blocks of earlier
versions; 0.5: the default). For each:

- P1 (mm) over frames and action-averaged (the protocol's P1);
- forward passes of one window per frame over the test set;
- frames/s lifting one sequence of ``--throughput-frames`` frames (test keypoints, concatenated)
  with ``stcformer.evaluation.predict.predict_sequence``: the modes timed round-robin in one process,
  ``--repeats`` rounds after a warm-up, the median of each;
- seam jump: mean frame-to-frame change of the 3D (mm, mean over joints) at the frames where a
  seq2seq block of that mode starts or ends, over the mean at every other frame (1.0: no seam).
  ``own`` uses the mode's own block edges; ``old`` the edges of the non-overlapping layout
  (centre mode and the ground truth on those give the level of no seam);
- worst phase: the frame-to-frame change averaged per position within the block grid (frame
  index modulo the step between block starts, the end-aligned last block left out), the largest of
  these means over the overall mean: a seam anywhere in the cross-fade shows here. Its level with
  no seam is above 1 by chance (the largest of ``hop`` noisy means): the ground truth and centre
  mode on the same grid give it.

``--latencies 0,13,full`` adds :class:`stcformer.StreamLifter` rows (frame by frame, one window per
push): P1 at each latency (frames; ``full`` = pad*tds, which equals centre mode) and pushes per
second; ``--no-offline`` skips the rows above.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from bench.harness import cpu_flags_text, lifting_flags, lifting_model, machine, p1_mm, throughput_sequence
from stcformer.data.dataset import test_windows
from stcformer.data.h36m import load_h36m
from stcformer.evaluation.predict import (predict_centres, predict_seq2seq, predict_sequence, seq2seq_passes_per_frame,
                               seq2seq_starts, seq2seq_windows)


def edges(num_frames: int, frames: int, tds: int, overlap: float) -> np.ndarray:
    """Frames t (0 < t < F) where a block starts or ends: the jump there is between t-1 and t."""
    span = (2 * ((frames - 1) // 2) + 1) * tds
    starts = seq2seq_starts(num_frames, frames, tds, overlap)
    e = set(starts[1:].tolist()) | set((starts[:-1] + span).tolist())
    return np.array(sorted(x for x in e if 0 < x < num_frames), dtype=np.int64)


def seam_jump(poses: np.ndarray, lengths, frames: int, tds: int, overlap: float) -> float:
    """Mean jump at the block edges of ``overlap``'s layout over the mean elsewhere, pooled over sequences."""
    at, away = [], []
    start = 0
    for n in lengths:
        p = poses[start:start + n]
        start += n
        jump = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(-1) * 1000  # jump[t-1]: frames t-1 -> t
        mask = np.zeros(n - 1, bool)
        mask[edges(n, frames, tds, overlap) - 1] = True
        at.append(jump[mask])
        away.append(jump[~mask])
    at, away = np.concatenate(at), np.concatenate(away)
    return float(at.mean() / away.mean()) if len(at) else float("nan")


def worst_phase(poses: np.ndarray, lengths, frames: int, tds: int, overlap: float) -> float:
    """Largest mean jump at one position of the block grid (t mod hop) over the mean jump."""
    from stcformer.evaluation.predict import _block_geometry

    _, hop, _ = _block_geometry(frames, tds, overlap)
    sums, counts, alls = np.zeros(hop), np.zeros(hop), []
    start = 0
    for n in lengths:
        p = poses[start:start + n]
        start += n
        jump = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(-1) * 1000  # frames t-1 -> t, t = 1..n-1
        t = np.arange(1, n)
        starts = seq2seq_starts(n, frames, tds, overlap)
        keep = t < starts[-1] if starts[-1] % hop else np.ones(n - 1, bool)
        np.add.at(sums, t[keep] % hop, jump[keep])
        np.add.at(counts, t[keep] % hop, 1)
        alls.append(jump[keep])
    alls = np.concatenate(alls)
    if not len(alls) or counts.min() == 0:  # takes too short to fill the grid
        return float("nan")
    return float((sums / counts).max() / alls.mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lifting_flags(p, throughput_frames=2430)  # --data-dir: a folder with long test takes
    p.add_argument("--cameras", default="0", help="comma-separated camera indices of the test views to use "
                                                  "(default 0; 'all' for the four)")
    p.add_argument("--overlaps", default="0,0.25,0.5,0.75")
    p.add_argument("--sequences", type=int, default=None, help="only the first N test sequences (a quick check)")
    p.add_argument("--latencies", default="", help="StreamLifter latencies to score (frames, or 'full')")
    p.add_argument("--no-offline", action="store_true", help="only the --latencies rows")
    p.add_argument("--stream-sequences", type=int, default=None,
                   help="score the --latencies rows on the first N test sequences (one push at a time is slow)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    model, frames, tds = lifting_model(args)
    overlaps = [float(x) for x in args.overlaps.split(",")]
    print(f"cpu: {machine()}; flags {cpu_flags_text()}; torch {torch.__version__}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"model: {model.config['layers']} layers, width {model.config['d_hid']}; window {frames}, tds {tds} "
          f"(block {(2 * ((frames - 1) // 2) + 1) * tds} frames)")

    data = load_h36m(args.data_dir, args.keypoints, train_subjects=(), require_all_actions=False)
    if args.cameras != "all":
        keep = [int(c) for c in args.cameras.split(",")]
        per_take = {}
        test = []
        for s in data.test:  # the loader lists a take's cameras in order
            key = (s.subject, s.action)
            i = per_take.get(key, 0)
            per_take[key] = i + 1
            if i in keep:
                test.append(s)
        data.test = test
    if args.sequences:
        data.test = data.test[:args.sequences]
    lengths = [len(s) for s in data.test]
    target = np.concatenate([s.poses for s in data.test]).astype(np.float32)
    target[:, 0] = 0
    groups = np.concatenate([[s.group] * len(s) for s in data.test])
    total = len(target)
    print(f"data: {len(data.test)} test sequences, {total} frames, {min(lengths)}-{max(lengths)} per sequence "
          f"({args.keypoints})")

    results = []
    if not args.no_offline:
        offline_rows(args, model, data, frames, tds, overlaps, lengths, target, groups, results)
    latencies = [x for x in args.latencies.split(",") if x]
    if latencies:
        sub = data.test[:args.stream_sequences] if args.stream_sequences else data.test
        n = sum(len(s) for s in sub)
        print(f"StreamLifter on {len(sub)} test sequences, {n} frames:")
    for lat in latencies:
        results.append(stream_row(model, sub, frames, tds, None if lat == "full" else int(lat), target[:n], groups[:n]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "flags": cpu_flags_text(), "torch": torch.__version__,
                       "frames": frames, "tds": tds, "sequences": len(data.test), "total_frames": total,
                       "rows": results, "command": " ".join(sys.argv)}, f, indent=1)
    return 0


def stream_row(model, sequences, frames, tds, latency, target, groups) -> dict:
    """P1 and pushes/s of StreamLifter over the test sequences. The data's keypoints are already
    normalised: pushed as pixels k + 1 of a 2 x 2 image, which normalises back to k."""
    from stcformer import StreamLifter

    lifter = StreamLifter(model, size=(2, 2), frames=frames, tds=tds, latency=latency)
    poses = []
    t0 = time.perf_counter()
    for s in sequences:
        for k in s.keypoints + 1:
            p = lifter.push(k)
            if p is not None:
                poses.append(p)
        poses.extend(lifter.flush())
    seconds = time.perf_counter() - t0
    poses = np.stack(poses)
    f_all, f_act = p1_mm(poses, target, groups)
    row = {"mode": "stream", "latency": lifter.latency, "p1_frames_mm": f_all, "p1_action_mm": f_act,
           "passes_per_frame": 2.0, "seconds": seconds, "frames_per_s": len(poses) / seconds}
    print(f"  stream   latency {lifter.latency:3d} frames  P1 {f_all:6.2f} / {f_act:6.2f} mm  "
          f"{len(poses) / seconds:5.0f} frames/s (one push at a time)", flush=True)
    return row


def offline_rows(args, model, data, frames, tds, overlaps, lengths, target, groups, results) -> None:
    total = len(target)

    def record(mode, overlap, poses, passes):
        f_all, f_act = p1_mm(poses, target, groups)
        row = {"mode": mode, "overlap": overlap, "p1_frames_mm": f_all, "p1_action_mm": f_act,
               "passes_per_frame": passes,
               "seam_own": None if overlap is None else seam_jump(poses, lengths, frames, tds, overlap),
               "seam_old": seam_jump(poses, lengths, frames, tds, 0.0),
               "worst_phase": worst_phase(poses, lengths, frames, tds, 0.5 if overlap is None else overlap)}
        results.append(row)
        own = "" if row["seam_own"] is None else f"{row['seam_own']:.2f}"
        print(f"  {mode:8s} overlap {'-' if overlap is None else overlap:<5} P1 {f_all:6.2f} / {f_act:6.2f} mm  "
              f"{passes:.3f} passes/frame  seam own {own:>5}  "
              f"old {row['seam_old']:.2f}  worst phase {row['worst_phase']:.2f}", flush=True)

    print("mode     overlap P1 over frames / action-averaged, window passes per frame, seam jump "
          "at own / old block edges, worst phase (centre: on the overlap-0.5 grid)")
    centre = predict_centres(model, test_windows(data, frames, tds), args.batch_size, progress=False)
    record("center", None, centre, 2.0)
    for ov in overlaps:
        windows = seq2seq_windows(data.test, frames, tds, data.root, data.left, data.right, overlap=ov)
        poses = predict_seq2seq(model, windows, args.batch_size, progress=False)
        record("seq2seq", ov, poses, 2 * len(windows) / total)

    kp = throughput_sequence(data.test, args.throughput_frames)
    runs = [("center", None)] + [("seq2seq", ov) for ov in overlaps]

    def lift(mode, ov, x):
        return predict_sequence(model, x, frames, tds, mode, args.batch_size,
                                **({} if ov is None else {"overlap": ov}))

    for mode, ov in runs:  # warm-up
        lift(mode, ov, kp[:200])
    times = {r: [] for r in runs}
    for _ in range(args.repeats):
        for mode, ov in runs:
            t0 = time.perf_counter()
            lift(mode, ov, kp)
            times[(mode, ov)].append(time.perf_counter() - t0)
    print(f"throughput: one sequence of {len(kp)} frames, median of {args.repeats} round-robin rounds "
          f"(load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    for row, r in zip(results, runs):
        t = float(np.median(times[r]))
        row["seconds"], row["frames_per_s"] = t, len(kp) / t
        print(f"  {r[0]:8s} overlap {'-' if r[1] is None else r[1]:<5} {t:7.2f} s  {len(kp) / t:7.0f} frames/s")
    gt_old = seam_jump(target, lengths, frames, tds, 0.0)
    gt_half = seam_jump(target, lengths, frames, tds, 0.5)
    gt_phase = {ov: worst_phase(target, lengths, frames, tds, ov) for ov in overlaps}
    results.append({"mode": "ground truth", "seam_old": gt_old, "seam_half": gt_half, "worst_phase": gt_phase})
    print(f"  ground truth: seam jump at the overlap-0 edges {gt_old:.2f}, at the overlap-0.5 edges {gt_half:.2f}; "
          f"worst phase on the grid of overlap {', '.join(f'{ov:g}: {v:.2f}' for ov, v in gt_phase.items())}")
    print(f"  (passes/frame of one long sequence: overlap 0 {seq2seq_passes_per_frame(30000, frames, tds, 0):.3f}, "
          f"0.5 {seq2seq_passes_per_frame(30000, frames, tds, 0.5):.3f})")


if __name__ == "__main__":
    raise SystemExit(main())
