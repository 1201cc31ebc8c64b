"""Synthetic data in the Human3.6M (VideoPose3D) layout, and optionally the 3DHP (P-STMO) one.

    python -m stcformer.data.synthetic --out DIR     (the program: stcformer.cli.synthetic)

writes DIR/data_3d_h36m.npz (world poses, 32 joints, metres), DIR/data_2d_h36m_gt.npz (exact
projections) and DIR/data_2d_h36m_synth_det.npz (projections with detector-like noise), for
subjects S1, S5, S6, S7, S8, S9, S11 and all 15 actions, each action performed twice
("Walking" and "Walking 1", as in the real files). Poses come from the kinematic model in
:mod:`stcformer.data.motion` with per-subject bone lengths; they are projected through the real
Human3.6M cameras of each subject (lens distortion included). The detector-like noise is
per-joint, temporally correlated jitter (larger at the extremities) plus rare short outlier
bursts, as 2D detectors produce.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from stcformer.data.cameras import h36m_cameras, project_to_2d, world_to_camera
from stcformer.io import write_npz
from stcformer.settings import cache_root
from stcformer.data.motion import sequence, subject_bones
from stcformer.data.skeleton import (H36M_ACTIONS, H36M_KEPT_OF_32, H36M_LEFT, H36M_PARENTS_32, H36M_RIGHT,
                       H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS, MPI3DHP_FROM_H36M, MPI3DHP_TEST_SEQUENCES)

DETECTIONS = "synth_det"
# detector noise (pixels, one sigma) per H36M-17 joint: extremities are noisier
JOINT_SIGMA_PX = np.array([3.0, 3.0, 3.5, 4.5, 3.0, 3.5, 4.5, 3.0, 2.5, 2.5, 3.0,
                           3.0, 4.0, 5.5, 3.0, 4.0, 5.5])
# names S1 uses for two actions in the real files (other subjects use the short names)
S1_NAMES = {"Photo": "TakingPhoto", "WalkDog": "WalkingDog"}


def _to_32(pose17: np.ndarray) -> np.ndarray:
    """Fill the 15 unused mocap joints with the position of their nearest kept ancestor."""
    out = np.zeros(pose17.shape[:-2] + (32, 3), dtype=pose17.dtype)
    kept = {j32: j17 for j17, j32 in enumerate(H36M_KEPT_OF_32)}
    for j in range(32):
        a = j
        while a not in kept:
            a = H36M_PARENTS_32[a]
        out[..., j, :] = pose17[..., kept[a], :]
    return out


def detector_noise(rng: np.random.Generator, num_frames: int, scale: float = 1.0,
                   sigma_px: np.ndarray = JOINT_SIGMA_PX) -> np.ndarray:
    """(F, J, 2) pixel noise: AR(1) jitter (rho 0.8) per joint plus rare outlier bursts."""
    j = len(sigma_px)
    rho = 0.8
    white = rng.normal(size=(num_frames, j, 2)) * np.sqrt(1 - rho ** 2)
    ar = np.empty_like(white)
    ar[0] = rng.normal(size=(j, 2))
    for f in range(1, num_frames):
        ar[f] = rho * ar[f - 1] + white[f]
    noise = ar * sigma_px[None, :, None] + 0.7 * rng.normal(size=(num_frames, j, 2))
    # outliers: about 0.3% of (frame, joint) start a 1-5 frame burst of 12-35 px
    starts = np.argwhere(rng.random((num_frames, j)) < 0.003)
    for f, jj in starts:
        length = rng.integers(1, 6)
        noise[f:f + length, jj] += rng.normal(size=2) / np.sqrt(2) * rng.uniform(12, 35)
    return noise * scale


def _lengths(rng, frames: int, count: int) -> np.ndarray:
    lo, hi = max(2, int(round(frames * 0.75))), max(3, int(round(frames * 1.25)))
    return rng.integers(lo, hi + 1, size=count)


def make_motions(subjects: Sequence[str], frames: int, takes: int, seed: int) -> Dict:
    """{subject: {action name: (F, 17, 3) world metres}} for every action, ``takes`` takes each."""
    rng = np.random.default_rng(seed)
    out = {}
    for subject in subjects:
        srng = np.random.default_rng([seed, int(subject.lstrip("S") or 0)])
        bones = subject_bones(srng)
        out[subject] = {}
        for action in H36M_ACTIONS:
            base = S1_NAMES.get(action, action) if subject == "S1" else action
            for take, n in enumerate(_lengths(rng, frames, takes)):
                name = base if take == 0 else f"{base} {take}"
                out[subject][name] = sequence(action, int(n), bones, srng)
    return out


def _savez(path: str, **arrays):
    write_npz(path, compressed=True, **arrays)


def write_h36m(out_dir, subjects: Sequence[str] = H36M_TRAIN_SUBJECTS + H36M_TEST_SUBJECTS,
               frames: int = 300, takes: int = 2, seed: int = 0, noise: float = 1.0) -> Dict[str, str]:
    """Write the three Human3.6M-layout files; returns {name: path}.

    frames: mean frames per take (each take has 0.75x to 1.25x that many, at 50 fps).
    takes: performances per action and subject. noise: scale of the detector noise.
    """
    os.makedirs(out_dir, exist_ok=True)
    motions = make_motions(subjects, frames, takes, seed)
    rng = np.random.default_rng([seed, 2])
    pos3d, gt2d, det2d = {}, {}, {}
    for subject, actions in motions.items():
        cams = h36m_cameras(subject)
        pos3d[subject], gt2d[subject], det2d[subject] = {}, {}, {}
        for name, world in actions.items():
            pos3d[subject][name] = _to_32(world)
            views = [project_to_2d(world_to_camera(world, c.orientation, c.translation), c.intrinsic)
                     for c in cams]
            gt2d[subject][name] = [v.astype(np.float32) for v in views]
            det2d[subject][name] = [(v + detector_noise(rng, len(v), noise)).astype(np.float32)
                                    for v in views]
    meta = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [list(H36M_LEFT), list(H36M_RIGHT)]}
    paths = {"3d": os.path.join(out_dir, "data_3d_h36m.npz"),
             "gt": os.path.join(out_dir, "data_2d_h36m_gt.npz"),
             DETECTIONS: os.path.join(out_dir, f"data_2d_h36m_{DETECTIONS}.npz")}
    _savez(paths["gt"], positions_2d=np.array(gt2d, dtype=object), metadata=np.array(meta, dtype=object))
    _savez(paths[DETECTIONS], positions_2d=np.array(det2d, dtype=object), metadata=np.array(meta, dtype=object))
    _savez(paths["3d"], positions_3d=np.array(pos3d, dtype=object))  # last: marks the set complete
    return paths


def _look_at(azimuth: float, distance: float, height: float):
    """World->camera rotation and centre of a camera on a circle, looking at (0, 0, 1)."""
    pos = np.array([distance * np.sin(azimuth), -distance * np.cos(azimuth), height])
    fwd = np.array([0.0, 0.0, 1.0]) - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd]), pos


def _pinhole(world: np.ndarray, azimuth: float, res: tuple, focal: float = 1500.0):
    rot, pos = _look_at(azimuth, 4.5, 1.2)
    cam = (world - pos) @ rot.T
    px = focal * cam[..., :2] / cam[..., 2:3] + np.array(res) / 2
    return px.astype(np.float32), (cam * 1000).astype(np.float32)


def write_3dhp(out_dir, frames: int = 100, cameras: Sequence[str] = ("0", "2", "5", "8"),
               sequences_per_subject: int = 2, seed: int = 0, noise: float = 1.0) -> Dict[str, str]:
    """Write data_train_3dhp.npz / data_test_3dhp.npz in the P-STMO layout (synthetic, mm, px)."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    to3dhp = list(MPI3DHP_FROM_H36M)
    sigma = JOINT_SIGMA_PX[to3dhp]

    def views(world, azimuth, res):
        px, mm = _pinhole(world[:, to3dhp], azimuth, res)
        return (px + detector_noise(rng, len(px), noise, sigma)).astype(np.float32), mm

    train = {}
    for s in range(1, 9):
        bones = subject_bones(rng)
        for q in range(1, sequences_per_subject + 1):
            cams = {}
            action = H36M_ACTIONS[rng.integers(len(H36M_ACTIONS))]
            world = sequence(action, int(_lengths(rng, frames, 1)[0]), bones, rng)
            for cam in cameras:
                d2, d3 = views(world, 2 * np.pi * int(cam) / 9, (2048, 2048))
                cams[cam] = {"data_2d": d2, "data_3d": d3}
            train[f"S{s} Seq{q}"] = [cams, 25 if s % 2 else 50]
    test = {}
    for i, name in enumerate(MPI3DHP_TEST_SEQUENCES):
        bones = subject_bones(rng)
        action = H36M_ACTIONS[rng.integers(len(H36M_ACTIONS))]
        world = sequence(action, int(_lengths(rng, frames, 1)[0]), bones, rng)
        res = (1920, 1080) if name in ("TS5", "TS6") else (2048, 2048)
        d2, d3 = views(world, rng.uniform(0, 2 * np.pi), res)
        valid = (rng.random(len(d2)) > 0.1).astype(np.float64)
        test[name] = {"data_2d": d2, "data_3d": d3, "valid": valid}
    paths = {"train": os.path.join(out_dir, "data_train_3dhp.npz"),
             "test": os.path.join(out_dir, "data_test_3dhp.npz")}
    _savez(paths["train"], data=np.array(train, dtype=object))
    _savez(paths["test"], data=np.array(test, dtype=object))
    return paths


def synthetic_cache_dir(name: str, frames: int, takes: int) -> str:
    """Where the synthetic stand-in of dataset ``name`` is cached ($STCFORMER_CACHE or ~/.cache/stcformer)."""
    root = cache_root()
    return os.path.join(root, f"synthetic_{name}_v1_f{frames}_t{takes}")
