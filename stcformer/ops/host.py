"""What this host can run, decided in one place: the CPU's features for every CPU fast path, and
the compiled extension stcformer._C (its build on first use and its load state).

CPU: each ``*_reason()`` returns None when the path can run here, or one sentence saying why not;
``dispatch.unavailable_reason`` (backend ``cpp``) and the MLP ops (oneDNN GEMMs) ask these.
Sources: /proc/cpuinfo flags (what the hardware and OS offer), ``ATEN_CPU_CAPABILITY`` through
``torch.backends.cpu.get_cpu_capability()`` (what ATen may use; a cap set by the user counts as
a limit here too, so an AVX-512 machine run with ``ATEN_CPU_CAPABILITY=avx2`` behaves like an
AVX2 one), ``ONEDNN_MAX_CPU_ISA`` (read once by :mod:`stcformer.settings`) and oneDNN's own bf16
query. ``BUILD_MARCH`` comes from :mod:`stcformer.ops.build`, so the build and the run-time check
name one level.

Extension: ``pip install --no-build-isolation -e .`` builds it at install. A plain ``pip install
-e .`` (pip's isolated build cannot import the installed torch) installs the package without it:
the first process that needs the kernels then builds the same library from ``csrc/`` with ninja
(:func:`torch.utils.cpp_extension.load`, the sources and flags of :mod:`stcformer.ops.build`),
once, into ``<cache>/extension/<key>``, the key naming the torch and Python versions and hashing
the sources and flags; later processes load that build. :func:`extension_load_error` is None
when the kernels are loaded, else one sentence why not (the ``auto`` backend then falls back with
that reason); the library is loaded on the first call, never on a CPU below its build level.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
import sysconfig
import time
from typing import FrozenSet, Optional

import torch

from stcformer import settings
from stcformer.ops import build
from stcformer.ops.build import BUILD_MARCH

# the /proc/cpuinfo flags that BUILD_MARCH (the -march of the C++ kernels on x86-64) implies:
# code built for it may use any of them, anywhere, also while loading
X86_64_V3_FLAGS = ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "xsave")

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) below its first bf16 GEMM (avx512_core)
_ONEDNN_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")
# ... and below its first ISA with bf16 dot products (AVX512_CORE_BF16; below it bf16 is emulated)
_ONEDNN_CAPS_WITHOUT_NATIVE_BF16 = _ONEDNN_CAPS_WITHOUT_BF16 + ("AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
# ATen capabilities below AVX2 on x86 (what get_cpu_capability() says with ATEN_CPU_CAPABILITY=default)
_ATEN_BELOW_AVX2 = ("DEFAULT", "NO AVX")


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> Optional[FrozenSet[str]]:
    """The flags of the first processor in /proc/cpuinfo, or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def aten_capability() -> str:
    """ATen's vector ISA for this process, after ATEN_CPU_CAPABILITY (e.g. AVX512, AVX2, DEFAULT)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old torch: no query, assume nothing
        return "DEFAULT"


def onednn_isa_cap() -> Optional[str]:
    env = settings.isa_env()
    cap = env["ONEDNN_MAX_CPU_ISA"] or env["DNNL_MAX_CPU_ISA"]
    return cap.strip().upper() if cap else None


def extension_isa_reason() -> Optional[str]:
    """None if stcformer._C (built with -march=BUILD_MARCH on x86-64) may be loaded and run here,
    else why not, as a phrase for "<backend>: <reason>". Asked before the extension is imported:
    code built for that level may use its instructions anywhere, even while the library loads."""
    if not is_x86_64():
        return None  # built for the compiler's default target there
    flags = cpu_flags()
    if flags is not None:
        missing = [f for f in X86_64_V3_FLAGS if f not in flags]
        if missing:
            return (f"stcformer._C is built for {BUILD_MARCH} and this CPU lacks "
                    f"{', '.join(missing)}, so running it would stop the process (SIGILL)")
    cap = aten_capability()
    if cap in _ATEN_BELOW_AVX2:
        why = ("ATEN_CPU_CAPABILITY caps this process below AVX2" if flags is not None
               else "torch finds no AVX2/FMA on this CPU")
        return f"stcformer._C is built for {BUILD_MARCH} (AVX2, FMA) and {why} (capability {cap})"
    return None


@functools.lru_cache(maxsize=None)
def _onednn_bf16_query() -> bool:
    # oneDNN's own answer (ideep: effective ISA >= avx512_core, or avx2_vnni_2)
    fn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:
        return False


def onednn_bf16_reason() -> Optional[str]:
    """None if oneDNN can run bfloat16 GEMMs (inner products) on this CPU, else why not."""
    if not torch.backends.mkldnn.is_available():
        return "oneDNN bf16: this torch is built without oneDNN (mkldnn)"
    cap = onednn_isa_cap()
    if cap in _ONEDNN_CAPS_WITHOUT_BF16:
        return f"oneDNN bf16: ONEDNN_MAX_CPU_ISA={cap} is below the first ISA with bf16 GEMMs (AVX512_CORE)"
    if not _onednn_bf16_query():
        return "oneDNN bf16: this CPU has no AVX-512 (or AVX2-VNNI-2), so oneDNN has no bf16 inner product"
    return None


def bf16_native_reason() -> Optional[str]:
    """None if this CPU computes bfloat16 products natively (AVX512_BF16 or AMX-BF16), else why
    not: there bf16 is converted to float32 and back, usually slower than plain float32."""
    flags = cpu_flags()
    if flags is None:
        return "bf16: /proc/cpuinfo cannot be read, so native bf16 support is unknown"
    if not ({"avx512_bf16", "amx_bf16"} & flags):
        return "bf16: this CPU has no AVX512_BF16 or AMX-BF16 instructions; bf16 is emulated through float32"
    cap = aten_capability()
    if cap not in ("AVX512", "AVX512_BF16", "AMX"):
        return f"bf16: ATEN_CPU_CAPABILITY caps this process at {cap}, below the bf16 instructions"
    if onednn_isa_cap() in _ONEDNN_CAPS_WITHOUT_NATIVE_BF16:
        return f"bf16: ONEDNN_MAX_CPU_ISA={onednn_isa_cap()} is below the bf16 instructions"
    return None


def summary() -> dict:
    """Everything above, e.g. for a benchmark's record of its machine."""
    flags = cpu_flags()
    return {
        "machine": platform.machine(),
        "aten_capability": aten_capability(),
        "onednn_max_cpu_isa": onednn_isa_cap(),
        "flags": sorted(f for f in (flags or ()) if f.startswith(("avx", "amx", "fma", "f16c"))),
        "extension_isa": extension_isa_reason(),
        "onednn_bf16": onednn_bf16_reason(),
        "bf16_native": bf16_native_reason(),
    }



def key_compile_cache_by_isa() -> str:
    """Add this process's ISA settings to torch.compile's cache key tag; returns the tag.

    Inductor writes its CPU kernels for the vector ISA it picks (``ATEN_CPU_CAPABILITY`` caps
    it: 8 float lanes for AVX2, 16 for AVX-512), but torch 2.13's FX graph cache key leaves the
    ISA out. A run under another cap then hits the entry and builds the stale source with its
    own flags: AVX2 source built for AVX-512 writes past its buffers (heap corruption, an abort
    at a later free), AVX-512 source built for AVX2 leaves half its outputs unwritten (NaN).
    torch's default cache is shared by every process of a user, so the tag keeps runs with
    different caps apart (tests/test_compile_cache.py)."""
    tag = "stcformer-isa:" + ",".join(f"{n}={v}" for n, v in settings.isa_env().items())
    config = torch.compiler.config
    if tag not in config.cache_key_tag.split("|"):
        config.cache_key_tag = f"{config.cache_key_tag}|{tag}" if config.cache_key_tag else tag
    return tag


# ---------------------------------------------------------------- the extension


_FAILED = "build-failed.txt"  # one line, why the build in this folder failed: not retried


def _log(message: str) -> None:
    print(f"stcformer: {message}", file=sys.stderr, flush=True)


def _import(path: str):
    """Import the library at ``path`` as stcformer._C (its init function is PyInit__C)."""
    spec = importlib.util.spec_from_file_location("stcformer._C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["stcformer._C"] = module
    setattr(sys.modules["stcformer"], "_C", module)
    return module


def build_dir() -> tuple:
    """(folder of the first-use build for this torch and these sources, whether it has CUDA)."""
    from torch.utils.cpp_extension import CUDA_HOME

    cuda = build.cuda_skip_reason(torch, CUDA_HOME, settings.no_cuda()) is None
    arch = build.cuda_arch_list(torch, settings.cuda_arch_list()) if cuda else ""
    if cuda:
        settings.export_env("TORCH_CUDA_ARCH_LIST", arch)  # where torch's builder reads it
    return os.path.join(settings.cache_root(), "extension", build.build_key(torch, cuda, arch)), cuda


def _compile(folder: str, cuda: bool) -> str:
    """Build the library into ``folder`` with ninja; returns its path (raises on a failed build)."""
    from torch.utils.cpp_extension import load

    # the ninja of this interpreter's environment, also when it is run without activating the venv
    settings.prepend_to_path(sysconfig.get_path("scripts"))
    what = "C++ and CUDA kernels" if cuda else "C++ kernels"
    _log(f"building stcformer._C ({what}) against torch {torch.__version__} on first use, once, into {folder}")
    t0 = time.perf_counter()
    srcs = [os.path.join(build.ROOT, s) for s in build.sources(cuda)]
    load("_C", srcs, extra_cflags=build.CXX_FLAGS, extra_cuda_cflags=build.NVCC_FLAGS if cuda else None,
         extra_ldflags=build.openmp_link_flags(torch), build_directory=folder, with_cuda=cuda,
         is_python_module=False)
    _log(f"built stcformer._C in {time.perf_counter() - t0:.0f} s")
    return os.path.join(folder, "_C.so")


def build_and_load() -> Optional[str]:
    """Load the first-use build of stcformer._C, building it first where needed; None when
    loaded, else why not (a failed build is reported once and not retried for these sources)."""
    if settings.no_extension():
        return "stcformer._C is not built (STCFORMER_NO_EXTENSION=1)"
    if not build.sources(False):
        return ("stcformer._C is not built and its C++ sources are not here (install from a checkout: "
                "pip install --no-build-isolation -e .)")
    folder, cuda = build_dir()
    failed = os.path.join(folder, _FAILED)
    if os.path.exists(failed):
        with open(failed) as f:
            return f.readline().strip()
    path = os.path.join(folder, "_C.so")
    try:
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            path = _compile(folder, cuda)
        _import(path)
    except Exception as exc:  # noqa: BLE001 - a compiler, ninja or loader error: say it, fall back
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        reason = f"stcformer._C could not be built on first use ({first}); delete {folder} to try again"
        with open(failed, "w") as f:
            f.write(reason + "\n\n" + str(exc))
        _log(reason)
        return reason
    return None


def _load() -> Optional[str]:
    try:
        import stcformer._C  # noqa: F401  (registers torch.ops.stcformer.* kernels)
    except ModuleNotFoundError as exc:
        if exc.name != "stcformer._C":
            return str(exc).splitlines()[0]
        return build_and_load()  # not built at install (pip's isolated build)
    except ImportError as exc:  # built against another torch
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


@functools.lru_cache(maxsize=None)
def extension_load_error() -> Optional[str]:
    """None once stcformer._C is loaded (built on first use where needed), else why not. The
    library is built for one x86-64 level and may run its instructions while it loads: a CPU
    below that level never imports it."""
    return extension_isa_reason() or _load()


def extension_path() -> Optional[str]:
    """The file of the loaded stcformer._C (the installed build or the first-use build), or None
    when it is not loaded: the library a C++ program loads before running an AOTInductor package
    of a model with the fused op (examples/aoti_cpp)."""
    if extension_load_error() is not None:
        return None
    return getattr(sys.modules.get("stcformer._C"), "__file__", None)


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether torch.ops.stcformer.<op> has a kernel for ``dispatch_key`` ("CPU" or "CUDA")."""
    if extension_load_error() is not None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"stcformer::{op}", dispatch_key)
    except RuntimeError:
        return False
