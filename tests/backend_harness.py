"""The backend test harness under the name the tests import (it lives in ``stcformer.testing``)."""
from stcformer.testing import *  # noqa: F401,F403
from stcformer.testing import _junk_fill_flag  # noqa: F401
