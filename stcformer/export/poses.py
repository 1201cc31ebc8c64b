"""The files one lifted person is written to: ``poses_3d.npz``, ``preview.png`` and, if asked, a
JSON twin of the npz (:func:`pose_document`) and a BVH animation (:mod:`.bvh`).

:class:`PoseTrack` is one person's lifted frames inside a sequence: all of them for a single
person, or the span between a track's first and last detection in a multi-person file, which is
written over the whole sequence (NaN before and after the span; a BVH, which has no missing
frames, holds the first and last pose there). :class:`LiftSettings` says how the poses were
lifted; every file records it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from stcformer.data.skeleton import H36M_JOINTS, H36M_LEFT, H36M_PARENTS, H36M_RIGHT
from stcformer.export.render import Z_UP
from stcformer.export.skeleton import BONES_CHOICES, DEFAULT_HEIGHT, fixed_skeleton
from stcformer.io import write_json, write_npz

AXES = ("reconstruction: camera (x right, y down, z forward), root-relative; "
        "reconstruction_z_up: (x, z, -y); root_translation: camera axes")


@dataclass(frozen=True)
class LiftSettings:
    """How the poses were lifted: the input's frame rate (None if unknown) and image size
    ``(w, h)``, the window (``frames`` sampled ``tds`` apart), ``mode`` and the focal length in
    pixels that ``root_translation`` was fitted with."""

    fps: Optional[float]
    size: Tuple[int, int]
    frames: int
    tds: int
    mode: str
    focal: float


@dataclass
class PoseTrack:
    """One person's lifted span, frames ``first`` .. ``first + len(poses) - 1`` of the sequence.

    poses: (n, 17, 3) root-relative 3D, metres, camera axes.
    keypoints: (n, 17, 2) the gap-filled pixel 2D it was lifted from; filled: (n, 17) which of
        those values were filled.
    root: (n, 3) the root's camera-space position (:func:`stcformer.export.bvh.root_trajectory`).
    scores: (T, 17) the 2D scores of every frame of the sequence (T = ``len(scores)``).
    track: the track id of a person in a multi-person file; its files then cover all T frames and
        say the span (``track``, ``span``, ``lifted``). None for the one person of a sequence.
    height: metres standing of ``skeleton_3d`` (:func:`~stcformer.export.skeleton.fixed_skeleton`),
        or None (or ``"raw"``) for the model's scale.
    Rows of ``poses`` that are NaN are frames with no pose (far from the person's detections).
    """

    poses: np.ndarray
    keypoints: np.ndarray
    filled: np.ndarray
    root: np.ndarray
    scores: np.ndarray
    first: int = 0
    track: Optional[int] = None
    height: Union[None, float, str] = DEFAULT_HEIGHT
    _skeleton: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)

    @property
    def total(self) -> int:
        return len(self.scores)

    @property
    def last(self) -> int:
        return self.first + len(self.poses) - 1

    def full(self, values: np.ndarray, fill=np.nan) -> np.ndarray:
        """The span's ``values`` placed in all T frames, ``fill`` outside the span."""
        out = np.full((self.total,) + values.shape[1:], fill, dtype=values.dtype)
        out[self.first:self.first + len(values)] = values
        return out

    def held(self, values: np.ndarray) -> np.ndarray:
        """The span's ``values`` over all T frames, the first and last held before and after it."""
        return values[np.clip(np.arange(self.total) - self.first, 0, len(values) - 1)]

    def without(self, absent: np.ndarray) -> "PoseTrack":
        """A copy whose poses are NaN in the ``absent`` frames ((T,) mask over the whole sequence,
        e.g. :func:`stcformer.infer.gaps.absent_frames`)."""
        poses = np.array(self.poses, dtype=np.float32, copy=True)
        poses[np.asarray(absent, bool)[self.first:self.last + 1]] = np.nan
        return PoseTrack(poses=poses, keypoints=self.keypoints, filled=self.filled, root=self.root,
                         scores=self.scores, first=self.first, track=self.track, height=self.height)

    @property
    def posed(self) -> np.ndarray:
        """(n,) the span's frames with a pose (the others are NaN: far from any detection)."""
        return np.isfinite(np.asarray(self.poses)).all(axis=(1, 2))

    def skeleton(self) -> tuple:
        """``(skeleton_3d (n, 17, 3), bone_lengths (17,), scale)`` of the span
        (:func:`~stcformer.export.skeleton.fixed_skeleton` at :attr:`height`, bones measured on
        the joints that were not filled), computed once."""
        if self._skeleton is None:
            self._skeleton = fixed_skeleton(self.poses, H36M_PARENTS, self.height, reliable=~np.asarray(self.filled, bool))
        return self._skeleton

    def bones(self, bones: str = "fixed") -> Tuple[np.ndarray, np.ndarray]:
        """(poses (n, 17, 3), root (n, 3)) to draw or animate: ``skeleton_3d`` and the root scaled
        with it for ``"fixed"``, the raw ``poses`` and ``root`` for ``"raw"``."""
        if bones not in BONES_CHOICES:
            raise ValueError(f"bones must be one of {', '.join(BONES_CHOICES)}, got {bones!r}")
        if bones == "raw":
            return np.asarray(self.poses), np.asarray(self.root)
        skel, _, scale = self.skeleton()
        return skel, np.asarray(self.root, dtype=np.float64) * scale


def _posed_only(track: PoseTrack, values: np.ndarray) -> np.ndarray:
    """The span's ``values`` (n, ...) as float, NaN in the frames without a pose."""
    v = np.asarray(values, dtype=np.float32).copy()
    v[~track.posed] = np.nan
    return v


def _skeleton_arrays(track: PoseTrack) -> dict:
    skel, lengths, scale = track.skeleton()
    height = np.nan if track.height is None or isinstance(track.height, str) else float(track.height)
    return dict(skeleton_3d=track.full(skel), bone_lengths=lengths, skeleton_scale=np.float32(scale),
                height=np.float32(height))


def pose_arrays(track: PoseTrack, how: LiftSettings) -> dict:
    """The arrays of ``poses_3d.npz`` (all T frames)."""
    rec = track.full(track.poses)
    arrays = dict(reconstruction=rec, reconstruction_z_up=rec @ Z_UP.T,
                  keypoints_2d=track.full(_posed_only(track, track.keypoints)),
                  scores=track.scores, filled=track.full(track.filled, False),
                  root_translation=track.full(_posed_only(track, track.root)), focal=np.float32(how.focal),
                  size=np.asarray(how.size, np.int32), frames=np.int32(how.frames), tds=np.int32(how.tds),
                  mode=np.str_(how.mode), posed=track.full(track.posed, False), **_skeleton_arrays(track))
    if how.fps is not None:
        arrays["fps"] = np.float32(how.fps)
    if track.track is not None:
        lifted = np.zeros(track.total, bool)
        lifted[track.first:track.last + 1] = track.posed
        arrays.update(track=np.int32(track.track), span=np.asarray([track.first, track.last], np.int32),
                      lifted=lifted)
    return arrays


def pose_document(track: PoseTrack, how: LiftSettings) -> dict:
    """The JSON twin of ``poses_3d.npz``: the skeleton, the settings and the 3D of all T frames
    (rounded to 0.01 mm; null outside a track's span and in frames without a pose), with
    ``skeleton_3d``, ``bone_lengths``, ``skeleton_scale`` and ``height``."""
    rec = track.full(track.poses)
    sk = _skeleton_arrays(track)
    doc = {"joints": list(H36M_JOINTS), "parents": list(H36M_PARENTS), "left": list(H36M_LEFT),
           "right": list(H36M_RIGHT), "units": "metres", "fps": how.fps, "mode": how.mode,
           "frames": how.frames, "tds": how.tds, "axes": AXES, "focal": how.focal,
           "reconstruction": np.round(rec.astype(np.float64), 5).tolist(),
           "reconstruction_z_up": np.round((rec @ Z_UP.T).astype(np.float64), 5).tolist(),
           "root_translation": np.round(track.full(_posed_only(track, track.root)).astype(np.float64), 5).tolist(),
           "posed": track.full(track.posed, False).tolist(),
           "skeleton_3d": np.round(sk["skeleton_3d"].astype(np.float64), 5).tolist(),
           "bone_lengths": np.round(sk["bone_lengths"].astype(np.float64), 5).tolist(),
           "skeleton_scale": float(sk["skeleton_scale"]),
           "height": None if np.isnan(sk["height"]) else float(sk["height"])}
    if track.track is not None:
        doc.update(track=int(track.track), span=[track.first, track.last])
    return doc


def write_pose_files(folder, track: PoseTrack, how: LiftSettings, json_path=None, bvh_path=None,
                     bvh_root: bool = False, bones: str = "raw") -> List[str]:
    """``folder``/poses_3d.npz and ``folder``/preview.png, and ``json_path`` and ``bvh_path`` when
    given (the BVH's root moves along ``root_translation`` with ``bvh_root``); returns the paths
    written, in order. The preview and the BVH show ``skeleton_3d`` (``bones="fixed"``) or the
    raw ``reconstruction`` (``"raw"``); frames without a pose are left out of the preview and
    held in the BVH."""
    from stcformer.export.plots import plot_preview

    poses, root = track.bones(bones)
    folder = os.fspath(folder)
    written = [os.path.join(folder, "poses_3d.npz"), os.path.join(folder, "preview.png")]
    write_npz(written[0], compressed=True, **pose_arrays(track, how))
    posed = track.posed
    plot_preview(track.keypoints[posed], poses[posed], written[1])
    if json_path:
        write_json(json_path, pose_document(track, how))
        written.append(os.fspath(json_path))
    if bvh_path:
        from stcformer.export.bvh import write_bvh

        write_bvh(bvh_path, track.held(poses), how.fps, root=track.held(root) if bvh_root else None)
        written.append(os.fspath(bvh_path))
    return written


__all__ = ["PoseTrack", "LiftSettings", "pose_arrays", "pose_document", "write_pose_files", "AXES"]
