"""The :class:`Keypoints` record of one person and :func:`convert_keypoints`, the one conversion
every reader and the video detector go through (raw pixels and scores -> Human3.6M-17)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from stcformer.errors import DataError
from stcformer.infer.joints import NUM_JOINTS, to_h36m


@dataclass
class Keypoints:
    """2D keypoints of one person in Human3.6M-17 order.

    xy: (T, 17, 2) float32 pixels (NaN where a joint has no value).
    scores: (T, 17) float32 confidences (0 where a joint or the whole frame is missing; 1 where
        the file has no scores).
    fps, size: frame rate and (width, height) when the file says, else None.
    joints: the joint set of the file (``h36m``, ``coco``, ``halpe26``).
    notes: lines worth printing (which person was picked, ...).
    track: the track id of this person in a multi-person file (:func:`~stcformer.infer.readers.read_tracks`),
        else None.
    """

    xy: np.ndarray
    scores: np.ndarray
    path: str = "<array>"
    format: str = "array"
    joints: str = "h36m"
    fps: Optional[float] = None
    size: Optional[Tuple[int, int]] = None
    notes: List[str] = field(default_factory=list)
    track: Optional[int] = None

    def __len__(self) -> int:
        return len(self.xy)


def convert_keypoints(xy: np.ndarray, scores: np.ndarray, joints: Optional[str] = None, path: str = "<array>",
                      format: str = "array", fps=None, size=None, notes=None, track=None) -> Keypoints:
    """A :class:`Keypoints` (Human3.6M-17) from raw (T, J, 2) pixels and (T, J) scores of ``joints``
    (default by count: 26 or 136 Halpe, 33 BlazePose, else Human3.6M): every reader and the video
    detector go through here, so a file written from a detection reads back to the same values.
    Values that are NaN/inf or exactly (0, 0) (what detectors write for none) become missing."""
    J = xy.shape[1]
    if joints is None:
        joints = {26: "halpe26", 136: "halpe26", 33: "blazepose"}.get(J, "h36m")
    if J == 136 and joints == "halpe26":  # Halpe-136 starts with the 26 body joints
        xy, scores, J = xy[:, :26], scores[:, :26], 26
    if J != NUM_JOINTS[joints]:
        raise DataError(path, f"{J} joints per frame, but the {joints} joint set has {NUM_JOINTS[joints]}")
    xy = np.asarray(xy).astype(np.float32)
    scores = np.asarray(scores).astype(np.float32)
    bad = ~np.isfinite(xy).all(-1) | (xy == 0).all(-1) | ~np.isfinite(scores)
    scores = np.where(bad, 0.0, scores).astype(np.float32)
    xy = np.where(bad[..., None], np.nan, xy).astype(np.float32)
    xy, scores = to_h36m(xy, scores, joints)
    scores = np.where(np.isfinite(xy).all(-1), scores, 0.0).astype(np.float32)
    return Keypoints(xy=xy, scores=scores, path=path, format=format, joints=joints, fps=fps,
                     size=tuple(size) if size is not None else None, notes=list(notes or []), track=track)


def unreadable(path: str, what: str, exc: BaseException) -> DataError:
    """The DataError for a file a reader could not open: ``what`` and the cause, on one short line."""
    return DataError(path, f"{what} ({' '.join(str(exc).split())[:200]})")


def split_scores(path: str, arr: np.ndarray, scores: Optional[np.ndarray] = None):
    """(T, J, 2) float32 pixels and (T, J) float32 scores of a keypoint array (T, J, 2|3), optionally
    (1, T, J, C): the third column, else ``scores``, else 1."""
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(path, f"keypoints must be numbers, got dtype {arr.dtype}")
    shape = arr.shape
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3) or arr.shape[0] < 1:
        raise DataError(path, f"keypoints must be (T, J, 2) or (T, J, 3) (optionally (1, T, J, C)), got {shape}")
    xy = arr[..., :2].astype(np.float32)
    if arr.shape[-1] == 3:
        sc = arr[..., 2]
    elif scores is not None:
        sc = np.asarray(scores, dtype=np.float32)
        if sc.ndim == 4 and sc.shape[-1] == 1:
            sc = sc[..., 0]
        if sc.ndim == 3 and sc.shape[0] == 1:
            sc = sc[0]
        if sc.shape != xy.shape[:2]:
            raise DataError(path, f"scores are {sc.shape}, keypoints {xy.shape[:2]} frames x joints")
    else:
        sc = np.ones(xy.shape[:2], dtype=np.float32)
    return xy, np.asarray(sc, dtype=np.float32)


__all__ = ["Keypoints", "convert_keypoints", "split_scores", "unreadable"]
