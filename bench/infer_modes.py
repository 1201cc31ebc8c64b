"""Centre-frame vs seq2seq inference: P1 on a Human3.6M-layout test set, and throughput.

    python -m bench.infer_modes --checkpoint runs/quick/best.pth --data-dir DATA [-k synth_det]
        [--overlap 0.5] [--throughput-frames 3000] [--repeats 3] [--threads N]

P1 (mm): every test frame scored once, flip-averaged in both modes; ``center`` lifts each frame as
the centre of its own window (the evaluation protocol), ``seq2seq`` keeps every output frame of
blocks of windows that overlap by ``--overlap`` of a block and cross-fade there
(stcformer.evaluation.predict.predict_seq2seq; default 0.5 as predict's, 0 the non-overlapping blocks of
earlier versions). Reported as the mean over all frames and as the mean of the per-action means
(the protocol's P1). bench/seq2seq_seams.py compares several overlaps and the seams.
Throughput: one sequence of --throughput-frames frames (test keypoints, concatenated), lifted with
stcformer.evaluation.predict.predict_sequence in each mode; frames per second, the median of --repeats runs
after one warm-up. The window (frames, tds) is the checkpoint's training window unless given.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.harness import cpu_flags_text, lifting_flags, lifting_model, machine, p1_mm, throughput_sequence
from stcformer.data.dataset import test_windows
from stcformer.data.h36m import load_h36m
from stcformer.evaluation.predict import SEQ2SEQ_OVERLAP, predict_centres, predict_seq2seq, predict_sequence, seq2seq_windows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lifting_flags(p, throughput_frames=3000)
    p.add_argument("--overlap", type=float, default=SEQ2SEQ_OVERLAP, help="seq2seq: share of a block the next shares")
    args = p.parse_args(argv)
    model, frames, tds = lifting_model(args)
    print(f"cpu: {machine()}; flags {cpu_flags_text()}; torch {torch.__version__}")
    print(f"model: {model.config['layers']} layers, width {model.config['d_hid']}; window {frames}, tds {tds}")

    data = load_h36m(args.data_dir, args.keypoints, train_subjects=(), require_all_actions=False)
    target = np.concatenate([s.poses for s in data.test]).astype(np.float32)
    target[:, 0] = 0
    groups = np.concatenate([[s.group] * len(s) for s in data.test])
    t0 = time.perf_counter()
    centre = predict_centres(model, test_windows(data, frames, tds), args.batch_size, progress=False)
    t_centre = time.perf_counter() - t0
    t0 = time.perf_counter()
    s2s = predict_seq2seq(model, seq2seq_windows(data.test, frames, tds, data.root, data.left, data.right,
                                                 overlap=args.overlap), args.batch_size, progress=False)
    t_s2s = time.perf_counter() - t0
    c_all, c_act = p1_mm(centre, target, groups)
    s_all, s_act = p1_mm(s2s, target, groups)
    print(f"P1 on {len(data.test)} test sequences, {len(target)} frames ({args.keypoints}):")
    print(f"  center : {c_all:.2f} mm over frames, {c_act:.2f} mm action-averaged ({t_centre:.1f} s)")
    print(f"  seq2seq: {s_all:.2f} mm over frames, {s_act:.2f} mm action-averaged ({t_s2s:.1f} s)")
    print(f"  seq2seq - center: {s_all - c_all:+.2f} mm over frames, {s_act - c_act:+.2f} mm action-averaged")

    kp = throughput_sequence(data.test, args.throughput_frames)
    print(f"throughput, one sequence of {len(kp)} frames (median of {args.repeats} after a warm-up):")
    for mode in ("center", "seq2seq"):
        predict_sequence(model, kp[:200], frames, tds, mode, args.batch_size, overlap=args.overlap)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predict_sequence(model, kp, frames, tds, mode, args.batch_size, overlap=args.overlap)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        print(f"  {mode:8s}: {t:.2f} s, {len(kp) / t:.0f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
