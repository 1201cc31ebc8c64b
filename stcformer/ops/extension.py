"""Loads the compiled extension stcformer._C; never fails at import.

``pip install --no-build-isolation -e .`` builds it at install. A plain ``pip install -e .`` (pip's
isolated build cannot import the installed torch) installs the package without it: the first
process that needs the kernels then builds the same library from ``csrc/`` with ninja
(:func:`torch.utils.cpp_extension.load`, the sources and flags of :mod:`stcformer.ops.build`),
once, into ``<cache>/extension/<key>``, the key naming the torch and Python versions and hashing
the sources and flags; later processes load that build. ``load_error`` is None when the kernels
are loaded, else one sentence why not (the ``auto`` backend then falls back with that reason).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import time
from typing import Optional

import torch

from stcformer.io import cache_root
from stcformer.ops import build
from stcformer.ops.cpu_features import extension_isa_reason

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

    cuda = build.cuda_skip_reason(torch, CUDA_HOME) is None
    if cuda:
        build.cuda_arch_list(torch)
    return os.path.join(cache_root(), "extension", build.build_key(torch, cuda)), cuda


def _compile(folder: str, cuda: bool) -> str:
    """Build the library into ``folder`` with ninja; returns its path (raises on a failed build)."""
    from torch.utils.cpp_extension import load

    # the ninja of this interpreter's environment, also when it is run without activating the venv
    scripts = sysconfig.get_path("scripts")
    os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
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
    if os.environ.get("STCFORMER_NO_EXTENSION") == "1":
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


# the library is built for one x86-64 level and may run its instructions while it loads:
# a CPU below that level must never import it
load_error: Optional[str] = extension_isa_reason() or _load()


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether torch.ops.stcformer.<op> has a kernel for ``dispatch_key`` ("CPU" or "CUDA")."""
    if load_error is not None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"stcformer::{op}", dispatch_key)
    except RuntimeError:
        return False
