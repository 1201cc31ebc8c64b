"""The 2D detectors by name: :data:`DETECTORS`, and :func:`get_detector`, which builds one or raises
a one-line :class:`~stcformer.errors.UsageError` naming what to install when it cannot run here.

``blazepose`` (:class:`stcformer.infer.detect.BlazePose`): one person, the most prominent.
``multipose`` (:class:`stcformer.infer.people.MultiPose`): every person of every frame, imported
when used (OpenCV and its HOG model load then, not when a program builds its flags).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from stcformer.errors import UsageError
from stcformer.infer.detect import BlazePose, Detector


class _MultiPoseEntry:
    """The ``multipose`` entry of :data:`DETECTORS`: :class:`stcformer.infer.people.MultiPose`,
    every person of every frame (imported when used)."""

    @staticmethod
    def unavailable_reason() -> Optional[str]:
        from stcformer.infer.people import MultiPose

        return MultiPose.unavailable_reason()

    def __new__(cls, **kwargs):
        from stcformer.infer.people import MultiPose

        return MultiPose(**kwargs)


DETECTORS: Dict[str, Callable[..., Detector]] = {"blazepose": BlazePose, "multipose": _MultiPoseEntry}


def check_detector(name: str = "blazepose") -> None:
    """UsageError (one line: what to install) unless detector ``name`` can run here."""
    if name not in DETECTORS:
        raise UsageError(f"unknown detector '{name}' (one of {', '.join(DETECTORS)})")
    reason = DETECTORS[name].unavailable_reason()
    if reason:
        raise UsageError(reason)


def get_detector(name: str = "blazepose", **kwargs) -> Detector:
    """A ready :class:`Detector` by name (:data:`DETECTORS`)."""
    check_detector(name)
    return DETECTORS[name](**kwargs)


__all__ = ["DETECTORS", "get_detector", "check_detector"]
