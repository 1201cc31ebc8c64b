"""The processes of a run: torchrun's world (:func:`world_info`) and :class:`ProcessGroup`, the
few collectives the training loop needs, which are no-ops in a single process."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from stcformer.devices import pick_device


def world_info():
    """(world size, rank, local rank, processes on this machine) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


class ProcessGroup:
    """Rank, world size, this process's device and the collectives of the loop.

    With several processes it initialises torch.distributed (NCCL on CUDA, gloo otherwise) unless
    that is done already; :meth:`close` ends it.
    """

    def __init__(self, device=None):
        self.world, self.rank, self.local_rank, self.local_world = world_info()
        # the device was checked by the caller (stcformer.devices.pick_device), before any process group or write
        self.device = torch.device(device) if device is not None else pick_device(
            None, self.world, self.local_rank, self.local_world)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
                dist.init_process_group("nccl", timeout=datetime.timedelta(hours=2), device_id=self.device)
            else:
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=2))

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that prints, tests and writes."""
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def sum_rows(self, rows):
        """Element-wise sum over the processes of a list of equal-length rows of floats (float64)."""
        if self.world == 1:
            return [list(r) for r in rows]
        t = torch.tensor(rows, dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj):
        """``obj`` of every process, in rank order."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["ProcessGroup", "world_info"]
