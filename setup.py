"""Build stcformer and its extension stcformer._C against the torch already installed.

``pip install --no-build-isolation -e .`` builds the extension now, against the installed torch.
Plain ``pip install -e .`` builds in an isolated environment that cannot import that torch (and
must never pull a torch of its own): the package is then installed without the extension, and
stcformer.ops.host builds the same library on first use. The sources and flags of both
builds are in stcformer/ops/build.py.
C++ CPU kernels are always built; CUDA kernels when torch has CUDA and nvcc is found
(set STCFORMER_NO_CUDA=1 to skip them, STCFORMER_NO_EXTENSION=1 to skip the extension).
"""
import importlib.util
import os
import re
import sys

import setuptools
from setuptools import setup

# 70.1: editable installs honour package_dir (kernels/ installed as stcformer.kernels, see below)
# and need no `wheel` package; older ones (a fresh Python 3.11 venv has 65.5) installed a
# stcformer without its kernels package
_SETUPTOOLS_MIN = (70, 1)
if tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2]) < _SETUPTOOLS_MIN:
    sys.exit(f"setup.py: setuptools {setuptools.__version__} is too old; "
             f"pip install 'setuptools>={_SETUPTOOLS_MIN[0]}.{_SETUPTOOLS_MIN[1]}' first")

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_module():
    """stcformer/ops/build.py by its path (importing the package would import torch)."""
    spec = importlib.util.spec_from_file_location("_stcformer_build", os.path.join(ROOT, "stcformer", "ops", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def extensions():
    if os.environ.get("STCFORMER_NO_EXTENSION") == "1":
        return [], {}
    try:
        import torch
    except ImportError:
        print("stcformer: torch is not importable in this build environment (pip's build isolation); "
              "installing without the compiled kernels: they are built against your torch on first use "
              "(pip install --no-build-isolation -e . builds them now)")
        return [], {}
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    link_flags = build.openmp_link_flags(torch)
    skip = build.cuda_skip_reason(torch, CUDA_HOME, os.environ.get("STCFORMER_NO_CUDA") == "1", ROOT)
    if skip is None:
        arch = build.cuda_arch_list(torch, os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch  # where torch's builder reads it
        print(f"stcformer: building the CUDA kernels (csrc/cuda) for TORCH_CUDA_ARCH_LIST={arch}")
        ext = CUDAExtension("stcformer._C", build.sources(True, ROOT),
                            extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS},
                            extra_link_args=link_flags)
    else:
        print(f"stcformer: not building the CUDA kernels: {skip}")
        ext = CppExtension("stcformer._C", build.sources(False, ROOT), extra_compile_args={"cxx": build.CXX_FLAGS},
                           extra_link_args=link_flags)
    # objects kept between installs (pip's own build folder is a new temporary one every time), so
    # a later `pip install -e ".[extra]"` recompiles nothing when csrc/ is unchanged: ninja only
    # rebuilds objects whose sources, headers or commands changed
    build_temp = os.path.join(ROOT, "build", f"temp-torch{torch.__version__.replace('+', '-')}"
                                             f"-cp{sys.version_info[0]}{sys.version_info[1]}")

    class BuildWithCPUFallback(BuildExtension):
        """A CUDA build that fails (a toolkit, compiler or torch this code was not tried with)
        falls back to the CPU kernels with one line, instead of failing the install;
        STCFORMER_REQUIRE_CUDA=1 makes it an error."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = build_temp

        def build_extension(self, extension):
            try:
                super().build_extension(extension)
            except Exception as exc:  # noqa: BLE001 - any compile or link error of the CUDA build
                cuda = [s for s in extension.sources if s.startswith(os.path.join("csrc", "cuda"))]
                if not cuda or os.environ.get("STCFORMER_REQUIRE_CUDA") == "1":
                    raise
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                print(f"stcformer: the CUDA kernels failed to build ({first}); building the CPU kernels "
                      "only (set STCFORMER_REQUIRE_CUDA=1 to make this an error)")
                extension.sources = [s for s in extension.sources if s not in cuda]
                extension.libraries = [lib for lib in extension.libraries
                                       if lib not in ("cudart", "c10_cuda", "torch_cuda")]
                super().build_extension(extension)

    return [ext], {"build_ext": BuildWithCPUFallback.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()

setup(
    name="stcformer",
    version="0.1.0",
    description="STCFormer (CVPR 2023) 2D-to-3D pose lifting with fused Triton, C++ and CUDA kernels",
    long_description=open(os.path.join(ROOT, "README.md")).read() if os.path.exists(os.path.join(ROOT, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=["stcformer", "stcformer.cli", "stcformer.data", "stcformer.data.synthetic", "stcformer.deploy", "stcformer.evaluation", "stcformer.export", "stcformer.infer",
              "stcformer.model", "stcformer.ops", "stcformer.ops.backends", "stcformer.ops.mlp", "stcformer.train", "stcformer.kernels"],
    # the Triton kernels sit at the top of the checkout beside csrc/ and are installed inside the
    # package (stcformer.kernels), the only name they are imported by
    package_dir={"stcformer.kernels": "kernels"},
    # the 3D viewer's page template (stcformer.export.viewer fills it in)
    package_data={"stcformer.export": ["viewer.html"]},
    python_requires=">=3.9",
    # no torch pin here: install the torch you want first (CPU or CUDA build), then this package;
    # tested with torch 2.11 and 2.13 (torch.library.triton_op and the custom-op APIs used here)
    # ninja: stcformer.ops.host builds stcformer._C with it on first use after a plain `pip install -e .`
    install_requires=["torch>=2.11", "numpy", "tqdm", "matplotlib", "ninja"],
    # detect: what MediaPipe BlazePose needs to run (python -m stcformer.infer --video), pinned to the
    # versions tested; mediapipe itself is installed first with --no-deps (see the README): its own
    # requirements would add jax, scipy and a second, non-headless OpenCV (about 1 GB)
    # deploy: ONNX export and ONNX Runtime (python -m stcformer.deploy, --onnx, runtime="onnxruntime"), pinned to
    # the versions tested; onnx 1.18 is the newest that works with the protobuf 4.25 the detect extra pins
    extras_require={"triton": ["triton"], "video": ["imageio", "imageio-ffmpeg"],
                    "deploy": ["onnx==1.18.0", "onnxruntime==1.32.0", "onnxscript==0.7.2", "onnx-ir==1.1.0",
                               "ml_dtypes==0.7.0", "protobuf==4.25.9"],
                    "detect": ["imageio", "imageio-ffmpeg", "absl-py==2.5.1", "attrs==26.1.0", "flatbuffers==25.12.19",
                               "protobuf==4.25.9", "opencv-python-headless==4.14.0.94"],
                    "dev": ["pytest", "pytest-benchmark", "hypothesis", "ninja", "triton", "imageio", "imageio-ffmpeg",
                            "selenium"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
