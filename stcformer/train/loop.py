"""Training, piece by piece: the process group, the model and optimizer, one step, one epoch,
the resumable state and the loop that ties them together (``python -m stcformer.train`` is the
command line on top).

The pieces are usable on their own: :func:`make_train_step` is what benchmarks time,
:class:`TrainState` is what ``last.pth`` carries, :func:`train_one_epoch` runs one pass over the
windows. Nothing here branches on the dataset: a :class:`~stcformer.eval.benchmarks.Benchmark` says what
differs.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from stcformer.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from stcformer.devices import pick_device
from stcformer.data.dataset import WindowSet, training_windows
from stcformer.errors import CheckpointError, UsageError
from stcformer.io import write_json
from stcformer.eval.metrics import mpjpe
from stcformer.ops.precision import amp_dtype, warn_slow_cpu_amp
from stcformer.data.synthetic import synthetic_cache_dir
from stcformer.eval.benchmarks import Benchmark, get_benchmark
from stcformer.eval.runner import mean_pose_report, run_test
from stcformer.export.plots import plot_curves

# the loss is checked for NaN/inf every this many steps on CUDA (one host sync each); 1 on CPU
CHECK_EVERY_CUDA = 50
# torch.compile backend of --compile (tests use "aot_eager" to check the wiring without codegen)
COMPILE_BACKEND = "inductor"
# the synthetic stand-in of the quick configuration: S1..S11, 15 actions, one take of about 64
# frames each, 4 cameras (about 19k training and 7.7k test frames)
SYNTHETIC = dict(frames=64, takes=1)


class TrainingStopped(Exception):
    """Training cannot go on (non-finite loss); the message is one line."""


# ---------------------------------------------------------------- processes
def world_info():
    """(world size, rank, local rank, processes on this machine) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


class Dist:
    """Rank, world size and the few collectives the loop needs (no-ops in one process)."""

    def __init__(self, device=None):
        self.world, self.rank, self.local_rank, self.local_world = world_info()
        # the device was checked by the caller (``stcformer.devices.pick_device``), before any process group or write
        self.device = torch.device(device) if device is not None else pick_device(
            None, self.world, self.local_rank, self.local_world)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- data and model
def ensure_synthetic(benchmark: Benchmark, d: "Dist") -> str:
    """Generate the synthetic stand-in once (rank 0; files appear atomically); return its folder."""
    folder = synthetic_cache_dir(benchmark.name, SYNTHETIC["frames"], SYNTHETIC["takes"])
    if d.main and not os.path.exists(os.path.join(folder, benchmark.synthetic_marker)):
        print(f"generating synthetic {benchmark.name} data in {folder} (once)", flush=True)
        benchmark.write_synthetic(folder, SYNTHETIC["frames"], SYNTHETIC["takes"])
    d.barrier()
    return folder


def step_batch_size(benchmark: Benchmark, batch_size: int, stride: int, world: int) -> int:
    """Windows per optimizer step and process (the protocol's batch rule, split over processes)."""
    total = benchmark.windows_per_step(batch_size, stride)
    if total < 1:
        raise UsageError(f"-b {batch_size} // -s {stride} leaves no window per step")
    return max(1, total // world)


def build_model(args, device):
    """The STCFormer of ``args`` (dataset, layers, d_hid, backend, init, recompute) on ``device``."""
    from stcformer.model.modules import STCFormer
    family = get_benchmark(args.dataset).family
    model = STCFormer(layers=args.layers, d_hid=args.d_hid, family=family, backend=args.backend)
    if args.init:
        src = load_checkpoint(args.init)
        for key in ("layers", "d_hid", "num_heads"):
            if src.config[key] != model.config[key]:
                raise CheckpointError(f"{args.init}: checkpoint has {key}={src.config[key]}, "
                                      f"this run {key}={model.config[key]}")
        if {k: v.shape for k, v in src.state_dict().items()} != {k: v.shape for k, v in model.state_dict().items()}:
            raise CheckpointError(f"{args.init}: parameters do not match this model")
        model.load_state_dict(src.state_dict())
    model.set_recompute(args.recompute)
    return model.to(device)


def make_optimizer(params, lr: float, device) -> torch.optim.Adam:
    """The official optimizer: Adam with amsgrad (betas, eps and no weight decay as torch's defaults).

    On CUDA it runs as one fused kernel (``fused=True``); on other devices torch's default
    implementation, as before.
    """
    fused = dict(fused=True) if torch.device(device).type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr, amsgrad=True, **fused)


def compile_model(module: torch.nn.Module, backend: Optional[str] = None,
                  fullgraph: bool = False, cuda_graphs: bool = False) -> torch.nn.Module:
    """``torch.compile`` as the training loop uses it: static shapes (a full batch and the shorter
    last batch of an epoch each get their own graph), ``backend`` default ``COMPILE_BACKEND``
    (inductor). stc_attention is a registered custom op, so an STCFormer compiles with
    ``fullgraph=True``; the loop leaves it False, since DDP splits the graph at its buckets.

    ``cuda_graphs``: Inductor's ``mode="reduce-overhead"``: the compiled forward and backward
    are replayed as CUDA graphs, which removes the per-kernel launch cost that bounds short
    windows (T=27). Outputs of a replay are overwritten by the next one: the training step
    only keeps the loss, computed outside the compiled model."""
    mode = "reduce-overhead" if cuda_graphs else None
    return torch.compile(module, backend=backend or COMPILE_BACKEND, dynamic=False, fullgraph=fullgraph,
                         mode=mode)


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


class AverageMeter:
    """A running mean kept as a float64 sum and a count (what the epoch's loss line shows)."""

    def __init__(self, total: float = 0.0, count: int = 0):
        self.total, self.count = total, count

    def update(self, total: float, count: int) -> None:
        self.total, self.count = self.total + total, self.count + count

    @property
    def avg(self) -> float:
        return self.total / max(self.count, 1)


@dataclass
class TrainState:
    """Where a run stands: what ``last.pth`` carries besides the weights and the optimizer.

    ``epoch``/``step``: the next step to run. ``loss``: the running loss of the current epoch.
    """

    epoch: int = 1
    step: int = 0
    history: List[dict] = field(default_factory=list)
    best: float = math.inf
    mean_pose_p1_mm: Optional[float] = None
    loss: AverageMeter = field(default_factory=AverageMeter)

    def to_extra(self, args, optimizer, scheduler, scaler, d: "Dist") -> dict:
        """The resumable state (collective: every process must call it; its RNG states are gathered)."""
        rngs = d.gather(rng_state())
        return {"args": vars(args), "epoch": self.epoch, "step": self.step,
                "lr": optimizer.param_groups[0]["lr"], "history": self.history, "best": self.best,
                "mean_pose_p1_mm": self.mean_pose_p1_mm, "loss_sum": self.loss.total,
                "loss_count": self.loss.count, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "rng": rngs, "world": d.world}

    @classmethod
    def restore(cls, extra: dict, optimizer, scheduler, scaler, d: "Dist") -> "TrainState":
        """Load ``to_extra``'s dict back into the optimizer, scheduler, scaler and RNGs."""
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        for group in optimizer.param_groups:
            group["lr"] = extra["lr"]
        scheduler._last_lr = [extra["lr"]] * len(optimizer.param_groups)
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        set_rng_state(extra["rng"][d.rank])
        return cls(epoch=extra["epoch"], step=extra["step"], history=list(extra["history"]),
                   best=extra["best"], mean_pose_p1_mm=extra["mean_pose_p1_mm"],
                   loss=AverageMeter(extra["loss_sum"], extra["loss_count"]))


def read_resume_state(run_dir: str, world: int):
    """(saved arguments, training state) of the run in ``run_dir`` (its last.pth)."""
    path = os.path.join(run_dir, "last.pth")
    extra = read_checkpoint(path).get("extra") or {}
    if "optimizer" not in extra:
        raise UsageError(f"{path}: holds no training state to resume from")
    if extra.get("world", 1) != world:
        raise UsageError(f"{path}: saved by {extra.get('world')} processes, resumed with {world}")
    return dict(extra["args"]), extra


class Trainer:
    """One run: data, model, optimizer and output folder of resolved ``args``, on ``d``'s device.

    ``run()`` trains from ``state`` to ``args.epochs``, testing and saving after every epoch, and
    returns the final metrics. Every flag was checked by the caller; what can still fail here is
    the data files, the ``--init`` checkpoint and a non-finite loss.
    """

    def __init__(self, args: argparse.Namespace, d: Dist, resume: Optional[dict] = None):
        self.args, self.d = args, d
        self.benchmark = get_benchmark(args.dataset)
        set_tf32(d.device, args.tf32)
        if args.threads:
            torch.set_num_threads(args.threads)
        seed_everything(args.seed)
        self.data_dir = args.data_dir or ensure_synthetic(self.benchmark, d)
        self.data = self.benchmark.load(self.data_dir, args.keypoints, train=True)
        self.windows: WindowSet = training_windows(self.data, args.frames, args.tds, args.stride,
                                                   augment=not args.no_flip_augment)
        self.per_step = step_batch_size(self.benchmark, args.batch_size, args.stride, d.world)
        self.model = build_model(args, d.device)
        self.optimizer = make_optimizer(self.model.parameters(), args.lr, d.device)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=args.lr_decay)
        self.scaler = torch.amp.GradScaler(d.device.type) if args.amp == "fp16" else None
        net = self.model
        if d.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        if args.compile:
            net = compile_model(net, cuda_graphs=args.cuda_graphs)
        self.net = net
        self.step_fn = make_train_step(net, self.optimizer, amp=args.amp, device=d.device, scaler=self.scaler)
        # windows gathered where the model runs: on CUDA from arrays uploaded once, on the CPU from
        # views of them (the same values)
        self.source = self.windows.to_device(d.device)
        self.out = args.out = d.broadcast(os.path.abspath(args.out))
        self.last_path = os.path.join(self.out, "last.pth")
        if resume is not None:
            self.model.load_state_dict(load_checkpoint(self.last_path).state_dict())
            self.state = TrainState.restore(resume, self.optimizer, self.scheduler, self.scaler, d)
        else:
            mean_pose = mean_pose_report(self.data)["p1_mm"] if d.main else None
            self.state = TrainState(mean_pose_p1_mm=d.broadcast(mean_pose))
        self.resumed_mid_epoch = resume is not None
        self.first_step = True

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def describe(self) -> None:
        args, d = self.args, self.d
        n_params = sum(p.numel() for p in self.model.parameters())
        print(f"{args.dataset} from {self.data_dir} ({args.keypoints}): {len(self.data.train)} train / "
              f"{len(self.data.test)} test sequences, {len(self.windows)} training windows per epoch, "
              f"{self.per_step * d.world} per step")
        print(f"model: {args.layers} layers, width {args.d_hid}, {n_params / 1e6:.2f}M parameters; "
              f"T={args.frames} tds={args.tds}; {d.world} process(es) on {d.device}; output {self.out}")
        print(f"step: amp {args.amp}, torch.compile {'on' if args.compile else 'off'}"
              f"{' with CUDA graphs' if args.cuda_graphs else ''}, recompute "
              f"{'off' if not args.recompute else 'blocks' if args.recompute is True else args.recompute}, Adam{' (fused)' if d.device.type == 'cuda' else ''}, "
              f"loss checked every {args.check_every} step(s)"
              + (f", TF32 {'on' if args.tf32 else 'off'}" if d.device.type == "cuda" else ""))
        print(f"P1 of the mean training pose: {self.state.mean_pose_p1_mm:.2f} mm", flush=True)
        warn_slow_cpu_amp(d.device.type, args.amp)

    def save_state(self) -> None:
        """last.pth with the resumable state (collective; rank 0 writes)."""
        extra = self.state.to_extra(self.args, self.optimizer, self.scheduler, self.scaler, self.d)
        if self.d.main:
            save_checkpoint(self.model, self.last_path, extra=extra)

    def batch(self, order, step: int):
        """Inputs and targets of step ``step`` of an epoch whose window order is ``order``."""
        idx = order[step * self.per_step:(step + 1) * self.per_step]
        return self.source.inputs(idx), self.source.targets(idx), len(idx)

    def train_one_epoch(self, epoch: int, order: np.ndarray) -> float:
        """One pass over the windows in ``order`` from ``state.step``; returns the mean loss in mm."""
        args, d, state = self.args, self.d, self.state
        order_t = torch.from_numpy(order).to(d.device)
        steps = (len(order) + self.per_step - 1) // self.per_step
        pending = LossLog(d)
        unit = self.data.unit_to_mm
        self.net.train()
        bar = tqdm(range(state.step, steps), desc=f"epoch {epoch}", unit="step", initial=state.step,
                   total=steps, disable=None if d.main else True, leave=False, mininterval=1.0)
        for step in bar:
            t_first = time.time()
            x, y, n = self.batch(order_t, step)
            pending.add(self.step_fn(x, y), n, step)
            if self.first_step:
                self.first_step = False
                if args.compile:
                    if d.device.type == "cuda":
                        torch.cuda.synchronize(d.device)
                    if d.main:
                        tqdm.write(f"torch.compile: the first step took {time.time() - t_first:.1f} s "
                                   "(compilation included)", file=sys.stdout)
            save_now = bool(args.save_every and (step + 1) % args.save_every == 0 and step + 1 < steps)
            if len(pending) >= args.check_every or save_now or step + 1 == steps:
                for total, count in pending.check(epoch, self.lr, self.last_path):
                    state.loss.update(total, count)
                bar.set_postfix(loss_mm=f"{state.loss.avg * unit:.1f}", refresh=False)
            if save_now:
                state.epoch, state.step = epoch, step + 1
                self.save_state()
        bar.close()
        return state.loss.avg * unit

    def test(self):
        """(report, table text) of the model on the test set, as the official code after each epoch."""
        return run_test(self.model, self.data, self.args.frames, self.args.tds, self.args.eval_batch_size,
                        device=self.d.device, amp=self.args.eval_amp)

    def metrics(self, report) -> dict:
        s = self.state
        return {"epochs": s.history, "mean_pose_p1_mm": s.mean_pose_p1_mm, "best_p1_mm": s.best,
                "dataset": self.args.dataset, "config": vars(self.args), "final": report}

    def run(self) -> dict:
        args, d, state, benchmark = self.args, self.d, self.state, self.benchmark
        if d.main:
            os.makedirs(self.out, exist_ok=True)
            self.describe()
        from torch.utils.data import DistributedSampler
        sampler = DistributedSampler(range(len(self.windows)), num_replicas=d.world, rank=d.rank, shuffle=True,
                                     seed=args.seed, drop_last=False)
        report = text = None
        for epoch in range(state.epoch, args.epochs + 1):
            t0 = time.time()
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)
            if not self.resumed_mid_epoch:
                state.step, state.loss = 0, AverageMeter()
            self.resumed_mid_epoch = False
            lr = self.lr
            train_loss = self.train_one_epoch(epoch, order)
            train_time = time.time() - t0

            # test after every epoch (rank 0), as the official code does
            if d.main:
                report, text = self.test()
                state.history.append({"epoch": epoch, "train_loss_mm": train_loss, "p1_mm": report["p1_mm"],
                                      "p2_mm": report.get("p2_mm", float("nan")), "lr": lr,
                                      "seconds": round(time.time() - t0, 2)})
                print(f"epoch {epoch:3d}/{args.epochs}  lr {lr:.6f}  loss {train_loss:.2f} mm  "
                      f"P1 {report['p1_mm']:.2f} mm  {benchmark.summary(report)}  ({train_time:.0f}s train, "
                      f"{time.time() - t0 - train_time:.0f}s test)", flush=True)
            state.history = d.broadcast(state.history)
            is_best = state.history[-1]["p1_mm"] < state.best
            if is_best:
                state.best = state.history[-1]["p1_mm"]
            self.scheduler.step()
            state.epoch, state.step, state.loss = epoch + 1, 0, AverageMeter()
            extra = state.to_extra(args, self.optimizer, self.scheduler, self.scaler, d)
            if d.main:
                if is_best:
                    save_checkpoint(self.model, os.path.join(self.out, "best.pth"),
                                    extra={"args": vars(args), "epoch": epoch, "p1_mm": state.best})
                save_checkpoint(self.model, self.last_path, extra=extra)
                write_json(os.path.join(self.out, "metrics.json"), self.metrics(report))
                plot_curves(state.history, os.path.join(self.out, "curves.png"), state.mean_pose_p1_mm)
        if not d.main:
            return {}
        if report is None:  # resumed a finished run: nothing left to train (the model holds last.pth)
            report, text = self.test()
        print(text)
        final = state.history[-1] if state.history else {}
        print(f"final P1 {final.get('p1_mm', float('nan')):.2f} mm (mean pose {state.mean_pose_p1_mm:.2f} mm, "
              f"best {state.best:.2f} mm); outputs in {self.out}", flush=True)
        benchmark.plot(report, os.path.join(self.out, "per_action.png"))
        result = self.metrics(report)
        write_json(os.path.join(self.out, "metrics.json"), result)
        if args.json:
            write_json(args.json, result)
        return result


__all__ = ["Dist", "Trainer", "TrainState", "AverageMeter", "LossLog", "TrainingStopped", "build_model",
           "make_optimizer", "make_train_step", "compile_model", "set_tf32", "step_batch_size",
           "read_resume_state", "world_info", "CHECK_EVERY_CUDA", "COMPILE_BACKEND", "SYNTHETIC"]
