"""BVH export of lifted Human3.6M-17 poses (for Blender, MotionBuilder, ...).

The file follows the conventions Blender's BVH importer expects:

* Y up, the character facing +Z, its left on +X (camera axes x right, y down, z forward become
  (x, -y, -z): a 180-degree turn about x, so a person facing the camera faces +Z).
* Centimetres (import into Blender with Scale 0.01 to get metres).
* Channels: the root ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, every other
  joint ``Zrotation Xrotation Yrotation``, in degrees; a joint's rotation is
  ``Rz(z) @ Rx(x) @ Ry(y)`` applied to its children's offsets, composed from the root down.

Skeleton: the fixed Human3.6M-17 tree. Joints with children are BVH joints (Hip is the root);
the five leaves (ankles, head, wrists) are End Sites. Bone lengths are the medians over the
sequence. The rest pose stands upright: legs down, spine, neck and head up, arms out sideways;
hips and shoulders take their median placement relative to the pelvis and thorax frames.

Rotations are solved from the bone directions of each frame. A joint with one child gets the
swing (shortest) rotation, relative to its parent, from the rest direction to the observed one.
A joint with several children (Hip: legs and spine; Thorax: neck and shoulders) gets the full
rotation of a frame built from its children: y along the spine (neck), x along the line from the
right hip (shoulder) to the left one, made orthogonal to y, which fixes the twist. Forward
kinematics of the file reproduces every joint up to the difference between the frame's bone
lengths and the medians (and, for hips and shoulders, the frame's deviation from their median
placement): exactly for a rigid skeleton.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from stcformer.data.skeleton import H36M_JOINTS, H36M_PARENTS
from stcformer.export.smoothing import savgol
from stcformer.io import atomic_write

# camera axes (x right, y down, z forward) -> BVH axes (x left-of-subject, y up, z facing)
CAMERA_TO_BVH = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
UNITS_PER_METRE = 100.0  # centimetres

CHILDREN = {j: [c for c, p in enumerate(H36M_PARENTS) if p == j] for j in range(len(H36M_PARENTS))}
# frame of a joint with several children: (the child along +y, (right child, left child) along +x)
FRAME_CHILDREN = {0: (7, (1, 4)), 8: (9, (14, 11))}
# rest direction of the bone ending at each joint whose parent has one child
REST_DIRECTION = {2: (0, -1, 0), 3: (0, -1, 0), 5: (0, -1, 0), 6: (0, -1, 0), 8: (0, 1, 0), 10: (0, 1, 0),
                  12: (1, 0, 0), 13: (1, 0, 0), 15: (-1, 0, 0), 16: (-1, 0, 0)}
# BVH joints (H36M joints with children) in hierarchy order (parents first)
BVH_JOINTS = (0, 1, 2, 4, 5, 7, 8, 9, 11, 12, 14, 15)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _frames(P: np.ndarray, joint: int) -> np.ndarray:
    """(T, 3, 3) rotation whose columns are the x, y, z axes of ``joint``'s frame in each pose."""
    up_child, (right, left) = FRAME_CHILDREN[joint]
    y = _unit(P[:, up_child] - P[:, joint])
    across = P[:, left] - P[:, right]
    x = _unit(across - (across * y).sum(-1, keepdims=True) * y)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 3, 3) shortest rotations taking unit vector ``a`` (3,) onto unit vectors ``b`` (T, 3)."""
    a = np.broadcast_to(a, b.shape)
    v = np.cross(a, b)
    c = (a * b).sum(-1)
    s2 = (v * v).sum(-1)
    K = np.zeros(b.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    factor = np.where(s2 > 1e-12, (1 - c) / np.maximum(s2, 1e-12), 0.5)
    R = np.eye(3) + K + (K @ K) * factor[..., None, None]
    opposite = (s2 <= 1e-12) & (c < 0)
    if opposite.any():  # half turn about an axis perpendicular to a
        axis = np.cross(a[opposite], np.array([1.0, 0.0, 0.0]))
        weak = np.linalg.norm(axis, axis=-1) < 1e-6
        axis[weak] = np.cross(a[opposite][weak], np.array([0.0, 1.0, 0.0]))
        axis = _unit(axis)
        R[opposite] = 2 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    return R


def euler_zxy(R: np.ndarray) -> np.ndarray:
    """Angles (T, 3) in degrees, (z, x, y), with ``R = Rz(z) @ Rx(x) @ Ry(y)``."""
    sx = np.clip(R[..., 2, 1], -1.0, 1.0)
    x = np.arcsin(sx)
    gimbal = np.abs(sx) > 1 - 1e-9
    z = np.where(gimbal, np.arctan2(R[..., 1, 0], R[..., 0, 0]), np.arctan2(-R[..., 0, 1], R[..., 1, 1]))
    y = np.where(gimbal, 0.0, np.arctan2(-R[..., 2, 0], R[..., 2, 2]))
    return np.degrees(np.stack([z, x, y], axis=-1))


def rotation_zxy(angles: np.ndarray) -> np.ndarray:
    """``Rz(z) @ Rx(x) @ Ry(y)`` (..., 3, 3) from angles (..., 3) in degrees, (z, x, y)."""
    z, x, y = np.radians(np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0))
    cz, sz, cx, sx, cy, sy = np.cos(z), np.sin(z), np.cos(x), np.sin(x), np.cos(y), np.sin(y)
    R = np.empty(z.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 0, 2] = cz * cy - sz * sx * sy, -sz * cx, cz * sy + sz * sx * cy
    R[..., 1, 0], R[..., 1, 1], R[..., 1, 2] = sz * cy + cz * sx * sy, cz * cx, sz * sy - cz * sx * cy
    R[..., 2, 0], R[..., 2, 1], R[..., 2, 2] = -cx * sy, sx, cx * cy
    return R


def solve(poses: np.ndarray):
    """Rest offsets and per-frame local rotations of Human3.6M-17 ``poses`` (T, 17, 3) in BVH axes.

    Returns ``offsets`` (17, 3) (each joint's offset from its parent in the rest pose; the root's
    is 0) and ``local`` {joint: (T, 3, 3)} for the :data:`BVH_JOINTS`.
    """
    P = np.asarray(poses, dtype=np.float64)
    T = len(P)
    offsets = np.zeros((17, 3))
    frames = {j: _frames(P, j) for j in FRAME_CHILDREN}
    for j, (up, lr) in FRAME_CHILDREN.items():
        for c in CHILDREN[j]:  # median placement of each child in the joint's own frame
            rel = np.einsum("tij,ti->tj", frames[j], P[:, c] - P[:, j])
            offsets[c] = np.median(rel, axis=0)
    for c, d in REST_DIRECTION.items():
        offsets[c] = np.asarray(d, dtype=np.float64) * np.median(np.linalg.norm(P[:, c] - P[:, H36M_PARENTS[c]], axis=-1))
    glob = {}
    local = {}
    for j in BVH_JOINTS:
        parent = H36M_PARENTS[j]
        parent_R = glob[parent] if parent >= 0 else np.broadcast_to(np.eye(3), (T, 3, 3))
        if j in FRAME_CHILDREN:
            R = frames[j]
            loc = np.swapaxes(parent_R, -1, -2) @ R
        else:
            (c,) = CHILDREN[j]
            seen = np.einsum("tji,tj->ti", parent_R, _unit(P[:, c] - P[:, j]))  # in the parent's frame
            loc = _swing(_unit(offsets[c]), seen)
            R = parent_R @ loc
        glob[j] = R
        local[j] = loc
    return offsets, local


def to_bvh_axes(poses: np.ndarray) -> np.ndarray:
    """Camera-axes metres (..., 3) -> BVH axes (Y up, facing +Z) in centimetres."""
    return np.asarray(poses, dtype=np.float64) @ CAMERA_TO_BVH.T * UNITS_PER_METRE


def hold_missing(values: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) with every frame that is not finite (a person's absent frames) replaced
    by the last finite frame before it, or the first one after it at the start: a BVH has no
    missing frames, so a gap holds the pose it began with. ValueError when no frame is finite."""
    V = np.asarray(values)
    ok = np.isfinite(V.reshape(len(V), -1)).all(1)
    if ok.all():
        return V
    if not ok.any():
        raise ValueError("no finite frame to write")
    idx = np.where(ok, np.arange(len(V)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.flatnonzero(ok)[0]
    return V[idx]


def _channel_order(j: int) -> List[int]:
    """The BVH joints under ``j`` in the file's (depth-first) order."""
    return [j] + [k for c in CHILDREN[j] if CHILDREN[c] for k in _channel_order(c)]


def bvh_text(poses: np.ndarray, fps: float, root: Optional[np.ndarray] = None, decimals: int = 4) -> str:
    """The BVH file of ``poses`` (T, 17, 3), root-relative camera-axes metres, at ``fps``.

    Frames that are not finite (NaN: the person is absent there) hold the pose before them
    (:func:`hold_missing`), so the file has all T frames and the gap shows as a still pose. Poses
    with constant bone lengths (``skeleton_3d`` of :func:`stcformer.export.skeleton.fixed_skeleton`)
    are reproduced exactly by the file's forward kinematics.

    ``root``: (T, 3) camera-axes root positions in metres (e.g. :func:`root_trajectory`), written
    relative to the first frame; without it the root stays put. Either way the pelvis is raised so
    the lower ankle of the median pose is at height 0.
    """
    P = to_bvh_axes(hold_missing(poses))
    P = P - P[:, :1]
    offsets, local = solve(P)
    # pelvis height: the leg chain in the rest pose (hip offset, thigh, shin)
    height = -min(offsets[1, 1] + offsets[2, 1] + offsets[3, 1], offsets[4, 1] + offsets[5, 1] + offsets[6, 1])
    pos = np.zeros((len(P), 3))
    if root is not None:
        r = to_bvh_axes(hold_missing(root))
        pos = r - r[:1]
    pos[:, 1] += height
    fmt = f"{{:.{decimals}f}}"
    lines: List[str] = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        ind = "  " * depth
        kind = "ROOT" if H36M_PARENTS[j] < 0 else "JOINT"
        lines.append(f"{ind}{kind} {H36M_JOINTS[j]}")
        lines.append(f"{ind}{{")
        lines.append(f"{ind}  OFFSET " + " ".join(fmt.format(v) for v in offsets[j]))
        if H36M_PARENTS[j] < 0:
            lines.append(f"{ind}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{ind}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in CHILDREN[j]:
            if CHILDREN[c]:
                emit(c, depth + 1)
            else:  # a leaf joint is the End Site of its parent
                lines.append(f"{ind}  End Site")
                lines.append(f"{ind}  {{")
                lines.append(f"{ind}    OFFSET " + " ".join(fmt.format(v) for v in offsets[c]))
                lines.append(f"{ind}  }}")
        lines.append(f"{ind}}}")

    emit(0, 0)
    order = _channel_order(0)
    angles = {j: euler_zxy(local[j]) for j in order}
    lines += ["MOTION", f"Frames: {len(P)}", f"Frame Time: {1.0 / fps:.6f}"]
    for t in range(len(P)):
        vals = list(pos[t]) + [v for j in order for v in angles[j][t]]
        lines.append(" ".join(fmt.format(v) for v in vals))
    return "\n".join(lines) + "\n"


def write_bvh(path, poses: np.ndarray, fps: float, root: Optional[np.ndarray] = None) -> None:
    """Write :func:`bvh_text` to ``path`` atomically."""
    text = bvh_text(poses, fps, root)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write, ".bvh")


def root_trajectory(poses: np.ndarray, keypoints: np.ndarray, size: Sequence[int],
                    focal: Optional[float] = None, weights: Optional[np.ndarray] = None,
                    smooth: Optional[int] = None, min_joints: int = 3) -> np.ndarray:
    """Camera-axes root positions (T, 3) in metres that put the root-relative ``poses`` (T, 17, 3)
    where the pixel ``keypoints`` (T, 17, 2) are, for a pinhole camera with its principal point at
    the image centre and focal length ``focal`` pixels (default max(width, height), a 53-degree
    field of view): per frame, the weighted least-squares solution of the projection equations
    ``(u - cx) (Z + tz) = f (X + tx)`` (and the same for v, y), which are linear in t.

    ``weights`` (T, 17): each joint's weight, e.g. its 2D score with 0 for joints that were filled
    from neighbouring frames (default: every joint 1). A frame with fewer than ``min_joints``
    weighted joints (or whose joints fix no depth) takes its translation from its neighbours in
    time (linear between them, held at the ends). ``smooth``: a Savitzky-Golay filter (degree 2) over that many frames afterwards.
    Only as good as the focal length: depth (and with it the x, y travel) scales with it.
    """
    w, h = size
    f = float(focal or max(w, h))
    X = np.asarray(poses, dtype=np.float64)
    uv = np.asarray(keypoints, dtype=np.float64) - np.array([w / 2.0, h / 2.0])
    T, J = X.shape[:2]
    if weights is None:
        wt = np.ones((T, J))
    else:
        wt = np.where(np.isfinite(weights), np.clip(np.asarray(weights, dtype=np.float64), 0, None), 0.0)
    usable = np.isfinite(uv).all(-1) & np.isfinite(X).all(-1) & (wt > 0)
    wt = np.where(usable, wt, 0.0)
    uv = np.where(usable[..., None], uv, 0.0)
    X = np.where(usable[..., None], X, 0.0)
    A = np.zeros((T, 2 * J, 3))
    b = np.zeros((T, 2 * J))
    A[:, :J, 0] = f
    A[:, :J, 2] = -uv[..., 0]
    b[:, :J] = uv[..., 0] * X[..., 2] - f * X[..., 0]
    A[:, J:, 1] = f
    A[:, J:, 2] = -uv[..., 1]
    b[:, J:] = uv[..., 1] * X[..., 2] - f * X[..., 1]
    W = np.concatenate([wt, wt], axis=1)
    AtA = np.einsum("tki,tk,tkj->tij", A, W, A)
    Atb = np.einsum("tki,tk,tk->ti", A, W, b)
    good = usable.sum(1) >= min_joints
    good[good] &= np.linalg.cond(AtA[good]) < 1e12  # e.g. every joint on one pixel: no depth to fit
    if not good.any():
        raise ValueError(f"no frame has {min_joints} usable joints to fit the root trajectory")
    AtA[~good] = np.eye(3)  # solved from the neighbours below
    t = np.linalg.solve(AtA, Atb[..., None])[..., 0]
    if not good.all():
        idx = np.flatnonzero(good)
        for c in range(3):
            t[:, c] = np.interp(np.arange(T), idx, t[idx, c])
    if smooth:
        t = savgol(t, smooth).astype(np.float64)
    return t


__all__ = ["write_bvh", "bvh_text", "hold_missing", "solve", "root_trajectory", "euler_zxy", "rotation_zxy", "to_bvh_axes",
           "BVH_JOINTS", "CAMERA_TO_BVH", "UNITS_PER_METRE"]
