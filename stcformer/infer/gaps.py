"""Gap filling: joints under a score threshold and frames with no detection, filled from their
neighbours in time (:func:`fill_gaps`), never dropping a frame."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from stcformer.errors import DataError
from stcformer.infer.keypoints import Keypoints

# a frame counts as detected when at least this share of its joints clears the score threshold
MIN_JOINT_SHARE = 0.5
# and at least this share of all frames must be detected (at least one frame)
MIN_FRAME_SHARE = 0.1


@dataclass
class GapReport:
    """What :func:`fill_gaps` replaced: joints in detected frames and whole frames."""

    frames: int                  # frames in the sequence
    frames_filled: int           # frames with no usable detection, filled entirely
    joints_filled: int           # single joints (under the threshold) filled inside detected frames
    filled: np.ndarray           # (T, 17) bool: which values were filled

    def __str__(self) -> str:
        return (f"filled {self.frames_filled} of {self.frames} frames entirely and "
                f"{self.joints_filled} low-score joints in the others")


def _usable(kp: Keypoints, min_score: float) -> Tuple[np.ndarray, np.ndarray, list]:
    """(T, J) values to interpolate from, (T,) detected frames, and the joints that are never
    usable (they fall back on their raw values in detected frames)."""
    xy, sc = kp.xy, kp.scores
    T, J = sc.shape
    ok = (sc >= min_score) & (sc > 0) & np.isfinite(xy).all(-1)
    frame_ok = ok.sum(1) >= np.ceil(MIN_JOINT_SHARE * J)
    need = max(1, int(np.ceil(MIN_FRAME_SHARE * T)))
    if frame_ok.sum() < need:
        raise DataError(kp.path, f"too few usable frames: {int(frame_ok.sum())} of {T} have at least "
                                 f"{int(np.ceil(MIN_JOINT_SHARE * J))} joints scoring >= {min_score:g} "
                                 f"(need {need}; missing, zero or NaN joints count as unusable)")
    use = ok & frame_ok[:, None]
    raw_only = []
    for j in np.flatnonzero(~use.any(0)):
        raw = frame_ok & np.isfinite(xy[:, j]).all(-1)
        if not raw.any():
            raise DataError(kp.path, f"joint {j} has no position in any usable frame")
        use[:, j] = raw
        raw_only.append(j)
    return use, frame_ok, raw_only


def fill_gaps(kp: Keypoints, min_score: float = 0.3) -> Tuple[np.ndarray, GapReport]:
    """(T, 17, 2) pixels with every missing value filled from its neighbours in time.

    A joint is missing where its score is under ``min_score`` (or it has no value); a frame is
    missing entirely where fewer than half its joints are usable. Each joint is interpolated
    linearly between the nearest usable frames before and after a gap, and held at the nearest
    usable value before the first and after the last one. No frame is dropped: output frame i is
    input frame i. Raises DataError when under 10% of the frames (or none) are usable; a joint that
    is never usable keeps its raw values where it has any.
    """
    use, frame_ok, raw_only = _usable(kp, min_score)
    xy = kp.xy
    T, J = use.shape
    out = np.empty_like(xy)
    t = np.arange(T)
    for j in range(J):
        good = np.flatnonzero(use[:, j])
        for c in range(2):  # np.interp holds the end values beyond the first/last sample
            out[:, j, c] = np.interp(t, good, xy[good, j, c])
    filled = ~use
    report = GapReport(frames=T, frames_filled=int((~frame_ok).sum()),
                       joints_filled=int(filled[frame_ok].sum()), filled=filled)
    if raw_only:
        kp.notes.append(f"joints {', '.join(map(str, raw_only))} never score >= {min_score:g}: raw values kept")
    return out.astype(np.float32), report


__all__ = ["GapReport", "fill_gaps", "MIN_JOINT_SHARE", "MIN_FRAME_SHARE"]
