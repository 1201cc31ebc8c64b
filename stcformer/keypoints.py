"""Read a video's 2D keypoints, convert them to Human3.6M-17 and fill their gaps.

One reader per file format (:data:`FORMATS`), chosen by name or detected from the file:

``array``
    ``.npy`` or ``.npz`` with one array (or keys ``keypoints`` [+ ``scores``]), shaped
    (T, J, 2) or (T, J, 3) (the third column a score), optionally with a leading person axis of 1.
    An ``.npz`` may also carry scalars ``fps``, ``width`` and ``height``.
``demo``
    the official demo's ``.npz`` (key ``reconstruction``, (1, T, 17, 2), already Human3.6M order).
``videopose3d``
    VideoPose3D's custom-dataset ``.npz``: ``positions_2d`` = {video: {"custom": [(T, 17, 2)]}}
    and ``metadata`` = {"layout_name": "coco", "video_metadata": {video: {"w": .., "h": ..}}},
    so the image size comes from the file.
``json``
    COCO-style results as AlphaPose, MMPose and Detectron2 write them: a list of detections with
    ``image_id`` ("12.jpg" or 12) or ``frame``, ``keypoints`` as flat x, y, score triples and
    optionally ``bbox``/``box`` ([x, y, w, h]), ``score`` and ``idx``/``track_id``. MMPose's
    ``{"instance_info": [{"frame_id": .., "instances": [..]}]}`` layout is read too.
    Frame numbers are taken as written: output frame i is the file's frame i (frames before the
    first detection and between detections are gaps, filled like low-score joints).

Joint sets (:data:`JOINT_SETS`): ``h36m`` (17, Human3.6M order), ``coco`` (17, COCO order,
converted by :func:`coco_to_h36m` as the official demo does) and ``halpe26`` (26, AlphaPose's
Halpe body set, the input of MotionBERT; also the first 26 joints of Halpe-136; converted by
:func:`halpe26_to_h36m`). Every reader yields a :class:`Keypoints` in Human3.6M order with a
score per joint; :func:`fill_gaps` then replaces joints under a score threshold and frames with
no detection from their neighbours in time, never dropping a frame.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import DataError, UsageError

FORMATS = ("array", "demo", "videopose3d", "json")
JOINT_SETS = ("h36m", "coco", "halpe26")
NUM_JOINTS = {"h36m": 17, "coco": 17, "halpe26": 26}

# Halpe-26 (AlphaPose "halpe26"): 0-16 as COCO, then these
HALPE26_EXTRA = ("Head", "Neck", "Hip", "LBigToe", "RBigToe", "LSmallToe", "RSmallToe", "LHeel", "RHeel")

# a frame counts as detected when at least this share of its joints clears the score threshold
MIN_JOINT_SHARE = 0.5
# and at least this share of all frames must be detected (at least one frame)
MIN_FRAME_SHARE = 0.1


@dataclass
class Keypoints:
    """2D keypoints of one person in Human3.6M-17 order.

    xy: (T, 17, 2) float32 pixels (NaN where a joint has no value).
    scores: (T, 17) float32 confidences (0 where a joint or the whole frame is missing; 1 where
        the file has no scores).
    fps, size: frame rate and (width, height) when the file says, else None.
    joints: the joint set of the file (``h36m``, ``coco``, ``halpe26``).
    notes: lines worth printing (which person was picked, ...).
    """

    xy: np.ndarray
    scores: np.ndarray
    path: str = "<array>"
    format: str = "array"
    joints: str = "h36m"
    fps: Optional[float] = None
    size: Optional[Tuple[int, int]] = None
    notes: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.xy)


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


# ---------------------------------------------------------------- joint sets

def coco_to_h36m(kpts: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (..., 17, 2) -> Human3.6M-17, as the official demo's preprocessing.

    Limbs are copied; pelvis = mid-hip; thorax = a third of the way from mid-shoulder to the nose,
    raised by two thirds of the eyes' height above the nose; neck/nose = a quarter of the way from
    the nose down to mid-shoulder; head = mean x of eyes and ears, y = eye + eye - nose; spine =
    the mean of shoulders and hips, its x pushed away from the pelvis-thorax midpoint (x3).
    """
    c = np.asarray(kpts)
    h = np.zeros_like(c)
    for dst, src in ((9, 0), (11, 5), (14, 6), (12, 7), (15, 8), (13, 9), (16, 10), (4, 11),
                     (1, 12), (5, 13), (2, 14), (6, 15), (3, 16)):
        h[..., dst, :] = c[..., src, :]
    mid_shoulder = (c[..., 5, :] + c[..., 6, :]) / 2
    nose = c[..., 0, :]
    h[..., 10, 0] = c[..., 1:5, 0].mean(-1)
    h[..., 10, 1] = c[..., 1, 1] + c[..., 2, 1] - c[..., 0, 1]
    h[..., 8, :] = mid_shoulder + (nose - mid_shoulder) / 3
    h[..., 0, :] = (c[..., 11, :] + c[..., 12, :]) / 2
    h[..., 7, :] = (c[..., 5, :] + c[..., 6, :] + c[..., 11, :] + c[..., 12, :]) / 4
    h[..., 9, :] = nose - (nose - mid_shoulder) / 4
    h[..., 7, 0] += 2 * (h[..., 7, 0] - (h[..., 0, 0] + h[..., 8, 0]) / 2)
    h[..., 8, 1] -= (c[..., 1:3, 1].mean(-1) - nose[..., 1]) * 2 / 3
    return h


# the COCO joints each Human3.6M joint is computed from (a derived joint's score is their minimum)
COCO_SOURCES = ((11, 12), (12,), (14,), (16,), (11,), (13,), (15,), (0, 5, 6, 11, 12), (0, 1, 2, 5, 6),
                (0, 5, 6), (0, 1, 2, 3, 4), (5,), (7,), (9,), (6,), (8,), (10,))


def halpe26_to_h36m(kpts: np.ndarray) -> np.ndarray:
    """Halpe-26 keypoints (..., 26, C) -> Human3.6M-17 (..., 17, C).

    ============  ==========================================================
    H36M joint    from Halpe-26
    ============  ==========================================================
    0 Hip         19 Hip (the pelvis centre Halpe annotates)
    1-3 R leg     12 RHip, 14 RKnee, 16 RAnkle
    4-6 L leg     11 LHip, 13 LKnee, 15 LAnkle
    7 Spine       midpoint of 19 Hip and 18 Neck
    8 Thorax      18 Neck (the base of the neck, between the shoulders)
    9 Neck/Nose   0 Nose moved a quarter of the way towards 18 Neck (as for COCO input)
    10 Head       17 Head (top of the head)
    11-13 L arm   5 LShoulder, 7 LElbow, 9 LWrist
    14-16 R arm   6 RShoulder, 8 RElbow, 10 RWrist
    ============  ==========================================================

    The feet (20-25) and the eyes and ears are not used.
    """
    a = np.asarray(kpts)
    h = np.zeros(a.shape[:-2] + (17, a.shape[-1]), dtype=a.dtype)
    for dst, src in ((0, 19), (1, 12), (2, 14), (3, 16), (4, 11), (5, 13), (6, 15), (8, 18), (10, 17),
                     (11, 5), (12, 7), (13, 9), (14, 6), (15, 8), (16, 10)):
        h[..., dst, :] = a[..., src, :]
    h[..., 7, :] = (a[..., 19, :] + a[..., 18, :]) / 2
    h[..., 9, :] = a[..., 0, :] + (a[..., 18, :] - a[..., 0, :]) / 4
    return h


HALPE26_SOURCES = ((19,), (12,), (14,), (16,), (11,), (13,), (15,), (18, 19), (18,), (0, 18), (17,),
                   (5,), (7,), (9,), (6,), (8,), (10,))


def to_h36m(xy: np.ndarray, scores: np.ndarray, joints: str) -> Tuple[np.ndarray, np.ndarray]:
    """(T, J, 2) pixels and (T, J) scores of ``joints`` -> Human3.6M-17; a derived joint's score is
    the lowest of the joints it is computed from."""
    if joints == "h36m":
        return xy, scores
    convert, sources = {"coco": (coco_to_h36m, COCO_SOURCES), "halpe26": (halpe26_to_h36m, HALPE26_SOURCES)}[joints]
    out = convert(xy).astype(np.float32)
    sc = np.stack([scores[:, list(src)].min(-1) for src in sources], axis=-1).astype(np.float32)
    return out, sc


# ---------------------------------------------------------------- readers

def detect_format(path: str) -> str:
    """The reader for ``path``: by extension, then (for .npz) by its keys."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        return "json"
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
        except Exception as exc:
            raise DataError(path, f"not a readable .npz file ({_short(exc)})") from None
        if "positions_2d" in keys:
            return "videopose3d"
        if "reconstruction" in keys:
            return "demo"
        return "array"
    if ext == ".npy":
        return "array"
    raise DataError(path, f"cannot tell the format from the extension '{ext}'; give --format "
                          f"({', '.join(FORMATS)})")


def read_keypoints(path, format: Optional[str] = None, joints: Optional[str] = None,
                   person: Optional[int] = None) -> Keypoints:
    """Read one person's keypoints from ``path`` and convert them to Human3.6M-17.

    ``format``: one of :data:`FORMATS` (default: detected). ``joints``: the file's joint set
    (default: from the file: 26 joints are Halpe-26; 17 are COCO in JSON and VideoPose3D files,
    Human3.6M in arrays and the demo's file). ``person``: in a JSON file with several people, the
    track id (where detections carry ``idx``/``track_id``) or the rank by box area in each frame
    (0 = largest); default the track with the largest total box area, or the largest box per frame.
    Raises :class:`~stcformer.errors.DataError` (naming the file) for anything unreadable.
    """
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown keypoint format '{format}' (one of {', '.join(FORMATS)})")
    if joints is not None and joints not in JOINT_SETS:
        raise UsageError(f"unknown joint set '{joints}' (one of {', '.join(JOINT_SETS)})")
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    fmt = format or detect_format(path)
    if person is not None and fmt != "json":
        raise UsageError(f"--person picks a person in a JSON file; {path} is a {fmt} file with one person")
    reader = {"array": _read_array, "demo": _read_demo, "videopose3d": _read_videopose3d, "json": _read_json}[fmt]
    xy, scores, info = reader(path, person)
    J = xy.shape[1]
    default_joints = info.pop("joints", None)
    if joints is None:
        joints = default_joints or ("halpe26" if J in (26, 136) else "h36m")
    if J == 136 and joints == "halpe26":  # Halpe-136 starts with the 26 body joints
        xy, scores, J = xy[:, :26], scores[:, :26], 26
    if J != NUM_JOINTS[joints]:
        raise DataError(path, f"{J} joints per frame, but the {joints} joint set has {NUM_JOINTS[joints]}")
    xy = xy.astype(np.float32)
    scores = scores.astype(np.float32)
    # missing values: NaN/inf anywhere, or a joint at exactly (0, 0) (what detectors write for none)
    bad = ~np.isfinite(xy).all(-1) | (xy == 0).all(-1) | ~np.isfinite(scores)
    scores = np.where(bad, 0.0, scores).astype(np.float32)
    xy = np.where(bad[..., None], np.nan, xy).astype(np.float32)
    xy, scores = to_h36m(xy, scores, joints)
    scores = np.where(np.isfinite(xy).all(-1), scores, 0.0).astype(np.float32)
    return Keypoints(xy=xy, scores=scores, path=path, format=fmt, joints=joints, fps=info.get("fps"),
                     size=info.get("size"), notes=info.get("notes", []))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _split_scores(path: str, arr: np.ndarray, scores: Optional[np.ndarray] = None):
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


def _scalar(path: str, z, key: str, kind=float):
    if key not in z.files:
        return None
    try:
        v = kind(np.asarray(z[key]).reshape(()))
    except Exception:
        raise DataError(path, f"'{key}' must be a single number") from None
    if not v > 0:
        raise DataError(path, f"'{key}' must be positive, got {v}")
    return v


def _read_array(path: str, person) -> tuple:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(path, f"not a readable .npy/.npz file ({_short(exc)})") from None
    info: Dict = {}
    if isinstance(data, np.lib.npyio.NpzFile):
        try:
            arr, scores = _npz_arrays(path, data, info)
        except DataError:
            raise
        except Exception as exc:  # e.g. an object array (pickled), which is not read here
            raise DataError(path, f"cannot read its arrays ({_short(exc)})") from None
    else:
        arr, scores = data, None
    xy, sc = _split_scores(path, arr, scores)
    return xy, sc, info


def _npz_arrays(path: str, data, info: Dict) -> tuple:
    """The keypoint array and scores (or None) of an array-format .npz; fps and size into ``info``."""
    with data as z:
        keys = [k for k in z.files if k not in ("fps", "width", "height", "scores")]
        if "keypoints" in z.files:
            arr = z["keypoints"]
        elif len(keys) == 1:
            arr = z[keys[0]]
        else:
            raise DataError(path, f"no 'keypoints' array and not exactly one array (keys: {', '.join(z.files)})")
        scores = z["scores"] if "scores" in z.files else None
        fps = _scalar(path, z, "fps")
        w, h = _scalar(path, z, "width", int), _scalar(path, z, "height", int)
        if fps:
            info["fps"] = fps
        if w and h:
            info["size"] = (w, h)
    return arr, scores


def _read_demo(path: str, person) -> tuple:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "reconstruction" not in z.files:
                raise DataError(path, f"no 'reconstruction' array (keys: {', '.join(z.files)})")
            arr = z["reconstruction"]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"not a readable .npz file ({_short(exc)})") from None
    xy, sc = _split_scores(path, arr)
    return xy, sc, {"joints": "h36m"}


def _read_videopose3d(path: str, person) -> tuple:
    # VideoPose3D stores positions_2d and metadata as pickled Python dicts inside object arrays, so
    # this layout (and only this one) is loaded with allow_pickle=True: open only files you trust.
    try:
        with np.load(path, allow_pickle=True) as z:
            if "positions_2d" not in z.files:
                raise DataError(path, "no 'positions_2d' (not a VideoPose3D custom-dataset file)")
            positions = z["positions_2d"].item()
            meta = z["metadata"].item() if "metadata" in z.files else {}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"not a readable VideoPose3D custom-dataset .npz ({_short(exc)})") from None
    if not isinstance(positions, dict) or not positions:
        raise DataError(path, "'positions_2d' holds no videos")
    if len(positions) > 1:
        raise DataError(path, f"{len(positions)} videos in 'positions_2d' ({', '.join(map(str, positions))}); "
                              "keep one per file")
    name, cams = next(iter(positions.items()))
    try:
        arr = np.asarray(cams["custom"][0])
    except Exception:
        raise DataError(path, f"positions_2d['{name}'] has no 'custom' list of arrays") from None
    xy, sc = _split_scores(path, arr)
    info: Dict = {"notes": [f"video '{name}'"]}
    vm = (meta.get("video_metadata") or {}).get(name) if isinstance(meta, dict) else None
    if vm and "w" in vm and "h" in vm:
        info["size"] = (int(vm["w"]), int(vm["h"]))
    if isinstance(meta, dict) and meta.get("layout_name") in ("coco", "h36m"):
        info["joints"] = meta["layout_name"]
    else:
        info["joints"] = "coco"  # VideoPose3D's Detectron2 script writes COCO keypoints
    return xy, sc, info


def _frame_number(path: str, rec: dict) -> int:
    for key in ("frame", "frame_id", "image_id"):
        if key in rec:
            v = rec[key]
            if isinstance(v, bool):
                break
            if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v == int(v)):
                return int(v)
            if isinstance(v, str):
                digits = re.findall(r"\d+", os.path.splitext(os.path.basename(v))[0])
                if digits:
                    return int(digits[-1])
            raise DataError(path, f"cannot read a frame number from {key}={v!r}")
    raise DataError(path, "a detection has no 'image_id', 'frame' or 'frame_id'")


def _box_area(rec: dict, kp: np.ndarray, corners: bool) -> float:
    box = rec.get("bbox", rec.get("box"))
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.size >= 4 and np.isfinite(b[:4]).all():
            if corners:  # MMPose: x1, y1, x2, y2
                return float(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))
            return float(max(b[2], 0) * max(b[3], 0))  # COCO results: x, y, w, h
    seen = kp[kp[:, 2] > 0, :2] if (kp[:, 2] > 0).any() else kp[:, :2]
    ext = seen.max(0) - seen.min(0)
    return float(ext[0] * ext[1])


def _json_records(path: str, doc) -> Tuple[List[dict], bool]:
    """Flat list of detections (each with a frame key and flat keypoints) and whether boxes are corners."""
    if isinstance(doc, dict) and "instance_info" in doc:  # MMPose inferencer / demo output
        recs = []
        for fr in doc["instance_info"]:
            for inst in fr.get("instances", []):
                kp = np.asarray(inst["keypoints"], dtype=np.float64)
                sc = np.asarray(inst.get("keypoint_scores", np.ones(len(kp))), dtype=np.float64)
                rec = {"frame": fr.get("frame_id", 0),
                       "keypoints": np.concatenate([kp.reshape(-1, 2), sc.reshape(-1, 1)], 1).reshape(-1)}
                if "bbox" in inst:
                    rec["bbox"] = np.asarray(inst["bbox"]).reshape(-1)[:4]
                for k in ("track_id", "idx"):
                    if k in inst:
                        rec[k] = inst[k]
                recs.append(rec)
        return recs, True
    if isinstance(doc, dict) and "annotations" in doc:  # a COCO annotation file
        return list(doc["annotations"]), False
    if isinstance(doc, list):
        return doc, False
    raise DataError(path, "expected a list of detections (COCO results), or MMPose's 'instance_info'")


def _track_id(rec: dict):
    for k in ("track_id", "idx"):
        if k in rec and rec[k] is not None:
            v = rec[k]
            if isinstance(v, list):  # AlphaPose writes idx as a number, sometimes as [n]
                v = v[0] if v else None
            if v is None:
                return None
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


def _read_json(path: str, person) -> tuple:
    try:
        with open(path) as f:
            doc = json.load(f)
    except Exception as exc:
        raise DataError(path, f"not a readable JSON file ({_short(exc)})") from None
    recs, corners = _json_records(path, doc)
    if not recs:
        raise DataError(path, "no people: the file lists no detections")
    dets = []  # (frame, track, area, keypoints (J, 3))
    sizes = set()
    for i, rec in enumerate(recs):
        if not isinstance(rec, dict) or "keypoints" not in rec:
            raise DataError(path, f"detection {i} has no 'keypoints'")
        try:
            kp = np.asarray(rec["keypoints"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(path, f"detection {i}: 'keypoints' must be numbers") from None
        if kp.size == 0 or kp.size % 3:
            raise DataError(path, f"detection {i}: {kp.size} keypoint values, expected x, y, score triples")
        kp = kp.reshape(-1, 3)
        sizes.add(len(kp))
        frame = _frame_number(path, rec)
        if frame < 0:
            raise DataError(path, f"detection {i}: negative frame number {frame}")
        dets.append((frame, _track_id(rec), _box_area(rec, kp, corners), kp))
    if len(sizes) > 1:
        raise DataError(path, f"detections have different joint counts: {sorted(sizes)}")
    J = sizes.pop()
    last = max(d[0] for d in dets)
    T = last + 1
    xy = np.full((T, J, 2), np.nan, dtype=np.float32)
    sc = np.zeros((T, J), dtype=np.float32)
    tracked = all(d[1] is not None for d in dets)
    per_frame: Dict[int, list] = {}
    for d in dets:
        per_frame.setdefault(d[0], []).append(d)
    people = max(len(v) for v in per_frame.values())
    notes = []
    if tracked:
        area: Dict[int, float] = {}
        for d in dets:
            area[d[1]] = area.get(d[1], 0.0) + d[2]
        if person is None:
            pick = max(area, key=lambda k: (area[k], -k))
            why = f"the largest total box area of {len(area)} tracks"
        else:
            if person not in area:
                raise DataError(path, f"no track {person} (track ids: {', '.join(map(str, sorted(area)))})")
            pick, why = person, f"--person, of {len(area)} tracks"
        chosen = {}
        for d in dets:
            if d[1] == pick and (d[0] not in chosen or d[2] > chosen[d[0]][2]):
                chosen[d[0]] = d
        notes.append(f"person: track {pick} ({why}), detected in {len(chosen)} of {T} frames")
    else:
        rank = 0 if person is None else person
        if rank < 0:
            raise UsageError(f"--person must be >= 0, got {person}")
        chosen = {}
        for f, ds in per_frame.items():
            ds = sorted(ds, key=lambda d: -d[2])
            if rank < len(ds):
                chosen[f] = ds[rank]
        if not chosen:
            raise DataError(path, f"no frame has {rank + 1} people (at most {people})")
        what = "the largest box" if rank == 0 else f"the box ranked {rank + 1} by area"
        notes.append(f"person: {what} in each frame (no track ids; up to {people} people per frame), "
                     f"detected in {len(chosen)} of {T} frames")
    for f, d in chosen.items():
        xy[f] = d[3][:, :2]
        sc[f] = d[3][:, 2]
    return xy, sc, {"notes": notes, "joints": "coco" if J == 17 else None}


# ---------------------------------------------------------------- gaps

def fill_gaps(kp: Keypoints, min_score: float = 0.3) -> Tuple[np.ndarray, GapReport]:
    """(T, 17, 2) pixels with every missing value filled from its neighbours in time.

    A joint is missing where its score is under ``min_score`` (or it has no value); a frame is
    missing entirely where fewer than half its joints are usable. Each joint is interpolated
    linearly between the nearest usable frames before and after a gap, and held at the nearest
    usable value before the first and after the last one. No frame is dropped: output frame i is
    input frame i. Raises DataError when under 10% of the frames (or none) are usable; a joint that
    is never usable keeps its raw values where it has any.
    """
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
    notes = []
    for j in np.flatnonzero(~use.any(0)):  # never usable: fall back on its raw values
        raw = frame_ok & np.isfinite(xy[:, j]).all(-1)
        if not raw.any():
            raise DataError(kp.path, f"joint {j} has no position in any usable frame")
        use[:, j] = raw
        notes.append(j)
    out = np.empty_like(xy)
    t = np.arange(T)
    for j in range(J):
        good = np.flatnonzero(use[:, j])
        for c in range(2):  # np.interp holds the end values beyond the first/last sample
            out[:, j, c] = np.interp(t, good, xy[good, j, c])
    filled = ~use
    report = GapReport(frames=T, frames_filled=int((~frame_ok).sum()),
                       joints_filled=int(filled[frame_ok].sum()), filled=filled)
    if notes:
        kp.notes.append(f"joints {', '.join(map(str, notes))} never score >= {min_score:g}: raw values kept")
    return out.astype(np.float32), report


def as_keypoints(data, joints: Optional[str] = None, fps=None, size=None) -> Keypoints:
    """A :class:`Keypoints` from an array (T, J, 2|3) of pixels, a path, or a Keypoints."""
    if isinstance(data, Keypoints):
        kp = data
    elif isinstance(data, (str, os.PathLike)):
        kp = read_keypoints(data, joints=joints)
    else:
        arr = np.asarray(data, dtype=np.float32)
        xy, sc = _split_scores("<array>", arr)
        J = xy.shape[1]
        joints = joints or ("halpe26" if J == 26 else "h36m")
        if J != NUM_JOINTS[joints]:
            raise DataError("<array>", f"{J} joints per frame, but the {joints} joint set has {NUM_JOINTS[joints]}")
        bad = ~np.isfinite(xy).all(-1) | (xy == 0).all(-1) | ~np.isfinite(sc)
        sc = np.where(bad, 0.0, sc).astype(np.float32)
        xy = np.where(bad[..., None], np.nan, xy).astype(np.float32)
        xy, sc = to_h36m(xy, sc, joints)
        kp = Keypoints(xy=xy, scores=sc, joints=joints)
    if fps is not None or size is not None:
        kp = replace(kp, fps=fps if fps is not None else kp.fps,
                     size=tuple(size) if size is not None else kp.size, notes=list(kp.notes))
    return kp


def window_stride(fps: float, train_tds: int = 3, train_fps: float = 50.0) -> int:
    """Frame step inside a window at ``fps``: max(1, round(train_tds * fps / train_fps)), so a
    window spans the same time as the training windows (tds 3 at 50 fps)."""
    return max(1, int(round(train_tds * fps / train_fps)))


# ---------------------------------------------------------------- smoothing

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


__all__ = ["Keypoints", "GapReport", "FORMATS", "JOINT_SETS", "read_keypoints", "detect_format",
           "coco_to_h36m", "halpe26_to_h36m", "to_h36m", "fill_gaps", "as_keypoints", "window_stride",
           "savgol", "jitter"]
