"""``python -m stcformer``: versions, backends and CPU features of this installation."""
import sys

from stcformer.cli.info import main

sys.exit(main())
