#!/usr/bin/env bash
# The GPU suite: ONE command for a CUDA machine (no internet needed).
#
#   bash bench/gpu_suite.sh            # logs and tables under $OUT if set, else /tmp/stcformer_gpu_suite
#
# 1. installs this checkout, building stcformer._C with the CUDA kernels for the card present
#    (pip install --no-build-isolation --no-deps --use-pep517 -e .; SUITE_NO_EXTENSION=1 skips it)
# 2. the GPU tests with STCFORMER_GPU_TESTS=1: tests/test_triton.py (every kernel against the
#    reference at the awkward and the large shapes, both qkv layouts, NaN-poisoned outputs,
#    opcheck, fullgraph compile, the whole model), and tests/test_cuda.py and
#    tests/test_cuda_build.py where they exist (all through tests/backend_harness.py)
# 3. a short `python -m stcformer.train` run with the CUDA defaults (bf16, compile, fused Adam)
# 4. the benchmark (bench/gpu_bench.py: every dispatch backend that runs on CUDA, beside the
#    reference, torch.compile(reference) and SDPA + conv2d), its table printed last; the rows
#    are in $LOG/gpu_bench.json (python bench/render.py $LOG/gpu_bench.json --write bench/RESULTS.md)
# Env knobs: SUITE_SKIP_INSTALL=1, SUITE_NO_EXTENSION=1, SUITE_SKIP_TESTS=1, SUITE_SKIP_TRAIN_TESTS=1, SUITE_SKIP_TRAIN=1,
# SUITE_PYTEST_K="..." (a -k subset of the GPU test files), SUITE_BENCH_ARGS="...",
# SUITE_BENCH_BUDGET_S (default 330).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-/tmp/stcformer_gpu_suite}"
mkdir -p "$LOG"
export STCFORMER_GPU_TESTS=1 PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
PY="${PYTHON:-python3}"
status=0
t_start=$(date +%s)
since() { echo "$(( $(date +%s) - t_start )) s"; }

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} 2>&1 | tee "$LOG/suite.log"

if [ "${SUITE_SKIP_INSTALL:-0}" != "1" ]; then
  # stcformer._C with the CUDA kernels for this card (setup.py falls back to the CPU kernels with
  # one line if the CUDA build fails; STCFORMER_REQUIRE_CUDA=1 here makes that fail instead);
  # SUITE_NO_EXTENSION=1 skips the extension (Triton paths only, faster)
  if [ "${SUITE_NO_EXTENSION:-0}" = "1" ]; then export STCFORMER_NO_EXTENSION=1; fi
  if ! MAX_JOBS="${MAX_JOBS:-16}" "$PY" -m pip install -v --no-build-isolation --no-deps --use-pep517 -e . >"$LOG/install.log" 2>&1; then
    echo "install FAILED" | tee -a "$LOG/suite.log"; tail -n 20 "$LOG/install.log" | tee -a "$LOG/suite.log"; exit 1
  fi
  grep -E "^ *stcformer: " "$LOG/install.log" | sort -u | tee -a "$LOG/suite.log"
  echo "install: $(since)" | tee -a "$LOG/suite.log"
fi

if [ "${SUITE_SKIP_TESTS:-0}" != "1" ]; then
  gpu_tests="tests/test_triton.py"
  for f in tests/test_cuda.py tests/test_cuda_build.py; do
    [ -f "$f" ] && gpu_tests="$gpu_tests $f"
  done
  # shellcheck disable=SC2086
  "$PY" -m pytest $gpu_tests -q -rfEs -x --durations=8 -p no:cacheprovider ${SUITE_PYTEST_K:+-k "$SUITE_PYTEST_K"} >"$LOG/pytest.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "$gpu_tests: rc=$rc $(tail -n 1 "$LOG/pytest.log") ($(since))" | tee -a "$LOG/suite.log"
  # the training loop on a GPU box: CUDA defaults, no host sync per step, torchrun with a GPU present
  if [ "${SUITE_SKIP_TRAIN_TESTS:-0}" != "1" ]; then
    timeout 240 "$PY" -m pytest tests/test_train.py -q -rfEs -k "cuda or torchrun" -p no:cacheprovider >>"$LOG/pytest.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 5 ] && status=1
    echo "tests/test_train.py -k 'cuda or torchrun': rc=$rc $(tail -n 1 "$LOG/pytest.log") ($(since))" | tee -a "$LOG/suite.log"
  fi
  grep -E "^(FAILED|ERROR) " "$LOG/pytest.log" | head -n 20 | tee -a "$LOG/suite.log"
fi

if [ "${SUITE_SKIP_TRAIN:-0}" != "1" ]; then
  # the CLI with its CUDA defaults, end to end on synthetic data: a few hundred steps
  timeout 150 "$PY" -m stcformer.train --frames 27 --epochs 1 --out "$LOG/train_run" >"$LOG/train.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "train CLI: rc=$rc ($(since))" | tee -a "$LOG/suite.log"
  tail -n 6 "$LOG/train.log" | tee -a "$LOG/suite.log"
fi

# shellcheck disable=SC2086
"$PY" bench/gpu_bench.py --out "$LOG" --budget-s "${SUITE_BENCH_BUDGET_S:-330}" ${SUITE_BENCH_ARGS:-} >"$LOG/bench.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
grep -E "^\[(FAILED|OOM)\]" "$LOG/bench.log" | tee -a "$LOG/suite.log"
echo "suite: $(since), status $status" | tee -a "$LOG/suite.log"
echo
cat "$LOG/gpu_bench.md" 2>/dev/null || tail -n 30 "$LOG/bench.log"
exit $status
