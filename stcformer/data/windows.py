"""Window index math: which frames feed one window, and the left/right flip.

Every window is ``T = 2*pad+1`` frames sampled every ``tds`` frames around a centre ``c``:
frame ``k`` (k = 0..2*pad) is ``clip(c + (k-pad)*tds, 0, F-1)``, i.e. the first and last frames
are repeated past the ends of the sequence. This is what the official test generator computes
for every sequence longer than the window; unlike it, clamping also gives full-length windows
for sequences shorter than the window on both sides (where the official generator returns a
short window, then fails to batch it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def window_indices(num_frames: int, centres, pad: int, tds: int = 1) -> np.ndarray:
    """Frame indices (N, 2*pad+1) of the windows centred at ``centres`` in a sequence of ``num_frames``."""
    if num_frames < 1:
        raise ValueError("a sequence needs at least one frame")
    if pad < 0 or tds < 1:
        raise ValueError(f"need pad >= 0 and tds >= 1, got pad={pad}, tds={tds}")
    centres = np.asarray(centres, dtype=np.int64).reshape(-1)
    offsets = (np.arange(2 * pad + 1, dtype=np.int64) - pad) * tds
    return np.clip(centres[:, None] + offsets[None, :], 0, num_frames - 1)


def test_centres(num_frames: int) -> np.ndarray:
    """Every frame is the centre of one test window (the official protocol)."""
    return np.arange(num_frames, dtype=np.int64)


def train_centres(num_frames: int, stride: int) -> np.ndarray:
    """One training window per chunk of ``stride`` frames, centred in its chunk.

    The chunks are the official ones: ``ceil(F/stride)`` chunks of ``stride`` frames, the grid
    shifted left by ``(ceil(F/stride)*stride - F)//2`` so the overhang is split between both ends.
    The official code centres each window ``pad+1-stride`` frames before its chunk (so early
    centres fall before frame 0 and the last ``pad`` frames are never centres); here each window is
    centred in the middle of its chunk, clamped into the sequence. ``stride=1`` gives every frame,
    as in the official code.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n_chunks = (num_frames + stride - 1) // stride
    offset = (n_chunks * stride - num_frames) // 2
    starts = np.arange(n_chunks, dtype=np.int64) * stride - offset
    return np.clip(starts + (stride - 1) // 2, 0, num_frames - 1)


def flip_pose(x, left: Sequence[int], right: Sequence[int]):
    """Mirror poses (..., J, C) (numpy or torch): negate x, swap the left and right joints. Returns a copy."""
    lr = list(left) + list(right)
    rl = list(right) + list(left)
    y = x.clone() if hasattr(x, "clone") else np.array(x, copy=True)
    y[..., 0] = -y[..., 0]
    y[..., lr, :] = y[..., rl, :]
    return y
