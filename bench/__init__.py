"""The benchmarks and the static kernel report, a package beside ``stcformer`` (not installed).

Every entry runs from the repository root as a module, ``python -m bench.cpu_table``,
``python -m bench.gpu_bench``, ``python -m bench.kernel_report`` ...; the pytest-benchmark
entries are ``pytest bench/ --benchmark-only``. ``bench.harness`` holds what the entries share
(inputs, variants, timing, JSON rows); the inputs come from ``stcformer.testing``, the test
suite's own factory. Modules here import ``stcformer`` and each other, never ``tests``.

Every benchmark process compiles into its own temporary Inductor and Triton caches, so what an
earlier run on the machine left in torch's shared default caches cannot change what is timed.
"""
from stcformer.settings import use_private_compile_caches

use_private_compile_caches("stcformer-bench-caches-")
