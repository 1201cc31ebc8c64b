"""Window indices, training centres, flips and batched windows against hand-computed cases."""
import numpy as np
import pytest
import torch

from stcformer.data.dataset import PoseSequence, WindowSet
from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT
from stcformer.data.windows import flip_pose, train_centres, window_indices
from stcformer.data.windows import test_centres as every_frame


def official_test_window(num_frames, centre, pad, tds):
    """The official test generator's slicing, written out: pad by repeating the edge frame on the
    left (else on the right), then take every tds-th frame (valid where only one side overhangs)."""
    start, end = centre - pad * tds, centre + 1 + pad * tds
    low, high = max(start, 0), min(end, num_frames)
    frames = list(range(low, high))
    if low - start:
        frames = [0] * (low - start) + frames
    elif end - high:
        frames = frames + [num_frames - 1] * (end - high)
    return frames[::tds]


def test_window_indices_by_hand():
    # F=10, pad=2, tds=3: offsets -6 -3 0 3 6
    got = window_indices(10, [0, 1, 5, 9], pad=2, tds=3)
    assert got.tolist() == [[0, 0, 0, 3, 6],
                            [0, 0, 1, 4, 7],
                            [0, 2, 5, 8, 9],
                            [3, 6, 9, 9, 9]]
    # tds=1: consecutive frames
    assert window_indices(5, [2], pad=2).tolist() == [[0, 1, 2, 3, 4]]
    assert window_indices(5, [0], pad=1).tolist() == [[0, 0, 1]]


def test_short_sequences_get_full_windows():
    # shorter than the window on both sides: every index clamps, the length stays 2*pad+1
    got = window_indices(3, every_frame(3), pad=13, tds=3)
    assert got.shape == (3, 27)
    assert got[0].tolist() == [0] * 13 + [0] + [2] * 13
    assert got[1].tolist() == [0] * 13 + [1] + [2] * 13
    assert window_indices(1, [0], pad=4, tds=2).tolist() == [[0] * 9]


@pytest.mark.parametrize("num_frames,pad,tds", [(100, 13, 3), (100, 4, 1), (241, 40, 3), (30, 4, 3)])
def test_matches_official_generator_where_it_works(num_frames, pad, tds):
    got = window_indices(num_frames, every_frame(num_frames), pad, tds)
    for c in range(num_frames):
        want = official_test_window(num_frames, c, pad, tds)
        if len(want) == 2 * pad + 1:  # the official generator only works where one side overhangs
            assert got[c].tolist() == want


def test_train_centres():
    assert train_centres(10, 1).tolist() == list(range(10))
    # F=10, s=3: 4 chunks, offset (12-10)//2 = 1 -> chunk starts -1, 2, 5, 8; middles 0, 3, 6, 9
    assert train_centres(10, 3).tolist() == [0, 3, 6, 9]
    # F=100, s=3: 34 chunks, offset 1: starts -1, 2, ..., 98 -> middles 0, 3, ..., 99
    assert train_centres(100, 3).tolist() == list(range(0, 100, 3))
    # F=7, s=4: 2 chunks, offset 0: starts 0, 4 -> middles 1, 5
    assert train_centres(7, 4).tolist() == [1, 5]
    # a sequence shorter than the stride still gives one window
    assert train_centres(2, 9).tolist() == [1]  # chunk -3..5, middle 1
    assert len(train_centres(1000, 3)) == 334  # ceil(F/s), as many as the official generator


def test_flip_pose_numpy_and_torch():
    x = np.arange(17 * 2, dtype=np.float32).reshape(17, 2)
    y = flip_pose(x, H36M_LEFT, H36M_RIGHT)
    assert y[4].tolist() == [-x[1, 0], x[1, 1]]   # LHip <- mirrored RHip
    assert y[14].tolist() == [-x[11, 0], x[11, 1]]  # RShoulder <- mirrored LShoulder
    assert y[0].tolist() == [-x[0, 0], x[0, 1]]
    assert np.array_equal(flip_pose(y, H36M_LEFT, H36M_RIGHT), x)  # an involution
    assert x[4, 0] == 8  # input untouched
    t = torch.from_numpy(x)
    assert torch.equal(flip_pose(t, H36M_LEFT, H36M_RIGHT), torch.from_numpy(y))


def _sequences():
    rng = np.random.default_rng(0)
    seqs = []
    for n, action in ((5, "Walking 1"), (12, "Eating")):
        kp = rng.normal(size=(n, 17, 2)).astype(np.float32)
        pose = rng.normal(size=(n, 17, 3)).astype(np.float32)
        seqs.append(PoseSequence("S9", action, "c", kp, pose))
    return seqs


def test_window_set_test_mode():
    seqs = _sequences()
    ws = WindowSet(seqs, [every_frame(5), every_frame(12)], pad=2, tds=2, root=0,
                   left=H36M_LEFT, right=H36M_RIGHT)
    assert len(ws) == 17
    x = ws.inputs([0, 7])
    assert x.shape == (2, 5, 17, 2)
    assert np.array_equal(x[0].numpy(), seqs[0].keypoints[[0, 0, 0, 2, 4]])
    assert np.array_equal(x[1].numpy(), seqs[1].keypoints[[0, 0, 2, 4, 6]])  # window 7 = 2nd seq, centre 2
    xf = ws.inputs([7], flip=True)
    assert np.array_equal(xf[0].numpy(), flip_pose(seqs[1].keypoints[[0, 0, 2, 4, 6]], H36M_LEFT, H36M_RIGHT))
    y = ws.targets([3, 7])
    assert y.shape == (2, 1, 17, 3)
    want = seqs[0].poses[3].copy()
    want[0] = 0
    assert np.array_equal(y[0, 0].numpy(), want)
    assert ws.groups([0, 7]) == ["Walking", "Eating"]


def test_window_set_training_mode_flips_inputs_and_targets():
    seqs = _sequences()
    ws = WindowSet(seqs, [np.array([2]), np.array([6])], pad=1, tds=3, root=0, left=H36M_LEFT,
                   right=H36M_RIGHT, augment=True, seq2seq=True)
    assert len(ws) == 4 and ws.flip.tolist() == [False, False, True, True]
    x, y = ws.inputs([1, 3]), ws.targets([1, 3])
    assert y.shape == (2, 3, 17, 3)
    frames = [3, 6, 9]
    assert np.array_equal(x[0].numpy(), seqs[1].keypoints[frames])
    assert np.array_equal(x[1].numpy(), flip_pose(seqs[1].keypoints[frames], H36M_LEFT, H36M_RIGHT))
    want = flip_pose(seqs[1].poses[frames], H36M_LEFT, H36M_RIGHT)
    want[:, 0] = 0
    assert np.array_equal(y[1].numpy(), want)
    assert (y[:, :, 0] == 0).all()


def test_window_set_of_keypoints_without_3d():
    """Sequences without poses (keypoints to lift) window the same inputs; only targets refuse."""
    seqs = _sequences()
    bare = [PoseSequence(s.subject, s.action, s.camera, s.keypoints) for s in seqs]
    args = ([every_frame(5), every_frame(12)], 2, 2, 0, H36M_LEFT, H36M_RIGHT)
    ws, ref = WindowSet(bare, *args), WindowSet(seqs, *args)
    assert ws.poses is None
    idx = np.arange(len(ws))
    for flip in (None, True):
        assert torch.equal(ws.inputs(idx, flip=flip), ref.inputs(idx, flip=flip))
    assert np.array_equal(ws.frame_indices(idx), ref.frame_indices(idx))
    with pytest.raises(ValueError, match="no 3D targets"):
        ws.targets([0])
    with pytest.raises(ValueError, match="no 3D targets"):  # one pose-less sequence among others
        WindowSet([seqs[0], bare[1]], *args).to_device("cpu").targets([0])
