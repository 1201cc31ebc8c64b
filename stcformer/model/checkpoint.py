"""Load official STCFormer checkpoints (H36M and 3DHP) and this project's own; save atomically.

Official files are plain state_dicts (3DHP ones with a ``module.`` prefix). Ours are
``{"format": "stcformer", "version": 1, "config": {...}, "state_dict": {...}, "extra": ...}``.
Architecture is read from the tensors: layers from the block count, width from
``pose_emb.weight``, heads from the width of ``emb.weight`` (heads = C / 2 / emb_dim).
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

import torch

from stcformer.errors import CheckpointError, UsageError
from stcformer.io import torch_save
from stcformer.model.modules import STCFormer
from stcformer.model.official import from_official_key

FORMAT = "stcformer"
_BLOCK = re.compile(r"^stcformer\.stc_block\.(\d+)\.")


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    torch_save(obj, path)


def save_checkpoint(model: STCFormer, path: str, extra: Optional[dict] = None) -> None:
    """Write ``model`` (config and weights, plus ``extra``) atomically to ``path``."""
    model = getattr(model, "module", model)  # DistributedDataParallel / DataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    atomic_save({"format": FORMAT, "version": 1, "config": dict(model.config),
                 "state_dict": model.state_dict(), "extra": extra}, path)


def read_checkpoint(path: str) -> dict:
    """The raw contents (ours as saved; official files as ``{"state_dict": ...}``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or weights_only errors all mean "not loadable"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_pos"):  # common wrappers around a state_dict
            if isinstance(obj.get(key), dict):
                return {"state_dict": obj[key]}
        return {"state_dict": obj}
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict")


def infer_config(state_dict: dict, family: str = "h36m", path: str = "<state_dict>") -> dict:
    """Layers, width and heads of an official or own state_dict (our key names)."""
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    blocks = {int(m.group(1)) for k in tensors if (m := _BLOCK.match(k))}
    if not blocks or "pose_emb.weight" not in tensors:
        raise CheckpointError(f"{path}: not an STCFormer checkpoint (no pose_emb.weight and "
                              "stcformer.stc_block.* or mlpmixer.mixerblocks.* keys)")
    emb = tensors.get("stcformer.stc_block.0.stc_att.emb.weight")
    if emb is None:
        raise CheckpointError(f"{path}: missing stcformer.stc_block.0.stc_att.emb.weight")
    d_hid = tensors["pose_emb.weight"].shape[0]
    if d_hid % (2 * emb.shape[1]):
        raise CheckpointError(f"{path}: width {d_hid} is not a multiple of 2 x SPE width {emb.shape[1]}")
    return dict(layers=max(blocks) + 1, d_hid=d_hid, num_heads=d_hid // 2 // emb.shape[1], family=family)


def load_checkpoint(path: str, map_location: Any = "cpu", **overrides) -> STCFormer:
    """An STCFormer in eval mode from an official or own checkpoint.

    ``overrides`` replace constructor arguments (e.g. ``spe_coef=1e-4``, ``backend="cpp"``).
    The model's ``train_config`` is the plain dict of settings ``stcformer.train`` saved with
    it (window ``frames`` and ``tds``, ``dataset``, ...), empty for official files, so readers
    need not open the file again. Raises CheckpointError with the file name and the problem for
    anything else.
    """
    path = os.fspath(path)
    raw = read_checkpoint(path)
    state, family = {}, "h36m"
    for key, value in raw["state_dict"].items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith("mlpmixer."):  # the family is told by the official key names
            family = "3dhp"
        state[from_official_key(key)] = value
    config = dict(raw.get("config") or infer_config(state, family, path))
    backend = overrides.pop("backend", None)
    config.update(overrides)
    try:
        model = STCFormer(**config, backend=backend)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build the model ({exc})") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"{path}: not a checkpoint of this STCFormer: " + ", ".join(parts))
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, "
                                  f"expected {tuple(value.shape)}")
    model.load_state_dict(state, strict=True)
    model.train_config = dict((raw.get("extra") or {}).get("args") or {})
    model.trained_on_record = dict((raw.get("extra") or {}).get("trained_on") or {})
    return model.to(map_location).eval()


OFFICIAL = ("the official STCFormer checkpoints (trained on Human3.6M and MPI-INF-3DHP; links in the README of "
            "github.com/zhenhuat/STCFormer)")


def trained_on(model) -> dict:
    """What ``model`` (from :func:`load_checkpoint`) was trained on: ``source`` ("stcformer.train",
    or "unknown" for official and other plain state_dicts), ``dataset``, ``keypoints``,
    ``synthetic`` (True: motion generated by stcformer.data.synthetic; None: not recorded).
    Checkpoints of stcformer.train record it (``extra["trained_on"]``); older ones are judged
    from their settings (no ``data_dir``: the synthetic stand-in)."""
    record = dict(getattr(model, "trained_on_record", None) or {})
    config = getattr(model, "train_config", None) or {}
    if not record and not config:
        return {"source": "unknown", "dataset": None, "keypoints": None, "synthetic": None}
    if not record:
        folder = os.path.basename(os.path.normpath(config["data_dir"])) if config.get("data_dir") else ""
        record = {"dataset": config.get("dataset"), "keypoints": config.get("keypoints"),
                  "synthetic": not config.get("data_dir") or folder.startswith("synthetic_"),
                  "data_dir": config.get("data_dir")}
    return {"source": "stcformer.train", **record}


def synthetic_note(model) -> Optional[str]:
    """One line to print when ``model`` was trained on synthetic motion (None otherwise): its 3D
    of real people is not to be trusted, and where models trained on real data come from."""
    info = trained_on(model)
    if not info.get("synthetic"):
        return None
    return (f"note: this model was trained on synthetic motion ({info.get('dataset') or 'h36m'} stand-in, "
            f"no real people), so its 3D of real footage is not plausible; for real footage use a model "
            f"trained on real data, e.g. {OFFICIAL}, or train with --data-dir on the real dataset")


def trained_window(model, dataset: Optional[str] = None, default: tuple = (27, 3)) -> tuple:
    """(frames, tds) ``model`` was trained with, as its checkpoint says (``train_config``, set by
    :func:`load_checkpoint` for checkpoints of ``stcformer.train``), else ``default`` ((27, 3), the
    official Human3.6M checkpoints' window). With ``dataset``, a window learned on another
    dataset does not count. The one home of this rule (infer, evaluate, the benchmarks)."""
    config = getattr(model, "train_config", None) or {}
    if dataset is not None and config.get("dataset", dataset) != dataset:
        config = {}
    return int(config.get("frames") or default[0]), int(config.get("tds") or default[1])


def check_joints(model, path, joints: int = 17) -> None:
    """UsageError (one line naming ``path``) unless ``model`` lifts ``joints`` joints."""
    n = getattr(model, "config", {}).get("num_joints", joints)
    if n != joints:
        raise UsageError(f"{path}: model has {n} joints, need {joints}")
