import os

# Triton runs on CPU tensors only under its interpreter, which must be chosen before triton is
# imported. GPU runs (bench/gpu_suite.sh) set STCFORMER_GPU_TESTS=1 to compile real kernels.
if os.environ.get("STCFORMER_GPU_TESTS") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

from stcformer.settings import use_private_compile_caches  # noqa: E402  (reads TRITON_INTERPRET, set above)

# Private compile caches for this test run, set before torch is imported: torch's default Inductor
# cache (<tempdir>/torchinductor_<user>) and Triton's (~/.triton/cache) are shared by every
# checkout, venv and process of the user, so an earlier run (another checkout, a run capped with
# ATEN_CPU_CAPABILITY) would decide what this one loads. Subprocesses of the tests inherit them.
use_private_compile_caches("stcformer-test-caches-")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running; deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small checkpoint of seeded random weights (1 layer, width 32, 2 heads), one per test module."""
    from stcformer import STCFormer, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(STCFormer(layers=1, d_hid=32, num_heads=2), path)
    return str(path)
