"""Pose errors and their official aggregations.

Human3.6M: MPJPE (protocol 1), P-MPJPE (protocol 2, Procrustes-aligned), N-MPJPE (scale-aligned)
and MPJVE (velocity), per window; :class:`ActionTable` averages them per action (the name up to
the first space) and takes the unweighted mean of the 15 per-action means, as the official
evaluation does. MPI-INF-3DHP: MPJPE, PCK@150mm and AUC over the 14 evaluation joints as the
official MATLAB scripts compute them, per sequence and pooled.

Inputs are (..., J, 3) arrays or tensors in any unit; multiply by 1000 for mm where poses are
in metres.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, Mapping, Sequence

import numpy as np
import torch

from stcformer.data.skeleton import (H36M_ACTIONS, MPI3DHP_PCK_GROUPS, MPI3DHP_PCK_JOINTS, MPI3DHP_SCENES,
                            action_group)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def mpjpe(pred, target):
    """Mean per-joint position error over everything: the training loss (torch or numpy)."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    if isinstance(pred, torch.Tensor):
        return torch.linalg.vector_norm(pred - target, dim=-1).mean()
    return np.linalg.norm(pred - target, axis=-1).mean()


def mpjpe_per_window(pred, target) -> np.ndarray:
    """Protocol 1 per window: (N, ..., J, 3) -> (N,), the mean joint error over all but the first axis."""
    pred, target = _np(pred), _np(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {target.shape}")
    err = np.linalg.norm(pred - target, axis=-1)
    return err.reshape(len(err), -1).mean(axis=1)


def p_mpjpe(pred, target) -> np.ndarray:
    """Protocol 2 per window: (N, J, 3) -> (N,), error after the best similarity transform.

    Each prediction is aligned to its ground truth by Procrustes (rotation with reflection fixed,
    uniform scale, translation), in float32 like the official numpy code. This is computed per
    window; the official script credits a test batch that spans two actions with the batch mean,
    so its per-action and average P2 can differ slightly from these where actions change inside
    a batch (P1 is not affected).
    """
    pred = _np(pred).astype(np.float32)
    target = _np(target).astype(np.float32)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected two (N, J, 3) arrays, got {pred.shape} and {target.shape}")
    mu_x = target.mean(axis=1, keepdims=True)
    mu_y = pred.mean(axis=1, keepdims=True)
    x0, y0 = target - mu_x, pred - mu_y
    norm_x = np.sqrt((x0 ** 2).sum(axis=(1, 2), keepdims=True))
    norm_y = np.sqrt((y0 ** 2).sum(axis=(1, 2), keepdims=True))
    x0, y0 = x0 / norm_x, y0 / norm_y
    u, s, vt = np.linalg.svd(np.matmul(x0.transpose(0, 2, 1), y0))
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    # no reflections: flip the last singular direction where det(R) < 0
    sign = np.sign(np.linalg.det(r))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    a = (s.sum(axis=1, keepdims=True)[:, :, None] * norm_x / norm_y)
    t = mu_x - a * np.matmul(mu_y, r)
    aligned = a * np.matmul(pred, r) + t
    return np.linalg.norm(aligned - target, axis=-1).mean(axis=-1)


def official_batch_credit(values, groups: Sequence[str], batch_size: int) -> np.ndarray:
    """Per-window values as the official script credits them to actions, batch by batch.

    The official test loop takes ``batch_size`` consecutive windows at a time; where a batch holds
    windows of more than one action, each window is credited with the batch mean instead of its
    own value. Applying this to per-window P2 reproduces the official per-action P2 exactly
    (given the official window order); P1 is credited per window in either case.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    labels = [action_group(g) for g in groups]
    out = values.copy()
    for start in range(0, len(values), batch_size):
        stop = min(start + batch_size, len(values))
        if len(set(labels[start:stop])) > 1:
            out[start:stop] = values[start:stop].mean()
    return out


def n_mpjpe(pred, target) -> np.ndarray:
    """Scale-normalised MPJPE per window: (N, ..., J, 3) -> (N,), pred scaled by the least-squares factor."""
    pred, target = _np(pred).astype(np.float64), _np(target).astype(np.float64)
    n = len(pred)
    p, t = pred.reshape(n, -1), target.reshape(n, -1)
    scale = (p * t).sum(axis=1) / np.maximum((p * p).sum(axis=1), 1e-12)
    return mpjpe_per_window(pred * scale.reshape((n,) + (1,) * (pred.ndim - 1)), target)


def mpjve_per_step(pred, target) -> np.ndarray:
    """Velocity error of one sequence (F, J, 3) per frame step: (F-1,), the mean over joints of the
    error of the frame-to-frame differences."""
    pred, target = _np(pred).astype(np.float64), _np(target).astype(np.float64)
    return np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1).mean(axis=-1)


def mpjve(pred, target) -> float:
    """Mean per-joint velocity error of one sequence (F, J, 3) (nan for fewer than 2 frames)."""
    steps = mpjve_per_step(pred, target)
    return float(steps.mean()) if len(steps) else float("nan")


class ActionTable:
    """Per-action means of per-window errors and their macro average (the official table).

    ``add(metric, groups, values)`` adds one value per window (already in mm).
    The average of a metric is the unweighted mean of the per-action means over ``actions``
    (default the 15 Human3.6M actions); actions outside that list are reported but not averaged.
    """

    def __init__(self, actions: Sequence[str] = H36M_ACTIONS):
        self.actions = list(actions)
        self.sums: Dict[str, Dict[str, float]] = OrderedDict()
        self.counts: Dict[str, Dict[str, int]] = OrderedDict()

    def add(self, metric: str, groups: Iterable[str], values) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        groups = [action_group(g) for g in groups]
        if len(groups) != len(values):
            raise ValueError("one action per value")
        s, c = self.sums.setdefault(metric, {}), self.counts.setdefault(metric, {})
        for g, v in zip(groups, values):
            s[g] = s.get(g, 0.0) + float(v)
            c[g] = c.get(g, 0) + 1

    def means(self, metric: str) -> Dict[str, float]:
        s, c = self.sums.get(metric, {}), self.counts.get(metric, {})
        order = [a for a in self.actions if a in s] + sorted(a for a in s if a not in self.actions)
        return OrderedDict((a, s[a] / c[a]) for a in order)

    def average(self, metric: str) -> float:
        """Unweighted mean over the listed actions present (nan if none)."""
        m = self.means(metric)
        vals = [m[a] for a in self.actions if a in m]
        return float(np.mean(vals)) if vals else float("nan")

    def windows(self, action: str, metric: str = "p1") -> int:
        return self.counts.get(metric, {}).get(action, 0)

    def format(self, metrics=("p1", "p2"), titles=("P1 mm", "P2 mm")) -> str:
        """The official-style text table: one row per action, then the average."""
        head = f"{'Action':<14}" + "".join(f"{t:>10}" for t in titles)
        rows = [head, "-" * len(head)]
        first = self.means(metrics[0])
        for action in first:
            rows.append(f"{action:<14}" + "".join(f"{self.means(m).get(action, float('nan')):>10.2f}"
                                                  for m in metrics))
        rows.append("-" * len(head))
        rows.append(f"{'Average':<14}" + "".join(f"{self.average(m):>10.2f}" for m in metrics))
        return "\n".join(rows)


# ---------------------------------------------------------------- MPI-INF-3DHP
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = np.arange(0, 151, 5, dtype=np.float64)  # 0:5:150, 31 values


def joint_errors(pred, target) -> np.ndarray:
    """Per-joint Euclidean errors (N, J) of (N, J, 3) poses."""
    return np.linalg.norm(_np(pred).astype(np.float64) - _np(target).astype(np.float64), axis=-1)


def pck(errors_mm, joints: Sequence[int] = MPI3DHP_PCK_JOINTS, threshold: float = PCK_THRESHOLD_MM) -> float:
    """Percentage of (frame, joint) errors strictly below ``threshold`` over ``joints`` (MATLAB PCK)."""
    e = np.asarray(errors_mm)[:, list(joints)]
    return float(100.0 * np.mean(e < threshold))


def auc(errors_mm, joints: Sequence[int] = MPI3DHP_PCK_JOINTS) -> float:
    """100 x the mean PCK over the thresholds 0, 5, ..., 150 mm (strict <), as the MATLAB AUC."""
    e = np.asarray(errors_mm)[:, list(joints)]
    return float(100.0 * np.mean([np.mean(e < t) for t in AUC_THRESHOLDS_MM]))


def mpi3dhp_scores(errors_mm: Mapping[str, np.ndarray]) -> dict:
    """Official 3DHP numbers from per-sequence joint errors {name: (N_valid, 17) mm}.

    Returns {"per_sequence": {name: {mpjpe_mm, pck, auc, frames}}, "overall": {...},
    "scenes": {GS|noGS|Outdoor: {...}}, "groups": {joint group: {pck, auc}}}. MPJPE averages all 17
    joints (the zeroed pelvis included); PCK and AUC use the 14 joints without pelvis, spine and
    head. Overall and scene values pool frames, which equals the frame-weighted mean of the
    sequences.
    """
    def score(e):
        return {"mpjpe_mm": float(e.mean()) if e.size else float("nan"),
                "pck": pck(e) if e.size else float("nan"),
                "auc": auc(e) if e.size else float("nan"), "frames": int(len(e))}

    per = OrderedDict((name, score(np.asarray(e))) for name, e in errors_mm.items())
    every = np.concatenate([np.asarray(e) for e in errors_mm.values()]) if errors_mm else np.zeros((0, 17))
    scenes = OrderedDict()
    for scene, names in MPI3DHP_SCENES.items():
        if all(n in errors_mm for n in names):
            scenes[scene] = score(np.concatenate([np.asarray(errors_mm[n]) for n in names]))
    groups = OrderedDict((g, {"pck": pck(every, j), "auc": auc(every, j)}) for g, j in MPI3DHP_PCK_GROUPS)
    return {"per_sequence": per, "overall": score(every), "scenes": scenes, "groups": groups}


def format_3dhp(scores: dict) -> str:
    head = f"{'Sequence':<10}{'frames':>8}{'MPJPE mm':>10}{'PCK':>8}{'AUC':>8}"
    rows = [head, "-" * len(head)]
    rows_in = list(scores["per_sequence"].items()) + [("-", None)] + list(scores["scenes"].items())
    for name, s in rows_in + [("All", scores["overall"])]:
        if s is None:
            rows.append("-" * len(head))
            continue
        rows.append(f"{name:<10}{s['frames']:>8d}{s['mpjpe_mm']:>10.2f}{s['pck']:>8.1f}{s['auc']:>8.1f}")
    return "\n".join(rows)


__all__ = ["mpjpe", "mpjpe_per_window", "p_mpjpe", "official_batch_credit", "n_mpjpe", "mpjve", "ActionTable",
           "pck", "auc", "joint_errors", "mpi3dhp_scores", "format_3dhp"]
