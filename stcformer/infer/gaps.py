"""Gap filling: joints under a score threshold and frames with no detection, filled from their
neighbours in time (:func:`fill_gaps`), never dropping a frame; and the frames too far from a
person's detections to hold a pose at all (:func:`absent_frames`).

No pose where nobody is: a frame more than ``max_gap`` frames (default :func:`default_max_gap`,
half a second) from the nearest frame where the person was detected gets no pose. The lift fills
every gap as before (so the model sees a continuous sequence), then the outputs of the absent
frames are set to NaN (arrays), null (JSON), nothing drawn (render), the pose before the gap held
(BVH). A gap of n frames between two detections thus keeps its first and last ``max_gap`` frames
(filled) and loses the middle n - 2 ``max_gap``; frames before a person's first detection and after
its last lose all but ``max_gap``. :func:`segments` gives the runs of frames that keep a pose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

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


# how long a gap may be filled on each side of a detection, in seconds (:func:`default_max_gap`)
MAX_GAP_SECONDS = 0.5
MAX_GAP_NO_FPS = 15


def default_max_gap(fps: Optional[float]) -> int:
    """Frames a pose may be from the nearest detection: round(0.5 s x ``fps``) (at least 1), or 15
    frames when the frame rate is unknown."""
    if not fps or fps <= 0:
        return MAX_GAP_NO_FPS
    return max(1, int(round(MAX_GAP_SECONDS * float(fps))))


def detected_frames(scores: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    """(T,) frames where the person counts as detected: at least half the joints of ``scores``
    (T, J) at ``min_score`` or above (and above 0), the rule of :func:`fill_gaps`."""
    sc = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    ok = (sc >= min_score) & (sc > 0)
    return ok.sum(1) >= np.ceil(MIN_JOINT_SHARE * sc.shape[1])


def frames_to_detection(detected: np.ndarray) -> np.ndarray:
    """(T,) distance in frames from each frame to the nearest detected one (0 on a detection;
    T where there is none at all)."""
    det = np.asarray(detected, bool)
    T = len(det)
    idx = np.flatnonzero(det)
    if not len(idx):
        return np.full(T, T, dtype=np.int64)
    t = np.arange(T)
    after = idx[np.clip(np.searchsorted(idx, t), 0, len(idx) - 1)]
    before = idx[np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 1)]
    return np.minimum(np.abs(after - t), np.abs(t - before))


def absent_frames(scores: Optional[np.ndarray] = None, fps: Optional[float] = None, max_gap: Optional[int] = None,
                  min_score: float = 0.3, detected: Optional[np.ndarray] = None) -> np.ndarray:
    """(T,) frames that get no pose: farther than ``max_gap`` frames (default
    :func:`default_max_gap` of ``fps``) from the nearest frame where the person is ``detected``
    (a (T,) mask, or :func:`detected_frames` of ``scores`` (T, J) at ``min_score``).
    ``max_gap=None`` with no fps: 15 frames; a negative ``max_gap`` keeps every frame."""
    if detected is None:
        if scores is None:
            raise ValueError("absent_frames needs scores or detected")
        detected = detected_frames(scores, min_score)
    gap = default_max_gap(fps) if max_gap is None else int(max_gap)
    dist = frames_to_detection(detected)
    if gap < 0:
        return np.zeros(len(dist), bool)
    return dist > gap


def segments(keep: np.ndarray) -> List[Tuple[int, int]]:
    """Runs of True in ``keep`` (T,) as (first, last) frame pairs, in order: a person's stretches
    of frames that hold a pose (``~absent_frames(...)``), each of which may be lifted on its own."""
    k = np.concatenate([[False], np.asarray(keep, bool), [False]]).astype(np.int8)
    d = np.diff(k)
    return [(int(a), int(b) - 1) for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]


__all__ = ["GapReport", "fill_gaps", "MIN_JOINT_SHARE", "MIN_FRAME_SHARE", "default_max_gap", "detected_frames",
           "frames_to_detection", "absent_frames", "segments", "MAX_GAP_SECONDS"]
