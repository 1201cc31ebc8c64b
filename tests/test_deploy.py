"""python -m stcformer.deploy: ONNX export (checked, run in ONNX Runtime), the torch.export
program, and the inference pipeline on ONNX Runtime (stcformer.lift, StreamLifter, infer --onnx)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import stcformer
from stcformer import STCFormer, StreamLifter
from stcformer.cli.common import run
from stcformer.cli.deploy import main
from stcformer.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (1000, 1000)


def deploy(*args):
    return run(lambda: main([str(a) for a in args]))


@pytest.fixture(scope="module")
def onnx_file(ckpt, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("deploy") / "model.onnx"
    assert deploy("onnx", "--checkpoint", ckpt, "--out", path, "--frames", 9) == 0
    return str(path)


def official_3dhp(path, layers=6, width=256):
    """An official-shaped MPI-INF-3DHP checkpoint: a plain state_dict under the official 3DHP key names
    (mlpmixer.mixerblocks.{i}.cross_att..., 'module.' prefix), 4 heads."""
    torch.manual_seed(1)
    model = STCFormer(layers=layers, d_hid=width, family="3dhp")
    with torch.no_grad():  # the released weights' SPE terms are not small: make them count
        for block in model.stcformer.stc_block:
            block.stc_att.emb.weight.normal_(0, 30)
    torch.save({"module." + k: v for k, v in model.official_state_dict().items()}, path)
    return str(path)


def check_file(path, model, frames, batches, rtol=1e-4):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in proto.graph.node} <= {""}  # standard operators only
    assert max(o.version for o in proto.opset_import if o.domain == "") >= 17
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in batches:
        x = torch.rand(b, frames, 17, 2) * 2 - 1
        y = session.run(None, {"keypoints_2d": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        assert y.shape == ref.shape == (b, frames, 17, 3)
        assert np.abs(y - ref).max() <= rtol * np.abs(ref).max()


def test_onnx_export_of_a_small_model(ckpt, onnx_file):
    check_file(onnx_file, stcformer.load_checkpoint(ckpt), 9, batches=(1, 5))


@pytest.mark.parametrize("layers, width", [(2, 64), pytest.param(6, 256, marks=pytest.mark.slow)])
def test_onnx_export_of_an_official_shaped_3dhp_model(tmp_path, capsys, layers, width):
    """The 3DHP family under its official key names; official size (6 x 256) in the slow run."""
    pytest.importorskip("onnxruntime")
    path = official_3dhp(tmp_path / "3dhp.pth", layers, width)
    model = stcformer.load_checkpoint(path)
    assert model.family == "3dhp" and model.config["num_heads"] == 4
    assert deploy("onnx", "--checkpoint", path, "--out", tmp_path / "3dhp.onnx", "--frames", 27) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: ok" in out and "largest difference" in out
    check_file(str(tmp_path / "3dhp.onnx"), model, 27, batches=(1, 3))


def test_dynamic_frames_and_the_fixed_window(ckpt, onnx_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from stcformer.deploy import OnnxModel

    fixed = OnnxModel(onnx_file)
    assert fixed.frames == 9 and fixed.train_config == {"frames": 9, "tds": 3}
    with pytest.raises(UsageError, match="exported for windows of 9 frames"):
        fixed(torch.zeros(1, 27, 17, 2))
    assert deploy("onnx", "--checkpoint", ckpt, "--out", tmp_path / "dyn.onnx", "--dynamic-frames") == 0
    model = stcformer.load_checkpoint(ckpt)
    for T in (1, 27, 81):
        check_file(str(tmp_path / "dyn.onnx"), model, T, batches=(2,))


def test_float16_export_runs_in_onnxruntime(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    from stcformer.deploy import OnnxModel

    assert deploy("onnx", "--checkpoint", ckpt, "--out", tmp_path / "h.onnx", "--frames", 9, "--dtype", "float16") == 0
    x = torch.rand(3, 9, 17, 2) * 2 - 1
    with torch.no_grad():
        ref = stcformer.load_checkpoint(ckpt)(x)
    y = OnnxModel(tmp_path / "h.onnx")(x)
    assert y.dtype == torch.float32 and (y - ref).abs().max() <= 1e-2 * ref.abs().max()


def test_lift_and_stream_on_onnxruntime_equal_pytorch(ckpt, onnx_file):
    rng = np.random.default_rng(0)
    kpts = (rng.uniform(300, 700, size=(17, 2)) + rng.normal(0, 20, size=(40, 17, 2))).astype(np.float32)
    for mode in ("center", "seq2seq"):
        ref = stcformer.lift(kpts, ckpt, fps=50, size=SIZE, frames=9, mode=mode)
        got = stcformer.lift(kpts, onnx_file, fps=50, size=SIZE, mode=mode, runtime="onnxruntime")
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    lifter = StreamLifter(onnx_file, fps=50, size=SIZE, runtime="onnxruntime")
    assert lifter.frames == 9  # the file's window
    poses = [p for p in (lifter.push(f) for f in kpts) if p is not None]
    poses = np.concatenate([np.stack(poses), lifter.flush()])
    ref = stcformer.lift(kpts, ckpt, fps=50, size=SIZE, frames=9)
    np.testing.assert_allclose(poses, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(UsageError, match="exported for windows of 9"):
        stcformer.lift(kpts, onnx_file, fps=50, size=SIZE, frames=27, runtime="onnxruntime")


def test_infer_onnx_equals_infer_checkpoint(ckpt, onnx_file, tmp_path):
    from stcformer.cli import infer

    if "--onnx" not in infer.parse_args.__code__.co_consts and "--onnx" not in open(infer.__file__).read():
        pytest.skip("stcformer/cli/infer.py has no --onnx flag yet")
    kpts = np.random.default_rng(3).uniform(100, 900, size=(1, 30, 17, 2)).astype(np.float32)
    np.savez(tmp_path / "k.npz", reconstruction=kpts)
    common = ["--keypoints", tmp_path / "k.npz", "--width", 1000, "--height", 1000, "--fps", 50, "--device", "cpu"]
    a = run(lambda: infer.main([str(s) for s in ["--checkpoint", ckpt, "-f", 9, "--out", tmp_path / "a", *common]]))
    b = run(lambda: infer.main([str(s) for s in ["--onnx", onnx_file, "--out", tmp_path / "b", *common]]))
    assert a == b == 0
    pa, pb = (np.load(tmp_path / d / "poses_3d.npz")["reconstruction"] for d in "ab")
    np.testing.assert_allclose(pb, pa, rtol=0, atol=1e-4 * np.abs(pa).max())


def _python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_pt2_round_trip_in_a_fresh_process(ckpt, tmp_path):
    assert deploy("export", "--checkpoint", ckpt, "--out", tmp_path / "m.pt2", "--frames", 9) == 0
    x = torch.rand(3, 9, 17, 2) * 2 - 1
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch, stcformer.deploy as d; m, meta = d.load_program(sys.argv[1]); "
            "x = torch.load(sys.argv[2]); torch.save(m(x), sys.argv[3]); print(meta['stcformer.backend'])")
    r = _python(code, tmp_path / "m.pt2", tmp_path / "x.pt", tmp_path / "y.pt")
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        ref = stcformer.load_checkpoint(ckpt)(x)
    y = torch.load(tmp_path / "y.pt")
    assert (y - ref).abs().max() <= 1e-5 * ref.abs().max()
    if stcformer.ops.dispatch.unavailable_reason("cpp", "cpu", torch.float32) is None:
        assert r.stdout.strip() == "cpp"  # the fused op, not the reference


@pytest.mark.slow  # AOTInductor compiles the model to C++, and g++ builds the example program
def test_aoti_package_runs_in_python_and_in_a_cpp_program(ckpt, tmp_path, capsys):
    """deploy export --aoti: the package matches the model from Python (the flag's own check) and
    from examples/aoti_cpp/lift.cpp, a C++ program without Python that loads the op library first."""
    import re
    import shutil

    from stcformer.ops import host

    if host.extension_path() is None:
        pytest.skip(f"no stcformer._C to carry the fused op: {host.extension_load_error()}")
    assert deploy("export", "--checkpoint", ckpt, "--out", tmp_path / "m.pt2", "--aoti", tmp_path / "p.pt2",
                  "--frames", 9) == 0
    said = capsys.readouterr().out
    worst = float(re.search(r"AOTInductor package; largest difference (\S+) ", said).group(1))
    assert worst <= 1e-5, said
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the C++ example")
    torch_dir = os.path.dirname(torch.__file__)
    exe = tmp_path / "lift"
    build = subprocess.run(
        ["g++", "-std=c++17", "-O1", os.path.join(ROOT, "examples", "aoti_cpp", "lift.cpp"), "-o", str(exe),
         "-I", os.path.join(torch_dir, "include"), "-I", os.path.join(torch_dir, "include", "torch", "csrc", "api",
                                                                         "include"),
         f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}", "-L", os.path.join(torch_dir, "lib"),
         "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{os.path.join(torch_dir, 'lib')}", "-ldl"],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run([str(exe), host.extension_path(), str(tmp_path / "p.pt2"), "2", "9"], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.split("\n")
    assert lines[0] == "shape 2 9 17 3"
    y = torch.tensor([float(v) for v in lines[1:] if v]).reshape(2, 9, 17, 3)
    x = ((torch.arange(2 * 9 * 17 * 2, dtype=torch.float32) * 0.37).sin() * 0.8).reshape(2, 9, 17, 2)
    with torch.no_grad():
        ref = stcformer.load_checkpoint(ckpt)(x)
    assert (y - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_missing_extra_is_one_line_and_exit_2(ckpt, tmp_path):
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.modules['onnx'] = None\n"
            "from stcformer.cli.common import run; from stcformer.cli.deploy import main\n"
            "sys.exit(run(lambda: main(sys.argv[1:])))")
    r = _python(code, "onnx", "--checkpoint", ckpt, "--out", tmp_path / "m.onnx")
    assert r.returncode == 2 and not (tmp_path / "m.onnx").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install 'stcformer[deploy]'" in lines[0]


def test_missing_extra_in_the_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UsageError, match=r"pip install 'stcformer\[deploy\]'"):
        stcformer.lift(np.zeros((5, 17, 2), np.float32), "m.onnx", fps=50, size=SIZE, runtime="onnxruntime")


@pytest.mark.parametrize("bad, message", [
    (["--checkpoint", "nope.pt"], "nope.pt: no such file"),
    (["--frames", "8"], "--frames must be odd"),
])
def test_bad_input_is_one_line_and_nothing_written(ckpt, tmp_path, capsys, bad, message):
    args = dict(zip(["--checkpoint", "--frames"], [ckpt, "9"]))
    args.update(dict(zip(bad[::2], bad[1::2])))
    for command in ("onnx", "export"):
        out = tmp_path / f"m.{command}"
        rc = deploy(command, "--out", out, *[s for kv in args.items() for s in kv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0] and not out.exists()
    with pytest.raises(UsageError, match="not a PyTorch model"):
        stcformer.lift(np.zeros((5, 17, 2), np.float32), STCFormer(layers=1, d_hid=32, num_heads=2), fps=50,
                       size=SIZE, runtime="onnxruntime")
