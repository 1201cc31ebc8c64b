"""torch.compile's on-disk caches must not be shared between runs with different CPU ISA caps.

Inductor generates its CPU C++ kernels for the vector ISA it picks at compile time
(``torch._inductor.cpu_vec_isa.pick_vec_isa()``, which follows ``ATEN_CPU_CAPABILITY``): loops
step by the ISA's lane count (8 floats for AVX2, 16 for AVX-512). The FX graph cache stores that
source, but its key (``FxGraphHashDetails`` in torch/_inductor/codecache.py) does not include the
ISA. A later run under another ISA hits the entry and compiles the stale source with its own
flags: AVX2 source built for AVX-512 stores 16 lanes every 8 elements and writes past the end of
its buffers (heap corruption: ``free(): invalid pointer`` / abort, seen first in the pybind11
argument unpacking of our op's Python kernel); AVX-512 source built for AVX2 computes only half
of every 16 elements (garbage / NaN outputs).

A user who never sets ``TORCHINDUCTOR_CACHE_DIR`` shares one default cache
(``<tempfile.gettempdir()>/torchinductor_<user>``) between all runs, capped or not. This test
plays that user: two child processes, one with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` and one without, run the same small compiled program (the stcformer op
between other ops, forward and backward, plus a plain elementwise op and a max reduction) one
after the other with the same ``TMPDIR`` (so the same default Inductor cache) and neither sets
``TORCHINDUCTOR_CACHE_DIR``. The second must exit 0 with results equal to eager: it may only pass
when importing ``stcformer.ops`` (``host.key_compile_cache_by_isa``) keeps runs with
different ISA settings out of each other's cache entries.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import stcformer
from stcformer.ops import host
from stcformer.ops import host

# the ISA cap of the "capped" child; the other child runs with none of these set
CAP_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
ISA_ENV_NAMES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# anything that would move, disable or re-key the Inductor caches: the child is a default user
CACHE_ENV_NAMES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                   "TORCHINDUCTOR_AUTOGRAD_CACHE", "TORCHINDUCTOR_FORCE_DISABLE_CACHES",
                   "TORCH_COMPILE_CACHE_KEY_TAG", "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE",
                   "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE")

# The child: imports torch, then the library (whose import may protect the cache), compiles a
# block around the stcformer op (forward + backward) and a plain-ATen probe, and compares both
# with eager on fresh inputs several times. Exit 1 on any mismatch; heap corruption usually aborts
# it (SIGABRT) at a free; malloc_trim after each round walks the heap so that it is found early.
CHILD = r'''
import ctypes, gc, os, sys
import torch
import stcformer  # noqa: F401  (import-time setup of the library)
from stcformer.ops.backends import extension
from stcformer.testing import make_inputs

torch.manual_seed(0)
args = make_inputs(1, 5, 17, 16, 2, seed=4)
tensors, H, scale = list(args[:7]), args[7], args[8]


def block(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t):
    return extension.stc_attention(qkv * 1.5, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale).sin()


def probe(x, y):
    # a flat elementwise kernel (vector stores) and a row max of negative numbers (a stale
    # AVX2 kernel built for AVX-512 takes zeros from its masked loads into the max)
    return (x * 1.5).sin(), (-y.abs() - 1.0).amax(-1)


cblock = torch.compile(block, fullgraph=True, dynamic=False)
cprobe = torch.compile(probe, fullgraph=True, dynamic=False)
try:
    libc = ctypes.CDLL("libc.so.6")
except OSError:
    libc = None
bad = []
for it in range(3):
    leaves = [(t + 0.01 * it * torch.randn_like(t)).detach().requires_grad_(True) for t in tensors]
    out = cblock(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    eager = [t.detach().clone().requires_grad_(True) for t in leaves]
    want = block(*eager)
    want_grads = torch.autograd.grad(want.sum(), eager)
    pairs = [("out", out, want)] + [("grad%d" % i, a, b) for i, (a, b) in enumerate(zip(grads, want_grads))]
    for name, a, b in pairs:
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            bad.append("block %s (round %d)" % (name, it))
    for n in (1008, 4080):
        x = torch.randn(n)
        y = torch.randn(n // 48, 48)
        for name, a, b in zip(("sin", "amax"), cprobe(x, y), probe(x, y)):
            if not torch.allclose(a, b, atol=1e-5):
                bad.append("probe %s n=%d (round %d)" % (name, n, it))
    del out, grads, want, want_grads, leaves, eager, pairs
    gc.collect()
    if libc is not None:
        libc.malloc_trim(0)
print("ATen capability", torch.backends.cpu.get_cpu_capability(),
      "| inductor cache", os.environ.get("TORCHINDUCTOR_CACHE_DIR"), flush=True)
print("MISMATCH vs eager: " + ", ".join(bad) if bad else "all match eager", flush=True)
sys.exit(1 if bad else 0)
'''


def _has_avx512() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    check = getattr(torch.cpu, "_is_avx512_supported", None)  # what inductor's ISA list asks
    if check is not None:
        return bool(check())
    flags = host.cpu_flags() or frozenset()
    return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags


def _child_env(tmpdir: Path, capped: bool) -> dict:
    env = dict(os.environ)
    for name in ISA_ENV_NAMES + CACHE_ENV_NAMES:
        env.pop(name, None)
    if capped:
        env.update(CAP_ENV)
    # torch's default cache is <tempfile.gettempdir()>/torchinductor_<user>: both children share it
    env["TMPDIR"] = str(tmpdir)
    # the children import the same stcformer as this test process
    root = str(Path(stcformer.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run_child(script: Path, tmpdir: Path, capped: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "faulthandler", str(script)], env=_child_env(tmpdir, capped),
                          cwd=str(script.parent), capture_output=True, text=True, timeout=600)


def _describe(proc: subprocess.CompletedProcess) -> str:
    tail = lambda s: "\n".join(s.strip().splitlines()[-25:])  # noqa: E731
    return f"exit {proc.returncode}\n--- stdout ---\n{tail(proc.stdout)}\n--- stderr ---\n{tail(proc.stderr)}"


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx512(),
                    reason="no AVX-512 on this CPU: ATEN_CPU_CAPABILITY=avx2 picks the ISA inductor uses anyway")
@pytest.mark.skipif(host.extension_load_error() is not None,
                    reason=f"stcformer._C is not loaded: {host.extension_load_error()}")
@pytest.mark.parametrize("first_capped", [True, False], ids=["capped_then_uncapped", "uncapped_then_capped"])
def test_inductor_cache_not_shared_across_isa_caps(tmp_path, first_capped):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()

    first = _run_child(script, tmpdir, capped=first_capped)
    assert first.returncode == 0, f"first run ({'capped' if first_capped else 'uncapped'}), empty cache: {_describe(first)}"
    # the scenario needs a filled FX graph cache somewhere under the shared temp dir
    assert any(p.name == "fxgraph" for p in tmpdir.rglob("fxgraph")), \
        f"the first run wrote no FX graph cache under {tmpdir}: {sorted(str(p) for p in tmpdir.iterdir())}"

    second = _run_child(script, tmpdir, capped=not first_capped)
    assert second.returncode == 0, (
        f"second run ({'uncapped' if first_capped else 'capped'}) against the cache of the "
        f"{'capped' if first_capped else 'uncapped'} one: {_describe(second)}")
    assert "all match eager" in second.stdout, _describe(second)
