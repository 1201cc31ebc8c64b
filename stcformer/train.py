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
import datetime
import math
import os
import random
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .cli import AMP_CHOICES, EXIT_BAD_INPUT, UsageError, amp_dtype, run, warn_slow_cpu_amp
from .errors import STCFormerError
from .io import write_json
from .data.dataset import PoseData, training_windows
from .evaluate import evaluate, load_data, mean_pose_report
from .metrics import mpjpe

# the official recipe (used with --data-dir); README commands: -f 27 or 81, -s 3, tds 3
OFFICIAL = dict(frames=27, batch_size=128, stride=3, tds=3, layers=6, d_hid=256, lr=1e-3,
                lr_decay=0.96, epochs=80)
# the author's 3DHP command: --frames 81 -b 128 -s 1 (consecutive frames)
OFFICIAL_3DHP = dict(OFFICIAL, frames=81, stride=1, tds=1)
# the quick configuration used when no --data-dir is given (synthetic data, CPU, a few minutes)
# (one CPU thread: ops this small gain little from more, and lose much when cores are shared)
QUICK = dict(frames=9, batch_size=384, stride=6, tds=3, layers=2, d_hid=64, lr=4e-3,
             lr_decay=0.9, epochs=6, threads=1)
# the synthetic set of the quick configuration: S1..S11, 15 actions, one take of about 64 frames
# each, 4 cameras (about 19k training and 7.7k test frames)
SYNTHETIC = dict(frames=64, takes=1)

EXIT_NAN = 3
# the loss is checked for NaN/inf every this many steps on CUDA (one host sync each); 1 on CPU
CHECK_EVERY_CUDA = 50
# torch.compile backend of --compile (tests use "aot_eager" to check the wiring without codegen)
COMPILE_BACKEND = "inductor"


class TrainingStopped(Exception):
    """Training cannot go on (non-finite loss); the message is one line."""


# ---------------------------------------------------------------- arguments
def parse_args(argv=None) -> argparse.Namespace:
    q = QUICK
    p = argparse.ArgumentParser(
        prog="python -m stcformer.train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=(
            "Quick configuration (no --data-dir): synthetic data in $STCFORMER_CACHE or "
            "~/.cache/stcformer, "
            f"-f {q['frames']} --tds {q['tds']} -b {q['batch_size']} -s {q['stride']} "
            f"--layers {q['layers']} --d-hid {q['d_hid']} --lr {q['lr']} --lr-decay {q['lr_decay']} "
            f"--epochs {q['epochs']} --threads {q['threads']}; a few minutes on a CPU. Any flag given "
            "overrides it.\n"
            "Official recipe (with --data-dir): "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in OFFICIAL.items())
            + " (the official script runs 79 epochs); 3dhp: -f 81 -s 1, consecutive frames.\n"
            "Outputs in --out: metrics.json, curves.png, per_action.png, last.pth, best.pth."))
    p.add_argument("--dataset", choices=["h36m", "3dhp"], default="h36m", help="dataset (default h36m)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the npz files (h36m: data_3d_h36m.npz, data_2d_h36m_<k>.npz; "
                        "3dhp: data_train_3dhp.npz, data_test_3dhp.npz); default: synthetic data")
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
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42, as the official code)")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>_<frames>_<time>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last.pth (its settings are used; --epochs may "
                        "extend it)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from these weights (official or ours); the width and depth must match")
    p.add_argument("--save-every", type=int, default=0, metavar="STEPS",
                   help="also save last.pth every STEPS steps inside an epoch (default 0: at epoch ends)")
    p.add_argument("--amp", choices=AMP_CHOICES, default=None,
                   help="training precision: bf16 autocast, fp16 autocast with a gradient scaler, or none "
                        "(float32) (default bf16 on CUDA, none on CPU)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, let float32 matmuls and convolutions use TF32 (default on; no effect on CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the model under torch.compile; the first step's time (compilation included) "
                        "is printed (default on with CUDA, off on CPU)")
    p.add_argument("--recompute", action="store_true",
                   help="activation checkpointing of every block: less memory, about one more forward "
                        "per step (default off)")
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
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the unset flags from the quick or the official configuration."""
    base = QUICK if args.data_dir is None else OFFICIAL_3DHP if args.dataset == "3dhp" else OFFICIAL
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.keypoints is None:
        args.keypoints = "synth_det" if args.data_dir is None else "cpn_ft_h36m_dbb"
    if args.dataset == "3dhp":
        args.tds = 1  # consecutive frames
    for key in ("frames", "batch_size", "stride", "tds", "layers", "d_hid", "epochs"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be positive")
    if args.frames % 2 == 0:
        raise UsageError(f"--frames must be odd (the window is centred), got {args.frames}")
    if args.check_every is not None and args.check_every < 1:
        raise UsageError("--check-every must be positive")
    return args


def resolve_device_defaults(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    """Fill --amp, --compile and --check-every from the device: fast on CUDA, as before on CPU."""
    cuda = device.type == "cuda"
    if args.amp is None:
        args.amp = "bf16" if cuda else "none"
    if args.compile is None:
        args.compile = cuda
    if args.check_every is None:
        args.check_every = CHECK_EVERY_CUDA if cuda else 1
    return args


# ---------------------------------------------------------------- distributed helpers
def pick_device(device_arg: Optional[str], world: int = 1, local_rank: int = 0,
                local_world: int = 1) -> torch.device:
    """The device of this process: ``--device`` if given, else cuda when available, else cpu.

    With CUDA and several processes (torchrun), process ``LOCAL_RANK`` of a machine uses
    ``cuda:LOCAL_RANK``. Raises :class:`UsageError` (one line) when CUDA is asked for and absent,
    when an index names no visible GPU, and when a machine runs more processes than it has GPUs.
    """
    name = device_arg or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__} sees no GPU); "
                         "use --device cpu")
    visible = torch.cuda.device_count()
    index = device.index
    if world > 1:
        if index is not None and local_world > 1:
            raise UsageError(f"--device {name} puts all {local_world} processes of this machine on one GPU; "
                             "use --device cuda (process i uses cuda:LOCAL_RANK)")
        if index is None:
            if local_world > visible or local_rank >= visible:
                raise UsageError(f"{max(local_world, local_rank + 1)} processes were started on this machine "
                                 f"but only {visible} GPU(s) are visible: start at most {visible} per machine "
                                 "(torchrun --nproc-per-node), or train with --device cpu")
            index = local_rank
    elif index is None:
        index = torch.cuda.current_device()
    if index >= visible:
        raise UsageError(f"--device {name}: only {visible} GPU(s) are visible (cuda:0 to cuda:{visible - 1})")
    return torch.device("cuda", index)


class Dist:
    """Rank, world size and the few collectives the loop needs (no-ops in one process)."""

    def __init__(self, device_arg: Optional[str]):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        # every check that can fail runs before the process group exists and before any write
        self.device = pick_device(device_arg, self.world, self.local_rank, self.local_world)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
                dist.init_process_group("nccl", timeout=datetime.timedelta(hours=2), device_id=self.device)
            else:
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=2))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def sum_rows(self, rows):
        """Element-wise sum over the processes of a list of equal-length rows of floats (float64)."""
        if self.world == 1:
            return [list(r) for r in rows]
        t = torch.tensor(rows, dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj):
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------- RNG state (weights_only friendly)
def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))


# ---------------------------------------------------------------- data
def synthetic_dir(dataset: str) -> str:
    root = os.environ.get("STCFORMER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "stcformer")
    return os.path.join(root, f"synthetic_{dataset}_v1_f{SYNTHETIC['frames']}_t{SYNTHETIC['takes']}")


def ensure_synthetic(dataset: str, d: Dist) -> str:
    """Generate the synthetic data once (rank 0; files appear atomically); return its folder."""
    folder = synthetic_dir(dataset)
    marker = os.path.join(folder, "data_3d_h36m.npz" if dataset == "h36m" else "data_test_3dhp.npz")
    if d.main and not os.path.exists(marker):
        from .data import synthetic
        print(f"generating synthetic {dataset} data in {folder} (once)", flush=True)
        if dataset == "h36m":
            synthetic.write_h36m(folder, frames=SYNTHETIC["frames"], takes=SYNTHETIC["takes"])
        else:
            synthetic.write_3dhp(folder, frames=SYNTHETIC["frames"])
    d.barrier()
    return folder


def step_batch_size(args, world: int) -> int:
    """Windows per optimizer step and process: b//s on Human3.6M (official), b on 3DHP."""
    total = args.batch_size // args.stride if args.dataset == "h36m" else args.batch_size
    if total < 1:
        raise UsageError(f"-b {args.batch_size} // -s {args.stride} leaves no window per step")
    return max(1, total // world)


# ---------------------------------------------------------------- model
def build_model(args, device):
    from .model import STCFormer
    family = "3dhp" if args.dataset == "3dhp" else "h36m"
    if args.d_hid % 2 or (args.d_hid // 2) % (8 if family == "h36m" else 4):
        raise UsageError(f"--d-hid {args.d_hid}: half the width must be divisible by the "
                         f"{8 if family == 'h36m' else 4} heads")
    model = STCFormer(layers=args.layers, d_hid=args.d_hid, family=family, backend=args.backend)
    if args.init:
        from .checkpoint import CheckpointError, load_checkpoint
        src = load_checkpoint(args.init)
        mine = {k: v.shape for k, v in model.state_dict().items()}
        for key in ("layers", "d_hid", "num_heads"):
            if src.config[key] != model.config[key]:
                raise CheckpointError(f"{args.init}: checkpoint has {key}={src.config[key]}, "
                                      f"this run {key}={model.config[key]}")
        if {k: v.shape for k, v in src.state_dict().items()} != mine:
            raise CheckpointError(f"{args.init}: parameters do not match this model")
        model.load_state_dict(src.state_dict())
    if getattr(args, "recompute", False):
        if not hasattr(model, "set_recompute"):
            raise UsageError("--recompute: this STCFormer has no activation checkpointing (set_recompute)")
        model.set_recompute(True)
    return model.to(device)


def make_optimizer(params, lr: float, device) -> torch.optim.Adam:
    """The official optimizer: Adam with amsgrad (betas, eps and no weight decay as torch's defaults).

    On CUDA it runs as one fused kernel (``fused=True``); on other devices torch's default
    implementation, as before.
    """
    fused = dict(fused=True) if torch.device(device).type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr, amsgrad=True, **fused)


def compile_model(module: torch.nn.Module, backend: Optional[str] = None,
                  fullgraph: bool = False) -> torch.nn.Module:
    """``torch.compile`` as the training loop uses it: static shapes (a full batch and the shorter
    last batch of an epoch each get their own graph), ``backend`` default ``COMPILE_BACKEND``
    (inductor). stc_attention is a registered custom op, so an STCFormer compiles with
    ``fullgraph=True``; the loop leaves it False, since DDP splits the graph at its buckets."""
    return torch.compile(module, backend=backend or COMPILE_BACKEND, dynamic=False, fullgraph=fullgraph)


def make_train_step(model, optimizer, *, amp: str = "none", device=None, scaler=None):
    """One training step as ``python -m stcformer.train`` runs it, for the loop and for benchmarks.

    Signature::

        make_train_step(model, optimizer, *, amp="none", device=None, scaler=None)
            -> step(inputs2d, targets3d) -> loss

    Args:
        model: the module to train (an ``STCFormer``, or it wrapped in DDP and/or ``torch.compile``),
            in training mode.
        optimizer: e.g. :func:`make_optimizer` (Adam with amsgrad; fused on CUDA).
        amp: ``"bf16"`` or ``"fp16"`` (forward under ``torch.autocast`` of that dtype, the loss in
            float32) or ``"none"`` (float32).
        device: where the model runs (default: its first parameter's device); picks the autocast type.
        scaler: for ``"fp16"``, a ``torch.amp.GradScaler`` (created if None; ``step.scaler`` holds it).

    ``step(inputs2d, targets3d)`` takes (B, T, J, 2) keypoints and (B, T, J, 3) targets on the
    device, runs the forward, the official seq2seq MPJPE loss (mean joint distance over every
    window, frame and joint), the backward and the optimizer step, and returns the loss as a
    detached 0-dim float32 tensor on the device. It never synchronises with the host: check the
    loss when you want to (the training loop does every ``--check-every`` steps).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = amp_dtype(amp)
    if amp == "fp16":
        scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type)
    elif scaler is not None:
        raise ValueError("a GradScaler is only used with amp='fp16'")

    def step(inputs2d: torch.Tensor, targets3d: torch.Tensor) -> torch.Tensor:
        if dtype is None:
            loss = mpjpe(model(inputs2d), targets3d)
        else:
            with torch.autocast(device.type, dtype=dtype):
                pred = model(inputs2d)
            loss = mpjpe(pred.float(), targets3d)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss.detach()

    step.scaler = scaler
    return step


def set_tf32(device: torch.device, enabled: bool) -> None:
    """On CUDA, allow (or forbid) TF32 for float32 matmuls and convolutions; nothing on other devices."""
    if device.type != "cuda":
        return
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled


# ---------------------------------------------------------------- the loop
def _nonfinite(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite" if math.isinf(value) else "NaN on another process"


class LossLog:
    """Per-step losses kept on the device between checks; a check syncs once for all of them.

    ``add(loss, n)`` records a step's 0-dim loss tensor and its window count. ``check()`` copies
    the pending losses to the host in one transfer, sums ``loss * n`` and ``n`` over the
    processes step by step (the same float64 arithmetic as a per-step check) and returns the
    per-step totals in order, or raises :class:`TrainingStopped` naming the first step whose
    loss is NaN or infinite on any process.
    """

    def __init__(self, d: "Dist"):
        self.d = d
        self.losses, self.sizes, self.steps = [], [], []

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        self.losses.append(loss)
        self.sizes.append(n)
        self.steps.append(step)

    def check(self, epoch: int, lr: float, last: str):
        if not self.losses:
            return []
        values = torch.stack(self.losses).float().cpu().tolist()  # the one host sync
        rows = self.d.sum_rows([[v * n, float(n), 0.0 if math.isfinite(v) else 1.0]
                                for v, n in zip(values, self.sizes)])
        steps = self.steps
        self.losses, self.sizes, self.steps = [], [], []
        for value, step, (total, count, bad) in zip(values, steps, rows):
            if bad:
                raise TrainingStopped(
                    f"loss is {_nonfinite(value)} at epoch {epoch}, step {step + 1} (lr {lr:.3g}); stopped"
                    + (f", the last good state is {last}" if os.path.exists(last) else ""))
        return [(total, int(count)) for total, count, _ in rows]


def train(args) -> dict:
    d = Dist(args.device)
    try:
        return _train(args, d)
    finally:
        d.close()


def _state_for_resume(args, model, optimizer, scaler, epoch, step, lr, history, best, mean_pose,
                      loss_sum, loss_count, d: Dist) -> dict:
    rngs = d.gather(rng_state())
    return {"args": vars(args), "epoch": epoch, "step": step, "lr": lr, "history": history, "best": best,
            "mean_pose_p1_mm": mean_pose, "loss_sum": loss_sum, "loss_count": loss_count,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "rng": rngs, "world": d.world}


def _train(args, d: Dist) -> dict:
    resume_state = None
    if args.resume:
        from .checkpoint import read_checkpoint
        path = os.path.join(args.resume, "last.pth")
        raw = read_checkpoint(path)
        resume_state = raw.get("extra") or {}
        if "optimizer" not in resume_state:
            raise UsageError(f"{path}: holds no training state to resume from")
        saved = dict(resume_state["args"])
        epochs = args.epochs
        for key, value in saved.items():
            setattr(args, key, value)
        if saved.get("amp", "none") is None:  # saved before --amp had a device default: float32
            args.amp = "none"
        args.epochs = epochs or saved["epochs"]
        args.out, args.resume, args.init = os.path.abspath(os.path.dirname(path)), path, None
        if resume_state.get("world", 1) != d.world:
            raise UsageError(f"{path}: saved by {resume_state.get('world')} processes, resumed with {d.world}")
    args = resolve_device_defaults(resolve(args), d.device)
    set_tf32(d.device, args.tf32)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    data_dir = args.data_dir or ensure_synthetic(args.dataset, d)
    data: PoseData = load_data(args.dataset, data_dir, args.keypoints, train=True)
    windows = training_windows(data, args.frames, args.tds, args.stride, augment=not args.no_flip_augment)
    per_step = step_batch_size(args, d.world)
    model = build_model(args, d.device)
    optimizer = make_optimizer(model.parameters(), args.lr, d.device)
    scaler = torch.amp.GradScaler(d.device.type) if args.amp == "fp16" else None
    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if args.compile:
        net = compile_model(net)
    train_step = make_train_step(net, optimizer, amp=args.amp, device=d.device, scaler=scaler)
    # on CUDA the windows are gathered on the GPU from arrays uploaded once (the same values)
    on_device = d.device.type == "cuda"
    device_windows = windows.to_device(d.device) if on_device else None

    out = args.out or os.path.join("runs", f"{args.dataset}_{args.frames}_{time.strftime('%Y%m%d_%H%M%S')}")
    out = d.broadcast(os.path.abspath(out))
    args.out = out
    history, best, lr = [], math.inf, args.lr
    start_epoch, start_step, loss_sum, loss_count = 1, 0, 0.0, 0
    if resume_state is not None:
        from .checkpoint import load_checkpoint
        model.load_state_dict(load_checkpoint(args.resume).state_dict())
        optimizer.load_state_dict(resume_state["optimizer"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        history, best, lr = list(resume_state["history"]), resume_state["best"], resume_state["lr"]
        start_epoch, start_step = resume_state["epoch"], resume_state["step"]
        loss_sum, loss_count = resume_state["loss_sum"], resume_state["loss_count"]
        mean_pose = resume_state["mean_pose_p1_mm"]
        set_rng_state(resume_state["rng"][d.rank])
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        mean_pose = mean_pose_report(data, args.frames, args.tds)["p1_mm"] if d.main else None
        mean_pose = d.broadcast(mean_pose)
    if d.main:
        os.makedirs(out, exist_ok=True)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{args.dataset} from {data_dir} ({args.keypoints}): {len(data.train)} train / {len(data.test)} "
              f"test sequences, {len(windows)} training windows per epoch, {per_step * d.world} per step")
        print(f"model: {args.layers} layers, width {args.d_hid}, {n_params / 1e6:.2f}M parameters; "
              f"T={args.frames} tds={args.tds}; {d.world} process(es) on {d.device}; output {out}")
        print(f"step: amp {args.amp}, torch.compile {'on' if args.compile else 'off'}, recompute "
              f"{'on' if args.recompute else 'off'}, Adam{' (fused)' if d.device.type == 'cuda' else ''}, "
              f"loss checked every {args.check_every} step(s)"
              + (f", TF32 {'on' if args.tf32 else 'off'}" if d.device.type == "cuda" else ""))
        print(f"P1 of the mean training pose: {mean_pose:.2f} mm", flush=True)
        warn_slow_cpu_amp(d.device.type, args.amp)

    from torch.utils.data import DistributedSampler
    sampler = DistributedSampler(range(len(windows)), num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=args.seed, drop_last=False)
    unit = data.unit_to_mm
    last_path = os.path.join(out, "last.pth")
    pending = LossLog(d)
    first_step = True
    report = text = None
    for epoch in range(start_epoch, args.epochs + 1):
        t0 = time.time()
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        order_dev = torch.from_numpy(order).to(d.device) if on_device else None
        steps = (len(order) + per_step - 1) // per_step
        if epoch != start_epoch or resume_state is None:
            start_step, loss_sum, loss_count = 0, 0.0, 0
        net.train()
        bar = tqdm(range(start_step, steps), desc=f"epoch {epoch}", unit="step", initial=start_step,
                   total=steps, disable=None if d.main else True, leave=False, mininterval=1.0)
        for step in bar:
            if first_step:
                t_first = time.time()
            if on_device:
                idx = order_dev[step * per_step:(step + 1) * per_step]
                x, y = device_windows.inputs(idx), device_windows.targets(idx)
            else:
                idx = order[step * per_step:(step + 1) * per_step]
                x = windows.inputs(idx).to(d.device, non_blocking=True)
                y = windows.targets(idx).to(d.device, non_blocking=True)
            pending.add(train_step(x, y), len(idx), step)
            if first_step:
                first_step = False
                if args.compile:
                    if d.device.type == "cuda":
                        torch.cuda.synchronize(d.device)
                    if d.main:
                        tqdm.write(f"torch.compile: the first step took {time.time() - t_first:.1f} s "
                                   "(compilation included)", file=sys.stdout)
            save_now = bool(args.save_every and (step + 1) % args.save_every == 0 and step + 1 < steps)
            if len(pending) >= args.check_every or save_now or step + 1 == steps:
                for total, count in pending.check(epoch, lr, last_path):
                    loss_sum, loss_count = loss_sum + total, loss_count + count
                bar.set_postfix(loss_mm=f"{loss_sum / max(loss_count, 1) * unit:.1f}", refresh=False)
            if save_now:
                state = _state_for_resume(args, model, optimizer, scaler, epoch, step + 1, lr, history, best,
                                          mean_pose, loss_sum, loss_count, d)
                if d.main:
                    from .checkpoint import save_checkpoint
                    save_checkpoint(model, last_path, extra=state)
        bar.close()
        train_loss = loss_sum / max(loss_count, 1) * unit
        train_time = time.time() - t0

        # test after every epoch (rank 0), as the official code does
        if d.main:
            report, text = evaluate(model, data, args.frames, args.tds, args.eval_batch_size,
                                    device=d.device, amp=args.eval_amp)
            p1 = report["p1_mm"]
            p2 = report.get("p2_mm", float("nan"))
            history.append({"epoch": epoch, "train_loss_mm": train_loss, "p1_mm": p1, "p2_mm": p2,
                            "lr": lr, "seconds": round(time.time() - t0, 2)})
            extra_text = f"P2 {p2:.2f} mm" if args.dataset == "h36m" else \
                f"PCK {report['pck']:.1f} AUC {report['auc']:.1f}"
            print(f"epoch {epoch:3d}/{args.epochs}  lr {lr:.6f}  loss {train_loss:.2f} mm  "
                  f"P1 {p1:.2f} mm  {extra_text}  ({train_time:.0f}s train, "
                  f"{time.time() - t0 - train_time:.0f}s test)", flush=True)
        history = d.broadcast(history)
        if history[-1]["p1_mm"] < best:
            best = history[-1]["p1_mm"]
            is_best = True
        else:
            is_best = False
        lr *= args.lr_decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        state = _state_for_resume(args, model, optimizer, scaler, epoch + 1, 0, lr, history, best,
                                  mean_pose, 0.0, 0, d)
        if d.main:
            from .checkpoint import save_checkpoint
            from .visualize import plot_curves
            if is_best:
                save_checkpoint(model, os.path.join(out, "best.pth"),
                                extra={"args": vars(args), "epoch": epoch, "p1_mm": best})
            save_checkpoint(model, os.path.join(out, "last.pth"), extra=state)
            metrics_json = {"epochs": history, "mean_pose_p1_mm": mean_pose, "best_p1_mm": best,
                            "dataset": args.dataset, "config": vars(args), "final": report}
            write_json(os.path.join(out, "metrics.json"), metrics_json)
            plot_curves(history, os.path.join(out, "curves.png"), mean_pose)

    if d.main:
        if report is None:  # resumed a finished run: nothing left to train
            from .checkpoint import load_checkpoint
            report, text = evaluate(load_checkpoint(os.path.join(out, "last.pth")).to(d.device), data,
                                    args.frames, args.tds, args.eval_batch_size, device=d.device,
                                    amp=args.eval_amp)
        print(text)
        final = history[-1] if history else {}
        print(f"final P1 {final.get('p1_mm', float('nan')):.2f} mm (mean pose {mean_pose:.2f} mm, "
              f"best {best:.2f} mm); outputs in {out}", flush=True)
        from .visualize import plot_per_action
        if args.dataset == "h36m":
            plot_per_action(report["per_action"], os.path.join(out, "per_action.png"),
                            title=f"P1 {report['p1_mm']:.2f} mm, P2 {report['p2_mm']:.2f} mm")
        else:
            plot_per_action(report["per_sequence"], os.path.join(out, "per_action.png"),
                            keys=("mpjpe_mm",), labels=("MPJPE",))
        result = {"epochs": history, "mean_pose_p1_mm": mean_pose, "best_p1_mm": best,
                  "dataset": args.dataset, "config": vars(args), "final": report}
        write_json(os.path.join(out, "metrics.json"), result)
        if args.json:
            write_json(args.json, result)
        return result
    return {}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_NAN
    except STCFormerError:
        # under torchrun every process meets the same bad input: the first one of each machine says so
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("LOCAL_RANK", "0")) != 0:
            return EXIT_BAD_INPUT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
