"""Lift your own 2D keypoints (e.g. a video's detections) to 3D and look at the result.

    python -m stcformer.infer --checkpoint CKPT --keypoints kpts.npz --width 1920 --height 1080 \\
        --out DIR [--format h36m|coco] [--fps 50] [--frames 27]

Input: an .npz (key ``reconstruction``, or the only array) or .npy of pixel keypoints shaped
(T, 17, 2) or (1, T, 17, 2), in Human3.6M joint order or COCO order (``--format coco``, converted
as the official demo does). Every frame is the centre of one window (edges repeated) sampled
``tds`` frames apart, where tds = round(3 * fps / 50) matches the 50 fps / tds 3 training data;
predictions are flip-averaged and the window's centre frame is kept (the official demo kept the
first, so its 3D lagged the 2D). Writes DIR/poses_3d.npz (``reconstruction`` (T, 17, 3),
root-relative camera coordinates in metres) and DIR/preview.png.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .cli import AMP_CHOICES, UsageError, run, warn_slow_cpu_amp
from .io import atomic_write
from .data.cameras import normalize_screen_coordinates
from .data.skeleton import H36M_LEFT, H36M_PARENTS, H36M_RIGHT
from .predict import predict_centres, sequence_windows


def coco_to_h36m(kpts: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (..., 17, 2) -> Human3.6M-17, as the official demo's preprocessing."""
    c = kpts
    h = np.zeros_like(c)
    for dst, src in ((9, 0), (11, 5), (14, 6), (12, 7), (15, 8), (13, 9), (16, 10), (4, 11),
                     (1, 12), (5, 13), (2, 14), (6, 15), (3, 16)):
        h[..., dst, :] = c[..., src, :]
    mid_shoulder = (c[..., 5, :] + c[..., 6, :]) / 2
    nose = c[..., 0, :]
    h[..., 10, 0] = c[..., 1:5, 0].mean(-1)
    h[..., 10, 1] = c[..., 1, 1] + c[..., 2, 1] - c[..., 0, 1]
    h[..., 8, :] = mid_shoulder + (nose - mid_shoulder) / 3
    h[..., 0, :] = (c[..., 11, :] + c[..., 12, :]) / 2
    h[..., 7, :] = (c[..., 5, :] + c[..., 6, :] + c[..., 11, :] + c[..., 12, :]) / 4
    h[..., 9, :] = nose - (nose - mid_shoulder) / 4
    h[..., 7, 0] += 2 * (h[..., 7, 0] - (h[..., 0, 0] + h[..., 8, 0]) / 2)
    h[..., 8, 1] -= (c[..., 1:3, 1].mean(-1) - nose[..., 1]) * 2 / 3
    return h


def read_keypoints(path: str) -> np.ndarray:
    """(T, 17, 2) float32 pixel keypoints from .npz/.npy; one-line errors naming the file."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable .npy/.npz file ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if "reconstruction" in keys:
            data = data["reconstruction"]
        elif len(keys) == 1:
            data = data[keys[0]]
        else:
            raise UsageError(f"{path}: no 'reconstruction' array (keys: {', '.join(keys)})")
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[1:] != (17, 2):
        raise UsageError(f"{path}: keypoints must be (T, 17, 2) or (1, T, 17, 2), got {tuple(np.shape(data))}")
    if not np.isfinite(arr).all():
        raise UsageError(f"{path}: keypoints contain NaN or infinite values")
    return arr


def lift(model, kpts_norm: np.ndarray, frames: int, tds: int, batch_size: int = 256,
         device: Optional[str] = None, amp: Optional[str] = None) -> np.ndarray:
    """Normalised 2D (T, 17, 2) -> root-relative 3D (T, 17, 3): one window per frame, flip-averaged.

    ``amp`` (``bf16``/``fp16``) runs the forward passes under autocast; default float32.
    """
    windows = sequence_windows(kpts_norm, frames, tds, 0, H36M_LEFT, H36M_RIGHT)
    return predict_centres(model, windows, batch_size, device=device, amp=amp, progress=False)


def plot_preview(kpts: np.ndarray, poses: np.ndarray, path: str, count: int = 4) -> None:
    """A row per sampled frame: the 2D input and the lifted 3D skeleton (left joints blue)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.unique(np.linspace(0, len(kpts) - 1, min(count, len(kpts))).round().astype(int))
    fig = plt.figure(figsize=(8, 3.6 * len(frames)))
    left = set(H36M_LEFT)
    for row, f in enumerate(frames):
        ax2 = fig.add_subplot(len(frames), 2, 2 * row + 1)
        ax3 = fig.add_subplot(len(frames), 2, 2 * row + 2, projection="3d")
        for j, p in enumerate(H36M_PARENTS):
            if p < 0:
                continue
            color = "tab:blue" if j in left else "tab:red"
            ax2.plot(*kpts[f, [p, j]].T, color=color, lw=2)
            # camera axes -> a plot with z up: (x, z, -y)
            seg = poses[f, [p, j]]
            ax3.plot(seg[:, 0], seg[:, 2], -seg[:, 1], color=color, lw=2)
        ax2.invert_yaxis()
        ax2.set_aspect("equal")
        ax2.set_title(f"frame {f}: 2D input (pixels)")
        ax3.set_title("3D (m, root-relative)")
        ax3.view_init(elev=15, azim=70)
        for set_lim in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            set_lim(-0.9, 0.9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), ".png")
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m stcformer.infer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="official or own checkpoint")
    p.add_argument("--keypoints", required=True, help=".npz (key 'reconstruction') or .npy, (T,17,2) pixels")
    p.add_argument("--width", type=int, required=True, help="image width in pixels")
    p.add_argument("--height", type=int, required=True, help="image height in pixels")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("h36m", "coco"), default="h36m", help="joint order of the input")
    p.add_argument("-f", "--frames", type=int, default=27, help="window length (default 27)")
    p.add_argument("--fps", type=float, default=50.0, help="frame rate of the keypoints (default 50)")
    p.add_argument("--tds", type=int, default=None, help="frame step inside a window (default round(3*fps/50))")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", default=None, help="stc_attention backend (default auto)")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast dtype of the forward passes (default none: float32)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.width <= 0 or args.height <= 0:
        raise UsageError(f"--width/--height must be positive, got {args.width}x{args.height}")
    kpts = read_keypoints(args.keypoints)
    if args.format == "coco":
        kpts = coco_to_h36m(kpts)
    model = load_checkpoint(args.checkpoint, backend=args.backend).to(args.device)
    tds = args.tds or max(1, round(3 * args.fps / 50))
    warn_slow_cpu_amp(torch.device(args.device).type, args.amp)
    poses = lift(model, normalize_screen_coordinates(kpts, w=args.width, h=args.height).astype(np.float32),
                 args.frames, tds, amp=args.amp)
    out_npz = os.path.join(args.out, "poses_3d.npz")

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, reconstruction=poses)
    atomic_write(out_npz, write_npz, ".npz")
    plot_preview(kpts, poses, os.path.join(args.out, "preview.png"))
    print(f"{len(poses)} frames lifted (window {args.frames}, tds {tds}) -> {out_npz}, "
          f"{os.path.join(args.out, 'preview.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
