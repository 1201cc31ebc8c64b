"""The MLP op family of the CPU path: fused GELU + dropout ops (:mod:`.fused`: ``mlp``,
``residual_mlp``, ``layer_norm_linear``, their autograd) and Linear layers on oneDNN GEMMs
(:mod:`.linear`: ``OneDNNLinear``, ``convert_linears``).

A second op family beside the attention op; the model's blocks plan which of these they run.
May import: torch, ``stcformer.errors``, ``stcformer.settings``, the ops layer's platform facts
(``stcformer.ops.host``, ``stcformer.ops.host``) and ``dispatch``.
"""
