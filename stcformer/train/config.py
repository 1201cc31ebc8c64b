"""``TrainConfig``: every setting of a training run, as ``python -m stcformer.train``'s flags
resolve to once the quick configuration or the dataset's recipe has filled the unset ones.

A checkpoint of :mod:`stcformer.train` keeps it as a plain dict (``dataclasses.asdict``, key
``"args"`` of the checkpoint's ``extra``), which is what ``load_checkpoint(...).train_config``
gives back; ``metrics.json`` holds the same dict as ``"config"``. The field names are the
program's flag names, so the dict reads like the command line that made the run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from stcformer.errors import CheckpointError


@dataclass
class TrainConfig:
    """The settings of one training run. The defaults are the official Human3.6M recipe, float32
    and eager (the program's CPU defaults); the fields keep the order of the program's flags,
    which is the order of the saved dict.

    Data and windows: ``dataset`` (a :data:`~stcformer.eval.benchmarks.BENCHMARKS` name),
    ``data_dir`` (None: the synthetic stand-in), ``keypoints`` (the 2D file's suffix), ``frames``
    (window length T, odd), ``batch_size`` (the global batch, before the benchmark's step rule),
    ``stride`` (one window per ``stride`` frames), ``tds`` (temporal downsampling in a window).

    Model: ``layers`` (STC blocks) and ``d_hid`` (width C).

    Optimisation: ``lr``, ``lr_decay`` (factor after each epoch), ``epochs``, ``no_flip_augment``
    (no mirrored windows), ``seed``.

    Run folder: ``out`` (absolute once the run has started), ``resume`` (the ``last.pth`` a
    resumed run started from), ``init`` (starting weights), ``save_every`` (steps between
    saves inside an epoch; 0: at epoch ends only).

    The step: ``amp`` (``"bf16"``, ``"fp16"`` or ``"none"``), ``tf32`` (CUDA only), ``compile``
    (torch.compile), ``cuda_graphs`` (its reduce-overhead mode), ``recompute`` (None,
    ``"blocks"`` or ``"mlp"``), ``check_every`` (steps between NaN/inf checks).

    Test and placement: ``eval_amp`` (precision of the test after each epoch), ``backend``
    (stc_attention's), ``device``, ``eval_batch_size``, ``threads`` (torch CPU threads; None:
    torch's), ``json`` (a second copy of the final metrics).
    """

    # data and windows
    dataset: str = "h36m"
    data_dir: Optional[str] = None
    keypoints: Optional[str] = None
    frames: int = 27
    batch_size: int = 128
    stride: int = 3
    tds: int = 3
    # model
    layers: int = 6
    d_hid: int = 256
    # optimisation
    lr: float = 1e-3
    lr_decay: float = 0.96
    epochs: int = 80
    no_flip_augment: bool = False
    seed: int = 42
    # run folder
    out: Optional[str] = None
    resume: Optional[str] = None
    init: Optional[str] = None
    save_every: int = 0
    # the step
    amp: str = "none"
    tf32: bool = True
    compile: bool = False
    cuda_graphs: bool = False
    recompute: Union[None, bool, str] = None
    check_every: int = 1
    # test and placement
    eval_amp: str = "none"
    backend: Optional[str] = None
    device: Optional[str] = None
    eval_batch_size: int = 256
    threads: Optional[int] = None
    json: Optional[str] = None

    def to_dict(self) -> dict:
        """The plain dict a checkpoint and ``metrics.json`` keep (``dataclasses.asdict``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict, source: str = "<dict>") -> "TrainConfig":
        """The config of a saved dict, as saved; ``source`` names the file in the error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise CheckpointError(f"{source}: unknown training settings {', '.join(unknown)}")
        return cls(**saved)


__all__ = ["TrainConfig"]
