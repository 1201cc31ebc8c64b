"""The inference layer: a user's own 2D keypoints (or video) to 3D.

:mod:`.keypoints` (file readers, joint sets, gap filling, smoothing, the window rule),
:mod:`.pipeline` (the one ``lift`` pipeline that ``python -m stcformer.infer`` runs per person),
:mod:`.stream` (online lifting), :mod:`.detect` and :mod:`.video` (the bundled 2D detector and
video decoding).

May import: :mod:`stcformer.eval` (the prediction engine), :mod:`stcformer.model`,
:mod:`stcformer.data`, :mod:`stcformer.export`, ``stcformer.errors``/``io``; never a program.
"""
