"""A plausible skeleton (stcformer.export.skeleton): constant bones at a human height, the BVH
written from it, and no pose where nobody is (absent frames in the npz, JSON, BVH and render)."""
import json

import numpy as np
import pytest

from stcformer.data.skeleton import H36M_LEFT, H36M_PARENTS, H36M_RIGHT
from stcformer.export.bvh import bvh_text, hold_missing, to_bvh_axes
from stcformer.export.poses import LiftSettings, PoseTrack, pose_arrays, write_pose_files
from stcformer.export.skeleton import (bone_lengths, bone_variation, fixed_skeleton, robust_lengths,
                                       standing_height)
from tests.test_bvh import REST, forward_kinematics, h36m_order, parse_bvh, rigid_motion

HOW = LiftSettings(25.0, (1000, 1000), 27, 1, "center", 1000.0)


def stretchy(T=60, seed=0, size=0.4):
    """A rigid motion (1.6 m standing) shrunk to ``size`` of it, each bone stretched by up to
    +-40% per frame and a little joint noise: what a model trained on synthetic motion gives."""
    rng = np.random.default_rng(seed)
    P = rigid_motion(T, seed) * size
    par = np.array([max(p, 0) for p in H36M_PARENTS])
    bones = P - P[:, par]
    bones *= rng.uniform(0.6, 1.4, size=(T, 17, 1))
    out = np.zeros_like(P)
    for j, p in enumerate(H36M_PARENTS):  # rebuild from the root with the stretched bones
        if p >= 0:
            out[:, j] = out[:, p] + bones[:, j]
    return out + rng.normal(scale=0.002, size=out.shape) * (np.arange(17) > 0)[:, None]


def test_bones_constant_and_height_as_asked():
    P = stretchy()
    assert np.nanmax(bone_variation(P)) > 0.15
    S, L, scale = fixed_skeleton(P, H36M_PARENTS, height=1.70)
    assert S.shape == P.shape and np.isfinite(S).all()
    var = bone_variation(S)
    assert np.nanmax(var) <= 0.01
    np.testing.assert_allclose(bone_lengths(S)[:, 1:], np.broadcast_to(L[1:], (len(S), 16)), rtol=1e-4)
    assert standing_height(L) == pytest.approx(1.70, rel=1e-5)
    assert scale == pytest.approx(1.70 / standing_height(robust_lengths(P)), rel=1e-5)
    # left and right the same
    np.testing.assert_allclose(L[list(H36M_LEFT)], L[list(H36M_RIGHT)], rtol=1e-6)
    # the rebuilt skeleton keeps the raw directions of the limbs
    for j in (2, 3, 5, 6, 12, 13, 15, 16, 10):
        p = H36M_PARENTS[j]
        a = P[:, j] - P[:, p]
        b = S[:, j] - S[:, p]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() > 0.9999


def test_standing_skeleton_is_as_tall_as_asked():
    S, L, _ = fixed_skeleton(REST[None].repeat(3, 0), height=1.8)
    top_to_ankle = S[0, 10, 1] - S[0, [3, 6], 1].max()  # camera y is down
    assert -top_to_ankle == pytest.approx(1.8, rel=0.05)


def test_raw_height_keeps_the_model_scale():
    P = stretchy(size=0.4)
    for h in (None, "raw"):
        S, L, scale = fixed_skeleton(P, height=h)
        assert scale == 1.0
        assert standing_height(L) == pytest.approx(standing_height(robust_lengths(P)), rel=1e-6)
        assert 0.5 < standing_height(L) < 0.8


def test_reliable_frames_measure_the_bones():
    P = rigid_motion(40, 1)
    P[:10] *= 3.0  # ten frames of a giant, marked unreliable
    reliable = np.arange(40) >= 10
    _, L, _ = fixed_skeleton(P, height=None, reliable=reliable)
    np.testing.assert_allclose(L, robust_lengths(rigid_motion(40, 1)), rtol=1e-6)


def test_nan_frames_stay_nan():
    P = stretchy(30)
    P[5:9] = np.nan
    S, L, _ = fixed_skeleton(P)
    assert np.isnan(S[5:9]).all() and np.isfinite(S[:5]).all() and np.isfinite(S[9:]).all()


def test_bvh_of_the_skeleton_reads_back_to_1mm():
    P = stretchy(50, seed=2)
    S, L, _ = fixed_skeleton(P, height=1.70)
    joints, frame_time, motion = parse_bvh(bvh_text(S, fps=25))
    assert len(motion) == 50 and frame_time == pytest.approx(0.04)
    order = h36m_order(joints)
    # offsets: each bone's length in centimetres
    offsets = np.array([np.linalg.norm(joints[k]["offset"]) for k in order])
    np.testing.assert_allclose(offsets[1:], 100 * L[1:], atol=0.1)
    fk = forward_kinematics(joints, motion)[:, order]
    expect = to_bvh_axes(S)
    err = np.abs((fk - fk[:, :1]) - (expect - expect[:, :1]))
    assert err.max() < 0.1  # 1 mm, in centimetres


def test_bvh_holds_the_pose_before_a_gap():
    P = stretchy(20)
    P[6:10] = np.nan
    held = hold_missing(P)
    np.testing.assert_array_equal(held[6:10], np.repeat(P[5:6], 4, 0))
    P[:3] = np.nan
    np.testing.assert_array_equal(hold_missing(P)[:3], np.repeat(P[3:4], 3, 0))
    text = bvh_text(P, fps=25)
    assert "nan" not in text.lower()
    joints, _, motion = parse_bvh(text)
    assert len(motion) == 20 and np.isfinite(motion).all()


def _span_track(T=40, first=5, n=30):
    rng = np.random.default_rng(3)
    poses = stretchy(n).astype(np.float32)
    return PoseTrack(poses=poses, keypoints=rng.uniform(100, 700, size=(n, 17, 2)).astype(np.float32),
                     filled=np.zeros((n, 17), bool), root=rng.normal(size=(n, 3)) + [0, 0, 5],
                     scores=rng.uniform(0.5, 1, size=(T, 17)).astype(np.float32), first=first, track=2)


def test_absent_frames_are_nan_everywhere(tmp_path):
    absent = np.zeros(40, bool)
    absent[15:22] = True
    t = _span_track().without(absent)
    a = pose_arrays(t, HOW)
    for key in ("reconstruction", "skeleton_3d", "keypoints_2d", "root_translation"):
        assert np.isnan(a[key][15:22]).all(), key
        assert np.isfinite(a[key][5:15]).all() and np.isfinite(a[key][22:35]).all(), key
    assert not a["lifted"][15:22].any() and a["lifted"][5:15].all()
    assert not a["posed"][15:22].any() and a["posed"][22:35].all() and not a["posed"][35:].any()
    assert a["bone_lengths"].shape == (17,) and float(a["height"]) == pytest.approx(1.7)
    assert np.nanmax(bone_variation(a["skeleton_3d"])) < 0.01
    write_pose_files(tmp_path, t, HOW, json_path=tmp_path / "p.json", bvh_path=tmp_path / "p.bvh", bones="fixed")
    skel, root = t.bones("fixed")
    assert (tmp_path / "p.bvh").read_text() == bvh_text(t.held(skel), 25.0)
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["skeleton_3d"][16] == [[None] * 3] * 17 and doc["reconstruction"][16][0] == [None] * 3
    assert doc["skeleton_scale"] == pytest.approx(float(a["skeleton_scale"]), rel=1e-6)
    assert len(doc["bone_lengths"]) == 17 and doc["height"] == pytest.approx(1.7)
    _, _, motion = parse_bvh((tmp_path / "p.bvh").read_text())
    assert len(motion) == 40 and np.isfinite(motion).all()
    np.testing.assert_array_equal(motion[15:22], np.repeat(motion[14:15], 7, 0))  # held over the gap


def test_bones_choice():
    t = _span_track()
    skel, root = t.bones("fixed")
    np.testing.assert_array_equal(skel, t.skeleton()[0])
    np.testing.assert_allclose(root, t.root * t.skeleton()[2])
    raw, root = t.bones("raw")
    np.testing.assert_array_equal(raw, t.poses)
    with pytest.raises(ValueError):
        t.bones("wobbly")
