"""Static report of the triton backend's kernels for a GPU target, built without a GPU.

    python -m bench.kernel_report [--json OUT] [--arch 90] [--frames 27,81,243]
        [--dtypes bf16,fp32] [--layouts head_major,interleaved] [--batch 42] [--keep DIR] [-j N]

Compiles every kernel launch of one forward + backward of ``stc_attention`` (B=42, J=17, C=256,
8 heads, dh=16 by default) exactly as the backend launches it (``stcformer.ops.backends.
triton_variants.launches``: the launcher's Config, grid, arguments, num_warps / num_stages) for
sm_90 (or sm_80), and prints one row per launch: registers, spills, shared memory, the MMA kind,
ptxas's wgmma serialisation warnings (C7510, C7511, C7515, ...), the SASS instruction mix of the
hot loops, occupancy and waves, the work, and two floors. A summary line per (T, dtype, layout)
sums the floors over the op's launches. Every figure is a static estimate from the compiled
code, not a GPU timing.

Method
- Compile: ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` with the
  signature, constexprs and specialisation attributes Triton's own binder gives for the
  launcher's arguments; ptxas's ``-v`` log of that very compile is kept (Triton's cache is
  bypassed for it). Results live under ``--keep`` (default ``$TMPDIR/stcformer_kernel_report``),
  one folder per (kernel source hash incl. its helpers, signature, constexprs, attributes,
  options, arch, Triton version): kernel.ptx, kernel.cubin, ptxas.log, sass.txt, result.json.
- SASS (nvdisasm): a backward branch closes a loop; loops are matched to the kernel's runtime
  loops in source order, and each instruction counts once per iteration of the loops around it
  (mean trip count over programs). Code skipped by an unconditional forward branch (the paths
  taken when a loop runs zero times) is left out of the executed counts. The "hot loop" mix is
  the static count of the loop bodies (the whole kernel where there is no loop).
- Work: bytes = each tensor argument's bytes the launch must move once (one half of the
  channels of qkv / out / grad_out / grad_qkv, all of lse / delta / partials / parameters);
  exps = executed MUFU.EX2 x 32 lanes x warps x programs; MMA FLOPs from the executed
  HGMMA.MxNxK (per warpgroup) and HMMA.16816 / 1688 (per warp) shapes, so padding and the
  three tf32 dots of 3xTF32 are counted as the tensor cores see them. Scores: real = J x J per
  frame (spatial) and T x T per joint (temporal); computed = the tiles the kernel evaluates.
- Occupancy: registers rounded up to 256 per warp out of 65536 per SM; shared memory =
  Triton's dynamic shared + the static/reserved 1 KB per block (cuobjdump's SHARED), in 128-byte
  units, out of the SM's carve-out; warps out of 64, blocks out of 32 per SM.
- roofline floor = max(bytes / HBM bandwidth, exps / (16 ex2 / clk / SM x SMs x clock),
  sum over MMA kinds of FLOPs / dense tensor rate).
- issue floor = ceil(programs / SMs) x executed warp-instructions per program
  / (min(4, resident warps per SM) schedulers x clock): the busiest SM issuing one instruction per
  scheduler per clock, nothing else stalling.

Constants (``ARCH``):
- sm_90: an H200: 132 SMs, 1.98 GHz, HBM3e 4.8 TB/s (an H100 SXM has 3.35 TB/s: pass
  ``--hbm-tbs 3.35``), bf16/fp16 dense 989 TFLOP/s, tf32 494 TFLOP/s, MUFU 16 ex2/clk/SM,
  65536 registers, 228 KB shared memory per SM (227 KB per block), 64 warps, 32 blocks.
- sm_80: an A100 SXM: 108 SMs, 1.41 GHz, 2.04 TB/s, bf16 312 TFLOP/s, tf32 156 TFLOP/s, MUFU 16
  ex2/clk/SM, 65536 registers, 164 KB per SM (163 KB per block), 64 warps, 32 blocks.

Must run without TRITON_INTERPRET=1 (the interpreter replaces triton.jit). Exit status 1 when a
launch failed to compile (its row says why), 2 on bad usage.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ARCH = {
    90: dict(gpu="H200", sms=132, clock_hz=1.98e9, hbm_bps=4.8e12, mufu_per_clk=16,
             mma_flops={"bf16": 989e12, "fp16": 989e12, "tf32": 494e12},
             regs_per_sm=65536, reg_unit=256, smem_per_sm=228 * 1024, smem_per_block=227 * 1024,
             smem_unit=128, max_warps=64, max_blocks=32, schedulers=4),
    80: dict(gpu="A100", sms=108, clock_hz=1.41e9, hbm_bps=2.039e12, mufu_per_clk=16,
             mma_flops={"bf16": 312e12, "fp16": 312e12, "tf32": 156e12},
             regs_per_sm=65536, reg_unit=256, smem_per_sm=164 * 1024, smem_per_block=163 * 1024,
             smem_unit=128, max_warps=64, max_blocks=32, schedulers=4),
}
SMEM_RESERVED = 1024  # per block, when cuobjdump reports no static shared memory
DTYPES = ("bf16", "fp16", "fp32")
LAYOUTS = {"head_major": True, "interleaved": False}
REQUIRED_KEYS = ("kernel", "frames", "dtype", "arch", "layout", "regs", "spill_bytes", "smem_bytes",
                 "num_warps", "num_stages", "mma", "serialization_warning", "programs",
                 "programs_per_sm", "warps_per_sm", "waves", "sass", "cubin", "issue_floor_us",
                 "roofline_floor_us")


def nvidia_bin(tool: str) -> str:
    import triton
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


# ------------------------------------------------------------------------------------------
# compiling (one process per job with -j; everything a job needs is plain data)

def _compile_job(job: dict) -> dict:
    """Compile one launch into job["dir"]; returns the static facts (or {"error": ...})."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence a triton 3.9 warning
    import importlib

    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget

    out = job["dir"]
    done = os.path.join(out, "result.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    kernel = getattr(importlib.import_module(job["module"]), job["name"])
    constexprs = {tuple(k): v for k, v in job["constexprs"]}
    attrs = {tuple(k): v for k, v in job["attrs"]}
    t0 = time.time()
    log = io.StringIO()
    try:
        # the ptxas -v log is printed only by a real compile: bypass Triton's cache for this one
        with knobs.compilation.scope(), knobs.nvidia.scope():
            knobs.compilation.always_compile = True
            knobs.nvidia.dump_ptxas_log = True
            with contextlib.redirect_stdout(log):
                ck = triton.compile(
                    triton.compiler.ASTSource(fn=kernel, signature=job["signature"],
                                              constexprs=constexprs, attrs=attrs),
                    target=GPUTarget("cuda", job["arch"], 32), options=job["options"])
    except Exception as exc:  # the row reports it; the other launches go on
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    tmp = out + f".tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    paths = {n: os.path.join(tmp, n) for n in ("kernel.ptx", "kernel.cubin", "ptxas.log", "sass.txt")}
    with open(paths["kernel.ptx"], "w") as f:
        f.write(ck.asm["ptx"])
    with open(paths["kernel.cubin"], "wb") as f:
        f.write(ck.asm["cubin"])
    ptxas_log = log.getvalue()
    if "Used" not in ptxas_log:  # a triton that no longer prints the log: run ptxas ourselves
        ptxas_log = _rerun_ptxas(paths["kernel.ptx"], job["arch"], tmp)
    with open(paths["ptxas.log"], "w") as f:
        f.write(ptxas_log)
    sass = subprocess.run([nvidia_bin("nvdisasm"), "-c", paths["kernel.cubin"]], check=True,
                          capture_output=True, text=True).stdout
    with open(paths["sass.txt"], "w") as f:
        f.write(sass)
    usage = subprocess.run([nvidia_bin("cuobjdump"), "--dump-resource-usage", paths["kernel.cubin"]],
                           check=True, capture_output=True, text=True).stdout
    md = ck.metadata
    result = dict(shared=md.shared, num_warps=md.num_warps, num_stages=md.num_stages,
                  usage=usage, compile_s=round(time.time() - t0, 2))
    with open(os.path.join(tmp, "result.json"), "w") as f:
        json.dump(result, f)
    try:
        os.rename(tmp, out)  # atomic: a folder is complete or absent
    except OSError:          # another process finished the same job first
        shutil.rmtree(tmp, ignore_errors=True)
    with open(done) as f:
        return json.load(f)


def _rerun_ptxas(ptx: str, arch: int, tmp: str) -> str:
    name = "ptxas" if arch < 90 else "ptxas-blackwell"
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    r = subprocess.run([nvidia_bin(name), "-lineinfo", "-v", "--warn-on-spills", "--regAllocOptLevel=2",
                        f"--gpu-name={gpu}", ptx, "-o", os.path.join(tmp, "rerun.cubin")],
                       capture_output=True, text=True)
    return r.stdout + r.stderr


def _job(launch, arch: int, keep: str) -> dict:
    import triton
    signature, constexprs, attrs, options = launch.compile_spec(arch)
    key_src = json.dumps([launch.kernel.cache_key, launch.name, signature, repr(sorted(constexprs.items())),
                          repr(sorted(attrs.items())), options, arch, triton.__version__])
    digest = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    return dict(module=launch.kernel.fn.__module__, name=launch.name, signature=signature,
                constexprs=[[list(k), v] for k, v in constexprs.items()],
                attrs=[[list(k), v] for k, v in attrs.items()], options=options, arch=arch,
                dir=os.path.join(keep, f"sm{arch}-{launch.name}-{digest}"))


# ------------------------------------------------------------------------------------------
# reading the compiled code

def parse_ptxas(log: str) -> dict:
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else None  # noqa: E731
    warnings = [" ".join(line.split()) for line in log.splitlines()
                if re.search(r"\(C7\d\d\d\)|[Ww]arning|Performance Loss", line)]
    return dict(regs=num(r"Used (\d+) registers"), stack=num(r"(\d+) bytes stack frame"),
                spill_stores=num(r"(\d+) bytes spill stores"), spill_loads=num(r"(\d+) bytes spill loads"),
                warnings=warnings)


def parse_usage(text: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text)}


_INSN = re.compile(r"/\*([0-9a-f]+)\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)([^;]*);")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")


def parse_sass(text: str):
    """[(address, predicated, opcode, operands)], {label: address} of one kernel's SASS."""
    insns, labels, pending = [], {}, []
    for line in text.splitlines():
        if m := _LABEL.match(line.strip()):
            pending.append(m.group(1))
            continue
        if m := _INSN.search(line):
            addr = int(m.group(1), 16)
            for lab in pending:
                labels[lab] = addr
            pending = []
            insns.append((addr, bool(m.group(2)), m.group(3), m.group(4)))
    for lab in pending:  # a label after the last instruction
        labels[lab] = (insns[-1][0] + 16) if insns else 0
    return insns, labels


# (opcode prefix, bucket), first match wins; LDG is split by width below; None: total only
_BUCKETS = (("MUFU.EX2", "MUFU.EX2"), ("MUFU", "MUFU.other"), ("HGMMA", "HGMMA"), ("HMMA", "HMMA"),
            ("LDGSTS", "LDGSTS"), ("LDGDEPBAR", None), ("LDG", "LDG"), ("STG", "STG"),
            ("LDSM", "LDS"), ("LDS", "LDS"), ("STSM", "STS"), ("STS", "STS"), ("LDL", "LDL"),
            ("STL", "STL"), ("SHFL", "SHFL"), ("BAR", "BAR"))


def sass_category(op: str, operands: str):
    """The report's counting bucket of one instruction (None: only in the total)."""
    bucket = next((b for prefix, b in _BUCKETS if op.startswith(prefix)), None)
    if bucket == "LDG":
        mods = op.split(".")[1:]
        width = next((w for w in ("128", "64", "U16", "S16", "U8", "S8") if w in mods), "32")
        return "LDG." + {"U16": "16", "S16": "16", "U8": "8", "S8": "8"}.get(width, width)
    return bucket


def mma_flops(op: str) -> tuple:
    """(kind, FLOPs) of one executed MMA instruction: HGMMA per warpgroup, HMMA per warp."""
    kind = "tf32" if ".TF32" in op else "bf16" if ".BF16" in op else "fp16"
    if op.startswith("HGMMA"):
        m = re.match(r"HGMMA\.(\d+)x(\d+)x(\d+)", op)
        return kind, (2 * int(m.group(1)) * int(m.group(2)) * int(m.group(3)) if m else 0)
    m = re.match(r"HMMA\.(\d+)", op)
    shape = {"16816": (16, 8, 16), "1688": (16, 8, 8), "884": (8, 8, 4)}.get(m.group(1) if m else "")
    return kind, (2 * math.prod(shape) if shape else 0)


def analyse_sass(text: str, trips, unrollable=()) -> dict:
    """Loops, static and executed instruction counts (per warp) of one kernel.

    trips: the trip count of each runtime loop of the source, in source order; unrollable: the
    indices of those the compiler may have unrolled completely (dropped when the SASS has
    exactly that many loops fewer)."""
    insns, labels = parse_sass(text)
    # drop the padding after the last EXIT (a self-branch and NOPs)
    last_exit = max((i for i, x in enumerate(insns) if x[2].startswith("EXIT")), default=len(insns) - 1)
    body = insns[:last_exit + 1]
    loops, skipped = {}, []
    for i, (addr, pred, op, operands) in enumerate(body):
        if not op.startswith("BRA") or not (t := _TARGET.search(operands)) or t.group(1) not in labels:
            continue
        target = labels[t.group(1)]
        if target < addr:
            loops[target] = max(loops.get(target, addr), addr)
        elif op == "BRA" and not pred and target > addr:
            skipped.append((addr, target))  # [addr + 16, target) runs only on another path
    spans = sorted(loops.items())
    note = None
    if unrollable and len(spans) == len(trips) - len(unrollable):
        trips = [t for i, t in enumerate(trips) if i not in unrollable]
    if len(spans) != len(trips):
        note = f"{len(spans)} SASS loops for {len(trips)} source loops: unmatched loops counted once"
    trip_of = {s: (trips[i] if i < len(trips) else 1) for i, (s, _) in enumerate(spans)}
    static, loop_static, executed = {}, {}, {}
    mma_exec = {}
    for addr, pred, op, operands in body:
        cat = sass_category(op, operands)
        mult = 1.0
        inside = False
        for s, e in spans:
            if s <= addr <= e:
                mult *= trip_of[s]
                inside = True
        if any(a < addr < t for a, t in skipped):
            mult = 0.0
        for counts, w in ((static, 1), (executed, mult)) + (((loop_static, 1),) if inside else ()):
            counts["total"] = counts.get("total", 0) + w
            if cat:
                counts[cat] = counts.get(cat, 0) + w
        if cat in ("HGMMA", "HMMA") and mult:
            kind, fl = mma_flops(op)
            key = (cat, kind)
            mma_exec[key] = mma_exec.get(key, 0.0) + mult * fl
    return dict(static=static, loop=loop_static if spans else dict(static), executed=executed,
                loops=[dict(start=hex(s), end=hex(e), trips=trip_of[s]) for s, e in spans],
                mma_exec={f"{c}/{k}": v for (c, k), v in mma_exec.items()}, note=note)


def mma_kind(ptx: str, sass_static: dict) -> str:
    if "wgmma.mma_async" in ptx or sass_static.get("HGMMA"):
        return "wgmma"
    if "mma.sync" in ptx or sass_static.get("HMMA"):
        return "mma.sync"
    return "none"


# ------------------------------------------------------------------------------------------
# the model of the machine

def occupancy(regs: int, smem: int, num_warps: int, a: dict) -> dict:
    """Blocks (programs) resident per SM and what limits them."""
    per_warp = -(-regs * 32 // a["reg_unit"]) * a["reg_unit"]
    smem_block = -(-smem // a["smem_unit"]) * a["smem_unit"]
    limits = dict(regs=(a["regs_per_sm"] // per_warp) // num_warps if per_warp else a["max_blocks"],
                  smem=(a["smem_per_sm"] // smem_block) if smem_block else a["max_blocks"],
                  warps=a["max_warps"] // num_warps, blocks=a["max_blocks"])
    if smem_block > a["smem_per_block"]:
        limits["smem"] = 0
    blocks = min(limits.values())
    return dict(programs_per_sm=blocks, limit=min(limits, key=limits.get), warps_per_sm=blocks * num_warps)


def row_for(launch, facts: dict, a: dict, hbm_bps: float) -> dict:
    """The report row of one compiled launch."""
    ptx_path = os.path.join(facts["dir"], "kernel.ptx")
    with open(os.path.join(facts["dir"], "ptxas.log")) as f:
        ptxas = parse_ptxas(f.read())
    with open(os.path.join(facts["dir"], "sass.txt")) as f:
        sass = analyse_sass(f.read(), launch.loops_mean, launch.unrollable)
    with open(ptx_path) as f:
        ptx = f.read()
    usage = parse_usage(facts["usage"])
    regs = usage.get("REG") or ptxas["regs"] or 0
    static_smem = usage.get("SHARED", 0)
    smem = facts["shared"] + (static_smem or SMEM_RESERVED)
    nw = facts["num_warps"]
    occ = occupancy(regs, smem, nw, a)
    programs = launch.programs
    sms, clock = a["sms"], a["clock_hz"]
    warp_insns = sass["executed"].get("total", 0) * nw                  # per program
    exps = sass["executed"].get("MUFU.EX2", 0) * 32 * nw * programs
    warpgroups = max(1, nw // 4)
    flops, mma_s = {}, 0.0
    for key, fl in sass["mma_exec"].items():
        cat, kind = key.split("/")
        total = fl * (warpgroups if cat == "HGMMA" else nw) * programs
        flops[kind] = flops.get(kind, 0.0) + total
        mma_s += total / a["mma_flops"][kind]
    nbytes = launch.bytes
    t_mem, t_exp = nbytes / hbm_bps, exps / (a["mufu_per_clk"] * sms * clock)
    bound = max((("memory", t_mem), ("exp", t_exp), ("mma", mma_s)), key=lambda x: x[1])
    schedulers = min(a["schedulers"], max(1, occ["warps_per_sm"]))
    issue_s = (math.ceil(programs / sms) * warp_insns / (schedulers * clock)
               if occ["programs_per_sm"] else float("inf"))
    serial = [w for w in ptxas["warnings"] if re.search(r"C751\d|serializ", w)]
    return dict(
        regs=regs, spill_bytes=(ptxas["spill_stores"] or 0) + (ptxas["spill_loads"] or 0),
        spill_stores=ptxas["spill_stores"], spill_loads=ptxas["spill_loads"],
        stack_bytes=usage.get("STACK", ptxas["stack"]), smem_bytes=smem, smem_dynamic=facts["shared"],
        num_warps=nw, num_stages=facts["num_stages"], mma=mma_kind(ptx, sass["static"]),
        serialization_warning="; ".join(serial) or None,
        ptxas_warnings=ptxas["warnings"], grid=list(launch.grid), programs=programs,
        programs_per_sm=occ["programs_per_sm"], occupancy_limit=occ["limit"],
        warps_per_sm=occ["warps_per_sm"],
        waves=programs / (occ["programs_per_sm"] * sms) if occ["programs_per_sm"] else None,
        loop_trips=list(launch.loops), loop_trips_mean=list(launch.loops_mean),
        unrollable=list(launch.unrollable),
        sass=dict(static=sass["static"], hot_loop=sass["loop"], executed_per_warp=sass["executed"],
                  loops=sass["loops"], note=sass["note"]),
        warp_instructions_per_program=warp_insns,
        bytes=nbytes, exps=exps, mma_flops=flops, real_scores=launch.real_scores,
        computed_scores=launch.scores,
        memory_floor_us=t_mem * 1e6, exp_floor_us=t_exp * 1e6, mma_floor_us=mma_s * 1e6,
        roofline_floor_us=bound[1] * 1e6, roofline_bound=bound[0], issue_floor_us=issue_s * 1e6,
        cubin=os.path.join(facts["dir"], "kernel.cubin"), ptx=ptx_path,
        compile_s=facts.get("compile_s"))


# ------------------------------------------------------------------------------------------

def _fmt_table(rows) -> str:
    head = ("T", "dtype", "layout", "kernel", "regs", "spill st/ld", "smem KB", "warps/st",
            "mma", "serial", "programs", "prog/SM", "warps/SM", "waves", "trips",
            "EX2", "GMMA", "LDG128", "LDG<128", "LDL/STL", "SHFL", "BAR", "loop insns",
            "insns/warp", "MB", "real/comp scores", "roof us", "bound", "issue us")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['frames']} | {r['dtype']} | {r['layout']} | {r['kernel']} | FAILED: "
                         f"{r['error'][:160]} |")
            continue
        h = r["sass"]["hot_loop"]
        narrow = sum(v for k, v in h.items() if k.startswith("LDG.") and k != "LDG.128")
        cells = (r["frames"], r["dtype"], r["layout"], r["kernel"].replace("_kernel", ""), r["regs"],
                 f"{r['spill_stores']}/{r['spill_loads']}", f"{r['smem_bytes'] / 1024:.1f}",
                 f"{r['num_warps']}/{r['num_stages']}", r["mma"],
                 ",".join(re.findall(r"C75\d\d", r["serialization_warning"] or "")) or "-",
                 r["programs"], r["programs_per_sm"], r["warps_per_sm"],
                 f"{r['waves']:.2f}" if r["waves"] is not None else "-",
                 "x".join(f"{t:g}" for t in r["loop_trips_mean"]) or "-",
                 int(h.get("MUFU.EX2", 0)), int(h.get("HGMMA", 0) + h.get("HMMA", 0)),
                 int(h.get("LDG.128", 0)), int(narrow), f"{int(h.get('LDL', 0))}/{int(h.get('STL', 0))}",
                 int(h.get("SHFL", 0)), int(h.get("BAR", 0)), int(h.get("total", 0)),
                 f"{r['sass']['executed_per_warp'].get('total', 0):.0f}", f"{r['bytes'] / 1e6:.1f}",
                 f"{r['real_scores'] / r['computed_scores']:.2f}" if r["computed_scores"] else "-",
                 f"{r['roofline_floor_us']:.1f}", r["roofline_bound"], f"{r['issue_floor_us']:.1f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def summaries(rows) -> list:
    """Per (T, dtype, layout): forward, backward and op sums of the two floors."""
    out = {}
    for r in rows:
        k = (r["frames"], r["dtype"], r["layout"])
        s = out.setdefault(k, dict(frames=k[0], dtype=k[1], layout=k[2], failed=0,
                                   fwd_issue_us=0.0, bwd_issue_us=0.0, fwd_roofline_us=0.0,
                                   bwd_roofline_us=0.0, spill_bytes=0))
        if r.get("error"):
            s["failed"] += 1
            continue
        s[f"{r['phase']}_issue_us"] += r["issue_floor_us"]
        s[f"{r['phase']}_roofline_us"] += r["roofline_floor_us"]
        s["spill_bytes"] += r["spill_bytes"]
    for s in out.values():
        s["op_issue_us"] = s["fwd_issue_us"] + s["bwd_issue_us"]
        s["op_roofline_us"] = s["fwd_roofline_us"] + s["bwd_roofline_us"]
    return list(out.values())


def main(argv=None) -> int:
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("kernel_report: unset TRITON_INTERPRET (the interpreter replaces triton.jit, nothing "
              "would compile for a GPU)", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="OUT", help="write the rows (one per kernel launch) here")
    ap.add_argument("--arch", type=int, default=90, choices=sorted(ARCH))
    ap.add_argument("--frames", default="27,81,243")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--layouts", default="head_major,interleaved")
    ap.add_argument("--batch", type=int, default=42)
    ap.add_argument("--joints", type=int, default=17)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--hbm-tbs", type=float, default=None,
                    help="HBM bandwidth in TB/s (default: the arch's, 4.8 for sm_90)")
    ap.add_argument("--keep", default=os.path.join(tempfile.gettempdir(), "stcformer_kernel_report"),
                    help="folder of the compiled kernels (a cache: reruns reuse it)")
    ap.add_argument("-j", type=int, default=min(2, os.cpu_count() or 1), help="compile processes")
    args = ap.parse_args(argv)
    try:
        frames = [int(t) for t in args.frames.split(",")]
        dtypes = args.dtypes.split(",")
        layouts = args.layouts.split(",")
        assert all(d in DTYPES for d in dtypes) and all(lay in LAYOUTS for lay in layouts)
        assert all(t > 0 for t in frames) and args.channels % (2 * args.heads) == 0
    except (ValueError, AssertionError):
        print(f"kernel_report: bad --frames / --dtypes (from {DTYPES}) / --layouts (from "
              f"{tuple(LAYOUTS)}) / --channels", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import torch

    from bench.triton_variants import launches

    a = dict(ARCH[args.arch])
    hbm = (args.hbm_tbs or a["hbm_bps"] / 1e12) * 1e12
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dh = args.channels // 2 // args.heads
    os.makedirs(args.keep, exist_ok=True)

    cases = []
    for T in frames:
        for d in dtypes:
            for lay in layouts:
                for launch in launches(args.batch, T, args.joints, args.heads, dh, tdt[d], LAYOUTS[lay],
                                       has_spe=True, sm_count=a["sms"]):
                    cases.append((T, d, lay, launch))
    jobs, job_of = {}, {}
    for i, (_, _, _, launch) in enumerate(cases):
        try:
            job = _job(launch, args.arch, args.keep)
        except Exception as exc:  # arguments the kernel does not take: the row says so
            job_of[i] = f"binding: {type(exc).__name__}: {exc}"
            continue
        job_of[i] = job["dir"]
        jobs.setdefault(job["dir"], job)
    t0 = time.time()
    todo = [j for j in jobs.values() if not os.path.exists(os.path.join(j["dir"], "result.json"))]
    print(f"{len(cases)} launches, {len(jobs)} distinct kernels, {len(todo)} to compile for "
          f"sm_{args.arch} ({args.keep})", flush=True)
    facts = {}
    if args.j > 1 and len(todo) > 1:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.j, mp_context=ctx) as pool:
            for d, res in zip(jobs, pool.map(_compile_job, jobs.values())):
                facts[d] = res
    else:
        for d, job in jobs.items():
            facts[d] = _compile_job(job)
    for d, f in facts.items():
        f["dir"] = d
    rows = []
    for i, (T, d, lay, launch) in enumerate(cases):
        base = dict(kernel=launch.name, phase=launch.phase, frames=T, dtype=d, arch=args.arch,
                    layout=lay, batch=args.batch, joints=args.joints, channels=args.channels,
                    heads=args.heads, gpu=a["gpu"], constexprs={k: v for k, v in launch.constexprs.items()})
        f = facts.get(job_of[i], {"error": job_of[i]})
        if "error" in f:
            rows.append(dict(base, error=f["error"], **{k: None for k in REQUIRED_KEYS if k not in base}))
            continue
        try:
            rows.append(dict(base, error=None, **row_for(launch, f, a, hbm)))
        except Exception as exc:  # a kernel the analysis does not understand: say so in its row
            rows.append(dict(base, error=f"analysis: {type(exc).__name__}: {exc}",
                             **{k: None for k in REQUIRED_KEYS if k not in base}))
    print(f"compiled in {time.time() - t0:.0f}s\n")
    print(f"STATIC ESTIMATES from the compiled code, not GPU timings: sm_{args.arch} as an {a['gpu']} "
          f"({a['sms']} SMs, {a['clock_hz'] / 1e9:.2f} GHz, {hbm / 1e12:.2f} TB/s, MUFU "
          f"{a['mufu_per_clk']} ex2/clk/SM, {a['mma_flops']['bf16'] / 1e12:.0f} TFLOP/s bf16, "
          f"{a['mma_flops']['tf32'] / 1e12:.0f} TFLOP/s tf32); B={args.batch} J={args.joints} "
          f"C={args.channels} H={args.heads} dh={dh}.")
    print("roof us = max(bytes / HBM, exps / MUFU, MMA FLOPs / tensor rate); issue us = busiest SM's "
          "warp-instructions / (4 schedulers x clock). Hot-loop columns: static counts of the loop "
          "bodies; insns/warp: executed per warp.\n")
    print(_fmt_table(rows))
    print()
    for s in summaries(rows):
        print(f"op T={s['frames']} {s['dtype']} {s['layout']}: issue floor {s['op_issue_us']:.0f} us "
              f"(fwd {s['fwd_issue_us']:.0f} + bwd {s['bwd_issue_us']:.0f}), roofline floor "
              f"{s['op_roofline_us']:.0f} us (fwd {s['fwd_roofline_us']:.0f} + bwd "
              f"{s['bwd_roofline_us']:.0f}), spills {s['spill_bytes']} B"
              + (f", {s['failed']} launches FAILED" if s["failed"] else "") + "  [static estimate]")
    for r in rows:
        note = r.get("sass", {}).get("note") if r.get("sass") else None
        if note:
            print(f"note: {r['kernel']} T={r['frames']} {r['dtype']} {r['layout']}: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        print(f"{failed} launches failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
