"""An exported ONNX file run by ONNX Runtime behind the PyTorch model's interface.

:class:`OnnxModel` is a ``torch.nn.Module`` whose forward hands the (B, T, J, 2) windows to an
``onnxruntime.InferenceSession`` and returns its (B, T, J, 3) as a float32 tensor, and which
carries the ``config``/``train_config`` the file's metadata gives, so the inference pipeline
(:func:`stcformer.lift`, :class:`stcformer.StreamLifter`, ``python -m stcformer.infer --onnx``)
runs it with the same normalisation, flip averaging and windows as the PyTorch model.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

from stcformer.errors import CheckpointError, UsageError

INSTALL = "pip install 'stcformer[deploy]'"


def require(module: str = "onnxruntime"):
    """Import ``module`` (onnx, onnxruntime) of the deploy extra; UsageError naming the install
    command when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{module} is not installed (the deploy extra): {INSTALL}") from None


def session_options(threads: Optional[int] = None, optimize: bool = True):
    """ONNX Runtime session options: ``threads`` intra-op threads (None: its default, one per
    core), default graph optimisations (all of them; ``optimize=False``: none), warnings off."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return opts


def open_session(path, threads: Optional[int] = None, optimize: bool = True):
    """An InferenceSession of ``path`` on the CPU; CheckpointError naming the file when it is
    missing or not an ONNX model ONNX Runtime can run."""
    ort = require("onnxruntime")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        return ort.InferenceSession(path, session_options(threads, optimize), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not an ONNX model ONNX Runtime can run ({first})") from None


class OnnxModel(torch.nn.Module):
    """An exported STCFormer (``python -m stcformer.deploy onnx``) run by ONNX Runtime on the CPU.

    ``model(x)``: (B, T, J, 2) normalised 2D -> (B, T, J, 3) float32 on x's device, the exported
    forward. ``config`` and ``train_config`` (window ``frames`` and ``tds``) come from the file's
    metadata; ``frames`` is the fixed window of the file, None when it was exported with dynamic
    frames. ``threads``: ONNX Runtime intra-op threads (default one per core).
    """

    def __init__(self, path, threads: Optional[int] = None, optimize: bool = True):
        super().__init__()
        self.path = os.fspath(path)
        self.session = open_session(self.path, threads, optimize)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "stcformer.frames" not in meta:
            raise CheckpointError(f"{self.path}: not an STCFormer export (no stcformer.* metadata)")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        self.frames = inp.shape[1] if isinstance(inp.shape[1], int) else None
        self.config = {k: meta[f"stcformer.{k}"] for k in ("family", "layers", "d_hid", "num_heads", "num_joints")}
        for k in ("layers", "d_hid", "num_heads", "num_joints"):
            self.config[k] = int(self.config[k])
        self.train_config = {"frames": int(meta["stcformer.frames"]), "tds": int(meta["stcformer.tds"])}
        # predict_centres and StreamLifter read the device from the first parameter
        self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

    def check_window(self, frames: int) -> None:
        """UsageError when the file was exported for another window length."""
        if self.frames is not None and frames != self.frames:
            raise UsageError(f"{self.path}: exported for windows of {self.frames} frames, not {frames} (export "
                             f"again with --frames {frames}, or with --dynamic-frames)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] != 2:
            raise ValueError(f"STCFormer expects (B, T, J, 2) keypoints, got {tuple(x.shape)}")
        self.check_window(x.shape[1])
        feed = x.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        y = self.session.run(None, {self.input_name: np.ascontiguousarray(feed)})[0]
        return torch.from_numpy(y.astype(np.float32, copy=False)).to(x.device)

    def extra_repr(self) -> str:
        return f"{self.path}, frames={self.frames or 'dynamic'}"


__all__ = ["OnnxModel", "open_session", "require", "session_options", "INSTALL"]
