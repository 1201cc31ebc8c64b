"""``python -m stcformer``: versions, backends and CPU features of this installation."""
import sys

from .info import main

sys.exit(main())
