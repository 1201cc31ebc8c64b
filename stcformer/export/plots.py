"""Plots of training curves and per-action errors (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

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
