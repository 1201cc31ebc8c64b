"""A plausible skeleton for a lifted person: constant bone lengths at a human height.

The model's raw ``reconstruction`` lets every bone change length from frame to frame (on real
footage with a model trained on synthetic motion by 20-80%) and has whatever overall size the
model guessed. :func:`fixed_skeleton` keeps the raw pose's bone directions and rebuilds every
frame from the root with one set of bone lengths per person:

* each bone's length is the median of its per-frame lengths over the reliable frames (both ends
  detected, not filled from neighbours; every finite frame when none is), then the left and right
  bones of a pair are given their mean, so the skeleton is symmetric;
* on the Human3.6M-17 tree the hips (from the pelvis) and the shoulders (from the thorax) sit at
  fixed places in their parent's frame (y along the spine or neck, x across from the right child
  to the left one), as in a rigid body, mirrored left/right; the spine and the neck follow the
  frame's y axis. Every other bone takes the raw pose's direction;
* the whole is scaled so the skeleton's standing height (:func:`standing_height`) is ``height``
  metres (default 1.70), or kept at the model's scale with ``height=None`` (or ``"raw"``).

A frame whose raw pose is not finite (a frame far from the person's detections) stays NaN. A
BVH written from ``skeleton_3d`` (:mod:`stcformer.export.bvh`) reproduces it exactly, since it is
a rigid skeleton.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from stcformer.data.skeleton import H36M_JOINTS, H36M_LEFT, H36M_PARENTS, H36M_RIGHT

DEFAULT_HEIGHT = 1.70
BONES_CHOICES = ("fixed", "raw")
# Human3.6M-17: the chain from the head down to the pelvis, and the two legs (hip, knee, ankle)
H36M_SPINE_CHAIN = (10, 9, 8, 7)
H36M_LEGS = ((1, 2, 3), (4, 5, 6))
# joints whose children are placed rigidly in their frame: joint -> (up child, (right, left) children)
H36M_FRAMES = {0: (7, (1, 4)), 8: (9, (14, 11))}


def _h36m(parents: Sequence[int]) -> bool:
    return tuple(parents) == H36M_PARENTS


def bone_lengths(poses: np.ndarray, parents: Sequence[int] = H36M_PARENTS) -> np.ndarray:
    """(T, J) length of the bone ending at each joint in each frame (0 for the root, NaN where
    the pose is not finite)."""
    P = np.asarray(poses, dtype=np.float64)
    par = np.asarray([p if p >= 0 else j for j, p in enumerate(parents)])
    return np.linalg.norm(P - P[:, par], axis=-1)


def bone_variation(poses: np.ndarray, parents: Sequence[int] = H36M_PARENTS) -> np.ndarray:
    """(J,) std/mean over the finite frames of each bone's length (NaN for the root): 0 for a
    rigid skeleton."""
    L = bone_lengths(poses, parents)
    L = L[np.isfinite(L).all(1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = L.std(0) / L.mean(0) if len(L) else np.full(L.shape[1], np.nan)
    roots = [j for j, p in enumerate(parents) if p < 0]
    out[roots] = np.nan
    return out


def standing_height(lengths: np.ndarray, parents: Sequence[int] = H36M_PARENTS) -> float:
    """Height of a skeleton with bone ``lengths`` (J,) standing straight: on Human3.6M-17 the
    head-to-pelvis chain (head, neck, thorax, spine, pelvis) plus the mean leg (thigh and shin;
    the pelvis-to-hip bones lie across); on another tree the longest root-to-leaf chain. It is
    head top to ankle: the soles are a few centimetres lower."""
    L = np.asarray(lengths, dtype=np.float64)
    if _h36m(parents):
        legs = np.mean([L[k] + L[a] for _, k, a in H36M_LEGS])
        return float(L[list(H36M_SPINE_CHAIN)].sum() + legs)
    depth = np.zeros(len(parents))
    for j, p in enumerate(parents):  # parents come before their children
        depth[j] = depth[p] + L[j] if p >= 0 else 0.0
    return float(depth.max())


def _reliable(poses: np.ndarray, parents: Sequence[int], reliable) -> np.ndarray:
    """(T, J) bones to average: both ends reliable (a (T,) or (T, J) mask) and finite."""
    T, J = poses.shape[:2]
    finite = np.isfinite(poses).all(-1)
    ok = np.ones((T, J), bool) if reliable is None else np.asarray(reliable, bool)
    if ok.ndim == 1:
        ok = np.repeat(ok[:, None], J, axis=1)
    par = np.asarray([p if p >= 0 else j for j, p in enumerate(parents)])
    ok = ok & ok[:, par] & finite & finite[:, par]
    weak = ~ok.any(0)
    ok[:, weak] = (finite & finite[:, par])[:, weak]  # never reliable: every finite frame
    return ok


def _symmetric(values: np.ndarray, pairs: Sequence[Tuple[int, int]]) -> np.ndarray:
    out = values.copy()
    for a, b in pairs:
        out[a] = out[b] = (values[a] + values[b]) / 2
    return out


def robust_lengths(poses: np.ndarray, parents: Sequence[int] = H36M_PARENTS, reliable=None,
                   pairs: Optional[Sequence[Tuple[int, int]]] = None) -> np.ndarray:
    """(J,) bone lengths of one person: the median over the reliable frames of each bone (see
    :func:`fixed_skeleton`), left and right ``pairs`` (default: Human3.6M's) made equal."""
    P = np.asarray(poses, dtype=np.float64)
    L = bone_lengths(P, parents)
    ok = _reliable(P, parents, reliable)
    out = np.array([np.median(L[ok[:, j], j]) if ok[:, j].any() else np.nan for j in range(len(parents))])
    if np.isnan(out[[j for j, p in enumerate(parents) if p >= 0]]).any():
        raise ValueError("no finite frame to measure the bones from")
    out[[j for j, p in enumerate(parents) if p < 0]] = 0.0
    if pairs is None and _h36m(parents):
        pairs = tuple(zip(H36M_LEFT, H36M_RIGHT))
    return _symmetric(out, pairs or ())


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-12, n, np.nan)


def _frame(P: np.ndarray, joint: int) -> np.ndarray:
    """(T, 3, 3) columns x, y, z of ``joint``'s frame (see :data:`H36M_FRAMES`)."""
    up, (right, left) = H36M_FRAMES[joint]
    y = _unit(P[:, up] - P[:, joint])
    across = P[:, left] - P[:, right]
    x = _unit(across - (across * y).sum(-1, keepdims=True) * y)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def _placements(P: np.ndarray, frames: dict, lengths: np.ndarray, ok: np.ndarray) -> dict:
    """Constant unit directions of the hips and shoulders in their parent's frame (median over
    the reliable frames, mirrored to be symmetric)."""
    out = {}
    for j, (_, (right, left)) in H36M_FRAMES.items():
        d = {}
        for c in (right, left):
            rel = _unit(np.einsum("tij,ti->tj", frames[j], P[:, c] - P[:, j]))
            use = ok[:, c] & np.isfinite(rel).all(-1)
            d[c] = np.median(rel[use] if use.any() else rel[np.isfinite(rel).all(-1)], axis=0)
        mean = (d[left] * [1, 1, 1] + d[right] * [-1, 1, 1]) / 2  # mirrored about the x = 0 plane
        out[left], out[right] = _unit(mean), _unit(mean * [-1, 1, 1])
    return out


def _patch(d: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Directions (T, 3) with none (a zero-length bone of a finite frame) taken from the
    bone's median direction."""
    bad = finite & ~np.isfinite(d).all(-1)
    if bad.any():
        good = np.isfinite(d).all(-1)
        d = d.copy()
        d[bad] = _unit(np.median(d[good], axis=0)) if good.any() else np.array([0.0, -1.0, 0.0])
    return d


def _rebuild(P: np.ndarray, parents: Sequence[int], lengths: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Every frame rebuilt from the root along the raw directions with ``lengths``."""
    T, J = P.shape[:2]
    out = np.full_like(P, np.nan)
    out[:, [j for j, p in enumerate(parents) if p < 0]] = P[:, [j for j, p in enumerate(parents) if p < 0]]
    rigid, frames = {}, {}
    if _h36m(parents):
        frames = {j: _frame(P, j) for j in H36M_FRAMES}
        rigid = _placements(P, frames, lengths, ok)
    for j, p in enumerate(parents):
        if p < 0:
            continue
        if j in rigid:
            d = np.einsum("tij,j->ti", frames[p], rigid[j])
        elif p in frames and H36M_FRAMES[p][0] == j:
            d = frames[p][:, :, 1]
        else:
            d = _unit(P[:, j] - P[:, p])
        d = _patch(d, np.isfinite(P).all((1, 2)))
        out[:, j] = out[:, p] + lengths[j] * d
    return out


def fixed_skeleton(poses: np.ndarray, parents: Sequence[int] = H36M_PARENTS,
                   height: Union[None, float, str] = DEFAULT_HEIGHT, reliable=None
                   ) -> Tuple[np.ndarray, np.ndarray, float]:
    """``(skeleton_3d, bone_lengths, scale)`` of one person's raw ``poses`` (T, J, 3).

    skeleton_3d (T, J, 3): the raw bone directions with constant ``bone_lengths`` (J,) (the
    length of the bone ending at each joint, 0 for the root), in metres after ``scale``, the
    factor from the model's median skeleton to ``height`` metres standing (1.0 when ``height`` is
    None or ``"raw"``). ``reliable``: (T,) or (T, J) mask of the frames (joints) to measure the
    bones on, e.g. detected and not filled; default every finite frame. NaN frames stay NaN.
    """
    P = np.asarray(poses, dtype=np.float64)
    if P.ndim != 3 or P.shape[1] != len(parents) or P.shape[2] != 3:
        raise ValueError(f"poses must be (T, {len(parents)}, 3), got {P.shape}")
    ok = _reliable(P, parents, reliable)
    lengths = robust_lengths(P, parents, ok)
    if height is None or (isinstance(height, str) and height == "raw"):
        scale = 1.0
    else:
        if not float(height) > 0:
            raise ValueError(f"height must be positive metres, got {height}")
        scale = float(height) / standing_height(lengths, parents)
    lengths = lengths * scale
    out = _rebuild(P, parents, lengths, ok)
    return out.astype(np.float32), lengths.astype(np.float32), float(scale)


def skeleton_summary(poses: np.ndarray, skeleton: np.ndarray, parents: Sequence[int] = H36M_PARENTS) -> str:
    """One line: the mean and worst per-bone std/mean of the raw poses and of the skeleton."""
    raw, fixed = bone_variation(poses, parents), bone_variation(skeleton, parents)
    worst = int(np.nanargmax(raw)) if np.isfinite(raw).any() else 0
    return (f"bone length std/mean over frames: raw {np.nanmean(raw):.1%} mean, {np.nanmax(raw):.1%} worst "
            f"({H36M_JOINTS[worst] if _h36m(parents) else worst}); fixed {np.nanmax(fixed):.2%} worst")


__all__ = ["fixed_skeleton", "bone_lengths", "bone_variation", "robust_lengths", "standing_height",
           "skeleton_summary", "DEFAULT_HEIGHT", "BONES_CHOICES"]
