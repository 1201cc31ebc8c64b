"""Flip-averaged centre-frame prediction: the one place that turns windows into 3D poses.

Evaluation (scored against ground truth) and inference (a user's own keypoints) both call
:func:`predict_centres` on a :class:`~stcformer.data.dataset.WindowSet`; :func:`sequence_windows`
builds the windows of one keypoint sequence that has no 3D. :func:`predict_seq2seq` keeps every
output frame of non-overlapping windows instead (:func:`seq2seq_windows`), and :func:`lift` runs the
whole path from pixel keypoints to 3D for one person.
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


# ---------------------------------------------------------------- seq2seq: every frame of every window

def seq2seq_centres(num_frames: int, frames: int, tds: int) -> np.ndarray:
    """Centres of non-overlapping windows of ``T = 2*pad+1`` frames (``pad = (frames-1)//2``),
    ``tds`` apart, that together hold every frame exactly once, except near the end.

    The sequence is cut into blocks of ``T*tds`` consecutive frames; block ``b`` is covered by
    ``tds`` interleaved windows (frames ``b+o, b+o+tds, ...`` for ``o < tds``). The last block is
    aligned to the end of the sequence, so it may share frames with the one before (their outputs
    are averaged); a sequence shorter than a block repeats its last frame (windows clamp).
    """
    pad = (frames - 1) // 2
    span = (2 * pad + 1) * tds
    starts = list(range(0, max(num_frames - span, 0) + 1, span))
    if starts[-1] + span < num_frames:
        starts.append(num_frames - span)
    starts = np.asarray(starts, dtype=np.int64)
    return (starts[:, None] + np.arange(tds, dtype=np.int64)[None] + pad * tds).reshape(-1)


def seq2seq_windows(sequences, frames: int, tds: int, root: int, left: Sequence[int],
                    right: Sequence[int]) -> WindowSet:
    """The :func:`seq2seq_centres` windows of each :class:`PoseSequence` (or (F, J, 2) array)."""
    seqs = []
    for i, s in enumerate(sequences):
        if not isinstance(s, PoseSequence):
            k = np.asarray(s, dtype=np.float32)
            s = PoseSequence(f"input{i}", "input", "input", k, np.zeros(k.shape[:2] + (3,), dtype=np.float32))
        seqs.append(s)
    return WindowSet(seqs, [seq2seq_centres(len(s), frames, tds) for s in seqs], (frames - 1) // 2, tds,
                     root, left, right, seq2seq=True)


@torch.no_grad()
def predict_seq2seq(model, windows: WindowSet, batch_size: int = 256, flip: bool = True, device=None,
                    amp: Optional[str] = None, progress: bool = True) -> np.ndarray:
    """Every output frame of every window (flip-averaged), put back at the frame it belongs to:
    (total frames of ``windows.sequences``, J, 3) float32, root zeroed. A frame covered by several
    windows (the last, end-aligned block; repeated edge frames) gets the mean of their outputs;
    a frame no window covers is NaN (windows from :func:`seq2seq_windows` cover every frame)."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    total = int(windows.lengths.sum())
    J = windows.keypoints.shape[1]
    acc = np.zeros((total, J, 3), dtype=np.float64)
    count = np.zeros(total, dtype=np.int64)
    for start in tqdm(range(0, len(windows), batch_size), desc="lift", unit="batch",
                      disable=None if progress else True, leave=False, mininterval=1.0):
        idx = np.arange(start, min(start + batch_size, len(windows)))
        x = windows.inputs(idx, flip=False).to(device)
        with amp_autocast(device.type, amp):
            pred = model(x).float()
            if flip:
                pred_f = model(windows.inputs(idx, flip=True).to(device)).float()
                pred = (pred + flip_pose(pred_f, windows.left, windows.right)) / 2
        frames = windows.frame_indices(idx).reshape(-1)
        np.add.at(acc, frames, pred.cpu().numpy().reshape(-1, J, 3))
        np.add.at(count, frames, 1)
    model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (acc / count[:, None, None]).astype(np.float32)
    out[:, windows.root] = 0
    return out


# ---------------------------------------------------------------- one keypoint sequence -> 3D

MODES = ("center", "seq2seq")


def predict_sequence(model, keypoints: np.ndarray, frames: int, tds: int, mode: str = "center",
                     batch_size: int = 256, device=None, amp: Optional[str] = None,
                     progress: bool = False) -> np.ndarray:
    """Normalised 2D (F, 17, 2) in Human3.6M order -> root-relative 3D (F, 17, 3), flip-averaged.

    ``mode="center"``: one window per frame, its centre kept (:func:`predict_centres`);
    ``mode="seq2seq"``: non-overlapping windows, all their frames kept (:func:`predict_seq2seq`),
    about ``frames`` times fewer forward passes. Output frame i belongs to input frame i in both.
    """
    from .data.skeleton import H36M_LEFT, H36M_RIGHT

    if mode == "center":
        windows = sequence_windows(keypoints, frames, tds, 0, H36M_LEFT, H36M_RIGHT)
        return predict_centres(model, windows, batch_size, device=device, amp=amp, progress=progress)
    if mode == "seq2seq":
        windows = seq2seq_windows([keypoints], frames, tds, 0, H36M_LEFT, H36M_RIGHT)
        return predict_seq2seq(model, windows, batch_size, device=device, amp=amp, progress=progress)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def trained_window(checkpoint) -> tuple:
    """(frames, tds) a checkpoint written by ``stcformer.train`` was trained with, else (27, 3)
    (the official Human3.6M checkpoints'); a model object gives the defaults."""
    frames, tds = 27, 3
    if isinstance(checkpoint, (str, bytes)) or hasattr(checkpoint, "__fspath__"):
        from .checkpoint import read_checkpoint

        args = ((read_checkpoint(checkpoint).get("extra") or {}).get("args") or {})
        frames, tds = args.get("frames") or frames, args.get("tds") or tds
    return int(frames), int(tds)


def lift(keypoints, checkpoint, fps: Optional[float] = None, size=None, mode: str = "center",
         frames: Optional[int] = None, tds: Optional[int] = None, joints: Optional[str] = None,
         min_score: float = 0.3, batch_size: int = 256, device=None, amp: Optional[str] = None,
         progress: bool = False) -> np.ndarray:
    """Lift one person's pixel keypoints to root-relative 3D: (T, 17, 3) numpy, metres, camera axes.

    ``keypoints``: an array (T, J, 2) or (T, J, 3) with scores (Human3.6M order for 17 joints
    unless ``joints`` says ``coco``; 26 joints are Halpe-26), a file path, or what
    :func:`stcformer.read_keypoints` returned. ``checkpoint``: a path or a loaded model.
    ``fps`` and ``size=(width, height)`` are needed unless the file gives them (``tds`` replaces
    ``fps``). Joints under ``min_score`` and missing frames are filled from their neighbours in
    time; ``mode`` is ``center`` or ``seq2seq`` (see :func:`predict_sequence`). ``frames``/``tds``
    default to the checkpoint's training window, tds scaled by fps/50.
    """
    from .checkpoint import load_checkpoint
    from .data.cameras import normalize_screen_coordinates
    from .errors import UsageError
    from .keypoints import as_keypoints, fill_gaps, window_stride

    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    kp = as_keypoints(keypoints, joints=joints, fps=fps, size=size)
    if kp.size is None:
        raise UsageError(f"{kp.path}: no image size; pass size=(width, height)")
    if tds is None and kp.fps is None:
        raise UsageError(f"{kp.path}: no frame rate; pass fps= (or tds=)")
    w, h = kp.size
    if w <= 0 or h <= 0:
        raise UsageError(f"image size must be positive, got {w}x{h}")
    train_frames, train_tds = trained_window(checkpoint)
    frames = frames or train_frames
    tds = tds or window_stride(kp.fps, train_tds)
    xy, _ = fill_gaps(kp, min_score)
    model = checkpoint if isinstance(checkpoint, torch.nn.Module) else load_checkpoint(checkpoint)
    if device is not None:
        model = model.to(device)
    x = normalize_screen_coordinates(xy, w=w, h=h).astype(np.float32)
    return predict_sequence(model, x, frames, tds, mode, batch_size, device=device, amp=amp, progress=progress)
