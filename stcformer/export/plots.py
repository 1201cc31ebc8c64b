"""Plots of training curves, per-action errors and a lifted sequence's preview (matplotlib, Agg
backend, written atomically)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from stcformer.io import save_figure


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(epochs: Sequence[dict], path: str, mean_pose_p1_mm: Optional[float] = None) -> None:
    """Training loss, test P1 and P2 (mm) against the epoch, from metrics.json's ``epochs`` list."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = [e["epoch"] for e in epochs]
    for key, label, style in (("train_loss_mm", "train loss (MPJPE)", "-o"), ("p1_mm", "test P1", "-s"),
                              ("p2_mm", "test P2", "-^")):
        ax.plot(x, [e.get(key) for e in epochs], style, label=label, markersize=3)
    if mean_pose_p1_mm is not None:
        ax.axhline(mean_pose_p1_mm, color="grey", ls="--", lw=1, label="P1 of the mean pose")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mm")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_per_action(per_action: Mapping[str, Mapping[str, float]], path: str,
                    keys=("p1_mm", "p2_mm"), labels=("P1", "P2"), title: str = "") -> None:
    """Grouped bars of per-action (or per-sequence) errors in mm."""
    plt = _pyplot()
    names = list(per_action)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4.5))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(zip(keys, labels)):
        ax.bar([n + (i - (len(keys) - 1) / 2) * width for n in range(len(names))],
               [per_action[a].get(key) or 0.0 for a in names], width, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("mm")
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_preview(kpts: np.ndarray, poses: np.ndarray, path: str, count: int = 4) -> None:
    """A row per sampled frame: the 2D input and the lifted 3D skeleton (left joints blue)."""
    from matplotlib.figure import Figure

    from stcformer.export.render import bone_lines, set_bones, z_up

    frames = np.unique(np.linspace(0, len(kpts) - 1, min(count, len(kpts))).round().astype(int))
    fig = Figure(figsize=(8, 3.6 * len(frames)))
    for row, f in enumerate(frames):
        ax2 = fig.add_subplot(len(frames), 2, 2 * row + 1)
        ax3 = fig.add_subplot(len(frames), 2, 2 * row + 2, projection="3d")
        set_bones(bone_lines(ax2), kpts[f])
        set_bones(bone_lines(ax3), z_up(poses[f]))
        ax2.relim()
        ax2.autoscale_view()
        ax2.invert_yaxis()
        ax2.set_aspect("equal")
        ax2.set_title(f"frame {f}: 2D input (pixels)")
        ax3.set_title("3D (m, root-relative)")
        ax3.view_init(elev=15, azim=-70)
        for set_lim in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            set_lim(-0.9, 0.9)
    fig.tight_layout()
    save_figure(fig, path)
