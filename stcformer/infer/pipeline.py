"""From pixel keypoints to 3D for one person: the pipeline ``stcformer.lift`` and
``python -m stcformer.infer`` run.

The steps are: read the keypoints (:mod:`stcformer.infer.readers`), check the image size and
frame rate (:func:`lifting_size`), load the checkpoint once (:func:`lifting_model`), take its
training window (:func:`trained_window`) at the input's frame rate (:func:`window_stride`,
:func:`lifting_window`), fill gaps (:mod:`stcformer.infer.gaps`), then
:func:`lift_xy`: normalise and predict with :func:`stcformer.evaluation.predict.predict_sequence`;
:func:`fitted_root` places the root-relative result in the camera's space.
:class:`stcformer.infer.stream.StreamLifter` lifts the same way one frame at a time.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from stcformer.choices import MODES
from stcformer.evaluation.predict import SEQ2SEQ_OVERLAP, predict_sequence
from stcformer.model.checkpoint import trained_window  # the window rule's one home


def lifting_size(fps: Optional[float], size, tds: Optional[int] = None, source: str = "<array>") -> tuple:
    """The checked image size ``(w, h)`` for lifting pixel keypoints: UsageError (naming
    ``source``) for a missing or non-positive size, or a missing frame rate without ``tds``."""
    from stcformer.errors import UsageError

    if size is None:
        raise UsageError(f"{source}: no image size; pass size=(width, height)")
    if tds is None and fps is None:
        raise UsageError(f"{source}: no frame rate; pass fps= (or tds=)")
    w, h = size
    if w <= 0 or h <= 0:
        raise UsageError(f"image size must be positive, got {w}x{h}")
    return w, h


def window_stride(fps: float, train_tds: int = 3, train_fps: float = 50.0) -> int:
    """Frame step inside a window at ``fps``: max(1, round(train_tds * fps / train_fps)), so a
    window spans the same time as the training windows (tds 3 at 50 fps)."""
    return max(1, int(round(train_tds * fps / train_fps)))


def lifting_window(model, fps: Optional[float], frames: Optional[int] = None, tds: Optional[int] = None) -> tuple:
    """``(frames, tds)`` for lifting keypoints at ``fps`` with ``model``: ``frames``/``tds`` default
    to its training window (:func:`trained_window`), tds scaled by fps/50."""
    train_frames, train_tds = trained_window(model)
    return int(frames or train_frames), int(tds or window_stride(fps, train_tds))


RUNTIMES = ("torch", "onnxruntime")


def lifting_model(checkpoint, device=None, backend: Optional[str] = None, runtime: str = "torch") -> torch.nn.Module:
    """``checkpoint`` (a path, read once; or a loaded model) as a model, moved to ``device`` if
    given; ``backend`` is the stc_attention backend of a model loaded here.

    ``runtime="onnxruntime"``: ``checkpoint`` is an ONNX file written by ``python -m
    stcformer.deploy onnx`` (or an :class:`~stcformer.deploy.runtime.OnnxModel`), run by ONNX
    Runtime on the CPU behind the same interface (needs the deploy extra)."""
    from stcformer.errors import UsageError

    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime":
        from stcformer.deploy.runtime import OnnxModel

        if isinstance(checkpoint, torch.nn.Module) and not isinstance(checkpoint, OnnxModel):
            raise UsageError("runtime='onnxruntime' runs an exported .onnx file (python -m stcformer.deploy onnx), "
                             "not a PyTorch model")
        model = checkpoint if isinstance(checkpoint, OnnxModel) else OnnxModel(checkpoint)
    elif isinstance(checkpoint, torch.nn.Module):
        model = checkpoint
    else:
        from stcformer.model.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint, **({"backend": backend} if backend else {}))
    return model if device is None else model.to(device)


def check_window(model, frames: int) -> None:
    """UsageError when ``model`` cannot take windows of ``frames`` (an ONNX file exported with a
    fixed window of another length); PyTorch models take any."""
    check = getattr(model, "check_window", None)
    if check is not None:
        check(2 * ((frames - 1) // 2) + 1)


def normalised_frames(xy: np.ndarray, size) -> np.ndarray:
    """Pixel keypoints (..., J, 2) -> the model's screen-normalised float32 input."""
    from stcformer.data.cameras import normalize_screen_coordinates

    return normalize_screen_coordinates(xy, w=size[0], h=size[1]).astype(np.float32)


def warn_if_synthetic(model) -> None:
    """One line on stderr when ``model`` was trained on synthetic motion (see synthetic_note)."""
    import sys

    from stcformer.model.checkpoint import synthetic_note

    note = synthetic_note(model)
    if note:
        print(note, file=sys.stderr)


def lift(keypoints, checkpoint, fps: Optional[float] = None, size=None, mode: str = "center",
         frames: Optional[int] = None, tds: Optional[int] = None, joints: Optional[str] = None,
         min_score: float = 0.3, batch_size: int = 256, device=None, amp: Optional[str] = None,
         progress: bool = False, overlap: float = SEQ2SEQ_OVERLAP, runtime: str = "torch") -> np.ndarray:
    """Lift one person's pixel keypoints to root-relative 3D: (T, 17, 3) numpy, metres, camera axes.

    ``keypoints``: an array (T, J, 2) or (T, J, 3) with scores (Human3.6M order for 17 joints
    unless ``joints`` says ``coco``; 26 joints are Halpe-26), a file path, or what
    :func:`stcformer.read_keypoints` returned. ``checkpoint``: a path or a loaded model.
    ``fps`` and ``size=(width, height)`` are needed unless the file gives them (``tds`` replaces
    ``fps``). Joints under ``min_score`` and missing frames are filled from their neighbours in
    time; ``mode`` is ``center`` or ``seq2seq`` (``overlap``: the share of a seq2seq block that
    the next one shares, see :func:`predict_sequence`). ``frames``/``tds`` default to the
    checkpoint's training window, tds scaled by fps/50. ``runtime="onnxruntime"``: ``checkpoint``
    is an ONNX file of ``python -m stcformer.deploy onnx``, run by ONNX Runtime (same windows,
    normalisation and flip averaging; its training window from the file).
    """
    from stcformer.errors import UsageError
    from stcformer.infer.gaps import fill_gaps
    from stcformer.infer.readers import as_keypoints

    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    kp = as_keypoints(keypoints, joints=joints, fps=fps, size=size)
    size = lifting_size(kp.fps, kp.size, tds, kp.path)
    model = lifting_model(checkpoint, device, runtime=runtime)
    if runtime == "torch":
        warn_if_synthetic(model)
    frames, tds = lifting_window(model, kp.fps, frames, tds)
    check_window(model, frames)
    xy, _ = fill_gaps(kp, min_score)
    return lift_xy(model, xy, size, frames, tds, mode, batch_size, device=device, amp=amp, progress=progress,
                   overlap=overlap)


def lift_xy(model, xy: np.ndarray, size, frames: int, tds: int, mode: str = "center", batch_size: int = 256,
            device=None, amp: Optional[str] = None, progress: bool = False,
            overlap: float = SEQ2SEQ_OVERLAP) -> np.ndarray:
    """Gap-free pixel keypoints (T, 17, 2) of an image of ``size`` -> root-relative 3D (T, 17, 3):
    the last step of :func:`lift` (and of ``python -m stcformer.infer`` for each person)."""
    return predict_sequence(model, normalised_frames(xy, size), frames, tds, mode, batch_size, device=device,
                            amp=amp, progress=progress, overlap=overlap)


def fitted_root(poses: np.ndarray, xy: np.ndarray, size, scores: np.ndarray, filled: np.ndarray,
                fps: Optional[float], focal: Optional[float] = None) -> np.ndarray:
    """The root's camera-space path (T, 3), metres, that puts ``poses`` (T, 17, 3) where the pixel
    keypoints ``xy`` (T, 17, 2) are: :func:`stcformer.export.bvh.root_trajectory` with each joint
    weighted by its 2D score (0 where it was ``filled``), smoothed over
    :func:`~stcformer.export.smoothing.trajectory_window` frames. ValueError when no frame has
    enough usable joints."""
    from stcformer.export.bvh import root_trajectory
    from stcformer.export.smoothing import trajectory_window

    return root_trajectory(poses, xy, size, focal=focal, weights=np.where(filled, 0.0, scores),
                           smooth=trajectory_window(fps))
