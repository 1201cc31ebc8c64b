"""Readers of the NumPy keypoint files: plain arrays (``array``), the official demo's ``.npz``
(``demo``) and VideoPose3D's custom-dataset ``.npz`` (``videopose3d``).

Each takes a path and returns raw ``(xy, scores, info)``: (T, J, 2) pixels, (T, J) scores and what
the file says about itself (``fps``, ``size``, ``joints``, ``notes``).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from stcformer.errors import DataError
from stcformer.infer.keypoints import split_scores, unreadable


def _scalar(path: str, z, key: str, kind=float):
    if key not in z.files:
        return None
    try:
        v = kind(np.asarray(z[key]).reshape(()))
    except Exception:
        raise DataError(path, f"'{key}' must be a single number") from None
    if not v > 0:
        raise DataError(path, f"'{key}' must be positive, got {v}")
    return v


def _npz_arrays(path: str, data, info: Dict) -> tuple:
    """The keypoint array and scores (or None) of an array-format .npz; fps and size into ``info``."""
    with data as z:
        keys = [k for k in z.files if k not in ("fps", "width", "height", "scores")]
        if "keypoints" in z.files:
            arr = z["keypoints"]
        elif len(keys) == 1:
            arr = z[keys[0]]
        else:
            raise DataError(path, f"no 'keypoints' array and not exactly one array (keys: {', '.join(z.files)})")
        scores = z["scores"] if "scores" in z.files else None
        fps = _scalar(path, z, "fps")
        w, h = _scalar(path, z, "width", int), _scalar(path, z, "height", int)
        if fps:
            info["fps"] = fps
        if w and h:
            info["size"] = (w, h)
    return arr, scores


def read_array(path: str) -> tuple:
    """An ``.npy`` array, or an ``.npz`` with one array (or ``keypoints`` [+ ``scores``], ``fps``,
    ``width``, ``height``)."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise unreadable(path, "not a readable .npy/.npz file", exc) from None
    info: Dict = {}
    if isinstance(data, np.lib.npyio.NpzFile):
        try:
            arr, scores = _npz_arrays(path, data, info)
        except DataError:
            raise
        except Exception as exc:  # e.g. an object array (pickled), which is not read here
            raise unreadable(path, "cannot read its arrays", exc) from None
    else:
        arr, scores = data, None
    xy, sc = split_scores(path, arr, scores)
    return xy, sc, info


def read_demo(path: str) -> tuple:
    """The official demo's ``.npz``: key ``reconstruction``, (1, T, 17, 2) in Human3.6M order."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "reconstruction" not in z.files:
                raise DataError(path, f"no 'reconstruction' array (keys: {', '.join(z.files)})")
            arr = z["reconstruction"]
    except DataError:
        raise
    except Exception as exc:
        raise unreadable(path, "not a readable .npz file", exc) from None
    xy, sc = split_scores(path, arr)
    return xy, sc, {"joints": "h36m"}


def _videopose3d_dicts(path: str) -> tuple:
    # VideoPose3D stores positions_2d and metadata as pickled Python dicts inside object arrays, so
    # this layout (and only this one) is loaded with allow_pickle=True: open only files you trust.
    try:
        with np.load(path, allow_pickle=True) as z:
            if "positions_2d" not in z.files:
                raise DataError(path, "no 'positions_2d' (not a VideoPose3D custom-dataset file)")
            positions = z["positions_2d"].item()
            meta = z["metadata"].item() if "metadata" in z.files else {}
    except DataError:
        raise
    except Exception as exc:
        raise unreadable(path, "not a readable VideoPose3D custom-dataset .npz", exc) from None
    if not isinstance(positions, dict) or not positions:
        raise DataError(path, "'positions_2d' holds no videos")
    if len(positions) > 1:
        raise DataError(path, f"{len(positions)} videos in 'positions_2d' ({', '.join(map(str, positions))}); "
                              "keep one per file")
    return positions, meta


def read_videopose3d(path: str) -> tuple:
    """VideoPose3D's custom-dataset ``.npz``: ``positions_2d`` = {video: {"custom": [(T, 17, 2)]}}
    and ``metadata`` (the joint layout and the image size of the video)."""
    positions, meta = _videopose3d_dicts(path)
    name, cams = next(iter(positions.items()))
    try:
        arr = np.asarray(cams["custom"][0])
    except Exception:
        raise DataError(path, f"positions_2d['{name}'] has no 'custom' list of arrays") from None
    xy, sc = split_scores(path, arr)
    info: Dict = {"notes": [f"video '{name}'"]}
    vm = (meta.get("video_metadata") or {}).get(name) if isinstance(meta, dict) else None
    if vm and "w" in vm and "h" in vm:
        info["size"] = (int(vm["w"]), int(vm["h"]))
    if isinstance(meta, dict) and meta.get("layout_name") in ("coco", "h36m"):
        info["joints"] = meta["layout_name"]
    else:
        info["joints"] = "coco"  # VideoPose3D's Detectron2 script writes COCO keypoints
    return xy, sc, info


__all__ = ["read_array", "read_demo", "read_videopose3d"]
