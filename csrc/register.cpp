// Schemas of the stcformer ops. Kernels live in csrc/cpu (CPU) and csrc/cuda (CUDA);
// fake kernels and autograd are registered from Python (stcformer/ops/backends/extension.py).
// head_major: qkv (and grad_qkv) in the head-major layout (csrc/common/stc_geom.h, QkvLayout).
#include <Python.h>
#include <torch/library.h>

// The x86 ISA extensions this library was compiled for, named as in /proc/cpuinfo, so a test
// can check that stcformer/ops/host.py (which decides before loading) covers them all.
static PyObject* compiled_isa() {
  static const char* const names[] = {
#ifdef __AVX__
      "avx",
#endif
#ifdef __AVX2__
      "avx2",
#endif
#ifdef __FMA__
      "fma",
#endif
#ifdef __BMI__
      "bmi1",
#endif
#ifdef __BMI2__
      "bmi2",
#endif
#ifdef __F16C__
      "f16c",
#endif
#ifdef __MOVBE__
      "movbe",
#endif
#ifdef __LZCNT__
      "abm",
#endif
#ifdef __AVX512F__
      "avx512f",
#endif
#ifdef __AVX512BW__
      "avx512bw",
#endif
#ifdef __AVX512VL__
      "avx512vl",
#endif
#ifdef __AVX512DQ__
      "avx512dq",
#endif
#ifdef __AVX512BF16__
      "avx512_bf16",
#endif
#ifdef __AMX_TILE__
      "amx_tile",
#endif
      nullptr};
  PyObject* t = PyList_New(0);
  for (const char* const* n = names; t && *n; ++n) {
    PyObject* s = PyUnicode_FromString(*n);
    if (!s || PyList_Append(t, s) < 0) {
      Py_XDECREF(s);
      Py_DECREF(t);
      return nullptr;
    }
    Py_DECREF(s);
  }
  return t;
}

extern "C" {
// `from stcformer import _C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* m = PyModule_Create(&module_def);
  if (!m) return nullptr;
  PyObject* isa = compiled_isa();
  if (!isa || PyModule_AddObject(m, "compiled_isa", isa) < 0) {
    Py_XDECREF(isa);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
}

TORCH_LIBRARY(stcformer, m) {
  m.def(
      "stc_attention_fwd(Tensor qkv, Tensor w_s, Tensor b_s, Tensor w_t, Tensor b_t, "
      "Tensor? spe_s, Tensor? spe_t, int num_heads, float scale, bool head_major=False) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "stc_attention_bwd(Tensor grad_out, Tensor qkv, Tensor w_s, Tensor b_s, Tensor w_t, "
      "Tensor b_t, Tensor? spe_s, Tensor? spe_t, Tensor out, Tensor lse_s, Tensor lse_t, "
      "int num_heads, float scale, bool head_major=False) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // fused GELU + dropout of the MLP; the mask is a hash of (seed, offset + index), never stored
  m.def("gelu_dropout_fwd(Tensor x, Tensor seed, int offset, float p, bool gelu) -> Tensor");
  m.def(
      "gelu_dropout_bwd(Tensor grad, Tensor? x, Tensor seed, int offset, float p, bool gelu, "
      "bool recompute) -> (Tensor, Tensor)");
}
