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
