"""BVH export: parse the file back and check its forward kinematics against the joints."""
import numpy as np
import pytest

from stcformer.export.bvh import bvh_text, euler_zxy, root_trajectory, rotation_zxy, to_bvh_axes, write_bvh
from stcformer.data.skeleton import H36M_PARENTS

# a standing Human3.6M-17 pose in camera axes (x right, y down, z forward), metres, facing the camera
REST = np.array([
    [0, 0, 0], [-0.13, 0.0, 0.0], [-0.13, 0.45, 0.02], [-0.13, 0.88, 0.05], [0.13, 0.0, 0.0],
    [0.13, 0.45, 0.02], [0.13, 0.88, 0.05], [0, -0.23, 0.0], [0, -0.48, 0.0], [0, -0.58, -0.05],
    [0, -0.70, 0.0], [0.17, -0.45, 0.0], [0.45, -0.45, 0.0], [0.70, -0.45, 0.0], [-0.17, -0.45, 0.0],
    [-0.45, -0.45, 0.0], [-0.70, -0.45, 0.0]])


def parse_bvh(text):
    """A small BVH reader: joints (name, parent, offset, channels), end sites, frame time, motion."""
    tok = text.split()
    i = 0
    joints, stack = [], []
    assert tok[0] == "HIERARCHY"
    i = 1
    while tok[i] != "MOTION":
        t = tok[i]
        if t in ("ROOT", "JOINT"):
            joints.append({"name": tok[i + 1], "parent": stack[-1] if stack else -1, "end": False})
            i += 2
        elif t == "End":
            joints.append({"name": "end", "parent": stack[-1], "end": True, "channels": []})
            i += 2
        elif t == "{":
            stack.append(len(joints) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            joints[stack[-1]]["offset"] = np.array([float(v) for v in tok[i + 1:i + 4]])
            i += 4
        elif t == "CHANNELS":
            n = int(tok[i + 1])
            joints[stack[-1]]["channels"] = tok[i + 2:i + 2 + n]
            i += 2 + n
        else:
            raise AssertionError(f"unexpected token {t}")
    assert tok[i + 1] == "Frames:" and tok[i + 3] == "Frame" and tok[i + 4] == "Time:"
    frames, frame_time = int(tok[i + 2]), float(tok[i + 5])
    motion = np.array([float(v) for v in tok[i + 6:]]).reshape(frames, -1)
    return joints, frame_time, motion


def forward_kinematics(joints, motion):
    """World positions (F, n, 3) of every joint and end site, in file order."""
    F = len(motion)
    pos = np.zeros((F, len(joints), 3))
    rot = np.zeros((F, len(joints), 3, 3))
    col = 0
    for k, j in enumerate(joints):
        ch = j["channels"]
        vals = motion[:, col:col + len(ch)]
        col += len(ch)
        t = np.zeros((F, 3))
        ang = {}
        for name, v in zip(ch, vals.T):
            if name.endswith("position"):
                t[:, "XYZ".index(name[0])] = v
            else:
                ang[name[0]] = v
        R = np.broadcast_to(np.eye(3), (F, 3, 3)).copy()
        for axis in [c[0] for c in ch if c.endswith("rotation")]:  # composed in channel order
            a = np.radians(ang[axis])
            c, s = np.cos(a), np.sin(a)
            M = np.zeros((F, 3, 3))
            i0, i1 = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
            i2 = 3 - i0 - i1
            M[:, i2, i2] = 1
            M[:, i0, i0], M[:, i0, i1], M[:, i1, i0], M[:, i1, i1] = c, -s, s, c
            R = R @ M
        if j["parent"] < 0:
            pos[:, k] = j["offset"] + t
            rot[:, k] = R
        else:
            p = j["parent"]
            pos[:, k] = pos[:, p] + np.einsum("fij,j->fi", rot[:, p], j["offset"])
            rot[:, k] = rot[:, p] @ R
    return pos


def rigid_motion(frames=40, seed=0):
    """A rigid skeleton (constant bones) with random smooth joint rotations, camera axes."""
    rng = np.random.default_rng(seed)
    T = frames
    P = np.zeros((T, 17, 3))
    G = [None] * 17
    for j in range(17):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        amp = rng.uniform(0.2, 0.8)
        ang = amp * np.sin(np.linspace(0, 2 * np.pi, T) + rng.uniform(0, 6))
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        Rj = np.eye(3) + np.sin(ang)[:, None, None] * K + (1 - np.cos(ang))[:, None, None] * (K @ K)
        p = H36M_PARENTS[j]
        G[j] = Rj if p < 0 else G[p] @ Rj
        if p >= 0:
            P[:, j] = P[:, p] + np.einsum("tij,j->ti", G[p], REST[j] - REST[p])
    return P


def h36m_order(joints):
    """Indices of the parsed BVH entries (joints and end sites) in Human3.6M order."""
    names = ["Hip", "RHip", "RKnee", "end", "LHip", "LKnee", "end", "Spine", "Thorax", "Neck", "end",
             "LShoulder", "LElbow", "end", "RShoulder", "RElbow", "end"]
    parsed = [j["name"] for j in joints]
    assert parsed == names
    return list(range(17))


def test_euler_round_trip():
    rng = np.random.default_rng(1)
    ang = rng.uniform([-180, -89, -180], [180, 89, 180], size=(200, 3))
    np.testing.assert_allclose(rotation_zxy(euler_zxy(rotation_zxy(ang))), rotation_zxy(ang), atol=1e-9)
    # the matrix is the product of the three axis rotations in channel order Z, X, Y
    z, x, y = np.radians([30.0, 20.0, -40.0])
    Rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    np.testing.assert_allclose(rotation_zxy([30.0, 20.0, -40.0]), Rz @ Rx @ Ry, atol=1e-12)


def test_bvh_forward_kinematics_reproduces_a_rigid_skeleton():
    P = rigid_motion()
    joints, frame_time, motion = parse_bvh(bvh_text(P, fps=25))
    assert frame_time == pytest.approx(0.04)
    assert [j["name"] for j in joints if not j["end"]][:3] == ["Hip", "RHip", "RKnee"]
    assert joints[0]["channels"] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(j["channels"] == ["Zrotation", "Xrotation", "Yrotation"] for j in joints[1:] if not j["end"])
    fk = forward_kinematics(joints, motion)[:, h36m_order(joints)]
    expect = to_bvh_axes(P)  # centimetres, Y up
    fk_rel = fk - fk[:, :1]
    np.testing.assert_allclose(fk_rel, expect - expect[:, :1], atol=0.05)  # 0.5 mm
    # the root stays put, raised so the feet of the median pose reach the floor
    assert np.ptp(fk[:, 0], axis=0).max() < 1e-6 and fk[0, 0, 1] == pytest.approx(88, abs=1)


def test_bvh_rest_pose_stands_upright():
    joints, _, motion = parse_bvh(bvh_text(rigid_motion(), fps=50))
    rest = forward_kinematics(joints, np.zeros((1, motion.shape[1])))[0]
    assert rest[3, 1] < rest[2, 1] < rest[1, 1] < rest[7, 1] < rest[8, 1] < rest[10, 1]  # ankle..head upward
    assert rest[13, 0] > rest[11, 0] > 0 > rest[14, 0] > rest[16, 0]  # left arm on +x, right on -x


def test_bvh_non_rigid_within_bone_length_spread(tmp_path):
    # noisy joints: bones stretch by a few mm per frame; FK stays within that
    P = rigid_motion(60, seed=3) + np.random.default_rng(4).normal(scale=0.002, size=(60, 17, 3))
    P -= P[:, :1]
    write_bvh(tmp_path / "a.bvh", P, fps=30)
    joints, _, motion = parse_bvh((tmp_path / "a.bvh").read_text())
    fk = forward_kinematics(joints, motion)
    err = np.linalg.norm((fk - fk[:, :1]) - to_bvh_axes(P), axis=-1)  # cm
    assert err.mean() < 1.0 and err.max() < 3.0


def test_root_trajectory_recovers_translation(tmp_path):
    P = rigid_motion(20, seed=5)
    t = np.stack([np.linspace(-0.5, 0.5, 20), np.full(20, 0.1), np.linspace(4, 6, 20)], -1)
    f, w, h = 1000.0, 1000, 800
    X = P + t[:, None]
    uv = f * X[..., :2] / X[..., 2:] + np.array([w / 2, h / 2])
    np.testing.assert_allclose(root_trajectory(P, uv, (w, h), focal=f), t, atol=1e-6)
    joints, _, motion = parse_bvh(bvh_text(P, fps=50, root=t))
    fk = forward_kinematics(joints, motion)
    moved = to_bvh_axes(t - t[:1])
    np.testing.assert_allclose(fk[:, 0] - fk[:1, 0], moved, atol=1e-3)


def _projected(T=30, seed=6):
    P = rigid_motion(T, seed=seed)
    t = np.stack([np.linspace(-0.4, 0.6, T), np.full(T, 0.2), np.linspace(5, 4, T)], -1)
    f, w, h = 1100.0, 1000, 800
    X = P + t[:, None]
    uv = f * X[..., :2] / X[..., 2:] + np.array([w / 2, h / 2])
    return P, t, uv, f, (w, h)


def test_root_trajectory_ignores_zero_weight_joints():
    P, t, uv, f, size = _projected()
    bad = uv.copy()
    bad[::3, 13] += 150       # a wrist far off in every third frame (a filled or low-score joint)
    bad[4, :] = 0             # a frame with no detection at all
    weights = np.ones(bad.shape[:2])
    weights[::3, 13] = 0
    weights[4] = 0
    got = root_trajectory(P, bad, size, focal=f, weights=weights)
    np.testing.assert_allclose(np.delete(got, 4, 0), np.delete(t, 4, 0), atol=1e-6)
    np.testing.assert_allclose(got[4], (t[3] + t[5]) / 2, atol=1e-6)  # from its neighbours (t is linear)
    unweighted = root_trajectory(P, bad, size, focal=f)
    assert np.abs(unweighted - t).max() > 0.05  # the bad joints do pull an unweighted fit away


def test_root_trajectory_smoothing_reduces_noise():
    P, t, uv, f, size = _projected(T=60, seed=7)
    noisy = uv + np.random.default_rng(0).normal(scale=3.0, size=uv.shape)
    raw = root_trajectory(P, noisy, size, focal=f)
    smooth = root_trajectory(P, noisy, size, focal=f, smooth=15)
    assert np.abs(smooth - t).mean() < 0.7 * np.abs(raw - t).mean()
    # a linear trajectory passes a degree-2 Savitzky-Golay filter unchanged
    np.testing.assert_allclose(root_trajectory(P, uv, size, focal=f, smooth=15), t, atol=1e-6)


def test_root_trajectory_depth_scales_with_the_focal_length():
    P, t, uv, f, size = _projected()
    doubled = root_trajectory(P, uv, size, focal=2 * f)
    assert np.all(doubled[:, 2] > 1.5 * t[:, 2])  # a longer lens puts the same image farther away
