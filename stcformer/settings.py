"""Every switch of the package in one place: read from the environment once, changed only
through the setters here (programs, tests, benchmarks), never by writing another module's globals.

=====================  ===============================  ============================================
switch                 environment (read at import)     getter / setter
=====================  ===============================  ============================================
backend request        ``STCFORMER_BACKEND``            :func:`backend` / :func:`set_backend`
Triton fp32 dots       ``STCFORMER_TRITON_FP32_DOT``    :func:`triton_fp32_dot` / :func:`set_triton_fp32_dot`
Triton launches        (none)                           :func:`triton_overrides` / :func:`override_triton`
Triton inlining        ``STCFORMER_TRITON_INLINE``      :func:`triton_inline` (the launcher registers once)
Triton interpreter     ``TRITON_INTERPRET``             :func:`triton_interpret` (Triton itself reads it
                                                        when it is imported, so it is not settable)
oneDNN GEMMs           (none)                           :func:`onednn_gemm` / :func:`set_onednn_gemm`
no extension           ``STCFORMER_NO_EXTENSION``       :func:`no_extension`
CUDA build             ``STCFORMER_NO_CUDA``,           :func:`no_cuda`, :func:`cuda_arch_list`
                       ``TORCH_CUDA_ARCH_LIST``
cache folder           ``STCFORMER_CACHE``              :func:`cache_root`
CPU ISA caps           ``ATEN_CPU_CAPABILITY``,         :func:`isa_env` (ATen and oneDNN read them
                       ``ONEDNN_MAX_CPU_ISA``,          themselves when they start)
                       ``DNNL_MAX_CPU_ISA``
=====================  ===============================  ============================================

:func:`override` changes any of them inside a ``with`` block; :func:`reset` reads the environment
again and drops every change. :func:`version` counts changes: a model block keeps the version
its execution plan was made for and makes a new plan when it moved.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Optional, Tuple

ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
TRITON_KNOBS = ("profile", "frames", "frames_bwd", "block_m", "block_m_bwd", "block_n", "block_n_fwd",
                "nsplit", "nb", "stream_block", "warps_s", "warps_fwd_t", "warps_bwd_t", "stages_bwd_t",
                "stages_fwd_t", "warps_stream", "rows_conv", "nchunk")


@dataclasses.dataclass(frozen=True)
class Settings:
    backend: str = "auto"
    triton_fp32_dot: str = "tf32x3"     # or "ieee", "tf32"
    triton_overrides: Tuple = ()        # sorted (knob, value) pairs, see override_triton
    triton_inline: bool = False
    triton_interpret: bool = False
    onednn_gemm: bool = True            # False: the MLP and linear() GEMMs go through F.linear (MKL)
    no_extension: bool = False
    no_cuda: bool = False
    cuda_arch_list: str = ""
    cache_root: str = ""
    isa_env: Tuple = ()                 # ((name, value), ...) of ISA_ENV


def from_environment() -> Settings:
    env = os.environ.get
    return Settings(
        backend=(env("STCFORMER_BACKEND") or "auto").strip().lower(),
        triton_fp32_dot=env("STCFORMER_TRITON_FP32_DOT", "tf32x3"),
        triton_inline=env("STCFORMER_TRITON_INLINE") == "1",
        triton_interpret=env("TRITON_INTERPRET") == "1",
        no_extension=env("STCFORMER_NO_EXTENSION") == "1",
        no_cuda=env("STCFORMER_NO_CUDA") == "1",
        cuda_arch_list=env("TORCH_CUDA_ARCH_LIST", ""),
        cache_root=env("STCFORMER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "stcformer"),
        isa_env=tuple((n, env(n, "")) for n in ISA_ENV))


_current = from_environment()
_version = 0


def current() -> Settings:
    return _current


def version() -> int:
    return _version


def _replace(**changes) -> None:
    global _current, _version
    _current = dataclasses.replace(_current, **changes)
    _version += 1


def reset() -> None:
    """Read the environment again; every change made through the setters is dropped."""
    global _current, _version
    _current = from_environment()
    _version += 1


@contextlib.contextmanager
def override(**changes):
    """Change settings inside a ``with`` block (nests; not thread-safe)."""
    global _current, _version
    saved = _current
    _replace(**changes)
    try:
        yield
    finally:
        _current = saved
        _version += 1


def backend() -> str:
    return _current.backend


def set_backend(name: Optional[str]) -> None:
    """The ``stc_attention`` backend asked for when a call names none (``auto`` or a backend)."""
    _replace(backend=(name or "auto").strip().lower())


def triton_fp32_dot() -> str:
    return _current.triton_fp32_dot


def set_triton_fp32_dot(precision: str) -> None:
    _replace(triton_fp32_dot=precision)


def triton_overrides() -> dict:
    return dict(_current.triton_overrides)


@contextlib.contextmanager
def override_triton(**knobs):
    """Force block shapes / launch parameters of every Triton launch inside (tuning sweeps,
    tests); the knobs are ``Config`` attributes of ``stcformer.ops.backends.triton``: profile
    ("gpu" or "interpreter"), frames, frames_bwd, block_m, block_m_bwd, block_n, block_n_fwd,
    nsplit, nb, stream_block (forces the streaming temporal backward with this block), warps_s,
    warps_fwd_t, warps_bwd_t, stages_fwd_t, stages_bwd_t, warps_stream, rows_conv, nchunk. Nests."""
    unknown = set(knobs) - set(TRITON_KNOBS)
    if unknown:
        raise ValueError(f"override_triton: unknown knobs {sorted(unknown)}; choose from {TRITON_KNOBS}")
    merged = {**triton_overrides(), **knobs}
    with override(triton_overrides=tuple(sorted(merged.items()))):
        yield


def triton_inline() -> bool:
    return _current.triton_inline


def triton_interpret() -> bool:
    return _current.triton_interpret


def onednn_gemm() -> bool:
    return _current.onednn_gemm


def set_onednn_gemm(on: bool) -> None:
    _replace(onednn_gemm=bool(on))


def no_extension() -> bool:
    return _current.no_extension


def no_cuda() -> bool:
    return _current.no_cuda


def cuda_arch_list() -> str:
    return _current.cuda_arch_list


def cache_root() -> str:
    """The package's cache folder: $STCFORMER_CACHE, else ~/.cache/stcformer (synthetic data sets,
    the extension built on first use)."""
    return _current.cache_root


def isa_env() -> dict:
    """{name: value} of the CPU ISA caps this process started with ('' where unset)."""
    return dict(_current.isa_env)


def export_env(name: str, value: str) -> None:
    """Set a variable that another library reads from the environment itself (torch's extension
    builder: TORCH_CUDA_ARCH_LIST; the first-use build: PATH), for this process and its children."""
    os.environ[name] = value


def prepend_to_path(folder: str) -> None:
    """Put ``folder`` first on PATH, for this process and its children (the venv's ninja for the
    first-use build of the extension, also where the venv is not activated)."""
    export_env("PATH", folder + os.pathsep + os.environ.get("PATH", ""))


def use_private_compile_caches(prefix: str) -> str:
    """Point this process and its children at new, empty Inductor and Triton caches (removed at
    exit), before torch compiles anything; returns the folder. Test runs and benchmarks use it:
    torch's default caches are shared by every checkout, venv and process of a user, so an
    earlier run would decide what this one loads (and torch 2.13 keys its FX graph cache without
    the CPU ISA, see stcformer.ops.host.key_compile_cache_by_isa)."""
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix=prefix)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(folder, "inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
    atexit.register(shutil.rmtree, folder, True)
    return folder
