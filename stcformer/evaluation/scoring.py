"""Official scores of centre-frame predictions: Human3.6M's per-action P1/P2 (plus N-MPJPE and
MPJVE) and MPI-INF-3DHP's MPJPE/PCK/AUC per sequence and pooled."""
from __future__ import annotations

import numpy as np

from stcformer.data.dataset import WindowSet
from stcformer.evaluation import metrics


def score_h36m(pred: np.ndarray, windows: WindowSet, unit_to_mm: float = 1000.0,
               p2_batch: int = 0) -> metrics.ActionTable:
    """Per-action table of P1, P2, N-MPJPE and MPJVE (mm) of centre predictions (N, J, 3).

    ``p2_batch``: credit P2 as the official script does with that test batch size
    (see :func:`metrics.official_batch_credit`).
    """
    target = windows.targets(np.arange(len(windows)))[:, 0].numpy()
    groups = windows.groups(np.arange(len(windows)))
    table = metrics.ActionTable()
    table.add("p1", groups, metrics.mpjpe_per_window(pred, target) * unit_to_mm)
    p2 = metrics.p_mpjpe(pred, target) * unit_to_mm
    if p2_batch:
        p2 = metrics.official_batch_credit(p2, groups, p2_batch)
    table.add("p2", groups, p2)
    table.add("n_p1", groups, metrics.n_mpjpe(pred, target) * unit_to_mm)
    # velocity error between consecutive centres of each sequence
    for s in np.unique(windows.seq):
        rows = np.flatnonzero(windows.seq == s)
        rows = rows[np.argsort(windows.centre[rows])]
        if len(rows) > 1 and np.all(np.diff(windows.centre[rows]) == 1):
            table.add("mpjve", [windows.sequences[s].group] * (len(rows) - 1),
                      metrics.mpjve_per_step(pred[rows], target[rows]) * unit_to_mm)
    return table


def h36m_report(table: metrics.ActionTable) -> dict:
    p1, p2 = table.means("p1"), table.means("p2")
    return {
        "p1_mm": table.average("p1"), "p2_mm": table.average("p2"),
        "n_p1_mm": table.average("n_p1"), "mpjve_mm": table.average("mpjve"),
        "per_action": {a: {"p1_mm": p1[a], "p2_mm": p2[a], "windows": table.windows(a)} for a in p1},
    }


def score_3dhp(pred: np.ndarray, windows: WindowSet) -> dict:
    """Official 3DHP numbers (mm) of centre predictions on the valid frames."""
    target = windows.targets(np.arange(len(windows)))[:, 0].numpy()
    errors = metrics.joint_errors(pred, target)
    per_seq = {seq.subject: errors[windows.seq == s] for s, seq in enumerate(windows.sequences)}
    scores = metrics.mpi3dhp_scores(per_seq)
    return {"p1_mm": scores["overall"]["mpjpe_mm"], "mpjpe_mm": scores["overall"]["mpjpe_mm"],
            "pck": scores["overall"]["pck"], "auc": scores["overall"]["auc"], **scores}


__all__ = ["score_h36m", "h36m_report", "score_3dhp"]
