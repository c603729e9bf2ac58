"""`nncli sweep`: hyperparameter search with Optuna over finetune runs.

- Search space from the recipe's `sweep.space` (dotted recipe keys -> {low, high, log} or {choices}),
  with defaults for the settings that matter most on small data (learning rate, batch size, weight
  decay, LoRA rank and dropout, class weights). `sweep.enqueue` runs given points first (e.g. the
  recipe's own values).
- TPE sampler (seeded); a median (or successive-halving) pruner fed with the validation metric at
  every evaluation, so bad trials stop early. Selection uses the validation split only: trials run
  without the test split, and the best trial's model is scored on the test split once at the end.
- The study lives in a storage URL: SQLite in the sweep directory by default, so an interrupted sweep
  resumes where it stopped (stale running trials are failed and redone); a shared database lets several
  processes or machines work on one study: the trial budget counts every worker's finished trials.
- Each trial is a normal finetune run directory (trial-NNNN/); the report lists every trial's
  parameters, metric and state, the best trial, and writes optimisation-history and parameter-
  importance plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from nncli.core import console
from nncli.core.atomic import atomic_write_bytes
from nncli.core.errors import GateFailed, InputError, Interrupted, UsageError
from nncli.core.report import RunReport, Timer, base_report, environment, now
from nncli.core.rundir import RunDir
from nncli.train.loop import Callback

DEFAULT_SPACE = {
    "lora": {"train.lr": {"low": 1e-4, "high": 3e-3, "log": True}, "train.batch_size": {"choices": [8, 16, 32]},
             "train.weight_decay": {"low": 0.0, "high": 0.1}, "lora.r": {"choices": [4, 8, 16, 32]},
             "lora.dropout": {"low": 0.0, "high": 0.2}, "train.class_weights": {"choices": ["balanced", "none"]}},
    "full": {"train.lr": {"low": 1e-5, "high": 3e-4, "log": True}, "train.batch_size": {"choices": [8, 16, 32]},
             "train.weight_decay": {"low": 0.0, "high": 0.1}, "train.class_weights": {"choices": ["balanced", "none"]}},
}


def space_of(recipe) -> dict:
    sw = recipe.sweep
    space = dict(sw.space) if sw and sw.space else dict(DEFAULT_SPACE[recipe.method])
    if recipe.task != "sequence-classification":
        space.pop("train.class_weights", None)
    for k, v in space.items():
        if not isinstance(v, dict) or not ("choices" in v or ("low" in v and "high" in v)):
            raise UsageError(f"sweep.space.{k}: give {{low, high[, log]}} or {{choices: [...]}}",
                             "e.g. train.lr: {low: 1e-4, high: 3e-3, log: true}")
        if "choices" in v and not v["choices"]:
            raise UsageError(f"sweep.space.{k}: choices is empty", "list at least one value")
        if "low" in v and not float(v["low"]) < float(v["high"]):
            raise UsageError(f"sweep.space.{k}: low must be below high", "e.g. {low: 1e-4, high: 3e-3}")
    return space


def _suggest(trial, space: dict) -> dict:
    params = {}
    for key, v in space.items():
        if "choices" in v:
            params[key] = trial.suggest_categorical(key, v["choices"])
        elif all(isinstance(v[x], int) and not isinstance(v[x], bool) for x in ("low", "high")) and not v.get("log"):
            params[key] = trial.suggest_int(key, v["low"], v["high"])
        else:
            params[key] = trial.suggest_float(key, float(v["low"]), float(v["high"]), log=bool(v.get("log")))
    return params


def _trial_recipe(base, params: dict, out: Path):
    from nncli.recipe.load import set_path, validate

    raw = base.model_dump(mode="json")
    raw["sweep"] = None
    raw["data"]["test"] = None          # selection on validation only; the test split is scored once, at the end
    raw["data"]["test_split"] = None
    raw["output"] = str(out)
    raw["gates"] = {"min": {}, "max": {}}
    for k, v in params.items():
        set_path(raw, k.split("."), v)
    return validate("finetune", raw, source="sweep trial")


def run(recipe, *, trials: int, timeout: float | None = None, metric: str | None = None,
        storage: str | None = None, study_name: str | None = None, output: str | None = None) -> RunReport:
    try:
        import optuna
    except ImportError:
        from nncli.core.errors import missing_extra

        raise missing_extra("optuna", "sweep") from None
    timer = Timer()
    if recipe.data.validation is None and not recipe.data.validation_split:
        console.log("no validation file: each trial holds out a split of train (data.validation_fraction)")
    metric = metric or (recipe.sweep.metric if recipe.sweep else None) or recipe.train.metric
    allowed = ("loss",) if recipe.task == "causal-lm" else ("accuracy", "macro_f1", "loss")
    if metric not in allowed:
        raise UsageError(f"--metric {metric}: this sweep optimises {' or '.join(allowed)} (on the validation split)",
                         f"e.g. --metric {allowed[-1]}")
    if trials < 1:
        raise UsageError("--trials must be at least 1", "e.g. --trials 20")
    space = space_of(recipe)
    out = RunDir(output or recipe.output or f"runs/{recipe.name or 'sweep'}-sweep", command="sweep")
    out.prepare(resume=(out.path / "study.db").exists() or (out.path / "report.json").exists())
    url = storage or f"sqlite:///{(out.path / 'study.db').resolve()}"
    name = study_name or (recipe.sweep.study_name if recipe.sweep and recipe.sweep.study_name else (recipe.name or "nncli-sweep"))
    study = _open_study(optuna, url, name, metric, recipe)
    finished = lambda: [t for t in study.get_trials(deepcopy=False)  # noqa: E731
                        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    console.log(f"sweep: study '{name}' in {url}: {len(finished())} of {trials} trials already finished; metric validation "
                f"{metric}")
    if len(finished()) >= trials:
        console.log("sweep: the trial budget is already spent; reporting the study")
    try:
        study.optimize(_objective(optuna, recipe, space, metric, out), n_trials=max(0, trials - len(finished())), timeout=timeout,
                       catch=(InputError,), callbacks=[optuna.study.MaxTrialsCallback(
                           trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))])
    except (Interrupted, KeyboardInterrupt) as e:   # in a trial (it saved its state), or between trials
        raise Interrupted(f"sweep interrupted: {getattr(e, 'message', 'between trials')}",
                          "run the same command again: the study resumes where it stopped") from e
    return _report(optuna, study, recipe, space, metric, name, url, out, timer)


def _open_study(optuna, url: str, name: str, metric: str, recipe):
    import random
    import time
    import warnings

    sw = recipe.sweep
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    pruner = (optuna.pruners.SuccessiveHalvingPruner() if sw and sw.pruner == "halving"
              else optuna.pruners.MedianPruner(n_startup_trials=sw.startup_trials if sw else 3, n_warmup_steps=0))
    last = None
    for attempt in range(6):   # workers starting together race to create the tables: retry, then give up clearly
        try:
            engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
            rdb = optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90, engine_kwargs=engine_kwargs)
            study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True,
                                        direction="minimize" if metric == "loss" else "maximize",
                                        sampler=optuna.samplers.TPESampler(seed=recipe.train.seed), pruner=pruner)
            break
        except Exception as e:
            last = e
            time.sleep(0.5 + random.random() * (attempt + 1))
    else:
        raise InputError(f"cannot open the study storage {url}: {type(last).__name__}: {str(last)[:160]}",
                         "check the URL (sqlite:///path.db, postgresql://user@host/db) and that its driver is installed")
    optuna.storages.fail_stale_trials(study)
    if sw and sw.enqueue and not study.get_trials(deepcopy=False):
        for point in sw.enqueue:
            study.enqueue_trial(point, skip_if_exists=True)
    return study


class Pruning(Callback):
    """Reports every validation result to the trial; stops the run when the pruner says it falls behind."""

    def __init__(self, optuna, trial, metric: str):
        self.optuna, self.trial, self.metric = optuna, trial, metric

    def on_evaluate(self, run, step: int, metrics: dict) -> None:
        value = metrics[self.metric]
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise self.optuna.TrialPruned(f"validation {self.metric} {value:.4f} at step {step} is below the median of earlier "
                                          "trials")


def _objective(optuna, recipe, space: dict, metric: str, out: RunDir):
    from nncli.train import finetune

    def objective(trial):
        params = _suggest(trial, space)
        trial_out = out.path / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(trial_out))
        r = _trial_recipe(recipe, params, trial_out)
        console.log(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
        try:
            rep = finetune.run(r, overwrite=True, callbacks=(Pruning(optuna, trial, metric),))
        except optuna.TrialPruned:
            _mark(trial_out, "pruned")
            console.log(f"trial {trial.number}: pruned")
            raise
        except GateFailed as e:   # a diverged run (NaN loss) is a bad trial, not a broken sweep
            trial.set_user_attr("error", e.message)
            return float("inf") if metric == "loss" else 0.0
        value = rep["training"]["best_validation_metric"][r.train.metric]
        if r.train.metric != metric:
            value = rep["metrics"]["validation"][metric]
        console.log(f"trial {trial.number}: validation {metric} {value:.4f}")
        return value

    return objective


def _report(optuna, study, recipe, space, metric, name, url, out, timer) -> RunReport:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise InputError("no trial completed", "see the trial directories; widen the search space or check the data")
    best = study.best_trial
    report = base_report("sweep", recipe.name, task=recipe.task)
    report.update(study={"name": name, "storage": url, "direction": study.direction.name.lower(),
                         "metric": f"validation.{metric}"},
                  space=space, trials=[_trial_row(t) for t in study.get_trials(deepcopy=False)],
                  best={"number": best.number, "value": best.value, "params": best.params,
                        "run_dir": best.user_attrs.get("run_dir")},
                  environment=environment(recipe.train.threads))
    counts: dict = {}
    for t in report["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    report["counts"] = counts
    if recipe.data.test or recipe.data.test_split:
        report["best"]["test"] = _score_test(recipe, best.user_attrs.get("run_dir"))
    report["artifacts"] = _plots(study, out)
    report.update(status="succeeded", exit_code=0, finished_at=now(), timings={"wall_seconds": timer()})
    out.write_json("report.json", report)
    out.write_text("best-params.yaml", dump_params(best.params))
    return report


def _mark(run_dir: Path, status: str) -> None:
    f = run_dir / "report.json"
    try:
        r = json.loads(f.read_text())
        r.update(status=status, finished_at=now())
        from nncli.core.atomic import atomic_write_json

        atomic_write_json(f, r)
    except (OSError, ValueError):
        pass


def _trial_row(t) -> dict:
    return {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
            "run_dir": t.user_attrs.get("run_dir"), "last_step": max(t.intermediate_values) if t.intermediate_values else None,
            "error": t.user_attrs.get("error")}


def _score_test(recipe, run_dir: str | None) -> dict | None:
    """The best trial's model on the test split, once."""
    if not run_dir:
        return None
    if recipe.task == "causal-lm":
        from nncli.train.causal_lm import score

        return score(Path(run_dir) / "merged", recipe, "test")
    import numpy as np

    from nncli.evaluate import metrics as M
    from nncli.io.inference import load_classifier, map_labels, release, softmax
    from nncli.io.labelled import load_labelled

    data = load_labelled(recipe.data, seed=recipe.train.seed)
    if data.test is None:
        return None
    clf = load_classifier(run_dir)
    probs = softmax(clf.logits(data.test.texts, data.test.pairs))
    release(clf)
    y = np.asarray(map_labels([data.label_names[i] for i in data.test.labels], clf.label_names, "test"))
    out = M.classification(y, probs.argmax(1), len(clf.label_names), probs)
    return {k: out[k] for k in ("accuracy", "macro_f1", "loss") if k in out}


def _plots(study, out: RunDir) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    import optuna

    arts = {"report": "report.json", "best_params": "best-params.yaml", "study": "study.db"}
    for fname, fn in (("history.png", optuna.visualization.matplotlib.plot_optimization_history),
                      ("importance.png", optuna.visualization.matplotlib.plot_param_importances)):
        try:
            ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
            fig.set_size_inches(7, 4)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            plt.close(fig)
            atomic_write_bytes(out / fname, buf.getvalue())
            arts[fname.split(".")[0]] = fname
        except Exception as e:   # importance needs >= 2 completed trials with varied parameters
            console.log(f"{fname}: not drawn ({type(e).__name__}: {str(e)[:100]})")
    return arts


def dump_params(params: dict) -> str:
    return "".join(f"{k}={_fmt(v)}\n" for k, v in params.items())


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
