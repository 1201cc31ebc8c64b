// Schemas of the stcformer ops. Kernels live in csrc/cpu (CPU) and csrc/cuda (CUDA);
// fake kernels and autograd are registered from Python (stcformer/backends/compiled.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `from stcformer import _C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(stcformer, m) {
  m.def(
      "stc_attention_fwd(Tensor qkv, Tensor w_s, Tensor b_s, Tensor w_t, Tensor b_t, "
      "Tensor? spe_s, Tensor? spe_t, int num_heads, float scale) -> (Tensor, Tensor, Tensor)");
  m.def(
      "stc_attention_bwd(Tensor grad_out, Tensor qkv, Tensor w_s, Tensor b_s, Tensor w_t, "
      "Tensor b_t, Tensor? spe_s, Tensor? spe_t, Tensor out, Tensor lse_s, Tensor lse_t, "
      "int num_heads, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // fused GELU + dropout of the MLP; the mask is a hash of (seed, offset + index), never stored
  m.def("gelu_dropout_fwd(Tensor x, Tensor seed, int offset, float p, bool gelu) -> Tensor");
  m.def(
      "gelu_dropout_bwd(Tensor grad, Tensor? x, Tensor seed, int offset, float p, bool gelu, "
      "bool recompute) -> (Tensor, Tensor)");
}
