"""Human3.6M cameras, loader and its bad-input errors, on tiny synthetic files."""
import os

import numpy as np
import pytest

from stcformer.data.cameras import (camera_to_world, h36m_cameras, image_coordinates,
                                    normalize_screen_coordinates, project_to_2d, qinverse, qrot,
                                    world_to_camera)
from stcformer.data import DataError
from stcformer.data.h36m import load_h36m
from stcformer.data.skeleton import H36M_ACTIONS, H36M_KEPT_OF_32
from stcformer.data.synthetic import write_h36m

import torch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("h36m")
    write_h36m(out, frames=8, takes=1, seed=1)
    return out


def _rewrite(src, dst, name, key, edit):
    """Copy the three files of ``src`` to ``dst``, editing entry ``key`` of file ``name``."""
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        with np.load(os.path.join(src, f), allow_pickle=True) as z:
            entries = {k: z[k] for k in z.files}
        if f == name:
            entries = edit(entries)
        np.savez(os.path.join(dst, f), **entries)
    return dst


def test_normalisation_divides_both_axes_by_width():
    x = np.array([[500.0, 501.0], [0.0, 0.0], [1000.0, 1002.0]], dtype=np.float32)
    got = normalize_screen_coordinates(x, 1000, 1002)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.0, 0.0], [-1.0, -1.002], [1.0, 1.002]], atol=1e-6)
    np.testing.assert_allclose(image_coordinates(got, 1000, 1002), x, atol=1e-3)


def test_quaternions_and_camera_round_trip():
    # 90 degrees about z: x -> y
    q = torch.tensor([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], dtype=torch.float64)
    v = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    np.testing.assert_allclose(qrot(q, v).numpy(), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(qrot(qinverse(q), qrot(q, v)).numpy(), v.numpy(), atol=1e-12)
    cam = h36m_cameras("S9")[0]
    assert (cam.res_w, cam.res_h, cam.id) == (1000, 1002, "54138969")
    np.testing.assert_allclose(cam.translation, np.array([2044.45849609375, 4935.1171875, 1481.2275390625]) / 1000,
                               rtol=1e-6)
    world = np.array([[0.1, -0.2, 1.0], [0.5, 0.3, 0.2]], dtype=np.float32)
    c = world_to_camera(world, cam.orientation, cam.translation)
    np.testing.assert_allclose(camera_to_world(c, cam.orientation, cam.translation), world, atol=1e-5)
    # the camera centre maps to the origin; the capture area is 4-6 m in front of the camera
    np.testing.assert_allclose(world_to_camera(cam.translation[None], cam.orientation, cam.translation), 0, atol=1e-6)
    assert 4 < c[0, 2] < 7
    px = project_to_2d(c, cam.intrinsic)
    assert np.all((px > 0) & (px < 1000))


def test_loader(tiny):
    data = load_h36m(tiny, "gt")
    assert data.name == "h36m" and data.unit_to_mm == 1000
    assert {s.subject for s in data.train} == {"S1", "S5", "S6", "S7", "S8"}
    assert {s.subject for s in data.test} == {"S9", "S11"}
    assert len(data.test) == 2 * 15 * 4 and {s.group for s in data.test} == set(H36M_ACTIONS)
    assert "TakingPhoto" in {s.action for s in data.train}  # S1's name, kept as is
    # order: subject, then the 2D file's action order, then cameras 0..3
    assert [s.camera for s in data.test[:4]] == [c.id for c in h36m_cameras("S9")]
    seq = data.test[0]
    assert seq.keypoints.dtype == np.float32 and seq.keypoints.shape[1:] == (17, 2)
    # 3D: camera space, non-root joints root-relative, root absolute
    with np.load(os.path.join(tiny, "data_3d_h36m.npz"), allow_pickle=True) as z:
        world = z["positions_3d"].item()["S9"][seq.action][:, list(H36M_KEPT_OF_32)]
    cam = h36m_cameras("S9")[0]
    want = world_to_camera(world, cam.orientation, cam.translation)
    np.testing.assert_allclose(seq.poses[:, 0], want[:, 0], atol=1e-6)
    np.testing.assert_allclose(seq.poses[:, 1:], want[:, 1:] - want[:, :1], atol=1e-6)
    # 2D: the exact projection of the 3D, normalised by the width
    with np.load(os.path.join(tiny, "data_2d_h36m_gt.npz"), allow_pickle=True) as z:
        px = z["positions_2d"].item()["S9"][seq.action][0]
    np.testing.assert_allclose(seq.keypoints, normalize_screen_coordinates(px, 1000, 1002), atol=1e-7)
    np.testing.assert_allclose(project_to_2d(want, cam.intrinsic), px, atol=1e-3)


def test_longer_2d_is_truncated(tiny, tmp_path):
    def longer(e):
        d = e["positions_2d"].item()
        for subject in d:
            for action in d[subject]:
                d[subject][action] = [np.concatenate([v, v[:3]]) for v in d[subject][action]]
        e["positions_2d"] = np.array(d, dtype=object)
        return e
    out = _rewrite(tiny, tmp_path / "d", "data_2d_h36m_gt.npz", "positions_2d", longer)
    a, b = load_h36m(tiny, "gt"), load_h36m(out, "gt")
    assert all(np.array_equal(x.keypoints, y.keypoints) for x, y in zip(a.test, b.test))


def _edit_3d(fn):
    def edit(e):
        d = e["positions_3d"].item()
        fn(d)
        e["positions_3d"] = np.array(d, dtype=object)
        return e
    return edit


def _edit_2d(fn):
    def edit(e):
        d = e["positions_2d"].item()
        fn(d)
        e["positions_2d"] = np.array(d, dtype=object)
        return e
    return edit


def _nan(d):
    d["S9"]["Eating"][5, 3, 1] = np.nan


BAD = [
    ("data_3d_h36m.npz", lambda e: {"poses": e["positions_3d"]}, "data_3d_h36m.npz: no key 'positions_3d'"),
    ("data_3d_h36m.npz", _edit_3d(lambda d: d.pop("S11")), "data_3d_h36m.npz: subject S11 is missing"),
    ("data_2d_h36m_gt.npz", _edit_2d(lambda d: d["S5"].pop("Posing")),
     "data_2d_h36m_gt.npz: action 'Posing' of subject S5 is missing"),
    ("data_3d_h36m.npz", _edit_3d(lambda d: d["S1"].update(Walking=d["S1"]["Walking"][:, :, :2])),
     "positions_3d['S1']['Walking'] has shape"),
    ("data_2d_h36m_gt.npz", _edit_2d(lambda d: d["S9"]["Eating"].pop()), "must be a list of 4 camera arrays"),
    ("data_2d_h36m_gt.npz", _edit_2d(lambda d: d["S9"]["Eating"].__setitem__(0, d["S9"]["Eating"][0][:, :16])),
     "positions_2d['S9']['Eating'][0] has shape"),
    ("data_3d_h36m.npz", _edit_3d(_nan), "positions_3d['S9']['Eating'] contains NaN"),
    ("data_2d_h36m_gt.npz", _edit_2d(lambda d: d["S11"]["Smoking"][2].__setitem__((0, 0, 0), np.inf)),
     "positions_2d['S11']['Smoking'][2] contains NaN or infinite values"),
    ("data_3d_h36m.npz", _edit_3d(lambda d: [d[s].pop("Photo") for s in ("S9", "S11")] and None),
     "action(s) Photo missing from the test subjects"),
]


@pytest.mark.parametrize("name,edit,message", BAD)
def test_bad_input(tiny, tmp_path, name, edit, message):
    if "Photo missing" in message:  # drop it from both files so only the action list is wrong
        out = _rewrite(tiny, tmp_path / "a", name, None, edit)
        out = _rewrite(out, tmp_path / "b", "data_2d_h36m_gt.npz", None,
                       _edit_2d(lambda d: [d[s].pop("Photo") for s in ("S9", "S11")] and None))
    else:
        out = _rewrite(tiny, tmp_path / "d", name, None, edit)
    with pytest.raises(DataError) as err:
        load_h36m(out, "gt")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_broken_files(tiny, tmp_path):
    with pytest.raises(DataError, match=r"data_2d_h36m_nope.npz: file not found"):
        load_h36m(tiny, "nope")
    (tmp_path / "data_3d_h36m.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable npz file"):
        load_h36m(tmp_path, "gt")
