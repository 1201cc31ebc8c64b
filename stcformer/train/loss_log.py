"""The loss check of the training loop: per-step losses stay on the device and are checked for
NaN/inf in one host transfer every few steps (:class:`LossLog`); a bad one stops the run with
:class:`TrainingStopped`, naming the first bad step exactly."""
from __future__ import annotations

import math
import os

import torch

from stcformer.train.distributed import ProcessGroup

# the loss is checked for NaN/inf every this many steps on CUDA (one host sync each); 1 on CPU
CHECK_EVERY_CUDA = 50


class TrainingStopped(Exception):
    """Training cannot go on (non-finite loss); the message is one line."""


def _nonfinite(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite" if math.isinf(value) else "NaN on another process"


class LossLog:
    """Per-step losses kept on the device between checks; a check syncs once for all of them.

    ``add(loss, n, step)`` records a step's 0-dim loss tensor and its window count. ``check()``
    copies the pending losses to the host in one transfer, sums ``loss * n`` and ``n`` over the
    processes step by step (the same float64 arithmetic as a per-step check) and returns the
    per-step totals in order, or raises :class:`TrainingStopped` naming the first step whose
    loss is NaN or infinite on any process.
    """

    def __init__(self, group: ProcessGroup):
        self.group = group
        self.losses, self.sizes, self.steps = [], [], []

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        self.losses.append(loss)
        self.sizes.append(n)
        self.steps.append(step)

    def check(self, epoch: int, lr: float, last: str):
        """[(loss * windows, windows)] of each pending step, summed over the processes; ``last``
        is the checkpoint an error names as the last good state (if it exists)."""
        if not self.losses:
            return []
        values = torch.stack(self.losses).float().cpu().tolist()  # the one host sync
        rows = self.group.sum_rows([[v * n, float(n), 0.0 if math.isfinite(v) else 1.0]
                                    for v, n in zip(values, self.sizes)])
        steps = self.steps
        self.losses, self.sizes, self.steps = [], [], []
        for value, step, (total, count, bad) in zip(values, steps, rows):
            if bad:
                raise TrainingStopped(
                    f"loss is {_nonfinite(value)} at epoch {epoch}, step {step + 1} (lr {lr:.3g}); stopped"
                    + (f", the last good state is {last}" if os.path.exists(last) else ""))
        return [(total, int(count)) for total, count, _ in rows]


__all__ = ["CHECK_EVERY_CUDA", "LossLog", "TrainingStopped"]
