"""python -m stcformer.train: outputs, the no-argument path, resume after a kill, torchrun, NaN, bad input."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from stcformer import train as train_mod
from stcformer.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from stcformer.cli import run
from stcformer.data.synthetic import write_h36m
from stcformer.model import STCFormer

TINY = ["-f", "3", "--tds", "2", "-b", "64", "-s", "2", "--layers", "1", "--d-hid", "16",
        "--eval-batch-size", "512", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_data")
    write_h36m(folder, frames=8, takes=1, seed=7)
    return folder


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(lambda: train_mod.main([str(a) for a in argv]))
    return code, out.getvalue(), err.getvalue()


def weights(path):
    return read_checkpoint(str(path))["state_dict"]


def test_run_writes_metrics_curves_and_checkpoints(data, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 2, "--out", out,
                            "--json", tmp_path / "final.json"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    assert set(m["epochs"][0]) >= {"epoch", "train_loss_mm", "p1_mm", "p2_mm"}
    assert m["mean_pose_p1_mm"] > 0 and m["final"]["p1_mm"] == m["epochs"][-1]["p1_mm"]
    assert m["epochs"][1]["lr"] == pytest.approx(m["epochs"][0]["lr"] * 0.96)  # official decay
    assert json.loads((tmp_path / "final.json").read_text())["epochs"] == m["epochs"]
    for f in ("curves.png", "per_action.png", "last.pth", "best.pth"):
        assert (out / f).stat().st_size > 0
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]
    model = load_checkpoint(str(out / "best.pth"))
    assert model.config["d_hid"] == 16 and model.config["layers"] == 1
    assert "epoch   1/2" in stdout and "P1 of the mean training pose" in stdout and "Average" in stdout


def test_no_arguments_uses_cached_synthetic_data_and_the_quick_config(tmp_path, monkeypatch):
    monkeypatch.setenv("STCFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(train_mod, "SYNTHETIC", dict(frames=8, takes=1))
    monkeypatch.setattr(train_mod, "QUICK", dict(train_mod.QUICK, frames=3, layers=1, d_hid=16, epochs=1))
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = call([])
    assert code == 0
    assert "generating synthetic h36m data" in stdout and "synth_det" in stdout
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1 and (tmp_path / "runs" / runs[0] / "metrics.json").exists()
    code, stdout, _ = call(["--out", tmp_path / "again"])
    assert code == 0 and "generating" not in stdout  # generated once, then cached
    args = train_mod.resolve(train_mod.parse_args([]))
    assert (args.keypoints, args.tds, args.layers) == ("synth_det", train_mod.QUICK["tds"], 1)
    official = train_mod.resolve(train_mod.parse_args(["--data-dir", "x"]))
    assert (official.frames, official.batch_size, official.stride, official.tds, official.lr, official.lr_decay,
            official.layers, official.d_hid, official.keypoints) == (27, 128, 3, 3, 1e-3, 0.96, 6, 256,
                                                                     "cpn_ft_h36m_dbb")


def test_resume_after_a_kill_gives_the_uninterrupted_result(data, tmp_path):
    args = ["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 3, "--save-every", 3]
    whole = tmp_path / "whole"
    assert call([*args, "--out", whole])[0] == 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "stcformer.train", *map(str, args), "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it as soon as a state from inside an epoch is on disk (long before the run could end)
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if (cut / "last.pth").exists():
            try:
                state = read_checkpoint(str(cut / "last.pth"))["extra"]
            except Exception:  # noqa: BLE001 - the file is being replaced right now
                state = None
            if state and (state["epoch"], state["step"]) >= (1, 3):
                proc.send_signal(signal.SIGKILL)
                killed_at = (state["epoch"], state["step"])
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    if (cut / "metrics.json").exists():
        assert len(json.loads((cut / "metrics.json").read_text())["epochs"]) < 3

    code, stdout, _ = call(["--resume", cut])
    assert code == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert [e["epoch"] for e in b["epochs"]] == [1, 2, 3]
    for ea, eb in zip(a["epochs"], b["epochs"]):
        for key in ("train_loss_mm", "p1_mm", "p2_mm", "lr"):
            assert ea[key] == eb[key], (key, ea, eb)
    wa, wb = weights(whole / "last.pth"), weights(cut / "last.pth")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming a finished run changes nothing
    assert call(["--resume", cut])[0] == 0
    assert all(torch.equal(wb[k], v) for k, v in weights(cut / "last.pth").items())


def test_torchrun_two_processes_on_cpu(data, tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "stcformer.train", "--data-dir", str(data), "-k", "synth_det", *TINY,
                        "--epochs", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=400, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["epochs"]) == 2 and m["epochs"][-1]["p1_mm"] < m["mean_pose_p1_mm"] * 3
    assert m["config"]["batch_size"] == 64  # global batch: 32 windows per step, 16 per process
    assert (out / "last.pth").exists() and (out / "best.pth").exists()


def test_nan_loss_stops_clearly(data, tmp_path):
    model = STCFormer(layers=1, d_hid=16)
    with torch.no_grad():
        model.regress_head.weight.fill_(float("nan"))
    save_checkpoint(model, str(tmp_path / "nan.pth"))
    code, _, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 1, "--out", tmp_path / "o",
                         "--init", tmp_path / "nan.pth"])
    assert code == train_mod.EXIT_NAN
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "loss is NaN at epoch 1, step 1" in lines[0]


def test_bad_input_exits_2_and_writes_nothing(data, tmp_path):
    out = tmp_path / "o"
    code, _, err = call(["--data-dir", tmp_path / "empty", *TINY, "--out", out])
    assert code == 2 and err.count("\n") == 1 and "data_3d_h36m.npz: file not found" in err
    wide = STCFormer(layers=1, d_hid=32)
    save_checkpoint(wide, str(tmp_path / "wide.pth"))
    code, _, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--out", out, "--init", tmp_path / "wide.pth"])
    assert code == 2 and "wide.pth: checkpoint has d_hid=32, this run d_hid=16" in err
    code, _, err = call(["--data-dir", data, "-k", "synth_det", *TINY[:-2], "-f", "4", "--out", out])
    assert code == 2 and "--frames must be odd" in err
    code, _, err = call(["--resume", tmp_path / "nothing"])
    assert code == 2 and "last.pth: no such file" in err
    assert not out.exists()
    # a subprocess gets exit status 2 from the same error
    r = subprocess.run([sys.executable, "-m", "stcformer.train", "--data-dir", str(tmp_path / "empty"), "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and not out.exists()
