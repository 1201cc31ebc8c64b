"""An eval-mode copy of a model ready to be exported, and what an exported file says about it."""
from __future__ import annotations

import copy
from typing import Optional

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INPUT_NAME, OUTPUT_NAME = "keypoints_2d", "poses_3d"
MAX_DIM = 1 << 16  # upper bound of the dynamic dimensions (torch.export needs one)


def deploy_copy(model: torch.nn.Module, backend: str, dtype: str = "float32") -> torch.nn.Module:
    """A copy of ``model`` in eval mode whose attention runs ``backend`` and whose LayerNorm, Linear
    and MLP are the plain modules (the chunked CPU paths loop over rows in Python: an exported
    graph would be unrolled for one batch size). The weights are the same values (cast to ``dtype``)."""
    model = getattr(model, "_orig_mod", model)
    out = copy.deepcopy(model).eval()
    out.configure(backend=backend, fused=False, onednn_mlp=False)
    return out.to(DTYPES[dtype])


def model_window(model, frames: Optional[int] = None) -> tuple:
    """(frames, tds) of ``model``'s training window (``train_config``; official files: 27, 3),
    ``frames`` overriding it."""
    config = getattr(model, "train_config", None) or {}
    return int(frames or config.get("frames") or 27), int(config.get("tds") or 3)


def metadata(model, frames: int, tds: int, dynamic_frames: bool, dtype: str, source: str) -> dict:
    """The key/value strings an exported file carries: the window, architecture and source."""
    cfg = model.config
    return {"stcformer.frames": str(frames), "stcformer.tds": str(tds),
            "stcformer.dynamic_frames": str(int(dynamic_frames)), "stcformer.dtype": dtype,
            "stcformer.family": cfg["family"], "stcformer.layers": str(cfg["layers"]),
            "stcformer.d_hid": str(cfg["d_hid"]), "stcformer.num_heads": str(cfg["num_heads"]),
            "stcformer.num_joints": str(cfg["num_joints"]), "stcformer.source": source,
            "stcformer.input": f"{INPUT_NAME}: (batch, frames, joints, 2) screen-normalised 2D",
            "stcformer.output": f"{OUTPUT_NAME}: (batch, frames, joints, 3) root-relative 3D, metres"}


def example_input(model, frames: int, batch: int = 2, dtype: str = "float32", seed: int = 0) -> torch.Tensor:
    """Random normalised 2D (batch, frames, J, 2) for tracing and checking."""
    g = torch.Generator().manual_seed(seed)
    J = model.config["num_joints"]
    return (torch.rand(batch, frames, J, 2, generator=g) * 2 - 1).to(DTYPES[dtype])
