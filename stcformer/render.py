"""Side-by-side animation of the 2D input and the lifted 3D skeleton.

One output frame per input frame, at the input frame rate: on the left the 2D keypoints (on the
video's frame when a video is given and ``imageio`` can read it, else on a blank canvas of the
image size; joints filled from neighbouring frames drawn as grey crosses), on the right the 3D
skeleton from a fixed viewpoint (z up). The subject's left limbs are blue, the right ones red.

``.mp4`` is encoded by ffmpeg (the ``imageio-ffmpeg`` package's binary, or ``ffmpeg`` on PATH);
without one, asking for ``.mp4`` is an error raised by :func:`check_output` before anything is
computed or written (ask for ``.gif`` instead). ``.gif`` is written with Pillow; a GIF holds all
frames in memory until it is written and stores frame times in hundredths of a second, so prefer
``.mp4`` for long videos.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from .data.skeleton import H36M_LEFT, H36M_PARENTS
from .errors import DataError, STCFormerError, UsageError
from .io import atomic_write

KINDS = (".mp4", ".gif")


def ffmpeg_exe() -> Optional[str]:
    """Path of an ffmpeg binary: imageio-ffmpeg's if installed, else ``ffmpeg`` on PATH, else None."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and os.path.isfile(exe):
            return exe
    except Exception:
        pass
    return shutil.which("ffmpeg")


def check_output(path) -> str:
    """The kind (``.mp4`` or ``.gif``) of ``path``; UsageError for other extensions and for
    ``.mp4`` without ffmpeg. Call before any work, so nothing is written on failure."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in KINDS:
        raise UsageError(f"{path}: animations are .mp4 or .gif, not '{ext or 'no extension'}'")
    if ext == ".mp4" and ffmpeg_exe() is None:
        raise UsageError(f"{path}: writing .mp4 needs ffmpeg (pip install imageio-ffmpeg, or ffmpeg on "
                         "PATH); none found: ask for a .gif instead")
    return ext


def open_video(path) -> tuple:
    """(an iterator over the video's RGB frames, a note) or (None, why not) when imageio is not
    installed. DataError when imageio is installed but cannot read the file."""
    try:
        import imageio.v3 as iio
    except ImportError:
        return None, f"{path}: imageio is not installed, drawing on a blank canvas (pip install imageio)"
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    try:
        frames = iio.imiter(path)
        first = next(iter(frames))
    except Exception as exc:
        raise DataError(path, f"imageio cannot read this video ({' '.join(str(exc).split())[:200]})") from None

    def gen():
        yield first
        yield from frames

    return gen(), f"{path}: drawing on the video's frames"


class Renderer:
    """Draws frame ``i`` of the animation as an (H, W, 3) uint8 image (matplotlib, Agg)."""

    def __init__(self, keypoints: np.ndarray, poses: np.ndarray, size: Sequence[int],
                 filled: Optional[np.ndarray] = None, figsize=(9.6, 4.8), dpi: int = 100,
                 left: Sequence[int] = H36M_LEFT, title: str = ""):
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        del matplotlib
        self.kpts = np.asarray(keypoints, dtype=np.float64)
        self.poses = np.asarray(poses, dtype=np.float64)
        if len(self.kpts) != len(self.poses):
            raise ValueError(f"{len(self.kpts)} 2D frames but {len(self.poses)} 3D frames")
        self.filled = np.zeros(self.kpts.shape[:2], bool) if filled is None else np.asarray(filled, bool)
        self.w, self.h = size
        self.title = title
        self.fig = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax2 = self.fig.add_subplot(1, 2, 1)
        self.ax3 = self.fig.add_subplot(1, 2, 2, projection="3d")
        self.bones = [(p, j) for j, p in enumerate(H36M_PARENTS) if p >= 0]
        lset = set(left)
        colors = ["tab:blue" if j in lset else "tab:red" for _, j in self.bones]
        ax2, ax3 = self.ax2, self.ax3
        self.image = ax2.imshow(np.full((2, 2, 3), 255, np.uint8), extent=(0, self.w, self.h, 0),
                                interpolation="bilinear", zorder=0)
        self.lines2 = [ax2.plot([], [], color=c, lw=2, zorder=2)[0] for c in colors]
        self.seen2 = ax2.plot([], [], "o", color="black", ms=3, zorder=3)[0]
        self.miss2 = ax2.plot([], [], "x", color="grey", ms=6, mew=2, zorder=3)[0]
        ax2.set_xlim(0, self.w)
        ax2.set_ylim(self.h, 0)
        ax2.set_aspect("equal")
        ax2.set_xticks([])
        ax2.set_yticks([])
        self.lines3 = [ax3.plot([0, 0], [0, 0], [0, 0], color=c, lw=2)[0] for c in colors]
        z_up = self._z_up(self.poses)
        reach = max(0.9, float(np.nanmax(np.abs(z_up))) if np.isfinite(z_up).any() else 0.9)
        for set_lim in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            set_lim(-reach, reach)
        ax3.view_init(elev=15, azim=-70)
        ax3.set_box_aspect((1, 1, 1))
        for set_ticks in (ax3.set_xticks, ax3.set_yticks, ax3.set_zticks):
            set_ticks([-0.5, 0.0, 0.5])
        ax3.set_xlabel("x (m)")
        ax3.set_ylabel("depth (m)")
        ax3.set_zlabel("up (m)")
        ax3.set_title("3D, root-relative")
        self.fig.subplots_adjust(left=0.02, right=0.95, top=0.9, bottom=0.08, wspace=0.1)
        self.canvas.draw()
        self.shape = np.asarray(self.canvas.buffer_rgba()).shape[:2] + (3,)

    @staticmethod
    def _z_up(p: np.ndarray) -> np.ndarray:
        # camera axes (x right, y down, z forward) -> a plot with z up: (x, z, -y)
        return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)

    def set_background(self, frame: Optional[np.ndarray]) -> None:
        if frame is not None:
            self.image.set_data(np.asarray(frame)[..., :3])

    def frame(self, i: int) -> np.ndarray:
        k, P = self.kpts[i], self._z_up(self.poses[i])
        for line, (p, j) in zip(self.lines2, self.bones):
            line.set_data(k[[p, j], 0], k[[p, j], 1])
        f = self.filled[i]
        self.seen2.set_data(k[~f, 0], k[~f, 1])
        self.miss2.set_data(k[f, 0], k[f, 1])
        for line, (p, j) in zip(self.lines3, self.bones):
            line.set_data_3d(P[[p, j], 0], P[[p, j], 1], P[[p, j], 2])
        self.ax2.set_title(f"{self.title}frame {i}: 2D input" + (f" ({int(f.sum())} filled)" if f.any() else ""))
        self.canvas.draw()
        return np.array(np.asarray(self.canvas.buffer_rgba())[..., :3])

    def close(self) -> None:
        self.fig.clear()


def render(path, keypoints: np.ndarray, poses: np.ndarray, fps: float, size: Sequence[int],
           filled: Optional[np.ndarray] = None, video: Optional[str] = None, progress: bool = True,
           log=print) -> int:
    """Write the animation of ``keypoints`` (T, 17, 2) pixels and ``poses`` (T, 17, 3) to ``path``
    (``.mp4`` or ``.gif``, see :func:`check_output`) at ``fps``; returns the frames written."""
    kind = check_output(path)
    frames_in = None
    if video:
        frames_in, note = open_video(video)
        log(note)
    gif = kind == ".gif"
    r = Renderer(keypoints, poses, size, filled, figsize=(6.4, 3.2) if gif else (9.6, 4.8))
    T = len(r.kpts)
    bar = tqdm(total=T, desc="render", unit="frame", disable=None if progress else True, mininterval=1.0)
    background = None

    def frames():
        nonlocal background
        for i in range(T):
            if frames_in is not None:
                background = next(frames_in, background)  # a short video keeps its last frame
                r.set_background(background)
            yield r.frame(i)
            bar.update(1)

    try:
        if gif:
            atomic_write(path, lambda tmp: _write_gif(tmp, frames(), fps), ".gif")
        else:
            atomic_write(path, lambda tmp: _write_mp4(tmp, frames(), fps, r.shape), ".mp4")
    finally:
        bar.close()
        r.close()
    return T


def _write_gif(tmp: str, frames, fps: float) -> None:
    from PIL import Image

    images = []
    palette = None
    for rgb in frames:
        im = Image.fromarray(rgb)
        if palette is None:
            palette = im.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
            images.append(palette)
        else:
            images.append(im.quantize(palette=palette, dither=Image.Dither.NONE))
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(10, int(round(1000.0 / fps))), loop=0, optimize=False)


def _write_mp4(tmp: str, frames, fps: float, shape) -> None:
    h, w = shape[:2]
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", tmp]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for rgb in frames:
            proc.stdin.write(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    except BrokenPipeError:
        pass
    finally:
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
    if rc != 0:
        raise STCFormerError(f"ffmpeg failed (exit {rc}): {' '.join(err.split())[:300]}")


__all__ = ["render", "Renderer", "check_output", "ffmpeg_exe", "open_video", "KINDS"]
