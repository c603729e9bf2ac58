"""`nncli finetune`: fine-tune a pretrained model for the recipe's task, through the one loop. Reads top to bottom:

    start()     pre-flight (every data and model problem before any training), the run directory, report.json
    train()     the task's model and adapter, an optional learning-rate range test, fit()
    conclude    (the task's) every split scored, baselines, artifacts; finish(): gates, model card, exit code

Each task module (nncli/train/classifier.py, nncli/train/causal_lm.py, nncli/train/image.py) supplies prepare,
known_metrics, inputs_of, data_fingerprint, build, conclude and card. distill and sweep reuse start() and train().
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from nncli.core import console
from nncli.core.report import RunReport, Timer, base_report, check_gate_metrics, environment, evaluate_gates, finish, gates_of
from nncli.core.rundir import RunDir, recording
from nncli.recipe.load import fingerprint
from nncli.train import checkpoint
from nncli.train.loop import Diverged, FitConfig, fit

TASKS = {"sequence-classification": "nncli.train.classifier", "causal-lm": "nncli.train.causal_lm",
         "image-classification": "nncli.train.image"}


@dataclass
class Session:
    recipe: Any
    command: str
    kind: Any                       # the task module
    pf: Any                         # what pre-flight prepared (data, tokenizer, model path, ...)
    out: RunDir
    report: RunReport
    fingerprint: str
    resume: bool
    threads: int = 0
    timer: Timer = field(default_factory=Timer)


def run(recipe, *, resume: bool = False, overwrite: bool = False, dry_run: bool = False, find_lr: str | None = None,
        callbacks: tuple = ()) -> RunReport:
    """Fine-tune; `find_lr` runs a learning-rate range test first: "report" stops after it, "use" trains with its
    suggestion; `callbacks` see every step and evaluation (sweeps prune through them)."""
    s = start(recipe, command="finetune", resume=resume, overwrite=overwrite, dry_run=dry_run)
    if s.report.status == "dry-run":
        return s.report
    with recording(s.out, s.report):
        trained = train(s, find_lr=find_lr, callbacks=callbacks)
        if trained is None:
            return s.report
        summarise(s, trained)
        values, intervals, sizes = s.kind.conclude(trained, s.pf, recipe, s.out, s.report)
        s.report["timings"]["wall_seconds"] = s.timer()
        gates = evaluate_gates(gates_of(recipe.gates), values, intervals=intervals, sizes=sizes)
        return finish(s.report, s.out, gates, card=s.kind.card(s.report, recipe) if trained.is_main else None,
                      write=trained.is_main)


def validate(recipe, *, strict: bool = False) -> RunReport:
    """`nncli validate`: the pre-flight alone (schema, data, labels, leakage, lengths, memory and time estimate)."""
    from nncli.core.errors import InputError

    kind = task_module(recipe.task)
    pf = kind.prepare(recipe)
    report = base_report("validate", recipe.name, task=recipe.task)
    report.update(status="succeeded", exit_code=0, warnings=list(pf.warnings), data=pf.summary, estimate=pf.estimate,
                  summary=kind.render(pf))
    if strict and pf.warnings:
        raise InputError(f"{len(pf.warnings)} warning(s) with --strict", "fix the data, or drop --strict", details=pf.warnings)
    return report


def task_module(task: str):
    return importlib.import_module(TASKS[task])


def start(recipe, *, command: str, resume: bool, overwrite: bool, dry_run: bool = False, extra_fingerprint=None,
          extra_metrics: list[str] = (), saved=None) -> Session:
    """Pre-flight, then (only then) the run directory, the resolved recipe.yaml (`saved`: the recipe to write, when it
    is not the one trained with, as for distill) and report.json saying running."""
    from nncli.core.machine import set_threads

    kind = task_module(recipe.task)
    pf = kind.prepare(recipe)
    check_gate_metrics(gates_of((saved or recipe).gates), kind.known_metrics(pf) + list(extra_metrics))
    out = RunDir(recipe.output or f"runs/{recipe.name or command}", command=command)
    resolved = resolved_recipe(recipe, pf)
    fp = fingerprint({"recipe": training_relevant(resolved), "data": kind.data_fingerprint(pf), "extra": extra_fingerprint})
    report = base_report(command, recipe.name, task=recipe.task)
    report.update(recipe_fingerprint=fp, data={**pf.summary, "fingerprint": kind.data_fingerprint(pf)},
                  warnings=list(pf.warnings), estimate=getattr(pf, "estimate", {}))
    s = Session(recipe, command, kind, pf, out, report, fp, resume)
    if dry_run:
        report.update(status="dry-run", exit_code=0)
        return s
    if console.is_main_process():
        out.prepare(resume=resume, overwrite=overwrite, inputs=kind.inputs_of(recipe))
        if resume:
            checkpoint.check_resumable(out, fp)
        out.write_text("recipe.yaml", yaml_text(resolved if saved is None else resolved_recipe(saved, pf)))
        out.write_json("report.json", report)
    s.threads = set_threads(recipe.train.threads, adaptive=True)
    return s


def train(s: Session, *, find_lr: str | None = None, callbacks: tuple = (), build=None):
    """Build the task and train it; None when only a learning-rate range test was asked for."""
    from accelerate.utils import set_seed

    from nncli.train.callbacks import MetricsLog, Trackers

    r = s.recipe
    set_seed(r.train.seed)             # the new head's initial weights depend on it
    task, model = (build or s.kind.build)(s.pf, r, s.report)
    lr = r.learning_rate()
    if find_lr and not s.resume:
        lr = _range_test(s, task, model)
        if find_lr == "report":
            s.report.update(mode="find-lr", status="succeeded", exit_code=0, timings={"wall_seconds": s.timer()})
            if console.is_main_process():
                s.out.write_json("report.json", s.report)
            return None
        set_seed(r.train.seed)
        task, model = (build or s.kind.build)(s.pf, r, s.report)
    s.report["training"].update(lr=lr, head_lr=getattr(r.train, "head_lr", None) or lr,
                                **({"lr_source": "learning-rate range test"} if find_lr else {}))
    cbs = [MetricsLog(s.out, r.logging.every_steps)]
    if r.logging.report_to:
        params = {**r.train.model_dump(mode="json"), "lr": lr, "epochs": planned_epochs(s)}
        cbs.append(Trackers(s.out, r.logging.report_to, r.name, params, every=r.logging.every_steps))
    console.log(f"model: {r.model.name} ({s.report['training']['total_parameters'] / 1e6:.2f}M parameters, "
                f"{s.report['training']['trainable_parameters'] / 1e6:.3f}M trainable, method {r.method}, lr {lr:g})")
    try:
        return fit(task, model, fit_config(r, lr, s), s.out, callbacks=[*cbs, *callbacks], resume=s.resume,
                   fingerprint=s.fingerprint)
    except Diverged:
        s.report["gates"] = [Diverged.gate]
        raise


def fit_config(r, lr: float, s: Session) -> FitConfig:
    t = r.train
    again = f"nncli {s.command} {s.out.path}/recipe.yaml --output {s.out.path} --resume"
    return FitConfig(epochs=planned_epochs(s), max_steps=t.max_steps, batch_size=t.batch_size,
                     accumulation=t.gradient_accumulation, lr=lr, weight_decay=t.weight_decay,
                     warmup_ratio=t.warmup_ratio, scheduler=t.scheduler,
                     max_grad_norm=t.max_grad_norm, eval_every=t.eval_every, patience=t.early_stopping_patience, seed=t.seed,
                     bf16=use_bf16(t.bf16), group_by_length=t.group_by_length, resume_command=again,
                     eval_at_start=s.report["training"].get("head_init", {}).get("method") == "linear_probe")


def planned_epochs(s: Session) -> float:
    """The epochs the run trains: pre-flight's resolution of train.epochs=auto (texts), else the recipe's number."""
    return getattr(s.pf, "epochs", None) or s.recipe.train.epochs


def _range_test(s: Session, task, model) -> float:
    from nncli.train.callbacks import LRFinder, plot_lr

    r = s.recipe
    console.log(f"learning-rate range test: up to {r.train.lr_finder_steps} steps from 1e-7 to 1")
    finder = LRFinder(r.train.lr_finder_steps)
    cfg = FitConfig(max_steps=r.train.lr_finder_steps, batch_size=r.train.batch_size, lr=1e-7, warmup_ratio=0.0,
                    scheduler="constant", max_grad_norm=r.train.max_grad_norm, seed=r.train.seed, evaluate=False,
                    checkpoint=False,
                    weight_decay=r.train.weight_decay, group_by_length=r.train.group_by_length, bf16=use_bf16(r.train.bf16))
    fit(task, model, cfg, s.out, callbacks=[finder])
    res = finder.result()
    if console.is_main_process():
        plot_lr(res, s.out / "lr_finder.png")
        s.out.write_json("lr_finder.json", res)
    s.report["lr_finder"] = {k: res[k] for k in ("suggested_lr", "steepest_lr", "min_loss_lr", "steps_run")}
    s.report["artifacts"].update(lr_finder="lr_finder.png", lr_finder_curve="lr_finder.json")
    console.log(f"learning-rate range test: suggested lr {res['suggested_lr']:.3g} (steepest descent {res['steepest_lr']:.3g}, "
                f"lowest loss at {res['min_loss_lr']:.3g}); see {s.out.path}/lr_finder.png")
    return res["suggested_lr"]


def summarise(s: Session, run) -> None:
    from nncli.core.report import peak_memory_mb

    st = run.state
    s.report["training"].update(steps=st.step, epochs_run=round(st.step / run.steps_per_epoch, 2), best_step=st.best_step,
                                best_validation_metric={run.task.metric: st.best_metric}, stopped_early=st.stopped_early,
                                bf16=run.bf16, threads=s.threads, world_size=run.world, total_steps_planned=run.total_steps,
                                evaluations_planned=run.planned_evaluations, history=st.history)
    rate = st.samples_seen / st.train_seconds if st.train_seconds else None
    if "augmentation" in s.report["data"]:
        a = s.report["data"]["augmentation"]
        a["augmented_examples_seen"] = int(round(st.samples_seen * a["examples_added"] / max(a["train_rows_with_augmentation"],
                                                                                             1)))
    s.report["timings"] = {"wall_seconds": s.timer(), "train_seconds": round(st.train_seconds, 2),
                           "train_samples_per_second": round(rate, 2) if rate else None}
    s.report["peak_memory_mb"] = peak_memory_mb()
    s.report["environment"] = environment(s.threads)


def training_relevant(resolved: dict) -> dict:
    """What changes the trained weights (a checkpoint of another recipe or data must not be resumed)."""
    import copy

    d = copy.deepcopy(resolved)
    for k in ("output", "name", "logging", "sweep", "gates"):
        d.pop(k, None)
    d["train"].pop("threads", None)
    return d


def resolved_recipe(recipe, pf) -> dict:
    """recipe.yaml as it ran: the learning rate, max_length and epochs actually used, every local path absolute, gates
    included, so `nncli finetune recipe.yaml` repeats the job from any directory."""
    from pathlib import Path

    from nncli.recipe.load import get_path, set_path
    from nncli.recipe.registry import PATH_KEYS

    raw = recipe.model_dump(mode="json")
    raw["train"]["lr"] = recipe.learning_rate()
    if getattr(pf, "max_length", None) and "max_length" in raw["data"]:
        raw["data"]["max_length"] = pf.max_length
    if getattr(pf, "epochs", None) and raw["train"].get("epochs") == "auto":
        raw["train"]["epochs"] = pf.epochs
    for key in PATH_KEYS.get(raw["command"], []):
        value = get_path(raw, key)
        if isinstance(value, str) and value and Path(value).exists():
            set_path(raw, list(key), str(Path(value).resolve()))
    return raw


def yaml_text(raw: dict) -> str:
    import yaml

    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def use_bf16(setting) -> bool:
    import torch

    from nncli.core.machine import cpu_flags

    if setting is False:
        return False
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported() or bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    if setting is True and not native:
        console.warn("train.bf16=true but this machine has no native bf16 (a recent GPU, or a CPU with avx512_bf16/AMX): "
                     "it will be slow")
    return setting is True or native

