"""CPU ratios measured side by side in one run: cpp vs reference vs torch.compile(reference).

    python bench/cpu_table.py                 # op table, model table, peak memory
    python bench/cpu_table.py --only op --repeats 9
    python bench/cpu_table.py --only model --no-compile

Variants of one row run round-robin (a, b, c, a, b, c, ...) so that load from other processes
hits them alike; each time is the median of --repeats. Each row also prints the share of the
CPUs that other processes used meanwhile ("busy"); a row above --max-busy is measured again
(--retries times): the reference, with many small OpenMP regions, slows down several-fold when
another process takes a core, so rows measured under load overstate the speedups. The model table uses
stcformer.model.STCFormer(layers=6, d_hid=256) with the same weights for every variant, and
prints the GEMM floor: the model's GEMM FLOPs over the GEMM rate measured here in the same run.
Peak memory is measured in a fresh subprocess per variant: resident memory (VmRSS) once model,
optimizer and inputs exist, then the peak (VmHWM, reset there through /proc/self/clear_refs)
over two training steps; the growth includes gradients and AdamW state (57 MiB for every
variant). (ru_maxrss is not used: it survives exec and reports the parent's peak.)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from stcformer import cpu_features, dispatch
from stcformer.ops import stc_attention
from stcformer.reference import stc_attention_reference

J, C, H, LAYERS = 17, 256, 8, 6


MAX_BUSY, RETRIES = 0.1, 2


def _cpu_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine so far (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timeit(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """{name: median seconds}, the callables interleaved round-robin; key "busy": the share
    of the CPUs other processes used meanwhile. Re-measured while busy > MAX_BUSY."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for attempt in range(RETRIES + 1):
        times = {k: [] for k in fns}
        t0, busy0, own0 = time.perf_counter(), _cpu_busy_seconds(), _own_cpu_seconds()
        for _ in range(repeats):
            for k, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        foreign = (_cpu_busy_seconds() - busy0) - (_own_cpu_seconds() - own0)
        busy = max(0.0, foreign / (wall * (os.cpu_count() or 1)))
        if busy <= MAX_BUSY:
            break
    res = {k: statistics.median(v) for k, v in times.items()}
    res["busy"] = busy
    return res


def row(label: str, t: dict, targets: list, baselines: list) -> str:
    """Times, then the speedup of each target over each baseline (baseline time / target time)."""
    t = dict(t)
    busy = t.pop("busy", 0.0)
    cells = [f"{label:<36}"] + [f"{k} {t[k] * 1e3:8.1f} ms" for k in t]
    cells += [f"{a} vs {b} {t[b] / t[a]:5.2f}x" for a in targets for b in baselines
              if a in t and b in t and a != b]
    cells.append(f"busy {busy:.0%}" + (" (LOADED)" if busy > MAX_BUSY else ""))
    return " | ".join(cells)


# ---------------------------------------------------------------------------------------------
# op table


def op_inputs(B, T, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    half, dh = C // 2, C // 2 // H
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    return [r(B, T, J, 3 * C), r(half, 1, 3, 3), r(half), r(half, 1, 3, 3), r(half),
            r(J, dh) * 1e-3, r(J, dh) * 1e-9, H, half ** -0.5]


def op_table(repeats: int, compile_ref: bool):
    impls = {"reference": stc_attention_reference,
             "cpp": lambda *a: stc_attention(*a, backend="cpp")}
    if compile_ref:
        impls["compiled"] = torch.compile(stc_attention_reference)
    print("\n## stc_attention op (one block, C=256, 8 heads, J=17), float32")
    for T, B in ((27, 16), (81, 4), (243, 2)):
        args = op_inputs(B, T)
        leaves = [a.requires_grad_() for a in args[:7]]
        grad = torch.randn(B, T, J, C)

        def fwd(f):
            def run():
                with torch.no_grad():
                    f(*args)
            return run

        def fwd_bwd(f):
            return lambda: torch.autograd.grad(f(*args), leaves, grad)

        t = timeit({k: fwd(f) for k, f in impls.items()}, repeats)
        print(row(f"forward T={T} B={B}", t, ["cpp"], ["reference", "compiled"]))
        t = timeit({k: fwd_bwd(f) for k, f in impls.items()}, repeats)
        print(row(f"forward+backward T={T} B={B}", t, ["cpp"], ["reference", "compiled"]))


# ---------------------------------------------------------------------------------------------
# model table


class _MklGemms(torch.nn.Module):
    """Runs the wrapped model with stcformer.fused_mlp's GEMMs on F.linear (MKL)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from stcformer import fused_mlp as fm

        fm.ONEDNN_GEMM = False
        try:
            return self.model(x)
        finally:
            fm.ONEDNN_GEMM = True


def make_model(backend, dtype=torch.float32, fused_mlp=False, onednn=False, mkl=False,
               recompute=False):
    from stcformer import fused_mlp as fm
    from stcformer.model import STCFormer

    torch.manual_seed(0)  # same weights for every variant
    model = STCFormer(layers=LAYERS, d_hid=C, num_heads=H, backend=backend).to(dtype)
    if onednn:  # qkv, proj, embedding and head Linears on oneDNN too
        fm.use_onednn_linear(model)
    if fused_mlp:  # fused GELU+dropout, MLP GEMMs on oneDNN (on MKL with mkl=True)
        fm.use_fused_mlp(model, recompute=recompute)
    return _MklGemms(model) if mkl else model


def gemm_floor(tokens: int, training: bool, dtype=torch.float32) -> float:
    """Seconds the model's GEMMs alone take, each at the faster of torch.mm and oneDNN:
    qkv (C->3C), proj (C->C), fc1 (C->4C), fc2 (4C->C) per layer, forward, and for training
    the grad-input and grad-weight GEMMs too."""
    from stcformer import fused_mlp as fm

    total = 0.0
    for k, n in ((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)):
        x, w, g = (torch.randn(tokens, k, dtype=dtype), torch.randn(n, k, dtype=dtype),
                   torch.randn(tokens, n, dtype=dtype))
        wt = w.t().contiguous()
        cases = [(lambda: x @ w.t(), lambda: fm._ONEDNN(x, w, None, "none", [], ""))]
        if training:
            cases += [(lambda: g @ w, lambda: fm._ONEDNN(g, wt, None, "none", [], "")),
                      (lambda: g.t() @ x, lambda: fm._ONEDNN(g.t(), x.t(), None, "none", [], ""))]
        for mm, dnn in cases:
            dnn_ok = fm._ONEDNN is not None and (
                dtype != torch.bfloat16 or cpu_features.onednn_bf16_reason() is None)
            fns = {"mm": mm, "onednn": dnn} if dnn_ok else {"mm": mm}
            t = timeit(fns, 3, warmup=1)
            total += min(v for key, v in t.items() if key != "busy")
    return LAYERS * total


def gemm_rates(dtype=torch.float32) -> dict:
    """FLOP/s of an fc1-sized GEMM through torch.mm (MKL for fp32) and through oneDNN."""
    from stcformer import fused_mlp as fm

    a, w = torch.randn(8192, C, dtype=dtype), torch.randn(4 * C, C, dtype=dtype)
    fns = {"mm": lambda: a @ w.t()}
    # oneDNN has no bf16 inner product without AVX-512 (cpu_features decides, as fused_mlp does)
    bf16_ok = dtype != torch.bfloat16 or cpu_features.onednn_bf16_reason() is None
    if fm._ONEDNN is not None and bf16_ok:
        fns["onednn"] = lambda: fm._ONEDNN(a, w, None, "none", [], "")
    t = timeit(fns, 7)
    return {k: 2 * 8192 * C * 4 * C / v for k, v in t.items() if k != "busy"}


def train_step_fn(model, B, T):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(B, T, J, 2), torch.randn(B, T, J, 3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - y).norm(dim=-1).mean()
        loss.backward()
        opt.step()

    return step


def infer_fn(model, B, T, dtype=torch.float32):
    x = torch.randn(B, T, J, 2).to(dtype)
    model.eval()

    def run():
        with torch.inference_mode():
            model(x)

    return run


def variants(compile_ref: bool, fused: bool):
    v = {"reference": dict(backend="reference"), "cpp": dict(backend="cpp")}
    if fused:
        v["cpp+fused_mlp(mkl)"] = dict(backend="cpp", fused_mlp=True, mkl=True)
        v["cpp+fused_mlp"] = dict(backend="cpp", fused_mlp=True)
        v["cpp+fused+onednn"] = dict(backend="cpp", fused_mlp=True, onednn=True)
        v["cpp+fused+onednn+recompute"] = dict(backend="cpp", fused_mlp=True, onednn=True,
                                              recompute=True)
    if compile_ref:
        v["compiled"] = dict(backend="reference", compile=True)
    return v


def build(spec, dtype=torch.float32):
    spec = dict(spec)
    compiled = spec.pop("compile", False)
    model = make_model(dtype=dtype, **spec)
    return torch.compile(model) if compiled else model


def model_table(repeats: int, compile_ref: bool, fused: bool):
    r32, r16 = gemm_rates(torch.float32), gemm_rates(torch.bfloat16)
    fmt = lambda r: ", ".join(f"{k} {v / 1e9:.0f}" for k, v in r.items())  # noqa: E731
    print(f"\n## STCFormer (6 layers, width 256, 8 heads); GEMM GFLOP/s measured now: fp32 "
          f"{fmt(r32)}; bf16 {fmt(r16)}. GEMM floor: the model's GEMMs timed alone, each "
          "on the faster of the two")
    spec = variants(compile_ref, fused)
    targets = [k for k in spec if k.startswith("cpp")]
    for what, B, T in (("train", 16, 27), ("train", 2, 243), ("infer", 32, 27), ("infer", 4, 243)):
        fns = {}
        for name, s in spec.items():
            m = build(s)
            fns[name] = train_step_fn(m, B, T) if what == "train" else infer_fn(m, B, T)
        t = timeit(fns, repeats)
        floor = gemm_floor(B * T * J, what == "train")
        best = min(v for k, v in t.items() if k not in ("reference", "busy"))
        label = f"{'training step' if what == 'train' else 'inference'} fp32 T={T} B={B}"
        print(row(label, t, targets, ["reference", "compiled"])
              + f" | GEMM floor {floor * 1e3:.0f} ms, best/floor {best / floor:.2f}")

    # bf16 inference vs the reference in fp32
    for B, T in ((32, 27), (4, 243)):
        fns = {"reference": infer_fn(build(spec["reference"]), B, T)}
        for name in [k for k in spec if k.startswith("cpp")]:
            fns[name + "-bf16"] = infer_fn(build(spec[name], torch.bfloat16), B, T, torch.bfloat16)
        t = timeit(fns, repeats)
        floor = gemm_floor(B * T * J, False, torch.bfloat16)
        best = min(v for k, v in t.items() if k not in ("reference", "busy"))
        print(row(f"inference bf16 vs fp32 ref T={T} B={B}", t, [k for k in fns if k != "reference"],
                  ["reference"]) + f" | bf16 GEMM floor {floor * 1e3:.0f} ms, best/floor {best / floor:.2f}")


# ---------------------------------------------------------------------------------------------
# peak memory, one fresh process per variant


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(name: str, B: int, T: int, compile_ref: bool, fused: bool):
    step = train_step_fn(build(variants(compile_ref, fused)[name]), B, T)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS
        f.write("5")
    step()  # includes the gradients and AdamW state (~57 MiB, the same for every variant)
    step()
    after = _status_kib("VmHWM")
    print(json.dumps({"name": name, "delta_mib": (after - before) / 1024, "peak_mib": after / 1024}))


def memory_table(compile_ref: bool, fused: bool, B=4, T=243):
    print(f"\n## peak memory of a training step, T={T} B={B} fp32 "
          "(peak VmHWM growth of a fresh process over two steps)")
    res = {}
    for name in variants(compile_ref, fused):
        cmd = [sys.executable, __file__, "--memory-child", name, "--B", str(B), "--T", str(T)]
        cmd += [] if compile_ref else ["--no-compile"]
        cmd += ["--fused"] if fused else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[name] = json.loads(out.strip().splitlines()[-1])
    base = res["reference"]["delta_mib"]
    for name, r in res.items():
        print(f"{name:<16} step growth {r['delta_mib']:8.0f} MiB ({r['delta_mib'] / base:4.2f}x of "
              f"reference) | process peak {r['peak_mib']:8.0f} MiB")


def main():
    global MAX_BUSY, RETRIES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("op", "model", "memory"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    ap.add_argument("--fused", action="store_true",
                    help="add cpp variants with stcformer.fused_mlp: the fused GELU+dropout MLP "
                         "(its GEMMs on oneDNN), and also every other Linear on oneDNN")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--max-busy", type=float, default=MAX_BUSY,
                    help="re-measure a row when other processes used more of the CPUs than this")
    ap.add_argument("--retries", type=int, default=RETRIES)
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--B", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--T", type=int, default=243, help=argparse.SUPPRESS)
    args = ap.parse_args()
    MAX_BUSY, RETRIES = args.max_busy, args.retries
    if args.threads:
        torch.set_num_threads(args.threads)
    compile_ref = not args.no_compile
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.B, args.T, compile_ref, args.fused)
    reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
    if reason:
        sys.exit(f"cpu_table: {reason}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    if args.only in (None, "op"):
        op_table(args.repeats, compile_ref)
    if args.only in (None, "model"):
        model_table(args.repeats, compile_ref, args.fused)
    if args.only in (None, "memory"):
        memory_table(compile_ref, args.fused)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
