"""Read a video file's frames, frame rate and size (imageio with its ffmpeg plugin).

:func:`probe` opens the file once and returns a :class:`Video` (frame rate and size from the file,
the size from the first decoded frame, so rotated phone videos get the size their frames have);
:meth:`Video.frames` decodes the RGB frames one at a time, so a long video is never held in
memory. :class:`Stage` is the progress bar of one stage of a per-frame pipeline: it shows the
frames per second of the time spent in that stage only, so decoding and detection, interleaved
frame by frame, each show their own rate.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from stcformer.errors import DataError, UsageError

INSTALL_VIDEO = 'pip install imageio imageio-ffmpeg (or pip install "stcformer[video]")'


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _imageio(path):
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin's binary)
    except ImportError:
        raise UsageError(f"{path}: reading a video needs imageio and imageio-ffmpeg: {INSTALL_VIDEO}") from None
    return iio


@dataclass
class Video:
    """A video file: ``fps`` (frames per second), ``size`` (width, height) and ``count``, the
    number of frames the container announces (an estimate from duration x fps, or None)."""

    path: str
    fps: float
    size: Tuple[int, int]
    count: Optional[int] = None

    def frames(self) -> Iterator[np.ndarray]:
        """The (H, W, 3) uint8 RGB frames, decoded one at a time."""
        iio = _imageio(self.path)
        try:
            for frame in iio.imiter(self.path, plugin="FFMPEG"):
                frame = np.asarray(frame)
                if frame.ndim == 2:
                    frame = np.repeat(frame[..., None], 3, -1)
                yield np.ascontiguousarray(frame[..., :3])
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(self.path, f"decoding failed ({_short(exc)})") from None


def probe(path) -> Video:
    """The :class:`Video` of ``path``; DataError (naming the file) when it cannot be read as a video,
    UsageError when imageio or its ffmpeg is not installed."""
    path = os.fspath(path)
    iio = _imageio(path)
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
        first = next(iter(iio.imiter(path, plugin="FFMPEG")))
    except StopIteration:
        raise DataError(path, "the video has no frames") from None
    except Exception as exc:
        raise DataError(path, f"imageio cannot read this video ({_short(exc)})") from None
    fps = meta.get("fps")
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise DataError(path, f"the video gives no frame rate (fps={fps!r}); pass --fps")
    count = None
    n = meta.get("nframes")
    if isinstance(n, (int, float)) and math.isfinite(n) and n > 0:
        count = int(n)
    elif isinstance(meta.get("duration"), (int, float)) and math.isfinite(meta["duration"]):
        count = int(round(meta["duration"] * fps)) or None
    first = np.asarray(first)
    return Video(path=path, fps=float(fps), size=(int(first.shape[1]), int(first.shape[0])), count=count)


class Stage:
    """A tqdm bar for one stage of a frame-by-frame pipeline, showing that stage's own frames/s.

    ``with stage: work()`` times one frame of work and advances the bar; ``stage.rate`` is frames
    per second of the time spent inside those blocks.
    """

    def __init__(self, desc: str, total: Optional[int] = None, progress: bool = True, position: int = 0,
                 file=None):
        from tqdm import tqdm

        self.desc = desc
        self.n = 0
        self.seconds = 0.0
        self._bar = tqdm(total=total, desc=desc, unit="frame", disable=None if progress else True,
                         position=position, mininterval=0.5, leave=True, dynamic_ncols=True, file=file,
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        self._t0 = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.add(time.perf_counter() - self._t0)
        return False

    def add(self, seconds: float, frames: int = 1) -> None:
        self.seconds += seconds
        self.n += frames
        self._bar.set_postfix_str(f"{self.rate:.1f} frames/s", refresh=False)
        self._bar.update(frames)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    def close(self) -> None:
        if self._bar.total is not None and self._bar.n != self._bar.total:
            self._bar.total = self._bar.n  # the container's count was an estimate
            self._bar.refresh()
        self._bar.close()


__all__ = ["Video", "probe", "Stage"]
