"""Outputs people look at or load elsewhere: BVH files (:mod:`.bvh`), rendered skeleton videos
(:mod:`.render`, the one skeleton drawer) and result plots (:mod:`.plots`).

May import: :mod:`stcformer.data` (the skeleton), ``stcformer.io``/``errors``; numpy and
matplotlib; never torch models.
"""
