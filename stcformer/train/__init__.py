"""The training layer (``python -m stcformer.train`` is the program on top, in
:mod:`stcformer.cli.train`).

:mod:`.loop` holds the process group, the model and optimizer, one step, one epoch, the resumable
state and the loop.

May import: :mod:`stcformer.model`, :mod:`stcformer.data`, :mod:`stcformer.eval`,
:mod:`stcformer.ops`, ``stcformer.devices``/``errors``/``io``; never a program.
"""
