"""Human3.6M in the VideoPose3D layout.

Files in the data directory:
    data_3d_h36m.npz             positions_3d: {subject: {action: (F, 32, 3) world metres}}
    data_2d_h36m_<keypoints>.npz positions_2d: {subject: {action: [4 x (F', 17, 2) pixels]}},
                                 metadata: {'keypoints_symmetry': [left, right], ...}

Per camera the 3D poses go to camera space (``qrot(q^-1, X - t)``), non-root joints become
root-relative, and the 2D keypoints are truncated to the mocap length and normalised by the
camera's width (``x/w*2-1``, ``y/w*2-h/w``).
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence


from stcformer.data.cameras import h36m_cameras, normalize_screen_coordinates, world_to_camera
from stcformer.data.dataset import PoseData, PoseSequence
from stcformer.errors import DataError
from stcformer.data.npz import check_array, load_npz_dict
from stcformer.data.skeleton import (H36M_ACTIONS, H36M_KEPT_OF_32, H36M_LEFT, H36M_RIGHT, H36M_ROOT,
                       H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS, action_group)


def h36m_paths(data_dir, keypoints: str):
    return (os.path.join(os.fspath(data_dir), "data_3d_h36m.npz"),
            os.path.join(os.fspath(data_dir), f"data_2d_h36m_{keypoints}.npz"))


def _subject_dict(path, data, what: str) -> Dict:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(path, f"{what} must be a dict {{subject: {{action: array}}}}")
    return data


def read_files(data_dir, keypoints: str):
    """The two npz files' dicts (positions_3d, positions_2d), checked for layout and symmetry."""
    path3d, path2d = h36m_paths(data_dir, keypoints)
    pos3d = _subject_dict(path3d, load_npz_dict(path3d, "positions_3d"), "positions_3d")
    pos2d = _subject_dict(path2d, load_npz_dict(path2d, "positions_2d"), "positions_2d")
    meta = None
    try:
        meta = load_npz_dict(path2d, "metadata")
    except DataError as e:
        if "no key" not in e.problem:
            raise
    if isinstance(meta, dict) and "keypoints_symmetry" in meta:
        sym = meta["keypoints_symmetry"]
        try:
            ok = [list(map(int, sym[0])), list(map(int, sym[1]))] == [list(H36M_LEFT), list(H36M_RIGHT)]
        except (TypeError, ValueError, IndexError):
            ok = False
        if not ok:
            raise DataError(path2d, f"metadata keypoints_symmetry {sym!r} is not the H36M-17 layout "
                                    f"{[list(H36M_LEFT), list(H36M_RIGHT)]}")
    return pos3d, pos2d


def load_sequences(data_dir, keypoints: str, subjects: Sequence[str], files=None) -> List[PoseSequence]:
    """Camera-view sequences of ``subjects``, in subject order, then the 2D file's action order.

    ``files``: the result of :func:`read_files`, to read the npz files only once.
    """
    path3d, path2d = h36m_paths(data_dir, keypoints)
    pos3d, pos2d = files if files is not None else read_files(data_dir, keypoints)
    sequences = []
    for subject in subjects:
        if subject not in pos3d:
            raise DataError(path3d, f"subject {subject} is missing")
        if subject not in pos2d:
            raise DataError(path2d, f"subject {subject} is missing")
        try:
            cameras = h36m_cameras(subject)
        except KeyError as e:
            raise DataError(path3d, e.args[0]) from None
        for action in pos3d[subject]:
            if action not in pos2d[subject]:
                raise DataError(path2d, f"action {action!r} of subject {subject} is missing")
        for action in pos2d[subject]:
            if action not in pos3d[subject]:
                raise DataError(path3d, f"action {action!r} of subject {subject} is missing")
            where = f"positions_3d[{subject!r}][{action!r}]"
            world = check_array(path3d, where, pos3d[subject][action], (None, None, 3))
            if world.shape[1] == 32:
                world = world[:, list(H36M_KEPT_OF_32)]
            elif world.shape[1] != 17:
                raise DataError(path3d, f"{where} has {world.shape[1]} joints, expected 32 (or 17)")
            if len(world) == 0:
                raise DataError(path3d, f"{where} has no frames")
            views = pos2d[subject][action]
            if not isinstance(views, (list, tuple)) or len(views) != len(cameras):
                raise DataError(path2d, f"positions_2d[{subject!r}][{action!r}] must be a list of "
                                        f"{len(cameras)} camera arrays")
            for cam_idx, (cam, kps) in enumerate(zip(cameras, views)):
                where2 = f"positions_2d[{subject!r}][{action!r}][{cam_idx}]"
                kps = check_array(path2d, where2, kps, (None, 17, 2))
                if len(kps) < len(world):
                    raise DataError(path2d, f"{where2} has {len(kps)} frames, fewer than the "
                                            f"{len(world)} of the 3D data")
                poses = world_to_camera(world, cam.orientation, cam.translation)
                poses[:, 1:] -= poses[:, :1]
                sequences.append(PoseSequence(
                    subject=subject, action=action, camera=cam.id,
                    keypoints=normalize_screen_coordinates(kps[:len(world)], cam.res_w, cam.res_h),
                    poses=poses))
    return sequences


def load_h36m(data_dir, keypoints: str = "cpn_ft_h36m_dbb",
              train_subjects: Sequence[str] = H36M_TRAIN_SUBJECTS,
              test_subjects: Sequence[str] = H36M_TEST_SUBJECTS,
              require_all_actions: bool = True) -> PoseData:
    """Load Human3.6M (train S1,S5,S6,S7,S8; test S9,S11 by default).

    With ``require_all_actions`` the test subjects must cover exactly the 15 official actions
    (the per-action table and its average need each of them; the official script fails on
    unknown ones). Raises DataError naming the file and the problem.
    """
    files = read_files(data_dir, keypoints)
    train = load_sequences(data_dir, keypoints, train_subjects, files) if train_subjects else []
    test = load_sequences(data_dir, keypoints, test_subjects, files) if test_subjects else []
    path3d, _ = h36m_paths(data_dir, keypoints)
    if require_all_actions and test_subjects:
        groups = {s.group for s in test}
        unknown = sorted(groups - set(H36M_ACTIONS))
        if unknown:
            raise DataError(path3d, f"unknown action(s) {', '.join(unknown)} in the test subjects "
                                    f"(expected the 15 Human3.6M actions)")
        missing = [a for a in H36M_ACTIONS if a not in groups]
        if missing:
            raise DataError(path3d, f"action(s) {', '.join(missing)} missing from the test subjects "
                                    f"{', '.join(test_subjects)}")
    return PoseData(name="h36m", train=train, test=test, root=H36M_ROOT, left=H36M_LEFT,
                    right=H36M_RIGHT, unit_to_mm=1000.0)


__all__ = ["load_h36m", "load_sequences", "h36m_paths", "action_group"]
