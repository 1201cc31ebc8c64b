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
    ``{"instance_info": [{"frame_id": .., "instances": [..]}]}`` layout is read too, and a COCO
    keypoint file ``{"images", "annotations", "categories"}`` (what :func:`write_coco_keypoints`
    writes): there the image size comes from ``images`` (``width``/``height``), the frame count from
    the image ids, the frame rate from ``info["fps"]`` and the joint set from the category's
    ``keypoints`` names.
    Frame numbers are taken as written: output frame i is the file's frame i (frames before the
    first detection and between detections are gaps, filled like low-score joints).

Joint sets (:data:`JOINT_SETS`): ``h36m`` (17, Human3.6M order), ``coco`` (17, COCO order,
converted by :func:`coco_to_h36m` as the official demo does), ``halpe26`` (26, AlphaPose's
Halpe body set, the input of MotionBERT; also the first 26 joints of Halpe-136; converted by
:func:`halpe26_to_h36m`) and ``blazepose`` (33, MediaPipe BlazePose; :func:`blazepose_to_h36m`). Every reader yields a :class:`Keypoints` in Human3.6M order with a
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

from stcformer.errors import DataError, UsageError

FORMATS = ("array", "demo", "videopose3d", "json")
JOINT_SETS = ("h36m", "coco", "halpe26", "blazepose")
NUM_JOINTS = {"h36m": 17, "coco": 17, "halpe26": 26, "blazepose": 33}

COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle")
# MediaPipe BlazePose's 33 landmarks (mediapipe.solutions.pose.PoseLandmark, lower case)
BLAZEPOSE_JOINTS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")
# the BlazePose landmark of each COCO-17 joint (the COCO subset of the 33)
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

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
    track: the track id of this person in a multi-person file (:func:`read_tracks`), else None.
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


def blazepose_to_h36m(kpts: np.ndarray) -> np.ndarray:
    """MediaPipe BlazePose-33 landmarks (..., 33, C) -> Human3.6M-17 (..., 17, C).

    ============  ==========================================================
    H36M joint    from BlazePose-33
    ============  ==========================================================
    0 Hip         midpoint of 23 left_hip and 24 right_hip
    1-3 R leg     24 right_hip, 26 right_knee, 28 right_ankle
    4-6 L leg     23 left_hip, 25 left_knee, 27 left_ankle
    7 Spine       midpoint of the pelvis (0) and the thorax (8)
    8 Thorax      midpoint of 11 left_shoulder and 12 right_shoulder
    9 Neck/Nose   0 nose
    10 Head       as for COCO input: x the mean of the eyes (2, 5) and ears (7, 8), y = eye + eye - nose
    11-13 L arm   11 left_shoulder, 13 left_elbow, 15 left_wrist
    14-16 R arm   12 right_shoulder, 14 right_elbow, 16 right_wrist
    ============  ==========================================================

    The mouth, hands and feet landmarks are not used.
    """
    a = np.asarray(kpts)
    h = np.zeros(a.shape[:-2] + (17, a.shape[-1]), dtype=a.dtype)
    for dst, src in ((1, 24), (2, 26), (3, 28), (4, 23), (5, 25), (6, 27), (9, 0), (11, 11), (12, 13), (13, 15),
                     (14, 12), (15, 14), (16, 16)):
        h[..., dst, :] = a[..., src, :]
    h[..., 0, :] = (a[..., 23, :] + a[..., 24, :]) / 2
    h[..., 8, :] = (a[..., 11, :] + a[..., 12, :]) / 2
    h[..., 7, :] = (h[..., 0, :] + h[..., 8, :]) / 2
    h[..., 10, :] = a[..., 2, :] + a[..., 5, :] - a[..., 0, :]
    h[..., 10, 0] = a[..., [2, 5, 7, 8], 0].mean(-1)
    return h


BLAZEPOSE_SOURCES = ((23, 24), (24,), (26,), (28,), (23,), (25,), (27,), (11, 12, 23, 24), (11, 12), (0,),
                     (0, 2, 5, 7, 8), (11,), (13,), (15,), (12,), (14,), (16,))


def to_h36m(xy: np.ndarray, scores: np.ndarray, joints: str) -> Tuple[np.ndarray, np.ndarray]:
    """(T, J, 2) pixels and (T, J) scores of ``joints`` -> Human3.6M-17; a derived joint's score is
    the lowest of the joints it is computed from."""
    if joints == "h36m":
        return xy, scores
    convert, sources = {"coco": (coco_to_h36m, COCO_SOURCES), "halpe26": (halpe26_to_h36m, HALPE26_SOURCES),
                        "blazepose": (blazepose_to_h36m, BLAZEPOSE_SOURCES)}[joints]
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
    return convert_keypoints(xy, scores, joints or info.pop("joints", None), path=path, format=fmt,
                             fps=info.get("fps"), size=info.get("size"), notes=info.get("notes", []))


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


def _box(rec: dict, kp: np.ndarray, corners: bool) -> np.ndarray:
    """(x1, y1, x2, y2) of a detection: its ``bbox``/``box``, else the extent of its scored joints."""
    box = rec.get("bbox", rec.get("box"))
    if box is not None:
        try:
            b = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            b = np.zeros(0)
        if b.size >= 4 and np.isfinite(b[:4]).all():
            if corners:  # MMPose: x1, y1, x2, y2
                return np.array([b[0], b[1], max(b[2], b[0]), max(b[3], b[1])])
            return np.array([b[0], b[1], b[0] + max(b[2], 0), b[1] + max(b[3], 0)])  # COCO: x, y, w, h
    usable = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(-1)
    finite = np.isfinite(kp[:, :2]).all(-1)
    seen = kp[usable, :2] if usable.any() else kp[finite, :2]
    if not len(seen):
        return np.zeros(4)
    return np.concatenate([seen.min(0), seen.max(0)])


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def _json_records(path: str, doc) -> Tuple[List[dict], bool, Dict]:
    """Flat list of detections (each with a frame key and flat keypoints), whether boxes are
    corners, and what the file says about itself (size, fps, joints, frames)."""
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
        return recs, True, {}
    if isinstance(doc, dict) and "annotations" in doc:  # a COCO keypoint file
        return list(doc["annotations"]), False, _coco_file_info(path, doc)
    if isinstance(doc, list):
        return doc, False, {}
    raise DataError(path, "expected a list of detections (COCO results), or MMPose's 'instance_info'")


_NAMED_SETS = {tuple(COCO_JOINTS): "coco", tuple(BLAZEPOSE_JOINTS): "blazepose"}


def _coco_file_info(path: str, doc: dict) -> Dict:
    """Image size (``images`` width/height, when all agree), frame count (the largest image id + 1),
    frame rate (``info["fps"]``) and joint set (the first category's ``keypoints`` names)."""
    out: Dict = {}
    images = doc.get("images") or []
    sizes = {(im.get("width"), im.get("height")) for im in images if isinstance(im, dict)}
    if len(sizes) == 1:
        w, h = sizes.pop()
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
            out["size"] = (int(w), int(h))
    ids = [im.get("id") for im in images if isinstance(im, dict)]
    if ids and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        out["frames"] = max(ids) + 1
    fps = (doc.get("info") or {}).get("fps") if isinstance(doc.get("info"), dict) else None
    if fps is not None:
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
            raise DataError(path, f"info.fps must be a positive number, got {fps!r}")
        out["fps"] = float(fps)
    cats = doc.get("categories") or []
    if cats and isinstance(cats[0], dict):
        names = tuple(str(n).lower() for n in cats[0].get("keypoints") or ())
        from stcformer.data.skeleton import H36M_JOINTS

        joints = _NAMED_SETS.get(names) or ("h36m" if names == tuple(n.lower() for n in H36M_JOINTS) else None)
        if joints:
            out["joints"] = joints
    return out


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


@dataclass
class _Detection:
    frame: int
    track: Optional[int]
    box: np.ndarray      # (4,) x1, y1, x2, y2
    area: float
    kp: np.ndarray       # (J, 3) x, y, score


def _json_detections(path: str) -> Tuple[List[_Detection], int, Dict]:
    """Every detection of a JSON file, the number of frames and the file's own info."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except Exception as exc:
        raise DataError(path, f"not a readable JSON file ({_short(exc)})") from None
    recs, corners, info = _json_records(path, doc)
    if not recs:
        raise DataError(path, "no people: the file lists no detections")
    dets = []
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
        box = _box(rec, kp, corners)
        dets.append(_Detection(frame, _track_id(rec), box, _area(box), kp))
    if len(sizes) > 1:
        raise DataError(path, f"detections have different joint counts: {sorted(sizes)}")
    J = sizes.pop()
    T = max(max(d.frame for d in dets) + 1, info.pop("frames", 0))
    if "joints" not in info and J == 17:
        info["joints"] = "coco"
    if info.get("joints") and NUM_JOINTS[info["joints"]] != J:
        raise DataError(path, f"the category names {NUM_JOINTS[info['joints']]} {info['joints']} joints, "
                              f"but detections have {J}")
    return dets, T, info


def _fill(T: int, dets: List[_Detection]) -> Tuple[np.ndarray, np.ndarray]:
    """(T, J, 2) pixels and (T, J) scores of one person: the largest box of each frame's detections."""
    J = len(dets[0].kp)
    xy = np.full((T, J, 2), np.nan, dtype=np.float32)
    sc = np.zeros((T, J), dtype=np.float32)
    best: Dict[int, _Detection] = {}
    for d in dets:
        if d.frame not in best or d.area > best[d.frame].area:
            best[d.frame] = d
    for f, d in best.items():
        xy[f] = d.kp[:, :2]
        sc[f] = d.kp[:, 2]
    return xy, sc


def _read_json(path: str, person) -> tuple:
    dets, T, info = _json_detections(path)
    per_frame: Dict[int, list] = {}
    for d in dets:
        per_frame.setdefault(d.frame, []).append(d)
    people = max(len(v) for v in per_frame.values())
    notes = []
    if all(d.track is not None for d in dets):
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
        notes.append(f"person: track {pick} ({why}), detected in {frames} of {T} frames")
    else:
        rank = 0 if person is None else person
        if rank < 0:
            raise UsageError(f"--person must be >= 0, got {person}")
        chosen = []
        for f, ds in per_frame.items():
            ds = sorted(ds, key=lambda d: -d.area)
            if rank < len(ds):
                chosen.append(ds[rank])
        if not chosen:
            raise DataError(path, f"no frame has {rank + 1} people (at most {people})")
        what = "the largest box" if rank == 0 else f"the box ranked {rank + 1} by area"
        notes.append(f"person: {what} in each frame (no track ids; up to {people} people per frame), "
                     f"detected in {len(chosen)} of {T} frames")
    xy, sc = _fill(T, chosen)
    info["notes"] = notes
    return xy, sc, info


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _joint_distance(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Mean distance of the joints both detections score, over ``scale`` (inf when none is shared)."""
    both = (a[:, 2] > 0) & (b[:, 2] > 0) & np.isfinite(a[:, :2]).all(-1) & np.isfinite(b[:, :2]).all(-1)
    if not both.any() or scale <= 0:
        return np.inf
    return float(np.linalg.norm(a[both, :2] - b[both, :2], axis=-1).mean() / scale)


def link_tracks(dets: List[_Detection], max_gap: int = 10, min_iou: float = 0.3,
                max_distance: float = 0.5) -> List[int]:
    """Track ids for detections without any: each frame's detections are matched greedily, best
    first, to the tracks seen in the previous ``max_gap`` frames, by box overlap (IoU at least
    ``min_iou``) or else by the mean distance of shared joints (at most ``max_distance`` times the
    square root of the track's last box area); an unmatched detection starts a new track. Ids are
    0, 1, ... in order of first appearance."""
    order = sorted(range(len(dets)), key=lambda i: dets[i].frame)
    ids = [0] * len(dets)
    last: Dict[int, _Detection] = {}  # track id -> its latest detection
    i = 0
    while i < len(order):
        f = dets[order[i]].frame
        j = i
        while j < len(order) and dets[order[j]].frame == f:
            j += 1
        here = order[i:j]
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
        taken_d, taken_t = set(), set()
        for _, k, t in sorted(pairs):
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


def read_tracks(path, format: Optional[str] = None, joints: Optional[str] = None) -> List[Keypoints]:
    """Every person of a multi-person JSON file, one :class:`Keypoints` per track (``.track`` its id),
    each with all the file's frames (NaN and score 0 where the person is not detected).

    Tracks are the file's ``idx``/``track_id`` where every detection has one, else linked frame to
    frame by :func:`link_tracks`. Other formats hold one person: a list of one.
    """
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown keypoint format '{format}' (one of {', '.join(FORMATS)})")
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    fmt = format or detect_format(path)
    if fmt != "json":
        kp = read_keypoints(path, format=fmt, joints=joints)
        kp.track = 0
        kp.notes.append(f"every person: a {fmt} file holds one person")
        return [kp]
    dets, T, info = _json_detections(path)
    if all(d.track is not None for d in dets):
        ids, how = [d.track for d in dets], "track ids of the file"
    else:
        ids, how = link_tracks(dets), "boxes linked frame to frame"
    tracks: Dict[int, list] = {}
    for d, t in zip(dets, ids):
        tracks.setdefault(t, []).append(d)
    out = []
    for t in sorted(tracks):
        xy, sc = _fill(T, tracks[t])
        out.append(convert_keypoints(xy, sc, joints or info.get("joints"), path=path, format=fmt,
                                     fps=info.get("fps"), size=info.get("size"), track=t))
    out[0].notes.append(f"every person: {len(out)} tracks ({how})")
    return out


def write_coco_keypoints(path, xy: np.ndarray, scores: np.ndarray, size, fps=None, joints: str = "blazepose",
                         track: int = 0, description: str = "") -> None:
    """Write one person's raw keypoints (T, J, 2) pixels and (T, J) scores of ``joints`` as a COCO
    keypoint file (atomically): ``images`` (one per frame, id = frame number, with the image size),
    ``annotations`` (one per frame with a detection: flat x, y, score triples, ``bbox`` around the
    scored joints, ``track_id``), ``categories`` (the joint names) and ``info`` (``fps``,
    ``description``). :func:`read_keypoints` reads it back to the same values, size and frame rate."""
    from stcformer.data.skeleton import H36M_JOINTS
    from stcformer.io import atomic_write

    names = {"coco": COCO_JOINTS, "blazepose": BLAZEPOSE_JOINTS, "h36m": tuple(H36M_JOINTS)}[joints]
    xy = np.asarray(xy, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    w, h = (int(v) for v in size)
    images, anns = [], []
    for f in range(len(xy)):
        images.append({"id": f, "file_name": f"frame_{f:06d}", "width": w, "height": h})
        seen = np.isfinite(xy[f]).all(-1) & (scores[f] > 0)
        if not seen.any():
            continue  # no detection in this frame: only its image entry
        pts = np.where(np.isfinite(xy[f]), xy[f], 0.0)
        kp = np.concatenate([pts, np.where(np.isfinite(scores[f]), scores[f], 0.0)[:, None]], 1)
        lo, hi = xy[f][seen].min(0), xy[f][seen].max(0)
        box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
        anns.append({"id": len(anns) + 1, "image_id": f, "category_id": 1, "track_id": int(track),
                     "keypoints": [float(v) for v in kp.reshape(-1)], "num_keypoints": int(seen.sum()),
                     "score": float(scores[f][seen].mean()), "bbox": box, "area": box[2] * box[3]})
    doc = {"info": {"description": description, "fps": None if fps is None else float(fps)},
           "categories": [{"id": 1, "name": "person", "keypoints": list(names), "skeleton": []}],
           "images": images, "annotations": anns}

    def write(tmp):  # compact (an indented file holds one number per line), one entry per line
        with open(tmp, "w") as f:
            f.write("{\n")
            for i, (key, value) in enumerate(doc.items()):
                if isinstance(value, list) and key != "categories":
                    body = ",\n".join(json.dumps(v) for v in value)
                    f.write(f'"{key}": [\n{body}\n]')
                else:
                    f.write(f'"{key}": {json.dumps(value)}')
                f.write(",\n" if i < len(doc) - 1 else "\n")
            f.write("}\n")

    atomic_write(path, write, ".json")


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
        xy, sc = _split_scores("<array>", np.asarray(data, dtype=np.float32))
        kp = convert_keypoints(xy, sc, joints)
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


__all__ = ["Keypoints", "GapReport", "FORMATS", "JOINT_SETS", "read_keypoints", "read_tracks", "detect_format",
           "convert_keypoints", "write_coco_keypoints", "link_tracks", "coco_to_h36m", "halpe26_to_h36m",
           "blazepose_to_h36m", "BLAZEPOSE_JOINTS", "BLAZEPOSE_TO_COCO", "to_h36m", "fill_gaps", "as_keypoints", "window_stride",
           "savgol", "jitter"]
