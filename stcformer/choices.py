"""The named choices the library and its programs share: ``--amp``, ``--mode``, ``--joints``,
``--format`` and what the backward recomputes.

One home for each vocabulary, free of torch and numpy, so a program can build its flags (and refuse
a bad one) before the heavy imports, and no list is written twice.
"""
from __future__ import annotations

import enum
from typing import Union

from stcformer.errors import UsageError

AMP_CHOICES = ("bf16", "fp16", "none")                 # autocast dtype of a run; none: float32
MODES = ("center", "seq2seq")                          # prediction per window: its centre frame, or all
JOINT_SETS = ("h36m", "coco", "halpe26", "blazepose")  # 2D keypoint layouts the lifter reads
KEYPOINT_FORMATS = ("array", "demo", "videopose3d", "json")  # 2D keypoint file layouts


class Recompute(str, enum.Enum):
    """What the backward recomputes instead of keeping (activation memory against compute).

    ``NONE``: keep everything. ``BLOCKS``: checkpoint every block (least memory, about one forward
    more). ``MLP``: the fused MLPs keep only their input and recompute fc1 (one GEMM more).
    """

    NONE = "none"
    BLOCKS = "blocks"
    MLP = "mlp"

    @classmethod
    def of(cls, what: Union["Recompute", bool, str, None]) -> "Recompute":
        """The member for ``what``: a member, its name, True (``BLOCKS``), False or None (``NONE``)."""
        if isinstance(what, cls):
            return what
        if what is None or isinstance(what, bool):
            return cls.BLOCKS if what else cls.NONE
        try:
            return cls(what)
        except ValueError:
            raise UsageError(f"recompute={what!r}: choose one of {', '.join(m.value for m in cls)} "
                             "(or True/False)") from None

    def __str__(self) -> str:
        return self.value


__all__ = ["AMP_CHOICES", "MODES", "JOINT_SETS", "KEYPOINT_FORMATS", "Recompute"]
