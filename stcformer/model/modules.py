"""STCFormer modules with the official parameter names.

``STCFormer(family="h36m")`` has exactly the module tree of the official Human3.6M model, so an
official state_dict loads strictly. The MPI-INF-3DHP model is a configuration of the same
classes (4 heads, scale C^-1/2, a 20-row embedding with padding_idx 0, the unused
``layer_norm2``); its official key names are mapped in :mod:`stcformer.model.official`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from stcformer import settings
from stcformer.choices import Recompute
from stcformer.errors import UsageError
from stcformer.model.official import to_official_key
from stcformer.ops import dispatch
from stcformer.ops.mlp import fused as fused_mlp
from stcformer.ops.attention import head_major_index, resolve

# body part of each joint, indexing the SPE embedding (official-reference A.1 step 7 and A.2)
H36M_PARTS = (0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 4, 4, 4)
MPI3DHP_PARTS = (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 0, 0, 0)

FAMILIES = {
    # heads, embedding rows, padding_idx, spatial SPE coef of the released weights, temporal coef
    # the attention scale's width: (C / scale_div)^-1/2; mixer_names: the released weights use the
    # 3DHP names (mlpmixer.mixerblocks..., cross_att, layer_norm1) and keep an unused layer_norm2 per block
    "h36m": dict(num_heads=8, emb_rows=5, padding_idx=None, spe_coef=1e-3, spe_t_coef=1e-9, parts=H36M_PARTS,
                 scale_div=2, mixer_names=False),
    "3dhp": dict(num_heads=4, emb_rows=20, padding_idx=0, spe_coef=1e-4, spe_t_coef=None, parts=MPI3DHP_PARTS,
                 scale_div=1, mixer_names=True),
}

class DropPath(nn.Module):
    """Stochastic depth on a whole tensor: one draw per call (the SPE terms have batch dim 1)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = (torch.rand((), device=x.device) < keep).to(x.dtype)
        return x * (mask / keep)


def _chunked_cpu_ok(weight: Tensor) -> bool:
    """float32 on a CPU that runs stcformer._C: the chunked CPU paths apply (outside autocast)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32
            and dispatch.fused_mlp_reason("cpu") is None)


class _Setting:
    """A module setting (kept as ``_<name>``) whose change makes the module plan again."""

    def __init__(self, convert: Callable = bool):
        self.convert = convert

    def __set_name__(self, owner, name: str) -> None:
        self.attr = "_" + name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj, value) -> None:
        setattr(obj, self.attr, self.convert(value))
        obj.plan()


class _Planned(nn.Module):
    """A module whose execution path is chosen from its settings and its parameters' device
    and dtype: at construction, on every ``.to()`` / ``.cuda()`` / ``.float()`` (``_apply``)
    and when a setting changes; ``forward`` only runs what ``plan`` chose."""

    def plan(self) -> None:
        raise NotImplementedError

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.plan()
        return self


class Mlp(_Planned):
    """fc1 -> GELU -> dropout -> fc2 -> dropout (the official MLP).

    Training in float32 on a CPU that runs stcformer._C goes through ``fused_mlp.mlp``: GELU
    and dropout fused, masks drawn from a counter-based hash instead of stored (the same keep
    probability, other random draws than nn.Dropout). Inside an STCBlock the block runs
    ``fused_mlp.residual_mlp`` instead (LayerNorm, MLP and residual in row chunks; see
    :meth:`residual`). ``fused=False`` keeps the plain modules everywhere. ``onednn=True``
    runs the MLP through ``fused_mlp.mlp`` with its GEMMs on oneDNN (training and evaluation)
    wherever the block's chunked path does not take it. ``recompute``: the fused paths keep
    only their input and recompute fc1 in the backward (less memory, one GEMM more).
    """

    def __init__(self, dim: int, hidden: int, drop: float, fused: bool = True, onednn: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.drop = nn.Dropout(drop)
        self._fused, self._onednn = fused, onednn
        self.recompute = False
        self.plan()

    fused = _Setting()
    onednn = _Setting()

    def plan(self) -> None:
        self._chunked = self._fused and _chunked_cpu_ok(self.fc1.weight)

    def _runs_chunked(self) -> bool:
        # autocast is a context around the call, not a setting of the module: read here, per call
        return self._chunked and not torch.is_autocast_enabled("cpu")

    def forward(self, x: Tensor) -> Tensor:
        if self._onednn:
            return fused_mlp.mlp(x, self.fc1.weight, self.fc2.weight, self.drop.p, self.training,
                                 self.fc1.bias, self.fc2.bias, self.recompute)
        if self.training and self.drop.p > 0 and self._runs_chunked():
            # GEMMs through F.linear (MKL): the same bits eager and under torch.compile
            return fused_mlp.mlp(x, self.fc1.weight, self.fc2.weight, self.drop.p, True,
                                 recompute=self.recompute, onednn=False)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def residual(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        """``x + self(norm(x))``; on the chunked path LayerNorm, MLP and residual in row chunks
        (cache-resident hidden, the LayerNorm output recomputed in the backward instead of kept)."""
        if self._runs_chunked():
            return fused_mlp.residual_mlp(x, norm, self.fc1.weight, self.fc2.weight, self.drop.p,
                                          self.training, self.fc1.bias, self.fc2.bias, recompute=self.recompute)
        return x + self(norm(x))


# dtypes a block plans for besides its parameters': what autocast gives its qkv Linear
_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


class STCAttention(_Planned):
    """Pre-norm criss-cross attention with residual: ``x + proj(stc_attention(qkv(LN(x))))``.

    ``plan`` resolves, once, the ``stc_attention`` plan (backend, its function) for the
    parameters' dtype and for the autocast dtypes, keyed by qkv's dtype, so ``forward`` chooses
    nothing; it plans again when the settings change. The qkv layout is the one the backend of
    the parameters' dtype reads fastest: with ``head_major`` the qkv Linear runs with its output
    rows permuted (the weights themselves stay official; the permuted copy is kept between
    forwards that need no gradient until the weights change). ``fused`` (float32 on CPU):
    LayerNorm + qkv in row chunks.
    """

    def __init__(self, dim: int, num_heads: int, scale: float, parts: Sequence[int], emb_rows: int,
                 padding_idx: Optional[int], spe_coef: float, spe_t_coef: Optional[float],
                 drop_path: float, backend: Optional[str], fused: bool = True):
        super().__init__()
        half = dim // 2
        if half % num_heads:
            raise ValueError(f"width {dim}: C/2 = {half} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = scale
        self.spe_coef = spe_coef
        self.spe_t_coef = spe_t_coef
        # creation order gives the official state_dict order
        self.qkv = nn.Linear(dim, 3 * dim)
        self.layer_norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        self.emb = nn.Embedding(emb_rows, half // num_heads, padding_idx=padding_idx)
        self.sep2_t = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half)
        self.sep2_s = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half)
        self.drop_path = DropPath(drop_path)
        # a constant, kept out of the state_dict (official keys have none)
        self.register_buffer("part", torch.tensor(parts, dtype=torch.long), persistent=False)
        # rows of the qkv Linear in head-major order (the weights themselves stay official)
        self.register_buffer("head_major", head_major_index(dim, num_heads), persistent=False)
        self._backend, self._fused = backend, fused
        self.plan()

    backend = _Setting(convert=lambda name: name)  # Optional[str]: the stc_attention backend asked for
    fused = _Setting()

    def plan(self) -> None:
        w = self.qkv.weight
        self._version = settings.version()
        self._plans = {dt: resolve(self._backend, w.device.type, dt) for dt in (w.dtype,) + _AUTOCAST_DTYPES}
        # a named backend that cannot run: the plan raises its sentence when the block runs
        self._layout = self._plans[w.dtype].layout
        self._chunked = self._fused and _chunked_cpu_ok(w)
        self._permuted = None

    def _attention_plan(self, dtype: torch.dtype):
        if self._version != settings.version():  # settings.set_backend, override(...) since the last plan
            self.plan()
        plan = self._plans.get(dtype)
        return plan if plan is not None else resolve(self._backend, self.qkv.weight.device.type, dtype)

    def _qkv_params(self):
        """The qkv Linear's weight and bias in the layout of the plan (rows permuted for head_major)."""
        w, b = self.qkv.weight, self.qkv.bias
        if self._layout != "head_major":
            return w, b
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (w.requires_grad or b.requires_grad)):
            return w[self.head_major], b[self.head_major]
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version)  # an optimizer step or a load changes it
        if self._permuted is None or self._permuted[0] != key:
            self._permuted = (key, w[self.head_major], b[self.head_major])
        return self._permuted[1], self._permuted[2]

    def forward(self, x: Tensor) -> Tensor:
        head_major = self._layout == "head_major"
        w, b = self._qkv_params()
        # autocast is a context around the call, not a setting of the module: read here, per call
        if self._chunked and not torch.is_autocast_enabled("cpu"):
            # LayerNorm + qkv Linear in row chunks, the LayerNorm output recomputed in the backward
            qkv = fused_mlp.layer_norm_linear(x, self.layer_norm, w, b)
        elif head_major:
            qkv = F.linear(self.layer_norm(x), w, b)
        else:
            qkv = self.qkv(self.layer_norm(x))
        e = self.emb(self.part)  # (J, dh), shared by every head and frame
        spe_s = self.spe_coef * self.drop_path(e)
        spe_t = self.spe_t_coef * self.drop_path(e) if self.spe_t_coef else None
        # the plan of qkv's dtype (autocast can change it per call), made in plan()
        out = self._attention_plan(qkv.dtype)(qkv, self.sep2_s.weight, self.sep2_s.bias, self.sep2_t.weight,
                                              self.sep2_t.bias, spe_s, spe_t, self.num_heads, self.scale,
                                              layout=self._layout)
        return self.proj(out) + x


class STCBlock(nn.Module):
    """One encoder layer: ``STCAttention`` (with its residual), then ``x + mlp(layer_norm(x))``."""

    def __init__(self, dim: int, attn_kwargs: dict, mlp_ratio: int, drop: float, unused_norm: bool):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        if unused_norm:  # 3DHP: created and saved by the official code, never used
            self.layer_norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio, drop)
        self.stc_att = STCAttention(dim, **attn_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp.residual(self.stc_att(x), self.layer_norm)


class STCEncoder(nn.Module):
    def __init__(self, layers: int, dim: int, **block_kwargs):
        super().__init__()
        self.stc_block = nn.ModuleList([STCBlock(dim, **block_kwargs) for _ in range(layers)])
        self.recompute = False

    def forward(self, x: Tensor) -> Tensor:
        recompute = self.recompute and self.training and torch.is_grad_enabled()
        for block in self.stc_block:
            # activation checkpointing: keep only each block's input, redo the block in the
            # backward (the RNG state is replayed, so dropout and DropPath draw the same masks)
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return x



class _FamilyDefault:
    """Default of an argument whose value comes from the model family (None has a meaning of its own)."""

    def __repr__(self) -> str:
        return "<the family's>"


_FAMILY = _FamilyDefault()
_KEEP = object()  # configure(): leave this setting as it is


def check_config(layers: int, d_hid: int, family: str = "h36m", num_heads: Optional[int] = None) -> int:
    """Check an architecture before anything is built; returns the number of heads.

    The one place the width/heads rule lives (the op checks its own inputs again at run time):
    the width C is even and C/2 splits into ``num_heads`` (default: the family's) equal heads.
    Raises :class:`~stcformer.errors.UsageError` with one line.
    """
    if family not in FAMILIES:
        raise UsageError(f"family must be one of {', '.join(sorted(FAMILIES))}, got {family!r}")
    heads = num_heads or FAMILIES[family]["num_heads"]
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise UsageError(f"layers must be a positive int, got {layers!r}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise UsageError(f"num_heads must be a positive int, got {heads!r}")
    if isinstance(d_hid, bool) or not isinstance(d_hid, int) or d_hid < 2 or d_hid % 2 or (d_hid // 2) % heads:
        raise UsageError(f"width {d_hid!r}: must be even, and half of it divisible by the {heads} heads")
    return heads


class STCFormer(nn.Module):
    """2D keypoint sequence (B, T, J, 2) -> root-relative 3D poses (B, T, J, 3), any T.

    Args:
        layers, d_hid: depth and width (official: 6, 256).
        num_joints: J (17; other J need ``parts``).
        num_heads: default 8 for ``h36m``, 4 for ``3dhp``.
        family: ``h36m`` or ``3dhp`` (official module naming and constants of each).
        spe_coef: spatial SPE coefficient; default that of the released weights
            (1e-3 for H36M, 1e-4 for 3DHP).
        spe_t_coef: temporal SPE coefficient; default the family's (H36M 1e-9, 3DHP none);
            ``None`` drops the term.
        scale: attention scale; default (C/2)^-1/2 for H36M and C^-1/2 for 3DHP.
        dropout, drop_path: MLP dropout (0.1) and DropPath on the SPE terms (0.5).
        backend: backend of ``stc_attention`` (default: $STCFORMER_BACKEND or auto).
        recompute: what to recompute in the backward instead of keeping: ``"blocks"`` (or
            True): activation checkpointing of every block in training (least memory, about one
            more forward per step); ``"mlp"``: the fused CPU MLP's hidden (fc1's output, 4C per
            token: one more fc1 GEMM per step); False / None / ``"none"``: nothing.
            ``set_recompute`` switches it later.
    """

    def __init__(self, layers: int = 6, d_hid: int = 256, num_joints: int = 17,
                 num_heads: Optional[int] = None, family: str = "h36m",
                 spe_coef: Optional[float] = None, spe_t_coef: Union[float, None, _FamilyDefault] = _FAMILY,
                 scale: Optional[float] = None, dropout: float = 0.1, drop_path: float = 0.5,
                 parts: Optional[Sequence[int]] = None, backend: Optional[str] = None,
                 recompute: Union[Recompute, bool, str, None] = False):
        super().__init__()
        num_heads = check_config(layers, d_hid, family, num_heads)
        fam = FAMILIES[family]
        spe_coef = fam["spe_coef"] if spe_coef is None else spe_coef
        spe_t_coef = fam["spe_t_coef"] if spe_t_coef is _FAMILY else spe_t_coef
        scale = scale if scale is not None else (d_hid // fam["scale_div"]) ** -0.5
        parts = tuple(parts) if parts is not None else fam["parts"]
        if len(parts) != num_joints:
            raise ValueError(f"{num_joints} joints need a part index per joint (got {len(parts)}): pass parts=")
        self.config = dict(layers=layers, d_hid=d_hid, num_joints=num_joints, num_heads=num_heads,
                           family=family, spe_coef=spe_coef, spe_t_coef=spe_t_coef, scale=scale,
                           dropout=dropout, drop_path=drop_path, parts=list(parts))
        self.train_config: dict = {}  # the settings it was trained with, where a checkpoint says (load_checkpoint)
        attn = dict(num_heads=num_heads, scale=scale, parts=parts, emb_rows=fam["emb_rows"],
                    padding_idx=fam["padding_idx"], spe_coef=spe_coef, spe_t_coef=spe_t_coef,
                    drop_path=drop_path, backend=backend)
        self.pose_emb = nn.Linear(2, d_hid, bias=False)
        self.gelu = nn.GELU()
        self.stcformer = STCEncoder(layers, d_hid, attn_kwargs=attn, mlp_ratio=4, drop=dropout,
                                    unused_norm=fam["mixer_names"])
        self.regress_head = nn.Linear(d_hid, 3, bias=False)
        self.set_recompute(recompute)

    @property
    def family(self) -> str:
        return self.config["family"]

    def set_backend(self, backend: Optional[str]) -> "STCFormer":
        """Deprecated: ``configure(backend=...)`` (the one way to configure a model)."""
        import warnings

        warnings.warn("STCFormer.set_backend(b) is deprecated; use STCFormer.configure(backend=b)",
                      DeprecationWarning, stacklevel=2)
        return self.configure(backend=backend)

    def configure(self, *, backend=_KEEP, fused: Optional[bool] = None,
                  onednn_mlp: Optional[bool] = None) -> "STCFormer":
        """Set how every block runs, and choose its execution path again (omitted: unchanged).

        Args:
            backend: ``stc_attention`` backend (None: $STCFORMER_BACKEND or auto); the qkv
                layout follows it. Re-read, with the device and dtype, on every ``.to()``.
            fused: float32 on CPU, LayerNorm + qkv and LayerNorm + MLP + residual in row
                chunks, GELU + dropout fused (False: the plain modules).
            onednn_mlp: the MLPs through ``fused_mlp.mlp`` with GEMMs on oneDNN where the
                chunked path does not take them (``stcformer.ops.mlp.linear.convert_linears``
                puts the other Linears on oneDNN).
        """
        for block in self.stcformer.stc_block:
            att, mlp = block.stc_att, block.mlp
            # through the blocks' settings (_Setting): each change makes its module plan again
            if backend is not _KEEP:
                att.backend = backend
            if fused is not None:
                att.fused = mlp.fused = fused
            if onednn_mlp is not None:
                mlp.onednn = onednn_mlp
            if backend is _KEEP and fused is None and onednn_mlp is None:  # nothing given: plan again
                att.plan()
                mlp.plan()
        return self

    def set_recompute(self, what: Union[Recompute, bool, str, None] = True) -> "STCFormer":
        """What the backward recomputes: a :class:`~stcformer.choices.Recompute` or its name,
        True (``"blocks"``), False/None (``"none"``); see ``recompute``."""
        what = Recompute.of(what)
        self.stcformer.recompute = what is Recompute.BLOCKS
        for block in self.stcformer.stc_block:
            block.mlp.recompute = what is Recompute.MLP
        return self

    def official_state_dict(self) -> dict:
        """state_dict under the official key names of this model's family."""
        return {to_official_key(k, FAMILIES[self.family]["mixer_names"]): v for k, v in self.state_dict().items()}

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != 2:
            raise ValueError(f"STCFormer expects (B, T, J, 2) keypoints, got {tuple(x.shape)}")
        x = self.gelu(self.pose_emb(x))
        x = self.stcformer(x)
        return self.regress_head(x)
