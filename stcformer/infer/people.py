"""Every person in a video, offline: people boxes, BlazePose on each person, tracks across frames.

:class:`MultiPose` (detector name ``multipose``) uses only what the PyPI wheels carry, nothing
downloaded at run time:

1. candidate boxes in each frame: OpenCV's built-in HOG people detector
   (``cv2.HOGDescriptor_getDefaultPeopleDetector``, full bodies, run on the frame scaled by
   ``upscale`` so people about 85 pixels tall are found) and the box each live track is predicted
   at (its last box moved by its velocity), so a person HOG misses for a frame is still looked for;
2. MediaPipe BlazePose (full landmark model, static image mode) on each candidate's crop (box
   widened, scaled so its longer side is at least 256 pixels): the person's 33 landmarks and box;
3. with ``full_frame`` (default), BlazePose on the whole frame with the people found so far
   painted out, again until it finds nobody new or ``max_people``: people HOG cannot see
   (head and shoulders, large, seated);
4. duplicates (landmark boxes overlapping by IoU 0.5 or more) are merged, keeping the higher score;
5. tracks (:func:`link_people`): each frame's people are matched greedily, best first, to the
   tracks seen in the last ``max_miss`` frames by the overlap of their box with the track's
   predicted box (constant velocity, so two people crossing keep their ids), or else by the
   distance of the box centres under half the predicted box's size; an unmatched person starts a
   new track (re-identification over misses up to ``max_miss`` frames, default 1 s).

The result, :class:`People`, gives every track as ``(T, 33, 3)`` keypoints in the form
:meth:`Detector.detect <stcformer.infer.detect.Detector.detect>` returns (x, y pixels and the
BlazePose visibility; NaN x, y and score 0 in frames where the track has no detection), so each
track is lifted like a keypoint file's track. Tracks seen in fewer than ``min_frames`` frames
are dropped as noise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from stcformer.errors import UsageError
from stcformer.infer.detect import BlazePose, Detector, quiet_native_stderr

VELOCITY_SPAN = 5        # a track's velocity: over its last five detections
LOOK_WEIGHT = 1.0        # weight of the appearance distance (0..1) in the matching cost
CROP_SIDE = 256          # a crop's longer side is scaled up to at least this many pixels
CROP_MARGIN = 0.25       # a candidate box is widened by this share of its size on each side
MIN_SCORE = 0.5          # mean visibility of the 25 upper landmarks (face to hips) to accept a person


@dataclass
class People:
    """Every person's keypoints: ``tracks`` {id: (T, J, 3)} (NaN x, y, score 0 where absent) and
    ``boxes`` {id: (T, 4)} (x1, y1, x2, y2; NaN where absent), ids 0, 1, ... by first
    appearance; ``seconds`` of each stage (decode, boxes, pose, link) and ``frames``."""

    tracks: Dict[int, np.ndarray]
    boxes: Dict[int, np.ndarray]
    frames: int
    seconds: Dict[str, float] = field(default_factory=dict)

    def per_frame(self) -> np.ndarray:
        """(T,) people detected in each frame."""
        if not self.tracks:
            return np.zeros(self.frames, np.int64)
        return np.sum([np.isfinite(b).all(-1) for b in self.boxes.values()], axis=0)

    def rates(self) -> Dict[str, float]:
        """Frames/s of each stage (its own time only)."""
        return {k: self.frames / v if v > 0 else float("inf") for k, v in self.seconds.items()}

    def summary(self) -> str:
        n = self.per_frame()
        rates = ", ".join(f"{k} {v:.1f}" for k, v in self.rates().items())
        return (f"{len(self.tracks)} tracks, {n.mean():.2f} people per frame (max {n.max() if len(n) else 0}); "
                f"frames/s: {rates}")


def _box_of(kp: np.ndarray, w: int, h: int) -> np.ndarray:
    """The box of the landmarks (those BlazePose scores visible; all when too few), in the image."""
    seen = kp[:, 2] >= 0.5
    pts = kp[seen if seen.sum() >= 4 else np.ones(len(kp), bool), :2]
    x1, y1 = np.clip(pts.min(0), 0, [w, h])
    x2, y2 = np.clip(pts.max(0), 0, [w, h])
    return np.array([x1, y1, x2, y2], np.float64)


def _anchor(kp: np.ndarray) -> np.ndarray:
    """The box tracks are linked by: the face and shoulders (landmarks 0-12, those scored visible
    when at least three are), widened by a fifth; steadier than the whole body's box, whose
    hidden limbs BlazePose guesses anew every frame."""
    upper = kp[:13]
    seen = upper[:, 2] >= 0.5
    pts = upper[seen if seen.sum() >= 3 else np.ones(13, bool), :2].astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.2 * max(hi[0] - lo[0], hi[1] - lo[1], 1.0)
    return np.concatenate([lo - pad, hi + pad])


def overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes over the smaller one's area."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(inter / small) if small > 0 else 0.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap (intersection over union) of two (x1, y1, x2, y2) boxes."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def hog_boxes(frame: np.ndarray, hog, upscale: float = 1.5, min_weight: float = 0.3) -> List[np.ndarray]:
    """Full-body people boxes (x1, y1, x2, y2) of OpenCV's default HOG people detector."""
    import cv2

    img = cv2.resize(frame, None, fx=upscale, fy=upscale) if upscale != 1 else frame
    rects, weights = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
    weights = np.ravel(weights)
    return [np.array([x, y, x + bw, y + bh], np.float64) / upscale
            for (x, y, bw, bh), wt in zip(rects, weights) if wt >= min_weight]


def _body_of(anchor: np.ndarray) -> np.ndarray:
    """A box around the whole body of a person whose face-and-shoulders box is ``anchor``: as wide,
    reaching down four of its heights (crops are square and widened, see ``_crop``)."""
    h = anchor[3] - anchor[1]
    return np.array([anchor[0], anchor[1], anchor[2], anchor[3] + 3 * h])


class _Track:
    """A track while linking: its detections' frames and boxes, and where it is predicted next."""

    def __init__(self, tid: int, frame: int, box: np.ndarray, look: Optional[np.ndarray] = None):
        self.id, self.frames, self.boxes, self.look = tid, [frame], [box], look

    def predict(self, frame: int) -> np.ndarray:
        """The box at ``frame``, moving on at the velocity of the last (up to) five detections."""
        if len(self.frames) < 2:
            return self.boxes[-1]
        k = max(-len(self.frames), -VELOCITY_SPAN)
        dt = max(self.frames[-1] - self.frames[k], 1)
        velocity = (self.boxes[-1] - self.boxes[k]) / dt
        return self.boxes[-1] + velocity * (frame - self.frames[-1])

    def add(self, frame: int, box: np.ndarray, look: Optional[np.ndarray] = None) -> None:
        self.frames.append(frame)
        self.boxes.append(box)
        if look is not None:
            self.look = look if self.look is None else 0.8 * self.look + 0.2 * look


def _cost(box: np.ndarray, pred: np.ndarray, min_iou: float) -> Optional[float]:
    """Match cost of a person's box against a track's predicted box (None: no match)."""
    overlap = iou(box, pred)
    if overlap >= min_iou:
        return 1.0 - overlap
    size = np.sqrt(max((pred[2] - pred[0]) * (pred[3] - pred[1]), 1.0))
    dist = np.linalg.norm((box[:2] + box[2:]) / 2 - (pred[:2] + pred[2:]) / 2) / size
    return 1.0 + dist if dist <= 0.5 else None


def look_of(frame: np.ndarray, box: np.ndarray) -> Optional[np.ndarray]:
    """A person's appearance: the normalised hue-saturation histogram (16 x 4 bins) of the
    frame (RGB) inside ``box``; None for an empty box."""
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = frame[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
    if patch.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 4], [0, 180, 0, 256]).ravel()
    return (hist / max(hist.sum(), 1e-9)).astype(np.float32)


def _look_distance(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> float:
    """Hellinger distance of two histograms, 0 (same) .. 1; 0 when either is unknown."""
    if a is None or b is None:
        return 0.0
    return float(np.sqrt(max(0.0, 1.0 - np.sqrt(a * b).sum() / np.sqrt(max(a.sum() * b.sum(), 1e-12)))))


class Linker:
    """Links people into tracks frame by frame (:func:`link_people` in steps): :meth:`step` takes
    one frame's boxes and returns their track ids; :meth:`predicted` the boxes where the live
    tracks are expected in the next frame."""

    def __init__(self, max_miss: int = 10, min_iou: float = 0.3):
        self.max_miss, self.min_iou = max_miss, min_iou
        self.tracks: List[_Track] = []
        self.frame = 0

    def live(self) -> List[_Track]:
        return [t for t in self.tracks if self.frame - t.frames[-1] <= self.max_miss]

    def predicted(self) -> List[np.ndarray]:
        return [t.predict(self.frame) for t in self.live()]

    def step(self, boxes: List[np.ndarray], looks: Optional[List[np.ndarray]] = None) -> List[int]:
        """Track ids of one frame's ``boxes``; ``looks``: their appearance (:func:`look_of`),
        added to the cost so that people who meet are told apart by what they wear."""
        f = self.frame
        live = self.live()
        looks = looks if looks is not None else [None] * len(boxes)
        preds = [t.predict(f) for t in live]
        pairs = [(c + LOOK_WEIGHT * _look_distance(looks[i], live[k].look), i, k)
                 for i, b in enumerate(boxes) for k, p in enumerate(preds)
                 if (c := _cost(b, p, self.min_iou)) is not None]
        ids = [-1] * len(boxes)
        used = set()
        for _, i, k in sorted(pairs):
            if ids[i] < 0 and k not in used:
                ids[i] = live[k].id
                used.add(k)
                live[k].add(f, boxes[i], looks[i])
        for i, b in enumerate(boxes):
            if ids[i] < 0:
                ids[i] = len(self.tracks)
                self.tracks.append(_Track(ids[i], f, b, looks[i]))
        self.frame += 1
        return ids


def link_people(frame_boxes: List[List[np.ndarray]], max_miss: int = 10, min_iou: float = 0.3) -> List[List[int]]:
    """Track ids of every person of every frame (``frame_boxes[t]``: that frame's boxes): greedy,
    best first, against the tracks seen in the last ``max_miss`` frames, by overlap with each
    track's constant-velocity prediction, else by centre distance (see the module's notes). Ids
    are 0, 1, ... in order of first appearance."""
    linker = Linker(max_miss, min_iou)
    return [linker.step(list(boxes)) for boxes in frame_boxes]


class MultiPose(Detector):
    """Every person: HOG boxes and the tracks' predicted boxes, BlazePose (static) on each crop and
    on the frame with the people found painted out, linked into tracks (see the module)."""

    name = "multipose"
    joints = "blazepose"

    def __init__(self, upscale: float = 1.5, full_frame: bool = True, max_people: int = 20,
                 min_score: float = MIN_SCORE, max_miss: Optional[int] = None, min_frames: int = 5,
                 fps: Optional[float] = None, hog: bool = True):
        reason = self.unavailable_reason()
        if reason:
            raise UsageError(reason)
        import mediapipe as mp

        self._mp = mp
        self.upscale, self.full_frame, self.max_people = upscale, full_frame, max_people
        self.min_score, self.min_frames, self.use_hog = min_score, min_frames, hog
        self.max_miss = max_miss if max_miss is not None else (int(round(fps)) if fps else 10)
        self.description = (f"OpenCV HOG people boxes + MediaPipe BlazePose (full, static) per person, "
                            f"mediapipe {mp.__version__}")
        self._pose = self._hog = None
        self._reset()

    def _reset(self) -> None:
        self._linker = Linker(self.max_miss)
        self._history: List[List[np.ndarray]] = []
        self._ids: List[List[int]] = []
        self._kps: List[List[np.ndarray]] = []
        self.seconds = {"boxes": 0.0, "pose": 0.0, "link": 0.0}

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        reason = BlazePose.unavailable_reason()
        if reason:
            return reason
        try:
            import cv2  # noqa: F401
        except Exception:
            return "the multipose detector needs OpenCV: pip install opencv-python-headless"
        return None

    def session(self):
        return quiet_native_stderr()

    def start(self) -> None:
        import cv2

        self._pose = self._mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                  enable_segmentation=False, min_detection_confidence=0.5)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._reset()

    def stop(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def _landmarks(self, image: np.ndarray, x0: float = 0.0, y0: float = 0.0, s: float = 1.0) -> Optional[np.ndarray]:
        """(33, 3) landmarks of the person BlazePose finds in ``image`` (a crop at (x0, y0) of the
        frame, scaled by ``s``), in frame pixels; None when nobody (or too unsure)."""
        t0 = time.perf_counter()
        result = self._pose.process(np.ascontiguousarray(image))
        self.seconds["pose"] += time.perf_counter() - t0
        if result.pose_landmarks is None:
            return None
        h, w = image.shape[:2]
        kp = np.array([(p.x * w / s + x0, p.y * h / s + y0, p.visibility)
                       for p in result.pose_landmarks.landmark], np.float32)
        return kp if kp[:25, 2].mean() >= self.min_score else None

    def _crop(self, frame: np.ndarray, box: np.ndarray) -> Optional[np.ndarray]:
        import cv2

        H, W = frame.shape[:2]
        bw, bh = box[2] - box[0], box[3] - box[1]
        side = max(bw, bh) * (1 + 2 * CROP_MARGIN)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
        x1, y1 = int(min(cx + side / 2, W)), int(min(cy + side / 2, H))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = frame[y0:y1, x0:x1]
        s = max(1.0, CROP_SIDE / max(crop.shape[:2]))
        if s > 1:
            crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        return self._landmarks(crop, x0, y0, s)

    def _candidates(self, frame: np.ndarray) -> List[np.ndarray]:
        t0 = time.perf_counter()
        boxes = [_body_of(b) for b in self._linker.predicted()]
        if self.use_hog:
            for b in hog_boxes(frame[..., ::-1], self._hog, self.upscale):
                if all(iou(b, o) < 0.4 for o in boxes):
                    boxes.append(b)
        self.seconds["boxes"] += time.perf_counter() - t0
        return boxes

    def people_in(self, frame: np.ndarray) -> List[np.ndarray]:
        """(33, 3) landmarks of every person found in one RGB frame (no linking)."""
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        H, W = frame.shape[:2]
        found: List[Tuple[np.ndarray, np.ndarray]] = []
        for box in self._candidates(frame):
            kp = self._crop(frame, box)
            if kp is not None:
                found = _merge(found, kp, _box_of(kp, W, H))
        if self.full_frame:
            found = self._full_frame(frame, found)
        return [kp for kp, _ in found[:self.max_people]]

    def _full_frame(self, frame: np.ndarray, found: list) -> list:
        masked = frame.copy()
        H, W = frame.shape[:2]
        for _ in range(self.max_people - len(found)):
            for _, b in found:
                x1, y1, x2, y2 = _widen(b, W, H, 0.1)
                masked[y1:y2, x1:x2] = 127
            kp = self._landmarks(masked)
            if kp is None:
                break
            n = len(found)
            found = _merge(found, kp, _box_of(kp, W, H))
            if len(found) == n:  # only a person already found
                break
        return found

    def detect_frame(self, frame: np.ndarray) -> np.ndarray:
        """(33, 3) landmarks of the largest person of the frame (the single-person interface);
        :meth:`detect_people` gives everyone."""
        people = self._step(frame)
        out = np.full((33, 3), np.nan, np.float32)
        out[:, 2] = 0
        if people:
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in self._history[-1]]
            out[:] = people[int(np.argmax(areas))]
        return out

    def _step(self, frame: np.ndarray) -> List[np.ndarray]:
        people = self.people_in(frame)
        H, W = frame.shape[:2]
        t0 = time.perf_counter()
        boxes = [_box_of(kp, W, H) for kp in people]
        self._history.append(boxes)
        looks = [look_of(frame, b) for b in boxes]
        self._ids.append(self._linker.step([_anchor(kp) for kp in people], looks))
        self._kps.append(people)
        self.seconds["link"] += time.perf_counter() - t0
        return people

    def detect_people(self, frames: Iterable[np.ndarray], total: Optional[int] = None,
                      progress: bool = False) -> People:
        """Every person of the frames, as tracks (:class:`People`)."""
        stages: dict = {}
        self.detect(frames, total=total, progress=progress, stages=stages)
        return _collect(self._kps, self._history, self._ids, len(self._history), self.min_frames,
                        dict(decode=stages["decode"].seconds, **self.seconds))


def _widen(box: np.ndarray, W: int, H: int, share: float) -> Tuple[int, int, int, int]:
    bw, bh = box[2] - box[0], box[3] - box[1]
    return (int(max(box[0] - share * bw, 0)), int(max(box[1] - share * bh, 0)),
            int(min(box[2] + share * bw, W)), int(min(box[3] + share * bh, H)))


def _merge(found: list, kp: np.ndarray, box: np.ndarray, same: float = 0.6) -> list:
    """``found`` [(landmarks, box)] with a new person added, or replacing the one it duplicates
    (the face-and-shoulders boxes overlap by ``same`` of the smaller one) when it scores higher."""
    for i, (k, b) in enumerate(found):
        if overlap_of_smaller(_anchor(k), _anchor(kp)) >= same:
            if kp[:25, 2].mean() > k[:25, 2].mean():
                found[i] = (kp, box)
            return found
    return found + [(kp, box)]


def _collect(kps: list, history: list, ids: list, T: int, min_frames: int, seconds: dict) -> People:
    """Per-track (T, 33, 3) keypoints and (T, 4) boxes from the per-frame people and their ids;
    tracks seen in fewer than ``min_frames`` frames dropped, the rest renumbered 0, 1, ..."""
    count: Dict[int, int] = {}
    for frame_ids in ids:
        for tid in frame_ids:
            count[tid] = count.get(tid, 0) + 1
    keep = sorted(t for t, n in count.items() if n >= min_frames)
    new = {t: i for i, t in enumerate(keep)}
    tracks = {i: np.full((T, 33, 3), np.nan, np.float32) for i in new.values()}
    boxes = {i: np.full((T, 4), np.nan, np.float64) for i in new.values()}
    for f in range(T):
        for tid, kp, box in zip(ids[f], kps[f], history[f]):
            if tid in new:
                tracks[new[tid]][f] = kp
                boxes[new[tid]][f] = box
    for tr in tracks.values():
        tr[~np.isfinite(tr[..., :2]).all(-1), 2] = 0
    return People(tracks=tracks, boxes=boxes, frames=T, seconds=seconds)


__all__ = ["MultiPose", "People", "link_people", "Linker", "hog_boxes", "iou"]
