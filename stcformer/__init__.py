"""STCFormer: 2D-to-3D human pose lifting with spatio-temporal criss-cross attention."""
from .ops import stc_attention

__version__ = "0.1.0"
__all__ = ["stc_attention"]
