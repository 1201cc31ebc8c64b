"""The public op's argument checks and backend dispatch."""
import os
import subprocess
import sys

import pytest
import torch

from stcformer.ops import dispatch
from stcformer.ops.attention import stc_attention
from stcformer.ops.reference import stc_attention_reference

from stcformer.testing import make_inputs


def test_auto_on_cpu_matches_reference():
    args = make_inputs(2, 5, 17, 32, 2)
    torch.testing.assert_close(stc_attention(*args), stc_attention_reference(*args), rtol=1e-5, atol=1e-5)


def test_unknown_backend_is_an_error():
    with pytest.raises(RuntimeError, match="unknown backend"):
        stc_attention(*make_inputs(1, 2, 17, 16, 2), backend="fast")


def test_named_backend_that_cannot_run_raises_with_reason():
    args = make_inputs(1, 2, 17, 16, 2)
    with pytest.raises(RuntimeError, match="cuda: tensors are on cpu"):
        stc_attention(*args, backend="cuda")


def test_env_var_selects_backend(monkeypatch):
    """$STCFORMER_BACKEND is read once (settings.reset reads it again), set_backend changes it."""
    from stcformer import settings

    monkeypatch.setenv("STCFORMER_BACKEND", "cuda")
    settings.reset()
    try:
        with pytest.raises(RuntimeError, match="cuda: tensors are on cpu"):
            stc_attention(*make_inputs(1, 2, 17, 16, 2))
        settings.set_backend("reference")
        stc_attention(*make_inputs(1, 2, 17, 16, 2))
    finally:
        monkeypatch.delenv("STCFORMER_BACKEND")
        settings.reset()


def test_reasons_are_one_sentence_per_backend():
    reasons = dispatch.available_backends("cpu", torch.float32)
    assert reasons["reference"] is None
    assert reasons["cuda"].startswith("cuda: ")
    assert reasons["cpp"] is None or reasons["cpp"].startswith("cpp: ")
    assert dispatch.unavailable_reason("triton", "cpu", torch.float64).startswith("triton: dtype")
    assert dispatch.choose("auto", "cpu", torch.float32) in ("cpp", "reference")


def test_triton_on_cpu_needs_interpreter():
    from stcformer import settings

    pytest.importorskip("triton")
    with settings.override(triton_interpret=False):  # as read from a process without TRITON_INTERPRET=1
        assert dispatch.unavailable_reason("triton", "cpu", torch.float32) == \
            "triton: tensors are on CPU and TRITON_INTERPRET is not set"


@pytest.mark.parametrize("change,match", [
    (lambda a: (a[0][..., :-1],) + a[1:], "qkv must be"),
    (lambda a: a[:1] + (a[1][:-1],) + a[2:], "w_s must be"),
    (lambda a: a[:6] + (a[6][:-1],) + a[7:], "spe_t must be"),
    (lambda a: a[:7] + (3,) + a[8:], "not divisible by num_heads"),
])
def test_argument_checks(change, match):
    with pytest.raises(ValueError, match=match):
        stc_attention(*change(tuple(make_inputs(1, 2, 17, 16, 2))))


# --- what the CPU can run (stcformer/ops/host.py, asked by dispatch before loading _C) ---

from stcformer.ops import host  # noqa: E402

V3 = frozenset(host.X86_64_V3_FLAGS)


def _cpu(monkeypatch, flags, capability="AVX2", x86=True):
    monkeypatch.setattr(host, "is_x86_64", lambda: x86)
    monkeypatch.setattr(host, "cpu_flags", lambda: flags)
    monkeypatch.setattr(host, "aten_capability", lambda: capability)


def test_cpp_refused_on_a_cpu_without_avx2(monkeypatch):
    _cpu(monkeypatch, V3 - {"avx2", "fma"}, capability="DEFAULT")
    reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
    assert reason.startswith("cpp: stcformer._C is built for x86-64-v3") and "avx2, fma" in reason
    assert reason.count(". ") == 0 and "\n" not in reason  # one sentence
    # the CUDA kernels live in the same library (host code built for the same level)
    assert dispatch.unavailable_reason("cuda", "cuda", torch.float32).startswith("cuda: stcformer._C is built")
    assert dispatch.choose("auto", "cpu", torch.float32) == "reference"
    args = make_inputs(1, 2, 17, 16, 2)
    with pytest.raises(RuntimeError, match="cpp: stcformer._C is built for x86-64-v3"):
        stc_attention(*args, backend="cpp")
    torch.testing.assert_close(stc_attention(*args), stc_attention_reference(*args))


@pytest.mark.parametrize("flags,capability,want", [
    (V3, "AVX2", None),
    (V3 | {"avx512f", "avx512bw"}, "AVX512", None),
    (V3 - {"bmi2"}, "AVX2", "lacks bmi2"),  # any x86-64-v3 feature, not only AVX2/FMA
    (V3, "DEFAULT", "ATEN_CPU_CAPABILITY caps this process below AVX2"),
    (None, "AVX2", None),  # no /proc/cpuinfo: torch's own probe decides
    (None, "DEFAULT", "torch finds no AVX2/FMA"),
])
def test_extension_isa_decision(monkeypatch, flags, capability, want):
    _cpu(monkeypatch, flags, capability)
    reason = host.extension_isa_reason()
    assert (reason is None) if want is None else (want in reason), reason


def test_extension_isa_not_asked_off_x86(monkeypatch):
    _cpu(monkeypatch, frozenset(), capability="DEFAULT", x86=False)
    assert host.extension_isa_reason() is None


def test_aten_capability_cap_refuses_cpp_without_loading_it():
    """For real, in a child: ATEN_CPU_CAPABILITY=default (what a CPU without AVX2 reports) makes
    cpp refuse with its reason, auto fall back, and stcformer._C never load."""
    if not host.is_x86_64():
        pytest.skip("the extension is built for x86-64-v3 only on x86-64")
    code = (
        "import sys, torch, stcformer\n"
        "from stcformer import stc_attention\nfrom stcformer.ops import dispatch\nfrom stcformer.ops.mlp import fused\n"
        "from stcformer.testing import make_inputs\n"
        "args = make_inputs(1, 2, 17, 16, 2)\n"
        "out = stc_attention(*args)\n"
        "try:\n"
        "    stc_attention(*args, backend='cpp'); print('RAN')\n"
        "except RuntimeError as e:\n"
        "    print('REFUSED', e)\n"
        "print('FUSED', dispatch.fused_mlp_reason())\n"
        "print('LOADED', 'stcformer._C' in sys.modules)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("REFUSED stc_attention backend cpp: stcformer._C is built for") for ln in lines), lines
    assert any(ln.startswith("FUSED fused_mlp: stcformer._C is built for") for ln in lines), lines
    assert "LOADED False" in lines, lines


@pytest.mark.parametrize("flags,capability,onednn_cap,native", [
    (V3, "AVX2", None, False),
    (V3 | {"avx512f", "avx512bw"}, "AVX512", None, False),  # bf16 emulated through float32
    (V3 | {"avx512f", "avx512_bf16"}, "AVX512", None, True),
    (V3 | {"avx512f", "avx512_bf16", "amx_bf16"}, "AVX2", None, False),  # ATEN_CPU_CAPABILITY=avx2
    (V3 | {"avx512f", "avx512_bf16"}, "AVX512", "AVX2", False),  # ONEDNN_MAX_CPU_ISA=AVX2
    (V3 | {"avx512f", "avx512_bf16"}, "AVX512", "avx512_core", False),
])
def test_bf16_native_decision(monkeypatch, flags, capability, onednn_cap, native):
    from stcformer import settings

    _cpu(monkeypatch, flags, capability)
    caps = {**settings.isa_env(), "ONEDNN_MAX_CPU_ISA": onednn_cap or "", "DNNL_MAX_CPU_ISA": ""}
    with settings.override(isa_env=tuple(caps.items())):
        reason = host.bf16_native_reason()
    assert (reason is None) == native, reason
    assert reason is None or reason.startswith("bf16: ")


def test_onednn_bf16_respects_the_isa_cap(monkeypatch):
    from stcformer import settings

    capped = {**settings.isa_env(), "ONEDNN_MAX_CPU_ISA": "AVX2"}
    with settings.override(isa_env=tuple(capped.items())):
        assert "ONEDNN_MAX_CPU_ISA=AVX2" in host.onednn_bf16_reason()
    uncapped = {**settings.isa_env(), "ONEDNN_MAX_CPU_ISA": "", "DNNL_MAX_CPU_ISA": ""}
    monkeypatch.setattr(settings, "isa_env", lambda: uncapped)
    monkeypatch.setattr(host, "_onednn_bf16_query", lambda: False)
    assert "no AVX-512" in host.onednn_bf16_reason()
    monkeypatch.setattr(host, "_onednn_bf16_query", lambda: True)
    assert host.onednn_bf16_reason() is None or not torch.backends.mkldnn.is_available()
