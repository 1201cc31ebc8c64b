"""stcformer.export.poses (the files of one lifted person), the smoothing windows and
stcformer.infer.pipeline.fitted_root, called as a library."""
import json

import numpy as np
import pytest

from stcformer.export.bvh import bvh_text, root_trajectory
from stcformer.export.poses import LiftSettings, PoseTrack, pose_arrays, pose_document, write_pose_files
from stcformer.export.render import z_up
from stcformer.export.smoothing import savgol, smooth_poses, smoothing_window, trajectory_window
from stcformer.infer.pipeline import fitted_root

HOW = LiftSettings(fps=25.0, size=(1000, 800), frames=9, tds=2, mode="center", focal=1000.0)


def _track(T=12, first=3, n=5, track=4, seed=0):
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=0.3, size=(n, 17, 3)).astype(np.float32)
    poses[:, 0] = 0
    filled = rng.uniform(size=(n, 17)) < 0.2
    return PoseTrack(poses=poses, keypoints=rng.uniform(100, 700, size=(n, 17, 2)).astype(np.float32),
                     filled=filled, root=rng.normal(size=(n, 3)) + [0, 0, 5],
                     scores=rng.uniform(0.5, 1, size=(T, 17)).astype(np.float32), first=first, track=track)


def test_z_up_turns_camera_axes():
    p = np.random.default_rng(1).normal(size=(4, 17, 3)).astype(np.float32)
    p[1] = np.nan
    np.testing.assert_array_equal(z_up(p), np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1))
    assert z_up(p).dtype == np.float32


def test_span_track_covers_the_sequence():
    t = _track()
    assert (t.total, t.first, t.last) == (12, 3, 7)
    a = pose_arrays(t, HOW)
    rec = a["reconstruction"]
    assert rec.shape == (12, 17, 3)
    np.testing.assert_array_equal(rec[3:8], t.poses)
    assert np.isnan(rec[:3]).all() and np.isnan(rec[8:]).all()
    np.testing.assert_array_equal(a["lifted"], (np.arange(12) >= 3) & (np.arange(12) <= 7))
    assert list(a["span"]) == [3, 7] and int(a["track"]) == 4 and float(a["fps"]) == 25
    assert not a["filled"][:3].any() and (a["filled"][3:8] == t.filled).all()
    np.testing.assert_array_equal(a["reconstruction_z_up"], z_up(rec))
    np.testing.assert_array_equal(t.held(t.poses)[:4], np.repeat(t.poses[:1], 4, 0))
    np.testing.assert_array_equal(t.held(t.poses)[7:], np.repeat(t.poses[-1:], 5, 0))


def test_one_person_has_no_span_fields():
    t = _track(T=6, first=0, n=6, track=None)
    a = pose_arrays(t, LiftSettings(None, (640, 480), 9, 3, "seq2seq", 640.0))
    assert not {"track", "span", "lifted", "fps"} & set(a)
    np.testing.assert_array_equal(a["reconstruction"], t.poses)
    assert str(a["mode"]) == "seq2seq" and list(a["size"]) == [640, 480]
    doc = pose_document(t, HOW)
    assert "track" not in doc and "span" not in doc and doc["fps"] == 25.0


def test_written_files_agree(tmp_path):
    t = _track()
    written = write_pose_files(tmp_path / "p", t, HOW, json_path=tmp_path / "p" / "a.json",
                               bvh_path=tmp_path / "p" / "a.bvh", bvh_root=True, bones="raw")
    assert [w[len(str(tmp_path)) + 1:] for w in written] == ["p/poses_3d.npz", "p/preview.png", "p/a.json",
                                                              "p/a.bvh"]
    z = np.load(tmp_path / "p" / "poses_3d.npz")
    doc = json.loads((tmp_path / "p" / "a.json").read_text())
    assert doc["reconstruction"][2][0] == [None, None, None] and doc["span"] == [3, 7]
    np.testing.assert_allclose(np.array(doc["reconstruction"], dtype=float)[3:8], z["reconstruction"][3:8], atol=1e-5)
    np.testing.assert_allclose(np.array(doc["root_translation"], dtype=float)[3:8], t.root, atol=1e-5)
    # a BVH has every frame: the span's first and last poses held outside it, the root moving
    assert (tmp_path / "p" / "a.bvh").read_text() == bvh_text(t.held(t.poses), 25.0, root=t.held(t.root))
    write_pose_files(tmp_path / "q", t, HOW, bvh_path=tmp_path / "q" / "a.bvh", bones="raw")
    assert (tmp_path / "q" / "a.bvh").read_text() == bvh_text(t.held(t.poses), 25.0)
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["a.bvh", "poses_3d.npz", "preview.png"]


@pytest.mark.parametrize("fps,joints,root", [(None, 9, 15), (10, 5, 5), (25, 5, 13), (30, 7, 15), (50, 11, 25),
                                             (60, 13, 31)])
def test_smoothing_windows(fps, joints, root):
    assert (smoothing_window(fps), trajectory_window(fps)) == (joints, root)


def test_smooth_poses_keeps_the_root_at_the_origin():
    rng = np.random.default_rng(2)
    poses = rng.normal(size=(30, 17, 3)).astype(np.float32)
    poses[:, 0] = 0
    out = smooth_poses(poses, 7)
    assert (out[:, 0] == 0).all()
    np.testing.assert_array_equal(out[:, 1:], savgol(poses, 7)[:, 1:])


def test_fitted_root_weights_by_score_and_ignores_filled_joints():
    t = _track(T=20, first=0, n=20, track=None, seed=3)
    scores = t.scores
    got = fitted_root(t.poses, t.keypoints, (1000, 800), scores, t.filled, 30.0, focal=1200)
    expect = root_trajectory(t.poses, t.keypoints, (1000, 800), focal=1200, weights=np.where(t.filled, 0, scores),
                             smooth=15)
    np.testing.assert_array_equal(got, expect)
    moved = t.keypoints.copy()
    moved[t.filled] += 50  # filled joints carry no weight: moving them changes nothing
    np.testing.assert_allclose(fitted_root(t.poses, moved, (1000, 800), scores, t.filled, 30.0, focal=1200), got,
                               rtol=1e-9, atol=1e-9)
