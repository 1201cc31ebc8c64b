"""The model's forward as an ONNX file of standard operators (default domain, opset 18).

The attention runs the plain-PyTorch reference (``stcformer.ops.reference``), which the
exporter (``torch.onnx.export(..., dynamo=True)``, through torch.export) turns into Einsum,
Softmax, Conv (depthwise) and the like: no custom domain, so any ONNX runtime (ONNX Runtime,
TensorRT, OpenVINO, a game engine's) can load it. Batch is dynamic; the window length is fixed
(the ``frames`` given) unless ``dynamic_frames``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import numpy as np
import torch

from stcformer.deploy.prepare import (INPUT_NAME, MAX_DIM, OUTPUT_NAME, deploy_copy, example_input, metadata,
                                      model_window)
from stcformer.deploy.runtime import open_session, require
from stcformer.io import atomic_write

OPSET = 18
ONNX_DTYPES = ("float32", "float16")  # bfloat16: ONNX Runtime's CPU provider has no bf16 MatMul


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, warnings and logs (torchvision ops it skips) kept off the console."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamic_shapes(dynamic_frames: bool) -> tuple:
    shapes = {0: torch.export.Dim("batch", min=1, max=MAX_DIM)}
    if dynamic_frames:
        shapes[1] = torch.export.Dim("frames", min=1, max=MAX_DIM)
    return (shapes,)


def export_onnx(model, path, frames=None, dynamic_frames: bool = False, dtype: str = "float32",
                source: str = "", opset: int = OPSET) -> dict:
    """Write ``model``'s forward to ``path`` (written whole or not at all) and check it with
    ``onnx.checker`` (full check, shape inference included). Returns the file's metadata."""
    onnx = require("onnx")
    frames, tds = model_window(model, frames)
    net = deploy_copy(model, "reference", dtype)
    x = example_input(model, frames, 2, dtype)
    with _quiet():
        program = torch.onnx.export(net, (x,), None, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=_dynamic_shapes(dynamic_frames),
                                    verbose=False)
    proto = program.model_proto
    meta = metadata(model, frames, tds, dynamic_frames, dtype, source)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "STCFormer 2D-to-3D pose lifting, exported by python -m stcformer.deploy onnx"
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(path, lambda tmp: onnx.save_model(proto, tmp), ".onnx")
    return meta


def compare_onnx(model, path, batches=(1, 3), frames=None, threads=None) -> dict:
    """Run the file at ``path`` in ONNX Runtime and ``model`` in PyTorch (float32, its own backend)
    on the same random windows of each batch size; the largest absolute difference and that over
    the largest output magnitude (relative), over all of them."""
    session = open_session(path, threads)
    inp = session.get_inputs()[0]
    frames = frames or (inp.shape[1] if isinstance(inp.shape[1], int) else model_window(model)[0])
    fp16 = "float16" in inp.type
    worst_abs, worst_rel = 0.0, 0.0
    for i, b in enumerate(batches):
        x = example_input(model, frames, b, seed=i + 1)
        feed = x.numpy().astype(np.float16 if fp16 else np.float32)
        y = session.run(None, {inp.name: feed})[0].astype(np.float32)
        with torch.no_grad():
            ref = model.eval()(torch.from_numpy(feed.astype(np.float32))).float().numpy()
        diff = float(np.abs(y - ref).max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(float(np.abs(ref).max()), 1e-12))
    return {"max_abs": worst_abs, "max_rel": worst_rel, "batches": tuple(batches), "frames": frames}


def onnx_summary(path) -> dict:
    """Opset, operator domains and operator types of an ONNX file."""
    onnx = require("onnx")
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {"opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "domains": sorted({n.domain or "ai.onnx" for n in proto.graph.node}),
            "ops": sorted({n.op_type for n in proto.graph.node}),
            "inputs": [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
                       for i in proto.graph.input]}


__all__ = ["export_onnx", "compare_onnx", "onnx_summary", "OPSET", "ONNX_DTYPES"]
