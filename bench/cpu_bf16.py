"""bf16 CPU autocast vs float32 inference, model defaults (cpp op), side by side in one process.

    python bench/cpu_bf16.py

Prints whether this CPU computes bf16 natively, then medians of 5 alternating runs.
"""
import time

import torch

from stcformer import STCFormer, cpu_features

torch.manual_seed(0)
print("native bf16:", cpu_features.bf16_native_reason() or "yes", "| capability", torch.backends.cpu.get_cpu_capability())
for T, B in ((27, 32), (243, 4)):
    m = STCFormer().eval()
    x = torch.randn(B, T, 17, 2)
    def run(bf16):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return m(x)
    run(False); run(True)
    ts = {False: [], True: []}
    for _ in range(5):
        for bf in (False, True):
            t0 = time.perf_counter(); run(bf); ts[bf].append(time.perf_counter() - t0)
    med = {k: sorted(v)[2] for k, v in ts.items()}
    print(f"T={T} B={B}: float32 {med[False]*1e3:.0f} ms, bf16 autocast {med[True]*1e3:.0f} ms, bf16 speed-up {med[False]/med[True]:.2f}x")
