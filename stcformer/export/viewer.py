"""A self-contained HTML viewer of lifted people: turn the 3D poses with the mouse, play them, and see
the 2D keypoints and every bone's length over time beside them.

One file, no network at view time: the page (``viewer.html``, plain JavaScript on a Canvas 2D, beside
this module) gets the scene as JSON whose arrays are little-endian typed arrays in base64, and,
if asked, the video's frames as small JPEGs. :func:`viewer_scene` builds the scene from the arrays
of ``poses_3d.npz`` (:func:`stcformer.export.poses.pose_arrays`), so a lift and a saved folder give
the same page; :func:`write_viewer` writes it atomically.

The scene is levelled: "up" is the people's mean body axis (ankles to thorax over every posed
frame), so a camera looking down at a floor shows the people standing on it; the ground plane is
at their lowest feet. Positions are camera-space roots (``root_translation``) scaled like the
skeleton, so each person stands where the video put them.
"""
from __future__ import annotations

import base64
import io
import json
import os
from importlib import resources
from typing import Iterable, List, Optional, Sequence

import numpy as np

from stcformer.data.skeleton import H36M_JOINTS, H36M_LEFT, H36M_PARENTS, H36M_RIGHT
from stcformer.errors import DataError
from stcformer.export.render import BONES, Z_UP
from stcformer.io import atomic_write

# person colours (Okabe-Ito, distinguishable by most colour-blind viewers), in track order
PALETTE = ("#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#0072b2", "#f0e442", "#000000")
VIDEO_WIDTH = 320        # px: embedded video frames are downscaled to this width (or less)
VIDEO_MAX_FRAMES = 1500  # at most this many frames are embedded (every k-th frame of a longer video)
VIDEO_QUALITY = 70       # JPEG quality of the embedded frames
_FEET, _THORAX = (3, 6), 8


def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _levelling(people: Sequence[np.ndarray]) -> np.ndarray:
    """(3, 3) rotation taking the mean body axis of the z-up poses to +z (identity when the people
    are not upright enough on average to tell, e.g. lying down)."""
    axes = [p[:, _THORAX] - p[:, list(_FEET)].mean(1) for p in people]
    axes = np.concatenate([a[np.isfinite(a).all(1)] for a in axes]) if axes else np.zeros((0, 3))
    if len(axes) == 0:
        return np.eye(3)
    mean = axes.mean(0)
    if np.linalg.norm(mean) < 0.5 * np.linalg.norm(axes, axis=1).mean() or mean[2] <= 0:
        return np.eye(3)
    up, z = mean / np.linalg.norm(mean), np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)  # Rodrigues: the shortest rotation up -> z


def _bone_lengths(poses: np.ndarray) -> np.ndarray:
    """(T, 16) length of each bone of (T, 17, 3) poses (NaN where a joint is missing)."""
    return np.linalg.norm(poses[:, [j for _, j in BONES]] - poses[:, [p for p, _ in BONES]], axis=-1)


def _person(arrays: dict, index: int) -> dict:
    """One person's world arrays (z-up, metres, root placed) before levelling."""
    scale = float(arrays.get("skeleton_scale", 1.0))
    root = np.asarray(arrays["root_translation"], np.float64)
    rooted = bool(np.isfinite(root).all(1).any())
    root = np.nan_to_num(root)[:, None] * scale if rooted else 0.0
    raw = np.asarray(arrays["reconstruction"], np.float64) * scale
    fixed = np.asarray(arrays.get("skeleton_3d", arrays["reconstruction"]), np.float64)
    track = int(arrays["track"]) if "track" in arrays else None
    return dict(track=index if track is None else track, label="person" if track is None else f"person {track}",
                rooted=rooted, fixed=(fixed + root) @ Z_UP.T, raw=(raw + root) @ Z_UP.T, lengths=_bone_lengths(raw),
                kp=np.asarray(arrays["keypoints_2d"], np.float32), scores=np.asarray(arrays["scores"], np.float32),
                filled=np.asarray(arrays["filled"], bool))


def viewer_scene(people: Sequence[dict], *, title: str = "", min_score: float = 0.3,
                 video_frames: Optional[dict] = None, bones: str = "fixed") -> dict:
    """The scene the page draws, from one ``poses_3d.npz`` mapping per person (all of the same
    sequence: the same T, fps and image size). ``video_frames``: :func:`encode_video_frames`'s;
    ``bones``: which 3D the page opens with, ``skeleton_3d`` (``"fixed"``) or the model's (``"raw"``)."""
    if not people:
        raise DataError(title or "viewer", "no lifted person to show")
    persons = [_person(a, i) for i, a in enumerate(people)]
    rot = _levelling([p["fixed"] for p in persons])
    for p in persons:
        p["fixed"], p["raw"] = p["fixed"] @ rot.T, p["raw"] @ rot.T
    feet = np.concatenate([p["fixed"][:, _FEET, 2].ravel() for p in persons])
    feet = feet[np.isfinite(feet)]
    ground = np.array([0.0, 0.0, np.percentile(feet, 2) if len(feet) else 0.0])
    out = []
    for i, p in enumerate(persons):
        flags = (p["scores"] >= min_score).astype(np.uint8) | (p["filled"].astype(np.uint8) << 1)
        out.append(dict(track=p["track"], label=p["label"], colour=PALETTE[i % len(PALETTE)], rooted=p["rooted"],
                        fixed=_b64((p["fixed"] - ground).reshape(-1), "f4"),
                        raw=_b64((p["raw"] - ground).reshape(-1), "f4"), kp=_b64(p["kp"].reshape(-1), "f4"),
                        flags=_b64(flags.reshape(-1), "u1"), lengths=_b64(p["lengths"].reshape(-1), "f4")))
    # what the first view frames: where the people's roots are most of the time (a few far-off
    # root fits would otherwise shrink everyone to a dot)
    roots = np.concatenate([p["fixed"][:, 0] for p in persons]) - ground
    roots = roots[np.isfinite(roots).all(1)]
    lo, hi = np.percentile(roots, [5, 95], axis=0) if len(roots) else np.zeros((2, 3))
    extent = [[round(float(v), 3) for v in lo[:2]] + [0.0], [round(float(v), 3) for v in hi[:2]] + [1.8]]
    first = people[0]
    return dict(version=1, title=title, frames=len(persons[0]["fixed"]),
                fps=float(first["fps"]) if "fps" in first else None, size=[int(v) for v in first["size"]],
                joints=list(H36M_JOINTS), bones=[list(b) for b in BONES], left=list(H36M_LEFT),
                right=list(H36M_RIGHT), parents=list(H36M_PARENTS), min_score=min_score, shown=bones, extent=extent,
                # the camera (camera space's origin) in the levelled world, and where it looks (camera z
                # is world y before levelling): the "front" view and the camera marker
                camera=(-ground).tolist(), forward=(np.array([0.0, 1.0, 0.0]) @ rot.T).tolist(),
                people=out, video=video_frames)


def encode_video_frames(frames: Iterable[np.ndarray], total: int, width: int = VIDEO_WIDTH,
                        max_frames: int = VIDEO_MAX_FRAMES, quality: int = VIDEO_QUALITY) -> dict:
    """Downscaled JPEGs (base64) of every ``every``-th of ``total`` RGB frames, ``every`` chosen so
    that at most ``max_frames`` are kept."""
    from PIL import Image

    every = max(1, -(-total // max_frames))
    kept, size = [], None
    for i, frame in enumerate(frames):
        if i >= total:
            break
        if i % every:
            continue
        im = Image.fromarray(np.asarray(frame)[..., :3])
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.BILINEAR)
        size = im.size
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        kept.append(base64.b64encode(buf.getvalue()).decode())
    return dict(every=every, width=size[0] if size else 0, height=size[1] if size else 0, frames=kept)


def page(scene: dict) -> str:
    """The HTML text of ``scene``: the template with the scene's JSON in it."""
    template = resources.files("stcformer.export").joinpath("viewer.html").read_text(encoding="utf-8")
    data = json.dumps(scene, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = (scene.get("title") or "lifted poses").replace("&", "&amp;").replace("<", "&lt;")
    return template.replace("__TITLE__", title).replace("__SCENE__", data)


def write_viewer(path, scene: dict) -> int:
    """Write the page of ``scene`` to ``path`` atomically; returns its size in bytes."""
    text = page(scene).encode("utf-8")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(text)

    atomic_write(path, write)
    return len(text)


def read_person_files(path) -> List[dict]:
    """The ``poses_3d.npz`` arrays under ``path``: the file itself, the folder's own file, or
    those of its ``person_<id>/`` folders (by track id). DataError naming ``path`` if none."""
    path = os.fspath(path)
    if os.path.isfile(path):
        files = [path]
    elif os.path.isfile(os.path.join(path, "poses_3d.npz")):
        files = [os.path.join(path, "poses_3d.npz")]
    elif os.path.isdir(path):
        found = [(d, os.path.join(path, d, "poses_3d.npz")) for d in os.listdir(path) if d.startswith("person_")]
        files = [f for d, f in sorted(found, key=lambda x: _track_key(x[0])) if os.path.isfile(f)]
    else:
        raise DataError(path, "no such file or folder")
    if not files:
        raise DataError(path, "no poses_3d.npz here or in its person_<id>/ folders (python -m stcformer.infer "
                              "writes them)")
    people = []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                people.append({k: z[k] for k in z.files})
        except (OSError, ValueError) as e:
            raise DataError(f, f"not a readable npz ({type(e).__name__})") from None
        missing = {"reconstruction", "root_translation", "keypoints_2d", "scores", "filled", "size"} - set(people[-1])
        if missing:
            raise DataError(f, f"not a poses_3d.npz of python -m stcformer.infer (no {', '.join(sorted(missing))})")
    if len({len(p["scores"]) for p in people}) > 1:
        raise DataError(path, "the person files cover different numbers of frames (not one lift)")
    return people


def _track_key(name: str):
    tail = name[len("person_"):]
    return (0, int(tail)) if tail.isdigit() else (1, tail)


__all__ = ["viewer_scene", "encode_video_frames", "page", "write_viewer", "read_person_files", "PALETTE",
           "VIDEO_WIDTH", "VIDEO_MAX_FRAMES", "VIDEO_QUALITY"]
