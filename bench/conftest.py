"""pytest-benchmark entries: ``pytest bench/ --benchmark-only`` (bench_*.py files are collected
here too). ``--bench-size tiny`` (or $STCFORMER_BENCH_SIZE=tiny) runs every entry at tiny sizes
(a smoke run of the code paths, no claims)."""
import os

import pytest

if os.environ.get("STCFORMER_GPU_TESTS") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=("full", "tiny"),
                     default=os.environ.get("STCFORMER_BENCH_SIZE", "full"),
                     help="full: the model's sizes (default); tiny: a quick smoke run")


def pytest_configure(config):
    os.environ["STCFORMER_BENCH_SIZE"] = config.getoption("--bench-size")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
