"""Joint orders, skeleton trees and left/right lists of the two datasets.

Human3.6M uses the 17-joint subset of the 32 mocap joints that VideoPose3D keeps;
MPI-INF-3DHP uses the 17 "relevant" joints of the P-STMO npz files, with the pelvis at index 14.
"""

# ---------------------------------------------------------------- Human3.6M, 17 joints
H36M_JOINTS = (
    "Hip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
    "Neck", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)
# parent of each of the 17 joints (after joint removal; LShoulder/RShoulder hang from Thorax)
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_ROOT = 0
# the same lists serve the 2D keypoints (the detections' metadata) and the 3D joints
H36M_LEFT = (4, 5, 6, 11, 12, 13)
H36M_RIGHT = (1, 2, 3, 14, 15, 16)
# indices of the 17 joints in the 32-joint mocap skeleton of data_3d_h36m.npz
H36M_KEPT_OF_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# parents in the 32-joint mocap skeleton (used to fill the unused joints of synthetic files)
H36M_PARENTS_32 = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12,
                   16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30)

H36M_TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST_SUBJECTS = ("S9", "S11")
H36M_FPS = 50

# the 15 actions of the official per-action table, in its order
H36M_ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)


def action_group(name: str) -> str:
    """Action label of a sequence name: the name up to the first space ("Walking 1" -> "Walking")."""
    end = name.find(" ")
    return name if end == -1 else name[:end]


# ---------------------------------------------------------------- MPI-INF-3DHP, 17 joints
MPI3DHP_JOINTS = (
    "head_top", "neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "pelvis", "spine", "head",
)
MPI3DHP_PARENTS = (16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1)
MPI3DHP_ROOT = 14
MPI3DHP_LEFT = (5, 6, 7, 11, 12, 13)
MPI3DHP_RIGHT = (2, 3, 4, 8, 9, 10)
# the 14 joints of PCK/AUC (pelvis, spine and head excluded), and the MATLAB joint groups
MPI3DHP_PCK_JOINTS = tuple(range(14))
MPI3DHP_PCK_GROUPS = (
    ("Head", (0,)), ("Neck", (1,)), ("Shoulder", (2, 5)), ("Elbow", (3, 6)), ("Wrist", (4, 7)),
    ("Hip", (8, 11)), ("Knee", (9, 12)), ("Ankle", (10, 13)),
)
MPI3DHP_TRAIN_SUBJECTS = tuple(f"S{i}" for i in range(1, 9))
MPI3DHP_TEST_SEQUENCES = tuple(f"TS{i}" for i in range(1, 7))
# image size used to normalise the 2D keypoints: 2048x2048 everywhere but the outdoor TS5/TS6
MPI3DHP_RES = 2048
MPI3DHP_RES_OUTDOOR = {"TS5": (1920, 1080), "TS6": (1920, 1080)}
# scene splits of the official evaluation spreadsheet
MPI3DHP_SCENES = {"GS": ("TS1", "TS2"), "noGS": ("TS3", "TS4"), "Outdoor": ("TS5", "TS6")}
# H36M-17 joint feeding each 3DHP joint (used only to write synthetic 3DHP files)
MPI3DHP_FROM_H36M = (10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9)
