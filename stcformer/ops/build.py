"""How ``stcformer._C`` is built: its sources, flags and the CUDA decision, in one place.

Two builders use it and build the same library from the same sources and flags:
``setup.py`` ahead of time (``pip install --no-build-isolation -e .``), and
:mod:`stcformer.ops.host` on first use, when pip's isolated build could not import torch and
installed the package without it. setup.py loads this file by its path, so it imports nothing
from stcformer and no torch at module level; the environment is read by its callers (setup.py,
stcformer.settings) and passed in.
"""
from __future__ import annotations

import glob
import hashlib
import os
import platform
import sys

# the checkout (csrc/ beside stcformer/): present in an editable install or a source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# -march of the C++ kernels on x86-64; stcformer.ops.host refuses to load the library on
# a CPU below this level (code built for it may use its instructions anywhere, even while loading)
BUILD_MARCH = "x86-64-v3"

# flags of the C++ CPU kernels (OpenMP drives at::parallel_for)
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp"] + (
    ["-march=" + BUILD_MARCH] if platform.machine().lower() in ("x86_64", "amd64") else [])

# flags of the CUDA kernels
NVCC_FLAGS = ["-O3", "-std=c++20", "--use_fast_math", "-lineinfo"]


def sources(cuda: bool, root: str = ROOT) -> list:
    """The C++ sources (and the CUDA ones with ``cuda``), relative to ``root``, sorted."""
    patterns = ["csrc/*.cpp", "csrc/cpu/*.cpp"] + (["csrc/cuda/*.cu", "csrc/cuda/*.cpp"] if cuda else [])
    return [os.path.relpath(p, root) for pat in patterns for p in sorted(glob.glob(os.path.join(root, pat)))]


def openmp_link_flags(torch) -> list:
    """Link the OpenMP runtime torch itself loads. Wheels that bundle libgomp (some under a
    hashed name, e.g. torch.libs/libgomp-947d5fa1.so.1.0.0) would otherwise get a second,
    independent copy from the system next to theirs (at::parallel_for's ``omp parallel`` is
    compiled into this library): two thread pools and two sets of OpenMP state in one process."""
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    for d in (os.path.join(torch_dir, "lib"), os.path.join(os.path.dirname(torch_dir), "torch.libs")):
        found = sorted(glob.glob(os.path.join(d, "libgomp*.so*")))
        if len(found) == 1:  # NEEDED becomes its soname, already loaded by libtorch_cpu
            return [found[0], "-pthread", "-Wl,-rpath," + d]
    return ["-fopenmp"]  # torch uses the system runtime (or none we can find): link that one


def cuda_skip_reason(torch, cuda_home, no_cuda: bool = False, root: str = ROOT):
    """None when the CUDA kernels can be built, else why not (one line for the build log);
    ``no_cuda``: STCFORMER_NO_CUDA=1 was set."""
    if no_cuda:
        return "STCFORMER_NO_CUDA=1"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if cuda_home is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    if not glob.glob(os.path.join(root, "csrc", "cuda", "*.cu")):
        return "no sources in csrc/cuda"
    return None


def cuda_arch_list(torch, requested: str = "") -> str:
    """TORCH_CUDA_ARCH_LIST for the build (the caller puts it in the environment, where torch's
    builder reads it): the user's, else the card that is here, else the common data-centre cards."""
    if requested:
        return requested
    return ("%d.%d" % torch.cuda.get_device_capability()) if torch.cuda.is_available() else "8.0;9.0"


def build_key(torch, cuda: bool, arch: str = "", root: str = ROOT) -> str:
    """A folder name for one build: torch and Python versions, and a hash of every source and
    header, the flags and the link flags, so a change to any of them builds into a new folder."""
    h = hashlib.sha256()
    files = sources(cuda, root) + sorted(
        os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "csrc", "**", "*.h"), recursive=True))
    for rel in files:
        h.update(rel.encode())
        with open(os.path.join(root, rel), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    flags = CXX_FLAGS + openmp_link_flags(torch) + (NVCC_FLAGS + [arch] if cuda else [])
    h.update(repr(flags).encode())
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"torch{torch.__version__.replace('+', '-')}-{tag}-{'cuda' if cuda else 'cpu'}-{h.hexdigest()[:12]}"
