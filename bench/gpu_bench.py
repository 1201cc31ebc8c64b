"""GPU benchmark: stc_attention backends and the model's default training / inference paths.

    python -m bench.gpu_bench [--out DIR] [--budget-s 420] [--sections op,profile,train,memory,infer]
    python -m bench.gpu_bench --cpu-smoke     # tiny CPU run of the same code (no triton, no timing claims)

Built on bench/harness.py (inputs, variants, timing, JSON rows). Every time is the median of
``triton.testing.do_bench`` (CUDA events, warm-up first, grads set to None between runs), every
ratio is measured side by side in this one process on one GPU.
Sections, in order of importance (each row catches its own failure; rows past the budget are
SKIPPED):
  ceil     the GPU's measured ceilings: device-to-device copy bandwidth, bf16 GEMM rate
  op       stc_attention forward+backward, B=42, C=256, H=8, J=17, T = 27, 81, 243, bf16 and
           float32: reference, torch.compile(reference), ``sdpa`` (the same math written with
           F.scaled_dot_product_attention for both halves plus F.conv2d, under torch.compile),
           and every backend of stcformer.ops.dispatch (harness.op_variants): triton and cuda in
           their preferred layout (head-major) and ``<name>_interleaved`` (official layout);
           a backend that cannot run is a SKIPPED row with the dispatch's reason
  profile  per-kernel GPU time of the triton op (torch.profiler; bf16 and float32 at the first
           and last --frames) beside the static rows of bench/kernel_report.py for the same
           kernel, T, dtype and layout: its roofline and issue floors (estimates from the compiled
           code), the achieved fraction of the roofline (floor / measured), registers, spills and
           resident warps per SM. The rows come from --kernel-report (the suite writes it while the
           GPU tests run; ``--kernel-report-args`` prints the arguments that cover the profiled
           cases); cases it lacks, or whose launches are no longer the launcher's, are compiled
           here; without them the measured times come alone, with the reason
  train    one training step of STCFormer(6 x 256), B=42, with the defaults of
           ``python -m stcformer.train`` on CUDA (bf16 autocast, torch.compile, fused Adam),
           against our model with backend=reference in float32 eager
  memory   peak memory of a bf16 training step at T=243, B=128 (eager), with and without
           activation recompute
  infer    flip-averaged inference of 256 windows at T=243 (two forwards), bf16 and float32
  sweep    the triton op (bf16, B=42) with one block shape / warp count changed at a time
The table is printed last and written to DIR/gpu_bench.md and DIR/gpu_bench.json
(``python -m bench.render DIR/gpu_bench.json --write bench/RESULTS.md`` puts it into RESULTS.md).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import harness as h
from bench.harness import C, H, J, sdpa_composition  # noqa: F401  (sdpa_composition: cited in RESULTS.md)
from bench.render import render_run


def op_case(bench, v, B, T, dtype):
    run, leaves = h.op_fwd_bwd(v, B, T, dtype, bench.device)
    run()
    ms = bench.time_ms(run, grads=leaves)
    if bench.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run()
        return dict(ms=round(ms, 3), peak_gb=round(torch.cuda.max_memory_allocated() / 2**30, 3))
    return dict(ms=round(ms, 3))


def section_op(bench, frames, dtypes, B, fp32_baselines=True):
    for dtype in dtypes:
        variants = h.op_variants(bench.device, dtype)
        for T in frames:
            # compile costs ~10 s a shape: float32 only at the longest T, compiler baselines
            # only with --fp32-baselines
            if dtype == torch.float32 and T != frames[-1]:
                continue
            case = f"fwd+bwd {str(dtype)[6:]} T={T} B={B}"
            for v in variants:
                if dtype == torch.float32 and not fp32_baselines and v.name in ("compiled", "sdpa"):
                    continue
                if v.fn is None:
                    bench.skip("op", case, v.name, v.reason)
                else:
                    bench.row("op", case, v.name, lambda v=v: op_case(bench, v, B, T, dtype))


# one knob at a time away from the launcher's choice (stcformer.settings.override_triton)
SWEEP = [{}, {"block_m": 64}, {"warps_fwd_t": 4}, {"block_m_bwd": 64}, {"warps_bwd_t": 4},
         {"frames_bwd": 2}, {"frames_bwd": 8}, {"warps_s": 8}, {"frames": 4}, {"frames": 16},
         {"nsplit": 1}, {"nsplit": 8}]


def section_sweep(bench, frames, B):
    from stcformer import settings
    v = next(v for v in h.op_variants("cuda", torch.bfloat16, compiled=False, sdpa=False) if v.name == "triton")
    for T in frames:
        for cfg in SWEEP:
            def run(cfg=cfg):
                with settings.override_triton(**cfg):
                    return op_case(bench, v, B, T, torch.bfloat16)
            bench.row("sweep", f"fwd+bwd bf16 T={T} B={B}", json.dumps(cfg), run)


class Bench(h.Bench):
    def __init__(self, device, budget_s, smoke, argv=None):
        super().__init__("gpu_bench.py", device, budget_s, argv=argv)
        self.smoke = smoke

    def time_ms(self, fn, grads=None) -> float:
        if self.smoke:  # CPU: one timed run after a warm-up (no claims are made from it)
            return h.measure({"fn": fn}, "cpu", repeats=1, warmup=1, retries=0)["fn"]
        return h.measure({"fn": fn}, "cuda", grads={"fn": grads})["fn"]

    def time_left(self) -> float:
        return self.deadline - time.time()


# ---------------------------------------------------------------------------------------------
# per-kernel profile beside the static report (bench/kernel_report.py)

B_OP = 42              # batch of the op, profile and sweep sections
LAYOUT = "head_major"  # the layout the model produces on a GPU, the one the profile runs
DTYPE_NAMES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# nominal HBM bandwidth (TB/s) of the sm_90 cards the report's default (an H200, 4.8) does not fit
HBM_TBS = (("H100 PCIe", 2.0), ("H100 NVL", 3.9), ("H100", 3.35), ("H800", 3.35))


def nominal_hbm_tbs(device_name: str):
    """The card's nominal HBM bandwidth for the report's roofline, None: the report's default."""
    for key, tbs in HBM_TBS:
        if key in device_name:
            return tbs
    return None


def profile_cases(frames, dtypes):
    """(T, dtype name) the profile section measures: the first and last frame counts."""
    ts = list(dict.fromkeys([frames[0], frames[-1]]))
    return [(T, d) for d in dtypes for T in ts]


def kernel_report_args(frames, dtypes, B, device_name=None) -> str:
    """The bench/kernel_report.py arguments that cover exactly the profiled cases."""
    cases = profile_cases(frames, dtypes)
    ts = ",".join(str(t) for t in dict.fromkeys(t for t, _ in cases))
    args = f"--frames {ts} --dtypes {','.join(dtypes)} --layouts {LAYOUT} --batch {B}"
    hbm = nominal_hbm_tbs(device_name or "")
    return args + (f" --hbm-tbs {hbm}" if hbm else "")


def case_rows(rows, T, dtype, B, layout=LAYOUT):
    """The report's rows (launches, in launch order) of one profiled case."""
    return [r for r in rows if (r.get("frames"), r.get("dtype"), r.get("layout"), r.get("batch"),
                                r.get("joints"), r.get("channels"), r.get("heads"))
            == (T, dtype, layout, B, J, C, H)]


def stale_reason(rows, launches):
    """Why the report's rows are not the launches the launcher makes now (None: they are)."""
    def norm(x):
        return json.loads(json.dumps(x, default=str))
    want = [(lc.name, list(lc.grid), norm(lc.constexprs)) for lc in launches]
    got = [(r["kernel"], r.get("grid"), norm(r.get("constexprs"))) for r in rows]
    if len(want) != len(got) or any(
            gn != wn or gc != wc or (gg is not None and gg != wg)
            for (gn, gg, gc), (wn, wg, wc) in zip(got, want)):
        return (f"its launches ({', '.join(g[0] for g in got) or 'none'}) are not the launcher's "
                f"({', '.join(w[0] for w in want)}), or their grids / constexprs differ")
    return None


def _distinct(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def join_profile(measured, rows, copy_bw=None):
    """Measured per-kernel GPU time beside the report's static rows of the same case.

    ``measured``: [(kernel name, us per call)] or [(name, us per call, launches per call)] as
    torch.profiler names them (a Triton kernel is named after its function). ``rows``: the
    report's rows of that case (one per launch; a kernel launched twice has two). A measured
    name matches the longest report name it equals or starts with followed by "_". Returns
    (kernels, totals): one dict per report kernel, in launch order, with the measured figures
    (``us``, ``launches``; None where the profile did not see it), the static ones summed over
    its launches (``roofline_floor_us``, ``issue_floor_us``; None where a launch failed to
    compile) and ``roofline_frac`` = roofline floor / measured; ``copy_bw`` (bytes/s, measured in
    this run) adds ``roofline_frac_copy_bw``, the floor with the bytes over that bandwidth."""
    names = _distinct(r["kernel"] for r in rows)
    by_name = {n: [r for r in rows if r["kernel"] == n] for n in names}
    seen = {}
    other_us, other = 0.0, []
    for m in measured:
        name, us = m[0], float(m[1])
        launches = m[2] if len(m) > 2 else None
        hits = [n for n in names if name == n or name.startswith(n + "_")]
        if not hits:
            other_us += us
            other.append(name)
            continue
        n = max(hits, key=len)
        prev = seen.get(n, (0.0, 0.0))
        seen[n] = (prev[0] + us, None if launches is None or prev[1] is None else prev[1] + launches)
    out = []
    for n in names:
        launch_rows = by_name[n]
        failed = [r for r in launch_rows if r.get("error")]
        ok = [r for r in launch_rows if not r.get("error")]
        k = dict(kernel=n, report_launches=len(launch_rows), us=None, launches=None,
                 roofline_floor_us=None, issue_floor_us=None, roofline_frac=None,
                 bound="/".join(_distinct(r["roofline_bound"] for r in ok)) or None,
                 regs=_distinct(r["regs"] for r in ok), spill_bytes=_distinct(r["spill_bytes"] for r in ok),
                 warps_per_sm=_distinct(r["warps_per_sm"] for r in ok),
                 error="; ".join(_distinct(r["error"] for r in failed)) or None)
        if not failed:
            k["roofline_floor_us"] = sum(r["roofline_floor_us"] for r in ok)
            k["issue_floor_us"] = sum(r["issue_floor_us"] for r in ok)
            if copy_bw:
                k["copy_bw_floor_us"] = sum(max(r["bytes"] / copy_bw * 1e6, r.get("exp_floor_us") or 0.0,
                                                r.get("mma_floor_us") or 0.0) for r in ok)
        if n in seen:
            us, launches = seen[n]
            k["us"] = us
            k["launches"] = launches
            if k["roofline_floor_us"] is not None and us > 0:
                k["roofline_frac"] = k["roofline_floor_us"] / us
                if copy_bw:
                    k["roofline_frac_copy_bw"] = k["copy_bw_floor_us"] / us
        out.append(k)
    complete = all(k["us"] is not None and k["roofline_floor_us"] is not None for k in out) and out
    tot_us = sum(k["us"] for k in out if k["us"] is not None)
    totals = dict(report_kernels_us=tot_us, other_us=other_us,
                  other_kernels=len(_distinct(other)))
    if out and all(k["roofline_floor_us"] is not None for k in out):  # the op's static floors
        roof = sum(k["roofline_floor_us"] for k in out)
        totals.update(roofline_floor_us=roof, issue_floor_us=sum(k["issue_floor_us"] for k in out))
        if complete and tot_us > 0:  # a fraction only where every kernel was measured
            totals["roofline_frac"] = roof / tot_us
            if copy_bw:
                totals["roofline_frac_copy_bw"] = sum(k["copy_bw_floor_us"] for k in out) / tot_us
    return out, totals


def static_label(rows, source: str) -> str:
    """What the static figures are: the report's target and bandwidth, and where they came from."""
    ok = [r for r in rows if not r.get("error") and r.get("memory_floor_us")]
    hbm = f" at {ok[0]['bytes'] / ok[0]['memory_floor_us'] / 1e6:.2f} TB/s" if ok else ""
    arch = rows[0].get("arch") if rows else "?"
    gpu = rows[0].get("gpu") if rows else "?"
    return f"static estimates of bench/kernel_report.py for sm_{arch} as an {gpu}{hbm} ({source})"


def compile_report(cases, B, sms, hbm_tbs, workdir, log=print) -> list:
    """Rows of ``cases`` from bench/kernel_report.py run here, in this process (its own CLI
    entry, with the card's SM count: the launcher sizes persistent grids by it)."""
    from bench import kernel_report
    workdir = Path(workdir or tempfile.mkdtemp(prefix="kernel_report_"))
    path, log_path = workdir / "kernel_report_bench.json", workdir / "kernel_report_bench.log"
    args = ["--json", str(path), "--frames", ",".join(str(t) for t in sorted({T for T, _ in cases})),
            "--dtypes", ",".join(sorted({d for _, d in cases})), "--layouts", LAYOUT, "--batch", str(B),
            "-j", str(os.cpu_count() or 1)] + (["--hbm-tbs", str(hbm_tbs)] if hbm_tbs else [])
    log(f"profile: compiling the kernel report here (python -m bench.kernel_report {' '.join(args)}; "
        f"its output: {log_path})")
    saved = kernel_report.ARCH[90]
    kernel_report.ARCH[90] = dict(saved, sms=sms)
    try:
        with open(log_path, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            rc = kernel_report.main(args)
    finally:
        kernel_report.ARCH[90] = saved
    if rc == 2 or not path.exists():
        raise RuntimeError(f"bench/kernel_report.py exited {rc}: {log_path.read_text().strip()[-300:]}")
    return json.loads(path.read_text())


def static_rows(report, cases, B, sms, hbm_tbs, compile_missing, log=print, workdir=None):
    """{(T, dtype): (rows, label)} for the profiled cases, and {(T, dtype): why there are none}.

    Rows come from the report JSON (``report``) where it holds the launcher's current launches
    for that case (same kernels, grids, constexprs on this card's SM count); the other cases are
    compiled here by the report itself when ``compile_missing`` (into ``workdir``)."""
    from bench.triton_variants import launches
    rows, notes, got = [], {}, {}
    if report and Path(report).is_file():
        try:
            rows = json.loads(Path(report).read_text())
        except (OSError, ValueError) as exc:
            notes = {c: f"{report} unreadable ({exc})" for c in cases}
    elif report:
        notes = {c: f"{report} not found" for c in cases}
    else:
        return {}, {c: "no kernel report (--kernel-report none)" for c in cases}
    missing = []
    for T, d in cases:
        want = launches(B, T, J, H, C // 2 // H, DTYPE_NAMES[d], LAYOUT == "head_major", has_spe=True,
                        sm_count=sms)
        cr = case_rows(rows, T, d, B)
        why = notes.get((T, d)) or (f"{report} has no rows for it" if not cr else stale_reason(cr, want))
        if why:
            notes[(T, d)] = why
            missing.append((T, d))
        else:
            got[(T, d)] = (cr, static_label(cr, Path(report).name))
    if missing and compile_missing:
        t0 = time.time()
        try:
            new = compile_report(missing, B, sms, hbm_tbs, workdir, log)
            for c in missing:
                cr = case_rows(new, c[0], c[1], B)
                if cr:
                    got[c] = (cr, static_label(cr, f"compiled in this run, {time.time() - t0:.0f} s; "
                                                   f"the report file: {notes[c]}"))
                    del notes[c]
        except Exception as exc:  # the measured times still come out, with the reason
            for c in missing:
                notes[c] += (f"; compiling here failed: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}")
    return got, notes


def profile_kernels(B, T, dtype):
    """[(kernel name, GPU us per call, launches per call)] of the triton op's forward + backward
    (torch.profiler over 10 calls after 3 warm-ups), and all GPU us per call."""
    from torch.profiler import ProfilerActivity, profile
    from stcformer.ops import attention as ops
    args = h.op_inputs(B, T, dtype, "cuda", LAYOUT)
    leaves = args[:7]
    grad = torch.randn(B, T, J, C, device="cuda", dtype=dtype)

    def run():
        out = ops.stc_attention(*args, backend="triton", layout=LAYOUT)
        torch.autograd.backward(out, grad)
        for x in leaves:
            x.grad = None
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    n = 10
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            run()
        torch.cuda.synchronize()
    measured, total = [], 0.0
    for evt in prof.key_averages():
        us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
        if us > 0:
            total += us / n
            measured.append((evt.key, us / n, evt.count / n))
    return measured, total


def section_profile(bench, B, frames, dtypes, copy_bw, report, compile_missing, workdir=None):
    cases = profile_cases(frames, dtypes)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    hbm = nominal_hbm_tbs(torch.cuda.get_device_name())
    try:
        static, notes = static_rows(report, cases, B, sms, hbm, compile_missing and bench.time_left() > 90,
                                    workdir=workdir)
    except Exception as exc:  # the measured times still come out
        static, notes = {}, {c: f"static rows: {type(exc).__name__}: {exc}" for c in cases}
    for T, d in cases:
        def run_profile(T=T, d=d):
            measured, total = profile_kernels(B, T, DTYPE_NAMES[d])
            if (T, d) in static:
                rows, label = static[(T, d)]
                kernels, totals = join_profile(measured, rows, copy_bw)
                out = dict(kernels=kernels, totals=totals, static=label)
            else:  # measured times only, with the reason there are no static figures
                out = dict(kernels=[dict(kernel=m[0], us=round(m[1], 2), launches=round(m[2], 2))
                                    for m in sorted(measured, key=lambda m: -m[1])],
                           static=f"no static figures: {notes.get((T, d))}")
            out["gpu_us_per_call"] = round(total, 1)
            if copy_bw:
                out["copy_TB_s"] = round(copy_bw / 1e12, 2)
            return out
        rec = bench.row("profile", f"{d} T={T} B={B}", "triton", run_profile)
        if rec.get("kernels"):
            from bench.render import kernel_table
            print(kernel_table([rec]), flush=True)


# ---------------------------------------------------------------------------------------------
def train_case(bench, T, B, *, backend, amp, compile_, recompute=False, fused=True, measure_mem=False,
               cuda_graphs=False):
    dev = torch.device(bench.device)
    h.set_tf32(dev, amp != "none" or compile_)
    model = h.make_model(backend, dev, recompute=recompute)
    step = h.train_step(model, B, T, device=dev, amp=amp, compile_=compile_, fused_adam=fused,
                        cuda_graphs=cuda_graphs)
    t0 = time.time()
    step()
    h.sync(dev)
    out = dict(first_step_s=round(time.time() - t0, 1))
    if measure_mem and dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        out["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return out
    out["ms"] = round(bench.time_ms(step), 2)
    h.set_tf32(dev, False)
    return out


def section_train(bench, frames, B):
    on_gpu = bench.device == "cuda"
    for T in frames:
        case = f"train step T={T} B={B}"
        bench.row("train", case, "default (bf16+compile+fused Adam, triton)" if on_gpu else "reference eager",
                  lambda: train_case(bench, T, B, backend=None, amp="bf16" if on_gpu else "none",
                                     compile_=on_gpu))
        bench.row("train", case, "reference fp32 eager, unfused Adam", lambda: train_case(
            bench, T, B, backend="reference", amp="none", compile_=False, fused=False))
        if on_gpu:
            bench.row("train", case, "default + --cuda-graphs", lambda: train_case(
                bench, T, B, backend=None, amp="bf16", compile_=True, cuda_graphs=True))
            bench.row("train", case, "triton fp32 eager (--amp none --no-compile)", lambda: train_case(
                bench, T, B, backend=None, amp="none", compile_=False))


def section_memory(bench, T, B):
    for compile_ in (False, True):
        for rec in (False, True):
            bench.row("memory", f"bf16 train step T={T} B={B} ({'compiled' if compile_ else 'eager'})",
                      f"recompute={rec}", lambda rec=rec, compile_=compile_: train_case(
                          bench, T, B, backend=None, amp="bf16", compile_=compile_, recompute=rec,
                          measure_mem=True))


def section_infer(bench, T, B):
    def case(backend, amp, compile_=False):
        model = h.make_model(backend, bench.device, train=False)
        model = torch.compile(model, dynamic=False) if compile_ else model
        run = h.infer_fn(model, B, T, device=bench.device, amp=torch.bfloat16 if amp == "bf16" else None,
                         flip=True)  # the flipped copy: a second forward of the same cost
        t0 = time.time()
        run()
        h.sync(torch.device(bench.device))
        return dict(ms=round(bench.time_ms(run), 2), first_call_s=round(time.time() - t0, 1))

    for backend, amp, compile_ in ((None, "bf16", True), (None, "bf16", False), (None, "none", True),
                                   (None, "none", False), ("reference", "none", False)):
        bench.row("infer", f"flip-averaged T={T} B={B}",
                  f"{backend or 'auto'} {amp}{' compiled' if compile_ else ''}",
                  lambda backend=backend, amp=amp, compile_=compile_: case(backend, amp, compile_))


def section_ceilings(bench):
    def run():
        n = 1 << 30  # 1 GiB each way
        a = torch.empty(n, dtype=torch.uint8, device="cuda")
        b = torch.empty_like(a)
        ms = bench.time_ms(lambda: b.copy_(a))
        bw = 2 * n / (ms * 1e-3)
        del a, b
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        ms_mm = bench.time_ms(lambda: x @ y)
        return dict(copy_TB_s=round(bw / 1e12, 2), bf16_gemm_TFLOP_s=round(2 * 8192**3 / (ms_mm * 1e-3) / 1e12, 0))
    return bench.row("ceil", "device", "measured", run)


# ---------------------------------------------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM (the suite's timeout): stop, keep the rows so far."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/stcformer_bench"))
    ap.add_argument("--budget-s", type=float, default=420.0, help="rows past this are SKIPPED")
    ap.add_argument("--sections", default="ceil,op,profile,train,memory,infer,sweep")
    ap.add_argument("--frames", default="27,81,243")
    ap.add_argument("--profile-dtypes", default="bf16,fp32",
                    help="dtypes of the profile section (at the first and last --frames)")
    ap.add_argument("--kernel-report", metavar="JSON", default=None,
                    help="rows of bench/kernel_report.py --json for the profile's static columns "
                         "(default: OUT/kernel_report.json; cases it lacks are compiled here; "
                         "'none': measured times only)")
    ap.add_argument("--kernel-report-args", action="store_true",
                    help="print the bench/kernel_report.py arguments of the profiled cases and exit")
    ap.add_argument("--no-fp32-baselines", dest="fp32_baselines", action="store_false",
                    help="float32 rows: only triton and reference (no compiled baselines)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the same code paths")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    frames = [int(f) for f in args.frames.split(",")]
    pdtypes = args.profile_dtypes.split(",")
    if not all(d in DTYPE_NAMES for d in pdtypes):
        print(f"gpu_bench.py: --profile-dtypes from {tuple(DTYPE_NAMES)}", file=sys.stderr)
        return 2
    if args.kernel_report_args:
        print(kernel_report_args(frames, pdtypes, B_OP, torch.cuda.get_device_name()
                                 if torch.cuda.is_available() else None))
        return 0
    if not smoke and not torch.cuda.is_available():
        print("gpu_bench.py: no CUDA device (use --cpu-smoke for a CPU dry run)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = None if args.kernel_report == "none" else (args.kernel_report or str(out / "kernel_report.json"))
    bench = Bench("cpu" if smoke else "cuda", args.budget_s, smoke, argv=argv)
    sections = args.sections.split(",")
    B = 2 if smoke else B_OP
    if smoke:
        frames = [min(f, 9) for f in frames[:1]] + [min(frames[-1], 12)]
    bench.meta["machine"] = "CPU smoke run" if smoke else (
        f"{torch.cuda.get_device_name()} ({time.strftime('%Y-%m-%d')}), torch {torch.__version__}, "
        f"triton {__import__('triton').__version__}")

    def write():  # after every section, so a run stopped by its timeout keeps what it measured
        bench.save(out / "gpu_bench.json")
        text = render_run(dict(meta=bench.meta, rows=bench.rows))
        (out / "gpu_bench.md").write_text(text)
        return text

    def on_term(*_):
        raise Terminated()
    signal.signal(signal.SIGTERM, on_term)
    try:
        bw = None
        if "ceil" in sections and not smoke:
            rec = section_ceilings(bench)
            bw = rec["copy_TB_s"] * 1e12 if rec.get("copy_TB_s") else None
            write()
        if "op" in sections:
            section_op(bench, frames, [torch.bfloat16, torch.float32], B, args.fp32_baselines)
            write()
        if "profile" in sections and not smoke:
            section_profile(bench, B, frames, pdtypes, bw, report, compile_missing=report is not None,
                            workdir=out)
            write()
        if "train" in sections:
            section_train(bench, [frames[0], frames[-1]], 4 if smoke else 42)
            write()
        if "memory" in sections and not smoke:
            section_memory(bench, 243, 128)
            write()
        if "infer" in sections:
            section_infer(bench, frames[-1], 4 if smoke else 256)
            write()
        if "sweep" in sections and not smoke:
            section_sweep(bench, [frames[-1], frames[0]], B)
    except Terminated:
        bench.meta["note"] = "stopped by SIGTERM (the suite's time limit): later rows are missing"
        print(f"gpu_bench.py: {bench.meta['note']}", file=sys.stderr)
        write()
        return 1
    print(write())
    return 0 if bench.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
