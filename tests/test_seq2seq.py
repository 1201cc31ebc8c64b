"""seq2seq lifting: overlapping blocks blended with weights that fade out at the block edges."""
import numpy as np
import pytest
import torch

import stcformer
from stcformer import STCFormer
from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT
from stcformer.data.windows import flip_pose
from stcformer.errors import UsageError
from stcformer.evaluation.predict import (predict_sequence, seq2seq_block_weights, seq2seq_centres,
                               seq2seq_passes_per_frame, seq2seq_starts, seq2seq_windows)


class EdgeBiased(torch.nn.Module):
    """Lifts each frame on its own, (x, y) -> (x, y, z), with a depth error z that grows linearly
    from one edge of the window to the other (-bias .. +bias), as a seq2seq model is least
    accurate at its window's edges. Mirroring keeps z, so flip averaging leaves it unchanged.
    Where two non-overlapping blocks meet, z jumps by 2 * bias."""

    def __init__(self, bias: float):
        super().__init__()
        self.bias = bias
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        T = x.shape[1]
        z = self.bias * torch.linspace(-1, 1, T, dtype=x.dtype)[None, :, None, None].expand(*x.shape[:3], 1)
        return torch.cat([x, z], -1) + 0 * self.dummy


def jumps(poses):
    """Frame-to-frame change of the 3D, largest over joints: jumps[i] is between frames i-1 and i."""
    return np.r_[0.0, np.linalg.norm(np.diff(poses, axis=0), axis=-1).max(-1)]


def boundaries(F, frames, tds, overlap):
    """Frames where a seq2seq block starts or ends (other than the sequence's ends)."""
    span = (2 * ((frames - 1) // 2) + 1) * tds
    starts = seq2seq_starts(F, frames, tds, overlap)
    edges = set(starts[1:].tolist()) | set((starts[:-1] + span).tolist())
    return sorted(e for e in edges if 0 < e < F)


@pytest.fixture
def track():
    """A person at 25 fps (tds 2, blocks of 27 x 2 = 54 frames) who changes pose at frame 60."""
    T, change = 200, 60
    rng = np.random.default_rng(0)
    a = rng.uniform(400, 600, size=(17, 2)).astype(np.float32)
    b = a + rng.uniform(-20, 20, size=(17, 2)).astype(np.float32)
    xy = np.where((np.arange(T) < change)[:, None, None], a, b)
    return xy, change


def test_no_seam_at_block_boundaries(track):
    xy, change = track
    model = EdgeBiased(bias=0.05)
    kw = dict(checkpoint=model, fps=25, size=(1000, 1000), frames=27)
    centre = stcformer.lift(xy, mode="center", **kw)
    new = stcformer.lift(xy, mode="seq2seq", **kw)
    old = stcformer.lift(xy, mode="seq2seq", overlap=0, **kw)
    assert 54 in boundaries(len(xy), 27, 2, 0) and change not in boundaries(len(xy), 27, 2, 0.5)
    # the pose change shows at the frame it happens, in both modes
    for poses in (centre, new):
        assert abs(int(np.argmax(jumps(poses[..., :2]))) - change) <= 2
    # non-overlapping blocks: the largest jump is a seam at a block boundary (0.05 either side)
    j_old = jumps(old)
    assert int(np.argmax(j_old)) in (54, 108) and j_old[54] == pytest.approx(0.1, rel=1e-4)
    assert seam_ratio(j_old, boundaries(len(xy), 27, 2, 0), change) > 5
    # blended blocks: the largest jump is the pose change, and no block edge stands out
    j = jumps(new)
    assert abs(int(np.argmax(j)) - change) <= 2
    edges = boundaries(len(xy), 27, 2, 0.5)
    assert int(np.argmax(j)) not in edges
    assert seam_ratio(j, edges, change) <= 1.2


def seam_ratio(j, edges, change):
    """Mean jump at the block edges over the mean elsewhere (away from the pose change)."""
    rest = np.ones(len(j), bool)
    rest[list(edges) + [0, change]] = False
    return j[list(edges)].mean() / j[rest].mean()


def test_blend_is_the_weighted_mean_of_the_blocks():
    """frames 5, tds 1, overlap 0.4: blocks of 5 frames crossing over 2, on 10 frames extended by
    2 at each end: blocks at -2, 1, 4, 7; outputs before frame 0 or after frame 9 are dropped."""
    torch.manual_seed(0)
    model = STCFormer(layers=1, d_hid=32, num_heads=2).eval()
    x = np.random.default_rng(1).normal(size=(10, 17, 2)).astype(np.float32)
    np.testing.assert_array_equal(seq2seq_starts(10, 5, 1, 0.4), [-2, 1, 4, 7])
    poses = predict_sequence(model, x, frames=5, tds=1, mode="seq2seq", overlap=0.4)

    def block(s):
        with torch.no_grad():
            w = torch.from_numpy(x[None, np.clip(np.arange(s, s + 5), 0, 9)])  # edge frames repeated
            p = (model(w) + flip_pose(model(flip_pose(w, H36M_LEFT, H36M_RIGHT)), H36M_LEFT, H36M_RIGHT)) / 2
        p = p[0].numpy()
        p[:, 0] = 0
        return p

    a, b, c, d = block(-2), block(1), block(4), block(7)
    lo, hi = np.sin(np.pi / 8) ** 2, np.sin(3 * np.pi / 8) ** 2  # the sin^2 ramp over 2 frames
    tol = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(poses[0], a[2], **tol)                      # the middle of the first block
    np.testing.assert_allclose(poses[1], hi * a[3] + lo * b[0], **tol)     # fading out, fading in
    np.testing.assert_allclose(poses[2], lo * a[4] + hi * b[1], **tol)
    np.testing.assert_allclose(poses[3], b[2], **tol)
    np.testing.assert_allclose(poses[7], hi * c[3] + lo * d[0], **tol)
    np.testing.assert_allclose(poses[8], lo * c[4] + hi * d[1], **tol)
    np.testing.assert_allclose(poses[9], d[2], **tol)                      # the middle of the last block


def test_overlap_zero_is_the_non_overlapping_layout():
    assert seq2seq_starts(300, 27, 3, 0).tolist() == [0, 81, 162, 219]
    assert seq2seq_starts(300, 27, 3).tolist() == [-40, 1, 42, 83, 124, 165, 206, 247, 259]
    w = seq2seq_windows([np.zeros((300, 17, 2), np.float32)], 27, 3, 0, H36M_LEFT, H36M_RIGHT, overlap=0).weights
    assert np.all(w == 1)


@pytest.mark.parametrize("frames,tds", [(27, 3), (9, 2), (3, 1), (1, 1), (243, 1)])
@pytest.mark.parametrize("overlap", [0, 0.25, 0.5, 0.75])
def test_every_frame_covered_with_positive_weight(frames, tds, overlap):
    span = (2 * ((frames - 1) // 2) + 1) * tds
    for F in sorted({1, 2, max(1, span // 2), span, span + 1, 2 * span - 1, 5 * span + 7}):
        ws = seq2seq_windows([np.zeros((F, 17, 2), np.float32)], frames, tds, 0, H36M_LEFT, H36M_RIGHT,
                             overlap=overlap)
        idx = ws.frame_indices(np.arange(len(ws)))
        assert ws.weights.shape == idx.shape
        total = np.zeros(F)
        np.add.at(total, idx.ravel(), ws.weights.ravel())
        assert np.all(total > 0), (F, total)
        # each block's tds windows hold each of its frames once; weight 0 exactly outside the sequence
        starts = seq2seq_starts(F, frames, tds, overlap)
        unclamped = (ws.centre[:, None] + (np.arange(idx.shape[1]) - ws.pad)[None] * tds).reshape(len(starts), -1)
        for b, s in enumerate(starts):
            assert sorted(unclamped[b].tolist()) == list(range(s, s + span))
        outside = (unclamped < 0) | (unclamped >= F)
        w = ws.weights.reshape(len(starts), -1)
        assert np.all(w[~outside] > 0)
        assert np.all(w[outside] == 0) if overlap else np.all(w == 1)
        assert seq2seq_passes_per_frame(F, frames, tds, overlap) == pytest.approx(2 * len(ws) / F)


def test_crossfade_weights_sum_to_one():
    w = seq2seq_block_weights(3, 10, 5)
    np.testing.assert_allclose(w[0, 5:] + w[1, :5], 1)
    np.testing.assert_allclose(w[1, 5:] + w[2, :5], 1)
    assert np.all(w[0, :5] == 1) and np.all(w[2, 5:] == 1)  # no fade where no block follows
    assert w.min() > 0


def test_passes_per_frame_halve_the_hop():
    F = 27 * 3 * 40
    assert seq2seq_passes_per_frame(F, 27, 3, 0) == pytest.approx(2 / 27, rel=0.03)
    assert seq2seq_passes_per_frame(F, 27, 3, 0.5) == pytest.approx(4 / 27, rel=0.03)


def test_bad_overlap():
    with pytest.raises(UsageError, match="overlap"):
        seq2seq_centres(100, 27, 3, overlap=1.0)
    with pytest.raises(UsageError, match="overlap"):
        stcformer.lift(np.zeros((5, 17, 2)) + 3, checkpoint=EdgeBiased(0), fps=50, size=(10, 10),
                       mode="seq2seq", overlap=-0.1)
