"""Evaluation numbers pinned: a fixed synthetic set and fixed weights give the same per-action
(per-sequence) errors as when the protocol code was last changed on purpose.

The weights are random (seeded) and untrained, so the errors are large; what matters is that
windows, flip averaging, root handling, alignment and the per-action/sequence aggregation do
not move. Tolerance 1e-3 mm: far above float32 summation-order differences between CPUs, far
below any change of benchmark.
"""
import json

import pytest
import torch

from stcformer.model.checkpoint import save_checkpoint
from stcformer.cli.common import run
from stcformer.data.synthetic import write_3dhp, write_h36m
from stcformer.cli.evaluate import main as evaluate_main
from stcformer.model.modules import STCFormer

H36M_PER_ACTION = {
    "Directions": [
        614.7584,
        450.1756
    ],
    "Discussion": [
        594.8254,
        434.4974
    ],
    "Eating": [
        590.9473,
        338.0961
    ],
    "Greeting": [
        569.91,
        429.4312
    ],
    "Phoning": [
        599.9368,
        436.6845
    ],
    "Photo": [
        592.7682,
        430.5857
    ],
    "Posing": [
        662.0983,
        479.3209
    ],
    "Purchases": [
        535.0259,
        396.8958
    ],
    "Sitting": [
        595.0767,
        348.2127
    ],
    "SittingDown": [
        575.5096,
        376.2518
    ],
    "Smoking": [
        564.129,
        417.8727
    ],
    "Waiting": [
        571.3513,
        422.2616
    ],
    "WalkDog": [
        563.4132,
        410.0934
    ],
    "Walking": [
        545.3102,
        399.7379
    ],
    "WalkTogether": [
        551.4596,
        393.8857
    ],
}
H36M_AVERAGES = {"p1_mm": 581.768, "p2_mm": 410.9335, "n_p1_mm": 425.6338, "mpjve_mm": 7.8292}
MPI3DHP_PER_SEQUENCE = {
    "TS1": [
        448.7801,
        14.2857,
        0.9217
    ],
    "TS2": [
        380.6989,
        14.2857,
        2.765
    ],
    "TS3": [
        455.3533,
        14.2857,
        1.8433
    ],
    "TS4": [
        421.6586,
        14.2857,
        2.3041
    ],
    "TS5": [
        477.9568,
        14.2857,
        1.3825
    ],
    "TS6": [
        461.4653,
        14.2857,
        1.8433
    ],
}
MPI3DHP_OVERALL = {"mpjpe_mm": 439.9084, "pck": 14.2857, "auc": 1.8473}
TOL = 1e-3


def _evaluate(tmp_path, family, data_args, seed):
    torch.manual_seed(seed)
    ckpt = tmp_path / f"{family}.pth"
    save_checkpoint(STCFormer(layers=1, d_hid=32, family=family).eval(), ckpt)
    out = tmp_path / f"{family}.json"
    code = run(lambda: evaluate_main([*data_args, "--checkpoint", str(ckpt), "-f", "5", "--json", str(out),
                                      "--backend", "reference"]))
    assert code == 0
    return json.loads(out.read_text())


def test_h36m_numbers_pinned(tmp_path):
    write_h36m(tmp_path / "h36m", subjects=("S1", "S9", "S11"), frames=12, takes=1, seed=7)
    report = _evaluate(tmp_path, "h36m", ["--data-dir", str(tmp_path / "h36m"), "-k", "synth_det",
                                          "--tds", "2"], seed=3)
    assert sorted(report["per_action"]) == sorted(H36M_PER_ACTION)
    for action, (p1, p2) in H36M_PER_ACTION.items():
        got = report["per_action"][action]
        assert got["p1_mm"] == pytest.approx(p1, abs=TOL), action
        assert got["p2_mm"] == pytest.approx(p2, abs=TOL), action
    for key, value in H36M_AVERAGES.items():
        assert report[key] == pytest.approx(value, abs=TOL), key


def test_3dhp_numbers_pinned(tmp_path):
    write_3dhp(tmp_path / "3dhp", frames=20)
    report = _evaluate(tmp_path, "3dhp", ["--dataset", "3dhp", "--data-dir", str(tmp_path / "3dhp")], seed=4)
    assert sorted(report["per_sequence"]) == sorted(MPI3DHP_PER_SEQUENCE)
    for seq, (err, pck, auc) in MPI3DHP_PER_SEQUENCE.items():
        got = report["per_sequence"][seq]
        assert (got["mpjpe_mm"], got["pck"], got["auc"]) == pytest.approx((err, pck, auc), abs=TOL), seq
    for key, value in MPI3DHP_OVERALL.items():
        assert report[key] == pytest.approx(value, abs=TOL), key
