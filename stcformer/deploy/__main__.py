"""``python -m stcformer.deploy``: the program in :mod:`stcformer.cli.deploy`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.deploy import main

sys.exit(run(main))
