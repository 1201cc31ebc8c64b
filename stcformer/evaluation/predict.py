"""Flip-averaged centre-frame prediction: the one place that turns windows into 3D poses.

Evaluation (scored against ground truth) and inference (a user's own keypoints) both call
:func:`predict_centres` on a :class:`~stcformer.data.dataset.WindowSet`; :func:`sequence_windows`
builds the windows of one keypoint sequence that has no 3D. :func:`predict_seq2seq` keeps every
output frame of overlapping blocks of windows instead, blended with weights that fade out at each
block edge (:func:`seq2seq_windows`). :func:`predict_sequence` runs either mode on one normalised
keypoint sequence: the last step of :func:`stcformer.infer.pipeline.lift`.
:class:`stcformer.infer.stream.StreamLifter` lifts one frame at a time with :func:`flip_average`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from stcformer.choices import MODES
from stcformer.ops.precision import amp_autocast
from stcformer.data.dataset import PoseSequence, WindowSet
from stcformer.data.windows import flip_pose, test_centres


def sequence_windows(keypoints: np.ndarray, frames: int, tds: int, root: int, left: Sequence[int],
                     right: Sequence[int]) -> WindowSet:
    """Test windows of one sequence of normalised 2D keypoints (F, J, 2): every frame a centre."""
    seq = PoseSequence("input", "input", "input", np.asarray(keypoints, dtype=np.float32))
    return WindowSet([seq], [test_centres(len(seq))], (frames - 1) // 2, tds, root, left, right)


def flip_average(model, x: torch.Tensor, x_flipped: Optional[torch.Tensor], left: Sequence[int],
                 right: Sequence[int], amp: Optional[str] = None) -> torch.Tensor:
    """The model's 3D (B, T, J, 3) float32 for windows ``x``; with ``x_flipped`` (the same windows
    mirrored) the mean of both, the mirrored prediction mirrored back. Root not zeroed."""
    with amp_autocast(x.device.type, amp):
        pred = model(x).float()
        if x_flipped is not None:
            pred = (pred + flip_pose(model(x_flipped).float(), left, right)) / 2
    return pred


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
    source = windows.to_device(device if gather_on_device else "cpu")
    out = torch.empty((len(windows), windows.keypoints.shape[1], 3), dtype=torch.float32, device=source.device)
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc="test", unit="batch", disable=None if progress else True,
                      leave=False, mininterval=1.0):
        idx = torch.arange(start, min(start + batch_size, len(windows)), device=source.device)
        x = source.inputs(idx, flip=False).to(device)
        x_f = source.inputs(idx, flip=True).to(device) if flip else None
        pred = flip_average(model, x, x_f, windows.left, windows.right, amp)
        centre = pred[:, windows.pad]
        centre[:, windows.root] = 0
        out[start:start + len(idx)] = centre
    model.train(was_training)
    return out.cpu().numpy()


# ---------------------------------------------------------------- seq2seq: every frame of every window

SEQ2SEQ_OVERLAP = 0.5  # share of a block shared with the next (bench/seq2seq_seams.py measures 0 .. 0.75)


def _block_geometry(frames: int, tds: int, overlap: float) -> tuple:
    """(span, hop, fade) in frames: a block of ``T*tds`` frames, the step between block starts,
    and the length of the fade at an edge shared with another block (at most half a block)."""
    from stcformer.errors import UsageError

    if not 0 <= overlap < 1:
        raise UsageError(f"overlap must be in [0, 1), got {overlap!r}")
    pad = (frames - 1) // 2
    span = (2 * pad + 1) * tds
    hop = max(1, span - int(round(overlap * span)))
    return span, hop, min(span - hop, span // 2)


def seq2seq_starts(num_frames: int, frames: int, tds: int, overlap: float = SEQ2SEQ_OVERLAP) -> np.ndarray:
    """First frames of the seq2seq blocks of a sequence of ``num_frames``, ``span = T*tds`` frames
    each, ``hop = span - round(overlap*span)`` apart.

    The grid covers the sequence extended by ``fade`` frames (the cross-fade length, see
    :func:`_block_geometry`) at both ends: starts ``-fade, -fade + hop, ...`` while a block fits,
    then one more aligned to the end of the extension if frames are left over. So the first and
    last frames sit half a fade inside the outer blocks, not at their windows' edges (the windows
    repeat the edge frames there, as centre mode's do), and they cross-fade like any other frame.
    ``overlap=0`` (no fade) gives the non-overlapping blocks of earlier versions: ``0, span, ...``,
    the last aligned to the end, one block for a sequence shorter than a block."""
    span, hop, fade = _block_geometry(frames, tds, overlap)
    extended = num_frames + 2 * fade
    starts = list(range(0, max(extended - span, 0) + 1, hop))
    if starts[-1] + span < extended:
        starts.append(extended - span)
    return np.asarray(starts, dtype=np.int64) - fade


def seq2seq_centres(num_frames: int, frames: int, tds: int, overlap: float = SEQ2SEQ_OVERLAP) -> np.ndarray:
    """Centres of the windows of ``T = 2*pad+1`` frames (``pad = (frames-1)//2``), ``tds`` apart,
    that cover the :func:`seq2seq_starts` blocks: block ``b`` (``T*tds`` consecutive frames from
    ``s``) is covered exactly once by ``tds`` interleaved windows (frames ``s+o, s+o+tds, ...`` for
    ``o < tds``), listed block by block. Frames outside the sequence are clamped when the windows
    are cut (:class:`~stcformer.data.dataset.WindowSet`), so a centre may lie before frame 0."""
    pad = (frames - 1) // 2
    starts = seq2seq_starts(num_frames, frames, tds, overlap)
    return (starts[:, None] + np.arange(tds, dtype=np.int64)[None] + pad * tds).reshape(-1)


def seq2seq_block_weights(num_blocks: int, span: int, fade: int) -> np.ndarray:
    """Blending weights (num_blocks, span) of each block's output frames: 1, except over the first
    ``fade`` frames of every block but the first and the last ``fade`` frames of every block but
    the last, where it rises from (near) 0 as ``sin^2``. Where two blocks cross over ``fade``
    frames their weights sum to 1; every weight is positive (the ramp is sampled at frame
    centres), so no covered frame gets zero total weight."""
    w = np.ones((num_blocks, span), dtype=np.float64)
    if fade > 0 and num_blocks > 1:
        ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
        w[1:, :fade] *= ramp
        w[:-1, span - fade:] *= ramp[::-1]
    return w


class Seq2SeqWindows(WindowSet):
    """A :class:`WindowSet` of seq2seq blocks plus ``weights`` (N, T): the blending weight of each
    output frame of each window (see :func:`seq2seq_block_weights`); 0 for outputs that fall
    before the first or after the last frame (their inputs are the repeated edge frame), except
    with ``overlap=0``, which averages them in as earlier versions did."""

    weights: np.ndarray


def seq2seq_windows(sequences, frames: int, tds: int, root: int, left: Sequence[int],
                    right: Sequence[int], overlap: float = SEQ2SEQ_OVERLAP) -> Seq2SeqWindows:
    """The :func:`seq2seq_centres` windows of each :class:`PoseSequence` (or (F, J, 2) array of
    keypoints, windowed without 3D), with the blending weight of every output frame."""
    span, _, fade = _block_geometry(frames, tds, overlap)
    pad = (frames - 1) // 2
    seqs, centres, weights = [], [], []
    # output k of window o of a block is the block's frame o + k*tds
    pos = np.arange(tds)[:, None] + np.arange(2 * pad + 1)[None] * tds          # (tds, T)
    for i, s in enumerate(sequences):
        if not isinstance(s, PoseSequence):
            s = PoseSequence(f"input{i}", "input", "input", np.asarray(s, dtype=np.float32))
        seqs.append(s)
        centres.append(seq2seq_centres(len(s), frames, tds, overlap))
        w = seq2seq_block_weights(len(centres[-1]) // tds, span, fade)[:, pos].reshape(-1, 2 * pad + 1)
        if fade:
            frame = centres[-1][:, None] + (np.arange(2 * pad + 1) - pad)[None] * tds  # before clamping
            w[(frame < 0) | (frame >= len(s))] = 0
        weights.append(w)
    windows = Seq2SeqWindows(seqs, centres, pad, tds, root, left, right, seq2seq=True)
    windows.weights = np.concatenate(weights) if weights else np.zeros((0, 2 * pad + 1))
    return windows


def seq2seq_passes_per_frame(num_frames: int, frames: int, tds: int, overlap: float = SEQ2SEQ_OVERLAP,
                             flip: bool = True) -> float:
    """Forward passes of one T-frame window per output frame of :func:`predict_seq2seq` (centre
    mode: 2 with flip averaging, 1 without)."""
    n = len(seq2seq_centres(num_frames, frames, tds, overlap))
    return n * (2 if flip else 1) / num_frames


@torch.no_grad()
def predict_seq2seq(model, windows: WindowSet, batch_size: int = 256, flip: bool = True, device=None,
                    amp: Optional[str] = None, progress: bool = True) -> np.ndarray:
    """Every output frame of every window (flip-averaged), put back at the frame it belongs to:
    (total frames of ``windows.sequences``, J, 3) float32, root zeroed. Each frame is the weighted
    mean of the outputs that land on it, with the windows' ``weights`` (:class:`Seq2SeqWindows`;
    equal weights for a plain WindowSet), so overlapping blocks cross-fade instead of meeting at
    a seam. A frame no window covers is NaN (windows from :func:`seq2seq_windows` cover every
    frame, each with positive weight)."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    total = int(windows.lengths.sum())
    J = windows.keypoints.shape[1]
    weights = getattr(windows, "weights", None)
    acc = np.zeros((total, J, 3), dtype=np.float64)
    wsum = np.zeros(total, dtype=np.float64)
    for start in tqdm(range(0, len(windows), batch_size), desc="lift", unit="batch",
                      disable=None if progress else True, leave=False, mininterval=1.0):
        idx = np.arange(start, min(start + batch_size, len(windows)))
        x = windows.inputs(idx, flip=False).to(device)
        x_f = windows.inputs(idx, flip=True).to(device) if flip else None
        pred = flip_average(model, x, x_f, windows.left, windows.right, amp).cpu().numpy().reshape(-1, J, 3)
        frames = windows.frame_indices(idx).reshape(-1)
        w = np.ones(len(frames)) if weights is None else weights[idx].reshape(-1)
        np.add.at(acc, frames, pred * w[:, None, None])
        np.add.at(wsum, frames, w)
    model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (acc / wsum[:, None, None]).astype(np.float32)
    out[:, windows.root] = 0
    return out


# ---------------------------------------------------------------- one keypoint sequence -> 3D

def predict_sequence(model, keypoints: np.ndarray, frames: int, tds: int, mode: str = "center",
                     batch_size: int = 256, device=None, amp: Optional[str] = None,
                     progress: bool = False, overlap: float = SEQ2SEQ_OVERLAP) -> np.ndarray:
    """Normalised 2D (F, 17, 2) in Human3.6M order -> root-relative 3D (F, 17, 3), flip-averaged.

    ``mode="center"``: one window per frame, its centre kept (:func:`predict_centres`): 2 forward
    passes of a T-frame window per frame (plain and mirrored).
    ``mode="seq2seq"``: blocks of ``T*tds`` frames, each covered by ``tds`` interleaved windows
    whose every output frame is kept (:func:`predict_seq2seq`); consecutive blocks share
    ``overlap`` of a block (default half) and cross-fade over it, so there is no seam where they
    meet. Forward passes per frame: about ``2 / ((1 - overlap) * T)`` (T=27: 0.15 at the default
    overlap, 0.074 with ``overlap=0``, the non-overlapping blocks of earlier versions; see
    :func:`seq2seq_passes_per_frame`). Output frame i belongs to input frame i in both modes.
    """
    from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT

    if mode == "center":
        windows = sequence_windows(keypoints, frames, tds, 0, H36M_LEFT, H36M_RIGHT)
        return predict_centres(model, windows, batch_size, device=device, amp=amp, progress=progress)
    if mode == "seq2seq":
        windows = seq2seq_windows([keypoints], frames, tds, 0, H36M_LEFT, H36M_RIGHT, overlap=overlap)
        return predict_seq2seq(model, windows, batch_size, device=device, amp=amp, progress=progress)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
