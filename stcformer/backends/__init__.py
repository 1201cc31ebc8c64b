"""Backends of ``stc_attention``: one module each; ``ops.py`` picks one through ``dispatch.py``."""
