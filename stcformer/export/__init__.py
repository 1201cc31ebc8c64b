"""Outputs people look at or load elsewhere: the files of one lifted person (:mod:`.poses`:
``poses_3d.npz``, its JSON twin, ``preview.png``), BVH files (:mod:`.bvh`), rendered skeleton videos
(:mod:`.render`, the one skeleton drawer), the self-contained HTML 3D viewer (:mod:`.viewer`, its
page ``viewer.html``), result plots (:mod:`.plots`) and the smoothing of pose sequences over time
(:mod:`.smoothing`).

May import: :mod:`stcformer.data` (the skeleton), ``stcformer.io``/``errors``; numpy,
matplotlib and Pillow; never torch models.
"""
