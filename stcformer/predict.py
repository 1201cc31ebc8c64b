"""Flip-averaged centre-frame prediction: the one place that turns windows into 3D poses.

Evaluation (scored against ground truth) and inference (a user's own keypoints) both call
:func:`predict_centres` on a :class:`~stcformer.data.dataset.WindowSet`; :func:`sequence_windows`
builds the windows of one keypoint sequence that has no 3D.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .precision import amp_autocast
from .data.dataset import PoseSequence, WindowSet
from .data.windows import flip_pose, test_centres


def sequence_windows(keypoints: np.ndarray, frames: int, tds: int, root: int, left: Sequence[int],
                     right: Sequence[int]) -> WindowSet:
    """Test windows of one sequence of normalised 2D keypoints (F, J, 2): every frame a centre."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    seq = PoseSequence("input", "input", "input", keypoints,
                       np.zeros(keypoints.shape[:2] + (3,), dtype=np.float32))
    return WindowSet([seq], [test_centres(len(seq))], (frames - 1) // 2, tds, root, left, right)


@torch.no_grad()
def predict_centres(model, windows: WindowSet, batch_size: int = 256, flip: bool = True,
                    device=None, amp: Optional[str] = None, progress: bool = True,
                    gather_on_device: Optional[bool] = None) -> np.ndarray:
    """Centre-frame predictions (N, J, 3) of every window, flip-averaged, root zeroed (float32).

    ``amp``: ``bf16``/``fp16`` autocast, default None/``none`` (float32). ``gather_on_device``
    (default: on CUDA) cuts the windows on the device from arrays uploaded once and copies the
    predictions back once, instead of a host gather and copy per batch; the values are the same.
    """
    device = torch.device(device or next(model.parameters()).device)
    if gather_on_device is None:
        gather_on_device = device.type == "cuda"
    was_training = model.training
    model.eval()
    source = windows.to_device(device) if gather_on_device else None
    out = torch.empty((len(windows),) + windows.poses.shape[1:], dtype=torch.float32,
                      device=device if gather_on_device else "cpu")
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc="test", unit="batch", disable=None if progress else True,
                      leave=False, mininterval=1.0):
        stop = min(start + batch_size, len(windows))
        if gather_on_device:
            idx = torch.arange(start, stop, device=device)
            x = source.inputs(idx, flip=False)
            x_f = source.inputs(idx, flip=True) if flip else None
        else:
            idx = np.arange(start, stop)
            x = windows.inputs(idx, flip=False).to(device)
            x_f = windows.inputs(idx, flip=True).to(device) if flip else None
        with amp_autocast(device.type, amp):
            pred = model(x).float()
            if flip:
                pred_f = model(x_f).float()
                pred = (pred + flip_pose(pred_f, windows.left, windows.right)) / 2
        centre = pred[:, windows.pad]
        centre[:, windows.root] = 0
        out[start:stop] = centre
    model.train(was_training)
    return out.cpu().numpy()
