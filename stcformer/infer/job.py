"""What one offline lifting run is asked to do (:class:`LiftJob`), checked before anything heavy.

A job names its input (a keypoint file, or a video to detect the 2D keypoints in), the model (a
checkpoint, or an exported ONNX file), the lifting settings and the output files.
:meth:`LiftJob.check` checks the numbers and the paths with the standard library only, so a typo
or a missing, empty or non-video file is told before torch, mediapipe or the model load;
:func:`stcformer.infer.run.run_job` does the rest. ``python -m stcformer.infer`` builds a job from
its flags; Python code builds one directly::

    from stcformer.infer.job import LiftJob
    from stcformer.infer.run import run_job
    result = run_job(LiftJob(checkpoint="runs/quick/best.pth", keypoints="people.json", out="lifted",
                             person="all", fps=30))
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

from stcformer.errors import CheckpointError, DataError, UsageError

# packages each detector needs, looked up (not imported) before anything heavy loads
DETECTOR_PACKAGES = {"blazepose": "mediapipe", "multipose": "mediapipe"}


@dataclasses.dataclass
class LiftJob:
    """One offline run: input, model, how to lift, what to write (the flags of
    ``python -m stcformer.infer`` of the same names)."""

    out: Optional[str] = None
    checkpoint: Optional[str] = None
    onnx: Optional[str] = None
    keypoints: Optional[str] = None
    video: Optional[str] = None
    detector: str = "blazepose"
    format: str = "auto"
    joints: Optional[str] = None
    person: Union[int, str, None] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    tds: Optional[int] = None
    frames: Optional[int] = None
    mode: str = "seq2seq"                    # as accurate as "center", 13-32x faster (bench/RESULTS.md)
    min_score: float = 0.3
    smooth: Optional[int] = None
    focal: Optional[float] = None
    json: Optional[str] = None
    bvh: Optional[str] = None
    bvh_root: bool = False
    render: Optional[str] = None
    device: Optional[str] = None
    backend: Optional[str] = None
    amp: str = "none"
    batch_size: int = 256
    max_gap: Optional[int] = None            # frames; None: about half a second; negative: fill every gap
    body_height: Union[float, str, None] = 1.70  # metres of skeleton_3d; "raw": the model's scale
    bones: str = "fixed"                     # the BVH's and the render's bones: "fixed" or "raw"
    html: Optional[str] = None               # the 3D viewer page (stcformer.export.viewer)
    html_video: bool = False                 # the page shows the video's frames under the 2D keypoints

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.onnx else "torch"

    @property
    def model_file(self) -> str:
        return self.onnx or self.checkpoint

    @property
    def detecting(self) -> bool:
        return self.keypoints is None

    @property
    def every(self) -> bool:
        return self.person == "all"

    def check(self) -> "LiftJob":
        """The job with ``person`` parsed, once every number, flag combination and path is checked
        (UsageError / DataError / CheckpointError, one line each); nothing is imported or written."""
        check_numbers(self)
        check_model(self)
        if self.out is None:
            raise UsageError("--out is required (the output folder)")
        job = dataclasses.replace(self, person=parse_person(self.person))
        check_combinations(job)
        check_paths(job)
        return job


def parse_person(value):
    if value is None or value == "all" or isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--person takes a track id, a rank or 'all', got {value!r}") from None


def check_numbers(job) -> None:
    for name in ("frames", "tds", "batch_size"):
        v = getattr(job, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if job.smooth is not None and job.smooth != 0 and job.smooth < 3:
        raise UsageError(f"--smooth needs at least 3 frames, got {job.smooth}")
    if job.fps is not None and not job.fps > 0:
        raise UsageError(f"--fps must be positive, got {job.fps}")
    if job.focal is not None and not job.focal > 0:
        raise UsageError(f"--focal must be positive, got {job.focal}")
    if (job.width is None) != (job.height is None):
        raise UsageError("give both --width and --height")
    if job.width is not None and (job.width <= 0 or job.height <= 0):
        raise UsageError(f"--width/--height must be positive, got {job.width}x{job.height}")
    if getattr(job, "bones", "fixed") not in ("fixed", "raw"):
        raise UsageError(f"--bones is fixed or raw, got {job.bones!r}")
    body = getattr(job, "body_height", None)
    if body not in (None, "raw") and not (isinstance(body, (int, float)) and 0.5 <= body <= 2.5):
        raise UsageError(f"--body-height takes metres (0.5 to 2.5) or 'raw', got {body!r}")


def check_model(job) -> None:
    """--checkpoint or --onnx, one of them; --onnx runs in ONNX Runtime on the CPU."""
    if (job.checkpoint is None) == (job.onnx is None):
        raise UsageError("give --checkpoint CKPT, or --onnx MODEL.onnx (an exported model)")
    if job.onnx:
        import importlib.util

        if job.backend is not None or job.amp != "none" or job.device not in (None, "cpu"):
            raise UsageError("--onnx runs in ONNX Runtime on the CPU in the file's dtype: leave out --backend, "
                             "--amp and --device")
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError("onnxruntime is not installed (the deploy extra): pip install 'stcformer[deploy]'")


def check_combinations(job) -> None:
    if job.keypoints is None and job.video is None:
        raise UsageError("give --keypoints FILE, or --video FILE to detect the 2D keypoints in it")
    if job.bvh_root and not job.bvh:
        raise UsageError("--bvh-root needs --bvh")
    if job.html is not None and not str(job.html).lower().endswith((".html", ".htm")):
        raise UsageError(f"--html {job.html}: the viewer is a .html file")
    if job.html_video and not (job.html and job.video):
        raise UsageError("--html-video needs --html and --video (the frames come from the video)")
    if job.detecting:
        if isinstance(job.person, int):
            raise UsageError(f"--person {job.person}: the {job.detector} detector finds one person per frame; "
                             "for several people pass a multi-person detector's JSON with --keypoints")
        if job.format != "auto" or job.joints is not None:
            raise UsageError("--format and --joints describe a --keypoints file; the detector gives its own")


def check_paths(job) -> None:
    """The files the job names, looked at before torch, mediapipe or the model load: a missing
    file, or a video that is empty, an image or no video at all, stops here in well under a
    second. A detector that is not installed is told first (it is what the user must fix first)."""
    import importlib.util

    from stcformer.infer.video import check_file

    if job.keypoints is not None and not os.path.isfile(job.keypoints):
        raise DataError(job.keypoints, "no such file")
    if job.video is not None:
        package = DETECTOR_PACKAGES.get(job.detector)
        if job.detecting and package and importlib.util.find_spec(package) is None:
            from stcformer.infer.detectors import check_detector

            check_detector(job.detector)  # raises, naming what to install
        check_file(job.video)
    check_checkpoint(job.model_file)


def check_checkpoint(path) -> None:
    """The messages of stcformer.model.checkpoint for a missing or empty file, before torch loads."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (empty file)")


__all__ = ["LiftJob", "check_checkpoint", "check_model", "check_numbers", "parse_person", "DETECTOR_PACKAGES"]
