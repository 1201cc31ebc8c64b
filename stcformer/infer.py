"""Lift a video's 2D keypoints to 3D and look at the result.

    python -m stcformer.infer --checkpoint CKPT --keypoints FILE --fps 30 [--width W --height H]
        --out DIR [--mode center|seq2seq] [--json OUT.json] [--bvh OUT.bvh] [--render OUT.mp4|.gif]

Input (--format, default detected from the file): an .npy/.npz array (T, J, 2) or (T, J, 3) with
scores; the official demo's .npz (key 'reconstruction'); VideoPose3D's custom-dataset .npz (its
image size is used); COCO-style JSON results of AlphaPose, MMPose or Detectron2 (several people
per frame: --person picks a track id, or a rank by box area; default the largest). Joint sets
(--joints, default from the file): Human3.6M-17, COCO-17, Halpe-26.

Joints scoring under --min-score and frames with no detection are filled from their neighbours
in time (linear inside a gap, the nearest value at the ends): output frame i is input frame i.

Window: --frames frames (default: the checkpoint's training window, else 27) sampled tds frames
apart, where tds = max(1, round(3 * fps / 50)) (3 = the checkpoint's training tds, if it says
otherwise), so a window spans the same time as the 50 fps training data; --tds overrides it.
--mode center (default) lifts every frame as the centre of its own window; --mode seq2seq keeps
every frame of non-overlapping windows (the last one aligned to the end): about --frames times
fewer forward passes. Both are flip-averaged.

Writes DIR/poses_3d.npz ('reconstruction': (T, 17, 3) root-relative camera coordinates in metres,
x right, y down, z forward; 'reconstruction_z_up': the same turned for display, z up; plus the
filled 2D input) and DIR/preview.png; optionally JSON, BVH (stcformer.bvh) and an animation
(stcformer.render). Bad input stops with one line naming the file, exit status 2, before
anything is written.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .cli import AMP_CHOICES, UsageError, run, warn_slow_cpu_amp
from .data.skeleton import H36M_JOINTS, H36M_LEFT, H36M_PARENTS, H36M_RIGHT
from .io import save_figure, write_json, write_npz
from .keypoints import (FORMATS, JOINT_SETS, coco_to_h36m, fill_gaps, jitter, read_keypoints,  # noqa: F401
                        savgol, window_stride)
from .predict import MODES, predict_sequence, trained_window

# camera axes (x right, y down, z forward) -> z up for display: (x, z, -y), a rotation about x
Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def plot_preview(kpts: np.ndarray, poses: np.ndarray, path: str, count: int = 4) -> None:
    """A row per sampled frame: the 2D input and the lifted 3D skeleton (left joints blue)."""
    from matplotlib.figure import Figure

    frames = np.unique(np.linspace(0, len(kpts) - 1, min(count, len(kpts))).round().astype(int))
    fig = Figure(figsize=(8, 3.6 * len(frames)))
    left = set(H36M_LEFT)
    for row, f in enumerate(frames):
        ax2 = fig.add_subplot(len(frames), 2, 2 * row + 1)
        ax3 = fig.add_subplot(len(frames), 2, 2 * row + 2, projection="3d")
        for j, p in enumerate(H36M_PARENTS):
            if p < 0:
                continue
            color = "tab:blue" if j in left else "tab:red"
            ax2.plot(*kpts[f, [p, j]].T, color=color, lw=2)
            seg = poses[f, [p, j]] @ Z_UP.T
            ax3.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, lw=2)
        ax2.invert_yaxis()
        ax2.set_aspect("equal")
        ax2.set_title(f"frame {f}: 2D input (pixels)")
        ax3.set_title("3D (m, root-relative)")
        ax3.view_init(elev=15, azim=-70)
        for set_lim in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            set_lim(-0.9, 0.9)
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m stcformer.infer", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="official or own checkpoint")
    p.add_argument("--keypoints", required=True, help="keypoint file (.npy, .npz or .json)")
    p.add_argument("--out", required=True, help="output folder (poses_3d.npz, preview.png)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS + JOINT_SETS,
                   help="file format (default auto: by extension and .npz keys); a joint set name here "
                        "means --joints (the older use of this flag)")
    p.add_argument("--joints", choices=JOINT_SETS, default=None,
                   help="joint set of the file (default: 26 joints Halpe-26; 17 joints COCO in JSON and "
                        "VideoPose3D files, Human3.6M in arrays)")
    p.add_argument("--person", type=int, default=None,
                   help="JSON with several people: track id (idx/track_id), else rank by box area per "
                        "frame (0 = largest); default the largest (total) box")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (unless the file says)")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (unless the file says)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the keypoints (unless the file says); sets tds = max(1, round(3*fps/50))")
    p.add_argument("--tds", type=int, default=None, help="frame step inside a window (overrides the fps rule)")
    p.add_argument("-f", "--frames", type=int, default=None,
                   help="window length (default: the checkpoint's training window, else 27)")
    p.add_argument("--mode", choices=MODES, default="center",
                   help="center: every frame the centre of its own window (default); seq2seq: every frame "
                        "of non-overlapping windows")
    p.add_argument("--min-score", type=float, default=0.3,
                   help="joints scoring less are filled from neighbouring frames (default 0.3; 0 keeps every joint "
                        "that has a position)")
    p.add_argument("--smooth", type=int, nargs="?", const=0, default=None, metavar="FRAMES",
                   help="Savitzky-Golay smoothing (degree 2) of the 3D over FRAMES frames (odd; default "
                        "about 0.2 s); prints the jitter before and after")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the 3D as JSON")
    p.add_argument("--bvh", default=None, metavar="OUT.bvh",
                   help="also write a BVH animation (Y up, centimetres, ZXY channels; see stcformer.bvh)")
    p.add_argument("--bvh-root", action="store_true",
                   help="move the BVH root along a trajectory estimated from the 2D (pinhole camera, "
                        "focal length = the larger image side); default: the root stays put")
    p.add_argument("--render", default=None, metavar="OUT.mp4|OUT.gif",
                   help="also write a side-by-side animation, one frame per input frame (.mp4 needs ffmpeg)")
    p.add_argument("--video", default=None, help="draw the 2D on this video's frames (needs imageio)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cuda if available)")
    p.add_argument("--backend", default=None, help="stc_attention backend (default auto)")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast dtype of the forward passes (default none: float32)")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="windows per forward (default 256)")
    return p.parse_args(argv)


def smoothing_window(fps) -> int:
    """About 0.2 s of frames, odd, at least 5 (9 when the frame rate is unknown)."""
    if not fps:
        return 9
    n = max(5, int(round(0.2 * fps)))
    return n if n % 2 else n + 1


def main(argv=None) -> int:
    import torch

    from .checkpoint import load_checkpoint
    from .data.cameras import normalize_screen_coordinates

    args = parse_args(argv)
    fmt, joints = args.format, args.joints
    if fmt in JOINT_SETS:  # --format coco / h36m: the joint set, as before
        fmt, joints = "auto", joints or fmt
    for name in ("frames", "tds", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.smooth is not None and args.smooth != 0 and args.smooth < 3:
        raise UsageError(f"--smooth needs at least 3 frames, got {args.smooth}")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    if (args.width is None) != (args.height is None):
        raise UsageError("give both --width and --height")
    if args.width is not None and (args.width <= 0 or args.height <= 0):
        raise UsageError(f"--width/--height must be positive, got {args.width}x{args.height}")
    if args.bvh_root and not args.bvh:
        raise UsageError("--bvh-root needs --bvh")
    if args.render:
        from .render import check_output
        check_output(args.render)  # .mp4 without ffmpeg stops here

    # ---- everything that can fail on the input is checked before any file is written
    kp = read_keypoints(args.keypoints, format=None if fmt == "auto" else fmt, joints=joints, person=args.person)
    size = (args.width, args.height) if args.width is not None else kp.size
    if size is None:
        raise UsageError(f"{args.keypoints}: the file does not give the image size: pass --width and --height")
    fps = args.fps or kp.fps
    if fps is None and (args.tds is None or args.render or args.bvh):
        raise UsageError(f"{args.keypoints}: the file does not give the frame rate: pass --fps")
    xy, gaps = fill_gaps(kp, args.min_score)
    video = None
    if args.render and args.video:
        from .render import open_video
        video = open_video(args.video)  # unreadable video: stops here
    model = load_checkpoint(args.checkpoint, **({"backend": args.backend} if args.backend else {}))
    if model.config.get("num_joints", 17) != 17:
        raise UsageError(f"{args.checkpoint}: model has {model.config['num_joints']} joints, need 17")
    train_frames, train_tds = trained_window(args.checkpoint)
    frames = args.frames or train_frames
    tds = args.tds or window_stride(fps, train_tds)

    for note in kp.notes:
        print(f"{args.keypoints}: {note}")
    print(f"{args.keypoints}: {len(kp)} frames, {kp.format} file, {kp.joints} joints; {gaps}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    warn_slow_cpu_amp(torch.device(device).type, args.amp)
    x = normalize_screen_coordinates(xy, w=size[0], h=size[1]).astype(np.float32)
    poses = predict_sequence(model, x, frames, tds, args.mode, args.batch_size, device=device, amp=args.amp,
                             progress=True)
    if args.smooth is not None:
        window = args.smooth or smoothing_window(fps)
        before = jitter(poses)
        poses = savgol(poses, window)
        poses[:, 0] = 0
        print(f"smoothing (Savitzky-Golay, {window} frames, degree 2): jitter (mean frame-to-frame "
              f"acceleration) {before * 1000:.2f} -> {jitter(poses) * 1000:.2f} mm/frame^2")
    z_up = poses @ Z_UP.T

    out_npz = os.path.join(args.out, "poses_3d.npz")
    extra = {} if fps is None else {"fps": np.float32(fps)}
    write_npz(out_npz, compressed=True, reconstruction=poses, reconstruction_z_up=z_up, keypoints_2d=xy,
              scores=kp.scores, filled=gaps.filled, size=np.asarray(size, np.int32), frames=np.int32(frames),
              tds=np.int32(tds), mode=np.str_(args.mode), **extra)
    written = [out_npz]
    preview = os.path.join(args.out, "preview.png")
    plot_preview(xy, poses, preview)
    written.append(preview)
    if args.json:
        write_json(args.json, {
            "joints": list(H36M_JOINTS), "parents": list(H36M_PARENTS), "left": list(H36M_LEFT),
            "right": list(H36M_RIGHT), "units": "metres", "fps": fps, "mode": args.mode, "frames": frames,
            "tds": tds, "axes": "reconstruction: camera (x right, y down, z forward), root-relative; "
                                 "reconstruction_z_up: (x, z, -y)",
            "reconstruction": np.round(poses.astype(np.float64), 5).tolist(),
            "reconstruction_z_up": np.round(z_up.astype(np.float64), 5).tolist()})
        written.append(args.json)
    if args.bvh:
        from .bvh import root_trajectory, write_bvh
        root = root_trajectory(poses, xy, size) if args.bvh_root else None
        write_bvh(args.bvh, poses, fps, root=root)
        written.append(args.bvh)
    if args.render:
        from .render import render
        n = render(args.render, xy, poses, fps, size, filled=gaps.filled, video=args.video if video else None,
                   log=lambda m: print(m, file=sys.stderr))
        written.append(f"{args.render} ({n} frames at {fps:g} fps)")
    print(f"{len(poses)} frames lifted ({args.mode}, window {frames}, tds {tds}) -> {', '.join(written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
