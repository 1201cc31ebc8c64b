"""The programs: flags in, library calls out.

``python -m stcformer.train`` (:mod:`.train`), ``python -m stcformer.evaluate``
(:mod:`.evaluate`), ``python -m stcformer.infer`` (:mod:`.infer`) and ``python -m stcformer``
(:mod:`.info`); :mod:`.common` holds what they share (one-line errors with exit status 2, the
backend and autocast checks). Nothing in the library imports this package.
"""
