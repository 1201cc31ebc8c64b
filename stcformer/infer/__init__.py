"""The inference layer: a user's own 2D keypoints (or video) to 3D.

:mod:`.readers` (``read_keypoints``: one reader per file format, in :mod:`.arrays` and
:mod:`.coco_json`), :mod:`.keypoints` (the ``Keypoints`` record), :mod:`.joints` (joint sets and
their conversion to Human3.6M-17), :mod:`.tracks` (picking and linking people), :mod:`.gaps`
(gap filling), :mod:`.pipeline` (the window rule and the one ``lift`` pipeline that
``python -m stcformer.infer`` runs per person),
:mod:`.stream` (online lifting), :mod:`.detect` and :mod:`.video` (the bundled 2D detector and
video decoding), :mod:`.sniff` (what a file is, from its first bytes, before anything heavy loads).

May import: :mod:`stcformer.evaluation` (the prediction engine), :mod:`stcformer.model`,
:mod:`stcformer.data`, :mod:`stcformer.export`, ``stcformer.errors``/``io``; never a program.
"""
