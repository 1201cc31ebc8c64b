"""JSON detection files: reading them into :class:`~stcformer.infer.tracks.Detection` records, and
writing one person's keypoints as a COCO keypoint file.

Read: COCO-style results as AlphaPose, MMPose and Detectron2 write them (a list of detections
with ``image_id``/``frame``, flat x, y, score ``keypoints``, optionally ``bbox``/``box``, ``score``
and ``idx``/``track_id``), MMPose's ``{"instance_info": [...]}`` layout, and a COCO keypoint file
``{"images", "annotations", "categories"}`` (what :func:`write_coco_keypoints` writes), whose image
size, frame count, frame rate and joint set come from the file.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from stcformer.errors import DataError
from stcformer.infer.joints import JOINT_NAMES, NUM_JOINTS, joint_set_named
from stcformer.infer.keypoints import unreadable
from stcformer.infer.tracks import Detection, box_area, person_arrays, pick_person
from stcformer.io import atomic_write


def _frame_number(path: str, rec: dict) -> int:
    for key in ("frame", "frame_id", "image_id"):
        if key in rec:
            v = rec[key]
            if isinstance(v, bool):
                break
            if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v == int(v)):
                return int(v)
            if isinstance(v, str):
                digits = re.findall(r"\d+", os.path.splitext(os.path.basename(v))[0])
                if digits:
                    return int(digits[-1])
            raise DataError(path, f"cannot read a frame number from {key}={v!r}")
    raise DataError(path, "a detection has no 'image_id', 'frame' or 'frame_id'")


def _box(rec: dict, kp: np.ndarray, corners: bool) -> np.ndarray:
    """(x1, y1, x2, y2) of a detection: its ``bbox``/``box``, else the extent of its scored joints."""
    box = rec.get("bbox", rec.get("box"))
    if box is not None:
        try:
            b = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            b = np.zeros(0)
        if b.size >= 4 and np.isfinite(b[:4]).all():
            if corners:  # MMPose: x1, y1, x2, y2
                return np.array([b[0], b[1], max(b[2], b[0]), max(b[3], b[1])])
            return np.array([b[0], b[1], b[0] + max(b[2], 0), b[1] + max(b[3], 0)])  # COCO: x, y, w, h
    usable = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(-1)
    finite = np.isfinite(kp[:, :2]).all(-1)
    seen = kp[usable, :2] if usable.any() else kp[finite, :2]
    if not len(seen):
        return np.zeros(4)
    return np.concatenate([seen.min(0), seen.max(0)])


def _mmpose_records(doc: dict) -> List[dict]:
    """MMPose inferencer / demo output as flat detections (boxes as corners)."""
    recs = []
    for fr in doc["instance_info"]:
        for inst in fr.get("instances", []):
            kp = np.asarray(inst["keypoints"], dtype=np.float64)
            sc = np.asarray(inst.get("keypoint_scores", np.ones(len(kp))), dtype=np.float64)
            rec = {"frame": fr.get("frame_id", 0),
                   "keypoints": np.concatenate([kp.reshape(-1, 2), sc.reshape(-1, 1)], 1).reshape(-1)}
            if "bbox" in inst:
                rec["bbox"] = np.asarray(inst["bbox"]).reshape(-1)[:4]
            for k in ("track_id", "idx"):
                if k in inst:
                    rec[k] = inst[k]
            recs.append(rec)
    return recs


def _json_records(path: str, doc) -> Tuple[List[dict], bool, Dict]:
    """Flat list of detections (each with a frame key and flat keypoints), whether boxes are
    corners, and what the file says about itself (size, fps, joints, frames)."""
    if isinstance(doc, dict) and "instance_info" in doc:
        return _mmpose_records(doc), True, {}
    if isinstance(doc, dict) and "annotations" in doc:  # a COCO keypoint file
        return list(doc["annotations"]), False, _coco_file_info(path, doc)
    if isinstance(doc, list):
        return doc, False, {}
    raise DataError(path, "expected a list of detections (COCO results), or MMPose's 'instance_info'")


def _coco_file_info(path: str, doc: dict) -> Dict:
    """Image size (``images`` width/height, when all agree), frame count (the largest image id + 1),
    frame rate (``info["fps"]``) and joint set (the first category's ``keypoints`` names)."""
    out: Dict = {}
    images = doc.get("images") or []
    sizes = {(im.get("width"), im.get("height")) for im in images if isinstance(im, dict)}
    if len(sizes) == 1:
        w, h = sizes.pop()
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
            out["size"] = (int(w), int(h))
    ids = [im.get("id") for im in images if isinstance(im, dict)]
    if ids and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        out["frames"] = max(ids) + 1
    fps = (doc.get("info") or {}).get("fps") if isinstance(doc.get("info"), dict) else None
    if fps is not None:
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
            raise DataError(path, f"info.fps must be a positive number, got {fps!r}")
        out["fps"] = float(fps)
    cats = doc.get("categories") or []
    if cats and isinstance(cats[0], dict):
        joints = joint_set_named(cats[0].get("keypoints") or ())
        if joints:
            out["joints"] = joints
    return out


def _track_id(rec: dict):
    for k in ("track_id", "idx"):
        if k in rec and rec[k] is not None:
            v = rec[k]
            if isinstance(v, list):  # AlphaPose writes idx as a number, sometimes as [n]
                v = v[0] if v else None
            if v is None:
                return None
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


def _detection(path: str, i: int, rec, corners: bool) -> Detection:
    """Detection ``i`` of the file, checked."""
    if not isinstance(rec, dict) or "keypoints" not in rec:
        raise DataError(path, f"detection {i} has no 'keypoints'")
    try:
        kp = np.asarray(rec["keypoints"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(path, f"detection {i}: 'keypoints' must be numbers") from None
    if kp.size == 0 or kp.size % 3:
        raise DataError(path, f"detection {i}: {kp.size} keypoint values, expected x, y, score triples")
    kp = kp.reshape(-1, 3)
    frame = _frame_number(path, rec)
    if frame < 0:
        raise DataError(path, f"detection {i}: negative frame number {frame}")
    box = _box(rec, kp, corners)
    return Detection(frame, _track_id(rec), box, box_area(box), kp)


def json_detections(path: str) -> Tuple[List[Detection], int, Dict]:
    """Every detection of a JSON file, the number of frames and the file's own info."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except Exception as exc:
        raise unreadable(path, "not a readable JSON file", exc) from None
    recs, corners, info = _json_records(path, doc)
    if not recs:
        raise DataError(path, "no people: the file lists no detections")
    dets = [_detection(path, i, rec, corners) for i, rec in enumerate(recs)]
    sizes = {len(d.kp) for d in dets}
    if len(sizes) > 1:
        raise DataError(path, f"detections have different joint counts: {sorted(sizes)}")
    J = sizes.pop()
    T = max(max(d.frame for d in dets) + 1, info.pop("frames", 0))
    if "joints" not in info and J == 17:
        info["joints"] = "coco"
    if info.get("joints") and NUM_JOINTS[info["joints"]] != J:
        raise DataError(path, f"the category names {NUM_JOINTS[info['joints']]} {info['joints']} joints, "
                              f"but detections have {J}")
    return dets, T, info


def read_json(path: str, person: Optional[int] = None) -> tuple:
    """Raw ``(xy, scores, info)`` of one person of a JSON file (:func:`~stcformer.infer.tracks.pick_person`)."""
    dets, T, info = json_detections(path)
    chosen, note = pick_person(dets, T, person, path)
    xy, sc = person_arrays(T, chosen)
    info["notes"] = [note]
    return xy, sc, info


def _coco_document(people, size, fps, names, description: str) -> dict:
    """The COCO keypoint file of people's raw keypoints, as a dict; ``people``: (track, (T, J, 2)
    pixels, (T, J) scores) each, all over the same T frames."""
    w, h = (int(v) for v in size)
    T = len(people[0][1]) if people else 0
    images, anns = [], []
    for f in range(T):
        images.append({"id": f, "file_name": f"frame_{f:06d}", "width": w, "height": h})
        for track, xy, scores in people:
            seen = np.isfinite(xy[f]).all(-1) & (scores[f] > 0)
            if not seen.any():
                continue  # not detected in this frame
            pts = np.where(np.isfinite(xy[f]), xy[f], 0.0)
            kp = np.concatenate([pts, np.where(np.isfinite(scores[f]), scores[f], 0.0)[:, None]], 1)
            lo, hi = xy[f][seen].min(0), xy[f][seen].max(0)
            box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            anns.append({"id": len(anns) + 1, "image_id": f, "category_id": 1, "track_id": int(track),
                         "keypoints": [float(v) for v in kp.reshape(-1)], "num_keypoints": int(seen.sum()),
                         "score": float(scores[f][seen].mean()), "bbox": box, "area": box[2] * box[3]})
    return {"info": {"description": description, "fps": None if fps is None else float(fps)},
            "categories": [{"id": 1, "name": "person", "keypoints": list(names), "skeleton": []}],
            "images": images, "annotations": anns}


def _write_compact(doc: dict, tmp: str) -> None:
    """``doc`` as JSON with one list entry per line (an indented file holds one number per line)."""
    with open(tmp, "w") as f:
        f.write("{\n")
        for i, (key, value) in enumerate(doc.items()):
            if isinstance(value, list) and key != "categories":
                body = ",\n".join(json.dumps(v) for v in value)
                f.write(f'"{key}": [\n{body}\n]')
            else:
                f.write(f'"{key}": {json.dumps(value)}')
            f.write(",\n" if i < len(doc) - 1 else "\n")
        f.write("}\n")


def write_coco_keypoints(path, xy: np.ndarray, scores: np.ndarray, size, fps=None, joints: str = "blazepose",
                         track: int = 0, description: str = "") -> None:
    """Write one person's raw keypoints (T, J, 2) pixels and (T, J) scores of ``joints`` as a COCO
    keypoint file (atomically): ``images`` (one per frame, id = frame number, with the image size),
    ``annotations`` (one per frame with a detection: flat x, y, score triples, ``bbox`` around the
    scored joints, ``track_id``), ``categories`` (the joint names) and ``info`` (``fps``,
    ``description``). :func:`~stcformer.infer.readers.read_keypoints` reads it back to the same
    values, size and frame rate."""
    person = np.concatenate([np.asarray(xy, np.float32), np.asarray(scores, np.float32)[..., None]], -1)
    write_coco_tracks(path, {track: person}, size, fps, joints, description)


def write_coco_tracks(path, tracks: dict, size, fps=None, joints: str = "blazepose", description: str = "") -> None:
    """Write several people's raw keypoints, ``tracks`` {track id: (T, J, 3) x, y pixels and score},
    as one COCO keypoint file (as :func:`write_coco_keypoints`, one annotation per person and frame
    with a detection, ``track_id`` the track's id): ``--person all`` reads the tracks back."""
    people = [(tid, np.asarray(t[..., :2], np.float32), np.asarray(t[..., 2], np.float32)) for tid, t in tracks.items()]
    doc = _coco_document(people, size, fps, JOINT_NAMES[joints], description)
    atomic_write(path, lambda tmp: _write_compact(doc, tmp), ".json")


__all__ = ["json_detections", "read_json", "write_coco_keypoints", "write_coco_tracks"]
