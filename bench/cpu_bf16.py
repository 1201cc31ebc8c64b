"""bf16 CPU autocast vs float32 inference, model defaults (cpp op), side by side in one process.

    python -m bench.cpu_bf16 [--repeats 5] [--tiny] [--json PATH]

Prints whether this CPU computes bf16 natively, then medians of --repeats alternating runs
(bench/harness.measure).
"""
import argparse
import sys

import torch

from bench import harness as h
from stcformer.ops import host


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes and a 2-layer model (smoke run)")
    ap.add_argument("--json", help="write the rows to this JSON file (bench/render.py)")
    args = ap.parse_args(argv)
    print("native bf16:", host.bf16_native_reason() or "yes",
          "| capability", torch.backends.cpu.get_cpu_capability())
    bench = h.Bench("cpu_bf16.py", "cpu", argv=argv)
    layers = 2 if args.tiny else 6
    for T, B in ((9, 2),) if args.tiny else ((27, 32), (243, 4)):
        model = h.make_model(None, "cpu", layers=layers, train=False)
        fns = {"float32": h.infer_fn(model, B, T), "bf16 autocast": h.infer_fn(model, B, T, amp=torch.bfloat16)}
        t = h.measure(fns, "cpu", repeats=args.repeats, max_busy=1.0, retries=0)
        print(f"T={T} B={B}: float32 {t['float32']:.0f} ms, bf16 autocast {t['bf16 autocast']:.0f} ms, "
              f"bf16 speed-up {t['float32'] / t['bf16 autocast']:.2f}x")
        for k in fns:
            bench.row("bf16 inference", f"T={T} B={B}", k, lambda k=k: dict(ms=round(t[k], 2), busy=t["busy"]))
    if args.json:
        bench.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
