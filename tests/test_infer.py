"""python -m stcformer.infer on the user's own keypoints."""
import os

import numpy as np
import pytest
import torch

from stcformer import STCFormer, save_checkpoint
from stcformer.checkpoint import load_checkpoint
from stcformer.data.cameras import normalize_screen_coordinates
from stcformer.infer import coco_to_h36m, lift, main
from stcformer.cli import run


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), path)
    return str(path)


def test_infer_writes_poses_and_preview(tmp_path, ckpt):
    kpts = np.random.default_rng(0).uniform(100, 900, size=(1, 12, 17, 2)).astype(np.float32)
    np.savez(tmp_path / "kpts.npz", reconstruction=kpts)
    out = tmp_path / "out"
    rc = run(lambda: main(["--checkpoint", ckpt, "--keypoints", str(tmp_path / "kpts.npz"),
                           "--width", "1000", "--height", "1000", "--out", str(out), "-f", "9",
                           "--device", "cpu"]))
    assert rc == 0
    poses = np.load(out / "poses_3d.npz")["reconstruction"]
    assert poses.shape == (12, 17, 3) and np.isfinite(poses).all()
    assert np.all(poses[:, 0] == 0)  # root-relative
    assert (out / "preview.png").stat().st_size > 1000


def test_lift_keeps_the_centre_frame():
    from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT
    from stcformer.data.windows import flip_pose

    model = STCFormer(layers=1, d_hid=32, num_heads=2).eval()
    x = np.random.default_rng(1).normal(size=(7, 17, 2)).astype(np.float32)
    poses = lift(model, x, frames=3, tds=2)
    with torch.no_grad():  # frame 3's window with tds 2 is frames 1, 3, 5; its centre is index 1
        w = torch.from_numpy(x[None, [1, 3, 5]])
        pred = model(w) + flip_pose(model(flip_pose(w, H36M_LEFT, H36M_RIGHT)), H36M_LEFT, H36M_RIGHT)
        expect = pred[0, 1] / 2
        expect[0] = 0
    assert poses.shape == (7, 17, 3)
    np.testing.assert_allclose(poses[3], expect.numpy(), rtol=1e-5, atol=1e-6)


def test_coco_conversion_places_synthesised_joints():
    c = np.random.default_rng(2).normal(size=(17, 2))
    h = coco_to_h36m(c)
    np.testing.assert_allclose(h[0], (c[11] + c[12]) / 2)  # pelvis = mid-hip
    np.testing.assert_allclose(h[11], c[5])  # left shoulder copied
    np.testing.assert_allclose(h[3], c[16])  # right ankle copied


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    (np.zeros((5, 16, 2)), "must be"),
    (np.full((5, 17, 2), np.nan), "NaN"),
])
def test_bad_keypoints_exit_2(tmp_path, ckpt, capsys, content, match):
    path = tmp_path / "k.npy"
    if content is not None:
        np.save(path, content)
    rc = run(lambda: main(["--checkpoint", ckpt, "--keypoints", str(path), "--width", "10",
                           "--height", "10", "--out", str(tmp_path / "o")]))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err and match in err
    assert not os.path.exists(tmp_path / "o" / "poses_3d.npz")


def test_amp_is_opt_in(tmp_path, ckpt):
    kpts = np.random.default_rng(3).uniform(100, 900, size=(10, 17, 2)).astype(np.float32)
    np.save(tmp_path / "k.npy", kpts)
    poses = {}
    for amp in (None, "bf16"):
        out = tmp_path / str(amp)
        extra = [] if amp is None else ["--amp", amp]
        rc = run(lambda: main(["--checkpoint", ckpt, "--keypoints", str(tmp_path / "k.npy"), "--width", "1000",
                               "--height", "1000", "--out", str(out), "-f", "5", "--device", "cpu", *extra]))
        assert rc == 0
        poses[amp] = np.load(out / "poses_3d.npz")["reconstruction"]
    from stcformer.infer import parse_args
    assert parse_args(["--checkpoint", ckpt, "--keypoints", "k", "--width", "1", "--height", "1",
                       "--out", "o"]).amp == "none"  # float32 by default
    model = load_checkpoint(ckpt)
    x = normalize_screen_coordinates(kpts, w=1000, h=1000).astype(np.float32)
    np.testing.assert_array_equal(poses[None], lift(model, x, frames=5, tds=3))  # the float32 lift (tds 3 at 50 fps)
    assert poses["bf16"].dtype == np.float32 and not np.array_equal(poses["bf16"], poses[None])
    np.testing.assert_allclose(poses["bf16"], poses[None], rtol=0.05, atol=0.02)
