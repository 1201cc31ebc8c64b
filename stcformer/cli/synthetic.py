"""``python -m stcformer.data.synthetic``: write synthetic motion data in the layouts of the real
data sets (the library is :mod:`stcformer.data.synthetic`)."""
from __future__ import annotations

import argparse

from stcformer.data.skeleton import H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS
from stcformer.data.synthetic import write_3dhp, write_h36m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stcformer.data.synthetic",
        description="Write synthetic motion data in the Human3.6M (VideoPose3D) layout: "
                    "data_3d_h36m.npz, data_2d_h36m_gt.npz and data_2d_h36m_synth_det.npz "
                    "(S1,S5,S6,S7,S8 train; S9,S11 test; all 15 actions). "
                    "With --layout 3dhp, data_train_3dhp.npz and data_test_3dhp.npz instead.")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--layout", choices=["h36m", "3dhp"], default="h36m", help="file layout (default h36m)")
    p.add_argument("--frames", type=int, default=300,
                   help="mean frames per take at 50 fps; takes vary from 0.75x to 1.25x (default 300)")
    p.add_argument("--takes", type=int, default=2, help="takes per action and subject (h36m, default 2)")
    p.add_argument("--subjects", default=",".join(H36M_TRAIN_SUBJECTS + H36M_TEST_SUBJECTS),
                   help="comma-separated subjects (h36m, default all seven)")
    p.add_argument("--noise", type=float, default=1.0, help="scale of the detector-like 2D noise (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    if args.frames < 2 or args.takes < 1:
        p.error("--frames must be >= 2 and --takes >= 1")
    writers = {  # one per file layout
        "h36m": lambda: write_h36m(args.out, [s for s in args.subjects.split(",") if s], args.frames,
                                   args.takes, args.seed, args.noise),
        "3dhp": lambda: write_3dhp(args.out, args.frames, seed=args.seed, noise=args.noise),
    }
    paths = writers[args.layout]()
    for path in paths.values():
        print(path)
    return 0
