"""The evaluation protocol: flip averaging, centre frames, the CLI, its JSON and its bad-input exits."""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stcformer.evaluation import metrics
from stcformer.model.checkpoint import save_checkpoint
from stcformer.data.h36m import load_h36m
from stcformer.data.dataset import test_windows as make_test_windows
from stcformer.data.skeleton import H36M_ACTIONS, H36M_LEFT, H36M_RIGHT
from stcformer.data.synthetic import write_3dhp, write_h36m
from stcformer.cli.common import run
from stcformer.cli.evaluate import main as evaluate_main
from stcformer.evaluation.predict import predict_centres
from stcformer.model.modules import STCFormer

SWAP = list(range(17))
for a, b in zip(H36M_LEFT, H36M_RIGHT):
    SWAP[a], SWAP[b] = b, a


class ShiftModel(torch.nn.Module):
    """Not mirror-symmetric: (x + 0.1, y, joint index)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        z = torch.arange(x.shape[2], dtype=x.dtype).expand(x.shape[:3])[..., None]
        return torch.cat([x + torch.tensor([0.1, 0.0]), z], -1) + self.p


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, subprocess_run=False, timeout=300):
    """``python -m stcformer.evaluate ARGS``: in this process (fast), or as a real subprocess."""
    argv = [str(a) for a in args]
    if subprocess_run:
        return subprocess.run([sys.executable, "-m", "stcformer.evaluate", *argv], capture_output=True,
                              text=True, timeout=timeout)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(lambda: evaluate_main(argv))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_h36m(root / "data", subjects=("S1", "S5", "S6", "S7", "S8", "S9", "S11"), frames=8, takes=1, seed=4)
    torch.manual_seed(0)
    model = STCFormer(layers=1, d_hid=16)
    save_checkpoint(model, root / "tiny.pth")
    return root


def test_flip_averaging_and_centre_frame(tiny):
    data = load_h36m(tiny / "data", "gt", train_subjects=())
    ws = make_test_windows(data, frames=5, tds=3)
    pred = predict_centres(ShiftModel(), ws, batch_size=64, progress=False)
    # mean of f(x) and mirror(f(mirror(x))): the shift cancels, z becomes (j + mirror(j)) / 2
    centre = ws.inputs(np.arange(len(ws)))[:, 2].numpy()
    np.testing.assert_allclose(pred[:, 1:, :2], centre[:, 1:], atol=1e-6)
    np.testing.assert_allclose(pred[:, 1:, 2], np.broadcast_to((np.arange(17) + SWAP)[1:] / 2, (len(ws), 16)))
    assert (pred[:, 0] == 0).all()  # root zeroed
    no_flip = predict_centres(ShiftModel(), ws, batch_size=64, flip=False, progress=False)
    np.testing.assert_allclose(no_flip[:, 1:, 0], centre[:, 1:, 0] + 0.1, atol=1e-6)


def literal_protocol(model, data, frames, tds):
    """The official test protocol written out frame by frame (independent of the package's windows)."""
    pad = (frames - 1) // 2
    errors = {}
    for seq in data.test:
        n = len(seq)
        # window c, frame k: clip(c + (k - pad) * tds, 0, n - 1); one batch per sequence
        idx = [[min(max(c + (k - pad) * tds, 0), n - 1) for k in range(frames)] for c in range(n)]
        x = torch.from_numpy(seq.keypoints[idx])
        xf = x.clone()
        xf[..., 0] *= -1
        xf[:, :, H36M_LEFT + H36M_RIGHT] = xf[:, :, H36M_RIGHT + H36M_LEFT]
        with torch.no_grad():
            out, outf = model(x), model(xf)
        outf[..., 0] *= -1
        outf[:, :, H36M_LEFT + H36M_RIGHT] = outf[:, :, H36M_RIGHT + H36M_LEFT]
        pred = ((out + outf) / 2)[:, pad].numpy()
        for c in range(n):
            p = pred[c].copy()
            p[0] = 0
            gt = seq.poses[c].copy()
            gt[0] = 0
            p1 = np.linalg.norm(p - gt, axis=-1).mean()
            p2 = metrics.p_mpjpe(p[None], gt[None])[0]
            errors.setdefault(seq.group, []).append((p1 * 1000, p2 * 1000))
    per = {a: np.mean(v, axis=0) for a, v in errors.items()}
    return per, np.mean([per[a][0] for a in H36M_ACTIONS]), np.mean([per[a][1] for a in H36M_ACTIONS])


def test_cli_matches_the_literal_protocol(tiny, tmp_path):
    out = tmp_path / "res" / "eval.json"
    r = run_cli("--dataset", "h36m", "--data-dir", tiny / "data", "--keypoints", "synth_det", "--frames", 5,
                "--tds", 3, "--checkpoint", tiny / "tiny.pth", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "Average" in r.stdout and "Directions" in r.stdout
    res = json.loads(out.read_text())
    assert (tmp_path / "res" / "per_action.png").exists()
    assert list(res["per_action"]) == list(H36M_ACTIONS)
    model = STCFormer(layers=1, d_hid=16)
    model.load_state_dict(torch.load(tiny / "tiny.pth", weights_only=True)["state_dict"])
    model.eval()
    data = load_h36m(tiny / "data", "synth_det", train_subjects=())
    per, p1, p2 = literal_protocol(model, data, 5, 3)
    assert res["p1_mm"] == pytest.approx(p1, abs=0.005)
    assert res["p2_mm"] == pytest.approx(p2, abs=0.005)
    for action, (a1, a2) in per.items():
        assert res["per_action"][action]["p1_mm"] == pytest.approx(a1, abs=0.005)
        assert res["per_action"][action]["p2_mm"] == pytest.approx(a2, abs=0.005)
    frames = {a: sum(len(s) for s in data.test if s.group == a) for a in H36M_ACTIONS}
    assert {a: v["windows"] for a, v in res["per_action"].items()} == frames
    assert res["frames"] == 5 and res["tds"] == 3


def test_cli_3dhp(tmp_path):
    write_3dhp(tmp_path / "data", frames=10, sequences_per_subject=1)
    save_checkpoint(STCFormer(layers=1, d_hid=16, num_heads=4, family="3dhp"), tmp_path / "m.pth")
    r = run_cli("--dataset", "3dhp", "--data-dir", tmp_path / "data", "--frames", 9, "--checkpoint",
                tmp_path / "m.pth", "--json", tmp_path / "o.json")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "o.json").read_text())
    assert list(res["per_sequence"]) == [f"TS{i}" for i in range(1, 7)]
    assert set(res["scenes"]) == {"GS", "noGS", "Outdoor"}
    assert res["p1_mm"] == res["overall"]["mpjpe_mm"] and 0 <= res["pck"] <= 100
    assert "All" in r.stdout and "PCK" in r.stdout


def _assert_bad(r, *words):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0]


def test_bad_inputs_exit_2_and_write_nothing(tiny, tmp_path):
    out = tmp_path / "o" / "x.json"
    base = ["--data-dir", tiny / "data", "-k", "synth_det", "--frames", 3, "--json", out]
    _assert_bad(run_cli(*base, "--checkpoint", tmp_path / "none.pth", subprocess_run=True), "none.pth",
                "no such file")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    _assert_bad(run_cli(*base, "--checkpoint", tmp_path / "other.pth"), "other.pth", "not an STCFormer")
    _assert_bad(run_cli("--data-dir", tmp_path, "--frames", 3, "--checkpoint", tiny / "tiny.pth", "--json", out),
                "data_3d_h36m.npz", "file not found")
    _assert_bad(run_cli(*base[:2], "-k", "cpn", "--frames", 3, "--checkpoint", tiny / "tiny.pth"),
                "data_2d_h36m_cpn.npz", "file not found")
    # NaN in the 2D detections
    bad = tmp_path / "nan"
    bad.mkdir()
    for f in os.listdir(tiny / "data"):
        with np.load(tiny / "data" / f, allow_pickle=True) as z:
            e = {k: z[k] for k in z.files}
        if f == "data_2d_h36m_synth_det.npz":
            d = e["positions_2d"].item()
            d["S11"]["Greeting"][1][3, 4, 0] = np.nan
            e["positions_2d"] = np.array(d, dtype=object)
        np.savez(bad / f, **e)
    _assert_bad(run_cli("--data-dir", bad, "-k", "synth_det", "--frames", 3, "--checkpoint", tiny / "tiny.pth",
                        "--json", out), "data_2d_h36m_synth_det.npz", "positions_2d['S11']['Greeting'][1]", "NaN")
    _assert_bad(run_cli(*base, "--checkpoint", tiny / "tiny.pth", "--backend", "nope"), "--backend nope",
                "unknown backend")
    _assert_bad(run_cli(*base, "--checkpoint", tiny / "tiny.pth", "--device", "cuda:7"), "--device cuda:7")
    assert not out.exists() and not out.parent.exists()


def test_amp_is_opt_in_and_close_to_float32(tiny, tmp_path):
    base = ["--dataset", "h36m", "--data-dir", tiny / "data", "--keypoints", "synth_det", "--frames", 5,
            "--tds", 3, "--checkpoint", tiny / "tiny.pth"]
    r = run_cli(*base, "--json", tmp_path / "f32.json")
    assert r.returncode == 0, r.stderr
    r = run_cli(*base, "--amp", "bf16", "--json", tmp_path / "bf16.json")
    assert r.returncode == 0, r.stderr
    f32, bf16 = (json.loads((tmp_path / f).read_text()) for f in ("f32.json", "bf16.json"))
    assert (f32["amp"], bf16["amp"]) == ("none", "bf16")  # float32 unless asked
    assert bf16["p1_mm"] != f32["p1_mm"]  # autocast did run in bf16 ...
    assert bf16["p1_mm"] == pytest.approx(f32["p1_mm"], rel=0.02)  # ... and stays close
    assert bf16["p2_mm"] == pytest.approx(f32["p2_mm"], rel=0.02)


def test_gathering_windows_on_the_device_changes_nothing(tiny):
    data = load_h36m(tiny / "data", "synth_det", train_subjects=())
    ws = make_test_windows(data, frames=5, tds=3)
    torch.manual_seed(0)
    model = STCFormer(layers=1, d_hid=16)
    host = predict_centres(model, ws, batch_size=400, progress=False, gather_on_device=False)
    dev = predict_centres(model, ws, batch_size=400, progress=False, gather_on_device=True)
    assert host.dtype == dev.dtype == np.float32 and host.shape == (len(ws), 17, 3)
    np.testing.assert_array_equal(dev, host)
