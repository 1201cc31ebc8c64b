"""Read a video's 2D keypoints from a file, as :class:`~stcformer.infer.keypoints.Keypoints` in
Human3.6M-17 order with a score per joint.

One reader per file format (:data:`FORMATS`), chosen by name or detected from the file:

``array``
    ``.npy`` or ``.npz`` with one array (or keys ``keypoints`` [+ ``scores``]), shaped
    (T, J, 2) or (T, J, 3) (the third column a score), optionally with a leading person axis of 1.
    An ``.npz`` may also carry scalars ``fps``, ``width`` and ``height``.
``demo``
    the official demo's ``.npz`` (key ``reconstruction``, (1, T, 17, 2), already Human3.6M order).
``videopose3d``
    VideoPose3D's custom-dataset ``.npz``: ``positions_2d`` = {video: {"custom": [(T, 17, 2)]}}
    and ``metadata`` = {"layout_name": "coco", "video_metadata": {video: {"w": .., "h": ..}}},
    so the image size comes from the file.
``json``
    COCO-style results as AlphaPose, MMPose and Detectron2 write them: a list of detections with
    ``image_id`` ("12.jpg" or 12) or ``frame``, ``keypoints`` as flat x, y, score triples and
    optionally ``bbox``/``box`` ([x, y, w, h]), ``score`` and ``idx``/``track_id``. MMPose's
    ``{"instance_info": [{"frame_id": .., "instances": [..]}]}`` layout is read too, and a COCO
    keypoint file ``{"images", "annotations", "categories"}`` (what
    :func:`~stcformer.infer.coco_json.write_coco_keypoints` writes): there the image size comes
    from ``images`` (``width``/``height``), the frame count from the image ids, the frame rate
    from ``info["fps"]`` and the joint set from the category's ``keypoints`` names.
    Frame numbers are taken as written: output frame i is the file's frame i (frames before the
    first detection and between detections are gaps, filled like low-score joints).

The file's joint set (:mod:`stcformer.infer.joints`) is converted to Human3.6M-17;
:func:`stcformer.infer.gaps.fill_gaps` then fills low-score joints and frames with no detection.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import List, Optional

import numpy as np

from stcformer.errors import DataError, UsageError
from stcformer.choices import KEYPOINT_FORMATS
from stcformer.infer.arrays import read_array, read_demo, read_videopose3d
from stcformer.infer.coco_json import json_detections, read_json
from stcformer.infer.joints import JOINT_SETS
from stcformer.infer.keypoints import Keypoints, convert_keypoints, split_scores, unreadable
from stcformer.infer.tracks import person_arrays, tracks_of

FORMATS = KEYPOINT_FORMATS


def detect_format(path: str) -> str:
    """The reader for ``path``: by extension, then (for .npz) by its keys."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        return "json"
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
        except Exception as exc:
            raise unreadable(path, "not a readable .npz file", exc) from None
        if "positions_2d" in keys:
            return "videopose3d"
        if "reconstruction" in keys:
            return "demo"
        return "array"
    if ext == ".npy":
        return "array"
    raise DataError(path, f"cannot tell the format from the extension '{ext}'; give --format "
                          f"({', '.join(FORMATS)})")


def _file_format(path: str, format: Optional[str], joints: Optional[str]) -> str:
    """``format`` (checked) or the one detected from the file; UsageError for an unknown format or
    joint set, DataError for a missing file."""
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown keypoint format '{format}' (one of {', '.join(FORMATS)})")
    if joints is not None and joints not in JOINT_SETS:
        raise UsageError(f"unknown joint set '{joints}' (one of {', '.join(JOINT_SETS)})")
    if not os.path.isfile(path):
        raise DataError(path, "no such file")
    return format or detect_format(path)


def read_keypoints(path, format: Optional[str] = None, joints: Optional[str] = None,
                   person: Optional[int] = None) -> Keypoints:
    """Read one person's keypoints from ``path`` and convert them to Human3.6M-17.

    ``format``: one of :data:`FORMATS` (default: detected). ``joints``: the file's joint set
    (default: from the file: 26 joints are Halpe-26; 17 are COCO in JSON and VideoPose3D files,
    Human3.6M in arrays and the demo's file). ``person``: in a JSON file with several people, the
    track id (where detections carry ``idx``/``track_id``) or the rank by box area in each frame
    (0 = largest); default the track with the largest total box area, or the largest box per frame.
    Raises :class:`~stcformer.errors.DataError` (naming the file) for anything unreadable.
    """
    path = os.fspath(path)
    fmt = _file_format(path, format, joints)
    if fmt == "json":
        xy, scores, info = read_json(path, person)
    elif person is not None:
        raise UsageError(f"--person picks a person in a JSON file; {path} is a {fmt} file with one person")
    else:
        xy, scores, info = {"array": read_array, "demo": read_demo, "videopose3d": read_videopose3d}[fmt](path)
    return convert_keypoints(xy, scores, joints or info.pop("joints", None), path=path, format=fmt,
                             fps=info.get("fps"), size=info.get("size"), notes=info.get("notes", []))


def read_tracks(path, format: Optional[str] = None, joints: Optional[str] = None) -> List[Keypoints]:
    """Every person of a multi-person JSON file, one :class:`Keypoints` per track (``.track`` its id),
    each with all the file's frames (NaN and score 0 where the person is not detected).

    Tracks are the file's ``idx``/``track_id`` where every detection has one, else linked frame to
    frame by :func:`~stcformer.infer.tracks.link_tracks`. Other formats hold one person: a list of one.
    """
    path = os.fspath(path)
    fmt = _file_format(path, format, None)
    if fmt != "json":
        kp = read_keypoints(path, format=fmt, joints=joints)
        kp.track = 0
        kp.notes.append(f"every person: a {fmt} file holds one person")
        return [kp]
    dets, T, info = json_detections(path)
    tracks, how = tracks_of(dets)
    out = []
    for t in sorted(tracks):
        xy, sc = person_arrays(T, tracks[t])
        out.append(convert_keypoints(xy, sc, joints or info.get("joints"), path=path, format=fmt,
                                     fps=info.get("fps"), size=info.get("size"), track=t))
    out[0].notes.append(f"every person: {len(out)} tracks ({how})")
    return out


def as_keypoints(data, joints: Optional[str] = None, fps=None, size=None) -> Keypoints:
    """A :class:`Keypoints` from an array (T, J, 2|3) of pixels, a path, or a Keypoints."""
    if isinstance(data, Keypoints):
        kp = data
    elif isinstance(data, (str, os.PathLike)):
        kp = read_keypoints(data, joints=joints)
    else:
        xy, sc = split_scores("<array>", np.asarray(data, dtype=np.float32))
        kp = convert_keypoints(xy, sc, joints)
    if fps is not None or size is not None:
        kp = replace(kp, fps=fps if fps is not None else kp.fps,
                     size=tuple(size) if size is not None else kp.size, notes=list(kp.notes))
    return kp


__all__ = ["FORMATS", "Keypoints", "detect_format", "read_keypoints", "read_tracks", "as_keypoints"]
