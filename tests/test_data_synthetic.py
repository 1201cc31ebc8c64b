"""Synthetic data: layout, skeleton plausibility, camera projection and detector-like noise."""
import os
import subprocess
import sys

import numpy as np
import pytest

from stcformer.data import motion
from stcformer.data.cameras import h36m_cameras, project_to_2d, world_to_camera
from stcformer.data.h36m import load_h36m
from stcformer.data.mpi3dhp import load_3dhp
from stcformer.data.skeleton import H36M_ACTIONS, H36M_KEPT_OF_32, H36M_PARENTS
from stcformer.data.synthetic import write_3dhp, write_h36m


def test_cli_writes_the_h36m_layout(tmp_path):
    out = tmp_path / "syn"
    r = subprocess.run([sys.executable, "-m", "stcformer.data.synthetic", "--out", str(out), "--frames", "6",
                        "--takes", "2", "--subjects", "S1,S9,S11"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["data_2d_h36m_gt.npz", "data_2d_h36m_synth_det.npz", "data_3d_h36m.npz"]
    with np.load(out / "data_3d_h36m.npz", allow_pickle=True) as z:
        pos = z["positions_3d"].item()
    assert sorted(pos) == ["S1", "S11", "S9"]
    assert len(pos["S9"]) == 30 and "Walking 1" in pos["S9"] and "WalkingDog" in pos["S1"]
    assert all(v.shape[1:] == (32, 3) and v.dtype == np.float32 for v in pos["S9"].values())
    with np.load(out / "data_2d_h36m_synth_det.npz", allow_pickle=True) as z:
        meta = z["metadata"].item()
        det = z["positions_2d"].item()
    assert meta["keypoints_symmetry"] == [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
    assert len(det["S9"]["Eating"]) == 4 and det["S9"]["Eating"][0].shape[1:] == (17, 2)
    data = load_h36m(out, "synth_det", train_subjects=("S1",))
    assert {s.group for s in data.test} == set(H36M_ACTIONS)


@pytest.mark.parametrize("action", H36M_ACTIONS)
def test_motion_is_plausible(action):
    rng = np.random.default_rng(3)
    bones = motion.subject_bones(rng)
    pose = motion.sequence(action, 150, bones, rng)
    # rigid bones
    for j in range(1, 17):
        length = np.linalg.norm(pose[:, j] - pose[:, H36M_PARENTS[j]], axis=-1)
        assert length.std() < 1e-4
    # standing on the floor, head above the hips, inside the capture area
    feet = np.minimum(pose[:, 3, 2], pose[:, 6, 2])
    np.testing.assert_allclose(feet, motion.ANKLE_HEIGHT, atol=1e-5)
    assert np.all(pose[:, 10, 2] > pose[:, 0, 2] + 0.3)
    assert np.all(np.abs(pose[:, 0, :2]) < 2.5)
    # smooth: at 50 fps no joint moves more than 15 cm between frames
    assert np.linalg.norm(np.diff(pose, axis=0), axis=-1).max() < 0.15
    walking = action in ("Walking", "WalkDog", "WalkTogether")
    travelled = np.linalg.norm(np.diff(pose[:, 0, :2], axis=0), axis=-1).sum()
    assert (travelled > 2.0) if walking else (travelled < 2.0)


def test_projection_and_noise(tmp_path):
    write_h36m(tmp_path, subjects=("S9", "S11", "S1", "S5", "S6", "S7", "S8"), frames=40, takes=1, seed=2)
    with np.load(tmp_path / "data_3d_h36m.npz", allow_pickle=True) as z:
        world = z["positions_3d"].item()["S9"]["Walking"][:, list(H36M_KEPT_OF_32)]
    with np.load(tmp_path / "data_2d_h36m_gt.npz", allow_pickle=True) as z:
        gt = z["positions_2d"].item()["S9"]["Walking"]
    with np.load(tmp_path / "data_2d_h36m_synth_det.npz", allow_pickle=True) as z:
        det = z["positions_2d"].item()
    for cam, view in zip(h36m_cameras("S9"), gt):
        np.testing.assert_allclose(view, project_to_2d(world_to_camera(world, cam.orientation, cam.translation),
                                                       cam.intrinsic), atol=1e-3)
    with np.load(tmp_path / "data_2d_h36m_gt.npz", allow_pickle=True) as z:
        allgt = z["positions_2d"].item()
    err = np.concatenate([np.linalg.norm(det[s][a][c] - allgt[s][a][c], axis=-1).ravel()
                          for s in det for a in det[s] for c in range(4)])
    assert 2.0 < np.median(err) < 8.0     # a few pixels, like a good 2D detector
    assert err.max() > 10.0               # with occasional outliers


def test_3dhp_layout(tmp_path):
    write_3dhp(tmp_path, frames=10, sequences_per_subject=1)
    data = load_3dhp(tmp_path)
    assert len(data.train) == 8 * 4 and [s.subject for s in data.test] == [f"TS{i}" for i in range(1, 7)]
    # mm, a person-sized skeleton around the pelvis
    assert 300 < np.abs(data.test[0].poses[:, 0]).max() < 1500
    assert all(s.valid.dtype == bool for s in data.test)
