"""Joint sets of 2D detectors and their conversion to Human3.6M-17, the model's input order.

Joint sets (:data:`JOINT_SETS`): ``h36m`` (17, Human3.6M order), ``coco`` (17, COCO order,
converted by :func:`coco_to_h36m` as the official demo does), ``halpe26`` (26, AlphaPose's Halpe
body set, the input of MotionBERT; also the first 26 joints of Halpe-136; :func:`halpe26_to_h36m`)
and ``blazepose`` (33, MediaPipe BlazePose; :func:`blazepose_to_h36m`). :func:`to_h36m` converts
positions and scores together: a derived joint scores the lowest of the joints it comes from.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from stcformer.choices import JOINT_SETS
from stcformer.data.skeleton import H36M_JOINTS

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

# the joint names a COCO keypoint file's category lists, for the sets that have them
JOINT_NAMES = {"h36m": tuple(H36M_JOINTS), "coco": COCO_JOINTS, "blazepose": BLAZEPOSE_JOINTS}


def joint_set_named(names: Iterable[str]) -> Optional[str]:
    """The joint set whose names (any case) are ``names`` in order, else None."""
    names = tuple(str(n).lower() for n in names)
    for joints, known in JOINT_NAMES.items():
        if names == tuple(n.lower() for n in known):
            return joints
    return None


def _copied(a: np.ndarray, pairs: Sequence[Tuple[int, int]]) -> np.ndarray:
    """(..., 17, C) zeros of ``a``'s dtype with Human3.6M joint ``dst`` copied from ``a``'s ``src``."""
    h = np.zeros(a.shape[:-2] + (17, a.shape[-1]), dtype=a.dtype)
    for dst, src in pairs:
        h[..., dst, :] = a[..., src, :]
    return h


def coco_to_h36m(kpts: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (..., 17, 2) -> Human3.6M-17, as the official demo's preprocessing.

    Limbs are copied; pelvis = mid-hip; thorax = a third of the way from mid-shoulder to the nose,
    raised by two thirds of the eyes' height above the nose; neck/nose = a quarter of the way from
    the nose down to mid-shoulder; head = mean x of eyes and ears, y = eye + eye - nose; spine =
    the mean of shoulders and hips, its x pushed away from the pelvis-thorax midpoint (x3).
    """
    c = np.asarray(kpts)
    h = _copied(c, ((9, 0), (11, 5), (14, 6), (12, 7), (15, 8), (13, 9), (16, 10), (4, 11),
                    (1, 12), (5, 13), (2, 14), (6, 15), (3, 16)))
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
    h = _copied(a, ((0, 19), (1, 12), (2, 14), (3, 16), (4, 11), (5, 13), (6, 15), (8, 18), (10, 17),
                    (11, 5), (12, 7), (13, 9), (14, 6), (15, 8), (16, 10)))
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
    h = _copied(a, ((1, 24), (2, 26), (3, 28), (4, 23), (5, 25), (6, 27), (9, 0), (11, 11), (12, 13), (13, 15),
                    (14, 12), (15, 14), (16, 16)))
    h[..., 0, :] = (a[..., 23, :] + a[..., 24, :]) / 2
    h[..., 8, :] = (a[..., 11, :] + a[..., 12, :]) / 2
    h[..., 7, :] = (h[..., 0, :] + h[..., 8, :]) / 2
    h[..., 10, :] = a[..., 2, :] + a[..., 5, :] - a[..., 0, :]
    h[..., 10, 0] = a[..., [2, 5, 7, 8], 0].mean(-1)
    return h


BLAZEPOSE_SOURCES = ((23, 24), (24,), (26,), (28,), (23,), (25,), (27,), (11, 12, 23, 24), (11, 12), (0,),
                     (0, 2, 5, 7, 8), (11,), (13,), (15,), (12,), (14,), (16,))

# each joint set's conversion and, per Human3.6M joint, the joints it is computed from
CONVERSIONS = {"coco": (coco_to_h36m, COCO_SOURCES), "halpe26": (halpe26_to_h36m, HALPE26_SOURCES),
               "blazepose": (blazepose_to_h36m, BLAZEPOSE_SOURCES)}


def to_h36m(xy: np.ndarray, scores: np.ndarray, joints: str) -> Tuple[np.ndarray, np.ndarray]:
    """(T, J, 2) pixels and (T, J) scores of ``joints`` -> Human3.6M-17; a derived joint's score is
    the lowest of the joints it is computed from."""
    if joints == "h36m":
        return xy, scores
    convert, sources = CONVERSIONS[joints]
    out = convert(xy).astype(np.float32)
    sc = np.stack([scores[:, list(src)].min(-1) for src in sources], axis=-1).astype(np.float32)
    return out, sc


__all__ = ["JOINT_SETS", "NUM_JOINTS", "COCO_JOINTS", "BLAZEPOSE_JOINTS", "BLAZEPOSE_TO_COCO", "HALPE26_EXTRA",
           "JOINT_NAMES", "joint_set_named", "coco_to_h36m", "halpe26_to_h36m", "blazepose_to_h36m", "to_h36m"]
