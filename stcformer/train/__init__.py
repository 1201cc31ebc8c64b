"""The training layer (``python -m stcformer.train`` is the program on top, in
:mod:`stcformer.cli.train`).

- :mod:`.config`: :class:`TrainConfig`, every setting of a run (what a checkpoint keeps as a dict).
- :mod:`.distributed`: torchrun's world and :class:`ProcessGroup`, the loop's collectives.
- :mod:`.state`: the RNG state, :class:`TrainState` and reading it back to resume.
- :mod:`.step`: the model, optimizer, torch.compile, TF32 and :func:`make_train_step`.
- :mod:`.loss_log`: the deferred NaN/inf check of the losses.
- :mod:`.loop`: :class:`Trainer`, setup, one epoch, the test, saving and the run.

May import: :mod:`stcformer.model`, :mod:`stcformer.data`, :mod:`stcformer.evaluation`,
:mod:`stcformer.ops`, :mod:`stcformer.export`, ``stcformer.devices``/``errors``/``io``; never a program.
"""
from stcformer.train.config import TrainConfig
from stcformer.train.distributed import ProcessGroup, world_info
from stcformer.train.loop import Trainer
from stcformer.train.loss_log import CHECK_EVERY_CUDA, TrainingStopped
from stcformer.train.state import TrainState, read_resume_state
from stcformer.train.step import build_model, compile_model, make_optimizer, make_train_step, set_tf32

__all__ = ["CHECK_EVERY_CUDA", "ProcessGroup", "TrainConfig", "Trainer", "TrainState", "TrainingStopped",
           "build_model", "compile_model", "make_optimizer", "make_train_step", "read_resume_state",
           "set_tf32", "world_info"]
