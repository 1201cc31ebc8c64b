"""Train STCFormer.

    python -m stcformer.train                       # quick demo on synthetic data (CPU, minutes)
    python -m stcformer.train --data-dir DIR -f 27 -s 3 --out runs/h36m27   # the official recipe
    torchrun --nproc-per-node 4 -m stcformer.train --data-dir DIR ...       # several processes

Defaults follow the official recipe (Adam with amsgrad, lr 1e-3, lr *= 0.96 after every epoch,
seq2seq MPJPE loss on every frame and joint, every window also mirrored, batches of b//s windows
on Human3.6M, the test set scored after every epoch). Without --data-dir, synthetic Human3.6M-layout
data is generated once into a cache folder and a small, quick configuration is used.

On CUDA the default step is the fast one: bf16 autocast (TF32 for float32 matmuls), the model under
torch.compile, fused Adam, training windows gathered on the GPU, and no host synchronisation per
step (the loss is checked every --check-every steps; the first non-finite step is still reported
exactly). On a CPU the defaults are float32, eager, a check every step. The per-epoch test always
runs in float32 unless --eval-amp says otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

from stcformer.cli.common import EXIT_BAD_INPUT, check_backend, run, warn_slow_cpu_amp
from stcformer.devices import pick_device
from stcformer.errors import STCFormerError, UsageError
from stcformer.evaluation.benchmarks import BENCHMARKS, get_benchmark
from stcformer.model.modules import check_config
from stcformer.choices import AMP_CHOICES, Recompute
from stcformer.train.config import TrainConfig
from stcformer.train.distributed import ProcessGroup, world_info
from stcformer.train.loop import Trainer
from stcformer.train.loss_log import CHECK_EVERY_CUDA, TrainingStopped
from stcformer.train.state import read_resume_state
from stcformer.train.step import step_batch_size

# the quick configuration used when no --data-dir is given (synthetic data, CPU, a few minutes)
# (one CPU thread: ops this small gain little from more, and lose much when cores are shared)
QUICK = dict(frames=9, batch_size=384, stride=6, tds=3, layers=2, d_hid=64, lr=4e-3,
             lr_decay=0.9, epochs=6, threads=1)

EXIT_NAN = 3


# ---------------------------------------------------------------- flags
def _epilog() -> str:
    q = QUICK
    return ("Quick configuration (no --data-dir): synthetic data in $STCFORMER_CACHE or "
            "~/.cache/stcformer, "
            f"-f {q['frames']} --tds {q['tds']} -b {q['batch_size']} -s {q['stride']} "
            f"--layers {q['layers']} --d-hid {q['d_hid']} --lr {q['lr']} --lr-decay {q['lr_decay']} "
            f"--epochs {q['epochs']} --threads {q['threads']}; a few minutes on a CPU. Any flag given "
            "overrides it.\n"
            "Official recipe (with --data-dir; the official script runs 79 epochs): "
            + "; ".join(f"{b.name}: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in b.recipe.items())
                        for b in BENCHMARKS.values()) + ".\n"
            "Outputs in --out: metrics.json, curves.png, per_action.png, last.pth, best.pth.")


def _add_data_and_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=list(BENCHMARKS), default="h36m", help="dataset (default h36m)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the npz files ("
                        + "; ".join(f"{q.name}: {q.data_files}" for q in BENCHMARKS.values())
                        + "); default: synthetic data")
    p.add_argument("-k", "--keypoints", default=None,
                   help="2D keypoints file suffix (default cpn_ft_h36m_dbb; synth_det for synthetic data)")
    p.add_argument("-f", "--frames", type=int, default=None, help="window length T (default 27)")
    p.add_argument("-b", "--batch-size", type=int, default=None,
                   help="batch size; on h36m a step takes b//s windows, as in the official code "
                        "(default 128); with several processes, the global batch")
    p.add_argument("-s", "--stride", type=int, default=None,
                   help="one training window per s frames (default 3; 3dhp official: 1)")
    p.add_argument("--tds", type=int, default=None,
                   help="temporal downsampling inside a window (default 3 for h36m; 3dhp always 1)")
    p.add_argument("--layers", type=int, default=None, help="STC blocks (default 6)")
    p.add_argument("--d-hid", type=int, default=None, help="model width C (default 256)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--lr-decay", type=float, default=None, help="lr factor after each epoch (default 0.96)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 80)")
    p.add_argument("--no-flip-augment", action="store_true", help="do not add mirrored training windows")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42, as the official code)")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>_<frames>_<time>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last.pth (its settings are used; --epochs may "
                        "extend it)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from these weights (official or ours); the width and depth must match")
    p.add_argument("--save-every", type=int, default=0, metavar="STEPS",
                   help="also save last.pth every STEPS steps inside an epoch (default 0: at epoch ends)")


def _add_step_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amp", choices=AMP_CHOICES, default=None,
                   help="training precision: bf16 autocast, fp16 autocast with a gradient scaler, or none "
                        "(float32) (default bf16 on CUDA, none on CPU)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, let float32 matmuls and convolutions use TF32 (default on; no effect on CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the model under torch.compile; the first step's time (compilation included) "
                        "is printed (default on with CUDA, off on CPU)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="with --compile on CUDA, replay the compiled forward and backward as CUDA graphs "
                        "(torch.compile mode reduce-overhead): less launch overhead for short windows "
                        "(default off)")
    p.add_argument("--recompute", nargs="?", const="blocks", default=None, choices=[m.value for m in Recompute],
                   help="recompute in the backward instead of keeping: 'blocks' (the value of a bare "
                        "--recompute): activation checkpointing of every block, least memory, about one "
                        "more forward per step; 'mlp': the CPU MLP's hidden only, one more GEMM per block; "
                        "'none': keep everything (the default)")
    p.add_argument("--check-every", type=int, default=None, metavar="STEPS",
                   help="check the loss for NaN/inf every STEPS steps (and before every save and at epoch "
                        "ends); the first bad step is still named exactly (default 50 on CUDA, 1 on CPU)")
    p.add_argument("--eval-amp", choices=AMP_CHOICES, default="none",
                   help="precision of the test after each epoch (default none: float32, the official numbers)")
    p.add_argument("--backend", default=None, help="stc_attention backend (auto, reference, cpp, triton, cuda)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default cuda if available, else cpu); under torchrun with "
                        "cuda each process uses cuda:LOCAL_RANK")
    p.add_argument("--eval-batch-size", type=int, default=256, help="test windows per forward (default 256)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: torch's; 1 in the quick configuration)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the final metrics JSON to OUT (it is always in --out/metrics.json)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m stcformer.train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=_epilog())
    _add_data_and_model_flags(p)
    _add_run_flags(p)
    _add_step_flags(p)
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the flags: the unset ones filled from the quick configuration or the
    dataset's official recipe, all of them checked (before anything is written)."""
    benchmark = get_benchmark(args.dataset)
    values = dict(vars(args))
    base = QUICK if args.data_dir is None else benchmark.recipe
    for key, value in base.items():
        if values[key] is None:
            values[key] = value
    if values["keypoints"] is None:
        values["keypoints"] = benchmark.synthetic_keypoints if args.data_dir is None else benchmark.keypoints
    if values["out"] is None:
        values["out"] = os.path.join("runs", f"{args.dataset}_{values['frames']}_{time.strftime('%Y%m%d_%H%M%S')}")
    return check(TrainConfig(**values))


def check(config: TrainConfig) -> TrainConfig:
    """``config`` with the benchmark's fixed tds, once every setting is checked."""
    benchmark = get_benchmark(config.dataset)
    if benchmark.fixed_tds is not None:
        config = dataclasses.replace(config, tds=benchmark.fixed_tds)
    for key in ("frames", "batch_size", "stride", "tds", "layers", "d_hid", "epochs"):
        if getattr(config, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be positive")
    if config.frames % 2 == 0:
        raise UsageError(f"--frames must be odd (the window is centred), got {config.frames}")
    if config.check_every is not None and config.check_every < 1:
        raise UsageError("--check-every must be positive")
    try:
        check_config(config.layers, config.d_hid, benchmark.family)
    except UsageError as e:
        raise UsageError(f"--layers/--d-hid: {e}") from None
    step_batch_size(benchmark, config.batch_size, config.stride, 1)
    return config


def resolve_device_defaults(config: TrainConfig, device: torch.device) -> TrainConfig:
    """Fill --amp, --compile and --check-every from the device: fast on CUDA, as before on CPU."""
    cuda = device.type == "cuda"
    config = dataclasses.replace(
        config, amp=config.amp if config.amp is not None else "bf16" if cuda else "none",
        compile=config.compile if config.compile is not None else cuda,
        check_every=config.check_every if config.check_every is not None else CHECK_EVERY_CUDA if cuda else 1)
    if config.cuda_graphs and not (cuda and config.compile):
        raise UsageError("--cuda-graphs needs a CUDA device and --compile "
                         f"(device {device}, compile {'on' if config.compile else 'off'})")
    return config


def resumed_config(args: argparse.Namespace, saved: TrainConfig) -> TrainConfig:
    """The saved run's config, with this command's --epochs (if given) and its folder."""
    return check(dataclasses.replace(saved, epochs=args.epochs or saved.epochs, out=os.path.abspath(args.resume),
                                     init=None, resume=os.path.join(args.resume, "last.pth")))


def main(argv=None) -> int:
    args = parse_args(argv)
    world, _, local_rank, local_world = world_info()
    try:
        # every flag is checked before a process group exists and before anything is written
        device = pick_device(args.device, world, local_rank, local_world)
        resume = None
        if args.resume:
            saved, resume = read_resume_state(args.resume, world)
            config = resumed_config(args, saved)
        else:
            config = resolve(args)
        config = resolve_device_defaults(config, device)
        check_backend(config.backend, device)
        group = ProcessGroup(device)
        if group.main:
            warn_slow_cpu_amp(device.type, config.amp)
        try:
            Trainer(config, group, resume).run()
        finally:
            group.close()
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_NAN
    except STCFormerError:
        # under torchrun every process meets the same bad input: the first one of each machine says so
        if world > 1 and local_rank != 0:
            return EXIT_BAD_INPUT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
