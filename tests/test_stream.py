"""stcformer.StreamLifter and stcformer.infer.stream.serve: online lifting, one frame at a time."""
import io
import json

import numpy as np
import pytest
import torch

import stcformer
from stcformer import StreamLifter
from stcformer.errors import UsageError
from stcformer.infer.joints import coco_to_h36m
from stcformer.infer.stream import serve

SIZE = (1000, 800)


def recording(T, seed=0, score=0.9):
    """A recorded person: (T, 17, 3) pixels and scores, every joint detected."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(300, 700, size=(17, 2))
    xy = base + 40 * np.sin(np.arange(T)[:, None, None] / 6 + rng.uniform(0, 6, size=(17, 2)))
    return np.concatenate([xy, np.full((T, 17, 1), score)], -1).astype(np.float32)


def stream(lifter, kpts):
    """Push every frame; returns (frame of each emitted pose, the poses), the flushed tail included."""
    frames, poses = [], []
    for i, f in enumerate(kpts):
        p = lifter.push(f)
        if p is not None:
            frames.append(i - lifter.latency)
            poses.append(p)
    tail = lifter.flush()
    frames += list(range(len(kpts) - len(tail), len(kpts)))
    return frames, np.concatenate([np.stack(poses), tail]) if poses else tail


@pytest.mark.parametrize("T", [60, 13, 5, 1])
def test_stream_equals_offline_centre_mode(ckpt, T):
    kpts = recording(T)
    offline = stcformer.lift(kpts, checkpoint=ckpt, fps=50, size=SIZE, mode="center", frames=9)
    lifter = StreamLifter(ckpt, fps=50, size=SIZE, frames=9)
    assert (lifter.tds, lifter.pad, lifter.latency) == (3, 4, 12)  # latency = pad * tds
    assert lifter.latency_s == pytest.approx(12 / 50)
    frames, poses = stream(lifter, kpts)
    assert frames == list(range(T)) and poses.shape == (T, 17, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(poses, offline, rtol=0, atol=1e-5)
    # flush starts a new sequence: the same frames again give the same poses
    np.testing.assert_allclose(stream(lifter, kpts)[1], poses, rtol=0, atol=1e-6)


def test_default_window_from_checkpoint_and_fps(ckpt):
    lifter = StreamLifter(ckpt, fps=30, size=SIZE)  # no training args: 27 frames, tds 3 at 50 fps
    assert (lifter.frames, lifter.tds, lifter.latency) == (27, 2, 26)


@pytest.mark.parametrize("latency", [0, 5])
def test_latency_option(ckpt, latency):
    """Frame t comes out when frame t + latency arrives, lifted as if the sequence ended there."""
    T = 30
    kpts = recording(T, seed=1)
    lifter = StreamLifter(ckpt, fps=50, size=SIZE, frames=9, latency=latency)
    assert lifter.latency == latency
    out = [lifter.push(f) for f in kpts]
    assert all(p is None for p in out[:latency]) and all(p is not None for p in out[latency:])
    tail = lifter.flush()
    assert len(tail) == latency
    for t in (0, 3, 10, T - 1 - latency):
        prefix = stcformer.lift(kpts[:t + latency + 1], checkpoint=ckpt, fps=50, size=SIZE, frames=9)
        np.testing.assert_allclose(out[t + latency], prefix[t], rtol=0, atol=1e-5)
    full = stcformer.lift(kpts, checkpoint=ckpt, fps=50, size=SIZE, frames=9)
    np.testing.assert_allclose(tail, full[T - latency:], rtol=0, atol=1e-5)
    # less delay than the window needs costs accuracy: the frames differ from the full-latency ones
    assert np.abs(np.stack(out[latency:]) - full[:T - latency]).max() > 1e-3


def test_bad_latency(ckpt):
    with pytest.raises(UsageError, match="from 0 to 12"):
        StreamLifter(ckpt, fps=50, size=SIZE, frames=9, latency=13)
    with pytest.raises(UsageError, match="image size"):
        StreamLifter(ckpt, fps=50, size=None)
    with pytest.raises(UsageError, match="frame rate"):
        StreamLifter(ckpt, fps=None, size=SIZE)


def test_gaps_follow_offline_where_the_frames_have_arrived(ckpt):
    """A gap closed before a window reaches it is interpolated as offline; a window that ends inside
    a gap sees its last value held instead (offline interpolates towards the future)."""
    T, L = 60, 12
    kpts = recording(T, seed=2)
    kpts[:3, :, 2] = 0          # no detection at the start: filled from the first detected frame
    kpts[30:34, :, 2] = 0       # a gap of 4 frames
    kpts[45:47, 5, 2] = 0.1     # one low-score joint
    offline = stcformer.lift(kpts, checkpoint=ckpt, fps=50, size=SIZE, frames=9)
    frames, poses = stream(StreamLifter(ckpt, fps=50, size=SIZE, frames=9), kpts)
    assert frames == list(range(T))
    # frame t's window ends at t + L: inside a gap there, the online value is held
    open_gap = np.zeros(T, bool)
    for t in range(T):
        open_gap[t] = 30 <= t + L <= 33 or 45 <= t + L <= 46
    np.testing.assert_allclose(poses[~open_gap], offline[~open_gap], rtol=0, atol=1e-5)
    assert np.abs(poses[open_gap] - offline[open_gap]).max(axis=(1, 2)).min() > 1e-6


def test_missing_frames_are_accepted(ckpt):
    lifter = StreamLifter(ckpt, fps=50, size=SIZE, frames=9, latency=0)
    assert lifter.push(None).shape == (17, 3)       # nothing known yet: the image centre
    assert lifter.push(np.zeros((0, 3))).shape == (17, 3)
    assert np.isfinite(lifter.push(recording(1)[0])).all()
    with pytest.raises(UsageError, match="joints"):
        StreamLifter(ckpt, fps=50, size=SIZE, joints="coco").push(np.zeros((16, 3)) + 5)


def lines(kpts, style):
    for i, f in enumerate(kpts):
        if style == "mixed":
            kind = i % 3
        else:
            kind = 0
        if kind == 0:
            yield json.dumps({"keypoints": f.tolist(), "frame": i})
        elif kind == 1:
            yield json.dumps(f.tolist())
        else:
            yield json.dumps({"keypoints": f.reshape(-1).tolist()})  # flat x, y, score triples


def test_serve_round_trip(ckpt):
    T = 20
    kpts = recording(T, seed=3)
    inp = io.StringIO("\n".join(lines(kpts, "mixed")) + "\n\n")
    out = io.StringIO()
    assert serve(ckpt, 50, SIZE, inp=inp, out=out) == 0
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["frame"] for d in docs] == list(range(T))
    _, expect = stream(StreamLifter(ckpt, fps=50, size=SIZE), kpts)
    np.testing.assert_allclose(np.array([d["pose_3d"] for d in docs]), expect, rtol=0, atol=1e-5)


def test_serve_coco_and_latency(ckpt):
    T = 16
    coco = recording(T, seed=4)
    inp = io.StringIO("\n".join(lines(coco, "dict")) + "\n")
    out = io.StringIO()
    assert serve(ckpt, 50, SIZE, latency=0, joints="coco", inp=inp, out=out) == 0
    got = np.array([json.loads(line)["pose_3d"] for line in out.getvalue().splitlines()])
    h36m = np.concatenate([coco_to_h36m(coco[..., :2]), coco[..., 2:]], -1)
    _, expect = stream(StreamLifter(ckpt, fps=50, size=SIZE, latency=0), h36m)
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)


class Lines(io.StringIO):
    """An output that records what had been written at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue().count("\n"))


@pytest.mark.parametrize("bad,match", [
    ("not json", "line 3"), ('{"kp": []}', "line 3"), ("[[1, 2, 3]]", "line 3"), ('"text"', "line 3"),
])
def test_serve_bad_line_exits_2(ckpt, capsys, bad, match):
    kpts = recording(5, seed=5)
    text = "\n".join(list(lines(kpts[:2], "dict")) + [bad] + list(lines(kpts[2:], "dict"))) + "\n"
    out = Lines()
    rc = serve(ckpt, 50, SIZE, latency=1, inp=io.StringIO(text), out=out)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
    assert out.getvalue().count("\n") == 1 and out.flushed == [1]  # frame 0 went out, flushed; no tail


def test_stream_lifter_is_exported():
    assert "StreamLifter" in stcformer.__all__ and stcformer.StreamLifter is StreamLifter
