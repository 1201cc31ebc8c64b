"""The official test of a model on a benchmark's test set, and the mean-pose baseline."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from stcformer.data.dataset import PoseData, test_windows
from stcformer.evaluation.benchmarks import get_benchmark
from stcformer.evaluation.predict import predict_centres


def run_test(model, data: PoseData, frames: int, tds: int, batch_size: int = 256, flip: bool = True,
             device=None, amp: Optional[str] = None, progress: bool = True,
             p2_batch: int = 0) -> Tuple[dict, str]:
    """(report dict, printable table) of ``model`` on ``data``'s test set."""
    benchmark = get_benchmark(data.name)
    windows = test_windows(data, frames, tds)
    pred = predict_centres(model, windows, batch_size, flip, device, amp, progress)
    report = benchmark.score(pred, windows, data.unit_to_mm, p2_batch)
    return report, benchmark.format(report)


def mean_pose_report(data: PoseData) -> dict:
    """Scores of always predicting the mean training pose (root zeroed) for every test window."""
    poses = np.concatenate([s.poses for s in data.train]).astype(np.float64)
    poses[:, data.root] = 0
    mean = poses.mean(axis=0).astype(np.float32)
    windows = test_windows(data, 1, 1)  # the centre frame is all that is scored
    pred = np.broadcast_to(mean, (len(windows),) + mean.shape).copy()
    return get_benchmark(data.name).score(pred, windows, data.unit_to_mm)


__all__ = ["run_test", "mean_pose_report"]
