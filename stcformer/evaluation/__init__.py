"""The evaluation layer: metrics, the benchmark datasets and their official scoring, and the
prediction engine that turns windows into 3D.

:mod:`.metrics` (MPJPE, P-MPJPE, PCK/AUC, per-action tables), :mod:`.benchmarks` (one object per
dataset: loader, official recipe, scoring, report; the test runner), :mod:`.predict`
(flip-averaged centre-frame and seq2seq prediction, shared with inference).

May import: :mod:`stcformer.model`, :mod:`stcformer.data`, :mod:`stcformer.export` (plots),
:mod:`stcformer.ops` (precision), ``stcformer.errors``/``io``; never a program.
"""
