"""CPU ratios measured side by side in one run: every op variant (bench/harness.op_variants:
reference, torch.compile(reference), SDPA + conv2d compiled, each dispatch backend that runs
here), the model with the cpp op and the fused-MLP variants, and peak memory.

    python -m bench.cpu_table                 # op table, model table, peak memory
    python -m bench.cpu_table --only op --repeats 9
    python -m bench.cpu_table --only model --no-compile
    python -m bench.cpu_table --only infer --no-compile --no-bf16   # inference rows in a fresh process
    python -m bench.cpu_table --tiny --json /tmp/cpu.json   # a quick smoke run, JSON results

Variants of one row run round-robin (a, b, c, a, b, c, ...) through bench/harness.measure
(torch.utils.benchmark timers) so that load from other processes hits them alike; each time is
the median of --repeats. Each row records the share of the CPUs other processes used meanwhile
("busy"); a row above --max-busy is measured again (--retries times). The model table uses
STCFormer(layers=6, d_hid=256) with the same weights for every variant, the training step of
``python -m stcformer.train`` (Adam with amsgrad, MPJPE), and the GEMM floor: the model's GEMMs
timed alone in the same run. Peak memory is measured in a fresh subprocess per variant: resident
memory (VmRSS) once model, optimizer and inputs exist, then the peak (VmHWM, reset there through
/proc/self/clear_refs) over two training steps (gradients and optimizer state included); then,
over a third step, the peak of live tensor bytes (harness.tensor_peak_bytes: what the tensors
need, without the freed pages the C allocator keeps resident).
--json writes the rows for bench/render.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from bench import harness as h
from stcformer.ops import host
from stcformer.ops import dispatch

LAYERS = 6
OPTS = dict(repeats=5, max_busy=0.1, retries=2)
SIZES = dict(op=((27, 16), (81, 4), (243, 2)), train=((27, 16), (243, 2)), infer=((27, 32), (243, 4)),
             memory=(243, 4))
TINY = dict(op=((9, 2),), train=((9, 2),), infer=((9, 4),), memory=(9, 2))


def measure(fns):
    return h.measure(fns, "cpu", **OPTS)


def print_row(label: str, t: dict, targets: list, baselines: list, extra: str = "") -> None:
    t = dict(t)
    busy = t.pop("busy", 0.0)
    cells = [f"{label:<36}"] + [f"{k} {v:8.1f} ms" for k, v in t.items()]
    cells += [f"{a} vs {b} {t[b] / t[a]:5.2f}x" for a in targets for b in baselines if a in t and b in t and a != b]
    cells.append(f"busy {busy:.0%}" + (" (LOADED)" if busy > OPTS["max_busy"] else ""))
    print(" | ".join(cells) + extra, flush=True)


def record(bench, section, case, t: dict, **extra):
    for k, ms in t.items():
        if k != "busy":
            bench.row(section, case, k, lambda ms=ms: dict(ms=round(ms, 3), busy=t.get("busy")), **extra)


# ---------------------------------------------------------------------------------------------
def op_table(bench, compile_ref: bool, sizes):
    variants = h.op_variants("cpu", torch.float32, compiled=compile_ref)
    runnable = [v for v in variants if v.fn is not None]
    for v in variants:
        if v.fn is None:
            bench.skip("op", "every case", v.name, v.reason)
    print(f"\n## stc_attention op (one block, C={h.C}, {h.H} heads, J={h.J}), float32")
    targets = [v.name for v in runnable if v.name not in ("reference", "compiled", "sdpa")]
    for T, B in sizes:
        for what, backward in (("forward", False), ("forward+backward", True)):
            t = measure({v.name: h.op_fwd_bwd(v, B, T, torch.float32, "cpu", backward=backward)[0] for v in runnable})
            case = f"{what} T={T} B={B}"
            print_row(case, t, targets, ["reference", "compiled", "sdpa"])
            record(bench, "op", case, t)


# ---------------------------------------------------------------------------------------------
class _MklGemms(torch.nn.Module):
    """Runs the wrapped model with stcformer.ops.mlp.linear's GEMMs on F.linear (MKL)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from stcformer import settings

        with settings.override(onednn_gemm=False):
            return self.model(x)


def variants(compile_ref: bool, fused: bool) -> dict:
    # reference: the official model (reference op, plain GELU/dropout MLP); cpp: the model's
    # defaults (cpp op; in float32 on CPU LayerNorm + MLP + residual in row chunks, fused
    # GELU+dropout); cpp_recompute_mlp: that with recompute="mlp"; cpp_plain_mlp: the op alone
    v = {"reference": dict(backend="reference", plain_mlp=True), "cpp": dict(backend="cpp"),
         "cpp_recompute_mlp": dict(backend="cpp", recompute_what="mlp"),
         "cpp_plain_mlp": dict(backend="cpp", plain_mlp=True)}
    if fused:
        v["cpp+fused_mlp(mkl)"] = dict(backend="cpp", fused_mlp=True, mkl=True)
        v["cpp+fused_mlp"] = dict(backend="cpp", fused_mlp=True)
        v["cpp+fused+onednn"] = dict(backend="cpp", fused_mlp=True, onednn=True)
        v["cpp+fused+onednn+recompute"] = dict(backend="cpp", fused_mlp=True, onednn=True, recompute=True)
    if compile_ref:
        v["compiled"] = dict(backend="reference", compile=True, plain_mlp=True)
    return v


def build(spec: dict, dtype=torch.float32):
    from stcformer.ops.mlp.linear import convert_linears

    spec = dict(spec)
    model = h.make_model(spec["backend"], "cpu", layers=LAYERS, dtype=dtype)
    if spec.get("plain_mlp"):  # nn.GELU and nn.Dropout as the official code runs them
        from stcformer.model.modules import Mlp, STCAttention

        for m in model.modules():
            if isinstance(m, (Mlp, STCAttention)):  # and the LayerNorm + qkv Linear unchunked
                m.fused = False
    if spec.get("recompute_what"):
        model.set_recompute(spec["recompute_what"])
    if spec.get("onednn"):  # qkv, proj, embedding and head Linears on oneDNN too
        convert_linears(model)
    if spec.get("fused_mlp"):  # fused GELU+dropout, MLP GEMMs on oneDNN (on MKL with mkl=True)
        model.configure(onednn_mlp=True)
        if spec.get("recompute"):
            model.set_recompute("mlp")
    model = _MklGemms(model) if spec.get("mkl") else model
    return torch.compile(model) if spec.get("compile") else model


def gemm_floor(tokens: int, training: bool, dtype=torch.float32) -> float:
    """Milliseconds the model's GEMMs alone take, each at the faster of torch.mm and oneDNN:
    qkv (C->3C), proj (C->C), fc1 (C->4C), fc2 (4C->C) per layer, forward, and for training
    the grad-input and grad-weight GEMMs too."""
    from stcformer.ops.mlp import linear as fm

    C, total = h.C, 0.0
    dnn_ok = fm._ONEDNN is not None and (dtype != torch.bfloat16 or host.onednn_bf16_reason() is None)
    for k, n in ((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)):
        x, w, g = torch.randn(tokens, k, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.randn(tokens, n, dtype=dtype)
        wt = w.t().contiguous()
        cases = [(lambda: x @ w.t(), lambda: fm._ONEDNN(x, w, None, "none", [], ""))]
        if training:
            cases += [(lambda: g @ w, lambda: fm._ONEDNN(g, wt, None, "none", [], "")),
                      (lambda: g.t() @ x, lambda: fm._ONEDNN(g.t(), x.t(), None, "none", [], ""))]
        for mm, dnn in cases:
            t = h.measure({"mm": mm, "onednn": dnn} if dnn_ok else {"mm": mm}, "cpu", repeats=3, warmup=1,
                          max_busy=OPTS["max_busy"], retries=0)
            total += min(v for key, v in t.items() if key != "busy")
    return LAYERS * total


def gemm_rates(dtype=torch.float32) -> dict:
    """FLOP/s of an fc1-sized GEMM through torch.mm (MKL for fp32) and through oneDNN."""
    from stcformer.ops.mlp import linear as fm

    C = h.C
    a, w = torch.randn(8192, C, dtype=dtype), torch.randn(4 * C, C, dtype=dtype)
    fns = {"mm": lambda: a @ w.t()}
    # oneDNN has no bf16 inner product without AVX-512 (stcformer.ops.host decides, as the MLP ops do)
    if fm._ONEDNN is not None and (dtype != torch.bfloat16 or host.onednn_bf16_reason() is None):
        fns["onednn"] = lambda: fm._ONEDNN(a, w, None, "none", [], "")
    t = measure(fns)
    return {k: 2 * 8192 * C * 4 * C / (v * 1e-3) for k, v in t.items() if k != "busy"}


def model_table(bench, compile_ref: bool, fused: bool, sizes, bf16: bool = True, kinds=("train", "infer")):
    r32, r16 = gemm_rates(torch.float32), gemm_rates(torch.bfloat16)
    fmt = lambda r: ", ".join(f"{k} {v / 1e9:.0f}" for k, v in r.items())  # noqa: E731
    print(f"\n## STCFormer ({LAYERS} layers, width {h.C}, {h.H} heads); GEMM GFLOP/s measured now: fp32 "
          f"{fmt(r32)}; bf16 {fmt(r16)}. GEMM floor: the model's GEMMs timed alone, each on the faster of the two")
    spec = variants(compile_ref, fused)
    targets = [k for k in spec if k.startswith("cpp")]
    for what in kinds:
        for T, B in sizes[what]:
            fns = {name: h.train_step(build(s), B, T) if what == "train" else h.infer_fn(build(s), B, T)
                   for name, s in spec.items() if what == "train" or not s.get("recompute_what")}
            t = measure(fns)
            floor = gemm_floor(B * T * h.J, what == "train")
            best = min(v for k, v in t.items() if k not in ("reference", "busy"))
            case = f"{'training step' if what == 'train' else 'inference'} fp32 T={T} B={B}"
            print_row(case, t, targets, ["reference", "compiled"],
                      f" | GEMM floor {floor:.0f} ms, best/floor {best / floor:.2f}")
            record(bench, "model", case, t, gemm_floor_ms=round(floor, 1))
    # bf16 inference vs the reference in fp32
    for T, B in (sizes["infer"] if bf16 else ()):
        fns = {"reference": h.infer_fn(build(spec["reference"]), B, T)}
        for name in targets:
            fns[name + "-bf16"] = h.infer_fn(build(spec[name], torch.bfloat16), B, T, dtype=torch.bfloat16)
        t = measure(fns)
        floor = gemm_floor(B * T * h.J, False, torch.bfloat16)
        best = min(v for k, v in t.items() if k not in ("reference", "busy"))
        case = f"inference bf16 vs fp32 ref T={T} B={B}"
        print_row(case, t, [k for k in fns if k != "reference"], ["reference"],
                  f" | bf16 GEMM floor {floor:.0f} ms, best/floor {best / floor:.2f}")
        record(bench, "model", case, t, gemm_floor_ms=round(floor, 1))


# ---------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(name: str, B: int, T: int, compile_ref: bool, fused: bool):
    step = h.train_step(build(variants(compile_ref, fused)[name]), B, T)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS
        f.write("5")
    step()  # includes the gradients and optimizer state (the same for every variant)
    step()
    after = _status_kib("VmHWM")
    tensors = h.tensor_peak_bytes(step)  # a third step, after the resident-set reading
    print(json.dumps({"name": name, "delta_mib": (after - before) / 1024, "peak_mib": after / 1024,
                      "tensor_peak_mib": None if tensors is None else tensors / 2 ** 20}))


def memory_table(bench, compile_ref: bool, fused: bool, size):
    T, B = size
    print(f"\n## peak memory of a training step, T={T} B={B} fp32 "
          "(peak VmHWM growth of a fresh process over two steps)")
    res = {}
    for name in variants(compile_ref, fused):
        cmd = [sys.executable, __file__, "--memory-child", name, "--B", str(B), "--T", str(T)]
        cmd += ([] if compile_ref else ["--no-compile"]) + (["--fused"] if fused else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[name] = json.loads(out.strip().splitlines()[-1])
    base, tbase = res["reference"]["delta_mib"], res["reference"]["tensor_peak_mib"]
    for name, r in res.items():
        tp = r["tensor_peak_mib"]
        tensors = {} if tp is None or not tbase else dict(tensor_peak_mib=round(tp), tensor_peak_vs_reference=round(tp / tbase, 2))
        print(f"{name:<16} step growth {r['delta_mib']:8.0f} MiB ({r['delta_mib'] / base:4.2f}x of "
              f"reference) | process peak {r['peak_mib']:8.0f} MiB | live tensors peak "
              + ("not measured" if not tensors else f"{tp:8.0f} MiB ({tensors['tensor_peak_vs_reference']:4.2f}x)"))
        bench.row("memory", f"training step T={T} B={B} fp32", name,
                  lambda r=r, tensors=tensors: dict(step_growth_mib=round(r["delta_mib"]),
                                                    growth_vs_reference=round(r["delta_mib"] / base, 2),
                                                    process_peak_mib=round(r["peak_mib"]), **tensors))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("op", "model", "infer", "memory"),
                    help="infer: the model table's inference rows alone, in a fresh process (no "
                         "training steps before them whose freed buffers the allocator keeps)")
    ap.add_argument("--repeats", type=int, default=OPTS["repeats"])
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference) (and sdpa)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 inference rows")
    ap.add_argument("--fused", action="store_true",
                    help="add cpp variants with stcformer.ops.mlp.fused: the fused GELU+dropout MLP "
                         "(its GEMMs on oneDNN), and also every other Linear on oneDNN")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--max-busy", type=float, default=OPTS["max_busy"],
                    help="re-measure a row when other processes used more of the CPUs than this")
    ap.add_argument("--retries", type=int, default=OPTS["retries"])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run of every path (no claims)")
    ap.add_argument("--json", help="write the rows to this JSON file (python -m bench.render reads it)")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--B", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--T", type=int, default=243, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    OPTS.update(repeats=args.repeats, max_busy=args.max_busy, retries=args.retries)
    if args.threads:
        torch.set_num_threads(args.threads)
    compile_ref = not args.no_compile
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.B, args.T, compile_ref, args.fused)
    reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
    if reason:
        sys.exit(f"cpu_table: {reason}")
    sizes = TINY if args.tiny else SIZES
    bench = h.Bench("cpu_table.py", "cpu", argv=argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    if args.only in (None, "op"):
        op_table(bench, compile_ref, sizes["op"])
    if args.only in (None, "model", "infer"):
        kinds = ("infer",) if args.only == "infer" else ("train", "infer")
        model_table(bench, compile_ref, args.fused, sizes, bf16=not args.no_bf16, kinds=kinds)
    if args.only in (None, "memory"):
        memory_table(bench, compile_ref, args.fused, sizes["memory"])
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    if args.json:
        bench.save(args.json)
    return 0 if bench.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
