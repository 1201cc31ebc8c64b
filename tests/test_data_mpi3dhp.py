"""MPI-INF-3DHP loader (P-STMO layout): normalisation, root, valid frames and bad input."""
import numpy as np
import pytest

from stcformer.data.dataset import test_windows as make_test_windows, training_windows
from stcformer.data import DataError
from stcformer.data.mpi3dhp import load_3dhp


def _write(folder, train=None, test=None):
    rng = np.random.default_rng(0)

    def pair(n, scale=2048):
        return {"data_2d": (rng.random((n, 17, 2)) * scale).astype(np.float32),
                "data_3d": (rng.normal(size=(n, 17, 3)) * 500).astype(np.float32)}

    if train is None:
        train = {"S1 Seq1": [{"0": pair(6), "2": pair(6)}, 25], "S2 Seq2": [{"8": pair(4)}, 50]}
    if test is None:
        test = {name: dict(pair(5), valid=np.array([1, 0, 1, 1, 0], dtype=np.float64))
                for name in ("TS1", "TS5")}
    np.savez(folder / "data_train_3dhp.npz", data=np.array(train, dtype=object))
    np.savez(folder / "data_test_3dhp.npz", data=np.array(test, dtype=object))
    return train, test


def test_loader(tmp_path):
    train, test = _write(tmp_path)
    data = load_3dhp(tmp_path)
    assert data.name == "3dhp" and data.root == 14 and data.unit_to_mm == 1.0
    assert [(s.subject, s.action, s.camera) for s in data.train] == [("S1", "Seq1", "0"), ("S1", "Seq1", "2"),
                                                                     ("S2", "Seq2", "8")]
    raw = train["S1 Seq1"][0]["2"]
    seq = data.train[1]
    # 2D over 2048 for the training set; 3D in mm, relative to the pelvis (joint 14), pelvis kept
    np.testing.assert_allclose(seq.keypoints, raw["data_2d"] / 2048 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(seq.poses[:, 14], raw["data_3d"][:, 14])
    np.testing.assert_allclose(seq.poses[:, :14], raw["data_3d"][:, :14] - raw["data_3d"][:, 14:15], atol=1e-4)
    np.testing.assert_allclose(seq.poses[:, 15:], raw["data_3d"][:, 15:] - raw["data_3d"][:, 14:15], atol=1e-4)
    # TS5: 1920 x 1080 -> y/1920*2 - 1080/1920
    ts5 = data.test[1]
    raw5 = test["TS5"]["data_2d"]
    np.testing.assert_allclose(ts5.keypoints[..., 0], raw5[..., 0] / 1920 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(ts5.keypoints[..., 1], raw5[..., 1] / 1920 * 2 - 1080 / 1920, atol=1e-6)
    np.testing.assert_allclose(data.test[0].keypoints[..., 1], test["TS1"]["data_2d"][..., 1] / 2048 * 2 - 1,
                               atol=1e-6)


def test_windows_are_consecutive_and_only_valid_frames_are_scored(tmp_path):
    _write(tmp_path)
    data = load_3dhp(tmp_path)
    ws = make_test_windows(data, frames=5, tds=1)
    assert len(ws) == 6  # 3 valid frames in each of 2 sequences
    assert ws.centre.tolist() == [0, 2, 3, 0, 2, 3]
    assert ws.frame_indices([2]).tolist() == [[1, 2, 3, 4, 4]]
    assert ws.left == [5, 6, 7, 11, 12, 13] and ws.right == [2, 3, 4, 8, 9, 10]
    y = ws.targets([1])
    assert (y[:, :, 14] == 0).all() and y.shape == (1, 1, 17, 3)
    tw = training_windows(data, frames=3, tds=1, stride=1)
    assert len(tw) == 2 * (6 + 6 + 4)  # every frame a centre, mirrored copies


@pytest.mark.parametrize("case,message", [
    ("no_valid_key", "data['TS1'] must hold 'data_2d', 'data_3d' and 'valid'"),
    ("nan", "data['TS1']['data_3d'] contains NaN"),
    ("shape", "data['S1 Seq1'][0]['0']['data_2d'] has shape (6, 16, 2)"),
    ("length", "data_2d has 5 frames but data_3d has 4"),
    ("valid_length", "data['TS1']['valid'] has shape (4,)"),
])
def test_bad_input(tmp_path, case, message):
    train, test = _write(tmp_path)
    if case == "no_valid_key":
        del test["TS1"]["valid"]
    elif case == "nan":
        test["TS1"]["data_3d"][0, 0, 0] = np.nan
    elif case == "shape":
        train["S1 Seq1"][0]["0"]["data_2d"] = train["S1 Seq1"][0]["0"]["data_2d"][:, :16]
    elif case == "length":
        test["TS1"]["data_3d"] = test["TS1"]["data_3d"][:4]
    elif case == "valid_length":
        test["TS1"]["valid"] = test["TS1"]["valid"][:4]
    _write(tmp_path, train, test)
    with pytest.raises(DataError) as err:
        load_3dhp(tmp_path)
    assert message in str(err.value)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="data_train_3dhp.npz: file not found"):
        load_3dhp(tmp_path)
    np.savez(tmp_path / "data_test_3dhp.npz", other=np.zeros(3))
    with pytest.raises(DataError, match=r"data_test_3dhp.npz: no key 'data' \(keys: other\)"):
        load_3dhp(tmp_path, train=False)
