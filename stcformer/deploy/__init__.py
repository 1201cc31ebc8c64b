"""The deploy layer: the model outside a training checkout.

:mod:`.prepare` (an eval-mode copy of a model for a given attention backend, plain modules, the
window and metadata an exported file carries), :mod:`.onnx_export` (the model's forward as a
standard-operator ONNX file, checked with onnx.checker and run once in ONNX Runtime),
:mod:`.runtime` (an exported ONNX file run by ONNX Runtime behind the interface of the PyTorch
model, so the inference pipeline runs it unchanged), :mod:`.program` (a torch.export ``.pt2``
program with the fused op, its loading in a fresh process, AOTInductor packaging).

onnx and onnxruntime are the optional ``deploy`` extra; without it, :func:`.runtime.require`
raises one line naming the install command.

May import: :mod:`stcformer.model`, :mod:`stcformer.ops`, ``stcformer.errors``/``io``; never
the pipeline (``stcformer.infer``) or a program.
"""
from stcformer.deploy.onnx_export import compare_onnx, export_onnx
from stcformer.deploy.program import export_program, load_program, save_program
from stcformer.deploy.runtime import OnnxModel

__all__ = ["export_onnx", "compare_onnx", "export_program", "save_program", "load_program", "OnnxModel"]
