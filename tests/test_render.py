"""stcformer.export.render: one animation frame per input frame; .mp4 through ffmpeg, .gif through Pillow."""
import os
import stat
import sys

import numpy as np
import pytest

from stcformer.errors import UsageError
import stcformer.export.render as render_mod
from stcformer.export.render import Renderer, check_output, render


# a standing Human3.6M-17 pose, camera axes (x right, y down, z forward), metres, facing the camera
REST = np.array([
    [0, 0, 0], [-0.13, 0.0, 0.0], [-0.13, 0.45, 0.02], [-0.13, 0.88, 0.05], [0.13, 0.0, 0.0],
    [0.13, 0.45, 0.02], [0.13, 0.88, 0.05], [0, -0.23, 0.0], [0, -0.48, 0.0], [0, -0.58, -0.05],
    [0, -0.70, 0.0], [0.17, -0.45, 0.0], [0.45, -0.45, 0.0], [0.70, -0.45, 0.0], [-0.17, -0.45, 0.0],
    [-0.45, -0.45, 0.0], [-0.70, -0.45, 0.0]])


def walking(T=12):
    """2D keypoints (pixels) and 3D poses (metres, camera axes) of a figure swinging its legs."""
    t = np.arange(T)[:, None]
    P = np.repeat(REST[None], T, 0).copy()
    P[:, [2, 3], 2] += 0.2 * np.sin(t / 2)   # right leg forward/back
    P[:, [5, 6], 2] -= 0.2 * np.sin(t / 2)
    P[:, [12, 13], 1] += 0.3 * np.cos(t / 3)  # left arm up/down
    uv = 500 * P[..., :2] / (P[..., 2:] + 4) + np.array([320, 200])
    return uv.astype(np.float32), P.astype(np.float32)


def test_gif_has_one_frame_per_input_frame(tmp_path):
    from PIL import Image

    uv, P = walking(12)
    n = render(tmp_path / "a.gif", uv, P, fps=25, size=(640, 400), progress=False)
    assert n == 12
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 12
        assert im.info["duration"] == 40


def test_one_frame_as_png(tmp_path):
    from PIL import Image

    uv, P = walking(12)
    filled = np.zeros((12, 17), bool)
    filled[5, [3, 13]] = True
    r = Renderer(uv, P, (640, 400), filled)
    img = r.frame(5)
    assert img.dtype == np.uint8 and img.shape == r.shape and img.shape[2] == 3
    assert (img < 250).any(axis=-1).mean() > 0.01  # something was drawn
    Image.fromarray(img).save(tmp_path / "frame5.png")
    if os.environ.get("STCFORMER_KEEP_FRAME"):
        Image.fromarray(img).save(os.environ["STCFORMER_KEEP_FRAME"])
    assert not np.array_equal(img, r.frame(6))


def test_mp4_goes_through_ffmpeg(tmp_path, monkeypatch):
    """A stand-in ffmpeg that records what it is fed: one raw RGB frame per input frame."""
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!{sys.executable}\n"
                    "import sys\n"
                    "args = sys.argv[1:]\n"
                    "w, h = map(int, args[args.index('-s') + 1].split('x'))\n"
                    "data = sys.stdin.buffer.read()\n"
                    "open(args[-1], 'w').write(f\"{len(data) // (w * h * 3)} {len(data) % (w * h * 3)} \"\n"
                    "                        f\"{args[args.index('-r') + 1]}\")\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(render_mod, "ffmpeg_exe", lambda: str(fake))
    uv, P = walking(7)
    assert render(tmp_path / "a.mp4", uv, P, fps=30, size=(640, 400), progress=False) == 7
    frames, rest, rate = (tmp_path / "a.mp4").read_text().split()
    assert (frames, rest, rate) == ("7", "0", "30")


def test_check_output(monkeypatch, tmp_path):
    with pytest.raises(UsageError, match="not '.avi'"):
        check_output(tmp_path / "a.avi")
    monkeypatch.setattr(render_mod, "ffmpeg_exe", lambda: None)
    with pytest.raises(UsageError, match="needs ffmpeg"):
        check_output(tmp_path / "a.mp4")
    assert check_output(tmp_path / "a.gif") == ".gif"
    assert not os.listdir(tmp_path)


def test_video_without_imageio_falls_back_to_a_blank_canvas(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v3", None)
    notes = []
    uv, P = walking(3)
    assert render(tmp_path / "a.gif", uv, P, fps=10, size=(640, 400), video=str(tmp_path / "v.mp4"),
                  progress=False, log=notes.append) == 3
    assert "imageio is not installed" in notes[0]


def test_real_mp4_on_a_real_video(tmp_path):
    """With imageio-ffmpeg installed (``pip install -e .[video]``): a real .mp4 over a real video's
    frames, one output frame per input frame at the input fps."""
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    uv, P = walking(14)
    with iio.get_writer(str(tmp_path / "in.mp4"), fps=25) as w:
        for t in range(14):
            frame = np.zeros((400, 640, 3), np.uint8)
            frame[..., 1] = 100 + 5 * t
            w.append_data(frame)
    notes = []
    n = render(tmp_path / "out.mp4", uv, P, fps=25, size=(640, 400), video=str(tmp_path / "in.mp4"),
               progress=False, log=notes.append)
    assert n == 14 and "drawing on the video's frames" in notes[0]
    reader = iio.get_reader(str(tmp_path / "out.mp4"))
    assert reader.get_meta_data()["fps"] == 25
    frames = [f for f in reader]
    assert len(frames) == 14
    # the left half shows the video frame: mostly green, brighter in later frames
    assert frames[-1][..., 1].mean() > frames[0][..., 1].mean()


def test_frames_without_a_pose_draw_nothing():
    from stcformer.export.render import Renderer

    kp, poses = (np.array(a, dtype=np.float64) for a in walking(6))
    poses[2] = np.nan  # absent: neither the 2D nor the 3D of this frame is drawn
    kp[4] = np.nan
    r = Renderer(kp, poses, (640, 480))
    try:
        for i in range(6):
            r.frame(i)
            n2 = sum(len(line.get_xdata()) for line in r.lines2[0])
            n3 = sum(len(line.get_data_3d()[0]) for line in r.lines3[0])
            marks = len(r.seen2[0].get_xdata()) + len(r.miss2[0].get_xdata())
            if i == 2:
                assert n2 == n3 == marks == 0
            elif i == 4:
                assert n2 == marks == 0 and n3 > 0
            else:
                assert n2 > 0 and n3 > 0 and marks == 17
    finally:
        r.close()
