"""Sequences of a dataset and the windows cut from them, gathered in batches by one gather (CPU or device)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from stcformer.data.skeleton import action_group
from stcformer.data.windows import test_centres, train_centres, window_indices


@dataclass
class PoseSequence:
    """One camera view of one recording, or one sequence of a user's keypoints.

    keypoints: (F, J, 2) float32 screen-normalised 2D.
    poses: (F, J, 3) float32 camera-space 3D, non-root joints relative to the root (the root keeps
        its absolute position, as in the official data; windows zero it); None where there is no
        3D (keypoints to lift).
    valid: (F,) bool frames to score (MPI-INF-3DHP test), or None for all.
    """

    subject: str
    action: str
    camera: str
    keypoints: np.ndarray
    poses: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None

    @property
    def group(self) -> str:
        """The action label the per-action tables use."""
        return action_group(self.action)

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass
class PoseData:
    """A dataset ready for windowing: train and test sequences plus its conventions."""

    name: str                      # the dataset (a key of stcformer.evaluation.benchmarks.BENCHMARKS)
    train: List[PoseSequence]
    test: List[PoseSequence]
    root: int
    left: Sequence[int]
    right: Sequence[int]
    unit_to_mm: float              # 1000 for metres (H36M), 1 for millimetres (3DHP)


def _concatenated_poses(sequences: Sequence[PoseSequence]) -> Optional[np.ndarray]:
    """The sequences' 3D end to end, float32; None if any of them has none."""
    if any(s.poses is None for s in sequences):
        return None
    return np.concatenate([s.poses for s in sequences]).astype(np.float32, copy=False)


class WindowSet:
    """Windows of ``2*pad+1`` frames, ``tds`` apart, around chosen centres of many sequences.

    Args:
        sequences: the sequences.
        centres: one int array of centre frames per sequence.
        pad, tds: window half-width and temporal downsampling.
        root, left, right: root joint (zeroed in targets) and the flip lists.
        augment: list every window twice, as is and mirrored (the official training flip).
        seq2seq: targets are all T frames of the window (training); else the centre frame only.

    ``poses`` is None when a sequence has no 3D: its windows give inputs, and ``targets`` raises.
    """

    def __init__(self, sequences: Sequence[PoseSequence], centres: Sequence[np.ndarray], pad: int,
                 tds: int, root: int, left: Sequence[int], right: Sequence[int],
                 augment: bool = False, seq2seq: bool = False):
        if len(sequences) != len(centres):
            raise ValueError("one centre array per sequence")
        self.sequences = list(sequences)
        self.pad, self.tds, self.root = pad, tds, root
        self.left, self.right = list(left), list(right)
        self.seq2seq = seq2seq
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = lengths
        self.keypoints = np.concatenate([s.keypoints for s in self.sequences]).astype(np.float32, copy=False)
        self.poses = _concatenated_poses(self.sequences)
        seq = np.concatenate([np.full(len(c), i, dtype=np.int64) for i, c in enumerate(centres)])
        ctr = np.concatenate([np.asarray(c, dtype=np.int64) for c in centres])
        flip = np.zeros(len(seq), dtype=bool)
        if augment:
            seq, ctr, flip = np.concatenate([seq, seq]), np.concatenate([ctr, ctr]), np.concatenate([flip, ~flip])
        self.seq, self.centre, self.flip = seq, ctr, flip

    def __len__(self) -> int:
        return len(self.seq)

    # one gather for every device (DeviceWindows); on the CPU its tensors are views of these arrays

    def frame_indices(self, idx) -> np.ndarray:
        """Global frame indices (B, T) of windows ``idx`` into the concatenated arrays."""
        return self.to_device("cpu").frame_indices(idx).numpy()

    def inputs(self, idx, flip: Optional[bool] = None) -> torch.Tensor:
        """2D windows (B, T, J, 2); mirrored where the window is a flipped copy, or as ``flip`` says."""
        return self.to_device("cpu").inputs(idx, flip)

    def targets(self, idx) -> torch.Tensor:
        """3D targets, root zeroed: (B, T, J, 3) for seq2seq, else the centre frame (B, 1, J, 3)."""
        return self.to_device("cpu").targets(idx)

    def groups(self, idx) -> List[str]:
        return [self.sequences[s].group for s in self.seq[np.asarray(idx, dtype=np.int64)]]

    def to_device(self, device) -> "DeviceWindows":
        """The same windows gathered on ``device`` from arrays uploaded once (see :class:`DeviceWindows`;
        on the CPU, views of this set's arrays, made once)."""
        device = torch.device(device)
        if device.type != "cpu":
            return DeviceWindows(self, device)
        if getattr(self, "_cpu", None) is None:
            self._cpu = DeviceWindows(self, device)
        return self._cpu


class DeviceWindows:
    """The gather of a :class:`WindowSet`'s windows, on the device its tables live on.

    The concatenated keypoints and poses and the per-window tables are copied to ``device`` once
    (on the CPU they are views of the set's arrays); ``inputs(idx)`` and ``targets(idx)`` take
    window indices (a tensor, best on the same device, or an array) and cut the windows there,
    mirroring the flipped ones (a negation and a joint permutation, so the values are the same
    bits on every device), without a host-to-device copy per batch. ``WindowSet.inputs`` and
    ``targets`` are this gather on the CPU.
    """

    def __init__(self, windows: WindowSet, device):
        self.device = torch.device(device)
        self.pad, self.tds, self.root, self.seq2seq = windows.pad, windows.tds, windows.root, windows.seq2seq
        self.left, self.right = windows.left, windows.right
        dev = self.device
        self.keypoints = torch.from_numpy(windows.keypoints).to(dev)
        self.poses = None if windows.poses is None else torch.from_numpy(windows.poses).to(dev)
        self.seq = torch.from_numpy(windows.seq).to(dev)
        self.centre = torch.from_numpy(windows.centre).to(dev)
        self.flip = torch.from_numpy(windows.flip).to(dev)
        self.last = torch.from_numpy(windows.lengths - 1).to(dev)
        self.offsets = torch.from_numpy(windows.offsets).to(dev)
        self.steps = (torch.arange(2 * self.pad + 1, dtype=torch.int64) - self.pad).mul_(self.tds).to(dev)
        # flip_pose as one gather: joint lr[i] takes the value of rl[i]
        perm = list(range(self.keypoints.shape[1]))
        for a, b in zip(list(self.left) + list(self.right), list(self.right) + list(self.left)):
            perm[a] = b
        self.perm = torch.tensor(perm, dtype=torch.int64, device=dev)
        self.joints = torch.arange(len(perm), dtype=torch.int64, device=dev)

    def __len__(self) -> int:
        return len(self.seq)

    def _index(self, idx) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return idx.to(self.device, torch.int64, non_blocking=True)

    def frame_indices(self, idx) -> torch.Tensor:
        """Global frame indices (B, T) of windows ``idx``, as ``WindowSet.frame_indices``."""
        idx = self._index(idx)
        seq = self.seq[idx]
        local = torch.minimum((self.centre[idx, None] + self.steps[None]).clamp_(min=0), self.last[seq, None])
        return local + self.offsets[seq, None]

    def _gather(self, table: torch.Tensor, frames: torch.Tensor, mirror: Optional[torch.Tensor]) -> torch.Tensor:
        """``table[frames]`` (B, T', J, C), with the windows where ``mirror`` is set mirrored:
        their joints read through the left/right permutation and their x negated (a product with
        -1, exact), in one gather and without a host sync."""
        if mirror is None:
            return table[frames]
        joints = torch.where(mirror[:, None], self.perm[None], self.joints[None])  # (B, J)
        x = table[frames[:, :, None], joints[:, None, :]]
        x[..., 0] *= 1.0 - 2.0 * mirror.to(x.dtype)[:, None, None]
        return x

    def inputs(self, idx, flip: Optional[bool] = None) -> torch.Tensor:
        """2D windows (B, T, J, 2) on the device; mirrored as ``WindowSet.inputs`` does."""
        idx = self._index(idx)
        if flip is None:
            mirror = self.flip[idx]
        else:
            mirror = torch.ones(len(idx), dtype=torch.bool, device=self.device) if flip else None
        return self._gather(self.keypoints, self.frame_indices(idx), mirror)

    def targets(self, idx) -> torch.Tensor:
        """3D targets on the device, root zeroed, as ``WindowSet.targets``."""
        if self.poses is None:
            raise ValueError("these windows have no 3D targets: a sequence was given without poses")
        idx = self._index(idx)
        if self.seq2seq:
            frames = self.frame_indices(idx)
        else:
            frames = (self.centre[idx] + self.offsets[self.seq[idx]])[:, None]
        y = self._gather(self.poses, frames, self.flip[idx])
        y[..., self.root, :] = 0
        return y


def training_windows(data: PoseData, frames: int, tds: int, stride: int, augment: bool = True) -> WindowSet:
    """Seq2seq training windows: a centre every ``stride`` frames, mirrored copies if ``augment``."""
    pad = (frames - 1) // 2
    centres = [train_centres(len(s), stride) for s in data.train]
    return WindowSet(data.train, centres, pad, tds, data.root, data.left, data.right,
                     augment=augment, seq2seq=True)


def test_windows(data: PoseData, frames: int, tds: int) -> WindowSet:
    """Test windows: every frame a centre (or every valid frame, where the data marks them)."""
    pad = (frames - 1) // 2
    centres = [np.flatnonzero(s.valid) if s.valid is not None else test_centres(len(s)) for s in data.test]
    return WindowSet(data.test, centres, pad, tds, data.root, data.left, data.right,
                     augment=False, seq2seq=False)


__all__ = ["PoseSequence", "PoseData", "WindowSet", "DeviceWindows", "training_windows", "test_windows",
           "window_indices"]
