"""The datasets and their official protocols: one object per dataset.

A :class:`Benchmark` owns everything that differs between Human3.6M and MPI-INF-3DHP: how its
files load, the official training recipe (window length, temporal step, stride, batch rule),
the model family, how test predictions are scored and printed, what the plots show and how a
synthetic stand-in is written. The programs (``train``, ``evaluate``) never branch on the
dataset's name; adding a dataset means adding one object to :data:`BENCHMARKS`.

Scoring lives in :mod:`stcformer.evaluation.scoring`; :func:`stcformer.evaluation.runner.run_test` runs the
official test (flip-averaged centre frames, see :mod:`stcformer.evaluation.predict`) and scores it here.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from stcformer.data.dataset import PoseData, WindowSet
from stcformer.errors import UsageError
from stcformer.evaluation import metrics
from stcformer.evaluation.scoring import h36m_report, score_3dhp, score_h36m

# the official training recipe shared by both datasets (README commands of the official code)
_RECIPE = dict(frames=27, batch_size=128, stride=3, tds=3, layers=6, d_hid=256, lr=1e-3,
               lr_decay=0.96, epochs=80)


class Benchmark:
    """One dataset: its loader, defaults, scoring and report. Subclasses fill in the details."""

    name: str = ""
    title: str = ""
    family: str = ""                       # model family (stcformer.model.modules.FAMILIES)
    recipe: Dict = {}                      # official training flags
    eval_frames: int = 27                  # evaluate's default window when the checkpoint does not say
    eval_tds: int = 3
    fixed_tds: Optional[int] = None        # a tds the protocol imposes (consecutive frames), or None
    keypoints: Optional[str] = None        # default 2D detections (file suffix), None if not chosen
    synthetic_keypoints: Optional[str] = None
    data_files: str = ""                   # for --help: what --data-dir holds
    synthetic_marker: str = ""             # a file the synthetic writer creates last

    # ---------------------------------------------------------------- data
    def load(self, data_dir, keypoints: Optional[str] = None, train: bool = True, test: bool = True) -> PoseData:
        raise NotImplementedError

    def write_synthetic(self, folder: str, frames: int, takes: int) -> None:
        raise NotImplementedError

    def windows_per_step(self, batch_size: int, stride: int) -> int:
        """Training windows per optimizer step (all processes together)."""
        return batch_size

    # ---------------------------------------------------------------- scoring
    def score(self, pred: np.ndarray, windows: WindowSet, unit_to_mm: float, p2_batch: int = 0) -> dict:
        """The report (a JSON-able dict with at least ``p1_mm``) of centre predictions (N, J, 3)."""
        raise NotImplementedError

    def format(self, report: dict) -> str:
        """The printable table of a report."""
        raise NotImplementedError

    def summary(self, report: dict) -> str:
        """The numbers beside P1 in a training epoch's line."""
        raise NotImplementedError

    def headline(self, report: dict) -> str:
        """The one-line result evaluate prints last."""
        raise NotImplementedError

    def plot(self, report: dict, path: str) -> None:
        """Bar plot of the per-action (per-sequence) errors."""
        raise NotImplementedError


class Human36M(Benchmark):
    """Human3.6M: train S1,S5,S6,S7,S8, test S9,S11; P1/P2 per action, averaged over 15 actions."""

    name, title, family = "h36m", "Human3.6M", "h36m"
    recipe = dict(_RECIPE)
    eval_frames, eval_tds = 27, 3
    keypoints, synthetic_keypoints = "cpn_ft_h36m_dbb", "synth_det"
    data_files = "data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz"
    synthetic_marker = "data_3d_h36m.npz"

    def load(self, data_dir, keypoints=None, train=True, test=True):
        from stcformer.data.h36m import load_h36m
        from stcformer.data.skeleton import H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS
        return load_h36m(data_dir, keypoints or self.keypoints, H36M_TRAIN_SUBJECTS if train else (),
                         H36M_TEST_SUBJECTS if test else ())

    def write_synthetic(self, folder, frames, takes):
        from stcformer.data.synthetic import write_h36m
        write_h36m(folder, frames=frames, takes=takes)

    def windows_per_step(self, batch_size, stride):
        return batch_size // stride  # the official loader batches b chunks of s frames' windows

    def score(self, pred, windows, unit_to_mm, p2_batch=0):
        return h36m_report(score_h36m(pred, windows, unit_to_mm, p2_batch))

    def format(self, report):
        head = f"{'Action':<14}{'P1 mm':>10}{'P2 mm':>10}"
        rows = [head, "-" * len(head)]
        rows += [f"{a:<14}{r['p1_mm']:>10.2f}{r['p2_mm']:>10.2f}" for a, r in report["per_action"].items()]
        rows += ["-" * len(head), f"{'Average':<14}{report['p1_mm']:>10.2f}{report['p2_mm']:>10.2f}"]
        return "\n".join(rows)

    def summary(self, report):
        return f"P2 {report['p2_mm']:.2f} mm"

    def headline(self, report):
        return f"P1 {report['p1_mm']:.2f} mm  P2 {report['p2_mm']:.2f} mm"

    def plot(self, report, path):
        from stcformer.export.plots import plot_per_action
        plot_per_action(report["per_action"], path,
                        title=f"P1 {report['p1_mm']:.2f} mm, P2 {report['p2_mm']:.2f} mm")


class MPIINF3DHP(Benchmark):
    """MPI-INF-3DHP: consecutive frames, valid test frames only, MPJPE and PCK/AUC per sequence."""

    name, title, family = "3dhp", "MPI-INF-3DHP", "3dhp"
    recipe = dict(_RECIPE, frames=81, stride=1, tds=1)  # the author's 3DHP command
    eval_frames, eval_tds, fixed_tds = 81, 1, 1
    data_files = "data_train_3dhp.npz and data_test_3dhp.npz"
    synthetic_marker = "data_test_3dhp.npz"

    def load(self, data_dir, keypoints=None, train=True, test=True):
        from stcformer.data.mpi3dhp import load_3dhp
        return load_3dhp(data_dir, train=train, test=test)

    def write_synthetic(self, folder, frames, takes):
        from stcformer.data.synthetic import write_3dhp
        write_3dhp(folder, frames=frames)

    def score(self, pred, windows, unit_to_mm, p2_batch=0):
        return score_3dhp(pred, windows)

    def format(self, report):
        return metrics.format_3dhp(report)

    def summary(self, report):
        return f"PCK {report['pck']:.1f} AUC {report['auc']:.1f}"

    def headline(self, report):
        return f"MPJPE {report['mpjpe_mm']:.2f} mm  PCK {report['pck']:.1f}  AUC {report['auc']:.1f}"

    def plot(self, report, path):
        from stcformer.export.plots import plot_per_action
        plot_per_action(report["per_sequence"], path, keys=("mpjpe_mm",), labels=("MPJPE",))


BENCHMARKS: Dict[str, Benchmark] = {p.name: p for p in (Human36M(), MPIINF3DHP())}


def get_benchmark(name: str) -> Benchmark:
    """The protocol of dataset ``name`` (``h36m``, ``3dhp``); a UsageError names the choices."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(BENCHMARKS)}") from None


__all__ = ["Benchmark", "Human36M", "MPIINF3DHP", "BENCHMARKS", "get_benchmark"]
