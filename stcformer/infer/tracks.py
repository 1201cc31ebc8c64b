"""People in a multi-person detection file: picking one person, and linking detections into tracks.

A :class:`Detection` is one person in one frame. :func:`pick_person` chooses the detections of
one person (by track id where the file has them, else by box area in each frame),
:func:`link_tracks` gives track ids to detections without any, and :func:`person_arrays` turns one
person's detections into per-frame arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from stcformer.errors import DataError, UsageError


@dataclass
class Detection:
    """One detected person in one frame."""

    frame: int
    track: Optional[int]
    box: np.ndarray      # (4,) x1, y1, x2, y2
    area: float
    kp: np.ndarray       # (J, 3) x, y, score


def box_area(box: np.ndarray) -> float:
    """Area of an (x1, y1, x2, y2) box; 0 for an empty one."""
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def _joint_distance(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Mean distance of the joints both detections score, over ``scale`` (inf when none is shared)."""
    both = (a[:, 2] > 0) & (b[:, 2] > 0) & np.isfinite(a[:, :2]).all(-1) & np.isfinite(b[:, :2]).all(-1)
    if not both.any() or scale <= 0:
        return np.inf
    return float(np.linalg.norm(a[both, :2] - b[both, :2], axis=-1).mean() / scale)


def person_arrays(T: int, dets: List[Detection]) -> Tuple[np.ndarray, np.ndarray]:
    """(T, J, 2) pixels and (T, J) scores of one person: the largest box of each frame's detections."""
    J = len(dets[0].kp)
    xy = np.full((T, J, 2), np.nan, dtype=np.float32)
    sc = np.zeros((T, J), dtype=np.float32)
    best: Dict[int, Detection] = {}
    for d in dets:
        if d.frame not in best or d.area > best[d.frame].area:
            best[d.frame] = d
    for f, d in best.items():
        xy[f] = d.kp[:, :2]
        sc[f] = d.kp[:, 2]
    return xy, sc


def _pick_track(dets: List[Detection], T: int, person: Optional[int], path: str) -> Tuple[list, str]:
    """The detections of one track: ``person``'s, else the track with the largest total box area."""
    area: Dict[int, float] = {}
    for d in dets:
        area[d.track] = area.get(d.track, 0.0) + d.area
    if person is None:
        pick = max(area, key=lambda k: (area[k], -k))
        why = f"the largest total box area of {len(area)} tracks"
    else:
        if person not in area:
            raise DataError(path, f"no track {person} (track ids: {', '.join(map(str, sorted(area)))})")
        pick, why = person, f"--person, of {len(area)} tracks"
    chosen = [d for d in dets if d.track == pick]
    frames = len({d.frame for d in chosen})
    return chosen, f"person: track {pick} ({why}), detected in {frames} of {T} frames"


def _pick_rank(dets: List[Detection], T: int, person: Optional[int], path: str) -> Tuple[list, str]:
    """The detection ranked ``person`` (default 0, the largest) by box area in each frame."""
    per_frame: Dict[int, list] = {}
    for d in dets:
        per_frame.setdefault(d.frame, []).append(d)
    people = max(len(v) for v in per_frame.values())
    rank = 0 if person is None else person
    if rank < 0:
        raise UsageError(f"--person must be >= 0, got {person}")
    chosen = []
    for ds in per_frame.values():
        ds = sorted(ds, key=lambda d: -d.area)
        if rank < len(ds):
            chosen.append(ds[rank])
    if not chosen:
        raise DataError(path, f"no frame has {rank + 1} people (at most {people})")
    what = "the largest box" if rank == 0 else f"the box ranked {rank + 1} by area"
    return chosen, (f"person: {what} in each frame (no track ids; up to {people} people per frame), "
                    f"detected in {len(chosen)} of {T} frames")


def pick_person(dets: List[Detection], T: int, person: Optional[int], path: str) -> Tuple[list, str]:
    """The detections of one person of a file with ``T`` frames, and a line saying which.

    Where every detection has a track id, ``person`` is a track id (default: the track with the
    largest total box area); else it is a rank by box area in each frame (default 0, the largest).
    """
    if all(d.track is not None for d in dets):
        return _pick_track(dets, T, person, path)
    return _pick_rank(dets, T, person, path)


def _frame_pairs(dets: List[Detection], here: List[int], last: Dict[int, Detection], f: int,
                 max_gap: int, min_iou: float, max_distance: float) -> list:
    """(cost, detection, track) for every match allowed between frame ``f``'s detections and the
    tracks seen in the last ``max_gap`` frames: box overlap first (cost < 1), then joint distance."""
    pairs = []
    for k in here:
        for t, prev in last.items():
            if f - prev.frame > max_gap:
                continue
            iou = _iou(dets[k].box, prev.box)
            if iou >= min_iou:
                pairs.append((1.0 - iou, k, t))
            else:
                dist = _joint_distance(dets[k].kp, prev.kp, np.sqrt(prev.area))
                if dist <= max_distance:
                    pairs.append((1.0 + dist, k, t))
    return pairs


def link_tracks(dets: List[Detection], max_gap: int = 10, min_iou: float = 0.3,
                max_distance: float = 0.5) -> List[int]:
    """Track ids for detections without any: each frame's detections are matched greedily, best
    first, to the tracks seen in the previous ``max_gap`` frames, by box overlap (IoU at least
    ``min_iou``) or else by the mean distance of shared joints (at most ``max_distance`` times the
    square root of the track's last box area); an unmatched detection starts a new track. Ids are
    0, 1, ... in order of first appearance."""
    order = sorted(range(len(dets)), key=lambda i: dets[i].frame)
    ids = [0] * len(dets)
    last: Dict[int, Detection] = {}  # track id -> its latest detection
    i = 0
    while i < len(order):
        f = dets[order[i]].frame
        j = i
        while j < len(order) and dets[order[j]].frame == f:
            j += 1
        here = order[i:j]
        taken_d, taken_t = set(), set()
        for _, k, t in sorted(_frame_pairs(dets, here, last, f, max_gap, min_iou, max_distance)):
            if k in taken_d or t in taken_t:
                continue
            ids[k] = t
            taken_d.add(k)
            taken_t.add(t)
        for k in here:
            if k not in taken_d:
                ids[k] = len(last)
                taken_t.add(ids[k])
            last[ids[k]] = dets[k]
        i = j
    return ids


def tracks_of(dets: List[Detection]) -> Tuple[Dict[int, List[Detection]], str]:
    """Every track's detections (by id) and how the ids were found: the file's where every
    detection has one, else :func:`link_tracks`."""
    if all(d.track is not None for d in dets):
        ids, how = [d.track for d in dets], "track ids of the file"
    else:
        ids, how = link_tracks(dets), "boxes linked frame to frame"
    tracks: Dict[int, List[Detection]] = {}
    for d, t in zip(dets, ids):
        tracks.setdefault(t, []).append(d)
    return tracks, how


__all__ = ["Detection", "box_area", "person_arrays", "pick_person", "link_tracks", "tracks_of"]
