"""The device a process runs on (``--device``, and one GPU per process under torchrun)."""
from __future__ import annotations

from typing import Optional

import torch

from stcformer.errors import UsageError


def pick_device(device_arg: Optional[str], world: int = 1, local_rank: int = 0,
                local_world: int = 1) -> torch.device:
    """The device of this process: ``--device`` if given, else cuda when available, else cpu.

    With CUDA and several processes (torchrun), process ``LOCAL_RANK`` of a machine uses
    ``cuda:LOCAL_RANK``. Raises :class:`UsageError` (one line) when CUDA is asked for and absent,
    when an index names no visible GPU, and when a machine runs more processes than it has GPUs.
    """
    name = device_arg or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__} sees no GPU); "
                         "use --device cpu")
    visible = torch.cuda.device_count()
    index = device.index
    if world > 1:
        if index is not None and local_world > 1:
            raise UsageError(f"--device {name} puts all {local_world} processes of this machine on one GPU; "
                             "use --device cuda (process i uses cuda:LOCAL_RANK)")
        if index is None:
            if local_world > visible or local_rank >= visible:
                raise UsageError(f"{max(local_world, local_rank + 1)} processes were started on this machine "
                                 f"but only {visible} GPU(s) are visible: start at most {visible} per machine "
                                 "(torchrun --nproc-per-node), or train with --device cpu")
            index = local_rank
    elif index is None:
        index = torch.cuda.current_device()
    if index >= visible:
        raise UsageError(f"--device {name}: only {visible} GPU(s) are visible (cuda:0 to cuda:{visible - 1})")
    return torch.device("cuda", index)
