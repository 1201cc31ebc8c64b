"""The CUDA sources compile without a GPU: nvcc -c on every csrc/cuda/*.cu for sm_80 and sm_90,
and the torch glue (csrc/cuda/*.cpp) through the host compiler against the installed torch's
headers (a CPU torch wheel has them, but not the generated c10/cuda headers: the glue uses only
device-generic c10, and the .cu files need only the CUDA toolkit). Skipped without nvcc.

Runs at most two compilers at a time (about 2 minutes on 2 idle cores).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stcformer.ops import build

# nvcc compiles every CUDA source for two architectures (make test-slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CU_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
GLUE_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cpp"))
ARCHS = (80, 90)


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


NVCC = _nvcc()


def _torch_includes():
    from torch.utils.cpp_extension import include_paths

    return [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{(file name, arch or 'host'): (returncode, output)} for every source, two at a time."""
    if NVCC is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    out = tmp_path_factory.mktemp("cuda_build")
    flags = build.NVCC_FLAGS  # the flags the real build uses
    includes = _torch_includes()
    jobs = {}
    for src in CU_FILES:
        for arch in ARCHS:
            jobs[(src.name, arch)] = [NVCC, "-c", *flags, *includes,
                                      f"-gencode=arch=compute_{arch},code=sm_{arch}",
                                      "-Xptxas=-warn-spills", str(src),
                                      "-o", str(out / f"{src.stem}_sm{arch}.o")]
    cxx = os.environ.get("CXX", "c++")
    for src in GLUE_FILES:
        jobs[(src.name, "host")] = [cxx, "-fsyntax-only", "-std=c++20", *includes, str(src)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(_run, jobs.values())))
    return results


def test_sources_exist():
    assert CU_FILES, "no csrc/cuda/*.cu"
    assert GLUE_FILES, "no torch glue in csrc/cuda/*.cpp"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", [p.name for p in CU_FILES])
def test_cu_compiles(compiled, name, arch):
    rc, log = compiled[(name, arch)]
    assert rc == 0, f"nvcc failed for {name} (sm_{arch}):\n{log[-4000:]}"


@pytest.mark.parametrize("name", [p.name for p in GLUE_FILES])
def test_glue_compiles_against_installed_torch(compiled, name):
    rc, log = compiled[(name, "host")]
    assert rc == 0, f"{name} does not compile against the installed torch:\n{log[-4000:]}"


def test_cu_files_need_no_torch_headers():
    """The .cu files build against the CUDA toolkit alone: a CPU torch wheel lacks the generated
    c10/cuda headers, and the kernels do not need torch."""
    local = {p.name for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cuh")}
    for src in list(CU_FILES) + sorted((ROOT / "csrc" / "cuda").glob("*.cuh")) + \
            [ROOT / "csrc" / "cuda" / "launch.h", ROOT / "csrc" / "common" / "stc_geom.h"]:
        for inc in re.findall(r'#include\s*[<"]([^>"]+)[>"]', src.read_text()):
            base = os.path.basename(inc)
            assert base in local or inc.startswith(("cuda", "cstdint", "mma", "cstddef")), \
                f"{src.name} includes {inc}"
