"""Side-by-side animation of the 2D input and the lifted 3D skeleton.

One output frame per input frame, at the input frame rate: on the left the 2D keypoints (on the
video's frame when a video is given and ``imageio`` can read it, else on a blank canvas of the
image size; joints filled from neighbouring frames drawn as grey crosses), on the right the 3D
skeleton from a fixed viewpoint (z up). The subject's left limbs are blue, the right ones red.
A person's frame whose 3D pose or 2D keypoints are NaN (absent: far from its detections) draws
nothing for that person, neither in 2D nor in 3D.

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

from stcformer.data.skeleton import H36M_LEFT, H36M_PARENTS
from stcformer.errors import DataError, STCFormerError, UsageError
from stcformer.io import atomic_write

KINDS = (".mp4", ".gif")

# (parent, joint) of every bone of the Human3.6M skeleton
BONES = tuple((p, j) for j, p in enumerate(H36M_PARENTS) if p >= 0)


# camera axes (x right, y down, z forward) -> z up for display: (x, z, -y), a rotation about x
Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def z_up(p: np.ndarray) -> np.ndarray:
    """Camera axes (x right, y down, z forward) -> a plot with z up: (x, z, -y), ``p @ Z_UP.T``
    (what ``poses_3d.npz`` stores as ``reconstruction_z_up``)."""
    return p @ Z_UP.T


def bone_lines(ax, left: Sequence[int] = H36M_LEFT) -> list:
    """One line per bone in the matplotlib axes ``ax`` (2D, or 3D), the subject's left limbs blue
    and the right ones red; :func:`set_bones` puts a pose on them. The one skeleton drawer of the
    animation (:class:`Renderer`) and the preview of ``python -m stcformer.infer``."""
    lset = set(left)
    colors = ["tab:blue" if j in lset else "tab:red" for _, j in BONES]
    if getattr(ax, "name", "") == "3d":
        return [ax.plot([0, 0], [0, 0], [0, 0], color=c, lw=2)[0] for c in colors]
    return [ax.plot([], [], color=c, lw=2, zorder=2)[0] for c in colors]


def set_bones(lines: list, points: np.ndarray) -> None:
    """Draw the joints ``points`` (J, 2) or (J, 3) (3D: already :func:`z_up`) on :func:`bone_lines`;
    a bone with an end that is not finite (a frame without a pose) is not drawn."""
    ok = np.isfinite(points).all(-1)
    for line, (p, j) in zip(lines, BONES):
        if not (ok[p] and ok[j]):
            line.set_data_3d([], [], []) if points.shape[-1] == 3 else line.set_data([], [])
        elif points.shape[-1] == 3:
            line.set_data_3d(points[[p, j], 0], points[[p, j], 1], points[[p, j], 2])
        else:
            line.set_data(points[[p, j], 0], points[[p, j], 1])


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
        # ffmpeg decides by the contents (as stcformer.infer.video does): imageio's own choice goes
        # by the extension and knows only nine, so .m4v, .ts, .3gp, .flv or .ogv would fail here
        frames = iio.imiter(path, plugin="FFMPEG", extension=".mp4")
        first = next(iter(frames))
    except Exception as exc:
        raise DataError(path, f"imageio cannot read this video ({' '.join(str(exc).split())[:200]})") from None

    def gen():
        yield first
        yield from frames

    return gen(), f"{path}: drawing on the video's frames"


class Renderer:
    """Draws frame ``i`` of the animation as an (H, W, 3) uint8 image (matplotlib, Agg).

    One person: ``keypoints`` (T, 17, 2), ``poses`` (T, 17, 3), ``filled`` (T, 17). Several
    people: lists of those (one entry per person, all T frames, NaN where a person is absent),
    drawn together on the 2D panel and each in a 3D panel of its own, side by side, titled by
    ``labels``.
    """

    def __init__(self, keypoints, poses, size: Sequence[int], filled=None, figsize=None, dpi: int = 100,
                 left: Sequence[int] = H36M_LEFT, title: str = "", labels: Optional[Sequence[str]] = None):
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        del matplotlib
        self.multi = isinstance(keypoints, (list, tuple))
        kpts = list(keypoints) if self.multi else [keypoints]
        poses = list(poses) if self.multi else [poses]
        if filled is None:
            filled = [None] * len(kpts)
        elif not self.multi:
            filled = [filled]
        if not (len(kpts) == len(poses) == len(filled)) or not kpts:
            raise ValueError(f"{len(kpts)} 2D sequences, {len(poses)} 3D sequences, {len(filled)} fill masks")
        self.kpts = [np.asarray(k, dtype=np.float64) for k in kpts]
        self.poses = [np.asarray(p, dtype=np.float64) for p in poses]
        for k, p in zip(self.kpts, self.poses):
            if len(k) != len(p) or len(k) != len(self.kpts[0]):
                raise ValueError(f"{len(k)} 2D frames but {len(p)} 3D frames")
        self.filled = [np.zeros(k.shape[:2], bool) if f is None else np.asarray(f, bool)
                       for k, f in zip(self.kpts, filled)]
        self.labels = list(labels) if labels is not None else [f"person {i}" for i in range(len(self.kpts))]
        n = len(self.kpts)
        self.w, self.h = size
        self.title = title
        if figsize is None:
            figsize = (4.8 * (n + 1), 4.8)
        self.fig = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax2 = self.fig.add_subplot(1, n + 1, 1)
        self.ax3s = [self.fig.add_subplot(1, n + 1, i + 2, projection="3d") for i in range(n)]
        self._panel_2d(left)
        self._panels_3d(left)
        self.fig.subplots_adjust(left=0.02, right=0.95, top=0.9, bottom=0.08, wspace=0.1)
        self.canvas.draw()
        self.shape = np.asarray(self.canvas.buffer_rgba()).shape[:2] + (3,)

    def _panel_2d(self, left: Sequence[int]) -> None:
        """The 2D panel: the image (or a blank), every person's bones, seen and missing joints, names."""
        n = len(self.kpts)
        ax2 = self.ax2
        self.image = ax2.imshow(np.full((2, 2, 3), 255, np.uint8), extent=(0, self.w, self.h, 0),
                                interpolation="bilinear", zorder=0)
        self.lines2 = [bone_lines(ax2, left) for _ in range(n)]
        self.seen2 = [ax2.plot([], [], "o", color="black", ms=3, zorder=3)[0] for _ in range(n)]
        self.miss2 = [ax2.plot([], [], "x", color="grey", ms=6, mew=2, zorder=3)[0] for _ in range(n)]
        self.names2 = [ax2.text(0, 0, "", fontsize=8, color="black", zorder=4,
                                bbox=dict(facecolor="white", alpha=0.6, lw=0, pad=1)) if self.multi else None
                       for _ in range(n)]
        ax2.set_xlim(0, self.w)
        ax2.set_ylim(self.h, 0)
        ax2.set_aspect("equal")
        ax2.set_xticks([])
        ax2.set_yticks([])

    def _panels_3d(self, left: Sequence[int]) -> None:
        """One 3D panel per person, all on the same cube around the root."""
        up = np.concatenate([z_up(p).reshape(-1, 3) for p in self.poses])
        reach = max(0.9, float(np.nanmax(np.abs(up))) if np.isfinite(up).any() else 0.9)
        self.lines3 = []
        for ax3, label in zip(self.ax3s, self.labels):
            self.lines3.append(bone_lines(ax3, left))
            for set_lim in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
                set_lim(-reach, reach)
            ax3.view_init(elev=15, azim=-70)
            ax3.set_box_aspect((1, 1, 1))
            for set_ticks in (ax3.set_xticks, ax3.set_yticks, ax3.set_zticks):
                set_ticks([-0.5, 0.0, 0.5])
            ax3.set_xlabel("x (m)")
            ax3.set_ylabel("depth (m)")
            ax3.set_zlabel("up (m)")
            ax3.set_title(f"{label}: 3D, root-relative" if self.multi else "3D, root-relative")

    def set_background(self, frame: Optional[np.ndarray]) -> None:
        if frame is not None:
            self.image.set_data(np.asarray(frame)[..., :3])

    def frame(self, i: int) -> np.ndarray:
        filled_total = 0
        for n in range(len(self.kpts)):
            k, f = self.kpts[n][i], self.filled[n][i]
            if not np.isfinite(self.poses[n][i]).all():  # no pose: nothing drawn for this person
                k = np.full_like(k, np.nan)
            f = f & np.isfinite(k).all(-1)
            shown = np.isfinite(k).all(-1) & ~f
            set_bones(self.lines2[n], k)
            self.seen2[n].set_data(k[shown, 0], k[shown, 1])
            self.miss2[n].set_data(k[f, 0], k[f, 1])
            set_bones(self.lines3[n], z_up(self.poses[n][i]))
            present = np.isfinite(k).all(-1)
            filled_total += int((f & present).sum())
            if self.names2[n] is not None:
                head = k[10] if present[10] else (k[present][0] if present.any() else None)
                self.names2[n].set_visible(head is not None)
                if head is not None:
                    self.names2[n].set_position((head[0], head[1] - 0.03 * self.h))
                    self.names2[n].set_text(self.labels[n])
        self.ax2.set_title(f"{self.title}frame {i}: 2D input" + (f" ({filled_total} filled)" if filled_total else ""))
        self.canvas.draw()
        return np.array(np.asarray(self.canvas.buffer_rgba())[..., :3])

    def close(self) -> None:
        self.fig.clear()


def render(path, keypoints, poses, fps: float, size: Sequence[int], filled=None, video: Optional[str] = None,
           progress: bool = True, log=print, labels: Optional[Sequence[str]] = None) -> int:
    """Write the animation of ``keypoints`` (T, 17, 2) pixels and ``poses`` (T, 17, 3) to ``path``
    (``.mp4`` or ``.gif``, see :func:`check_output`) at ``fps``; returns the frames written.
    Lists of arrays (one per person) draw several people side by side (see :class:`Renderer`)."""
    kind = check_output(path)
    frames_in = None
    if video:
        frames_in, note = open_video(video)
        log(note)
    gif = kind == ".gif"
    multi = isinstance(keypoints, (list, tuple))
    people = len(keypoints) if multi else 1
    figsize = ((3.2 if gif else 4.8) * (people + 1), 3.2 if gif else 4.8)
    r = Renderer(keypoints, poses, size, filled, figsize=figsize, labels=labels)
    T = len(r.kpts[0])
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


__all__ = ["render", "Renderer", "bone_lines", "set_bones", "z_up", "Z_UP", "check_output", "ffmpeg_exe", "open_video",
           "KINDS"]
