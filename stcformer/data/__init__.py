"""Data loaders and windowing.

- :func:`load_h36m`: Human3.6M in the VideoPose3D layout (data_3d_h36m.npz, data_2d_h36m_<k>.npz).
- :func:`load_3dhp`: MPI-INF-3DHP in the P-STMO layout (data_train_3dhp.npz, data_test_3dhp.npz).
- :mod:`.synthetic`: synthetic motion written in the Human3.6M (or 3DHP) layout.
- :func:`training_windows`, :func:`test_windows`: the official windows over the loaded sequences.

Every loader raises :class:`DataError` (``"<file>: <problem>"``) on bad input.
"""
from stcformer.data.dataset import PoseData, PoseSequence, WindowSet, test_windows, training_windows
from stcformer.errors import DataError
from stcformer.data.h36m import load_h36m
from stcformer.data.mpi3dhp import load_3dhp
from stcformer.data.windows import flip_pose, test_centres, train_centres, window_indices

__all__ = ["DataError", "PoseData", "PoseSequence", "WindowSet", "load_h36m", "load_3dhp", "training_windows",
           "test_windows", "window_indices", "train_centres", "test_centres", "flip_pose"]
