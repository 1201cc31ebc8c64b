"""python -m stcformer.infer and stcformer.lift on the user's own keypoints."""
import json
import os

import numpy as np
import pytest
import torch

import stcformer
from stcformer import STCFormer, save_checkpoint
from stcformer.model.checkpoint import load_checkpoint
from stcformer.cli.common import run
from stcformer.data.cameras import normalize_screen_coordinates
from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT
from stcformer.data.windows import flip_pose
from stcformer.cli.infer import main
from stcformer.evaluation.predict import predict_sequence, seq2seq_centres
from stcformer.export.render import Z_UP


def infer(*args):
    return run(lambda: main([str(a) for a in args]))


class FrameLocal(torch.nn.Module):
    """Lifts each frame on its own: (x, y) -> (x, y, 0). Flip-averaging leaves it unchanged."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.cat([x, torch.zeros_like(x[..., :1])], -1) + 0 * self.dummy


def test_infer_writes_poses_and_preview(tmp_path, ckpt):
    kpts = np.random.default_rng(0).uniform(100, 900, size=(1, 12, 17, 2)).astype(np.float32)
    np.savez(tmp_path / "kpts.npz", reconstruction=kpts)
    out = tmp_path / "out"
    rc = infer("--checkpoint", ckpt, "--keypoints", tmp_path / "kpts.npz", "--width", 1000, "--height", 1000,
               "--fps", 50, "--out", out, "-f", 9, "--device", "cpu")
    assert rc == 0
    z = np.load(out / "poses_3d.npz")
    poses = z["reconstruction"]
    assert poses.shape == (12, 17, 3) and np.isfinite(poses).all()
    assert np.all(poses[:, 0] == 0)  # root-relative
    np.testing.assert_allclose(z["reconstruction_z_up"], np.stack([poses[..., 0], poses[..., 2], -poses[..., 1]], -1))
    assert z["tds"] == 3 and z["frames"] == 9 and str(z["mode"]) == "seq2seq" and z["fps"] == 50  # the default
    assert (out / "preview.png").stat().st_size > 1000


def test_centre_mode_keeps_the_centre_frame():
    model = STCFormer(layers=1, d_hid=32, num_heads=2).eval()
    x = np.random.default_rng(1).normal(size=(7, 17, 2)).astype(np.float32)
    poses = predict_sequence(model, x, frames=3, tds=2)
    with torch.no_grad():  # frame 3's window with tds 2 is frames 1, 3, 5; its centre is index 1
        w = torch.from_numpy(x[None, [1, 3, 5]])
        pred = model(w) + flip_pose(model(flip_pose(w, H36M_LEFT, H36M_RIGHT)), H36M_LEFT, H36M_RIGHT)
        expect = pred[0, 1] / 2
        expect[0] = 0
    assert poses.shape == (7, 17, 3)
    np.testing.assert_allclose(poses[3], expect.numpy(), rtol=1e-5, atol=1e-6)


def test_seq2seq_mode_keeps_every_frame_of_its_windows():
    model = STCFormer(layers=1, d_hid=32, num_heads=2).eval()
    x = np.random.default_rng(2).normal(size=(7, 17, 2)).astype(np.float32)
    # blocks of 3*2 = 6 frames: starts 0 and 1 (the last aligned to the end); windows
    # (0,2,4), (1,3,5) and (1,3,5), (2,4,6)
    np.testing.assert_array_equal(seq2seq_centres(7, 3, 2, overlap=0), [2, 3, 3, 4])
    poses = predict_sequence(model, x, frames=3, tds=2, mode="seq2seq", overlap=0)  # non-overlapping blocks

    def window(frames):
        with torch.no_grad():
            w = torch.from_numpy(x[None, frames])
            p = model(w) + flip_pose(model(flip_pose(w, H36M_LEFT, H36M_RIGHT)), H36M_LEFT, H36M_RIGHT)
            p = (p / 2)[0].numpy()
        p[:, 0] = 0
        return p

    a, b, c = window([0, 2, 4]), window([1, 3, 5]), window([2, 4, 6])
    np.testing.assert_allclose(poses[0], a[0], rtol=1e-5, atol=1e-6)    # one window
    np.testing.assert_allclose(poses[3], b[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(poses[2], (a[1] + c[0]) / 2, rtol=1e-5, atol=1e-6)  # two: averaged
    np.testing.assert_allclose(poses[6], c[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("F,frames,tds", [(5, 27, 3), (81, 27, 3), (100, 27, 3), (300, 9, 2), (1, 9, 1)])
def test_seq2seq_windows_cover_every_frame(F, frames, tds):
    from stcformer.data.windows import window_indices

    idx = window_indices(F, seq2seq_centres(F, frames, tds), (frames - 1) // 2, tds)
    assert set(idx.ravel()) == set(range(F))


@pytest.mark.parametrize("mode", ["center", "seq2seq"])
def test_time_alignment(mode):
    """A pose that changes at frame 40 comes out changed at frame 40, also with gaps filled."""
    T, k = 90, 40
    rng = np.random.default_rng(4)
    a, b = rng.uniform(200, 800, size=(2, 17, 2)).astype(np.float32)
    xy = np.where((np.arange(T) < k)[:, None, None], a, b)
    sc = np.ones((T, 17, 1), np.float32)
    sc[10:15] = 0       # gaps away from the change: filled by interpolation (same pose both sides)
    sc[70:73, 3] = 0.1  # a low-score ankle
    sc[-4:] = 0         # the end: held
    for data in (xy, np.concatenate([xy, sc], -1)):
        poses = stcformer.lift(data, checkpoint=FrameLocal(), fps=50, size=(1000, 1000), mode=mode, frames=9)
        assert poses.shape == (T, 17, 3)
        expect = normalize_screen_coordinates(xy, w=1000, h=1000)
        expect[:, 0] = 0
        np.testing.assert_allclose(poses[..., :2], expect, atol=1e-6)
        change = np.flatnonzero(np.abs(np.diff(poses, axis=0)).max(axis=(1, 2)) > 1e-6) + 1
        assert list(change) == [k]


def test_lift_api_matches_the_cli(tmp_path, ckpt):
    kpts = np.random.default_rng(5).uniform(100, 900, size=(30, 17, 2)).astype(np.float32)
    np.save(tmp_path / "k.npy", kpts)
    for mode in ("center", "seq2seq"):
        out = tmp_path / mode
        assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / "k.npy", "--width", 1000, "--height", 800,
                     "--fps", 30, "--out", out, "-f", 9, "--mode", mode, "--device", "cpu") == 0
        cli = np.load(out / "poses_3d.npz")["reconstruction"]
        api = stcformer.lift(kpts, checkpoint=ckpt, fps=30, size=(1000, 800), mode=mode, frames=9)
        np.testing.assert_array_equal(api, cli)
        api2 = stcformer.lift(stcformer.read_keypoints(tmp_path / "k.npy"), checkpoint=ckpt, tds=2,
                              size=(1000, 800), mode=mode, frames=9)  # tds 2 = round(3*30/50)
        np.testing.assert_array_equal(api2, cli)


def test_cli_json_input_all_outputs(tmp_path, ckpt, capsys):
    T = 24
    rng = np.random.default_rng(6)
    base = rng.uniform(300, 700, size=(17, 2))
    recs = []
    for f in range(T):
        if f in (5, 6):
            continue
        pose = base + 3 * np.sin(f / 4) + rng.normal(scale=2, size=(17, 2))
        kp = np.concatenate([pose, np.full((17, 1), 0.9)], 1).reshape(-1).tolist()
        recs.append({"image_id": f"{f}.jpg", "keypoints": kp, "box": [250, 250, 500, 500], "idx": 1})
        recs.append({"image_id": f"{f}.jpg", "keypoints": (np.array(kp) * 0.5).tolist(), "box": [0, 0, 9, 9],
                     "idx": 2})
    (tmp_path / "alphapose-results.json").write_text(json.dumps(recs))
    out = tmp_path / "out"
    rc = infer("--checkpoint", ckpt, "--keypoints", tmp_path / "alphapose-results.json", "--width", 1000,
               "--height", 1000, "--fps", 25, "--out", out, "-f", 9, "--mode", "seq2seq", "--smooth",
               "--json", out / "p.json", "--bvh", out / "p.bvh", "--bvh-root", "--render", out / "a.gif",
               "--device", "cpu")
    text = capsys.readouterr().out
    assert rc == 0
    assert "track 1" in text and "filled 2 of 24 frames" in text and "jitter" in text and "mm/frame^2" in text
    poses = np.load(out / "poses_3d.npz")["reconstruction"]
    doc = json.loads((out / "p.json").read_text())
    np.testing.assert_allclose(doc["reconstruction"], poses, atol=1e-5)
    np.testing.assert_allclose(doc["reconstruction_z_up"], poses @ Z_UP.T, atol=1e-5)
    assert doc["fps"] == 25 and doc["joints"][0] == "Hip"
    bvh = (out / "p.bvh").read_text()
    assert "Frames: 24" in bvh and "Frame Time: 0.040000" in bvh
    from PIL import Image
    with Image.open(out / "a.gif") as im:
        assert im.n_frames == T


def files_in(folder):
    return sorted(p for p in os.listdir(folder)) if os.path.isdir(folder) else []


def _write(tmp_path, kind):
    p = tmp_path / "k.npy"
    rng = np.random.default_rng(7)
    if kind == "missing":
        return p, "no such file"
    if kind == "joints":
        np.save(p, rng.uniform(1, 9, size=(5, 16, 2)))
        return p, "16 joints"
    if kind == "nan":
        np.save(p, np.full((5, 17, 2), np.nan))
        return p, "too few usable frames"
    if kind == "zeros":
        np.save(p, np.zeros((5, 17, 2)))
        return p, "too few usable frames: 0 of 5"
    if kind == "lowscore":
        np.save(p, np.concatenate([rng.uniform(1, 9, size=(5, 17, 2)), np.full((5, 17, 1), 0.1)], -1))
        return p, "scoring >= 0.3"
    if kind == "garbage":
        p = tmp_path / "k.npz"
        p.write_bytes(b"not a zip")
        return p, "not a readable"
    if kind == "nopeople":
        p = tmp_path / "k.json"
        p.write_text("[]")
        return p, "no people"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "joints", "nan", "zeros", "lowscore", "garbage", "nopeople"])
def test_bad_keypoints_exit_2(tmp_path, ckpt, capsys, kind):
    path, match = _write(tmp_path, kind)
    out = tmp_path / "o"
    rc = infer("--checkpoint", ckpt, "--keypoints", path, "--width", 10, "--height", 10, "--fps", 30,
               "--out", out, "--json", out / "p.json", "--bvh", out / "p.bvh", "--render", out / "a.gif")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err and match in err, err
    assert files_in(out) == []


@pytest.mark.parametrize("drop,match", [
    (["--fps", "30"], "frame rate: pass --fps"),
    (["--width", "100", "--height", "100"], "image size: pass --width and --height"),
])
def test_missing_fps_or_size_exit_2(tmp_path, ckpt, capsys, drop, match):
    np.save(tmp_path / "k.npy", np.random.default_rng(8).uniform(1, 90, size=(6, 17, 2)))
    args = ["--checkpoint", ckpt, "--keypoints", str(tmp_path / "k.npy"), "--width", "100", "--height", "100",
            "--fps", "30", "--out", str(tmp_path / "o")]
    for i, a in enumerate(args):
        if a == drop[0]:
            del args[i:i + len(drop)]
            break
    rc = infer(*args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err and "k.npy" in err, err
    assert files_in(tmp_path / "o") == []


def test_mp4_without_ffmpeg_is_refused_first(tmp_path, ckpt, capsys, monkeypatch):
    import stcformer.export.render as render
    monkeypatch.setattr(render, "ffmpeg_exe", lambda: None)
    np.save(tmp_path / "k.npy", np.random.default_rng(9).uniform(1, 90, size=(6, 17, 2)))
    rc = infer("--checkpoint", ckpt, "--keypoints", tmp_path / "k.npy", "--width", 100, "--height", 100,
               "--fps", 30, "--out", tmp_path / "o", "--render", tmp_path / "o" / "a.mp4")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "needs ffmpeg" in err and "a.mp4" in err and len(err.splitlines()) == 1
    assert files_in(tmp_path / "o") == []


def test_videopose3d_file_gives_the_size(tmp_path, ckpt):
    rng = np.random.default_rng(10)
    coco = rng.uniform(100, 600, size=(15, 17, 2)).astype(np.float32)
    np.savez_compressed(tmp_path / "vp3d.npz", positions_2d={"v.mp4": {"custom": [coco]}},
                        metadata={"layout_name": "coco", "video_metadata": {"v.mp4": {"w": 640, "h": 480}}})
    assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / "vp3d.npz", "--fps", 25, "--out",
                 tmp_path / "o", "-f", 9, "--device", "cpu") == 0
    z = np.load(tmp_path / "o" / "poses_3d.npz")
    assert tuple(z["size"]) == (640, 480) and z["reconstruction"].shape == (15, 17, 3)


def test_amp_is_opt_in(tmp_path, ckpt):
    kpts = np.random.default_rng(3).uniform(100, 900, size=(10, 17, 2)).astype(np.float32)
    np.save(tmp_path / "k.npy", kpts)
    poses = {}
    for amp in (None, "bf16"):
        out = tmp_path / str(amp)
        extra = [] if amp is None else ["--amp", amp]
        rc = infer("--checkpoint", ckpt, "--keypoints", tmp_path / "k.npy", "--width", 1000, "--height", 1000,
                   "--fps", 50, "--out", out, "-f", 5, "--device", "cpu", "--mode", "center", *extra)
        assert rc == 0
        poses[amp] = np.load(out / "poses_3d.npz")["reconstruction"]
    from stcformer.cli.infer import parse_args
    assert parse_args(["--checkpoint", ckpt, "--keypoints", "k", "--out", "o"]).amp == "none"  # float32 by default
    model = load_checkpoint(ckpt)
    x = normalize_screen_coordinates(kpts, w=1000, h=1000).astype(np.float32)
    np.testing.assert_array_equal(poses[None], predict_sequence(model, x, frames=5, tds=3))  # tds 3 at 50 fps
    assert poses["bf16"].dtype == np.float32 and not np.array_equal(poses["bf16"], poses[None])
    np.testing.assert_allclose(poses["bf16"], poses[None], rtol=0.05, atol=0.02)


def test_old_format_flag_names_the_joint_set(tmp_path, ckpt, capsys):
    """--format takes file formats only: a joint set there is argparse's usage error (--joints names it)."""
    from stcformer.infer.joints import coco_to_h36m

    kpts = np.random.default_rng(11).uniform(100, 900, size=(8, 17, 2)).astype(np.float32)
    np.save(tmp_path / "k.npy", kpts)
    np.save(tmp_path / "h.npy", coco_to_h36m(kpts))
    common = ["--width", 1000, "--height", 1000, "--fps", 50, "-f", 5, "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:
        infer("--checkpoint", ckpt, "--keypoints", tmp_path / "k.npy", "--out", tmp_path / "x", "--format", "coco",
              *common)
    assert exc.value.code == 2
    assert "--format: invalid choice: 'coco'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    for name, extra in (("k.npy", ["--joints", "coco"]), ("h.npy", [])):
        assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / name, "--out", tmp_path / name[0], *common,
                     *extra) == 0
    np.testing.assert_allclose(np.load(tmp_path / "k" / "poses_3d.npz")["reconstruction"],
                               np.load(tmp_path / "h" / "poses_3d.npz")["reconstruction"], atol=1e-5)


def _two_people(T=30, short=range(10, 15), tracked=True):
    """Detections of two people: one in every frame, one only in the ``short`` frames."""
    rng = np.random.default_rng(12)
    base = [rng.uniform(100, 300, size=(17, 2)), rng.uniform(600, 800, size=(17, 2))]
    recs = []
    for f in range(T):
        for who in (0, 1):
            if who == 1 and f not in short:
                continue
            pose = base[who] + 4 * np.sin(f / 3 + who) + rng.normal(scale=1, size=(17, 2))
            kp = np.concatenate([pose, np.full((17, 1), 0.9)], 1).reshape(-1).tolist()
            lo = pose.min(0)
            rec = {"image_id": f"{f}.jpg", "keypoints": kp, "box": [*lo, *(pose.max(0) - lo)]}
            if tracked:
                rec["idx"] = 7 + who
            recs.append(rec)
    rng.shuffle(recs)
    return recs


def test_person_all_one_folder_per_track(tmp_path, ckpt):
    from stcformer.infer.pipeline import window_stride
    from stcformer.infer.readers import read_tracks

    (tmp_path / "people.json").write_text(json.dumps(_two_people()))
    out = tmp_path / "out"
    assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / "people.json", "--person", "all", "--mode", "center",
                 "--width", 1000,
                 "--height", 1000, "--fps", 25, "--out", out, "-f", 9, "--json", out / "p.json", "--bvh",
                 out / "p.bvh", "--render", out / "all.gif", "--device", "cpu") == 0
    assert files_in(out) == ["all.gif", "person_7", "person_8"]
    assert files_in(out / "person_8") == ["p.bvh", "p.json", "poses_3d.npz", "preview.png"]
    a, b = np.load(out / "person_7" / "poses_3d.npz"), np.load(out / "person_8" / "poses_3d.npz")
    assert a["reconstruction"].shape == b["reconstruction"].shape == (30, 17, 3)  # aligned to the input frames
    assert np.isfinite(a["reconstruction"]).all() and a["lifted"].all()
    lifted = np.isfinite(b["reconstruction"]).all((1, 2))
    assert list(np.flatnonzero(lifted)) == list(range(10, 15)) and (b["lifted"] == lifted).all()
    assert list(b["span"]) == [10, 14] and int(b["track"]) == 8
    assert np.isfinite(b["root_translation"][10:15]).all() and np.isnan(b["root_translation"][:10]).all()
    # the 5-frame track (shorter than the 9-frame window) is lifted on its own frames, edges repeated
    model = load_checkpoint(ckpt)
    track = [kp for kp in read_tracks(tmp_path / "people.json") if kp.track == 8][0]
    x = normalize_screen_coordinates(track.xy[10:15], w=1000, h=1000).astype(np.float32)
    np.testing.assert_array_equal(b["reconstruction"][10:15], predict_sequence(model, x, 9, window_stride(25)))
    doc = json.loads((out / "person_8" / "p.json").read_text())
    assert doc["reconstruction"][0][0] == [None, None, None] and None not in doc["reconstruction"][12][0]
    assert doc["span"] == [10, 14] and len(doc["reconstruction"]) == 30
    assert "Frames: 30" in (out / "person_8" / "p.bvh").read_text()  # held outside the span
    from PIL import Image
    with Image.open(out / "all.gif") as im:
        assert im.n_frames == 30 and im.size[0] > 2 * im.size[1]  # the 2D and two 3D panels side by side


def test_person_all_links_untracked_boxes(tmp_path, ckpt):
    """Without track ids, boxes are linked frame to frame: the same two people, ids 0 and 1."""
    for tracked in (True, False):
        (tmp_path / f"{tracked}.json").write_text(json.dumps(_two_people(tracked=tracked)))
        assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / f"{tracked}.json", "--person", "all",
                     "--width", 1000, "--height", 1000, "--fps", 25, "--out", tmp_path / str(tracked), "-f", 9,
                     "--device", "cpu") == 0
    assert files_in(tmp_path / "False") == ["person_0", "person_1"]
    for a, b in ((7, 0), (8, 1)):
        np.testing.assert_array_equal(np.load(tmp_path / "True" / f"person_{a}" / "poses_3d.npz")["reconstruction"],
                                      np.load(tmp_path / "False" / f"person_{b}" / "poses_3d.npz")["reconstruction"])


def test_root_translation_in_the_npz_and_the_bvh(tmp_path, ckpt):
    from stcformer.export.bvh import bvh_text, root_trajectory
    from stcformer.export.smoothing import trajectory_window

    kpts = np.random.default_rng(13).uniform(300, 700, size=(20, 17, 3)).astype(np.float32)
    kpts[..., 2] = 0.9
    kpts[5, 3, 2] = 0.1  # filled: no weight in the fit
    np.save(tmp_path / "k.npy", kpts)
    out = tmp_path / "o"
    assert infer("--checkpoint", ckpt, "--keypoints", tmp_path / "k.npy", "--width", 1000, "--height", 800,
                 "--fps", 30, "--out", out, "-f", 9, "--focal", 1200, "--bvh", out / "p.bvh", "--bvh-root",
                 "--device", "cpu") == 0
    z = np.load(out / "poses_3d.npz")
    weights = np.where(z["filled"], 0, z["scores"])
    assert weights[5, 3] == 0 and float(z["focal"]) == 1200
    expect = root_trajectory(z["reconstruction"], z["keypoints_2d"], (1000, 800), focal=1200, weights=weights,
                             smooth=trajectory_window(30))
    np.testing.assert_allclose(z["root_translation"], expect, rtol=1e-6, atol=1e-7)
    # --bones fixed: the BVH of skeleton_3d (the npz keeps float32, so the last printed digit may differ)
    want = bvh_text(z["skeleton_3d"], 30.0, root=z["root_translation"] * z["skeleton_scale"])
    assert_same_bvh((out / "p.bvh").read_text(), want)


def test_stream_calls_serve_with_the_flags(tmp_path, ckpt, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("stcformer.infer.stream")
    fake.serve = lambda *a, **k: calls.append((a, k)) or 0
    monkeypatch.setitem(sys.modules, "stcformer.infer.stream", fake)
    monkeypatch.chdir(tmp_path)
    assert infer("--stream", "--checkpoint", ckpt, "--fps", 30, "--width", 640, "--height", 480,
                 "--latency", 4, "--joints", "coco", "--device", "cpu") == 0
    assert calls == [((ckpt, 30.0, (640, 480)), {"latency": 4, "joints": "coco", "device": "cpu", "amp": None, "runtime": "torch"})]
    assert files_in(tmp_path) == [] and files_in(os.path.dirname(ckpt)) == ["model.pt"]  # nothing written


@pytest.mark.parametrize("extra,match", [
    (["--out", "o"], "leave out --out"),
    (["--keypoints", "k.npy"], "leave out --keypoints"),
    ([], "needs --fps"),
])
def test_stream_refuses_file_flags(ckpt, capsys, extra, match):
    args = ["--stream", "--checkpoint", ckpt, *extra] + ([] if match == "needs --fps" else
                                                           ["--fps", "30", "--width", "10", "--height", "10"])
    assert infer(*args) == 2
    assert match in capsys.readouterr().err


def test_without_keypoints_or_video(ckpt, capsys, tmp_path):
    assert infer("--checkpoint", ckpt, "--out", tmp_path / "o") == 2
    assert "--keypoints FILE, or --video FILE" in capsys.readouterr().err
    assert infer("--checkpoint", ckpt, "--keypoints", "k.npy") == 2
    assert "--out is required" in capsys.readouterr().err


def test_checkpoint_read_once_with_its_training_window(tmp_path, monkeypatch):
    """The window a checkpoint of stcformer.train was trained with comes with the loaded model:
    the CLI and stcformer.lift read the file once."""
    from stcformer.model import checkpoint as ckpt_mod
    from stcformer.infer.pipeline import trained_window

    torch.manual_seed(0)
    path = tmp_path / "trained.pt"
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), path, extra={"args": {"frames": 5, "tds": 2}})
    assert trained_window(load_checkpoint(path)) == (5, 2)
    assert trained_window(STCFormer(layers=1, d_hid=32, num_heads=2)) == (27, 3)  # official default
    reads = []
    real = ckpt_mod.read_checkpoint
    monkeypatch.setattr(ckpt_mod, "read_checkpoint", lambda p: reads.append(p) or real(p))
    kpts = np.random.default_rng(5).uniform(100, 900, size=(12, 17, 2)).astype(np.float32)
    np.save(tmp_path / "k.npy", kpts)
    assert infer("--checkpoint", path, "--keypoints", tmp_path / "k.npy", "--mode", "center", "--width", 1000,
                 "--height", 1000,
                 "--fps", 50, "--out", tmp_path / "o", "--device", "cpu") == 0
    saved = np.load(tmp_path / "o" / "poses_3d.npz")
    assert (int(saved["frames"]), int(saved["tds"])) == (5, 2)
    assert len(reads) == 1
    api = stcformer.lift(kpts, checkpoint=str(path), fps=50, size=(1000, 1000))
    assert len(reads) == 2
    np.testing.assert_allclose(api, saved["reconstruction"], atol=1e-6)


def assert_same_bvh(got: str, want: str, atol: float = 2e-4) -> None:
    """The same BVH text up to the last printed digit of its numbers."""
    g, w = got.split(), want.split()
    assert len(g) == len(w)
    for a, b in zip(g, w):
        try:
            assert abs(float(a) - float(b)) <= atol, (a, b)
        except ValueError:
            assert a == b
