"""MPI-INF-3DHP in the P-STMO npz layout.

Files in the data directory:
    data_train_3dhp.npz  data: {"S1 Seq1": [{camera: {"data_2d": (F,17,2) px, "data_3d": (F,17,3) mm}}, fps], ...}
    data_test_3dhp.npz   data: {"TS1": {"data_2d": (N,17,2) px, "data_3d": (N,17,3) mm, "valid": (N,)}, ...}

Joints are the 17 "relevant" MPI joints with the pelvis (root) at index 14. 3D stays in
millimetres (the official 3DHP model is trained on mm), non-root joints relative to the pelvis.
2D is normalised like Human3.6M with w = h = 2048, except TS5/TS6 (1920 x 1080). Windows use
consecutive frames (tds = 1); test centres are the valid frames only.
"""
from __future__ import annotations

import os
from typing import List

import numpy as np

from stcformer.data.cameras import normalize_screen_coordinates
from stcformer.data.dataset import PoseData, PoseSequence
from stcformer.errors import DataError
from stcformer.data.npz import check_array, load_npz_dict
from stcformer.data.skeleton import MPI3DHP_LEFT, MPI3DHP_RES, MPI3DHP_RES_OUTDOOR, MPI3DHP_RIGHT, MPI3DHP_ROOT

TRAIN_FILE = "data_train_3dhp.npz"
TEST_FILE = "data_test_3dhp.npz"


def _root_relative(poses: np.ndarray) -> np.ndarray:
    """Every joint but the pelvis relative to the pelvis; the pelvis keeps its position."""
    poses = poses.copy()
    root = poses[:, MPI3DHP_ROOT:MPI3DHP_ROOT + 1].copy()
    poses -= root
    poses[:, MPI3DHP_ROOT:MPI3DHP_ROOT + 1] = root
    return poses


def _check_pair(path, where, d2, d3):
    d2 = check_array(path, f"{where}['data_2d']", d2, (None, 17, 2))
    d3 = check_array(path, f"{where}['data_3d']", d3, (None, 17, 3))
    if len(d2) != len(d3):
        raise DataError(path, f"{where}: data_2d has {len(d2)} frames but data_3d has {len(d3)}")
    if len(d2) == 0:
        raise DataError(path, f"{where} has no frames")
    return d2, d3


def _load_data(data_dir, file: str, example: str):
    """(path, the non-empty dict under key 'data') of one of the two files."""
    path = os.path.join(os.fspath(data_dir), file)
    data = load_npz_dict(path, "data")
    if not isinstance(data, dict) or not data:
        raise DataError(path, f"'data' must be a non-empty dict {{{example}, ...}}")
    return path, data


def load_train(data_dir) -> List[PoseSequence]:
    path, data = _load_data(data_dir, TRAIN_FILE, "'S1 Seq1': [cameras, fps]")
    sequences = []
    for name, entry in data.items():
        cams = entry[0] if isinstance(entry, (list, tuple, np.ndarray)) and len(entry) else entry
        if not isinstance(cams, dict) or not cams:
            raise DataError(path, f"data[{name!r}] must be [{{camera: {{'data_2d', 'data_3d'}}}}, fps]")
        subject, _, seq = str(name).partition(" ")
        for cam, anim in cams.items():
            where = f"data[{name!r}][0][{cam!r}]"
            if not isinstance(anim, dict) or "data_2d" not in anim or "data_3d" not in anim:
                raise DataError(path, f"{where} must hold 'data_2d' and 'data_3d'")
            d2, d3 = _check_pair(path, where, anim["data_2d"], anim["data_3d"])
            sequences.append(PoseSequence(
                subject=subject, action=seq or subject, camera=str(cam),
                keypoints=normalize_screen_coordinates(d2, MPI3DHP_RES, MPI3DHP_RES),
                poses=_root_relative(d3)))
    return sequences


def load_test(data_dir) -> List[PoseSequence]:
    path, data = _load_data(data_dir, TEST_FILE, "'TS1': {...}")
    sequences = []
    for name, anim in data.items():
        where = f"data[{name!r}]"
        if not isinstance(anim, dict) or not {"data_2d", "data_3d", "valid"} <= set(anim):
            raise DataError(path, f"{where} must hold 'data_2d', 'data_3d' and 'valid'")
        d2, d3 = _check_pair(path, where, anim["data_2d"], anim["data_3d"])
        valid = check_array(path, f"{where}['valid']", np.asarray(anim["valid"]).reshape(-1), (len(d2),))
        w, h = MPI3DHP_RES_OUTDOOR.get(str(name), (MPI3DHP_RES, MPI3DHP_RES))
        sequences.append(PoseSequence(
            subject=str(name), action=str(name), camera="",
            keypoints=normalize_screen_coordinates(d2, w, h),
            poses=_root_relative(d3), valid=valid.astype(bool)))
    if not any(s.valid.any() for s in sequences):
        raise DataError(path, "no valid test frames")
    return sequences


def load_3dhp(data_dir, train: bool = True, test: bool = True) -> PoseData:
    """Load MPI-INF-3DHP (P-STMO npz files). Raises DataError naming the file and the problem."""
    data_dir = os.fspath(data_dir)
    return PoseData(
        name="3dhp",
        train=load_train(data_dir) if train else [],
        test=load_test(data_dir) if test else [],
        root=MPI3DHP_ROOT, left=MPI3DHP_LEFT, right=MPI3DHP_RIGHT, unit_to_mm=1.0)


__all__ = ["load_3dhp", "load_train", "load_test", "TRAIN_FILE", "TEST_FILE"]
