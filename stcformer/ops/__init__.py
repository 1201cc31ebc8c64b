"""The op layer: ``stc_attention`` and everything that runs it.

Holds the public op (:mod:`.attention`), the plain-PyTorch ground truth (:mod:`.reference`),
:mod:`.dispatch` (the one place that says whether a backend, or the fused CPU MLP, can run and
why not), the CPU feature checks (:mod:`.cpu_features`), loading of the compiled extension
(:mod:`.extension`), the backends (:mod:`.backends`: Triton launcher, compiled-op glue), the fused
CPU MLP ops (:mod:`.fused_mlp`), autocast helpers (:mod:`.precision`) and the test harness that
checks any backend against the reference (:mod:`.testing`). The Triton kernels live in
``stcformer.kernels`` (top-level ``kernels/``), the C++/CUDA sources in ``csrc/``.

May import: torch, ``stcformer.errors``, ``stcformer.kernels``; nothing else of the package.
"""
from stcformer.ops.attention import preferred_layout, stc_attention
from stcformer.ops.cpu_features import key_compile_cache_by_isa
from stcformer.ops.reference import LAYOUTS, head_major_index, stc_attention_reference

# before anything here is compiled: torch's compile cache is not keyed by the CPU ISA cap
key_compile_cache_by_isa()

__all__ = ["stc_attention", "stc_attention_reference", "preferred_layout", "head_major_index", "LAYOUTS"]
