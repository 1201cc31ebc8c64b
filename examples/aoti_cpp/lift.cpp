// Run an AOTInductor package of `python -m stcformer.deploy export --aoti` from C++, no Python.
//
//   lift OP_LIBRARY PACKAGE.pt2 B T   ->  prints the output's shape and values, one per line
//
// OP_LIBRARY is the library that registers stcformer's ops with the dispatcher (stcformer/_C*.so,
// see `python -c "import stcformer.ops.host as h; print(h.extension_path())"`). It is loaded
// first: the package calls the fused op through torch's proxy executor, by name. It is also a
// Python module, whose few Python symbols are used only by its module init, so RTLD_LAZY loads
// it in a process without Python. The input is the same deterministic (B, T, 17, 2) tensor that
// tests/test_deploy.py builds: sin(0.37 * i) * 0.8 over i = 0, 1, 2, ...
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s OP_LIBRARY PACKAGE.pt2 B T\n", argv[0]);
    return 2;
  }
  if (!dlopen(argv[1], RTLD_LAZY | RTLD_GLOBAL)) {
    std::fprintf(stderr, "error: %s\n", dlerror());
    return 2;
  }
  const int64_t B = std::atoll(argv[3]), T = std::atoll(argv[4]);
  at::Tensor x = (at::arange(B * T * 17 * 2, at::kFloat) * 0.37).sin().mul(0.8).reshape({B, T, 17, 2});
  torch::inductor::AOTIModelPackageLoader loader(argv[2]);
  std::vector<at::Tensor> out = loader.run({x});
  at::Tensor y = out.at(0).contiguous();
  std::printf("shape");
  for (int64_t d : y.sizes()) std::printf(" %lld", static_cast<long long>(d));
  std::printf("\n");
  const float* v = y.data_ptr<float>();
  for (int64_t i = 0; i < y.numel(); ++i) std::printf("%.9g\n", v[i]);
  return 0;
}
