"""Build stcformer and its extension stcformer._C against the torch already installed.

Install with ``pip install --no-build-isolation -e .``: an isolated build environment cannot
import the installed torch (and must never pull a torch of its own).
C++ CPU kernels are always built; CUDA kernels when torch has CUDA and nvcc is found
(set STCFORMER_NO_CUDA=1 to skip them, STCFORMER_NO_EXTENSION=1 to skip the extension).
"""
import glob
import os
import re
import sys

import setuptools
from setuptools import setup

# 70.1: editable installs map kernels/ to stcformer.kernels and need no `wheel` package; older
# ones (a fresh Python 3.11 venv has 65.5) installed a stcformer without its kernels package
_SETUPTOOLS_MIN = (70, 1)
if tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2]) < _SETUPTOOLS_MIN:
    sys.exit(f"setup.py: setuptools {setuptools.__version__} is too old; "
             f"pip install 'setuptools>={_SETUPTOOLS_MIN[0]}.{_SETUPTOOLS_MIN[1]}' first")

ROOT = os.path.dirname(os.path.abspath(__file__))


def _build_march():
    # the x86-64 level lives in stcformer/ops/cpu_features.py, which refuses the extension at run time
    # on CPUs below it (code built for it may use its instructions anywhere, even while loading)
    with open(os.path.join(ROOT, "stcformer", "ops", "cpu_features.py")) as f:
        return re.search(r'^BUILD_MARCH = "([^"]+)"', f.read(), re.M).group(1)


# flags of the C++ CPU kernels (OpenMP drives at::parallel_for)
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp"] + (["-march=" + _build_march()] if os.uname().machine == "x86_64" else [])


def _openmp_link_flags():
    """Link the OpenMP runtime torch itself loads. Wheels that bundle libgomp (some under a
    hashed name, e.g. torch.libs/libgomp-947d5fa1.so.1.0.0) would otherwise get a second,
    independent copy from the system next to theirs (at::parallel_for's `omp parallel` is
    compiled into this library): two thread pools and two sets of OpenMP state in one process."""
    import torch

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    for d in (os.path.join(torch_dir, "lib"), os.path.join(os.path.dirname(torch_dir), "torch.libs")):
        found = sorted(glob.glob(os.path.join(d, "libgomp*.so*")))
        if len(found) == 1:  # NEEDED becomes its soname, already loaded by libtorch_cpu
            return [found[0], "-pthread", "-Wl,-rpath," + d]
    return ["-fopenmp"]  # torch uses the system runtime (or none we can find): link that one


# flags of the CUDA kernels
NVCC_FLAGS = ["-O3", "-std=c++20", "--use_fast_math", "-lineinfo"]


def _cuda_skip_reason(torch, cuda_home):
    """None when the CUDA kernels can be built, else why not (one line for the build log)."""
    if os.environ.get("STCFORMER_NO_CUDA") == "1":
        return "STCFORMER_NO_CUDA=1"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if cuda_home is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    if not _sources("csrc/cuda/*.cu"):
        return "no sources in csrc/cuda"
    return None


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extensions():
    if os.environ.get("STCFORMER_NO_EXTENSION") == "1":
        return [], {}
    try:
        import torch
    except ImportError:
        sys.exit("setup.py: torch is not importable here; install torch first, then this package "
                 "with pip install --no-build-isolation (an isolated build cannot see that torch)")
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    link_flags = _openmp_link_flags()

    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cuda_sources = _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
    skip = _cuda_skip_reason(torch, CUDA_HOME)
    if skip is None:
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
        if not arch:  # build for the card that is here, else for the common data-centre cards
            arch = ("%d.%d" % torch.cuda.get_device_capability()) if torch.cuda.is_available() else "8.0;9.0"
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        print(f"stcformer: building the CUDA kernels (csrc/cuda) for TORCH_CUDA_ARCH_LIST={arch}")
        ext = CUDAExtension("stcformer._C", sources + cuda_sources,
                            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
                            extra_link_args=link_flags)
    else:
        print(f"stcformer: not building the CUDA kernels: {skip}")
        ext = CppExtension("stcformer._C", sources, extra_compile_args={"cxx": CXX_FLAGS},
                           extra_link_args=link_flags)

    class BuildWithCPUFallback(BuildExtension):
        """A CUDA build that fails (a toolkit, compiler or torch this code was not tried with)
        falls back to the CPU kernels with one line, instead of failing the install;
        STCFORMER_REQUIRE_CUDA=1 makes it an error."""

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
    packages=["stcformer", "stcformer.cli", "stcformer.data", "stcformer.eval", "stcformer.export", "stcformer.infer",
              "stcformer.model", "stcformer.ops", "stcformer.ops.backends", "stcformer.train", "stcformer.kernels"],
    package_dir={"stcformer.kernels": "kernels"},
    python_requires=">=3.9",
    # no torch pin here: install the torch you want first (CPU or CUDA build), then this package;
    # tested with torch 2.11 and 2.13 (torch.library.triton_op and the custom-op APIs used here)
    install_requires=["torch>=2.11", "numpy", "tqdm", "matplotlib"],
    # detect: what MediaPipe BlazePose needs to run (python -m stcformer.infer --video), pinned to the
    # versions tested; mediapipe itself is installed first with --no-deps (see the README): its own
    # requirements would add jax, scipy and a second, non-headless OpenCV (about 1 GB)
    extras_require={"triton": ["triton"], "video": ["imageio", "imageio-ffmpeg"],
                    "detect": ["imageio", "imageio-ffmpeg", "absl-py==2.5.1", "attrs==26.1.0", "flatbuffers==25.12.19",
                               "protobuf==4.25.9", "opencv-python-headless==4.14.0.94"],
                    "dev": ["pytest", "pytest-benchmark", "hypothesis", "ninja", "triton", "imageio", "imageio-ffmpeg"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
