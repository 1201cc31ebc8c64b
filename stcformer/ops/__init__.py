"""The op layer: ``stc_attention`` and everything that runs it, by job.

- the attention op: :mod:`.attention` (the public op, and ``resolve``: the plan a model block
  keeps), :mod:`.reference` (plain PyTorch, the ground truth), :mod:`.dispatch` (the one place
  that says whether a backend, or the fused CPU MLP, can run and why not), :mod:`.backends`
  (the Triton launcher, whose kernels are ``stcformer.kernels``, top-level ``kernels/``; the
  ops of the compiled extension, whose sources are ``csrc/``);
- the MLP op family: :mod:`.mlp` (fused GELU + dropout, oneDNN Linear layers);
- platform facts: :mod:`.host` (the CPU's features, the extension's first-use build and load
  state) and :mod:`.build` (how the extension is built, shared with setup.py);
- :mod:`.precision` (the autocast dtype of an ``--amp`` value).

The switches (backend request, Triton overrides, oneDNN GEMMs) are :mod:`stcformer.settings`';
the backend test harness is the public :mod:`stcformer.testing`.

May import: torch, ``stcformer.errors``, ``stcformer.io``, ``stcformer.settings``,
``stcformer.kernels``; nothing else of the package.
"""
from stcformer.ops.attention import preferred_layout, stc_attention
from stcformer.ops.host import key_compile_cache_by_isa
from stcformer.ops.reference import LAYOUTS, head_major_index, stc_attention_reference

# before anything here is compiled: torch's compile cache is not keyed by the CPU ISA cap
key_compile_cache_by_isa()

__all__ = ["stc_attention", "stc_attention_reference", "preferred_layout", "head_major_index", "LAYOUTS"]
