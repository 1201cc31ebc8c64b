"""The backend test harness under the name the tests import (it lives in ``stcformer.ops.testing``)."""
from stcformer.ops.testing import *  # noqa: F401,F403
from stcformer.ops.testing import _junk_fill_flag  # noqa: F401
