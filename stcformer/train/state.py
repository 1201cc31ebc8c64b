"""What a run carries from one process start to the next: the random number generators' state,
:class:`TrainState` (epoch, step, history, running loss) and reading it back from ``last.pth``.

Everything here is ``torch.load(weights_only=True)`` friendly: tensors, numbers, strings, lists
and dicts only.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

from stcformer.errors import UsageError
from stcformer.model.checkpoint import read_checkpoint
from stcformer.train.config import TrainConfig
from stcformer.train.distributed import ProcessGroup


def rng_state() -> dict:
    """The torch, CUDA, Python and NumPy generators' state (NumPy's key as an int64 tensor)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])]}


def set_rng_state(state: dict) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class AverageMeter:
    """A running mean kept as a float64 sum and a count (what the epoch's loss line shows)."""

    def __init__(self, total: float = 0.0, count: int = 0):
        self.total, self.count = total, count

    def update(self, total: float, count: int) -> None:
        self.total, self.count = self.total + total, self.count + count

    @property
    def avg(self) -> float:
        return self.total / max(self.count, 1)


@dataclass
class TrainState:
    """Where a run stands: what ``last.pth`` carries besides the weights and the optimizer.

    ``epoch``/``step``: the next step to run. ``loss``: the running loss of the current epoch.
    """

    epoch: int = 1
    step: int = 0
    history: List[dict] = field(default_factory=list)
    best: float = math.inf
    mean_pose_p1_mm: Optional[float] = None
    loss: AverageMeter = field(default_factory=AverageMeter)

    def to_extra(self, config: TrainConfig, optimizer, scheduler, scaler, group: ProcessGroup) -> dict:
        """The resumable state (collective: every process must call it; its RNG states are gathered)."""
        rngs = group.gather(rng_state())
        return {"args": config.to_dict(), "trained_on": config.trained_on(), "epoch": self.epoch, "step": self.step,
                "lr": optimizer.param_groups[0]["lr"], "history": self.history, "best": self.best,
                "mean_pose_p1_mm": self.mean_pose_p1_mm, "loss_sum": self.loss.total,
                "loss_count": self.loss.count, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "rng": rngs, "world": group.world}

    @classmethod
    def restore(cls, extra: dict, optimizer, scheduler, scaler, group: ProcessGroup) -> "TrainState":
        """Load ``to_extra``'s dict back into the optimizer, scheduler, scaler and RNGs."""
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        for param_group in optimizer.param_groups:
            param_group["lr"] = extra["lr"]
        scheduler._last_lr = [extra["lr"]] * len(optimizer.param_groups)
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        set_rng_state(extra["rng"][group.rank])
        return cls(epoch=extra["epoch"], step=extra["step"], history=list(extra["history"]),
                   best=extra["best"], mean_pose_p1_mm=extra["mean_pose_p1_mm"],
                   loss=AverageMeter(extra["loss_sum"], extra["loss_count"]))


def read_resume_state(run_dir: str, world: int) -> Tuple[TrainConfig, dict]:
    """(the run's config as saved, its resumable state) from ``run_dir``'s last.pth."""
    path = os.path.join(run_dir, "last.pth")
    extra = read_checkpoint(path).get("extra") or {}
    if "optimizer" not in extra:
        raise UsageError(f"{path}: holds no training state to resume from")
    if extra.get("world", 1) != world:
        raise UsageError(f"{path}: saved by {extra.get('world')} processes, resumed with {world}")
    return TrainConfig.from_dict(extra["args"], path), extra


__all__ = ["AverageMeter", "TrainState", "read_resume_state", "rng_state", "set_rng_state", "seed_everything"]
