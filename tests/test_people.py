"""Every person in a video (stcformer.infer.people: the ``multipose`` detector and the tracker) and
no pose where nobody is (stcformer.infer.gaps.absent_frames)."""
import numpy as np
import pytest

from stcformer.infer.gaps import absent_frames, default_max_gap, detected_frames, frames_to_detection, segments
from stcformer.infer.people import Linker, link_people


def has_detector():
    try:
        import cv2  # noqa: F401
        import mediapipe  # noqa: F401
        from mediapipe.python.solutions import pose  # noqa: F401
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- no pose where nobody is

def test_default_max_gap_is_half_a_second():
    assert default_max_gap(10) == 5 and default_max_gap(30) == 15 and default_max_gap(50) == 25
    assert default_max_gap(None) == 15 and default_max_gap(1) == 1


def test_absent_frames_far_from_detections():
    T = 40
    scores = np.zeros((T, 17), np.float32)
    scores[[8, 9, 30]] = 0.9
    scores[20, :5] = 0.9  # too few joints: not a detection
    det = detected_frames(scores, 0.3)
    assert det.tolist() == [t in (8, 9, 30) for t in range(T)]
    absent = absent_frames(scores, fps=10)  # max_gap 5
    dist = frames_to_detection(det)
    assert (absent == (dist > 5)).all()
    assert absent[:3].all() and not absent[3:15].any() and absent[15:25].all() and not absent[25:36].any()
    assert absent[36:].all()
    assert segments(~absent) == [(3, 14), (25, 35)]
    assert not absent_frames(scores, max_gap=-1).any()
    assert absent_frames(detected=np.zeros(5, bool), max_gap=2).all()


def test_no_finite_pose_far_from_a_detection():
    """What the lift does with it: the poses of absent frames are NaN, the rest kept."""
    from stcformer.export.poses import PoseTrack

    rng = np.random.default_rng(0)
    T, first, n = 50, 4, 40
    det = np.zeros(T, bool)
    det[[4, 5, 6, 25, 43]] = True
    track = PoseTrack(poses=rng.normal(size=(n, 17, 3)).astype(np.float32),
                      keypoints=rng.uniform(0, 100, (n, 17, 2)).astype(np.float32), filled=np.zeros((n, 17), bool),
                      root=np.zeros((n, 3)), scores=np.where(det[:, None], 0.9, 0.0).repeat(17, 1), first=first,
                      track=0)
    gap = 3
    out = track.without(absent_frames(track.scores, max_gap=gap))
    finite = np.zeros(T, bool)
    finite[first:first + n] = out.posed
    assert (frames_to_detection(det)[finite] <= gap).all()
    assert finite[[4, 9, 22, 28, 40, 43]].all() and not finite[[10, 21, 29, 39]].any()


# ---------------------------------------------------------------- the tracker

def _box(cx, cy, w=40, h=60):
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


def test_link_people_keeps_ids_when_two_cross():
    # two people walking towards each other on the same line; for three frames only the front one
    # is seen (the other hidden behind), then both again: ids follow the motion and the looks
    red, blue = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    linker = Linker(max_miss=10)
    ids = []
    for t in range(30):
        a, b = _box(20 + 10 * t, 100), _box(320 - 10 * t, 104)
        if 14 <= t <= 16:
            ids.append(linker.step([a], [red]))
        else:
            ids.append(linker.step([b, a], [blue, red]))
    a_ids = {i[-1] for i in ids}
    b_ids = {i[0] for t, i in enumerate(ids) if len(i) == 2}
    assert a_ids == {1} and b_ids == {0}


def test_link_people_reidentifies_over_short_misses_only():
    frames = [[_box(100 + 5 * t, 100)] if t < 10 or 14 <= t < 20 or t >= 40 else [] for t in range(45)]
    ids = link_people(frames, max_miss=5)
    flat = [i[0] for i in ids if i]
    assert set(flat[:16]) == {0}  # back after a 4-frame miss: the same person
    assert set(flat[16:]) == {1}  # back after 20 frames: a new track


# ---------------------------------------------------------------- the detector on a real photo

def crossing_clip(frames=20, size=(640, 360)):
    """Two real photographs of a person (matplotlib's Grace Hopper, the second mirrored and tinted)
    walking across each other, the first in front; returns the frames and each photo's centre x."""
    import matplotlib.cbook as cbook
    from PIL import Image

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    W, H = size
    a = np.asarray(photo.resize((150, 176)))
    b = np.asarray(photo.resize((150, 176)).transpose(Image.FLIP_LEFT_RIGHT))
    b = (b * [0.8, 0.9, 1.1]).clip(0, 255).astype(np.uint8)
    video, xs = [], []
    for t in range(frames):
        u = t / (frames - 1)
        xa, xb = int(20 + u * (W - 190)), int(W - 170 - u * (W - 190))
        canvas = np.full((H, W, 3), 90, np.uint8)
        canvas[100:276, xb:xb + 150] = b
        canvas[80:256, xa:xa + 150] = a  # a in front
        video.append(canvas)
        xs.append((xa + 75, xb + 75))
    return video, np.asarray(xs, np.float64)


@pytest.fixture(scope="module")
def crossing():
    if not has_detector():
        pytest.skip("needs mediapipe and opencv")
    from stcformer.infer.detectors import get_detector

    video, xs = crossing_clip()
    people = get_detector("multipose", fps=10, hog=False).detect_people(video)  # HOG: full bodies only
    return video, xs, people


def test_two_people_found_where_two_are_visible(crossing):
    video, xs, people = crossing
    n = people.per_frame()
    apart = np.abs(xs[:, 0] - xs[:, 1]) > 150  # the photos do not overlap
    assert (n[apart] == 2).all(), n
    assert len(people.tracks) == 2
    for tr in people.tracks.values():
        assert tr.shape == (len(video), 33, 3)
        missing = ~np.isfinite(tr[..., :2]).all(-1)
        assert (tr[..., 2][missing] == 0).all()


def test_ids_do_not_swap_when_they_cross(crossing):
    video, xs, people = crossing
    for tid, boxes in people.boxes.items():
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        seen = np.isfinite(cx) & (np.abs(xs[:, 0] - xs[:, 1]) > 75)  # where the photos are told apart
        # each track stays on one photo: the nearer photo centre is the same in every frame seen
        which = np.argmin(np.abs(cx[seen, None] - xs[seen]), axis=1)
        assert len(set(which.tolist())) == 1, (tid, which)
        assert seen.sum() >= 12
    first = {tid: int(np.argmin(np.abs(((b[:, 0] + b[:, 2]) / 2)[np.isfinite(b[:, 0])][0] - xs[0])))
             for tid, b in people.boxes.items()}
    assert sorted(first.values()) == [0, 1]


def test_multipose_is_a_registered_detector():
    from stcformer.infer.detectors import DETECTORS, check_detector

    assert "multipose" in DETECTORS
    if has_detector():
        check_detector("multipose")


@pytest.mark.slow
def test_video_person_all_lifts_every_person(tmp_path):
    """``infer --video --person all``: every person found is lifted into a folder of its own, the
    keypoint file holds every track, and no pose is written far from a person's detections."""
    if not has_detector():
        pytest.skip("needs mediapipe and opencv")
    import json

    import imageio.v3 as iio

    from stcformer import STCFormer, save_checkpoint
    from stcformer.cli.infer import main

    video, _ = crossing_clip()
    clip, ckpt, out = tmp_path / "two.mp4", tmp_path / "m.pth", tmp_path / "out"
    iio.imwrite(clip, np.stack(video), fps=10, plugin="FFMPEG", codec="libx264", quality=8)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), ckpt)
    assert main(["--video", str(clip), "--checkpoint", str(ckpt), "--out", str(out), "--person", "all",
                 "--frames", "9", "--bvh", "p.bvh"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.name.startswith("person_"))
    assert len(folders) >= 2, folders
    doc = json.loads((out / "keypoints_2d.json").read_text())
    assert len({a["track_id"] for a in doc["annotations"]}) == len(folders)
    for name in folders:
        z = np.load(out / name / "poses_3d.npz")
        assert z["reconstruction"].shape == (len(video), 17, 3)
        assert (out / name / "p.bvh").exists()
        lengths = z["bone_lengths"]
        assert np.isfinite(lengths).all() and (lengths[1:] > 0).all()  # [0]: the root, no bone
