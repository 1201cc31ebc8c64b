"""The official checkpoints' key names: identity for the Human3.6M family; the MPI-INF-3DHP
family's released weights use other module names (``mlpmixer.mixerblocks...``, ``cross_att``,
``gate_s``/``gate_t``, ``layer_norm1``), mapped here by substring rules."""
from __future__ import annotations

import re

# our (H36M) module names <-> official 3DHP names, as substrings
_3DHP_NAMES = (
    ("stcformer.stc_block.", "mlpmixer.mixerblocks."),
    ("regress_head.", "pose_lift."),
    (".mlp.", ".mlp1."),
    (".stc_att.", ".cross_att."),
    (".sep2_s.", ".gate_s."),
    (".sep2_t.", ".gate_t."),
)
# the block's LayerNorm (not the attention's) is layer_norm1 in 3DHP
_BLOCK_LN = re.compile(r"^(stcformer\.stc_block\.\d+)\.layer_norm\.")
_BLOCK_LN_3DHP = re.compile(r"^(mlpmixer\.mixerblocks\.\d+)\.layer_norm1\.")


def to_official_key(key: str, mixer_names: bool) -> str:
    """Our parameter name -> the official checkpoint's name (identity unless ``mixer_names``:
    the 3DHP family's released weights)."""
    if not mixer_names:
        return key
    key = _BLOCK_LN.sub(r"\1.layer_norm1.", key)
    for ours, theirs in _3DHP_NAMES:
        key = key.replace(ours, theirs)
    return key


def from_official_key(key: str) -> str:
    """Official name of either family (without ``module.``) -> our name."""
    key = _BLOCK_LN_3DHP.sub(r"\1.layer_norm.", key)
    for ours, theirs in _3DHP_NAMES:
        key = key.replace(theirs, ours)
    return key
