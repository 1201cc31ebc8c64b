"""The one benchmark harness: inputs, variants, timing and JSON results for every entry in bench/.

Entries (each thin): ``bench_op.py`` / ``bench_model.py`` (pytest-benchmark), ``cpu_table.py``,
``cpu_bf16.py``, ``gpu_bench.py`` (tables); ``render.py`` turns their JSON into RESULTS.md.

- inputs: ``op_inputs`` (``stcformer.testing.make_inputs``, the tests' one factory),
  ``make_model``, ``train_step`` (the training step of ``python -m stcformer.train``:
  ``make_train_step`` with the official optimizer), ``infer_fn``; for the lifting entries
  (``infer_modes.py``, ``seq2seq_seams.py``) ``lifting_flags``, ``lifting_model``, ``throughput_sequence`` and
  ``p1_mm``.
- variants: ``op_variants`` gives ``reference``, ``compiled`` (torch.compile of the reference),
  ``sdpa`` (the same math with F.scaled_dot_product_attention plus F.conv2d, compiled) and every
  backend of ``stcformer.ops.dispatch.BACKENDS``; one that cannot run here is a row with the
  dispatch's reason, so a new backend (``cuda``) gets rows as soon as it can run.
- timing: ``measure`` (CPU: ``torch.utils.benchmark.Timer``, variants interleaved round-robin,
  re-measured while other processes load the CPUs; CUDA: ``triton.testing.do_bench`` medians).
- results: ``Bench`` collects rows (a failure or the time budget becomes the row's status) and
  writes them as JSON with the machine, versions, date and command.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from stcformer.ops import dispatch
from stcformer.ops import attention as ops
from stcformer.train.step import compile_model, make_optimizer, make_train_step
from stcformer.train.step import set_tf32 as _set_tf32
from stcformer.ops.reference import stc_attention_reference
from stcformer.testing import make_inputs

J, C, H = 17, 256, 8  # one STCFormer block of the released H36M model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# inputs

def op_inputs(B: int, T: int, dtype=torch.float32, device="cpu", layout="interleaved", *, C: int = C,
              H: int = H, requires_grad: bool = True, seed: int = 0) -> list:
    """``stc_attention``'s positional arguments for one block (J = 17): qkv in ``dtype`` and
    ``layout``, parameters in float32 (the autocast case), leaves that require grad."""
    return make_inputs(B, T, J, C, H, dtype=dtype, param_dtype=torch.float32, device=device,
                       layout=layout, requires_grad=requires_grad, seed=seed)


def sdpa_composition(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale):
    """The op as a user could write it without us: SDPA for both halves plus F.conv2d
    (interleaved qkv)."""
    B, T, Jn, C3 = qkv.shape
    half = C3 // 6
    dh = half // num_heads
    q, k, v = qkv.view(B, T, Jn, C3 // 3, 3).unbind(-1)

    def part(x, lo):
        return x[..., lo:lo + half].reshape(B, T, Jn, num_heads, dh)

    def conv(x, w, b):  # (B, T, J, half) -> (B, T, J, H, dh)
        y = F.conv2d(x.permute(0, 3, 1, 2), w.to(x.dtype), b.to(x.dtype), padding=1, groups=half)
        return y.permute(0, 2, 3, 1).reshape(B, T, Jn, num_heads, dh)

    def extra(spe):
        return 0 if spe is None else spe.to(qkv.dtype)[:, None, :]

    qs, ks, vs = (part(x, 0).permute(0, 1, 3, 2, 4).reshape(B * T, num_heads, Jn, dh) for x in (q, k, v))
    o_s = F.scaled_dot_product_attention(qs, ks, vs, scale=scale)
    o_s = o_s.reshape(B, T, num_heads, Jn, dh).permute(0, 1, 3, 2, 4)
    o_s = o_s + conv(v[..., :half], w_s, b_s) + extra(spe_s)
    qt, kt, vt = (part(x, half).permute(0, 2, 3, 1, 4).reshape(B * Jn, num_heads, T, dh) for x in (q, k, v))
    o_t = F.scaled_dot_product_attention(qt, kt, vt, scale=scale)
    o_t = o_t.reshape(B, Jn, num_heads, T, dh).permute(0, 3, 1, 2, 4)
    o_t = o_t + conv(v[..., half:], w_t, b_t) + extra(spe_t)
    return torch.stack([o_s, o_t], dim=-2).reshape(B, T, Jn, C3 // 3)


def make_model(backend: Optional[str] = None, device="cpu", *, layers: int = 6, d_hid: int = C,
               dtype=torch.float32, train: bool = True, recompute: bool = False, seed: int = 0):
    """STCFormer(layers, d_hid) with the same weights for every variant (seeded)."""
    from stcformer import STCFormer

    torch.manual_seed(seed)
    model = STCFormer(layers=layers, d_hid=d_hid, backend=backend).to(device=device, dtype=dtype)
    if recompute:
        model.set_recompute(True)
    return model.train(train)


def train_step(model, B: int, T: int, *, device="cpu", amp: str = "none", compile_: bool = False,
               fused_adam: bool = True, seed: int = 1, cuda_graphs: bool = False) -> Callable[[], torch.Tensor]:
    """One training step as ``python -m stcformer.train`` runs it (``make_train_step``: forward,
    seq2seq MPJPE, backward, Adam with amsgrad; fused on CUDA unless fused_adam=False), on
    fixed random (B, T, 17, 2) inputs. ``compile_``: the model under ``compile_model`` (with
    ``cuda_graphs``, replayed as CUDA graphs)."""
    dev = torch.device(device)
    model.train()
    opt = make_optimizer(model.parameters(), 1e-3, dev if fused_adam else "cpu")
    net = compile_model(model, cuda_graphs=cuda_graphs) if compile_ else model
    step = make_train_step(net, opt, amp=amp, device=dev)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, J, 2, generator=g).to(dev)
    y = (torch.randn(B, T, J, 3, generator=g) * 0.2).to(dev)
    return lambda: step(x, y)


def set_tf32(device, enabled: bool) -> None:
    _set_tf32(torch.device(device), enabled)


def infer_fn(model, B: int, T: int, *, device="cpu", dtype=torch.float32, amp: Optional[torch.dtype] = None,
             flip: bool = False) -> Callable[[], torch.Tensor]:
    """Inference of (B, T, 17, 2) inputs under inference_mode (optionally bf16 autocast and a
    second, flipped forward as in flip-averaged evaluation)."""
    dev = torch.device(device)
    x = torch.randn(B, T, J, 2, generator=torch.Generator().manual_seed(2)).to(dev, dtype)
    xf = x.flip(2)
    model.eval()

    def run():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            y = model(x)
            return (y + model(xf)) * 0.5 if flip else y
    return run


def lifting_flags(p, throughput_frames: int) -> None:
    """The flags every lifting benchmark (infer_modes.py, seq2seq_seams.py) takes."""
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-dir", required=True, help="Human3.6M-layout folder (e.g. stcformer.data.synthetic's)")
    p.add_argument("-k", "--keypoints", default="synth_det")
    p.add_argument("-f", "--frames", type=int, default=None, help="default: the checkpoint's training window")
    p.add_argument("--tds", type=int, default=None)
    p.add_argument("--throughput-frames", type=int, default=throughput_frames)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-b", "--batch-size", type=int, default=256)


def lifting_model(args) -> tuple:
    """(model in eval mode, frames, tds) of ``lifting_flags``' arguments: the checkpoint read once,
    its training window unless -f/--tds say otherwise."""
    from stcformer.model.checkpoint import load_checkpoint
    from stcformer.model.checkpoint import trained_window

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).eval()
    frames, tds = trained_window(model)
    return model, args.frames or frames, args.tds or tds


def throughput_sequence(sequences, frames: int):
    """One sequence (frames, J, 2) of the ``sequences``' keypoints, concatenated (repeated if short)."""
    import numpy as np

    kp = np.concatenate([s.keypoints for s in sequences])
    while len(kp) < frames:
        kp = np.concatenate([kp, kp])
    return np.ascontiguousarray(kp[:frames])


def p1_mm(pred, target, groups) -> tuple:
    """(P1 over frames, P1 action-averaged: the protocol's) in mm of per-frame poses (N, J, 3),
    ``groups`` (N,) each frame's action."""
    import numpy as np

    err = np.linalg.norm(pred - target, axis=-1).mean(-1) * 1000  # (N,) mm
    groups = np.asarray(groups)
    per_action = [err[groups == g].mean() for g in sorted(set(groups))]
    return float(err.mean()), float(np.mean(per_action))


# ---------------------------------------------------------------------------------------------
# variants

@dataclass
class Variant:
    name: str
    fn: Optional[Callable]   # fn(*op_args) -> out
    layout: str = "interleaved"
    reason: Optional[str] = None  # why it cannot run here (then fn is None)


def op_variants(device: str, dtype=torch.float32, *, compiled: bool = True, sdpa: bool = True) -> List[Variant]:
    """reference, compiled, sdpa, then every backend of stcformer.ops.dispatch in its preferred qkv
    layout (on CUDA also in the other layout where its kernels read both, ``<name>_<layout>``)."""
    out = [Variant("reference", stc_attention_reference)]
    if compiled:
        out.append(Variant("compiled", torch.compile(stc_attention_reference, dynamic=False)))
    if sdpa:
        out.append(Variant("sdpa", torch.compile(sdpa_composition, dynamic=False)))
    for name in dispatch.BACKENDS:
        if name == "reference":
            continue
        reason = dispatch.unavailable_reason(name, device, dtype)
        if reason is None and name == "triton" and device == "cpu":
            reason = "triton: runs under the Triton interpreter on CPU tensors (a test path, not a speed path)"
        if reason is not None:
            out.append(Variant(name, None, reason=reason))
            continue
        fn = (lambda n: lambda *a, layout="interleaved": ops.stc_attention(*a, backend=n, layout=layout))(name)
        layout = ops.preferred_layout(name, device, dtype)
        out.append(Variant(name, fn, layout))
        other = "interleaved" if layout == "head_major" else "head_major"
        if device == "cuda":  # every backend's kernels read both layouts
            out.append(Variant(f"{name}_{other}", fn, other))
    return out


def call(variant: Variant, args):
    if variant.name in ("compiled", "sdpa"):  # interleaved only
        return variant.fn(*args)
    return variant.fn(*args, layout=variant.layout)


def op_fwd_bwd(variant: Variant, B: int, T: int, dtype, device, *, backward: bool = True):
    """(fn, leaves): one forward (+ backward with a fixed gradient) of the op on fresh inputs."""
    args = op_inputs(B, T, dtype, device, variant.layout)
    leaves = [a for a in args[:7] if a is not None]
    grad = torch.randn(B, T, J, C, generator=torch.Generator().manual_seed(3)).to(device, dtype)

    if backward:
        def run():
            torch.autograd.backward(call(variant, args), grad)
    else:
        def run():
            with torch.no_grad():
                call(variant, args)
    return run, leaves


# ---------------------------------------------------------------------------------------------
# memory

def tensor_peak_bytes(fn: Callable) -> Optional[int]:
    """Peak growth of live tensor bytes while ``fn()`` runs (CPU: torch.profiler's memory events;
    what ``torch.cuda.max_memory_allocated`` measures on a GPU), without what the allocator
    keeps beyond that (freed pages it has not returned: the resident-set peak includes them).
    None when this torch's profiler gives no memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
    except AttributeError:
        return None
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak if events else None


# ---------------------------------------------------------------------------------------------
# timing

def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _cpu_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine so far (all CPUs, /proc/stat); 0 without it."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(fns: Dict[str, Callable], device="cpu", *, repeats: int = 5, warmup: int = 2,
            max_busy: float = 0.1, retries: int = 2, grads: Optional[dict] = None) -> dict:
    """{name: median ms}, plus "busy" on CPU: the share of the CPUs other processes used meanwhile.

    CPU: each callable timed by ``torch.utils.benchmark.Timer`` (torch's thread count), the
    callables interleaved round-robin ``repeats`` times so that load hits them alike; measured
    again (``retries`` times) while busy > ``max_busy``. CUDA: ``triton.testing.do_bench``
    (CUDA events, warm-up first; ``grads[name]``: tensors whose .grad is reset between runs).
    """
    if torch.device(device).type == "cuda":
        from triton.testing import do_bench
        return {k: do_bench(fn, warmup=25, rep=100, grad_to_none=(grads or {}).get(k),
                            return_mode="median") for k, fn in fns.items()}
    from torch.utils.benchmark import Timer

    timers = {k: Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()) for k, fn in fns.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(retries + 1):
        times = {k: [] for k in fns}
        t0, busy0, own0 = time.perf_counter(), _cpu_busy_seconds(), _own_cpu_seconds()
        for _ in range(repeats):
            for k, timer in timers.items():
                times[k].append(timer.timeit(1).median)
        wall = time.perf_counter() - t0
        foreign = (_cpu_busy_seconds() - busy0) - (_own_cpu_seconds() - own0)
        busy = max(0.0, foreign / (wall * (os.cpu_count() or 1)))
        if busy <= max_busy:
            break
    res = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    res["busy"] = round(busy, 3)
    return res


def time_ms(fn: Callable, device="cpu", **kw) -> float:
    return measure({"fn": fn}, device, **kw)["fn"]


# ---------------------------------------------------------------------------------------------
# results

def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


def cpu_flags_text() -> str:
    """The CPU flags that CPU figures depend on (AVX2 vs AVX-512, native bf16), space-separated."""
    from stcformer.ops import host

    return " ".join(host.summary()["flags"]) or "none of avx*/amx*/fma/f16c"


class Bench:
    """Rows of one run: ``row`` runs a case (a dict of results) and records it, its failure
    (status FAILED / OOM, the error) or SKIPPED (past the budget, or a variant that cannot run
    here, with the reason). ``save`` writes the JSON that render.py reads."""

    def __init__(self, entry: str, device: str = "cpu", budget_s: float = float("inf"), argv=None):
        self.device = device
        self.deadline = time.time() + budget_s
        self.rows: List[dict] = []
        triton_version = None
        try:
            import triton
            triton_version = triton.__version__
        except ImportError:
            pass
        self.meta = dict(entry=entry, command=" ".join(["python", "-m", "bench." + entry.removesuffix(".py")] + list(
            sys.argv[1:] if argv is None else argv)), date=time.strftime("%Y-%m-%d %H:%M"),
            machine=machine(), device=device, torch=torch.__version__, triton=triton_version)
        if device == "cpu":  # CPU figures depend on these (AVX2 vs AVX-512, native bf16)
            from stcformer.ops import host

            self.meta["cpu_flags"] = cpu_flags_text()
            self.meta["aten_capability"] = host.summary()["aten_capability"]

    def skip(self, section: str, case: str, variant: str, reason: str) -> dict:
        return self._record(dict(section=section, case=case, variant=variant, status="SKIPPED", reason=reason))

    def row(self, section: str, case: str, variant: str, fn: Callable[[], dict], **extra) -> dict:
        rec = dict(section=section, case=case, variant=variant, **extra)
        if time.time() > self.deadline:
            rec.update(status="SKIPPED", reason="past the time budget")
            return self._record(rec)
        t0 = time.time()
        try:
            rec.update(fn())
            rec["status"] = "ok"
        except torch.cuda.OutOfMemoryError:
            rec["status"] = "OOM"
        except Exception as exc:  # one broken row must not hide the rest
            rec["status"] = "FAILED"
            rec["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            traceback.print_exc()
        rec["wall_s"] = round(time.time() - t0, 1)
        if self.device == "cuda":
            torch.cuda.empty_cache()
        return self._record(rec)

    def _record(self, rec: dict) -> dict:
        print(f"[{rec['status']}] {rec['section']} {rec['case']} {rec['variant']}: "
              + ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("section", "case", "variant", "status")),
              flush=True)
        self.rows.append(rec)
        return rec

    def ok(self) -> bool:
        return all(r["status"] in ("ok", "SKIPPED") for r in self.rows)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(dict(meta=self.meta, rows=self.rows), indent=1))
        os.replace(tmp, path)
        print(f"results: {path}", flush=True)
        return path
