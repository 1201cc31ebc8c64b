"""The package's public testing module (as ``torch.testing``): one harness for every
``stc_attention`` backend (reference, cpp, triton, cuda), used by tests/ and bench/ and by anyone
adding a backend. It is a test kit, not a runtime path: it replaces ``torch.empty`` and flips c10's
junk-fill flag through ctypes while a backend runs (``poisoned_allocations``), so nothing of the
library imports it.

    from stcformer.testing import make_inputs, check_backend

    check_backend("cpp", (B, T, J, C, H), torch.float32)                  # forward + every gradient
    check_backend("triton", (1, 27, 17, 64, 8), torch.float16, layout="head_major",
                  memory="sliced", param_dtype=torch.float32, device=dev, lse=True)
    args = make_inputs(B, T, J, C, H, dtype=torch.bfloat16)               # positional op arguments
    check_inputs("cpp", args)                                              # the same, on given inputs

``make_inputs`` is the one input factory: ``[qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale]``
(``stc_attention(*args)``), drawn in float64 from a seeded generator and then rounded, so every
dtype sees the same values. ``check_inputs`` runs the backend through the public op (or its raw
forward op with ``lse=True``), then the float64 reference on the same rounded values, and compares
the output, the row log-sum-exp (optional) and the gradient of every tensor input.

Error measure: max |got - want| / max |want| per tensor, after checking that NaN and inf sit
exactly where the reference has them (so an unwritten element, poisoned with NaN, fails).
Tolerance: by dtype (``BASE_RTOL``), the larger of the input's and the tensor's own dtype (a
bf16 bias gradient of a float32 op), widened by sqrt(L / FREE_LENGTH) where the tensor's longest
reduction L (frames or joints for the output and grad qkv, B*T*J for conv weights and biases,
B*T for spe) exceeds FREE_LENGTH: float32 rounding of an L-term sum grows like sqrt(L).
Allocations are poisoned during the backend's run (``poisoned_allocations``): Python-level
``torch.empty`` returns NaN-filled tensors (the triton launcher), and on CPU c10's junk fill
makes C++ allocations (the cpp kernels) NaN-filled, so every element must be written.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
from typing import Callable, Dict, Optional, Sequence

import torch

from stcformer.ops.attention import stc_attention
from stcformer.ops.reference import head_major_index, split_qkv, stc_attention_reference

NAMES = ("qkv", "w_s", "b_s", "w_t", "b_t", "spe_s", "spe_t")
MEMORY = ("contiguous", "transposed", "sliced")
BASE_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
FREE_LENGTH = 4096


# ---------------------------------------------------------------------------------------------
# inputs

def strided_copy(t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A new tensor (a leaf) with t's values, shape and strides, optionally in another dtype."""
    out = torch.empty_strided(t.shape, t.stride(), dtype=dtype or t.dtype, device=t.device)
    with torch.no_grad():
        out.copy_(t.detach())
    return out


def _in_memory(x: torch.Tensor, memory: str) -> torch.Tensor:
    """x (B, T, J, 3C) with the strides of ``memory``: contiguous; transposed (the strides of a
    (B, J, T, 3C) tensor); sliced (padded rows and channels: no stride is the contiguous one)."""
    if memory == "contiguous":
        return x.contiguous()
    if memory == "transposed":
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    if memory == "sliced":
        B, T, J, C3 = x.shape
        pad = torch.zeros(B + 1, T, J + 2, C3 + 5, dtype=x.dtype, device=x.device)
        pad[1:, :, 1:J + 1, 2:C3 + 2] = x
        return strided_copy(pad[1:, :, 1:J + 1, 2:C3 + 2])
    raise ValueError(f"memory must be one of {MEMORY}, got {memory!r}")


def make_inputs(B: int, T: int, J: int, C: int, H: int, *, dtype=torch.float32, param_dtype=None,
                layout: str = "interleaved", spe: bool = True, device="cpu", requires_grad: bool = False,
                memory: str = "contiguous", seed: int = 0, scale: Optional[float] = None,
                qkv_std: float = 1.0) -> list:
    """The op's positional arguments ``[qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale]``.

    qkv (B, T, J, 3C) in ``dtype`` with ``qkv_std``, in ``layout`` (the same values as the
    interleaved draw, permuted with ``head_major_index``) and with the strides of ``memory``;
    conv weights (std 0.3), biases and spe (std 0.1) in ``param_dtype`` (default: ``dtype``;
    float32 with 16-bit qkv is the autocast case). ``scale`` default (C/2)^-1/2. H need not
    divide C/2 (for argument-check tests: spe then gets dh = 1). ``requires_grad`` makes every
    tensor a leaf that requires grad (qkv keeps its strides).
    """
    g = torch.Generator().manual_seed(seed)
    half = C // 2
    dh = half // H if H > 0 and half % H == 0 else 1
    pdt = param_dtype or dtype

    def r(*shape, std=1.0, dt=pdt):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(device=device, dtype=dt)

    qkv = r(B, T, J, 3 * C, std=qkv_std, dt=dtype)
    if layout == "head_major":
        qkv = qkv[..., head_major_index(C, H, device)]
    elif layout != "interleaved":
        raise ValueError(f"layout must be interleaved or head_major, got {layout!r}")
    qkv = _in_memory(qkv, memory)
    params = [r(half, 1, 3, 3, std=0.3), r(half, std=0.1), r(half, 1, 3, 3, std=0.3), r(half, std=0.1)]
    spes = [r(J, dh, std=0.1), r(J, dh, std=0.1)] if spe else [None, None]
    tensors = [qkv, *params, *spes]
    if requires_grad:
        tensors = [t if t is None else t.requires_grad_(True) for t in tensors]
    return tensors + [H, scale if scale is not None else (half ** -0.5 if half else 1.0)]


# ---------------------------------------------------------------------------------------------
# comparison

def tolerance(dtype: torch.dtype, length: int = 1, own_dtype: Optional[torch.dtype] = None) -> float:
    """Max error relative to the tensor's max magnitude for an op in ``dtype`` whose tensor (of
    ``own_dtype``) comes from reductions of ``length`` terms."""
    base = max(BASE_RTOL[dtype], BASE_RTOL.get(own_dtype, 0.0))
    return base * max(1.0, math.sqrt(length / FREE_LENGTH))


def reduction_lengths(B: int, T: int, J: int) -> Dict[str, int]:
    """The longest reduction behind each compared tensor (see ``tolerance``)."""
    rows = max(T, J) + 9
    return dict(out=rows, lse=rows, qkv=rows, w_s=B * T * J, b_s=B * T * J, w_t=B * T * J,
                b_t=B * T * J, spe_s=B * T, spe_t=B * T)


def rel_err(got: torch.Tensor, want: torch.Tensor):
    """max |got - want| / max |want| over finite entries (float), or why they cannot be compared
    (str): shapes differ, or NaN / inf entries are not where the reference has them."""
    got, want = got.detach().to(torch.float64), want.detach().to(torch.float64)
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    if not torch.equal(got.isnan(), want.isnan()):
        return f"NaN at {int(got.isnan().sum())} places, reference {int(want.isnan().sum())}"
    if not torch.equal(torch.where(got.isinf(), got, 0), torch.where(want.isinf(), want, 0)):
        return "inf entries differ from the reference"
    fin = want.isfinite()
    if not fin.any():
        return 0.0
    mag = want[fin].abs().max().item() + 1e-30
    return (got[fin] - want[fin]).abs().max().item() / mag


def assert_close(got: torch.Tensor, want: torch.Tensor, rtol: float, name: str) -> float:
    err = rel_err(got, want)
    assert not isinstance(err, str), f"{name}: {err}"
    assert err <= rtol, f"{name}: max rel err {err:.3g} > {rtol:.3g}"
    return err


def reference_lse(qkv: torch.Tensor, num_heads: int, scale: float, layout: str = "interleaved"):
    """(B, H, T, J) and (B, H, J, T) row log-sum-exp of the reference's scores, in float64."""
    (q_s, k_s, _), (q_t, k_t, _) = split_qkv(qkv.double(), num_heads, layout)
    lse_s = (torch.einsum("btihd,btjhd->bhtij", q_s, k_s) * scale).logsumexp(-1)
    lse_t = (torch.einsum("bujhd,bwjhd->bhjuw", q_t, k_t) * scale).logsumexp(-1)
    return lse_s, lse_t


# ---------------------------------------------------------------------------------------------
# poisoned allocations

@contextlib.contextmanager
def poisoned_allocations():
    """Inside: ``torch.empty`` gives NaN-filled floating tensors, and (CPU) c10's junk fill
    makes every C++ allocation NaN-filled (float32 / float64), so an unwritten element shows."""
    real_empty = torch.empty

    def nan_empty(*size, **kwargs):
        t = real_empty(*size, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    flag = _junk_fill_flag()
    old = flag.value if flag is not None else None
    torch.empty = nan_empty
    if flag is not None:
        flag.value = True
    try:
        yield
    finally:
        torch.empty = real_empty
        if flag is not None:
            flag.value = old


_JUNK = []


def _junk_fill_flag():
    """c10's FLAGS_caffe2_cpu_allocator_do_junk_fill, or None where libc10 does not export it."""
    if not _JUNK:
        try:
            lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so"))
            _JUNK.append(ctypes.c_bool.in_dll(lib, "FLAGS_caffe2_cpu_allocator_do_junk_fill"))
        except (OSError, ValueError):
            _JUNK.append(None)
    return _JUNK[0]


# ---------------------------------------------------------------------------------------------
# running a backend

def raw_forward(backend: str) -> Callable:
    """fn(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale, layout) -> (out, lse_s, lse_t) through
    the backend's registered forward op (differentiable: its backward op is registered)."""
    if backend == "triton":
        import stcformer.ops.backends.triton  # noqa: F401  (registers the ops)

        return lambda *a, layout: torch.ops.stcformer.stc_attention_triton_fwd(*a, layout == "head_major")
    if backend in ("cpp", "cuda"):
        import stcformer.ops.backends.extension  # noqa: F401

        return lambda *a, layout: torch.ops.stcformer.stc_attention_fwd(*a, layout == "head_major")
    raise ValueError(f"{backend}: no raw forward op (it returns no log-sum-exp)")


def check_inputs(backend: str, args: Sequence, *, layout: str = "interleaved", rtol: Optional[float] = None,
                 lse: bool = False, view: Optional[Callable] = None, poison: bool = True,
                 grad_seed: int = 1) -> Dict[str, float]:
    """Forward, (lse) and every gradient of ``backend`` on ``args`` against the float64 reference.

    args: ``make_inputs``'s list (tensors keep their dtype and strides; a non-leaf qkv is copied).
    view: the op sees ``view(args[0])`` (e.g. an expanded batch); gradients go to args[0].
    rtol: one tolerance for every tensor instead of ``tolerance``. Returns {name: error}.
    """
    qkv, H, scale = args[0], args[7], args[8]
    tensors = list(args[:7])
    view = view or (lambda t: t)
    used = [i for i, t in enumerate(tensors) if t is not None]
    leaves = [None if t is None else strided_copy(t).requires_grad_(True) for t in tensors]
    leaves64 = [None if t is None else strided_copy(t, torch.float64).requires_grad_(True) for t in tensors]
    with poisoned_allocations() if poison else contextlib.nullcontext():
        if lse:
            out, lse_s, lse_t = raw_forward(backend)(view(leaves[0]), *leaves[1:], H, scale, layout=layout)
        else:
            out = stc_attention(view(leaves[0]), *leaves[1:], H, scale, backend=backend, layout=layout)
        gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
        got = torch.autograd.grad(out, [leaves[i] for i in used], gout.to(out.device, out.dtype))
    want = stc_attention_reference(view(leaves64[0]), *leaves64[1:], H, scale, layout=layout)
    ref = torch.autograd.grad(want, [leaves64[i] for i in used], gout.to(want.device))

    B, T, J = want.shape[:3]
    length = reduction_lengths(B, T, J)
    tol = (lambda name, t: rtol) if rtol is not None else (
        lambda name, t: tolerance(qkv.dtype, length[name], t.dtype))
    assert out.dtype == qkv.dtype, f"out: dtype {out.dtype}, input {qkv.dtype}"
    errs = {"out": assert_close(out, want, tol("out", out), "out")}
    if lse:
        for name, got_l, want_l in zip(("lse_s", "lse_t"), (lse_s, lse_t),
                                       reference_lse(view(leaves64[0]), H, scale, layout)):
            errs[name] = assert_close(got_l, want_l, tol("lse", got_l), name)
    for i, g, r in zip(used, got, ref):
        name = NAMES[i]
        assert g.dtype == tensors[i].dtype and g.shape == tensors[i].shape, \
            f"grad {name}: {g.dtype} {tuple(g.shape)}, input {tensors[i].dtype} {tuple(tensors[i].shape)}"
        errs[name] = assert_close(g, r, tol(name, g), "grad " + name)
    return errs


def check_backend(backend: str, shape: Sequence[int], dtype=torch.float32, *, layout: str = "interleaved",
                  rtol: Optional[float] = None, lse: bool = False, poison: bool = True,
                  **input_kwargs) -> Dict[str, float]:
    """``check_inputs`` on ``make_inputs(*shape, dtype=dtype, layout=layout, **input_kwargs)``;
    shape = (B, T, J, C, H). input_kwargs: spe, memory, param_dtype, device, seed, scale, qkv_std."""
    args = make_inputs(*shape, dtype=dtype, layout=layout, **input_kwargs)
    return check_inputs(backend, args, layout=layout, rtol=rtol, lse=lse, poison=poison)


def gradcheck_backend(backend: str, shape: Sequence[int] = (1, 4, 5, 16, 2), *, spe: bool = True,
                      layout: str = "interleaved", seed: int = 0, **gradcheck_kwargs) -> bool:
    """``torch.autograd.gradcheck`` of the public op on ``backend`` in float64 (tiny shapes)."""
    args = make_inputs(*shape, dtype=torch.float64, layout=layout, spe=spe, seed=seed, requires_grad=True)
    tensors = [t for t in args[:7] if t is not None]
    present = [t is not None for t in args[:7]]
    H, scale = args[7], args[8]

    def f(*ts):
        it = iter(ts)
        full = [next(it) if p else None for p in present]
        return stc_attention(*full, H, scale, backend=backend, layout=layout)

    return torch.autograd.gradcheck(f, tensors, **gradcheck_kwargs)


def check_compile_fullgraph(fn: Callable, device="cpu", compile_backend: str = "inductor",
                            shape: Sequence[int] = (1, 5, 17, 16, 2), rtol: float = 1e-5) -> None:
    """``torch.compile(block, fullgraph=True)`` (no graph break) matches eager, forward and every
    gradient; block = fn(qkv * 1.5, ...).sin() (the op between other ops). fn takes the op's
    positional arguments."""
    torch._dynamo.reset()
    args = make_inputs(*shape, device=device, seed=4)
    tensors, H, scale = list(args[:7]), args[7], args[8]

    def block(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t):
        return fn(qkv * 1.5, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale).sin()

    compiled = torch.compile(block, fullgraph=True, backend=compile_backend)
    leaves = [strided_copy(t).requires_grad_(True) for t in tensors]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    eager = [strided_copy(t).requires_grad_(True) for t in tensors]
    want = block(*eager)
    want_grads = torch.autograd.grad(want.sum(), eager)
    assert_close(out, want, rtol, "compiled out")
    for name, a, b in zip(NAMES, grads, want_grads):
        assert_close(a, b, rtol, "compiled grad " + name)
