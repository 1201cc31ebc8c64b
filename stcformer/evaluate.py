"""``python -m stcformer.evaluate``: the program in :mod:`stcformer.cli.evaluate`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(run(main))
