"""``python -m stcformer.view``: the program in :mod:`stcformer.cli.view`."""
import sys

from stcformer.cli.common import run
from stcformer.cli.view import main

if __name__ == "__main__":
    sys.exit(run(main))
