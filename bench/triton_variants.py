"""The kernel launches of the ``triton`` backend for one problem shape, as data.

``launches(B, T, J, num_heads, dh, dtype, head_major, has_spe)`` lists, in launch order, every
Triton kernel launch of one forward and one backward of ``stc_attention`` as
``stcformer/ops/backends/triton.py`` makes them: the kernel, its grid, its positional arguments
(tensors as ``TensorArg`` placeholders with the launcher's dtypes, shapes and strides), the
keyword constexprs, num_warps / num_stages, and the trip counts of the kernel's runtime loops.
The launches are taken from the launcher itself (its code run on meta tensors, no kernel
launched), so they cannot drift from it; ``ANNOTATIONS`` holds what its arguments cannot say.

``Launch.compile_spec(arch)`` turns a launch into what ``triton.compile`` needs for a GPU target
(signature, constexprs, specialisation attributes), with Triton's own argument binder, so a
compile here specialises exactly as a launch on a GPU would (16-byte aligned pointers, strides
divisible by 16). Nothing here needs a GPU or compiles anything.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, Optional, Tuple

import torch
from triton.runtime.jit import MockTensor

TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class TensorArg(MockTensor):
    """A tensor argument of a launch: role (the launcher's variable name), dtype, shape,
    contiguous strides, and ``touched``: the fraction of its bytes the kernel must move
    (activations: the one half of the channels a kernel works on)."""

    def __init__(self, role: str, dtype: torch.dtype, shape, touched: float = 1.0, strides=None):
        super().__init__(dtype, list(shape))
        self.role = role
        self.touched = touched
        self.strides = tuple(strides) if strides is not None else _strides(shape)

    def stride(self):
        return self.strides

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()

    def __repr__(self):
        return f"TensorArg({self.role}, {self.dtype}, {tuple(self.shape)})"


@dataclasses.dataclass(frozen=True)
class Launch:
    """One kernel launch. ``loops``: trip count of each runtime loop of the kernel in source
    order for the busiest program (``loops_mean``: averaged over programs). ``scores``: attention
    scores the launch computes, padding included; ``real_scores``: those of the problem
    (J x J per frame, T x T per joint), counted once even where a kernel computes them twice."""
    kernel: Any
    phase: str                      # "fwd" or "bwd"
    grid: Tuple[int, ...]
    args: Tuple[Any, ...]
    constexprs: dict
    num_warps: int
    num_stages: Optional[int]       # None: Triton's default
    loops: Tuple[int, ...] = ()
    loops_mean: Tuple[float, ...] = ()
    unrollable: Tuple[int, ...] = ()   # indices of loops the compiler may unroll completely
    scores: int = 0
    real_scores: int = 0

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__

    @property
    def programs(self) -> int:
        return math.prod(self.grid)

    @property
    def tensor_args(self):
        seen, out = set(), []
        for a in self.args:
            if isinstance(a, TensorArg) and id(a) not in seen:
                seen.add(id(a))
                out.append(a)
        return out

    @property
    def bytes(self) -> int:
        """Compulsory global bytes: each distinct tensor argument's touched bytes, once."""
        return int(sum(a.nbytes * a.touched for a in self.tensor_args))

    @property
    def signature(self) -> dict:
        """Triton's signature of the launch (argument name -> "*bf16", "i32", "constexpr", ...)."""
        return self.compile_spec(90)[0]

    def options(self) -> dict:
        opts = {"num_warps": self.num_warps}
        if self.num_stages is not None:
            opts["num_stages"] = self.num_stages
        return opts

    def compile_spec(self, arch: int):
        """(signature, constexprs, attrs, options) for ``triton.compile(ASTSource(...))`` on
        ``GPUTarget("cuda", arch, 32)``, bound as Triton's launcher binds the arguments."""
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature

        kernel = self.kernel
        backend = make_backend(GPUTarget("cuda", arch, 32))
        binder = create_function_from_signature(kernel.signature, kernel.params, backend)
        kwargs = dict(self.constexprs, **self.options())
        bound, specialization, opts = binder(*self.args, **kwargs)
        _, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, opts)
        return signature, constexprs, attrs, self.options()


def _strides(shape) -> Tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# What the launcher's argument lists cannot say: per kernel, the trip counts of its runtime loops
# (source order; busiest program, mean over programs), the scores it computes and the problem's
# real scores, and the fraction of each tensor argument it must move (default: one half of the
# channels of a (B, T, J, ...) activation, all of anything else). ``k``: constexprs and scalar
# arguments by name, ``n``: programs, ``p``: (B, T, J, H).
# The 3x3 conv's tap loop (``common.conv3x3`` with IN_ORDER, 9 trips) is unrolled by the
# compiler in most kernels and kept in some: it is listed as ``unrollable``.
TAPS = 9


def _spatial_fwd(k, n, p):
    B, T, J, H = p
    return dict(loops=(TAPS,), unrollable=(0,), scores=n * k["FRAMES"] * k["JP"] ** 2,
                real_scores=B * H * T * J * J)


def _temporal_fwd(k, n, p):
    B, T, J, H = p
    trips = _cdiv(T, k["BLOCK_N"])
    return dict(loops=(trips, TAPS), unrollable=(1,),
                scores=n * k["NB"] ** 2 * k["BLOCK_M"] * k["BLOCK_N"] * trips,
                real_scores=B * H * J * T * T)


def _spatial_bwd(k, n, p):
    B, T, J, H = p
    groups = _cdiv(T, k["FRAMES"])
    # the adjoint conv's tap loop sits inside the frame-group loop
    return dict(loops=(_cdiv(groups, k["NSPLIT"]), TAPS), loops_mean=(groups / k["NSPLIT"], TAPS),
                unrollable=(1,),
                scores=(n // k["NSPLIT"]) * groups * k["FRAMES"] * k["JP"] ** 2,
                real_scores=B * H * T * J * J)


def _temporal_bwd_row(k, n, p):
    B, T, J, H = p
    trips = _cdiv(T, k["BLOCK_M"])
    return dict(loops=(trips,), scores=n * k["NB"] ** 2 * k["BLOCK_M"] * trips * k["BLOCK_N"],
                real_scores=B * H * J * T * T)


def _temporal_bwd_delta(k, n, p):
    return dict(loops=(TAPS,), unrollable=(0,), touched={"qkv_ptr": 1 / 6})  # v of one half


def _temporal_bwd(k, n, p):
    B, T, J, H = p
    trips = _cdiv(T, k["BLOCK"])
    # each score is computed twice: with the program's frames as keys, then as queries
    return dict(loops=(trips, TAPS, trips), unrollable=(1,), scores=2 * n * (k["NB"] * k["BLOCK"]) ** 2 * trips,
                real_scores=B * H * J * T * T)


def _conv_grad(k, n, p):
    B, T, J, H = p
    F, chunks = k["R"] // J, k["NCHUNK"]  # whole frames per tile
    per = _cdiv(_cdiv(T, F), chunks) * F
    trips = [max(0, _cdiv(min(T, (c + 1) * per) - c * per, F)) for c in range(chunks)]
    return dict(loops=(max(trips),), loops_mean=(sum(trips) / chunks,),
                touched={"qkv_ptr": 1 / 3, "do_ptr": 1.0})  # v of both halves, all of grad_out


def _conv_grad_reduce(k, n, p):
    B, T, J, H = p
    heads, rows = 2 * H, n - 2 * H  # programs < 2H take the first loop, the others the second
    t1, t2 = _cdiv(B * k["NCHUNK"], k["PB"]), _cdiv(B * H * k["NCHUNK"], k["QB"])
    t3 = _cdiv(k["R"], J)  # the tile rows of one joint, inside the second loop
    return dict(loops=(t1, t2, t3), loops_mean=(t1 * heads / n, t2 * rows / n, t3))


ANNOTATIONS = {
    "spatial_fwd_kernel": _spatial_fwd, "temporal_fwd_kernel": _temporal_fwd,
    "spatial_bwd_kernel": _spatial_bwd, "temporal_bwd_row_kernel": _temporal_bwd_row,
    "temporal_bwd_delta_kernel": _temporal_bwd_delta, "temporal_bwd_kernel": _temporal_bwd,
    "conv_grad_kernel": _conv_grad, "conv_grad_reduce_kernel": _conv_grad_reduce,
}

_record_lock = threading.Lock()


class _Recorder:
    """Stands in for ``wrap_triton``: ``rec(kernel)[grid](*args, **kwargs)`` records the launch."""

    def __init__(self):
        self.calls = []
        self.phase = None

    def __call__(self, kernel):
        def launch(grid):
            def run(*args, **kwargs):
                self.calls.append((self.phase, kernel, tuple(grid), args, kwargs))
            return run
        return _Getitem(launch)


class _Getitem:
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        return self.fn(grid)


def launches(B: int, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype,
             head_major: bool, has_spe: bool = True, sm_count: int = 132,
             param_dtype: Optional[torch.dtype] = torch.float32, profile: str = "gpu",
             phases=("fwd", "bwd")) -> list:
    """The launches of one forward and one backward (``phases``) for contiguous inputs.

    Runs the launcher's own code (``stc_attention_triton_fwd`` / ``_bwd``) on meta tensors with
    ``wrap_triton`` replaced by a recorder, so kernels, grids, arguments and launch options are
    exactly the launcher's, whatever its kernels are; ``ANNOTATIONS`` adds what the arguments
    cannot say (loop trips, scores). ``param_dtype``: dtype of w, b and spe (float32 under
    autocast; None: the activations'). ``has_spe``: whether spe_s and spe_t are passed (the H36M
    model passes both). ``sm_count``: the GPU's SMs (the launcher sizes persistent grids by it).
    """
    H = num_heads
    rec = _record_calls(B, T, J, H, dh, dtype, head_major, has_spe, sm_count, param_dtype, profile, phases)
    return [_launch(phase, kernel, grid, args, kwargs, (B, T, J, H))
            for phase, kernel, grid, args, kwargs in rec.calls if phase in phases]


def _meta_inputs(B: int, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype,
                 pdt: torch.dtype, has_spe: bool) -> tuple:
    """``(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, scale)`` as contiguous meta tensors."""
    C = 2 * num_heads * dh
    half = C // 2
    meta = dict(device="meta")
    qkv = torch.empty((B, T, J, 3 * C), dtype=dtype, **meta)
    w_s, w_t = (torch.empty((half, 1, 3, 3), dtype=pdt, **meta) for _ in range(2))
    b_s, b_t = (torch.empty((half,), dtype=pdt, **meta) for _ in range(2))
    spe_s, spe_t = ((torch.empty((J, dh), dtype=pdt, **meta) for _ in range(2)) if has_spe
                    else (None, None))
    return qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, float(half) ** -0.5


def _record_calls(B, T, J, H, dh, dtype, head_major, has_spe, sm_count, param_dtype, profile,
                  phases) -> "_Recorder":
    """Run the launcher's forward (and backward) bodies on meta tensors, recording its launches."""
    from stcformer.ops.backends import triton as tb

    qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, scale = _meta_inputs(B, T, J, H, dh, dtype,
                                                                param_dtype or dtype, has_spe)
    rec = _Recorder()
    with _record_lock:
        saved_wrap, saved_config = tb.wrap_triton, getattr(tb, "_config", None)
        tb.wrap_triton = rec
        if saved_config is not None:  # the launcher would size grids for the GPU at hand
            tb._config = lambda *a, **k: tb.Config(B, T, J, H, dh, dtype, profile=profile,
                                                   sm_count=sm_count, head_major=head_major)
        try:
            rec.phase = "fwd"
            out, lse_s, lse_t = tb.stc_attention_triton_fwd._init_fn(
                qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale, head_major)
            if "bwd" in phases:
                rec.phase = "bwd"
                tb.stc_attention_triton_bwd._init_fn(
                    torch.empty_like(out), qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, out, lse_s,
                    lse_t, H, scale, head_major)
        finally:
            tb.wrap_triton = saved_wrap
            if saved_config is not None:
                tb._config = saved_config
    return rec


def _launch(phase: str, kernel, grid, args, kwargs, shape: tuple) -> "Launch":
    """One recorded launch as a :class:`Launch`: tensors as ``TensorArg`` placeholders (one per
    distinct tensor), ``ANNOTATIONS``' loop trips and scores added."""
    B, T, J, _ = shape
    names = kernel.arg_names
    by_name = dict(zip(names, args))
    constexprs = {k: v for k, v in kwargs.items() if k not in ("num_warps", "num_stages")}
    n = math.prod(grid)
    note = ANNOTATIONS.get(kernel.fn.__name__, lambda *_: {})({**by_name, **constexprs}, n, shape)
    touched = note.get("touched", {})
    placeholders, conv = {}, []
    for name, a in zip(names, args):
        if isinstance(a, torch.Tensor):
            if id(a) not in placeholders:
                act = tuple(a.shape[:3]) == (B, T, J)
                placeholders[id(a)] = TensorArg(name, a.dtype, a.shape,
                                                touched=touched.get(name, 0.5 if act else 1.0),
                                                strides=a.stride())
            conv.append(placeholders[id(a)])
        else:
            conv.append(a)
    loops = tuple(note.get("loops", ()))
    return Launch(
        kernel, phase, grid, tuple(conv), constexprs, kwargs.get("num_warps", 4),
        kwargs.get("num_stages"), loops=loops, loops_mean=tuple(note.get("loops_mean", loops)),
        unrollable=tuple(note.get("unrollable", ())),
        scores=note.get("scores", 0), real_scores=note.get("real_scores", 0))
