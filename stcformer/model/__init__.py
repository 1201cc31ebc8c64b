"""The model layer: STCFormer's modules with the official parameter names, and checkpoints.

:mod:`.modules` holds the ``nn.Module`` tree (the official key mapping of the 3DHP family lives in
:mod:`.official` and is applied once, at load and at ``official_state_dict``); :mod:`.checkpoint`
reads official and own checkpoints (architecture from the weights, the training window from the
saved ``train_config``) and writes ours atomically.

May import: :mod:`stcformer.ops`, ``stcformer.errors``, ``stcformer.io``.
"""
from stcformer.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from stcformer.model.modules import STCFormer

__all__ = ["STCFormer", "load_checkpoint", "save_checkpoint", "read_checkpoint", "CheckpointError"]
