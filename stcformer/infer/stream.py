"""Online lifting: 2D keypoints in one frame at a time, 3D poses out as soon as their window is there.

:class:`StreamLifter` lifts like ``stcformer.lift(..., mode="center")``: frame t is the centre of
its own window of ``T = frames`` frames sampled ``tds`` apart, flip-averaged, with the same
checkpoint loading, normalisation and flip averaging (``stcformer.evaluation.predict``). The window of frame t
reaches ``pad*tds`` frames ahead (``pad = (T-1)//2``), so by default frame t comes out when frame
``t + pad*tds`` has arrived: a latency of ``pad*tds`` frames (27 frames, tds 3: 39 frames, 0.78 s at
50 fps). ``latency=L`` (0 <= L <= pad*tds) emits frame t once frame t+L has arrived and puts the
newest frame in place of the window's frames that have not arrived yet, as the offline windows
repeat the last frame of a sequence: less delay, less accuracy. :meth:`StreamLifter.flush` ends the
sequence and emits the frames still waiting, their windows repeating the last frame, as offline.
With complete detections and ``latency=None`` the output equals the offline centre mode.

Missing joints (score under ``min_score``, no value, or NaN/zero) and missing frames (fewer than
half the joints usable, or no detection) follow the offline rules of
:func:`stcformer.infer.gaps.fill_gaps`, with the frames that have arrived: a gap between two usable
frames that have both arrived is interpolated linearly, as offline; a gap still open at the newest
frame holds the last usable value (offline would interpolate towards the first usable value after
it, which has not arrived), so the frames whose window reaches into an open gap can differ from
offline. A joint with no usable value yet (the stream starting without detections) takes its raw
position where it has one, else the image centre; offline would take its first usable value from
the future. No frame is dropped and there is no minimum share of usable frames.

:func:`serve` runs a StreamLifter over JSON lines (one detection in, one pose out per line).
"""
from __future__ import annotations

import json
import math
import sys
from collections import deque
from typing import Optional, TextIO

import numpy as np
import torch

from stcformer.data.skeleton import H36M_LEFT, H36M_RIGHT, H36M_ROOT
from stcformer.data.windows import flip_pose
from stcformer.errors import STCFormerError, UsageError
from stcformer.infer.gaps import MIN_JOINT_SHARE
from stcformer.infer.joints import JOINT_SETS, NUM_JOINTS
from stcformer.infer.readers import as_keypoints
from stcformer.evaluation.predict import flip_average
from stcformer.infer.pipeline import check_window, lifting_model, lifting_size, lifting_window, normalised_frames


class StreamLifter:
    """Lift one person's 2D keypoints frame by frame (centre mode, flip-averaged).

    Args:
        checkpoint: a path or a loaded model, as for :func:`stcformer.lift`.
        fps: frame rate of the keypoints (sets tds = max(1, round(train_tds * fps / 50))).
        size: (width, height) of the image in pixels.
        latency: frames of delay, 0 .. ``pad*tds``; default ``pad*tds`` (the full window: output
            equal to the offline centre mode). Smaller values repeat the newest frame in place of
            the window's frames that have not arrived.
        frames, tds: window length and step; default the checkpoint's training window and tds
            scaled by fps/50.
        joints: joint set of the pushed keypoints (``h36m``, ``coco``, ``halpe26``; default h36m
            for 17 joints, halpe26 for 26).
        min_score: joints scoring less count as missing (as offline).
        device, amp: where the model runs and the autocast dtype (default float32).
        runtime: ``torch`` (default) or ``onnxruntime``: ``checkpoint`` is then an ONNX file of
            ``python -m stcformer.deploy onnx``, run by ONNX Runtime (see :func:`stcformer.lift`).

    Attributes:
        latency: frames between a frame's arrival and its pose coming out.
        latency_s: the same in seconds (None without ``fps``).
        frames, tds, pad: the window.
        emitted: frames emitted so far in this sequence (the next pose is frame ``emitted``).
    """

    def __init__(self, checkpoint, fps: Optional[float] = None, size=None, latency: Optional[int] = None,
                 frames: Optional[int] = None, tds: Optional[int] = None, joints: Optional[str] = None,
                 min_score: float = 0.3, device=None, amp: Optional[str] = None, flip: bool = True,
                 runtime: str = "torch"):
        if fps is not None and not fps > 0:
            raise UsageError(f"fps must be positive, got {fps}")
        if joints is not None and joints not in JOINT_SETS:
            raise UsageError(f"joints must be one of {', '.join(JOINT_SETS)}, got {joints!r}")
        self.size = lifting_size(fps, size, tds, "StreamLifter")
        self.model = lifting_model(checkpoint, device, runtime=runtime).eval()
        self.frames, self.tds = lifting_window(self.model, fps, frames, tds)
        check_window(self.model, self.frames)
        self.pad = (self.frames - 1) // 2
        full = self.pad * self.tds
        if latency is None:
            latency = full
        if int(latency) != latency or not 0 <= latency <= full:
            raise UsageError(f"latency must be a whole number of frames from 0 to {full} "
                             f"(window {self.frames}, tds {self.tds}), got {latency!r}")
        self.latency = int(latency)
        self.latency_s = self.latency / fps if fps else None
        self.device = torch.device(device or next(self.model.parameters()).device)
        self.joints, self.min_score, self.amp, self.flip = joints, min_score, amp, flip
        self.left, self.right, self.root = list(H36M_LEFT), list(H36M_RIGHT), H36M_ROOT
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (what :meth:`flush` does after emitting the tail)."""
        self.emitted = 0
        self._arrived = 0
        self._first = 0                        # frame index of the buffer's first frame
        self._xy = deque()                     # raw (17, 2) pixels, NaN where missing
        self._use = deque()                    # (17,) usable joints (as fill_gaps decides)
        self._ok = deque()                     # frame detected (at least half the joints usable)
        self._anchor_t = np.full(17, -1, dtype=np.int64)  # last usable frame of each joint before the buffer
        self._anchor_xy = np.zeros((17, 2), dtype=np.float32)

    # ---------------------------------------------------------------- input

    def _frame(self, keypoints):
        """(17, 2) Human3.6M pixels (NaN where missing) and (17,) scores of one pushed frame."""
        if keypoints is None:
            return np.full((17, 2), np.nan, np.float32), np.zeros(17, np.float32)
        arr = np.asarray(keypoints, dtype=np.float32)
        if arr.size == 0:
            return np.full((17, 2), np.nan, np.float32), np.zeros(17, np.float32)
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise UsageError(f"keypoints of one frame must be (J, 2) or (J, 3), got shape {arr.shape}")
        if self.joints is not None and arr.shape[0] != NUM_JOINTS[self.joints]:
            raise UsageError(f"{arr.shape[0]} joints, but the {self.joints} joint set has {NUM_JOINTS[self.joints]}")
        kp = as_keypoints(arr[None], joints=self.joints)  # the offline per-frame rules: zero/NaN joints missing
        return kp.xy[0], kp.scores[0]

    def push(self, keypoints) -> Optional[np.ndarray]:
        """Add the next frame's 2D keypoints: (J, 2) or (J, 3) with scores, pixels; None (or an empty
        array) for a frame with no detection. Returns the 3D pose (17, 3) float32, root-relative
        metres, of frame ``t = (frames pushed) - 1 - latency`` once its frames have arrived, else None."""
        xy, sc = self._frame(keypoints)
        ok = (sc >= self.min_score) & (sc > 0) & np.isfinite(xy).all(-1)
        frame_ok = ok.sum() >= math.ceil(MIN_JOINT_SHARE * len(ok))
        self._xy.append(xy)
        self._use.append(ok & frame_ok)
        self._ok.append(bool(frame_ok))
        self._arrived += 1
        t = self._arrived - 1 - self.latency
        if t < 0:
            return None
        return self._emit(t)

    def flush(self) -> np.ndarray:
        """End the sequence: the poses (k, 17, 3) of the k frames still waiting (k = min(latency,
        frames pushed)), their windows repeating the last frame as the offline windows do. The
        lifter then starts a new sequence."""
        poses = [self._emit(t) for t in range(self.emitted, self._arrived)]
        self.reset()
        return np.stack(poses) if poses else np.zeros((0, 17, 3), np.float32)

    # ---------------------------------------------------------------- output

    def _filled(self) -> np.ndarray:
        """The buffer's frames (n, 17, 2) with missing joints filled from the frames that have arrived."""
        xy = np.stack(self._xy)
        use = np.stack(self._use)
        times = np.arange(self._first, self._first + len(xy))
        out = np.empty_like(xy)
        for j in range(xy.shape[1]):
            good = np.flatnonzero(use[:, j])
            st, sv = times[good], xy[good, j]
            if self._anchor_t[j] >= 0:
                st = np.concatenate([[self._anchor_t[j]], st])
                sv = np.concatenate([self._anchor_xy[j][None], sv])
            if len(st) == 0:  # no usable value yet: the raw position of detected frames, else the image centre
                raw = np.flatnonzero(np.asarray(self._ok) & np.isfinite(xy[:, j]).all(-1))
                st, sv = times[raw], xy[raw, j]
                if len(st) == 0:
                    out[:, j] = np.asarray(self.size, np.float32) / 2
                    continue
            for c in range(2):  # np.interp holds the end values, as fill_gaps
                out[:, j, c] = np.interp(times, st, sv[:, c])
        return out

    @torch.no_grad()
    def _emit(self, t: int) -> np.ndarray:
        # frames not arrived yet (beyond t + latency; at the end, beyond the last) repeat the newest
        steps = (np.arange(2 * self.pad + 1) - self.pad) * self.tds
        idx = np.clip(t + steps, 0, self._arrived - 1) - self._first
        x = normalised_frames(self._filled()[idx], self.size)[None]
        x_f = flip_pose(x, self.left, self.right) if self.flip else None
        x = torch.from_numpy(x).to(self.device)
        x_f = torch.from_numpy(x_f).to(self.device) if x_f is not None else None
        pred = flip_average(self.model, x, x_f, self.left, self.right, self.amp)[0, self.pad]
        pred[self.root] = 0
        self.emitted = t + 1
        self._drop(t + 1 - self.pad * self.tds)
        return pred.cpu().numpy()

    def _drop(self, keep_from: int) -> None:
        """Forget frames before ``keep_from`` (no later window reads them), keeping each joint's
        last usable value as the left end of a gap that starts in the buffer."""
        while self._xy and self._first < keep_from:
            xy, use = self._xy.popleft(), self._use.popleft()
            self._ok.popleft()
            self._anchor_t[use] = self._first
            self._anchor_xy[use] = xy[use]
            self._first += 1


# ---------------------------------------------------------------- JSON lines

def _detection(doc):
    """The keypoints of one parsed JSON line, or None for a frame without a detection."""
    if isinstance(doc, dict):
        if "keypoints" not in doc:
            raise ValueError('expected {"keypoints": [[x, y, score], ...]} or a list')
        doc = doc["keypoints"]
    if doc is None:
        return None
    if not isinstance(doc, list):
        raise ValueError(f"keypoints must be a list, got {type(doc).__name__}")
    if not doc:
        return None
    try:
        arr = np.asarray(doc, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("keypoints must be numbers: [[x, y, score], ...] or flat x, y, score triples") from None
    if arr.ndim == 1:  # flat x, y, score triples, as COCO-style detectors write them
        if len(arr) % 3:
            raise ValueError(f"a flat keypoint list needs x, y, score triples, got {len(arr)} numbers")
        arr = arr.reshape(-1, 3)
    return arr


def serve(checkpoint, fps, size, latency=None, joints=None, device=None, amp=None,
          inp: Optional[TextIO] = None, out: Optional[TextIO] = None, runtime: str = "torch") -> int:
    """Lift JSON lines: one detection per line in, one pose per line out, flushed after each line.

    A line is ``{"keypoints": [[x, y, score], ...]}`` (other keys are ignored), a bare list
    ``[[x, y, score], ...]`` or ``[[x, y], ...]``, or flat ``x, y, score`` triples; 17 joints in
    Human3.6M order (``joints="coco"``: COCO-17; 26 joints: Halpe-26). ``null``, ``[]`` or
    ``{"keypoints": []}`` is a frame without a detection; blank lines are skipped. Each output
    line is ``{"frame": t, "pose_3d": [[x, y, z], ...]}`` (17 joints, root-relative metres, camera
    axes), frame t being the t-th detection line (from 0), written ``latency`` frames after it
    arrived (see :class:`StreamLifter`); the frames still waiting are written at the end of the
    input. ``runtime="onnxruntime"``: ``checkpoint`` is an exported ONNX file. ``inp``/``out`` default to ``sys.stdin``/``sys.stdout``. Returns 0; a line that is not a
    detection, or bad arguments, print one line on stderr (naming the line) and return 2.
    """
    inp = sys.stdin if inp is None else inp
    out = sys.stdout if out is None else out
    name = getattr(inp, "name", "<input>")
    try:
        lifter = StreamLifter(checkpoint, fps=fps, size=size, latency=latency, joints=joints, device=device, amp=amp,
                              runtime=runtime)
    except STCFormerError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2

    def write(t, pose):
        out.write(json.dumps({"frame": t, "pose_3d": np.round(pose.astype(np.float64), 6).tolist()}) + "\n")
        out.flush()

    for lineno, line in enumerate(inp, 1):
        if not line.strip():
            continue
        try:
            pose = lifter.push(_detection(json.loads(line)))
        except (ValueError, STCFormerError) as e:  # json.JSONDecodeError is a ValueError
            problem = " ".join(str(e).split())
            print(f"error: {name}: line {lineno}: {problem}", file=sys.stderr, flush=True)
            return 2
        if pose is not None:
            write(lifter.emitted - 1, pose)
    first = lifter.emitted
    for i, pose in enumerate(lifter.flush()):
        write(first + i, pose)
    return 0


__all__ = ["StreamLifter", "serve"]
