"""``python -m stcformer.data.synthetic``: the program in :mod:`stcformer.cli.synthetic`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.synthetic import main

sys.exit(run(main))
