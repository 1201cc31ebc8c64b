"""STCFormer: 2D-to-3D human pose lifting with spatio-temporal criss-cross attention."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .model import STCFormer
from .ops import stc_attention

__version__ = "0.1.0"
__all__ = ["STCFormer", "stc_attention", "load_checkpoint", "save_checkpoint", "CheckpointError"]
