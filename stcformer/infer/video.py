"""Read a video file's frames, frame rate and size (imageio with its ffmpeg plugin).

:func:`check_file` is the quick look at a ``--video`` before anything heavy is imported: missing,
empty, an image or not a video at all stops there, in words (the first bytes, :mod:`.sniff`).
:func:`probe` opens the file once and returns a :class:`Video` (frame rate and size from the file,
the size from the first decoded frame, so rotated phone videos get the size their frames have);
:meth:`Video.frames` decodes the RGB frames one at a time, so a long video is never held in
memory, and counts them, so a file that ends early is told apart from what its header announces
(:meth:`Video.shortfall`). No ffmpeg text reaches a message: its failures are put into words.
:class:`Stage` is the progress bar of one stage of a per-frame pipeline: it shows the frames per
second of the time spent in that stage only, so decoding and detection, interleaved frame by frame,
each show their own rate.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from stcformer.errors import DataError, UsageError
from stcformer.infer.sniff import avi_frames, cut_short, gif_frames, read_head, sniff

INSTALL_VIDEO = 'pip install imageio imageio-ffmpeg (or pip install "stcformer[video]")'
FORMATS = "MP4/MOV, AVI, MKV/WebM, MPEG-TS/PS, FLV, Ogg, WMV or an animated GIF"
FRAMES_TO_VIDEO = "ffmpeg -framerate 25 -i frame_%04d.png clip.mp4"
# imageio picks its ffmpeg plugin by the file's extension and knows only nine: a hint lets ffmpeg
# decide by the contents (already sniffed), so .m4v, .ts, .3gp, .flv, .ogv and GIFs read too
BY_CONTENT = {"plugin": "FFMPEG", "extension": ".mp4"}


def _imageio(path):
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin's binary)
    except ImportError:
        raise UsageError(f"{path}: reading a video needs imageio and imageio-ffmpeg: {INSTALL_VIDEO}") from None
    return iio


def _not_a_video_image(what: str) -> str:
    return (f"{what}, not a video: pass a video file ({FORMATS}); to lift a sequence of images, make "
            f"them a video first: {FRAMES_TO_VIDEO}")


def check_file(path) -> Tuple[str, str]:
    """DataError (naming the file, in words) unless ``path`` may be a video, judged from its first
    bytes without importing anything heavy; else ``(kind, what)`` of :func:`~.sniff.sniff`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DataError(path, f"a folder, not a video file (for a folder of frames, make a video of them "
                              f"first: {FRAMES_TO_VIDEO})")
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    try:
        kind, what = sniff(read_head(path))
        if kind == "gif" and gif_frames(path) < 2:  # an animated GIF is read as a video
            raise DataError(path, _not_a_video_image("a GIF image with one frame"))
    except OSError as exc:
        raise DataError(path, f"cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    if kind == "empty":
        raise DataError(path, "empty file (0 bytes)")
    if kind == "image":
        raise DataError(path, _not_a_video_image(f"a {what} image"))
    if kind == "other":
        raise DataError(path, f"cannot read this video: not a video file ("
                              + (f"it holds {what}" if what.startswith(("text", "JSON")) else what or
                                 f"its first bytes are those of no video format: {FORMATS}") + ")")
    return kind, what


@dataclass
class Video:
    """A video file: ``fps`` (frames per second), ``size`` (width, height) and ``count``, the
    number of frames the container announces (from its duration x fps, or an AVI's header; or
    None). ``cut`` is (bytes in the file, bytes its container says) for a file cut short.
    :meth:`frames` counts the frames it decodes in ``decoded``; ``stopped`` tells that decoding
    failed part way (the frames before are kept)."""

    path: str
    fps: float
    size: Tuple[int, int]
    count: Optional[int] = None
    cut: Optional[Tuple[int, int]] = None
    decoded: int = 0
    stopped: bool = False

    def frames(self) -> Iterator[np.ndarray]:
        """The (H, W, 3) uint8 RGB frames, decoded one at a time."""
        iio = _imageio(self.path)
        self.decoded, self.stopped = 0, False
        try:
            for frame in iio.imiter(self.path, **BY_CONTENT):
                frame = np.asarray(frame)
                if frame.ndim == 2:
                    frame = np.repeat(frame[..., None], 3, -1)
                self.decoded += 1
                yield np.ascontiguousarray(frame[..., :3])
        except (OSError, RuntimeError, ValueError):
            if not self.decoded:
                raise DataError(self.path, "no frame can be decoded (the file is damaged, or its codec is "
                                           "one this ffmpeg lacks)") from None
            self.stopped = True  # the frames so far are usable: the caller warns (shortfall)

    def describe(self) -> str:
        """``WxH at F fps, M frames announced`` (and a cut file's bytes)."""
        text = f"{self.size[0]}x{self.size[1]} at {self.fps:g} fps"
        if self.count:
            text += f", {self.count} frames announced"
        if self.cut:
            text += f", but the file is cut short ({self.cut[0]} of the {self.cut[1]} bytes its header gives)"
        return text

    def told(self, n: Optional[int] = None) -> str:
        """``n`` (default: the decoded count) frames, told apart from the announced count when they differ."""
        n = self.decoded if n is None else n
        return f"{n} frames" if not self.count or self.count == n else f"{n} decoded frames ({self.count} announced)"

    def shortfall(self) -> Optional[str]:
        """After :meth:`frames`: one sentence when fewer frames came than the file announces (it
        was cut short, or decoding failed part way), else None."""
        n, m = self.decoded, self.count
        if self.stopped:
            return (f"decoding failed after {n}" + (f" of the {m} frames its header announces" if m else " frames")
                    + ": the rest of the file is damaged; going on with those")
        if m and n < m and (self.cut or m - n > max(2, m // 50)):
            return (f"the file ends after {n} of the {m} frames its header announces" if self.cut else
                    f"only {n} of the {m} frames its header announces could be decoded") + "; going on with those"
        return None


def _unreadable(exc: BaseException, cut, what: str) -> str:
    """ffmpeg's failure to open a file, in words (its banner and log stay out)."""
    text = str(exc)
    if cut:
        return f"the file is cut short ({cut[0]} of the {cut[1]} bytes its header gives) and no frame can be read"
    if "moov atom not found" in text:
        return "the file is cut short or damaged: its MP4 index (the moov box) is missing"
    if "does not contain any stream" in text or "no video stream" in text.lower():
        return f"this {what} file holds no video (only sound?)"
    if "Invalid data found" in text:
        return f"ffmpeg finds no video it can decode in this {what} file (damaged?)"
    return f"ffmpeg cannot decode this {what} file (damaged, or a codec this ffmpeg lacks)"


def probe(path) -> Video:
    """The :class:`Video` of ``path``; DataError (naming the file) when it cannot be read as a video,
    UsageError when imageio or its ffmpeg is not installed."""
    path = os.fspath(path)
    _, what = check_file(path)
    iio = _imageio(path)
    head = read_head(path)
    cut = cut_short(path, head)
    try:
        meta = iio.immeta(path, **BY_CONTENT)
        first = next(iter(iio.imiter(path, **BY_CONTENT)))
    except StopIteration:
        raise DataError(path, "the video has no frames" + (" (the file is cut short)" if cut else "")) from None
    except Exception as exc:
        raise DataError(path, _unreadable(exc, cut, what)) from None
    fps = meta.get("fps")
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise DataError(path, f"the video gives no frame rate (fps={fps!r}); pass --fps")
    count = None
    n = meta.get("nframes")
    if isinstance(n, (int, float)) and math.isfinite(n) and n > 0:
        count = int(n)
    elif isinstance(meta.get("duration"), (int, float)) and math.isfinite(meta["duration"]):
        count = int(round(meta["duration"] * fps)) or None
    if cut:  # ffmpeg guesses a cut AVI's duration from its size; the header says what was meant
        count = avi_frames(head) or count
    first = np.asarray(first)
    return Video(path=path, fps=float(fps), size=(int(first.shape[1]), int(first.shape[0])), count=count, cut=cut)


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


def viewer_frames(path, total: int) -> dict:
    """The first ``total`` frames of the video ``path`` as the HTML viewer embeds them (small JPEGs,
    :func:`stcformer.export.viewer.encode_video_frames`)."""
    from stcformer.export.viewer import encode_video_frames

    return encode_video_frames(probe(path).frames(), total)


__all__ = ["Video", "probe", "check_file", "Stage", "viewer_frames"]
