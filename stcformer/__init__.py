"""STCFormer: 2D-to-3D human pose lifting with spatio-temporal criss-cross attention."""
from stcformer.model import CheckpointError, STCFormer, load_checkpoint, save_checkpoint
from stcformer.ops import stc_attention

__version__ = "0.1.0"
__all__ = ["STCFormer", "stc_attention", "load_checkpoint", "save_checkpoint", "CheckpointError",
           "lift", "read_keypoints", "Keypoints", "StreamLifter"]

# imported on first use: the inference pipeline, the keypoint readers, online lifting
_LAZY = {"lift": "infer.pipeline", "read_keypoints": "infer.readers", "Keypoints": "infer.keypoints",
         "StreamLifter": "infer.stream"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
