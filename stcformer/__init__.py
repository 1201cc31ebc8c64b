"""STCFormer: 2D-to-3D human pose lifting with spatio-temporal criss-cross attention."""
__version__ = "0.1.0"
__all__ = ["STCFormer", "stc_attention", "load_checkpoint", "save_checkpoint", "CheckpointError",
           "lift", "read_keypoints", "Keypoints", "StreamLifter"]

# Every public name is imported on first use (PEP 562), so that ``import stcformer`` (which every
# program runs first) does not import torch: the programs check their arguments before that.
_LAZY = {"STCFormer": "model", "load_checkpoint": "model", "save_checkpoint": "model",
         "CheckpointError": "errors", "stc_attention": "ops",
         "lift": "infer.pipeline", "read_keypoints": "infer.readers", "Keypoints": "infer.keypoints",
         "StreamLifter": "infer.stream"}
# subpackages reached as attributes (``import stcformer; stcformer.ops.dispatch``), as when
# this module imported them eagerly
_SUBPACKAGES = {"choices", "data", "evaluation", "export", "infer", "model", "ops", "train", "errors", "io", "devices"}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
