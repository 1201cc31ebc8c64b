"""Write the 3D viewer of poses lifted earlier: one self-contained HTML page, nothing lifted again.

    python -m stcformer.view lifted/ --html view.html [--video clip.mp4] [--bones raw]

PATH is what python -m stcformer.infer wrote: an --out folder (its poses_3d.npz, or one
person_<id>/poses_3d.npz per person of --person all), or one poses_3d.npz. The page needs no
network: open it from the file system in any current browser. It shows every person as a 3D
skeleton on a ground plane at its root's fitted path (drag to orbit, right-drag to pan, wheel or
pinch to zoom; front/side/top views), play/pause, a frame slider and speed, the 2D keypoints of the
frame (on the video's frames with --video), and each person's bone lengths over time.
"""
from __future__ import annotations

import argparse
import os

from stcformer.cli.common import run
from stcformer.errors import UsageError


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m stcformer.view", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="an output folder of python -m stcformer.infer, or a poses_3d.npz")
    p.add_argument("--html", required=True, metavar="OUT.html", help="the page to write")
    p.add_argument("--video", default=None, metavar="CLIP",
                   help="the video the poses were lifted from: its frames under the 2D keypoints (small JPEGs in "
                        "the page, 320 px wide, at most 1500 frames)")
    p.add_argument("--bones", choices=("fixed", "raw"), default="fixed",
                   help="the 3D the page opens with: skeleton_3d (fixed, default) or the model's own (raw); a "
                        "checkbox switches")
    p.add_argument("--min-score", type=float, default=0.3,
                   help="2D joints scoring less are drawn as crosses (default 0.3, as infer's)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.html.lower().endswith((".html", ".htm")):
        raise UsageError(f"--html {args.html}: the viewer is a .html file")
    if args.video is not None:
        from stcformer.infer.video import check_file

        check_file(args.video)
    from stcformer.export.viewer import read_person_files, viewer_scene, write_viewer

    people = read_person_files(args.path)
    frames = None
    if args.video is not None:
        from stcformer.infer.video import viewer_frames

        frames = viewer_frames(args.video, len(people[0]["scores"]))
    title = os.path.basename(os.path.normpath(args.path))
    size = write_viewer(args.html, viewer_scene(people, title=title, min_score=args.min_score, video_frames=frames,
                                                bones=args.bones))
    n = len(people)
    print(f"{args.html}: {n} {'person' if n == 1 else 'people'}, {len(people[0]['scores'])} frames, "
          f"{size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
