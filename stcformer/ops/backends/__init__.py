"""Backends of ``stc_attention``: one module each; :mod:`stcformer.ops.attention` picks one
through :mod:`stcformer.ops.dispatch`."""
