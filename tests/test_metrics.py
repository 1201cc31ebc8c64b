"""Every metric against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from stcformer.evaluation import metrics
from stcformer.data.skeleton import H36M_ACTIONS


def test_mpjpe_by_hand():
    pred = np.zeros((1, 2, 3))
    target = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    assert metrics.mpjpe(pred, target) == pytest.approx(3.0)
    assert metrics.mpjpe(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(3.0)
    assert metrics.mpjpe_per_window(pred, target).tolist() == pytest.approx([3.0])
    # (N, T, J, 3): one value per window, the mean over its frames and joints
    pred2 = np.zeros((2, 2, 1, 3))
    target2 = np.array([[[[1.0, 0, 0]], [[3.0, 0, 0]]], [[[0, 0, 2.0]], [[0, 0, 2.0]]]])
    assert metrics.mpjpe_per_window(pred2, target2).tolist() == pytest.approx([2.0, 2.0])
    with pytest.raises(ValueError):
        metrics.mpjpe(np.zeros((1, 2, 3)), np.zeros((1, 3, 3)))


def test_p_mpjpe_by_hand():
    # target: a centred cross (norm 2); pred: the x-arm doubled, the y-arm collapsed to the centre.
    # Procrustes: R = I, scale = (1/sqrt2) * 2 / (2 sqrt2) = 1/2, t = 0 -> errors 0, 0, 1, 1.
    target = np.array([[[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]], dtype=np.float32)
    pred = np.array([[[2.0, 0, 0], [-2, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype=np.float32)
    assert metrics.p_mpjpe(pred, target).tolist() == pytest.approx([0.5], abs=1e-6)


def _rot_z(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def test_p_mpjpe_removes_similarity_but_not_reflection():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 17, 3)).astype(np.float32)
    y = (2.5 * x @ _rot_z(30).T + np.array([1.0, -2.0, 3.0])).astype(np.float32)
    assert np.all(metrics.p_mpjpe(y, x) < 1e-5)
    # a mirror image is not a rotation: the error stays
    mirrored = x * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    assert np.all(metrics.p_mpjpe(mirrored, x) > 0.1)
    # per window: the result for a window does not depend on the others in the call
    both = metrics.p_mpjpe(np.concatenate([y, mirrored]), np.concatenate([x, x]))
    assert both[3:].tolist() == pytest.approx(metrics.p_mpjpe(mirrored, x).tolist())


def test_n_mpjpe_by_hand():
    x = np.array([[[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]]])
    assert metrics.n_mpjpe(2 * x, x).tolist() == pytest.approx([0.0])
    # orthogonal prediction: the best scale is 0, so the error is the target's norm
    assert metrics.n_mpjpe(np.array([[[0.0, 1.0, 0.0]]]), np.array([[[1.0, 0.0, 0.0]]])).tolist() == [1.0]


def test_mpjve_by_hand():
    pred = np.array([0.0, 1.0, 3.0])[:, None, None] * np.array([1.0, 0, 0])
    target = np.array([0.0, 1.0, 2.0])[:, None, None] * np.array([1.0, 0, 0])
    assert metrics.mpjve(pred, target) == pytest.approx(0.5)  # velocity errors 0 and 1
    assert math.isnan(metrics.mpjve(pred[:1], target[:1]))


def test_action_table_macro_average():
    table = metrics.ActionTable(actions=["Walking", "Eating"])
    table.add("p1", ["Walking 1", "Walking 1", "Walking"], [10.0, 20.0, 30.0])
    table.add("p1", ["Eating"], [5.0])
    table.add("p1", ["Unknown"], [1000.0])  # reported, not averaged
    assert table.means("p1") == {"Walking": 20.0, "Eating": 5.0, "Unknown": 1000.0}
    assert list(table.means("p1")) == ["Walking", "Eating", "Unknown"]
    assert table.average("p1") == 12.5  # unweighted over actions, not over windows (16.25)
    assert table.windows("Walking") == 3
    text = table.format(metrics=("p1",), titles=("P1",))
    assert "Average" in text and "12.50" in text
    assert math.isnan(metrics.ActionTable().average("p2"))
    assert metrics.ActionTable().actions == list(H36M_ACTIONS)


def test_official_batch_credit():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    groups = ["A", "A 1", "B", "B", "B"]
    # batches of 2: (A, A) (B, B) (B): none mixed
    assert metrics.official_batch_credit(values, groups, 2).tolist() == values
    # batches of 3: (A, A, B) is mixed -> each window gets the batch mean 2
    assert metrics.official_batch_credit(values, groups, 3).tolist() == [2.0, 2.0, 2.0, 4.0, 5.0]


def test_pck_and_auc_by_hand():
    e = np.full((2, 17), 100.0)
    e[0, 0] = 150.0     # not < 150: a miss
    e[1, 15] = 1000.0   # spine: not one of the 14 joints
    assert metrics.pck(e) == pytest.approx(100 * 27 / 28)
    e = np.full((1, 17), 12.0)
    e[0, 14:] = 1e6     # pelvis, spine, head do not count
    # 12 < t for t = 15, 20, ..., 150: 28 of the 31 thresholds
    assert metrics.auc(e) == pytest.approx(100 * 28 / 31)
    assert metrics.auc(np.zeros((3, 17))) == pytest.approx(100 * 30 / 31)  # 0 < 0 fails at t = 0


def test_mpi3dhp_scores_pool_frames():
    a = np.full((3, 17), 10.0)
    b = np.full((1, 17), 200.0)
    b[0, 14] = 0.0
    s = metrics.mpi3dhp_scores({"TS1": a, "TS2": b})
    # AUC: 10 < t from t = 15 on, 28 of the 31 thresholds
    assert s["per_sequence"]["TS1"] == {"mpjpe_mm": 10.0, "pck": 100.0, "auc": pytest.approx(100 * 28 / 31),
                                        "frames": 3}
    assert s["per_sequence"]["TS2"]["pck"] == 0.0
    # pooled = frame-weighted mean of the sequences
    assert s["overall"]["mpjpe_mm"] == pytest.approx((3 * 10.0 + (16 * 200.0) / 17) / 4)
    assert s["overall"]["pck"] == pytest.approx(75.0)
    assert list(s["scenes"]) == ["GS"]  # TS1 + TS2; the other scenes need TS3..TS6
    assert s["scenes"]["GS"]["frames"] == 4 and s["scenes"]["GS"]["pck"] == pytest.approx(75.0)
    assert set(s["groups"]) == {"Head", "Neck", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"}
    assert "All" in metrics.format_3dhp(s)
