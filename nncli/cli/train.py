"""nncli finetune, distill, sweep and validate."""

from __future__ import annotations

from typing import Annotated

import typer

from nncli.cli.app import app
from nncli.cli.args import TrainingInputs, columns, split_args
from nncli.cli.options import (
    ArgsArg,
    BatchOpt,
    DataOpt,
    DistillEpochsOpt,
    EpochsOpt,
    LabelColOpt,
    LrOpt,
    MaxLengthOpt,
    OutputOpt,
    OverwriteRunOpt,
    PairColOpt,
    ResumeOpt,
    SeedOpt,
    TestOpt,
    TextColOpt,
    ValidationOpt,
    command_options,
)
from nncli.cli.output import render_gates, stdout
from nncli.core.errors import UsageError

# ---------------------------------------------------------------------------------------------- finetune

@app.command()
@command_options(gates=True, training_inputs=True)
def finetune(
    inputs: TrainingInputs,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    output: OutputOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    method: Annotated[str | None, typer.Option(metavar="lora|full", help="LoRA (default) or full fine-tuning.")] = None,
    task: Annotated[str | None, typer.Option(metavar="TASK", help="sequence-classification (default), causal-lm, or "
                                             "image-classification (the default when --data is an image folder).")] = None,
    prompt_column: Annotated[str | None, typer.Option(help="causal-lm: prompt column (with --completion-column).")] = None,
    completion_column: Annotated[str | None,
                                 typer.Option(help="causal-lm: completion column (loss on completions only).")] = None,
    messages_column: Annotated[str | None, typer.Option(help="causal-lm: chat column, a list of {role, content}.")] = None,
    batch_size: BatchOpt = None,
    max_length: MaxLengthOpt = None,
    seed: SeedOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteRunOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run the pre-flight checks only.", metavar="")] = False,
    find_lr: Annotated[bool, typer.Option(
        "--find-lr", help="Run a learning-rate range test, plot it and suggest a rate (no training).", metavar="")] = False,
    use_found_lr: Annotated[bool, typer.Option("--use-found-lr", help="Run the range test, then train with its suggested rate.",
                                               metavar="")] = False,
):
    """Fine-tune a text classifier (or a language model, or an image classifier), LoRA by default, with an honest report.

    Examples:

      nncli finetune reviews

      nncli finetune my.csv --text-column review --label-column stars -o runs/stars

      nncli finetune --model sentence-transformers/all-MiniLM-L6-v2 --data train.csv \\
        --text-column review --label-column stars -o runs/stars

      nncli finetune my.yaml train.lr=1e-3 train.epochs=5 --min test.macro_f1=0.6 --json

      nncli finetune --task causal-lm --model Qwen/Qwen2.5-0.5B --data chats.jsonl --messages-column messages -o runs/chat

      nncli finetune --model google/vit-base-patch16-224 --data photos/ --test photos-test/ -o runs/photos  # <label>/*.jpg
    """
    def job(gates):
        from nncli.recipe.load import load_recipe
        from nncli.train import finetune as ft

        path, overrides, flags = inputs.resolve(label_column)
        flags |= {"data.text_pair_column": text_pair_column, "output": output,
                  "train.epochs": epochs, "train.lr": lr, "method": method, "train.batch_size": batch_size,
                  "data.max_length": max_length, "train.seed": seed, "task": task, "data.prompt_column": prompt_column,
                  "data.completion_column": completion_column, "data.messages_column": messages_column}
        recipe = load_recipe("finetune", path, overrides, flags, gates=gates)
        return ft.run(recipe, resume=resume, overwrite=overwrite, dry_run=dry_run,
                      find_lr="use" if use_found_lr else ("report" if find_lr else None))

    return job, _render_finetune


def _render_finetune(report: dict) -> None:
    from rich.table import Table

    out = stdout()
    for w in report.get("warnings", []):
        if w.startswith(("BELOW BASELINES", "COLLAPSED")):
            out.print(f"WARNING: {w}", markup=False)          # the first line of the result, never buried
    if report.get("mode") == "find-lr":
        f = report["lr_finder"]
        out.print(f"suggested learning rate: {f['suggested_lr']:.3g} (steepest descent at {f['steepest_lr']:.3g}, lowest loss at "
                  f"{f['min_loss_lr']:.3g}); curve: {report['artifacts'].get('lr_finder')}; train with it: --use-found-lr "
                  f"or train.lr={f['suggested_lr']:.3g}", markup=False)
        return
    if report.get("status") == "dry-run":
        out.print(f"pre-flight passed: {len(report['warnings'])} warning(s)", markup=False)
        return
    lm = report.get("task") == "causal-lm"
    second = "linear_probe" if "linear_probe" in report.get("baselines", {}) else "tfidf_logreg"   # images: a linear probe
    cols = ("split", "n", "loss", "perplexity") if lm else ("split", "n", "accuracy", "macro-F1", "loss", "majority acc",
                                                            "linear probe F1" if second == "linear_probe" else "TF-IDF+LR F1")
    t = Table(title=f"{report.get('name') or 'run'}: {report['status']}" + (" (causal LM)" if lm else ""))
    for col in cols:
        t.add_column(col)
    for split, m in report.get("metrics", {}).items():
        if lm:
            t.add_row(split, str(m.get("n", "")), f"{m['loss']:.4f}", f"{m['perplexity']:.3f}")
            continue
        maj = report.get("baselines", {}).get("majority_class", {}).get(split, {})
        tf = report.get("baselines", {}).get(second, {}).get(split, {})
        t.add_row(split, str(m.get("n", "")), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", f"{m['loss']:.4f}",
                  f"{maj.get('accuracy', float('nan')):.4f}", f"{tf.get('macro_f1', float('nan')):.4f}")
    out.print(t)
    for smp in report.get("samples", [])[:3]:
        out.print(f"sample: {smp['prompt'][-80:]!r} -> {smp['generated'][:120]!r}", markup=False)
    render_gates(out, report)
    tm = report.get("timings", {})
    if tm:
        out.print(f"{tm.get('train_samples_per_second')} samples/s, {tm.get('wall_seconds')}s wall; "
                  f"artifacts: {', '.join(report.get('artifacts', {}))}", markup=False)


# ---------------------------------------------------------------------------------------------- distill

@app.command()
@command_options(gates=True)
def distill(
    args: ArgsArg = None,
    teacher: Annotated[str | None,
                       typer.Option("--teacher", help="The fine-tuned teacher: a run directory or model directory.")] = None,
    student: Annotated[str | None, typer.Option(
        "--student", help="layers=N (teacher layers kept), hidden=H, both, or a model (default layers=3); image CNNs: "
                          "depths=A-B-.. (blocks kept per stage; default half).")] = None,
    data: DataOpt = None,
    validation: ValidationOpt = None,
    test: TestOpt = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    output: OutputOpt = None,
    transfer_data: Annotated[str | None, typer.Option("--transfer-data",
                                                      help="Unlabelled texts the teacher labels for the student.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Soft-target weight (default 0.5).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Soft-target temperature (default 2).")] = None,
    epochs: DistillEpochsOpt = None,
    lr: LrOpt = None,
    control: Annotated[bool | None, typer.Option(
        "--control/--no-control", help="Also train the student without the teacher (default on).", metavar="")] = None,
    min_retention: Annotated[float | None, typer.Option(
        "--min-retention", help="Gate: fail (exit 5) if student/teacher metric is below this (e.g. 0.97).")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteRunOpt = False,
):
    """Distil a fine-tuned teacher (texts or images) into a smaller, faster student: retention, speed-up, gain over no teacher.

    Examples:

      nncli distill --teacher runs/quickstart/finetune --student layers=3 --data recipes/data/reviews/train.csv -o runs/student

      nncli distill --teacher runs/big --student layers=2 --data train.csv --transfer-data unlabelled.csv --min-retention 0.97

      nncli distill my-distill.yaml distill.alpha=0.9 distill.temperature=4 --json

      nncli distill --teacher runs/digits --student depths=1-1 --data recipes/data/digits -o runs/digits-student
    """
    def job(gates):
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe
        from nncli.train import distill as ds

        recipe_name, overrides = split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"teacher": teacher, "student": student, "data.train": data, "data.validation": validation, "data.test": test,
                 "data.text_column": columns(text_column), "data.text_pair_column": text_pair_column,
                 "data.label_column": label_column, "output": output, "distill.transfer_data": transfer_data,
                 "distill.alpha": alpha, "distill.temperature": temperature, "train.epochs": epochs, "train.lr": lr,
                 "distill.control": control}
        gates = gates
        if min_retention is not None:
            gates["min"]["retention"] = min_retention
        recipe = load_recipe("distill", path, overrides, flags, gates=gates)
        return ds.run(recipe, resume=resume, overwrite=overwrite)

    return job, _render_distill


def _render_distill(r: dict) -> None:
    from rich.table import Table

    d = r.get("distill")
    if not d:
        return _render_finetune(r)
    split = d["split"]
    t = Table(title=f"distill: {r.get('status')} ({split} split)")
    for col in ("model", "parameters", "w/o embeddings", "MB", "batch-1 ms", "batch-32 /s", "accuracy", "macro-F1"):
        t.add_column(col)
    for name in ("teacher", "student"):
        x = d[name]
        m = x["metrics"][split]
        t.add_row(name, f"{x['parameters']['total']:,}", f"{x['parameters']['without_embeddings']:,}", f"{x['size_mb']:.1f}",
                  f"{x['latency_ms_batch1']:.1f}", f"{x['throughput_per_second']:.1f}", f"{m['accuracy']:.4f}",
                  f"{m['macro_f1']:.4f}")
    if "control" in d:
        m = d["control"]["metrics"][split]
        t.add_row("student, no teacher", "", "", "", "", "", f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
    out = stdout()
    out.print(t)
    out.print(f"retention: accuracy {d['retention']['accuracy']:.3f}, macro-F1 {d['retention']['macro_f1']:.3f}; "
              f"throughput {d['speedup_throughput']:.2f}x" + ("; gain over control (macro-F1) "
                                                              f"{d['gain_over_control']['macro_f1'] * 100:+.2f} pts"
                                                            if "gain_over_control" in d else ""))



# ---------------------------------------------------------------------------------------------- sweep

@app.command()
@command_options(training_inputs=True)
def sweep(
    inputs: TrainingInputs,
    label_column: LabelColOpt = None,
    trials: Annotated[int, typer.Option(metavar="N", help="Trial budget (shared by every worker on the study).",
                                        show_default=True)] = 20,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    metric: Annotated[str | None, typer.Option(help="Validation metric to optimise: macro_f1, accuracy or loss "
                                                    "(default: the recipe's train.metric, macro_f1).")] = None,
    storage: Annotated[str | None, typer.Option(help="Study storage URL (default: sqlite in the sweep directory).")] = None,
    study_name: Annotated[str | None, typer.Option(help="Study name, the same for workers sharing a storage "
                                                        "(default: the recipe's name).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Sweep directory (default runs/<name>-sweep).")] = None,
):
    """Search hyperparameters with Optuna (TPE + pruning on the validation metric); each trial is a finetune run.

    Examples:

      nncli sweep reviews --trials 20 -o runs/sweep

      nncli sweep my.yaml --trials 50 --storage postgresql://user@db/sweeps --study-name reviews-v2   # on several machines

      nncli sweep --model sentence-transformers/all-MiniLM-L6-v2 --data train.csv --trials 10 --metric accuracy --json
    """
    def job():
        from nncli.recipe.load import load_recipe
        from nncli.train import sweep as sw

        recipe = load_recipe("finetune", *inputs.resolve(label_column))
        return sw.run(recipe, trials=trials, timeout=timeout, metric=metric, storage=storage, study_name=study_name,
                      output=output)

    def render(r):
        from rich.table import Table

        t = Table(title=f"sweep {r['study']['name']}: best trial {r['best']['number']} ({r['study']['metric']} "
                        f"{r['best']['value']:.4f})")
        for col in ("trial", "state", "value", "parameters"):
            t.add_column(col)
        for x in r["trials"]:
            t.add_row(str(x["number"]), x["state"], "-" if x["value"] is None else f"{x['value']:.4f}",
                      ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in x["params"].items()))
        out = stdout()
        out.print(t)
        if r["best"].get("test"):
            out.print("best trial on the test split: " + ", ".join(f"{k} {v:.4f}" for k, v in r["best"]["test"].items()),
                      markup=False)
        out.print(f"best run: {r['best']['run_dir']}", markup=False)

    return job, render



# ---------------------------------------------------------------------------------------------- validate

@app.command()
@command_options(training_inputs=True)
def validate(
    inputs: TrainingInputs,
    label_column: LabelColOpt = None,
    strict: Annotated[bool,
                      typer.Option("--strict", help="Treat warnings (leakage, duplicates, truncation...) as failures (exit 3).",
                                   metavar="")] = False,
):
    """Pre-flight a finetune recipe: schema, data, labels, leakage, token lengths, memory and time estimate.

    Examples:

      nncli validate reviews

      nncli validate my.yaml data.max_length=256 --strict --json
    """
    def job():
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import recipe_command

        path, overrides, flags = inputs.resolve(label_column)
        cmd = recipe_command(path) if path else "finetune"
        if cmd not in ("finetune", "distill"):
            raise UsageError(f"nncli validate checks finetune and distill recipes; {path} is a '{cmd}' recipe",
                             f"run it with: nncli {cmd} {path}")
        recipe = load_recipe(cmd, path, overrides, flags)
        if cmd == "distill":
            from nncli.train.distill import preflight_recipe

            recipe = preflight_recipe(recipe)
        from nncli.train.finetune import validate as check

        return check(recipe, strict=strict)

    return job, lambda r: stdout().print(r["summary"] + f"\nok: {len(r['warnings'])} warning(s)", markup=False)
