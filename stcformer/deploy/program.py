"""A torch.export program (``.pt2``) of the model with the fused op, and its AOTInductor package.

The program calls the op the target device's ``auto`` backend would run (on a CPU with
stcformer._C: ``stcformer::stc_attention_fwd``, a torch.library op with a fake kernel, so
torch.export traces it without running it). Loading needs that op registered: ``import
stcformer.deploy`` then :func:`load_program` (or ``import stcformer.ops.backends.extension``
before ``torch.export.load``); no environment variable or training flag is involved. Batch is
dynamic; the window length is fixed unless ``dynamic_frames``.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import torch

from stcformer.deploy.prepare import MAX_DIM, deploy_copy, example_input, metadata, model_window
from stcformer.io import atomic_write
from stcformer.ops import dispatch

META_FILE = "stcformer.json"


def target_backend(device: str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """The stc_attention backend ``auto`` picks on ``device`` (cpu: cpp where stcformer._C loads)."""
    return dispatch.choose("auto", torch.device(device).type, dtype)


def _register_ops(backend: str) -> None:
    """Make the op a program calls known to this process (schemas, kernels, fake kernels)."""
    if backend in ("cpp", "cuda"):
        import stcformer.ops.backends.extension  # noqa: F401
    elif backend == "triton":
        import stcformer.ops.backends.triton  # noqa: F401


def export_program(model, frames: Optional[int] = None, dynamic_frames: bool = False, device: str = "cpu",
                   dtype: str = "float32", backend: Optional[str] = None):
    """(torch.export ExportedProgram of ``model``'s forward with the fused op, its metadata)."""
    frames, tds = model_window(model, frames)
    backend = backend or target_backend(device)
    net = deploy_copy(model, backend, dtype).to(device)
    x = example_input(model, frames, 2, dtype).to(device)
    shapes = {0: torch.export.Dim("batch", min=1, max=MAX_DIM)}
    if dynamic_frames:
        shapes[1] = torch.export.Dim("frames", min=1, max=MAX_DIM)
    program = torch.export.export(net, (x,), dynamic_shapes=(shapes,), strict=False)
    meta = metadata(model, frames, tds, dynamic_frames, dtype, "")
    meta.update({"stcformer.backend": backend, "stcformer.device": str(device)})
    return program, meta


def save_program(program, meta: dict, path) -> None:
    """Write ``program`` to ``path`` (whole or not at all), ``meta`` beside it as stcformer.json."""
    extra = {META_FILE: json.dumps(meta)}
    atomic_write(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra), ".pt2")


def load_program(path, backend: str = "cpp"):
    """(the callable module of the program at ``path``, its metadata); registers the op first."""
    _register_ops(backend)
    extra = {META_FILE: ""}
    program = torch.export.load(os.fspath(path), extra_files=extra)
    meta = json.loads(extra[META_FILE] or "{}")
    return program.module(), meta


def aoti_package(program, path) -> str:
    """Compile ``program`` ahead of time with AOTInductor into the package ``path`` (.pt2), which
    ``torch._inductor.aoti_load_package`` (Python) or ``torch::inductor::AOTIModelPackageLoader``
    (C++) runs; a custom op runs through the proxy executor, so the process must have loaded the
    library that registers it (stcformer._C). Returns the package's path."""
    import torch._inductor

    path = os.fspath(path)
    return torch._inductor.aoti_compile_and_package(program, package_path=path)


__all__ = ["export_program", "save_program", "load_program", "aoti_package", "target_backend"]
