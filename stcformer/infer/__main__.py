"""``python -m stcformer.infer``: the program in :mod:`stcformer.cli.infer`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.infer import main

sys.exit(run(main))
