"""The offline lifting run of a :class:`~stcformer.infer.job.LiftJob`: input in, pose tracks out.

:func:`run_job` reads the keypoint file (or probes the video and runs the 2D detector over it),
picks the people (one, or every track with ``person="all"``), fills their gaps, lifts each one
(``lift_xy``: centre or seq2seq windows, flip-averaged), smooths if asked, fits the root's path,
and writes every output file at the end (nothing is written before everything that can fail on
the input was checked). ``python -m stcformer.infer`` is this run behind flags.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, List

import numpy as np

from stcformer.errors import DataError, UsageError
from stcformer.infer.job import LiftJob

if TYPE_CHECKING:
    from stcformer.export.poses import LiftSettings, PoseTrack

@dataclass
class _Person:
    """One person to lift: the keypoints of all T frames and the span [first, last] lifted."""

    kp: object                # Keypoints (all frames)
    first: int
    last: int
    xy: np.ndarray = None     # filled 2D of the span
    gaps: object = None       # GapReport of the span
    label: str = ""


def _span(kp) -> tuple:
    seen = np.flatnonzero((kp.scores > 0).any(-1))
    return (int(seen[0]), int(seen[-1])) if len(seen) else (0, len(kp) - 1)


def _in_folder(folder: str, path) -> str:
    return os.path.join(folder, os.path.basename(os.fspath(path)))


@dataclass
class _Run:
    """What one offline run has worked out so far (the request stays in ``job``)."""

    job: LiftJob
    person: object
    every: bool
    detecting: bool
    source: str = ""
    size: tuple = None
    fps: float = None
    video_info: object = None
    kps: list = None
    frames: int = 0
    tds: int = 0
    stages: dict = field(default_factory=dict)  # stage -> (frames, seconds) for the frames/s summary
    written: list = field(default_factory=list)


def _probe_video(run: _Run) -> None:
    """--video alone: the detector and the video are checked (nothing decoded yet)."""
    from stcformer.infer.detectors import check_detector
    from stcformer.infer.video import probe

    job = run.job
    check_detector(job.detector)  # installed but cannot load (a wrong protobuf): stops here, saying why
    run.video_info = probe(job.video)
    if job.width is not None and (job.width, job.height) != run.video_info.size:
        raise UsageError(f"{job.video}: the video is {run.video_info.size[0]}x{run.video_info.size[1]}, "
                         f"not {job.width}x{job.height}: leave out --width/--height")
    run.size, run.fps = run.video_info.size, job.fps or run.video_info.fps


def _read_file(run: _Run) -> None:
    """--keypoints: the file read, its image size and frame rate settled."""
    from stcformer.infer.readers import read_keypoints, read_tracks

    job = run.job
    fmt_arg = None if job.format == "auto" else job.format
    if run.every:
        run.kps = read_tracks(job.keypoints, format=fmt_arg, joints=job.joints)
    else:
        run.kps = [read_keypoints(job.keypoints, format=fmt_arg, joints=job.joints, person=run.person)]
    kp0 = run.kps[0]
    size = (job.width, job.height) if job.width is not None else kp0.size
    fps = job.fps or kp0.fps
    if job.video and (size is None or fps is None):
        from stcformer.infer.video import probe

        run.video_info = probe(job.video)
        size = size or run.video_info.size
        fps = fps or run.video_info.fps
        kp0.notes.append(" and ".join(
            n for n, missing in (("image size", kp0.size is None and job.width is None),
                                 ("frame rate", kp0.fps is None and job.fps is None)) if missing)
            + f" from the video {job.video}")
    if size is None:
        raise UsageError(f"{job.keypoints}: the file does not give the image size: pass --width and --height")
    if fps is None and (job.tds is None or job.render or job.bvh):
        raise UsageError(f"{job.keypoints}: the file does not give the frame rate: pass --fps")
    run.size, run.fps = size, fps


def _detect(run: _Run):
    """Run the detector over the video; returns ({track: raw (T, J, 3) detections}, detector).
    ``person="all"`` finds every person (the ``multipose`` detector), else the one BlazePose follows."""
    from stcformer.infer.detectors import get_detector

    job, info = run.job, run.video_info
    name = "multipose" if run.every and job.detector == "blazepose" else job.detector
    detector = get_detector(name, **({"fps": info.fps} if name == "multipose" else {}))
    print(f"{job.video}: {info.describe()}; detecting with {detector.name}")
    if hasattr(detector, "detect_people") and run.every:
        people = detector.detect_people(info.frames(), total=info.count, progress=True)
        run.stages.update({k: (people.frames, v) for k, v in people.seconds.items()})
        tracks, T = people.tracks, people.frames
        print(f"{job.video}: {people.summary()}")
    else:
        bars = {}
        raw = detector.detect(info.frames(), total=info.count, progress=True, stages=bars)
        run.stages.update({k: (bar.n, bar.seconds) for k, bar in bars.items()})
        tracks, T = {0: raw}, len(raw)
    if not T:
        raise DataError(job.video, "no frames could be decoded")
    short = info.shortfall()  # a file cut short: said once, and the run goes on with what is there
    if short:
        print(f"warning: {job.video}: {short}", file=sys.stderr, flush=True)
    found = int(np.sum([(t[..., 2] > 0).any(-1) for t in tracks.values()], axis=0).astype(bool).sum()) if tracks else 0
    if not found:
        raise DataError(job.video, f"{detector.name} found no person in any of its {info.told(T)}")
    run.kps = _video_keypoints(run, tracks, detector, found, T)
    return tracks, detector


def _video_keypoints(run: _Run, tracks: dict, detector, found: int, T: int) -> list:
    from stcformer.infer.keypoints import convert_keypoints

    job, info = run.job, run.video_info
    who = (f"{len(tracks)} people" if len(tracks) != 1 else "a person") if detector.name == "multipose" else "a person"
    note = f"{detector.name} found {who} in {found} of {info.told(T)}"
    if run.every and detector.name != "multipose":
        note += " (it follows one person)"
    return [convert_keypoints(t[..., :2], t[..., 2], detector.joints, path=job.video, format="video", fps=run.fps,
                              size=run.size, track=tid, notes=[note] if i == 0 else [])
            for i, (tid, t) in enumerate(tracks.items())]


def _people(run: _Run) -> list:
    """The people to lift, their gaps filled; tracks without enough usable frames are skipped."""
    from stcformer.infer.gaps import fill_gaps

    people, skipped = [], []
    for kp in run.kps:
        first, last = _span(kp) if run.every else (0, len(kp) - 1)
        part = replace(kp, xy=kp.xy[first:last + 1], scores=kp.scores[first:last + 1], notes=[]) if run.every else kp
        try:
            xy, gaps = fill_gaps(part, run.job.min_score)
        except DataError as exc:
            if not run.every:
                raise
            skipped.append(f"track {kp.track} ({exc.problem})")
            continue
        people.append(_Person(kp, first, last, xy, gaps, label=f"person {kp.track}" if run.every else ""))
    if not people:
        raise DataError(run.source, "no track has enough usable frames: " + "; ".join(skipped))
    for note in run.kps[0].notes:
        print(f"{run.source}: {note}")
    for s in skipped:
        print(f"{run.source}: skipped {s}")
    for p in people:
        lead = f"{run.source}: {p.label}, frames {p.first}-{p.last}" if run.every else f"{run.source}: {len(p.kp)} frames"
        print(f"{lead}, {p.kp.format} file, {p.kp.joints} joints; {p.gaps}" if not run.detecting
              else f"{lead}, {p.kp.joints} joints; {p.gaps}")
    return people


def _lift_one(run: _Run, model, device, p: _Person) -> PoseTrack:
    """One person's lifted span, smoothed if asked, with its root's path."""
    from stcformer.export.poses import PoseTrack
    from stcformer.export.smoothing import jitter, smooth_poses, smoothing_window
    from stcformer.infer.pipeline import fitted_root, lift_xy

    job = run.job
    poses = lift_xy(model, p.xy, run.size, run.frames, run.tds, job.mode, job.batch_size, device=device,
                    amp=job.amp, progress=True)
    if job.smooth is not None:
        window = job.smooth or smoothing_window(run.fps)
        before = jitter(poses)
        poses = smooth_poses(poses, window)
        print(f"{p.label + ': ' if p.label else ''}smoothing (Savitzky-Golay, {window} frames, degree 2): jitter "
              f"(mean frame-to-frame acceleration) {before * 1000:.2f} -> {jitter(poses) * 1000:.2f} mm/frame^2")
    try:
        root = fitted_root(poses, p.xy, run.size, p.kp.scores[p.first:p.last + 1], p.gaps.filled, run.fps,
                           focal=job.focal)
    except ValueError as exc:
        raise DataError(run.source, f"{p.label + ': ' if p.label else ''}{exc}") from None
    from stcformer.infer.gaps import absent_frames

    track = PoseTrack(poses, p.xy, p.gaps.filled, root, p.kp.scores, first=p.first,
                      track=p.kp.track if run.every else None,
                      height=None if job.body_height == "raw" else job.body_height)
    # no pose where nobody is: frames more than max_gap from this person's own detections
    return track.without(absent_frames(p.kp.scores, fps=run.fps, max_gap=job.max_gap, min_score=job.min_score))


def _lift(run: _Run, model, people: list) -> list:
    import time

    import torch

    from stcformer.devices import pick_device
    from stcformer.infer.video import Stage

    job = run.job
    device = torch.device("cpu") if job.onnx else pick_device(job.device)  # ONNX Runtime runs on the CPU
    model = model.to(device)
    results = []
    lift = Stage("lift", sum(len(p.xy) for p in people))  # frames/s; predict_sequence's own bar counts batches
    for p in people:
        t0 = time.perf_counter()
        track = _lift_one(run, model, device, p)
        lift.add(time.perf_counter() - t0, len(track.poses))
        results.append((p, track))
    lift.close()
    run.stages["lift"] = (lift.n, lift.seconds)
    return results


def _write_person(run: _Run, track: PoseTrack, how: LiftSettings) -> None:
    """One person's files: in OUT, or in OUT/person_<id>/ (--json and --bvh by their file names) with --person all."""
    from stcformer.export.poses import write_pose_files

    job = run.job
    if not run.every:
        run.written += write_pose_files(job.out, track, how, job.json, job.bvh, job.bvh_root, bones=job.bones)
        return
    folder = os.path.join(job.out, f"person_{track.track}")
    run.written += write_pose_files(folder, track, how, job.json and _in_folder(folder, job.json),
                                    job.bvh and _in_folder(folder, job.bvh), job.bvh_root, bones=job.bones)


def _drawn(track, bones: str) -> tuple:
    """(2D keypoints, 3D poses) of a lifted span as drawn: the chosen bones, NaN where no pose."""
    poses, _ = track.bones(bones)
    kp = np.array(track.keypoints, dtype=np.float64)
    kp[~track.posed] = np.nan
    return kp, poses


def _render(run: _Run, results: list, background) -> None:
    import time

    from stcformer.export.render import render

    job = run.job
    t0 = time.perf_counter()
    log = (lambda m: print(m, file=sys.stderr))
    bg = job.video if run.detecting or (background and background[0] is not None) else None
    if background and background[0] is None:
        log(background[1])
    drawn = [_drawn(t, job.bones) for _, t in results]  # (2D, 3D) with nothing where a person has no pose
    if run.every:
        n = render(job.render, [t.full(kp) for (kp, _), (_, t) in zip(drawn, results)],
                   [t.full(poses) for (_, poses), (_, t) in zip(drawn, results)], run.fps, run.size,
                   filled=[t.full(t.filled, False) for _, t in results], video=bg, log=log,
                   labels=[p.label for p, _ in results])
    else:
        (kp, poses), t = drawn[0], results[0][1]
        n = render(job.render, kp, poses, run.fps, run.size, filled=t.filled, video=bg, log=log)
    run.stages["render"] = (n, time.perf_counter() - t0)
    run.written.append(f"{job.render} ({n} frames at {run.fps:g} fps)")


def _write_viewer(run: _Run, results: list, how) -> None:
    """The HTML viewer of every lifted person (with the video's frames for --html-video)."""
    import time

    from stcformer.export.poses import pose_arrays
    from stcformer.export.viewer import viewer_scene, write_viewer

    job = run.job
    t0 = time.perf_counter()
    frames = None
    if job.html_video:
        from stcformer.infer.video import viewer_frames

        frames = viewer_frames(job.video, len(run.kps[0]))
    scene = viewer_scene([pose_arrays(t, how) for _, t in results], title=os.path.basename(os.fspath(run.source)),
                         min_score=job.min_score, video_frames=frames, bones=job.bones)
    size = write_viewer(job.html, scene)
    run.stages["html"] = (len(run.kps[0]), time.perf_counter() - t0)
    run.written.append(f"{job.html} ({size / 1e6:.2f} MB)")


def _write_outputs(run: _Run, results: list, background, tracks, detector) -> None:
    """Every output file (nothing was written before this point)."""
    from stcformer.export.poses import LiftSettings

    job = run.job
    T = len(run.kps[0])
    if run.detecting:
        from stcformer.infer.coco_json import write_coco_tracks

        kp_json = os.path.join(job.out, "keypoints_2d.json")
        write_coco_tracks(kp_json, tracks, run.size, run.fps, joints=detector.joints,
                          description=f"{detector.description}, from {os.path.basename(job.video)}")
        run.written.append(kp_json)
    how = LiftSettings(run.fps, run.size, run.frames, run.tds, job.mode, float(job.focal or max(run.size)))
    for _, track in results:
        _write_person(run, track, how)
    if job.render:
        _render(run, results, background)
    if job.html:
        _write_viewer(run, results, how)
    who = f"{len(results)} {'person' if len(results) == 1 else 'people'}, " if run.every else ""
    print(f"{who}{T} frames lifted ({job.mode}, window {run.frames}, tds {run.tds}) -> {', '.join(run.written)}")
    print("frames/s: " + ", ".join(f"{k} {n / s:.1f}" if s > 0 else f"{k} -" for k, (n, s) in run.stages.items()))


@dataclass
class JobResult:
    """What a run gave: one :class:`~stcformer.export.poses.PoseTrack` per lifted person, the
    files written, and (frames, seconds) per stage (decode, detect, lift, render)."""

    tracks: List
    written: List[str]
    stages: dict


def run_job(job: LiftJob) -> JobResult:
    """Run ``job`` (checked first, see :meth:`LiftJob.check`); prints what it found and did."""
    job = job.check()
    run = _Run(job, job.person, every=job.every, detecting=job.detecting)
    if job.render:
        from stcformer.export.render import check_output
        check_output(job.render)  # .mp4 without ffmpeg stops here
    from stcformer.infer.pipeline import check_window, lifting_model, lifting_window, warn_if_synthetic
    from stcformer.model.checkpoint import check_joints

    if run.detecting:
        _probe_video(run)
    else:
        _read_file(run)
    run.source = job.video if run.detecting else job.keypoints
    background = None
    if job.render and job.video and not run.detecting:
        from stcformer.export.render import open_video
        background = open_video(job.video)  # unreadable video: stops here (probe checked a detected one)
    model = lifting_model(job.model_file, backend=job.backend, runtime=job.runtime)
    check_joints(model, job.model_file)
    run.frames, run.tds = lifting_window(model, run.fps, job.frames, job.tds)
    check_window(model, run.frames)  # an ONNX file exported for another window length
    if job.runtime == "torch":
        warn_if_synthetic(model)
    tracks = detector = None
    if run.detecting:
        tracks, detector = _detect(run)
    results = _lift(run, model, _people(run))
    _write_outputs(run, results, background, tracks, detector)
    return JobResult([t for _, t in results], run.written, run.stages)


__all__ = ["run_job", "JobResult"]
