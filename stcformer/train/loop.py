"""The training loop: :class:`Trainer` sets a run up from a :class:`~stcformer.train.config.TrainConfig`
and runs it epoch by epoch (train, test, save), as ``python -m stcformer.train`` does.

Read top to bottom: the synthetic stand-in data, the per-process torch settings, the model's
wrappers (DDP, torch.compile), then ``Trainer``: setup, one epoch, the test, saving and the run.
Nothing here branches on the dataset: a :class:`~stcformer.evaluation.benchmarks.Benchmark` says what
differs.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from stcformer.choices import Recompute
from stcformer.data.dataset import WindowSet, training_windows
from stcformer.data.synthetic import synthetic_cache_dir
from stcformer.evaluation.benchmarks import Benchmark, get_benchmark
from stcformer.evaluation.runner import mean_pose_report, run_test
from stcformer.export.plots import plot_curves
from stcformer.io import write_json
from stcformer.model.checkpoint import load_checkpoint, save_checkpoint
from stcformer.train.config import TrainConfig
from stcformer.train.distributed import ProcessGroup
from stcformer.train.loss_log import LossLog
from stcformer.train.state import AverageMeter, TrainState, seed_everything
from stcformer.train.step import build_model, compile_model, make_optimizer, make_train_step, set_tf32, \
    step_batch_size

# the synthetic stand-in of the quick configuration: S1..S11, 15 actions, one take of about 64
# frames each, 4 cameras (about 19k training and 7.7k test frames)
SYNTHETIC = dict(frames=64, takes=1)


def ensure_synthetic(benchmark: Benchmark, group: ProcessGroup) -> str:
    """Generate the synthetic stand-in once (rank 0; files appear atomically); return its folder."""
    folder = synthetic_cache_dir(benchmark.name, SYNTHETIC["frames"], SYNTHETIC["takes"])
    if group.main and not os.path.exists(os.path.join(folder, benchmark.synthetic_marker)):
        print(f"generating synthetic {benchmark.name} data in {folder} (once)", flush=True)
        benchmark.write_synthetic(folder, SYNTHETIC["frames"], SYNTHETIC["takes"])
    group.barrier()
    return folder


def configure_torch(config: TrainConfig, device: torch.device) -> None:
    """This process's TF32 switch, CPU threads and seeds (before any data or weights exist)."""
    set_tf32(device, config.tf32)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)


def wrap_model(model: torch.nn.Module, config: TrainConfig, group: ProcessGroup) -> torch.nn.Module:
    """What the step runs: ``model`` in DDP with several processes, then under torch.compile if asked."""
    net = model
    if group.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[group.device.index] if group.device.type == "cuda" else None)
    if config.compile:
        net = compile_model(net, cuda_graphs=config.cuda_graphs)
    return net


class Trainer:
    """One run: data, model, optimizer and output folder of ``config``, on ``group``'s device.

    ``run()`` trains from ``state`` to ``config.epochs``, testing and saving after every epoch, and
    returns the final metrics. ``resume`` is the resumable state of ``config.out``'s last.pth
    (:func:`~stcformer.train.state.read_resume_state`). Every setting was checked by the caller;
    what can still fail here is the data files, the ``init`` checkpoint and a non-finite loss.
    """

    def __init__(self, config: TrainConfig, group: ProcessGroup, resume: Optional[dict] = None):
        self.group = group
        self.benchmark = get_benchmark(config.dataset)
        configure_torch(config, group.device)
        self._load_data(config)
        self._build_step(config)
        # windows gathered where the model runs: on CUDA from arrays uploaded once, on the CPU from
        # views of them (the same values)
        self.source = self.windows.to_device(group.device)
        # the folder as rank 0 names it, absolute: the config saved with the run says where it is
        self.config = dataclasses.replace(config, out=group.broadcast(os.path.abspath(config.out)))
        self.out = self.config.out
        self.last_path = os.path.join(self.out, "last.pth")
        self.state = self._first_state(resume)
        self.resumed_mid_epoch = resume is not None
        self.first_step = True

    def _load_data(self, config: TrainConfig) -> None:
        self.data_dir = config.data_dir or ensure_synthetic(self.benchmark, self.group)
        self.data = self.benchmark.load(self.data_dir, config.keypoints, train=True)
        self.windows: WindowSet = training_windows(self.data, config.frames, config.tds, config.stride,
                                                   augment=not config.no_flip_augment)
        self.per_step = step_batch_size(self.benchmark, config.batch_size, config.stride, self.group.world)

    def _build_step(self, config: TrainConfig) -> None:
        device = self.group.device
        self.model = build_model(config, device)
        self.optimizer = make_optimizer(self.model.parameters(), config.lr, device)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)
        self.scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None
        self.net = wrap_model(self.model, config, self.group)
        self.step_fn = make_train_step(self.net, self.optimizer, amp=config.amp, device=device,
                                       scaler=self.scaler)

    def _first_state(self, resume: Optional[dict]) -> TrainState:
        """The saved state and weights of a resumed run, else a fresh state (with the mean-pose score)."""
        if resume is not None:
            self.model.load_state_dict(load_checkpoint(self.last_path).state_dict())
            return TrainState.restore(resume, self.optimizer, self.scheduler, self.scaler, self.group)
        mean_pose = mean_pose_report(self.data)["p1_mm"] if self.group.main else None
        return TrainState(mean_pose_p1_mm=self.group.broadcast(mean_pose))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def describe(self) -> None:
        """The run's header lines: data, model, step settings, the mean-pose baseline."""
        config, group = self.config, self.group
        cuda = group.device.type == "cuda"
        n_params = sum(p.numel() for p in self.model.parameters())
        recompute = Recompute.of(config.recompute)
        print(f"{config.dataset} from {self.data_dir} ({config.keypoints}): {len(self.data.train)} train / "
              f"{len(self.data.test)} test sequences, {len(self.windows)} training windows per epoch, "
              f"{self.per_step * group.world} per step")
        print(f"model: {config.layers} layers, width {config.d_hid}, {n_params / 1e6:.2f}M parameters; "
              f"T={config.frames} tds={config.tds}; {group.world} process(es) on {group.device}; output {self.out}")
        print(f"step: amp {config.amp}, torch.compile {'on' if config.compile else 'off'}"
              f"{' with CUDA graphs' if config.cuda_graphs else ''}, recompute {recompute}, "
              f"Adam{' (fused)' if cuda else ''}, loss checked every {config.check_every} step(s)"
              + (f", TF32 {'on' if config.tf32 else 'off'}" if cuda else ""))
        print(f"P1 of the mean training pose: {self.state.mean_pose_p1_mm:.2f} mm", flush=True)

    # ------------------------------------------------------------ one epoch
    def batch(self, order, step: int):
        """Inputs and targets of step ``step`` of an epoch whose window order is ``order``."""
        idx = order[step * self.per_step:(step + 1) * self.per_step]
        return self.source.inputs(idx), self.source.targets(idx), len(idx)

    def _report_first_step(self, started: float) -> None:
        """With torch.compile, say how long the first step took (compilation included)."""
        self.first_step = False
        if not self.config.compile:
            return
        if self.group.device.type == "cuda":
            torch.cuda.synchronize(self.group.device)
        if self.group.main:
            tqdm.write(f"torch.compile: the first step took {time.time() - started:.1f} s "
                       "(compilation included)", file=sys.stdout)

    def train_one_epoch(self, epoch: int, order: np.ndarray) -> float:
        """One pass over the windows in ``order`` from ``state.step``; returns the mean loss in mm."""
        config, group, state = self.config, self.group, self.state
        order_t = torch.from_numpy(order).to(group.device)
        steps = (len(order) + self.per_step - 1) // self.per_step
        pending = LossLog(group)
        unit = self.data.unit_to_mm
        self.net.train()
        bar = tqdm(range(state.step, steps), desc=f"epoch {epoch}", unit="step", initial=state.step,
                   total=steps, disable=None if group.main else True, leave=False, mininterval=1.0)
        for step in bar:
            started = time.time()
            x, y, n = self.batch(order_t, step)
            pending.add(self.step_fn(x, y), n, step)
            if self.first_step:
                self._report_first_step(started)
            save_now = bool(config.save_every and (step + 1) % config.save_every == 0 and step + 1 < steps)
            if len(pending) >= config.check_every or save_now or step + 1 == steps:
                for total, count in pending.check(epoch, self.lr, self.last_path):
                    state.loss.update(total, count)
                bar.set_postfix(loss_mm=f"{state.loss.avg * unit:.1f}", refresh=False)
            if save_now:
                state.epoch, state.step = epoch, step + 1
                self.save_state()
        bar.close()
        return state.loss.avg * unit

    # ------------------------------------------------------------ test and save
    def test(self):
        """(report, table text) of the model on the test set, as the official code after each epoch."""
        config = self.config
        return run_test(self.model, self.data, config.frames, config.tds, config.eval_batch_size,
                        device=self.group.device, amp=config.eval_amp)

    def metrics(self, report) -> dict:
        s = self.state
        return {"epochs": s.history, "mean_pose_p1_mm": s.mean_pose_p1_mm, "best_p1_mm": s.best,
                "dataset": self.config.dataset, "config": self.config.to_dict(), "final": report}

    def _extra(self) -> dict:
        return self.state.to_extra(self.config, self.optimizer, self.scheduler, self.scaler, self.group)

    def save_state(self) -> None:
        """last.pth with the resumable state (collective; rank 0 writes)."""
        extra = self._extra()
        if self.group.main:
            save_checkpoint(self.model, self.last_path, extra=extra)

    def save_epoch(self, epoch: int, is_best: bool, report) -> None:
        """After an epoch (collective; rank 0 writes): best.pth if it is the best so far, last.pth,
        metrics.json and curves.png."""
        state, extra = self.state, self._extra()
        if not self.group.main:
            return
        if is_best:
            save_checkpoint(self.model, os.path.join(self.out, "best.pth"),
                            extra={"args": self.config.to_dict(), "epoch": epoch, "p1_mm": state.best})
        save_checkpoint(self.model, self.last_path, extra=extra)
        write_json(os.path.join(self.out, "metrics.json"), self.metrics(report))
        plot_curves(state.history, os.path.join(self.out, "curves.png"), state.mean_pose_p1_mm)

    # ------------------------------------------------------------ the run
    def _log_epoch(self, epoch: int, lr: float, train_loss: float, report, started: float,
                   train_time: float) -> None:
        """Add the epoch to the history and print its line (rank 0)."""
        self.state.history.append({"epoch": epoch, "train_loss_mm": train_loss, "p1_mm": report["p1_mm"],
                                   "p2_mm": report.get("p2_mm", float("nan")), "lr": lr,
                                   "seconds": round(time.time() - started, 2)})
        print(f"epoch {epoch:3d}/{self.config.epochs}  lr {lr:.6f}  loss {train_loss:.2f} mm  "
              f"P1 {report['p1_mm']:.2f} mm  {self.benchmark.summary(report)}  ({train_time:.0f}s train, "
              f"{time.time() - started - train_time:.0f}s test)", flush=True)

    def run_epoch(self, epoch: int, sampler):
        """Train epoch ``epoch``, test it (rank 0), decay the lr and save; (report, text) of the
        test on rank 0, (None, None) on the others."""
        state, group = self.state, self.group
        started = time.time()
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        if not self.resumed_mid_epoch:
            state.step, state.loss = 0, AverageMeter()
        self.resumed_mid_epoch = False
        lr = self.lr
        train_loss = self.train_one_epoch(epoch, order)
        train_time = time.time() - started
        report = text = None
        if group.main:  # test after every epoch (rank 0), as the official code does
            report, text = self.test()
            self._log_epoch(epoch, lr, train_loss, report, started, train_time)
        state.history = group.broadcast(state.history)
        is_best = state.history[-1]["p1_mm"] < state.best
        if is_best:
            state.best = state.history[-1]["p1_mm"]
        self.scheduler.step()
        state.epoch, state.step, state.loss = epoch + 1, 0, AverageMeter()
        self.save_epoch(epoch, is_best, report)
        return report, text

    def finish(self, report, text) -> dict:
        """The final table, line, per-action plot and metrics files (rank 0); returns the metrics."""
        state = self.state
        if report is None:  # resumed a finished run: nothing left to train (the model holds last.pth)
            report, text = self.test()
        print(text)
        final = state.history[-1] if state.history else {}
        print(f"final P1 {final.get('p1_mm', float('nan')):.2f} mm (mean pose {state.mean_pose_p1_mm:.2f} mm, "
              f"best {state.best:.2f} mm); outputs in {self.out}", flush=True)
        self.benchmark.plot(report, os.path.join(self.out, "per_action.png"))
        result = self.metrics(report)
        write_json(os.path.join(self.out, "metrics.json"), result)
        if self.config.json:
            write_json(self.config.json, result)
        return result

    def run(self) -> dict:
        """Train the remaining epochs; the final metrics on rank 0, {} on the other processes."""
        from torch.utils.data import DistributedSampler

        group = self.group
        if group.main:
            os.makedirs(self.out, exist_ok=True)
            self.describe()
        sampler = DistributedSampler(range(len(self.windows)), num_replicas=group.world, rank=group.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=False)
        report = text = None
        for epoch in range(self.state.epoch, self.config.epochs + 1):
            report, text = self.run_epoch(epoch, sampler)
        return self.finish(report, text) if group.main else {}


__all__ = ["SYNTHETIC", "Trainer", "configure_torch", "ensure_synthetic", "wrap_model"]
