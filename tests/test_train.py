"""python -m stcformer.train: outputs, the no-argument path, resume after a kill, torchrun (and its resume),
NaN (checked every step or every N steps), bad input, device choice, the step function and its flags."""
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

from stcformer.cli import common as cli_mod
from stcformer.cli import train as train_mod
from stcformer.train import loop as training_mod
from stcformer.train import step as step_mod
from stcformer.train.loss_log import CHECK_EVERY_CUDA
from stcformer.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from stcformer.cli.common import run
from stcformer.errors import UsageError
from stcformer.data.dataset import training_windows
from stcformer.data.synthetic import write_h36m
from stcformer.evaluation.benchmarks import get_benchmark
from stcformer.model.modules import STCFormer

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


def kill_when_saved(proc, out, at, kill, timeout=240):
    """Call ``kill()`` as soon as ``out/last.pth`` holds a state at (epoch, step) >= ``at``; return
    that (epoch, step), or None if ``proc`` ended (or the time ran out) first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "last.pth").exists():
            try:
                state = read_checkpoint(str(out / "last.pth"))["extra"]
            except Exception:  # noqa: BLE001 - the file is being replaced right now
                state = None
            if state and (state["epoch"], state["step"]) >= at:
                kill()
                return state["epoch"], state["step"]
        time.sleep(0.02)
    return None


def assert_same_run(whole, cut, epochs):
    """The resumed run's metrics and final weights equal the uninterrupted run's, bit for bit."""
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert [e["epoch"] for e in b["epochs"]] == list(range(1, epochs + 1))
    for ea, eb in zip(a["epochs"], b["epochs"]):
        for key in ("train_loss_mm", "p1_mm", "p2_mm", "lr"):
            assert ea[key] == eb[key], (key, ea, eb)
    wa, wb = weights(whole / "last.pth"), weights(cut / "last.pth")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


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


@pytest.fixture
def private_cache(tmp_path):
    """$STCFORMER_CACHE pointed at tmp_path/cache (the settings read the variable once, at import)."""
    from stcformer import settings

    with settings.override(cache_root=str(tmp_path / "cache")):
        yield


def test_no_arguments_uses_cached_synthetic_data_and_the_quick_config(tmp_path, monkeypatch, private_cache):
    monkeypatch.setattr(training_mod, "SYNTHETIC", dict(frames=8, takes=1))
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


@pytest.mark.slow  # compile check, or whole training runs in subprocesses
def test_resume_after_a_kill_gives_the_uninterrupted_result(data, tmp_path):
    args = ["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 3, "--save-every", 3]
    whole = tmp_path / "whole"
    assert call([*args, "--out", whole])[0] == 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "stcformer.train", *map(str, args), "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it as soon as a state from inside an epoch is on disk (long before the run could end)
    killed_at = kill_when_saved(proc, cut, (1, 3), lambda: proc.send_signal(signal.SIGKILL))
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    if (cut / "metrics.json").exists():
        assert len(json.loads((cut / "metrics.json").read_text())["epochs"]) < 3

    code, stdout, _ = call(["--resume", cut])
    assert code == 0
    assert_same_run(whole, cut, epochs=3)
    # resuming a finished run changes nothing
    wb = weights(cut / "last.pth")
    assert call(["--resume", cut])[0] == 0
    assert all(torch.equal(wb[k], v) for k, v in weights(cut / "last.pth").items())


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TORCHRUN_ENV = dict(os.environ, OMP_NUM_THREADS="1")


def torchrun_args(data):
    # --device cpu: the test means CPU processes (gloo) also where a GPU is present
    return ["-m", "stcformer.train", "--data-dir", str(data), "-k", "synth_det", *TINY, "--epochs", "2",
            "--save-every", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def torchrun_whole(data, tmp_path_factory):
    """One uninterrupted 2-process run, shared by the torchrun tests."""
    out = tmp_path_factory.mktemp("ddp") / "whole"
    r = subprocess.run([*TORCHRUN, *torchrun_args(data), "--out", str(out)], capture_output=True, text=True,
                       timeout=400, env=TORCHRUN_ENV)
    return out, r


@pytest.mark.slow  # compile check, or whole training runs in subprocesses
def test_torchrun_two_processes_on_cpu(torchrun_whole):
    out, r = torchrun_whole
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es) on cpu" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["epochs"]) == 2 and m["epochs"][-1]["p1_mm"] < m["mean_pose_p1_mm"] * 3
    assert m["config"]["batch_size"] == 64  # global batch: 32 windows per step, 16 per process
    assert (out / "last.pth").exists() and (out / "best.pth").exists()


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


@pytest.mark.slow  # compile check, or whole training runs in subprocesses
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers through /proc")
def test_torchrun_resumed_after_a_kill_gives_the_uninterrupted_result(data, tmp_path, torchrun_whole):
    whole, r = torchrun_whole
    assert r.returncode == 0, r.stderr[-3000:]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*TORCHRUN, *torchrun_args(data), "--out", str(cut)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=TORCHRUN_ENV)

    def kill_workers():  # both training processes die at once, as in a crash of the machine's job
        for pid in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    try:
        killed_at = kill_when_saved(proc, cut, (1, 10), kill_workers)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed_at is not None and proc.returncode != 0, "the run ended before it was killed"
    assert not (cut / "metrics.json").exists()  # killed inside the first epoch
    assert read_checkpoint(str(cut / "last.pth"))["extra"]["world"] == 2

    r = subprocess.run([*TORCHRUN, "-m", "stcformer.train", "--resume", str(cut), "--device", "cpu"],
                       capture_output=True, text=True, timeout=400, env=TORCHRUN_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(whole, cut, epochs=2)


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
    # flags are checked before anything is generated, trained or written
    for flags, message in ((["--backend", "bogus"], "--backend bogus: unknown backend"),
                           (["--backend", "cuda"], "--backend cuda: tensors are on cpu"),
                           (["--device", "tpu"], "--device tpu: not a device"),
                           (["--d-hid", "20"], "--layers/--d-hid: width 20: must be even, and half of it "
                                               "divisible by the 8 heads"),
                           (["-b", "1", "-s", "2"], "-b 1 // -s 2 leaves no window per step")):
        code, stdout, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--out", out, *flags])
        assert code == 2 and err.count("\n") == 1 and message in err, (flags, err)
        assert stdout == "", flags
    assert not out.exists()
    # a subprocess gets exit status 2 from the same error
    r = subprocess.run([sys.executable, "-m", "stcformer.train", "--data-dir", str(tmp_path / "empty"), "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and not out.exists()


# ---------------------------------------------------------------- the fast path's flags, on CPU
def parse(argv):
    """The TrainConfig of ``argv`` before the device's defaults."""
    return train_mod.resolve(train_mod.parse_args(argv))


def test_flags_resolve_to_a_train_config_with_the_flag_names():
    from dataclasses import fields

    from stcformer.train.config import TrainConfig
    assert [f.name for f in fields(TrainConfig)] == list(vars(train_mod.parse_args([])))
    config = parse(["--data-dir", "x", "--seed", "3"])
    assert isinstance(config, TrainConfig) and (config.seed, config.frames, config.amp) == (3, 27, None)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_device_defaults_fast_on_cuda_and_unchanged_on_cpu():
    cpu = train_mod.resolve_device_defaults(parse([]), torch.device("cpu"))
    assert (cpu.amp, cpu.compile, cpu.check_every, cpu.recompute, cpu.eval_amp) == ("none", False, 1, None, "none")
    gpu = train_mod.resolve_device_defaults(parse([]), torch.device("cuda", 0))
    assert (gpu.amp, gpu.compile, gpu.check_every, gpu.tf32) == ("bf16", True, CHECK_EVERY_CUDA, True)
    assert gpu.eval_amp == "none"  # the test after each epoch stays float32 (the official numbers)
    # explicit flags win over the device's defaults
    args = train_mod.parse_args(["--amp", "none", "--no-compile", "--check-every", "7", "--recompute",
                                 "--no-tf32", "--eval-amp", "bf16"])
    args = train_mod.resolve_device_defaults(train_mod.resolve(args), torch.device("cuda", 0))
    assert (args.amp, args.compile, args.check_every, args.recompute, args.tf32, args.eval_amp) == \
        ("none", False, 7, "blocks", False, "bf16")
    assert train_mod.parse_args(["--recompute", "mlp"]).recompute == "mlp"
    args = train_mod.resolve_device_defaults(parse(["--compile", "--amp", "bf16"]), torch.device("cpu"))
    assert (args.compile, args.amp) == (True, "bf16")
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            train_mod.parse_args(["--amp", "fp8"])
    # CUDA graphs: opt-in, and only where they exist (CUDA, compiled)
    assert train_mod.resolve_device_defaults(parse(["--cuda-graphs"]),
                                             torch.device("cuda", 0)).cuda_graphs is True
    for argv, dev in ((["--cuda-graphs"], "cpu"), (["--cuda-graphs", "--no-compile"], "cuda")):
        with pytest.raises(UsageError, match="--cuda-graphs needs a CUDA device and --compile"):
            train_mod.resolve_device_defaults(parse(argv), torch.device(dev))


def test_make_train_step_is_the_training_step_and_autocasts():
    torch.manual_seed(0)
    model = STCFormer(layers=1, d_hid=16)
    x, y = torch.randn(4, 3, 17, 2), torch.randn(4, 3, 17, 3)
    dtypes = []
    for amp, dtype in (("none", torch.float32), ("bf16", torch.bfloat16)):
        m = STCFormer(layers=1, d_hid=16)
        m.load_state_dict(model.state_dict())
        m.stcformer.stc_block[0].stc_att.proj.register_forward_hook(lambda mod, i, o: dtypes.append(o.dtype))
        opt = step_mod.make_optimizer(m.parameters(), 1e-3, "cpu")
        assert opt.defaults["amsgrad"] and not opt.defaults["fused"]  # fused only on CUDA
        step = step_mod.make_train_step(m, opt, amp=amp, device="cpu")
        before = {k: v.clone() for k, v in m.state_dict().items()}
        torch.manual_seed(1)
        loss = step(x, y)
        assert dtypes[-1] == dtype
        assert loss.dtype == torch.float32 and loss.dim() == 0 and not loss.requires_grad
        # the loss is the official MPJPE of the pre-step weights, and the step moved the weights
        ref = STCFormer(layers=1, d_hid=16)
        ref.load_state_dict(before)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            pred = ref(x)
        expect = torch.linalg.vector_norm(pred.float() - y, dim=-1).mean()
        assert torch.equal(loss, expect.detach())
        assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError):
        step_mod.make_train_step(model, opt, amp="fp8")


@pytest.mark.slow  # compile check, or whole training runs in subprocesses
def test_compiled_step_equals_the_eager_step():
    # the model compiles in one graph (the op is a registered custom op); aot_eager traces forward
    # and backward through AOTAutograd like inductor does, with eager kernels, so the losses match
    torch.manual_seed(0)
    base = STCFormer(layers=1, d_hid=16)
    x, y = torch.randn(4, 3, 17, 2), torch.randn(4, 3, 17, 3)
    losses = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        m = STCFormer(layers=1, d_hid=16)
        m.load_state_dict(base.state_dict())
        net = step_mod.compile_model(m, backend="aot_eager", fullgraph=True) if compiled else m
        step = step_mod.make_train_step(net, step_mod.make_optimizer(m.parameters(), 1e-3, "cpu"), amp="none")
        torch.manual_seed(1)
        losses[compiled] = [step(x, y) for _ in range(3)] + [step(x[:2], y[:2])]  # and a shorter batch
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs >= 2  # it did compile, per shape
    assert all(torch.equal(a, b) for a, b in zip(losses[False], losses[True])), losses
    torch._dynamo.reset()


def test_recompute_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    base = STCFormer(layers=2, d_hid=16)
    x, y = torch.randn(3, 5, 17, 2), torch.randn(3, 5, 17, 3)
    results = {}
    for recompute in (False, True, "mlp"):
        m = STCFormer(layers=2, d_hid=16)
        m.load_state_dict(base.state_dict())
        m.set_recompute(recompute)
        m.train()  # dropout and DropPath active: the recomputation must replay their masks
        calls = []  # a pre-hook: a recomputation may stop once it has what the backward needs
        m.stcformer.stc_block[1].register_forward_pre_hook(lambda *a: calls.append(1))
        torch.manual_seed(1)
        loss = torch.linalg.vector_norm(m(x) - y, dim=-1).mean()
        loss.backward()
        results[recompute] = loss.detach(), {k: p.grad for k, p in m.named_parameters()}
        assert len(calls) == (2 if recompute is True else 1)  # blocks recomputed in the backward
    l0, g0 = results[False]
    for what in (True, "mlp"):
        l1, g1 = results[what]
        assert torch.equal(l0, l1)
        for k in g0:
            torch.testing.assert_close(g1[k], g0[k], rtol=1e-6, atol=1e-9, msg=f"{what}: {k}")
    assert all(b.mlp.recompute for b in m.stcformer.stc_block) and not m.stcformer.recompute
    with pytest.raises(ValueError, match="recompute='attention'"):
        m.set_recompute("attention")


def test_one_recompute_vocabulary():
    """True/False/None, names and members all mean a Recompute member; the header prints its name."""
    from stcformer.choices import Recompute

    assert [Recompute.of(w) for w in (None, False, True, "none", "blocks", "mlp", Recompute.MLP)] == [
        Recompute.NONE, Recompute.NONE, Recompute.BLOCKS, Recompute.NONE, Recompute.BLOCKS, Recompute.MLP,
        Recompute.MLP]
    assert f"recompute {Recompute.of(None)}" == "recompute none"
    m = STCFormer(layers=1, d_hid=16, recompute=Recompute.BLOCKS)
    assert m.stcformer.recompute and not m.stcformer.stc_block[0].mlp.recompute


def test_slow_amp_warning_is_the_programs(monkeypatch, capsys):
    """The library only says why 16-bit autocast would be slow; the programs print the one line."""
    from stcformer.cli.common import warn_slow_cpu_amp
    from stcformer.ops import precision

    monkeypatch.setattr(precision, "bf16_native_reason", lambda: "bf16: no AVX-512 BF16")
    assert warn_slow_cpu_amp("cpu", "bf16")
    assert not warn_slow_cpu_amp("cpu", "none") and not warn_slow_cpu_amp("cuda", "bf16")
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: --amp bf16 on this CPU is usually slower than float32 (bf16: no AVX-512 BF16); "
                   "--amp none is the fast choice here"]


def test_cli_flags_reach_the_step(data, tmp_path, monkeypatch):
    """--amp bf16 --compile --recompute --check-every on CPU: the flags reach the model and the step."""
    compiled = []

    def fake_compile(module, backend=None, fullgraph=False, cuda_graphs=False):  # the wiring; compiled above
        compiled.append(module)
        return module
    monkeypatch.setattr(training_mod, "compile_model", fake_compile)
    seen = []  # (grad enabled, dtype) of block 0's proj output
    blocks, heads = [], []  # grad enabled at each call of block 0 and of the head (once per forward)
    real_build = training_mod.build_model

    def build(args, device):
        model = real_build(args, device)
        model.stcformer.stc_block[0].stc_att.proj.register_forward_hook(
            lambda m, i, o: seen.append((torch.is_grad_enabled(), o.dtype)))
        model.stcformer.stc_block[0].register_forward_pre_hook(lambda *a: blocks.append(torch.is_grad_enabled()))
        model.regress_head.register_forward_hook(lambda m, i, o: heads.append(torch.is_grad_enabled()))
        return model
    monkeypatch.setattr(training_mod, "build_model", build)
    out = tmp_path / "o"
    code, stdout, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 1, "--out", out,
                              "--amp", "bf16", "--compile", "--recompute", "--check-every", 7])
    assert code == 0, err
    assert len(compiled) == 1 and isinstance(compiled[0], STCFormer)
    assert stdout.count("torch.compile: the first step took") == 1
    assert "amp bf16, torch.compile on, recompute blocks" in stdout and "checked every 7 step(s)" in stdout
    train_steps = sum(heads)
    train_fwd = [dt for grad, dt in seen if grad]
    test_fwd = [dt for grad, dt in seen if not grad]
    assert train_steps > 0 and sum(blocks) == 2 * train_steps  # recomputed once in each backward
    assert set(train_fwd) == {torch.bfloat16}  # training under bf16 autocast
    assert test_fwd and set(test_fwd) == {torch.float32}  # the test after the epoch in float32
    m = json.loads((out / "metrics.json").read_text())
    assert (m["config"]["amp"], m["config"]["compile"], m["config"]["recompute"]) == ("bf16", True, "blocks")
    assert np.isfinite(m["epochs"][0]["train_loss_mm"]) and np.isfinite(m["epochs"][0]["p1_mm"])


@pytest.mark.parametrize("bad,word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_deferred_check_names_the_first_bad_step(data, tmp_path, monkeypatch, bad, word):
    calls = []
    real = step_mod.mpjpe

    def loss_with_a_bad_step(pred, target):  # step 6's loss is bad, and the weights after it too
        calls.append(1)
        loss = real(pred, target)
        return loss * bad if len(calls) == 6 else loss
    monkeypatch.setattr(step_mod, "mpjpe", loss_with_a_bad_step)
    out = tmp_path / "o"
    code, _, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 1, "--out", out,
                         "--check-every", 3, "--save-every", 4])
    assert code == train_mod.EXIT_NAN
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"loss is {word} at epoch 1, step 6 (" in lines[0], lines
    assert f"the last good state is {out / 'last.pth'}" in lines[0]
    # checks after steps 3, 4 (a save) and 7 (3 pending): step 7 ran before the check found step 6
    assert len(calls) == 7
    state = read_checkpoint(str(out / "last.pth"))
    assert state["extra"]["step"] == 4 and all(torch.isfinite(v).all() for v in state["state_dict"].values())
    # with a check every step (the CPU default) it stops at once
    calls.clear()
    code, _, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 1, "--out", tmp_path / "p"])
    assert code == train_mod.EXIT_NAN and f"loss is {word} at epoch 1, step 6 (" in err and len(calls) == 6


def _numpy_windows(ws, idx, flip=None, targets=False):
    """Windows ``idx`` of ``ws`` cut literally with numpy: frames clamped to each sequence, the
    mirrored ones through flip_pose, the root of targets zeroed."""
    from stcformer.data.windows import flip_pose

    seq = ws.seq[idx]
    steps = (np.arange(2 * ws.pad + 1) - ws.pad) * ws.tds
    frames = np.clip(ws.centre[idx, None] + steps[None], 0, ws.lengths[seq, None] - 1) + ws.offsets[seq, None]
    if targets and not ws.seq2seq:
        frames = (ws.centre[idx] + ws.offsets[seq])[:, None]
    x = (ws.poses if targets else ws.keypoints)[frames]
    mirror = ws.flip[idx] if flip is None else np.full(len(idx), flip)
    x[mirror] = flip_pose(x[mirror], ws.left, ws.right)
    if targets:
        x[..., ws.root, :] = 0
    return frames, torch.from_numpy(x)


def test_device_windows_equal_the_numpy_windows(data):
    d = get_benchmark("h36m").load(str(data), "synth_det", train=True)
    for frames, tds in ((3, 2), (9, 3)):
        ws = training_windows(d, frames, tds, stride=2, augment=True)
        dev = ws.to_device("cpu")
        idx = np.random.default_rng(0).permutation(len(ws))[:300]
        assert ws.flip[idx].any() and not ws.flip[idx].all()
        want_frames, want_x = _numpy_windows(ws, idx)
        assert torch.equal(dev.frame_indices(torch.from_numpy(idx)), torch.from_numpy(want_frames))
        assert np.array_equal(ws.frame_indices(idx), want_frames)
        assert torch.equal(dev.inputs(torch.from_numpy(idx)), want_x)
        assert torch.equal(ws.inputs(idx), want_x)
        want_y = _numpy_windows(ws, idx, targets=True)[1]
        assert torch.equal(dev.targets(torch.from_numpy(idx)), want_y) and torch.equal(ws.targets(idx), want_y)
        for flip in (False, True):
            want = _numpy_windows(ws, idx, flip=flip)[1]
            assert torch.equal(dev.inputs(idx, flip=flip), want) and torch.equal(ws.inputs(idx, flip=flip), want)
    from stcformer.data.dataset import test_windows
    ws = test_windows(d, 5, 3)
    idx = np.arange(0, len(ws), 7)
    want_y = _numpy_windows(ws, idx, targets=True)[1]
    assert torch.equal(ws.to_device("cpu").targets(idx), want_y) and torch.equal(ws.targets(idx), want_y)


# ---------------------------------------------------------------- device choice and torchrun on GPU machines
@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend this machine has ``n`` GPUs (nothing touches a real one before the checks run)."""
    def set_count(n):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return set_count


def test_pick_device(fake_gpus):
    from stcformer.devices import pick_device as pick
    fake_gpus(0)
    assert pick(None) == torch.device("cpu") and pick("cpu", 2, 1, 2) == torch.device("cpu")
    with pytest.raises(cli_mod.UsageError, match="--device cuda: CUDA is not available"):
        pick("cuda")
    with pytest.raises(cli_mod.UsageError, match="not a device"):
        pick("gpu0")
    fake_gpus(2)
    assert pick(None) == torch.device("cuda", 0) and pick("cuda:1") == torch.device("cuda", 1)
    assert pick(None, 2, 1, 2) == torch.device("cuda", 1) and pick("cuda", 4, 1, 2) == torch.device("cuda", 1)
    assert pick("cpu", 2, 1, 2) == torch.device("cpu")
    with pytest.raises(cli_mod.UsageError, match=r"only 2 GPU\(s\) are visible \(cuda:0 to cuda:1\)"):
        pick("cuda:2")
    with pytest.raises(cli_mod.UsageError, match="puts all 2 processes of this machine on one GPU"):
        pick("cuda:0", 2, 0, 2)
    assert pick("cuda:1", 2, 0, 1) == torch.device("cuda", 1)  # one process per machine may name its GPU
    with pytest.raises(cli_mod.UsageError, match=r"4 processes were started on this machine but only 2 GPU"):
        pick(None, 4, 0, 4)


def test_more_processes_than_gpus_stops_in_one_line(data, tmp_path, monkeypatch, fake_gpus):
    fake_gpus(1)
    out = tmp_path / "o"
    args = ["--data-dir", data, "-k", "synth_det", *TINY, "--out", out]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        code, stdout, err = call(args)
        assert code == 2 and stdout == ""
        if rank == "0":  # the machine's first process says it once; the others only exit
            assert err.count("\n") == 1 and err.startswith("error: 2 processes were started on this machine but "
                                                           "only 1 GPU(s) are visible"), err
        else:
            assert err == ""
    assert not out.exists()
    code, _, err = call([*args, "--device", "cuda:0"])
    assert code == 2 and err == ""  # rank 1 again
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code, _, err = call([*args, "--device", "cuda:0"])
    assert code == 2 and "puts all 2 processes of this machine on one GPU" in err and not out.exists()


# ---------------------------------------------------------------- CUDA (skipped without a GPU)
@pytest.mark.gpu
def test_cuda_windows_and_step_never_wait_for_the_host(data):
    dev = torch.device("cuda", torch.cuda.current_device())
    ws = training_windows(get_benchmark("h36m").load(str(data), "synth_det", train=True), 9, 3, stride=2, augment=True)
    gpu = ws.to_device(dev)
    idx = np.random.default_rng(0).permutation(len(ws))[:256]
    order = torch.from_numpy(idx).to(dev)
    assert torch.equal(gpu.inputs(order).cpu(), ws.inputs(idx))
    assert torch.equal(gpu.targets(order).cpu(), ws.targets(idx))
    torch.manual_seed(0)
    model = STCFormer(layers=2, d_hid=32).to(dev)
    opt = step_mod.make_optimizer(model.parameters(), 1e-3, dev)
    assert opt.defaults["fused"] and opt.defaults["amsgrad"]
    step = step_mod.make_train_step(step_mod.compile_model(model), opt, amp="bf16", device=dev)
    batches = [order[i:i + 64] for i in range(0, 256, 64)]
    losses = [step(gpu.inputs(b), gpu.targets(b)) for b in batches[:2]]  # compilation, warm-up
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation below raises
    try:
        losses += [step(gpu.inputs(b), gpu.targets(b)) for b in batches[2:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(loss.device == dev for loss in losses) and torch.isfinite(torch.stack(losses)).all()


@pytest.mark.gpu
def test_cuda_defaults_train(data, tmp_path):
    out = tmp_path / "o"
    code, stdout, err = call(["--data-dir", data, "-k", "synth_det", *TINY, "--epochs", 1, "--out", out])
    assert code == 0, err
    assert "amp bf16, torch.compile on" in stdout and "Adam (fused)" in stdout and "on cuda" in stdout
    assert stdout.count("torch.compile: the first step took") == 1
    m = json.loads((out / "metrics.json").read_text())
    assert (m["config"]["amp"], m["config"]["compile"], m["config"]["check_every"]) == \
        ("bf16", True, CHECK_EVERY_CUDA)
    assert np.isfinite(m["epochs"][0]["train_loss_mm"]) and m["epochs"][0]["p1_mm"] < m["mean_pose_p1_mm"] * 3
