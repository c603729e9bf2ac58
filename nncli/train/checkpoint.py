"""Checkpoints: accelerate's save_state/load_state (trainable weights only, optimizer, schedule, the loop's state,
every process's random-number generators), written to a staging folder and moved into place in one rename, so a
crash leaves the previous checkpoint or the new one, never a torn one. state.json beside them says which run and
step they belong to (read before anything is loaded, so a changed recipe or data is refused at once)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nncli.core.atomic import atomic_write_json
from nncli.core.errors import InputError, UsageError
from nncli.core.signals import deferred

NAME = "checkpoint"


def exists(out) -> bool:
    return (Path(out.path) / NAME / "state.json").exists()


def read_state(out) -> dict:
    try:
        state = json.loads((Path(out.path) / NAME / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("not a checkpoint state")
        return state
    except (OSError, ValueError) as e:
        raise InputError(f"checkpoint in {out.path} is unreadable: {e}", "run again without --resume (with --overwrite)") from e


def check_resumable(out, fingerprint: str) -> dict:
    """Refuse --resume when there is nothing to resume or when the recipe or data changed since the run started."""
    if not exists(out):
        raise InputError(f"nothing to resume in {out.path}: no checkpoint found",
                         "run without --resume, or point --output at the interrupted run")
    state = read_state(out)
    if state.get("fingerprint") != fingerprint:
        raise UsageError(f"cannot resume {out.path}: the recipe or the data changed since the run started",
                         "run again without --resume (with --overwrite), or restore the original recipe and data")
    return state


def attach(run) -> None:
    """Save trainable weights only (and the running statistics of batch-norm layers, which training changes): a LoRA
    checkpoint is megabytes, not the whole frozen model."""
    def keep_trainable(models, weights, output_dir):
        from nncli.train.loop import running_buffers

        for i, m in enumerate(models):
            names = {n for n, p in m.named_parameters() if p.requires_grad} | {n for n, _ in running_buffers(m)}
            weights[i] = {k: v for k, v in weights[i].items() if k in names}

    run.accelerator.register_save_state_pre_hook(keep_trainable)


def save(run) -> None:
    acc, final = run.accelerator, Path(run.out.path) / NAME
    staging, old = final.with_name(f".{NAME}.incoming"), final.with_name(f".{NAME}.old")
    if acc.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(staging), safe_serialization=True)
    acc.wait_for_everyone()
    if acc.is_main_process:
        atomic_write_json(staging / "state.json", run.state.public())
        shutil.rmtree(old, ignore_errors=True)
        with deferred():          # a signal between the two renames would leave no checkpoint at all
            if final.exists():
                os.replace(final, old)
            os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load(run) -> None:
    path = Path(run.out.path) / NAME
    try:
        run.accelerator.load_state(str(path), strict=False)
    except Exception as e:  # a checkpoint written by nncli but damaged since (disk, copy)
        raise InputError(f"checkpoint in {run.out.path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:160]})",
                         "run again without --resume (with --overwrite)") from e


def remove(out) -> None:
    shutil.rmtree(Path(out.path) / NAME, ignore_errors=True)
