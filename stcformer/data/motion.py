"""A small kinematic model of human motion on the Human3.6M 17-joint skeleton.

Joint angles (hip flexion/abduction, knee, torso lean/side/twist, neck, shoulder
flexion/abduction, elbow) are drawn per action from smooth periodic and random signals, clipped
to joint limits, and posed by forward kinematics with per-subject bone lengths. The body is
placed in the Human3.6M world (metres, z up) with its lower ankle on the floor. Walking actions
follow circular paths through the capture area; the others stand or sit near a spot while
turning, shifting weight, gesturing, reaching and bringing hands to the face.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from stcformer.data.skeleton import H36M_ACTIONS

DEG = np.pi / 180

# bone lengths (m) of a 1.75 m adult
BASE_BONES = dict(hip=0.13, thigh=0.45, shin=0.44, spine=0.23, chest=0.25, neck=0.13, head=0.11,
                  shoulder=0.16, upper_arm=0.28, forearm=0.25)
ANKLE_HEIGHT = 0.08

# joint limits (degrees) applied to every channel
LIMITS = dict(hip_flex=(-30, 120), hip_abd=(-10, 45), knee=(0, 150), lean=(-20, 70), side=(-20, 20),
              twist=(-45, 45), neck_pitch=(-30, 45), neck_yaw=(-70, 70), sh_flex=(-50, 170),
              sh_abd=(0, 150), elbow=(0, 150))


def subject_bones(rng: np.random.Generator) -> Dict[str, float]:
    """Bone lengths of one subject: an overall scale (height 1.55-1.90 m) and small per-bone jitter."""
    scale = rng.uniform(0.89, 1.09)
    return {k: v * scale * rng.uniform(0.96, 1.04) for k, v in BASE_BONES.items()}


def _rot(axis: str, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    m = {"x": ((o, z, z), (z, c, -s), (z, s, c)),
         "y": ((c, z, s), (z, o, z), (-s, z, c)),
         "z": ((c, -s, z), (s, c, z), (z, z, o))}[axis]
    return np.stack([np.stack(row, -1) for row in m], -2)  # (F, 3, 3)


def _apply(r: np.ndarray, v) -> np.ndarray:
    return np.einsum("fij,j->fi", r, np.asarray(v, dtype=np.float64))


def smooth_noise(rng, t: np.ndarray, amp: float, max_hz: float = 0.5, n: int = 4) -> np.ndarray:
    """A smooth random signal: a few sinusoids below ``max_hz`` with random phases."""
    out = np.zeros_like(t)
    for _ in range(n):
        out += rng.normal() * np.sin(2 * np.pi * rng.uniform(0.05, max_hz) * t + rng.uniform(0, 2 * np.pi))
    return amp * out / np.sqrt(n)


def bumps(rng, t: np.ndarray, rate_hz: float, width_s=(0.8, 2.0), hold=False) -> np.ndarray:
    """Raised-cosine pulses in [0, 1] at random times (a movement and its return), ``rate_hz`` per second."""
    out = np.zeros_like(t)
    n = rng.poisson(max(rate_hz * (t[-1] - t[0] + 1e-9), 0.0)) + 1
    for _ in range(n):
        c, w = rng.uniform(t[0], t[-1]), rng.uniform(*width_s)
        u = np.clip((t - c) / w, -1, 1)
        pulse = 0.5 * (1 + np.cos(np.pi * u))
        if hold:  # flatten the top: reach, hold, return
            pulse = np.clip(1.6 * pulse, 0, 1)
        out = np.maximum(out, pulse)
    return out


def _channels(t: np.ndarray) -> Dict[str, np.ndarray]:
    z = np.zeros_like(t)
    ch = {k: z.copy() for k in ("lean", "side", "twist", "neck_pitch", "neck_yaw")}
    for side in "RL":
        for k in ("hip_flex", "hip_abd", "knee", "sh_flex", "sh_abd", "elbow"):
            ch[k + side] = z.copy()
    return ch


def _gait(ch, t, rng, speed, stride, arm_swing=1.0):
    freq = speed / stride
    phi = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    for side, ph in (("R", phi), ("L", phi + np.pi)):
        ch["hip_flex" + side] += 6 + 24 * np.sin(ph)
        ch["knee" + side] += 6 + 58 * (0.5 + 0.5 * np.sin(ph + 1.1)) ** 3
        ch["hip_abd" + side] += 3 + 2 * np.sin(ph)
        ch["sh_flex" + side] += arm_swing * 18 * np.sin(ph + np.pi)
        ch["sh_abd" + side] += 8
        ch["elbow" + side] += 15 + arm_swing * 12 * (0.5 + 0.5 * np.sin(ph + np.pi))
    ch["twist"] += 6 * np.sin(phi)
    ch["lean"] += 5


def _stand(ch, t, rng):
    for side in "RL":
        ch["knee" + side] += 4 + smooth_noise(rng, t, 3, 0.3).clip(-4, None)
        ch["hip_abd" + side] += 4
        ch["sh_abd" + side] += 8
        ch["elbow" + side] += 10
    shift = smooth_noise(rng, t, 4, 0.25)  # weight shift from leg to leg
    ch["hip_abdR"] += shift
    ch["hip_abdL"] -= shift
    ch["side"] += 0.5 * shift
    ch["lean"] += 3 + smooth_noise(rng, t, 3, 0.3)


def _sit(ch, t, rng, amount):
    for side in "RL":
        ch["hip_flex" + side] += amount * (85 + rng.uniform(-8, 8))
        ch["knee" + side] += amount * (88 + rng.uniform(-10, 15))
        ch["hip_abd" + side] += amount * 8
    ch["lean"] += amount * smooth_noise(rng, t, 6, 0.2)


def _gesture(ch, t, rng, side, rate, flex=(40, 90), abd=(10, 40), elbow=(10, 60)):
    b = bumps(rng, t, rate)
    ch["sh_flex" + side] += b * rng.uniform(*flex)
    ch["sh_abd" + side] += b * rng.uniform(*abd)
    ch["elbow" + side] += b * rng.uniform(*elbow)


def _hand_to_face(ch, t, rng, side, rate=None, hold=False):
    b = np.ones_like(t) if rate is None else bumps(rng, t, rate, (0.8, 1.6), hold=hold)
    ch["sh_flex" + side] += b * rng.uniform(35, 55)
    ch["sh_abd" + side] += b * rng.uniform(15, 35)
    ch["elbow" + side] += b * rng.uniform(120, 140)


WALKS = {"Walking": (1.25, 1.0), "WalkDog": (1.0, 0.7), "WalkTogether": (0.95, 0.6)}  # speed m/s, arm swing


def _walk(ch, t, rng, action, centre):
    """A walk on a circle around ``centre``; returns the path (x, y, heading)."""
    base_speed, arm_swing = WALKS[action]
    speed = base_speed * rng.uniform(0.85, 1.15)
    _gait(ch, t, rng, speed, stride=rng.uniform(1.25, 1.5), arm_swing=arm_swing)
    radius = rng.uniform(1.0, 1.6)
    direction = rng.choice([-1.0, 1.0])
    theta = rng.uniform(0, 2 * np.pi) + direction * speed / radius * t
    x, y = radius * np.cos(theta) + 0.3 * centre[0], radius * np.sin(theta) + 0.3 * centre[1]
    heading = theta + (0.0 if direction > 0 else np.pi)
    if action == "WalkDog":
        ch["lean"] += 8
        ch["sh_flexR"] += 30 + smooth_noise(rng, t, 8, 0.6)
        ch["elbowR"] += 10
    if action == "WalkTogether":
        ch["neck_yaw"] += rng.choice([-1, 1]) * 25 + smooth_noise(rng, t, 10, 0.3)
    ch["neck_pitch"] += 5 + smooth_noise(rng, t, 5, 0.4)
    return x, y, heading


def _near_a_spot(ch, t, rng, centre):
    """Standing or sitting near ``centre``, turning slowly; returns the path (x, y, heading)."""
    drift = 0.15
    x = centre[0] + smooth_noise(rng, t, drift, 0.1)
    y = centre[1] + smooth_noise(rng, t, drift, 0.1)
    heading = rng.uniform(0, 2 * np.pi) + smooth_noise(rng, t, 0.6, 0.08)
    ch["twist"] += smooth_noise(rng, t, 10, 0.3)
    ch["neck_yaw"] += smooth_noise(rng, t, 20, 0.3)
    ch["neck_pitch"] += 5 + smooth_noise(rng, t, 8, 0.3)
    return x, y, heading


def _sitting_down(ch, t, rng):
    """Stand, sit down (sometimes deeper, towards the floor), and later get up again."""
    dur = t[-1] - t[0] + 1e-9
    down = bumps(rng, t, 0.0, (0.45 * dur, 0.7 * dur), hold=True)
    _stand(ch, t, rng)
    _sit(ch, t, rng, down * rng.uniform(0.9, 1.25))
    ch["lean"] += down * 20
    for side in "RL":
        _gesture(ch, t, rng, side, 0.1, flex=(20, 50), abd=(0, 15), elbow=(20, 60))


def _seated(ch, t, rng):
    _sit(ch, t, rng, 1.0)
    ch["lean"] += 10
    for side in "RL":
        ch["sh_flex" + side] += 25
        ch["elbow" + side] += 50


def _posture(ch, t, rng, action):
    if action == "SittingDown":
        _sitting_down(ch, t, rng)
    elif action in ("Sitting", "Eating"):
        _seated(ch, t, rng)
    else:
        _stand(ch, t, rng)


def _directions(ch, t, rng):
    for side in "RL":
        _gesture(ch, t, rng, side, 0.15, flex=(60, 100), abd=(0, 30), elbow=(0, 25))


def _discussion(ch, t, rng):
    for side in "RL":
        _gesture(ch, t, rng, side, 0.4, flex=(20, 60), abd=(5, 30), elbow=(40, 90))


def _eating(ch, t, rng):
    _hand_to_face(ch, t, rng, rng.choice(["R", "L"]), rate=0.35)


def _greeting(ch, t, rng):
    side = rng.choice(["R", "L"])
    wave = bumps(rng, t, 0.15, (1.2, 2.5), hold=True)
    ch["sh_abd" + side] += wave * rng.uniform(80, 130)
    ch["elbow" + side] += wave * (60 + 25 * np.sin(2 * np.pi * 2.0 * t))
    ch["lean"] += bumps(rng, t, 0.1) * 15


def _phoning(ch, t, rng):
    side = rng.choice(["R", "L"])
    _hand_to_face(ch, t, rng, side)
    _gesture(ch, t, rng, "L" if side == "R" else "R", 0.2, flex=(20, 50), elbow=(30, 80))


def _photo(ch, t, rng):
    for side in "RL":
        _hand_to_face(ch, t, rng, side, rate=0.2, hold=True)
    ch["lean"] += bumps(rng, t, 0.2) * 15


def _posing(ch, t, rng):
    for side in "RL":
        pose = bumps(rng, t, 0.2, (1.5, 3.0), hold=True)
        ch["sh_abd" + side] += pose * rng.uniform(40, 140)
        ch["sh_flex" + side] += pose * rng.uniform(-20, 60)
        ch["elbow" + side] += pose * rng.uniform(0, 110)
    ch["hip_abdR"] += bumps(rng, t, 0.1, hold=True) * 20


def _purchases(ch, t, rng):
    reach = bumps(rng, t, 0.3, (1.0, 2.0), hold=True)
    ch["lean"] += reach * rng.uniform(25, 55)
    for side in "RL":
        ch["sh_flex" + side] += reach * rng.uniform(50, 90)
        ch["elbow" + side] += reach * rng.uniform(0, 30)
        ch["knee" + side] += reach * rng.uniform(0, 25)
        ch["hip_flex" + side] += reach * rng.uniform(0, 20)


def _sitting(ch, t, rng):
    for side in "RL":
        _gesture(ch, t, rng, side, 0.2, flex=(10, 40), elbow=(0, 40))


def _smoking(ch, t, rng):
    _hand_to_face(ch, t, rng, rng.choice(["R", "L"]), rate=0.25, hold=True)


def _waiting(ch, t, rng):
    for side in "RL":  # arms folded or hands on hips now and then
        fold = bumps(rng, t, 0.1, (2.0, 4.0), hold=True)
        ch["elbow" + side] += fold * 90
        ch["sh_abd" + side] += fold * 15
    ch["lean"] += smooth_noise(rng, t, 4, 0.2)


# what each in-place action does on top of its posture (the random draws in this order)
GESTURES = {"Directions": _directions, "Discussion": _discussion, "Eating": _eating, "Greeting": _greeting,
            "Phoning": _phoning, "Photo": _photo, "Posing": _posing, "Purchases": _purchases,
            "Sitting": _sitting, "Smoking": _smoking, "Waiting": _waiting}


def action_channels(action: str, t: np.ndarray, rng: np.random.Generator):
    """Joint angle channels (degrees) and the path of one action.

    Returns (channels, path) where path = (x, y, heading) arrays in metres / radians.
    """
    ch = _channels(t)
    centre = rng.uniform(-0.6, 0.6, size=2)
    if action in WALKS:
        return ch, _walk(ch, t, rng, action, centre)
    path = _near_a_spot(ch, t, rng, centre)
    _posture(ch, t, rng, action)
    if action in GESTURES:
        GESTURES[action](ch, t, rng)
    return ch, path


def forward_kinematics(ch: Dict[str, np.ndarray], bones: Dict[str, float], heading: np.ndarray) -> np.ndarray:
    """Pose (F, 17, 3) in a body-centred world frame (root at the origin, z up, facing +y at heading 0)."""
    ch = {k: np.clip(v, *LIMITS[k.rstrip("RL") if k[-1] in "RL" and k.rstrip("RL") in LIMITS else k]) * DEG
          for k, v in ch.items()}
    n = len(heading)
    pelvis = _rot("z", heading)
    pose = np.zeros((n, 17, 3))
    # legs: flexion brings the knee forward (+y), knee flexion bends the shin back
    for side, (hip, knee, ankle), sign in (("R", (1, 2, 3), 1.0), ("L", (4, 5, 6), -1.0)):
        pose[:, hip] = _apply(pelvis, (sign * bones["hip"], 0, 0))
        thigh = pelvis @ _rot("y", -sign * ch["hip_abd" + side]) @ _rot("x", ch["hip_flex" + side])
        pose[:, knee] = pose[:, hip] + _apply(thigh, (0, 0, -bones["thigh"]))
        shin = thigh @ _rot("x", -ch["knee" + side])
        pose[:, ankle] = pose[:, knee] + _apply(shin, (0, 0, -bones["shin"]))
    # torso: lean forward (+y), lean sideways, twist about the vertical
    lower = pelvis @ _rot("z", 0.4 * ch["twist"]) @ _rot("y", 0.5 * ch["side"]) @ _rot("x", -0.5 * ch["lean"])
    pose[:, 7] = _apply(lower, (0, 0, bones["spine"]))
    chest = lower @ _rot("z", 0.6 * ch["twist"]) @ _rot("y", 0.5 * ch["side"]) @ _rot("x", -0.5 * ch["lean"])
    pose[:, 8] = pose[:, 7] + _apply(chest, (0, 0, bones["chest"]))
    head = chest @ _rot("z", ch["neck_yaw"]) @ _rot("x", -ch["neck_pitch"])
    pose[:, 9] = pose[:, 8] + _apply(head, (0, 0.35 * bones["neck"], 0.95 * bones["neck"]))
    pose[:, 10] = pose[:, 9] + _apply(head, (0, -0.25 * bones["head"], 0.97 * bones["head"]))
    # arms: flexion raises forward, abduction raises sideways, elbow flexion bends forward
    for side, (sh, el, wr), sign in (("L", (11, 12, 13), -1.0), ("R", (14, 15, 16), 1.0)):
        pose[:, sh] = pose[:, 8] + _apply(chest, (sign * bones["shoulder"], 0, -0.03))
        upper = chest @ _rot("y", -sign * ch["sh_abd" + side]) @ _rot("x", ch["sh_flex" + side])
        pose[:, el] = pose[:, sh] + _apply(upper, (0, 0, -bones["upper_arm"]))
        fore = upper @ _rot("x", ch["elbow" + side])
        pose[:, wr] = pose[:, el] + _apply(fore, (0, 0, -bones["forearm"]))
    return pose


def sequence(action: str, num_frames: int, bones: Dict[str, float], rng: np.random.Generator,
             fps: float = 50.0) -> np.ndarray:
    """World poses (F, 17, 3) in metres of one performance of ``action`` (one of the 15)."""
    if action not in H36M_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    t = np.arange(num_frames) / fps
    ch, (x, y, heading) = action_channels(action, t, rng)
    pose = forward_kinematics(ch, bones, heading)
    # put the lower ankle on the floor, then move along the path
    lowest = np.minimum(pose[:, 3, 2], pose[:, 6, 2])
    pose[..., 2] += (ANKLE_HEIGHT - lowest)[:, None]
    pose[..., 0] += x[:, None]
    pose[..., 1] += y[:, None]
    return pose.astype(np.float32)
