"""One optimizer step and what it is built from: the model of a :class:`TrainConfig`, the
official optimizer, ``torch.compile`` as the loop uses it, TF32, the windows per step, and
:func:`make_train_step` (what the loop runs and the benchmarks time).
"""
from __future__ import annotations

from typing import Optional

import torch

from stcformer.errors import CheckpointError, UsageError
from stcformer.evaluation.benchmarks import Benchmark, get_benchmark
from stcformer.evaluation.metrics import mpjpe
from stcformer.model.checkpoint import load_checkpoint
from stcformer.model.modules import STCFormer
from stcformer.ops.precision import amp_dtype
from stcformer.train.config import TrainConfig

# torch.compile backend of --compile (tests use "aot_eager" to check the wiring without codegen)
COMPILE_BACKEND = "inductor"


def step_batch_size(benchmark: Benchmark, batch_size: int, stride: int, world: int) -> int:
    """Windows per optimizer step and process (the benchmark's batch rule, split over processes)."""
    total = benchmark.windows_per_step(batch_size, stride)
    if total < 1:
        raise UsageError(f"-b {batch_size} // -s {stride} leaves no window per step")
    return max(1, total // world)


def load_init_weights(model: STCFormer, path: str) -> None:
    """Copy the weights of checkpoint ``path`` (official or ours) into ``model``; they must fit it."""
    src = load_checkpoint(path)
    for key in ("layers", "d_hid", "num_heads"):
        if src.config[key] != model.config[key]:
            raise CheckpointError(f"{path}: checkpoint has {key}={src.config[key]}, "
                                  f"this run {key}={model.config[key]}")
    if {k: v.shape for k, v in src.state_dict().items()} != {k: v.shape for k, v in model.state_dict().items()}:
        raise CheckpointError(f"{path}: parameters do not match this model")
    model.load_state_dict(src.state_dict())


def build_model(config: TrainConfig, device) -> STCFormer:
    """The STCFormer of ``config`` (dataset, layers, d_hid, backend, init, recompute) on ``device``."""
    family = get_benchmark(config.dataset).family
    model = STCFormer(layers=config.layers, d_hid=config.d_hid, family=family, backend=config.backend)
    if config.init:
        load_init_weights(model, config.init)
    model.set_recompute(config.recompute)
    return model.to(device)


def make_optimizer(params, lr: float, device) -> torch.optim.Adam:
    """The official optimizer: Adam with amsgrad (betas, eps and no weight decay as torch's defaults).

    On CUDA it runs as one fused kernel (``fused=True``); on other devices torch's default
    implementation, as before.
    """
    fused = dict(fused=True) if torch.device(device).type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr, amsgrad=True, **fused)


def compile_model(module: torch.nn.Module, backend: Optional[str] = None,
                  fullgraph: bool = False, cuda_graphs: bool = False) -> torch.nn.Module:
    """``torch.compile`` as the training loop uses it: static shapes (a full batch and the shorter
    last batch of an epoch each get their own graph), ``backend`` default ``COMPILE_BACKEND``
    (inductor). stc_attention is a registered custom op, so an STCFormer compiles with
    ``fullgraph=True``; the loop leaves it False, since DDP splits the graph at its buckets.

    ``cuda_graphs``: Inductor's ``mode="reduce-overhead"``: the compiled forward and backward
    are replayed as CUDA graphs, which removes the per-kernel launch cost that bounds short
    windows (T=27). Outputs of a replay are overwritten by the next one: the training step
    only keeps the loss, computed outside the compiled model."""
    mode = "reduce-overhead" if cuda_graphs else None
    return torch.compile(module, backend=backend or COMPILE_BACKEND, dynamic=False, fullgraph=fullgraph,
                         mode=mode)


def make_train_step(model, optimizer, *, amp: str = "none", device=None, scaler=None):
    """One training step as ``python -m stcformer.train`` runs it, for the loop and for benchmarks.

    Signature::

        make_train_step(model, optimizer, *, amp="none", device=None, scaler=None)
            -> step(inputs2d, targets3d) -> loss

    Args:
        model: the module to train (an ``STCFormer``, or it wrapped in DDP and/or ``torch.compile``),
            in training mode.
        optimizer: e.g. :func:`make_optimizer` (Adam with amsgrad; fused on CUDA).
        amp: ``"bf16"`` or ``"fp16"`` (forward under ``torch.autocast`` of that dtype, the loss in
            float32) or ``"none"`` (float32).
        device: where the model runs (default: its first parameter's device); picks the autocast type.
        scaler: for ``"fp16"``, a ``torch.amp.GradScaler`` (created if None; ``step.scaler`` holds it).

    ``step(inputs2d, targets3d)`` takes (B, T, J, 2) keypoints and (B, T, J, 3) targets on the
    device, runs the forward, the official seq2seq MPJPE loss (mean joint distance over every
    window, frame and joint), the backward and the optimizer step, and returns the loss as a
    detached 0-dim float32 tensor on the device. It never synchronises with the host: check the
    loss when you want to (the training loop does every ``--check-every`` steps).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = amp_dtype(amp)
    if amp == "fp16":
        scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type)
    elif scaler is not None:
        raise ValueError("a GradScaler is only used with amp='fp16'")

    def step(inputs2d: torch.Tensor, targets3d: torch.Tensor) -> torch.Tensor:
        if dtype is None:
            loss = mpjpe(model(inputs2d), targets3d)
        else:
            with torch.autocast(device.type, dtype=dtype):
                pred = model(inputs2d)
            loss = mpjpe(pred.float(), targets3d)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss.detach()

    step.scaler = scaler
    return step


def set_tf32(device: torch.device, enabled: bool) -> None:
    """On CUDA, allow (or forbid) TF32 for float32 matmuls and convolutions; nothing on other devices."""
    if device.type != "cuda":
        return
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled


__all__ = ["COMPILE_BACKEND", "build_model", "compile_model", "load_init_weights", "make_optimizer",
           "make_train_step", "set_tf32", "step_batch_size"]
