"""The one training loop: every task (classification, causal LM, distillation, images) trains through fit().

Built on Hugging Face accelerate, so the CPU, one GPU, several processes (torchrun / accelerate launch) and several
nodes are one code path, and FSDP/DeepSpeed come from accelerate's own config. The loop owns: device and process
placement, gradient accumulation and clipping, bf16 mixed precision, the warm-up/decay schedule, evaluation every
epoch or N steps (gathered over processes), early stopping with the best weights restored, atomic checkpoints that
`--resume` continues bit for bit, SIGINT/SIGTERM (a checkpoint, then exit 130), a NaN/Inf stop, progress and
logging (callbacks). A task (nncli/train/tasks) supplies only what differs: collate, loss, evaluation outputs and
metrics, parameter groups.

    run = fit(task, model, FitConfig(...), out, callbacks=[MetricsLog(out)])
    run.evaluate("test")          # the restored best model on another split, on every process
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, Interrupted
from nncli.core.signals import StopFlag, hold
from nncli.train.batching import epoch_batches, eval_shard


@dataclass
class FitConfig:
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    accumulation: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    max_grad_norm: float | None = 1.0
    eval_every: str | int = "epoch"
    patience: int = 3
    seed: int = 42
    bf16: bool = False
    group_by_length: bool = True
    eval_batch_size: int = 64
    evaluate: bool = True          # off for the learning-rate range test
    eval_at_start: bool = False    # score the model before the first step as a candidate (a linear-probe head)
    checkpoint: bool = True
    resume_command: str = ""       # what to run to resume, for the interruption message


@dataclass
class TrainState:
    """Everything a checkpoint must carry besides weights, optimizer and schedule (saved by accelerate)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_rank: list | None = None  # the task's ranking key of the best evaluation (see _evaluate)
    best_step: int = 0
    bad_evals: int = 0
    history: list = field(default_factory=list)
    samples_seen: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    fingerprint: str = ""
    best: dict | None = None       # the trainable weights at the best evaluation
    reference: list | None = None  # validation predictions of the start (eval_at_start) that later ones must beat

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, d: dict) -> None:
        self.__dict__.update(d)

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("best", "reference")}


class NonFinite(Exception):
    pass


class Diverged(GateFailed):
    """The training loss became NaN or infinite: nothing is saved, report.json records the failed gate."""

    gate = {"metric": "train_loss_finite", "op": "==", "threshold": 1, "value": 0, "passed": False}


class Run:
    """A training run as callbacks and the caller see it."""

    def __init__(self, task, model, cfg: FitConfig, out, callbacks):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.task, self.cfg, self.out, self.callbacks = task, cfg, out, list(callbacks)
        n_batches = math.ceil(len(task.lengths("train")) / cfg.batch_size)
        world = int(__import__("os").environ.get("WORLD_SIZE", "1"))
        if n_batches < world:
            from nncli.core.errors import UsageError

            raise UsageError(f"{n_batches} training batches cannot be shared by {world} processes",
                             "use fewer processes, a smaller train.batch_size, or more data")
        self.accumulation = max(1, min(cfg.accumulation, n_batches // world))
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=self.accumulation,
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
        acc = self.accelerator
        self.world, self.rank, self.is_main = acc.num_processes, acc.process_index, acc.is_main_process
        self.steps_per_epoch = max(1, n_batches // self.world // self.accumulation)
        self.total_steps = cfg.max_steps or max(1, int(round(cfg.epochs * self.steps_per_epoch)))
        self.eval_every = self.steps_per_epoch if cfg.eval_every == "epoch" else int(cfg.eval_every)
        self.planned_evaluations = math.ceil(self.total_steps / self.eval_every)   # after step 0; fixed before training
        self.bf16 = cfg.bf16 and acc.mixed_precision == "no"   # a launcher's own mixed precision wins
        optimizer = torch.optim.AdamW(task.param_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr)
        self.ddp_model, self.optimizer = acc.prepare(model, optimizer)
        self.model = acc.unwrap_model(self.ddp_model)
        self.scheduler = _scheduler(self.optimizer, cfg, self.total_steps)
        self.state = TrainState()
        acc.register_for_checkpointing(self.scheduler, self.state)
        self.stop = StopFlag("saving a checkpoint at the end of this step")
        self.stop_reason: str | None = None
        self.signalled = False

    def autocast(self):
        import torch

        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16)

    def request_stop(self, reason: str) -> None:
        """A callback ends training after this step (the LR range test when the loss diverges)."""
        self.stop_reason = reason

    def to_device(self, batch: dict) -> dict:
        import torch

        dev = self.accelerator.device
        if dev.type == "cpu":
            return batch
        return {k: ({n: t.to(dev) for n, t in v.items()} if isinstance(v, dict) else v.to(dev) if isinstance(v,
                                                                                                             torch.Tensor) else v)
                for k, v in batch.items()}

    def trainable(self) -> dict:
        """What training changes: the trainable weights and running statistics (batch norm), copied."""
        out = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        return {**out, **{n: b.detach().clone() for n, b in running_buffers(self.model)}}

    def restore(self, weights: dict) -> None:
        import torch

        tensors = {**dict(self.model.named_parameters()), **dict(running_buffers(self.model))}
        with torch.no_grad():
            for n, v in weights.items():
                tensors[n].copy_(v)

    def evaluate(self, split: str) -> dict[str, float]:
        """The task's metrics on a whole split: each process scores its shard, the outputs are gathered."""
        import torch

        batches, n = eval_shard(self.task.lengths(split), self.cfg.eval_batch_size, rank=self.rank, world=self.world)
        self.model.eval()
        parts: list[dict] = []
        with torch.inference_mode(), self.autocast():
            for idx in batches:
                batch = self.to_device(self.task.collate(split, idx))
                parts.append({**self.task.eval_outputs(self.model, batch), "index": batch["index"]})
        self.model.train()
        outputs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if self.world > 1:
            outputs = {k: self.accelerator.gather(v.contiguous()) for k, v in outputs.items()}
        order = outputs.pop("index").cpu().numpy()
        merged = {}
        for k, v in outputs.items():
            arr = v.float().cpu().numpy()
            full = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
            full[order] = arr
            merged[k] = full
        return self.task.eval_metrics(merged, split)


def running_buffers(model) -> list[tuple[str, Any]]:
    """The persistent buffers of modules whose parameters train (batch norm's running mean, variance and count):
    checkpoints and the best-weights copy keep them with the weights, or a CNN would resume (or be restored) with
    statistics of another step."""
    out = []
    for name, module in model.named_modules():
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        skip = getattr(module, "_non_persistent_buffers_set", set())
        out += [(f"{name}.{b}" if name else b, t) for b, t in module.named_buffers(recurse=False) if b not in skip]
    return out


def fit(task, model, cfg: FitConfig, out=None, *, callbacks=(), resume: bool = False, fingerprint: str = "") -> Run:
    """Train `model` on the task's train split; returns the Run with the best weights restored."""
    from accelerate.utils import set_seed

    from nncli.train import checkpoint

    set_seed(cfg.seed)
    run = Run(task, model, cfg, out, callbacks)
    run.state.fingerprint = fingerprint
    if cfg.checkpoint and out is not None:
        checkpoint.attach(run)
        if resume:
            checkpoint.load(run)
            console.log(f"resuming from step {run.state.step} of {run.total_steps} (epoch {run.state.epoch + 1})")
    for cb in run.callbacks:
        cb.on_train_begin(run)
    if cfg.eval_at_start and cfg.evaluate and run.state.step == 0 and not run.state.history:
        _evaluate(run)
    try:
        with run.stop, console.progress(run.total_steps, "training") as bar:
            bar.update(run.state.step)
            _train(run, bar)
    except NonFinite as e:
        raise Diverged(f"training loss became {e} at step {run.state.step}: the run diverged; nothing was saved",
                         "lower train.lr (e.g. by 10x), keep train.max_grad_norm set, "
                         "or check the data for broken rows") from None
    finally:
        for cb in run.callbacks:
            cb.on_train_end(run)
    if run.state.best is not None:
        run.restore(run.state.best)
    return run


def _train(run: Run, bar) -> None:
    s, cfg = run.state, run.cfg
    while s.step < run.total_steps and not s.stopped_early:
        batches = epoch_batches(run.task.lengths("train"), cfg.batch_size, cfg.seed + s.epoch, cfg.group_by_length,
                                rank=run.rank, world=run.world)
        usable = len(batches) // run.accumulation * run.accumulation
        run.ddp_model.train()
        for start in range(s.batch_in_epoch, usable, run.accumulation):
            loss = _step(run, batches[start:start + run.accumulation])
            s.batch_in_epoch = start + run.accumulation
            bar.update(1, loss=f"{loss:.4f}")
            if _after_step(run, loss):
                return
        s.epoch += 1
        s.batch_in_epoch = 0


def _step(run: Run, micro: list[list[int]]) -> float:
    """One optimizer step over `accumulation` micro-batches; returns the mean training loss."""
    import torch

    acc, started, total = run.accelerator, time.perf_counter(), 0.0
    for idx in micro:
        with acc.accumulate(run.ddp_model):
            batch = run.to_device(run.task.collate("train", idx))
            with run.autocast():
                loss = run.task.loss(run.ddp_model, batch)
            acc.backward(loss)
            if acc.sync_gradients and run.cfg.max_grad_norm:
                acc.clip_grad_norm_(run.ddp_model.parameters(), run.cfg.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach())
        run.state.samples_seen += len(idx) * run.world
    run.scheduler.step()
    run.state.train_seconds += time.perf_counter() - started
    run.state.step += 1
    mean = total / len(micro)
    flags = [bool(run.stop.signal), not math.isfinite(mean)]
    if run.world > 1:
        flags = [bool(x) for x in acc.reduce(torch.tensor([float(f) for f in flags], device=acc.device), "max").tolist()]
    if flags[1]:
        raise NonFinite(mean if not math.isfinite(mean) else "NaN/Inf on another process")
    run.signalled = flags[0]
    return mean


def _after_step(run: Run, loss: float) -> bool:
    """Logging, evaluation, checkpoints, early stopping and signals after a step; True when training must end."""
    from nncli.train import checkpoint

    s = run.state
    lr = run.scheduler.get_last_lr()[0]
    for cb in run.callbacks:
        cb.on_step(run, loss, lr)
    done = s.step >= run.total_steps or run.stop_reason is not None
    if run.cfg.evaluate and (s.step % run.eval_every == 0 or done):
        _evaluate(run)
        if run.cfg.checkpoint and run.out is not None:
            checkpoint.save(run)
            hold("train.step")
            run.signalled = run.signalled or (run.world == 1 and bool(run.stop.signal))
    if run.signalled and not (done or s.stopped_early):
        if run.cfg.checkpoint and run.out is not None:
            checkpoint.save(run)
        raise Interrupted(f"interrupted by {run.stop.signal or 'a signal'} at step {s.step} of {run.total_steps}; state saved "
                          f"in {run.out.path}/checkpoint", f"continue with: {run.cfg.resume_command}")
    return done or s.stopped_early


def _evaluate(run: Run) -> None:
    s, task = run.state, run.task
    metrics = run.evaluate("validation")
    value = metrics[task.metric]
    if run.cfg.eval_at_start and s.step == 0 and hasattr(task, "predictions"):
        s.reference = task.predictions("validation")
    if hasattr(task, "rank"):
        rank = list(task.rank(metrics, s.reference, run.planned_evaluations))
    else:
        rank = [value if task.higher_is_better else -value]
    if s.best_rank is None and s.best_metric is not None:      # a checkpoint from before ranking keys
        s.best_rank = [s.best_metric if task.higher_is_better else -s.best_metric] + [float("-inf")] * (len(rank) - 1)
    improved = s.best_rank is None or rank > s.best_rank
    if improved:
        s.best_metric, s.best_rank, s.best_step, s.bad_evals, s.best = value, rank, s.step, 0, run.trainable()
    else:
        s.bad_evals += 1
    epoch = round(s.epoch + s.batch_in_epoch / max(1, run.steps_per_epoch * run.accumulation), 3)
    s.history.append({"step": s.step, "epoch": epoch, **{f"validation_{k}": round(v, 5) for k, v in metrics.items()}})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in task.shown)
    console.log(f"step {s.step}/{run.total_steps}: validation " + shown + (" (best)" if improved else ""))
    for cb in run.callbacks:
        cb.on_evaluate(run, s.step, metrics)
    if run.cfg.patience and s.bad_evals >= run.cfg.patience:
        s.stopped_early = True


def _scheduler(optimizer, cfg: FitConfig, total_steps: int):
    from transformers import get_scheduler

    name = "constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps)


class Callback:
    """Hooks into the loop; every method is optional."""

    def on_train_begin(self, run: Run) -> None: ...

    def on_step(self, run: Run, loss: float, lr: float) -> None: ...

    def on_evaluate(self, run: Run, step: int, metrics: dict[str, Any]) -> None: ...

    def on_train_end(self, run: Run) -> None: ...
