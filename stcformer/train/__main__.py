"""``python -m stcformer.train``: the program in :mod:`stcformer.cli.train`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.train import main

sys.exit(run(main))
