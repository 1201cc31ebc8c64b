#!/usr/bin/env bash
# The GPU suite: ONE command for a CUDA machine (no internet needed).
#
#   bash bench/gpu_suite.sh            # logs and table under $OUT if set, else /tmp/stcformer_gpu_suite
#
# 1. installs this checkout (pip install --no-build-isolation --no-deps --use-pep517 -e .: PEP 660,
#    so setuptools never spawns an isolated build that would need the network; the torch, triton,
#    pytest, pytest-benchmark, ninja and nvcc already there; builds stcformer._C with CUDA)
# 2. runs every test with STCFORMER_GPU_TESTS=1 (real Triton kernels, the gpu-marked tests too)
# 3. prints the benchmark table last (bench/gpu_table.py): op fwd+bwd and a 6-layer width-256
#    training step at T = 27, 81, 243 for triton / reference / torch.compile(reference), plus the
#    bf16-autocast T=243 B=128 memory check.
# Budget: under ~8 minutes on an H100. Env knobs: SUITE_SKIP_INSTALL=1, SUITE_SKIP_TESTS=1,
# SUITE_TABLE_ARGS="..." (extra bench/gpu_table.py arguments), SUITE_TABLE_BUDGET_S (default 240).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-/tmp/stcformer_gpu_suite}"
mkdir -p "$LOG"
export STCFORMER_GPU_TESTS=1
unset TRITON_INTERPRET
export TRITON_DEFAULT_FP_FUSION="${TRITON_DEFAULT_FP_FUSION:-1}"
PY="${PYTHON:-python}"
status=0
t_start=$(date +%s)

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} 2>&1 | tee "$LOG/suite.log"

if [ "${SUITE_SKIP_INSTALL:-0}" != "1" ]; then
  echo "== install (log: $LOG/install.log)" | tee -a "$LOG/suite.log"
  if ! "$PY" -m pip install --no-build-isolation --no-deps --use-pep517 -e . >"$LOG/install.log" 2>&1; then
    echo "install FAILED (tail of the log follows); retrying without the C++/CUDA extension" | tee -a "$LOG/suite.log"
    tail -n 30 "$LOG/install.log" | tee -a "$LOG/suite.log"
    status=1
    STCFORMER_NO_EXTENSION=1 "$PY" -m pip install --no-build-isolation --no-deps --use-pep517 -e . >>"$LOG/install.log" 2>&1 \
      || echo "install without the extension FAILED too" | tee -a "$LOG/suite.log"
  fi
  echo "install: $(( $(date +%s) - t_start )) s" | tee -a "$LOG/suite.log"
fi

if [ "${SUITE_SKIP_TESTS:-0}" != "1" ]; then
  # one pytest process per file: a crash (segfault) in one file cannot hide the others
  echo "== tests, one pytest per file (log: $LOG/pytest.log)" | tee -a "$LOG/suite.log"
  : >"$LOG/pytest.log"
  for f in tests/test_*.py; do
    echo "---- $f" >>"$LOG/pytest.log"
    "$PY" -m pytest "$f" -q -rfEs --durations=5 -p no:cacheprovider >>"$LOG/pytest.log" 2>&1
    rc=$?
    # 5: no tests collected
    if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then
      status=1
      echo "$f: FAILED (rc=$rc)" | tee -a "$LOG/suite.log"
    fi
    echo "$f: $(tail -n 1 "$LOG/pytest.log")" | tee -a "$LOG/suite.log"
  done
  grep -E "^(FAILED|ERROR) " "$LOG/pytest.log" | head -n 40 | tee -a "$LOG/suite.log"
  echo "tests: $(( $(date +%s) - t_start )) s since start" | tee -a "$LOG/suite.log"
fi

echo "== benchmark table (log: $LOG/gpu_table.log)" | tee -a "$LOG/suite.log"
# shellcheck disable=SC2086
"$PY" bench/gpu_table.py --out "$LOG" --budget-s "${SUITE_TABLE_BUDGET_S:-240}" ${SUITE_TABLE_ARGS:-} \
  >"$LOG/gpu_table.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
grep -E "^\[(FAILED|OOM|SKIPPED)\]" "$LOG/gpu_table.log" | tee -a "$LOG/suite.log"
echo "suite: $(( $(date +%s) - t_start )) s, status $status" | tee -a "$LOG/suite.log"
echo
if [ -f "$LOG/gpu_table.md" ]; then
  cat "$LOG/gpu_table.md"
else
  echo "no table: bench/gpu_table.py failed (tail of its log follows)"
  tail -n 30 "$LOG/gpu_table.log"
fi
exit $status
