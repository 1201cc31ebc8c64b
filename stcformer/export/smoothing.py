"""Smoothing of pose sequences along time: the Savitzky-Golay filter (:func:`savgol`,
:func:`smooth_poses`), the jitter it is judged by (:func:`jitter`, the mean frame-to-frame
acceleration) and the default filter lengths at a frame rate (:func:`smoothing_window` for the
joints, :func:`trajectory_window` for the root's path)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def savgol(x: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing along axis 0 (numpy only): each frame becomes the value at that
    frame of a degree-``order`` polynomial fitted (least squares) to the ``window`` frames around
    it; within half a window of either end the polynomial of the first/last full window is used."""
    x = np.asarray(x, dtype=np.float64)
    T = len(x)
    window = min(window if window % 2 else window + 1, T if T % 2 else T - 1)
    if window <= order or window < 3:
        return x.astype(np.float32)
    m = window // 2
    k = np.arange(-m, m + 1, dtype=np.float64)
    A = k[:, None] ** np.arange(order + 1)[None]
    P = np.linalg.pinv(A)                      # (order+1, window): polynomial coefficients
    flat = x.reshape(T, -1)
    out = np.empty_like(flat)
    # interior: the fitted value at the centre (row 0 of P), a correlation over the window
    stack = np.lib.stride_tricks.sliding_window_view(flat, window, axis=0)  # (T-window+1, D, window)
    out[m:T - m] = stack @ P[0]
    powers = np.arange(order + 1)
    for i in range(m):  # the ends: evaluate the end windows' polynomials off-centre
        head = ((i - m) ** powers) @ P
        tail = ((m - i) ** powers) @ P
        out[i] = head @ flat[:window]
        out[T - 1 - i] = tail @ flat[T - window:]
    return out.reshape(x.shape).astype(np.float32)


def jitter(poses: np.ndarray) -> float:
    """Mean frame-to-frame acceleration, ||x[t+1] - 2x[t] + x[t-1]|| over frames and joints
    (in the units of ``poses`` per frame squared); 0 for fewer than 3 frames."""
    if len(poses) < 3:
        return 0.0
    acc = poses[2:] - 2 * poses[1:-1] + poses[:-2]
    return float(np.linalg.norm(acc, axis=-1).mean())


def smooth_poses(poses: np.ndarray, window: int) -> np.ndarray:
    """Root-relative poses (T, 17, 3) smoothed with :func:`savgol` over ``window`` frames, the root
    kept at the origin."""
    out = savgol(poses, window)
    out[:, 0] = 0
    return out


def _odd_frames(fps: Optional[float], seconds: float, unknown: int) -> int:
    """About ``seconds`` of frames at ``fps``, odd, at least 5 (``unknown`` without a frame rate)."""
    if not fps:
        return unknown
    n = max(5, int(round(seconds * fps)))
    return n if n % 2 else n + 1


def smoothing_window(fps: Optional[float]) -> int:
    """The joints' default filter length: about 0.2 s of frames (9 when the frame rate is unknown)."""
    return _odd_frames(fps, 0.2, 9)


def trajectory_window(fps: Optional[float]) -> int:
    """The root path's filter length: about half a second (15 when the frame rate is unknown). The
    root moves more slowly than the joints, and its depth, fitted from the person's size in the
    image, is the noisiest coordinate."""
    return _odd_frames(fps, 0.5, 15)


__all__ = ["savgol", "smooth_poses", "jitter", "smoothing_window", "trajectory_window"]
