"""The command line: a thin adapter. parse -> load_recipe -> <capability>.run -> emit -> exit code.

This is the only module that imports Typer. Heavy libraries (torch, transformers, peft) are imported
inside the capabilities, so `nncli --help` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from . import __version__, console
from .errors import ExitCode, NncliError, UsageError

app = typer.Typer(name="nncli", no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Fine-tune, evaluate, distill, quantize and export Hugging Face models, with gates for CI.\n\n"
                       "Exit codes: 0 ok, 1 internal error, 2 usage, 3 input, 4 environment, 5 gate failed, "
                       "130 interrupted.")
recipes_app = typer.Typer(no_args_is_help=True, help="List, show, copy and validate recipes.")
app.add_typer(recipes_app, name="recipes", help="List, show, copy and validate recipes.")

# ---------------------------------------------------------------------------------------------- shared options

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout (results only).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also NNCLI_DEBUG=1).")]
ArgsArg = Annotated[Optional[list[str]], typer.Argument(
    metavar="[RECIPE] [KEY=VALUE]...", help="A recipe file or shipped recipe name, then dotted overrides such as train.lr=1e-3.",
    show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, model directory or run directory.")]
DataOpt = Annotated[Optional[str], typer.Option("--data", "-d", help="Training data: CSV/TSV/JSON/JSONL/parquet file or hub dataset id.")]
ValidationOpt = Annotated[Optional[str], typer.Option("--validation", help="Validation file (default: a stratified 10% split of --data).")]
TestOpt = Annotated[Optional[str], typer.Option("--test", help="Test file, scored once at the end.")]
TextColOpt = Annotated[Optional[list[str]], typer.Option("--text-column", help="Text column; repeat it when files name it differently.")]
PairColOpt = Annotated[Optional[str], typer.Option("--text-pair-column", help="Second text column for pair tasks.")]
LabelColOpt = Annotated[Optional[str], typer.Option("--label-column", help="Label column (strings or integers).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/<recipe name>).")]
MinOpt = Annotated[Optional[list[str]], typer.Option("--min", metavar="METRIC=VALUE", help="Gate: fail (exit 5) if METRIC is below VALUE.")]
MaxOpt = Annotated[Optional[list[str]], typer.Option("--max", metavar="METRIC=VALUE", help="Gate: fail (exit 5) if METRIC is above VALUE.")]


_global = {"json": False, "quiet": False, "debug": False}


def _version(value: bool):
    if value:
        typer.echo(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
):
    """Fine-tune, evaluate, distill, quantize and export Hugging Face models, with gates for CI."""
    _global.update(json=json_out, quiet=quiet, debug=debug)


def _split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    args = list(args or [])
    recipe = None
    if args and "=" not in args[0]:
        recipe = args.pop(0)
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UsageError(f"unexpected argument {stray[0]!r}: after the recipe only KEY=VALUE overrides are allowed",
                         "put flags before or after, e.g. nncli finetune recipe.yaml train.lr=1e-3 --epochs 3")
    return recipe, args


def _execute(fn: Callable[[], Any], json_out: bool, quiet: bool, debug: bool, render: Callable[[dict], None] | None = None) -> None:
    """Run a capability, print its result, and map every outcome to the documented exit code."""
    json_out = json_out or _global["json"]
    console.state.quiet = quiet or _global["quiet"]
    debug = debug or _global["debug"] or os.environ.get("NNCLI_DEBUG", "") not in ("", "0")
    console.state.debug = debug
    code = ExitCode.OK
    try:
        result = fn()
        if console.is_main_process():  # under torchrun, rank 0 alone prints results
            _emit(result, json_out, render)
        code = ExitCode(result.get("exit_code") or 0) if isinstance(result, dict) else ExitCode.OK
    except NncliError as e:
        code = e.code
        report = getattr(e, "report", None)
        if json_out:
            payload = report if report is not None else {"status": "error", "exit_code": int(code)}
            payload = {**payload, "error": e.message, "hint": e.hint, "details": e.details, "exit_code": int(code)}
            _print_json(payload)
        elif report is not None and render is not None:
            render(report)
        _print_error(e, debug)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        console.warn("interrupted")
        if json_out:
            _print_json({"status": "interrupted", "exit_code": int(code)})
    except Exception as e:  # a bug: say so plainly
        code = ExitCode.INTERNAL
        if json_out:
            _print_json({"status": "error", "exit_code": int(code), "error": f"internal error: {type(e).__name__}: {e}"})
        if debug:
            traceback.print_exc(file=sys.stderr)
        console.console().print(f"error: internal error ({type(e).__name__}: {e}). This is a bug in nncli; "
                                "rerun with --debug for the traceback and report it.", markup=False)
    raise typer.Exit(int(code))


def _print_error(e: NncliError, debug: bool) -> None:
    c = console.console()
    c.print(f"error: {e.message}", markup=False)
    for d in e.details:
        c.print(f"  - {d}", markup=False)
    if e.hint:
        c.print(f"hint: {e.hint}", markup=False)
    if debug:
        traceback.print_exception(e, file=sys.stderr)


def _print_json(obj: dict) -> None:
    from .report import _json_default

    sys.stdout.write(json.dumps(obj, default=_json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _emit(result: Any, json_out: bool, render: Callable[[dict], None] | None) -> None:
    if json_out:
        _print_json(result if isinstance(result, dict) else {"result": result})
    elif render is not None:
        render(result)


def _columns(names: list[str] | None):
    """A repeated --text-column: one name, or a list of candidates (the first each file has)."""
    if not names:
        return None
    return names[0] if len(names) == 1 else list(names)


def _stdout():
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, no_color=not tty, width=None if tty else 160)


# ---------------------------------------------------------------------------------------------- finetune

@app.command()
def finetune(
    args: ArgsArg = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    validation: ValidationOpt = None,
    test: TestOpt = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    output: OutputOpt = None,
    epochs: Annotated[Optional[float], typer.Option(help="Training epochs (early stopping may end sooner).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    method: Annotated[Optional[str], typer.Option(help="lora or full.")] = None,
    task: Annotated[Optional[str], typer.Option(help="sequence-classification (default) or causal-lm.")] = None,
    prompt_column: Annotated[Optional[str], typer.Option(help="causal-lm: prompt column (with --completion-column).")] = None,
    completion_column: Annotated[Optional[str], typer.Option(help="causal-lm: completion column (loss on completions only).")] = None,
    messages_column: Annotated[Optional[str], typer.Option(help="causal-lm: chat column, a list of {role, content}.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per batch.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Truncate texts to this many tokens.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (same seed, same metrics on CPU).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --output from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run directory.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run the pre-flight checks only.")] = False,
    find_lr: Annotated[bool, typer.Option("--find-lr", help="Run a learning-rate range test, plot it and suggest a rate (no training).")] = False,
    use_found_lr: Annotated[bool, typer.Option("--use-found-lr", help="Run the range test, then train with its suggested rate.")] = False,
    min_: MinOpt = None,
    max_: MaxOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Fine-tune a text classifier (or, with --task causal-lm, a language model), LoRA by default, with an honest report.

    Examples:

      nncli finetune reviews

      nncli finetune --model sentence-transformers/all-MiniLM-L6-v2 --data train.csv --text-column review --label-column stars -o runs/stars

      nncli finetune my.yaml train.lr=1e-3 train.epochs=5 --min test.macro_f1=0.6 --json

      nncli finetune --task causal-lm --model Qwen/Qwen2.5-0.5B --data chats.jsonl --messages-column messages -o runs/chat
    """
    def job():
        from . import finetune as ft
        from .recipe import find_recipe, load_recipe
        from .report import parse_gate_flags, parse_gates

        recipe_name, overrides = _split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model.name": model, "data.train": data, "data.validation": validation, "data.test": test,
                 "data.text_column": _columns(text_column),
                 "data.text_pair_column": text_pair_column, "data.label_column": label_column, "output": output,
                 "train.epochs": epochs, "train.lr": lr, "method": method, "train.batch_size": batch_size,
                 "data.max_length": max_length, "train.seed": seed, "task": task, "data.prompt_column": prompt_column,
                 "data.completion_column": completion_column, "data.messages_column": messages_column}
        recipe = load_recipe("finetune", path, overrides, flags)
        gates = parse_gates({**recipe.gates.min, **parse_gate_flags(min_, "min")},
                            {**recipe.gates.max, **parse_gate_flags(max_, "max")})
        return ft.run(recipe, resume=resume, overwrite=overwrite, dry_run=dry_run, gates=gates,
                      find_lr="use" if use_found_lr else ("report" if find_lr else None))

    _execute(job, json_out, quiet, debug, _render_finetune)


def _render_finetune(report: dict) -> None:
    from rich.table import Table

    out = _stdout()
    if report.get("task") == "find-lr":
        f = report["lr_finder"]
        out.print(f"suggested learning rate: {f['suggested_lr']:.3g} (steepest descent at {f['steepest_lr']:.3g}, lowest loss at "
                  f"{f['min_loss_lr']:.3g}); curve: {report['artifacts'].get('lr_finder')}; train with it: --use-found-lr "
                  f"or train.lr={f['suggested_lr']:.3g}", markup=False)
        return
    if report.get("finetune_task") == "causal-lm" or (report.get("status") == "dry-run" and "estimate" not in report):
        if report.get("status") == "dry-run":
            out.print("pre-flight passed: " + "; ".join(f"{k} {v['examples']} examples ({v['truncated']} truncated)"
                                                       for k, v in report["data"].items()), markup=False)
            return
        t = Table(title=f"{report.get('name') or 'run'}: {report['status']} (causal LM)")
        for col in ("split", "loss", "perplexity"):
            t.add_column(col)
        for split, m in report.get("metrics", {}).items():
            t.add_row(split, f"{m['loss']:.4f}", f"{m['perplexity']:.3f}")
        out.print(t)
        for smp in report.get("samples", [])[:3]:
            out.print(f"sample: {smp['prompt'][-80:]!r} -> {smp['generated'][:120]!r}", markup=False)
        for g in report.get("gates", []):
            out.print(f"gate {g['metric']} {g['op']} {g['threshold']}: {g['value']} -> {'pass' if g['passed'] else 'FAIL'}")
        return
    if report.get("status") == "dry-run":
        out.print(f"pre-flight passed: {len(report['warnings'])} warning(s); estimate "
                  f"{report['estimate']['peak_memory_gb']} GB peak, ~{report['estimate']['seconds_per_epoch']:.0f}s per epoch")
        return
    t = Table(title=f"{report.get('name') or 'run'}: {report['status']}")
    for col in ("split", "accuracy", "macro-F1", "loss", "majority acc", "TF-IDF+LR F1"):
        t.add_column(col)
    for split, m in report.get("metrics", {}).items():
        maj = report.get("baselines", {}).get("majority_class", {}).get(split, {})
        tf = report.get("baselines", {}).get("tfidf_logreg", {}).get(split, {})
        t.add_row(split, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", f"{m['loss']:.4f}",
                  f"{maj.get('accuracy', float('nan')):.4f}", f"{tf.get('macro_f1', float('nan')):.4f}")
    out.print(t)
    for g in report.get("gates", []):
        out.print(f"gate {g['metric']} {g['op']} {g['threshold']}: {g['value']} -> {'pass' if g['passed'] else 'FAIL'}")
    tm = report.get("timings", {})
    if tm:
        out.print(f"{tm.get('train_samples_per_second')} samples/s, {tm.get('wall_seconds')}s wall; "
                  f"artifacts: {', '.join(report.get('artifacts', {}))}")


# ---------------------------------------------------------------------------------------------- evaluate

def _split_models(args: list[str] | None) -> tuple[str | None, list[str], list[str]]:
    """[RECIPE.yaml] [MODEL...] [KEY=VALUE...] in any order: *.yaml is the recipe, KEY=VALUE an override."""
    recipe, models, overrides = None, [], []
    for a in args or []:
        if "=" in a and not a.startswith(("/", ".")):
            overrides.append(a)
        elif a.endswith((".yaml", ".yml")) and recipe is None:
            recipe = a
        else:
            models.append(a)
    return recipe, models, overrides


@app.command()
def evaluate(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[RECIPE.yaml] MODEL... [KEY=VALUE]...",
                    help="Models (run directories, model directories, hub ids, ONNX exports), optionally a recipe and overrides.",
                    show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Evaluation data: a file or hub dataset id.")] = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    slice_column: Annotated[Optional[str], typer.Option(help="Report every metric per value of this column.")] = None,
    validation: Annotated[Optional[str], typer.Option(help="Data to fit the calibration temperature on (default: the run's validation split).")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit temperature scaling and store it with the model.")] = False,
    bins: Annotated[Optional[int], typer.Option(help="Calibration bins (equal width).")] = None,
    robustness: Annotated[Optional[bool], typer.Option("--robustness/--no-robustness", help="Run the perturbation suite.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N rows.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write report.json, report.md, predictions and plots here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
    task: Annotated[Optional[str], typer.Option(help="auto, sequence-classification or causal-lm.")] = None,
    min_: MinOpt = None,
    max_: MaxOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Evaluate one or more models on the same data: metrics with 95% intervals, calibration, robustness, slices.

    Examples:

      nncli evaluate runs/quickstart/finetune --data recipes/data/reviews/test.csv --slice-column category -o runs/eval

      nncli evaluate runs/quickstart/finetune runs/quickstart/finetune/merged-int8 --data test.csv --min accuracy=0.85 --max ece=0.05

      nncli evaluate runs/quickstart/finetune --data test.csv --calibrate --json
    """
    def job():
        from . import evaluate as ev
        from .recipe import find_recipe, load_recipe
        from .report import parse_gate_flags, parse_gates

        recipe_name, models, overrides = _split_models(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"data.path": data, "data.text_column": _columns(text_column),
                 "data.text_pair_column": text_pair_column, "data.label_column": label_column, "data.slice_column": slice_column,
                 "data.validation": validation, "calibration.fit": True if calibrate else None, "calibration.bins": bins,
                 "robustness.enabled": robustness, "data.limit": limit, "output": output, "task": task,
                 "models": models or None}
        recipe = load_recipe("evaluate", path, overrides, flags)
        gates = parse_gates({**recipe.gates.min, **parse_gate_flags(min_, "min")},
                            {**recipe.gates.max, **parse_gate_flags(max_, "max")})
        return ev.run(recipe, overwrite=overwrite, gates=gates)

    _execute(job, json_out, quiet, debug, _render_evaluate)


def _render_evaluate(report: dict) -> None:
    from rich.table import Table

    out = _stdout()
    if report.get("evaluation_task") == "causal-lm":
        t = Table(title="evaluation (causal LM)")
        for col in ("model", "loss", "perplexity"):
            t.add_column(col)
        for r in report["models"]:
            t.add_row(r["name"], f"{r['metrics']['loss']:.4f}", f"{r['metrics']['perplexity']:.3f}")
        out.print(t)
    else:
        t = Table(title=f"evaluation on {report['data']['rows']} rows: {report['status']}")
        for col in ("model", "accuracy", "macro-F1", "log-loss", "ECE", "flip rate", "worst slice acc", "majority acc"):
            t.add_column(col)
        f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        for r in report["models"]:
            m = r["metrics"]
            t.add_row(r["name"], f(m["accuracy"]), f(m["macro_f1"]), f(m["loss"]), f(m["ece"]), f(m.get("flip_rate")),
                      f(m.get("worst_slice_accuracy")), f(m["majority_accuracy"]))
        out.print(t)
    for g in report.get("gates", []):
        v = "missing" if g["value"] is None else f"{g['value']:.4f}"
        out.print(f"gate {g['metric']} {g['op']} {g['threshold']} ({g['model']}): {v} -> {'pass' if g['passed'] else 'FAIL'}")
    for w in report.get("warnings", []):
        out.print(f"note: {w}", markup=False)


# ---------------------------------------------------------------------------------------------- export

def _model_and_overrides(args: list[str] | None) -> tuple[str | None, str | None, list[str]]:
    recipe, models, overrides = _split_models(args)
    if len(models) > 1:
        raise UsageError(f"one model at a time, got {len(models)}: {', '.join(models)}", "run the command once per model")
    return recipe, (models[0] if models else None), overrides


@app.command()
def export(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[RECIPE.yaml] MODEL [KEY=VALUE]...",
                    help="A run directory, model directory or hub id (and optionally a recipe and overrides).", show_default=False)] = None,
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="onnx or safetensors.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Export directory (default: <run>/onnx).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Texts for the parity check (default: the run's validation data).")] = None,
    text_column: TextColOpt = None,
    atol: Annotated[Optional[float], typer.Option(help="Largest acceptable absolute logit difference (default 1e-4).")] = None,
    max_flipped: Annotated[Optional[int], typer.Option(help="Largest acceptable number of changed predictions (default 0).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default: optimum's choice).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export directory.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Export a model to ONNX (or safetensors) and refuse it (exit 5) if its outputs differ from the source.

    Examples:

      nncli export runs/quickstart/finetune

      nncli export runs/quickstart/finetune --output exports/reviews --atol 1e-5 --json

      nncli export ./my-model --data valid.csv --text-column review --output exports/my-model
    """
    def job():
        from . import export as ex
        from .recipe import find_recipe, load_recipe

        recipe_name, model, overrides = _model_and_overrides(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model": model, "format": format, "output": output, "parity.data": data,
                 "parity.text_column": _columns(text_column),
                 "parity.atol": atol, "parity.max_flipped": max_flipped, "opset": opset}
        return ex.run(load_recipe("export", path, overrides, flags), overwrite=overwrite)

    def render(r):
        p = r.get("parity", {})
        _stdout().print(f"export {r['status']}: {r['format']} -> {r.get('artifacts')}\nparity on {p.get('samples')} texts: "
                        f"max |Δlogit| {p.get('max_abs_diff', float('nan')):.2e} (limit {p.get('atol')}), mean "
                        f"{p.get('mean_abs_diff', float('nan')):.2e}, agreement {p.get('agreement', float('nan')):.4f}, "
                        f"flipped {p.get('flipped')}", markup=False)

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- quantize

@app.command()
def quantize(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[RECIPE.yaml] MODEL [KEY=VALUE]...",
                    help="A run directory or model directory (a sequence classifier).", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option(help="auto, dynamic or static.")] = None,
    backend: Annotated[Optional[str], typer.Option(help="auto, torch or onnxruntime.")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Largest acceptable accuracy loss in points (default 1.0).")] = None,
    max_flip_rate: Annotated[Optional[float], typer.Option(help="Largest acceptable share of changed predictions (e.g. 0.05).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Where the chosen model goes (default <run>/quantized).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Labelled data for accuracy (default: the run's validation split).")] = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Quantize to int8 and keep the fastest candidate within --max-drop accuracy points; otherwise write nothing (exit 5).

    Examples:

      nncli quantize runs/quickstart/finetune

      nncli quantize runs/quickstart/finetune --backend onnxruntime --max-drop 0.5 --max-flip-rate 0.05 --json

      nncli quantize ./my-model --data valid.csv --text-column review --label-column stars --output models/int8
    """
    def job():
        from . import quantize as qz
        from .recipe import find_recipe, load_recipe

        recipe_name, model, overrides = _model_and_overrides(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model": model, "method": method, "backend": backend, "max_drop": max_drop, "max_flip_rate": max_flip_rate,
                 "output": output, "data.path": data, "data.label_column": label_column,
                 "data.text_column": _columns(text_column)}
        return qz.run(load_recipe("quantize", path, overrides, flags), overwrite=overwrite)

    _execute(job, json_out, quiet, debug, _render_quantize)


def _render_quantize(r: dict) -> None:
    from rich.table import Table

    t = Table(title=f"quantize: {r['status']}" + (f", chose {r['chosen']}" if r.get("chosen") else ""))
    for col in ("candidate", "accuracy", "drop (pts)", "flips", "batch-1 ms", "throughput/s", "speed-up", "MB", "status"):
        t.add_column(col)
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for c in r.get("candidates", []):
        t.add_row(c["candidate"], f(c.get("accuracy"), ".4f"), f(None if c.get("accuracy_drop") is None else c["accuracy_drop"] * 100, "+.2f"),
                  f(c.get("flip_rate"), ".1%"), f(c.get("latency_ms_batch1"), ".1f"), f(c.get("throughput_per_second"), ".1f"),
                  f(c.get("speedup"), ".2f"), f(c.get("size_mb"), ".1f"), c.get("status", ""))
    _stdout().print(t)


# ---------------------------------------------------------------------------------------------- bench

def _int_list(value: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
        if not out or min(out) < 1:
            raise ValueError
        return out
    except ValueError:
        raise UsageError(f"{name} {value!r} is not a comma-separated list of positive integers", f"e.g. {name} 1,8,32")


@app.command()
def bench(
    models: Annotated[list[str], typer.Argument(help="Run directories, model directories or ONNX exports.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    seq_lens: Annotated[str, typer.Option(help="Comma-separated sequence lengths (tokens).")] = "32,128",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    torch_int8: Annotated[bool, typer.Option("--torch-int8", help="Also time PyTorch dynamic int8 of each PyTorch model.")] = False,
    min_seconds: Annotated[float, typer.Option(help="Time each configuration at least this long.")] = 2.0,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write report.json and latency_throughput.png here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
    baseline: Annotated[Optional[str], typer.Option(help="An earlier bench report.json to compare with.")] = None,
    fail_if_slower: Annotated[Optional[str], typer.Option(help="With --baseline: exit 5 if throughput falls by more than this (e.g. 10%).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Measure latency (p50/p95/p99) and throughput per batch size and length, models and backends side by side.

    Examples:

      nncli bench runs/quickstart/finetune runs/quickstart/finetune/onnx runs/quickstart/finetune/quantized --torch-int8 -o runs/bench

      nncli bench runs/quickstart/finetune/onnx --batch-sizes 1,32 --seq-lens 128 --baseline runs/bench/report.json --fail-if-slower 10%
    """
    def job():
        from . import bench as bn

        pct = None
        if fail_if_slower is not None:
            try:
                pct = float(fail_if_slower.rstrip("%")) / (100 if fail_if_slower.endswith("%") or float(fail_if_slower.rstrip("%")) > 1 else 1)
            except ValueError:
                raise UsageError(f"--fail-if-slower {fail_if_slower!r} is not a percentage", "e.g. --fail-if-slower 10%")
        return bn.run(models, batch_sizes=_int_list(batch_sizes, "--batch-sizes"), seq_lens=_int_list(seq_lens, "--seq-lens"),
                      threads=threads, torch_int8=torch_int8, output=output, overwrite=overwrite, baseline=baseline,
                      fail_if_slower=pct, min_seconds=min_seconds)

    def render(r):
        from rich.table import Table

        t = Table(title=f"bench on {r['machine']['cpu']} ({r['machine']['cores']} cores)")
        for col in ("model", "backend", "batch", "tokens", "p50 ms", "p95 ms", "p99 ms", "examples/s"):
            t.add_column(col)
        for x in r["results"]:
            t.add_row(Path(x["model"].rstrip("/")).name, x["backend"], str(x["batch_size"]), str(x["seq_len"]), f"{x['p50_ms']:.1f}",
                      f"{x['p95_ms']:.1f}", f"{x['p99_ms']:.1f}", f"{x['throughput_per_second']:.1f}")
        out = _stdout()
        out.print(t)
        out.print(r["machine"]["int8_note"], markup=False)
        for g in r.get("gates", []):
            out.print(f"{g['metric']}: {g['value']:.2f}x -> {'pass' if g['passed'] else 'FAIL'}", markup=False)

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- distill

@app.command()
def distill(
    args: ArgsArg = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="The fine-tuned teacher: a run directory or model directory.")] = None,
    student: Annotated[Optional[str], typer.Option("--student", help="layers=N (teacher layers kept), hidden=H, both, or a model (default layers=3).")] = None,
    data: DataOpt = None,
    validation: ValidationOpt = None,
    test: TestOpt = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    output: OutputOpt = None,
    transfer_data: Annotated[Optional[str], typer.Option("--transfer-data", help="Unlabelled texts the teacher labels for the student.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Soft-target weight (default 0.5).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Soft-target temperature (default 2).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Training epochs (early stopping may end sooner).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
    control: Annotated[Optional[bool], typer.Option("--control/--no-control", help="Also train the student without the teacher (default on).")] = None,
    min_retention: Annotated[Optional[float], typer.Option("--min-retention", help="Gate: fail (exit 5) if student/teacher metric is below this (e.g. 0.97).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --output from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run directory.")] = False,
    min_: MinOpt = None,
    max_: MaxOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Distil a fine-tuned teacher into a smaller, faster student; report retention, speed-up and the gain over no teacher.

    Examples:

      nncli distill --teacher runs/quickstart/finetune --student layers=3 --data recipes/data/reviews/train.csv -o runs/student

      nncli distill --teacher runs/big --student layers=2 --data train.csv --transfer-data unlabelled.csv --min-retention 0.97

      nncli distill my-distill.yaml distill.alpha=0.9 distill.temperature=4 --json
    """
    def job():
        from . import distill as ds
        from .recipe import find_recipe, load_recipe
        from .report import check_gate_metrics, parse_gate_flags, parse_gates

        recipe_name, overrides = _split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"teacher": teacher, "student": student, "data.train": data, "data.validation": validation, "data.test": test,
                 "data.text_column": _columns(text_column), "data.text_pair_column": text_pair_column,
                 "data.label_column": label_column, "output": output, "distill.transfer_data": transfer_data,
                 "distill.alpha": alpha, "distill.temperature": temperature, "train.epochs": epochs, "train.lr": lr,
                 "distill.control": control}
        recipe = load_recipe("distill", path, overrides, flags)
        mins = {**recipe.gates.min, **parse_gate_flags(min_, "min")}
        if min_retention is not None:
            mins["retention"] = min_retention
        gates = parse_gates(mins, {**recipe.gates.max, **parse_gate_flags(max_, "max")})
        check_gate_metrics(gates, ds.known_metrics(bool(recipe.data.test or recipe.data.test_split)))
        return ds.run(recipe, resume=resume, overwrite=overwrite, gates=gates)

    _execute(job, json_out, quiet, debug, _render_distill)


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
                  f"{x['latency_ms_batch1']:.1f}", f"{x['throughput_per_second']:.1f}", f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
    if "control" in d:
        m = d["control"]["metrics"][split]
        t.add_row("student, no teacher", "", "", "", "", "", f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
    out = _stdout()
    out.print(t)
    out.print(f"retention: accuracy {d['retention']['accuracy']:.3f}, macro-F1 {d['retention']['macro_f1']:.3f}; "
              f"throughput {d['speedup_throughput']:.2f}x" + (f"; gain over control (macro-F1) {d['gain_over_control']['macro_f1'] * 100:+.2f} pts"
                                                            if "gain_over_control" in d else ""))


# ---------------------------------------------------------------------------------------------- run / report

@app.command("run")
def run_pipeline(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="PIPELINE.yaml [KEY=VALUE]...",
                    help="A pipeline file (or shipped pipeline name) and overrides (STEP.KEY=VALUE for one step).",
                    show_default=False)] = None,
    force: Annotated[Optional[list[str]], typer.Option("--force", help="Rerun this step even if its inputs are unchanged (repeatable).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Run a pipeline: finetune -> evaluate -> distill -> quantize -> export -> bench, stopping at the first failed gate (exit 5).

    Examples:

      nncli run quickstart

      nncli run pipeline.yaml finetune.train.epochs=3 --force evaluate --json

      nncli run ci.yaml evaluate.gates.min.accuracy=0.9 && nncli report runs/ci -o summary.md
    """
    def job():
        from . import pipeline
        from .recipe import find_recipe

        name, overrides = _split_args(args)
        if not name:
            raise UsageError("nncli run needs a pipeline file", "e.g. nncli run quickstart (see nncli recipes list)")
        return pipeline.run(find_recipe(name), overrides, force=force)

    _execute(job, json_out, quiet, debug, _render_pipeline)


def _render_pipeline(r: dict) -> None:
    from rich.table import Table

    from .pipeline import _fmt

    t = Table(title=f"pipeline {r.get('name') or ''}: {r.get('status')}")
    for col in ("step", "command", "status", "seconds", "key numbers"):
        t.add_column(col)
    for s in r.get("steps", []):
        nums = ", ".join(f"{k} {_fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        t.add_row(s["name"], s["command"], s.get("status", ""), f"{s.get('seconds', 0):.1f}", nums)
    _stdout().print(t)
    _stdout().print(f"report: {r.get('output')}/report.json", markup=False)


@app.command("report")
def report_cmd(
    runs: Annotated[list[str], typer.Argument(help="Run directories (finetune, distill, evaluate, quantize, export, bench, drift, pipeline).")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the Markdown summary here (for a pull-request comment).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Print runs side by side (metrics, sizes, speeds) and write a Markdown summary fit for a pull-request comment.

    Examples:

      nncli report runs/quickstart/finetune

      nncli report runs/main runs/pr-123 -o summary.md
    """
    def job():
        from . import summary

        return summary.run(runs, output)

    def render(r):
        from rich.table import Table

        from .summary import COLUMNS, fmt

        cols = [(k, h) for k, h in COLUMNS if any(x.get(k) is not None for x in r["runs"])]
        t = Table(title="nncli report")
        for _, h in cols:
            t.add_column(h)
        for x in r["runs"]:
            t.add_row(*[fmt(x.get(k)) for k, _ in cols])
        _stdout().print(t)
        if r.get("output"):
            _stdout().print(f"markdown: {r['output']}", markup=False)

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- explain

@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="A run directory, model directory or hub id (PyTorch; classifier or causal LM).")],
    text: Annotated[Optional[str], typer.Option("--text", help="One text to explain.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="A file of texts to explain (and aggregate).")] = None,
    text_column: TextColOpt = None,
    limit: Annotated[int, typer.Option(help="With --data: explain the first N texts.")] = 50,
    method: Annotated[str, typer.Option("--method", help="ig, occlusion, attention, a comma-separated list, or all.")] = "all",
    top_k: Annotated[int, typer.Option("--top-k", help="Words removed/kept for the faithfulness scores.")] = 3,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 50,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write report.json, explanations.jsonl and explanations.html here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Explain predictions: word attributions (integrated gradients, occlusion, attention rollout) with measured faithfulness.

    Examples:

      nncli explain runs/quickstart/finetune --text "The battery died after two days"

      nncli explain runs/quickstart/finetune --data recipes/data/reviews/test.csv --limit 100 -o runs/explain

      nncli explain runs/quickstart/finetune --text "fine, I guess" --method ig,occlusion --json
    """
    def job():
        from . import explain as xp

        methods = list(xp.METHODS) if method.strip() == "all" else [m.strip() for m in method.split(",") if m.strip()]
        if limit < 1 or top_k < 1 or steps < 2:
            raise UsageError("--limit and --top-k must be at least 1, --steps at least 2", "e.g. --limit 50 --top-k 3 --steps 50")
        return xp.run(model, text=text, data=data, text_column=_columns(text_column), limit=limit, methods=methods, output=output,
                      overwrite=overwrite, top_k=top_k, steps=steps)

    def render(r):
        from .explain import render_terminal

        render_terminal(r, _stdout())

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- sweep

@app.command()
def sweep(
    args: ArgsArg = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    validation: ValidationOpt = None,
    test: TestOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    trials: Annotated[int, typer.Option(help="Trial budget (shared by every worker on the study).")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Validation metric to optimise: macro_f1, accuracy or loss.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Study storage URL (default: sqlite in the sweep directory).")] = None,
    study_name: Annotated[Optional[str], typer.Option(help="Study name (workers sharing a storage must use the same).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Sweep directory (default runs/<name>-sweep).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Search hyperparameters with Optuna (TPE + pruning on the validation metric); each trial is a finetune run.

    Examples:

      nncli sweep reviews --trials 20 -o runs/sweep

      nncli sweep my.yaml --trials 50 --storage postgresql://user@db/sweeps --study-name reviews-v2   # on several machines

      nncli sweep --model sentence-transformers/all-MiniLM-L6-v2 --data train.csv --trials 10 --metric accuracy --json
    """
    def job():
        from . import sweep as sw
        from .recipe import find_recipe, load_recipe

        recipe_name, overrides = _split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model.name": model, "data.train": data, "data.validation": validation, "data.test": test,
                 "data.text_column": _columns(text_column), "data.label_column": label_column}
        recipe = load_recipe("finetune", path, overrides, flags)
        return sw.run(recipe, trials=trials, timeout=timeout, metric=metric, storage=storage, study_name=study_name, output=output)

    def render(r):
        from rich.table import Table

        t = Table(title=f"sweep {r['study']['name']}: best trial {r['best']['number']} ({r['study']['metric']} {r['best']['value']:.4f})")
        for col in ("trial", "state", "value", "parameters"):
            t.add_column(col)
        for x in r["trials"]:
            t.add_row(str(x["number"]), x["state"], "-" if x["value"] is None else f"{x['value']:.4f}",
                      ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in x["params"].items()))
        out = _stdout()
        out.print(t)
        if r["best"].get("test"):
            out.print("best trial on the test split: " + ", ".join(f"{k} {v:.4f}" for k, v in r["best"]["test"].items()), markup=False)
        out.print(f"best run: {r['best']['run_dir']}", markup=False)

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- generate

@app.command()
def generate(
    model: Annotated[str, typer.Argument(help="A causal-LM run directory, its merged/ folder, a model directory or hub id.")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="A file of prompts.")] = None,
    prompt_column: Annotated[str, typer.Option(help="With --data: the prompt column.")] = "prompt",
    limit: Annotated[int, typer.Option(help="With --data: the first N prompts.")] = 20,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy; > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling (with --temperature).")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0 = off).")] = 0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap each prompt as a user message in the chat template.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Generate text from a causal LM, for a quick look at what a fine-tune produces.

    Examples:

      nncli generate runs/chat --prompt "Summarise: the kettle broke after a week" --chat

      nncli generate runs/domain --data prompts.csv --prompt-column question --temperature 0.7 --top-p 0.9 --json
    """
    def job():
        from . import lm

        if bool(prompt) == bool(data):
            raise UsageError("generate needs --prompt or --data (one of them)", 'e.g. --prompt "Once upon a time"')
        if max_new_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise UsageError("--max-new-tokens must be >= 1, --temperature >= 0, --top-p in (0, 1]", "e.g. --temperature 0.7 --top-p 0.9")
        prompts = list(prompt or [])
        if data:
            from .data import read_texts

            s, _, _ = read_texts(data, prompt_column, role="prompts", clean=False)
            prompts = s.texts[:limit]
        return lm.generate_command(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                   seed=seed, chat=chat)

    def render(r):
        out = _stdout()
        for g in r["generations"]:
            out.print(f"[bold]{g['prompt']}[/]", highlight=False)
            out.print(g["generated"], markup=False, highlight=False)
            out.print("")

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- drift

@app.command()
def drift(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[RECIPE.yaml] [KEY=VALUE]...",
                    help="Optionally a drift recipe, and overrides.", show_default=False)] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", "-r", help="Run directory with profile.json (from finetune or evaluate --output), a profile.json, or reference data.")] = None,
    current: Annotated[Optional[str], typer.Option("--current", "-c", help="The new data to check (a file or hub dataset id).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model for the model-based tests (default: the profile's).")] = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    alpha: Annotated[Optional[float], typer.Option(help="False-alarm rate for the whole report (default 0.05).")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Accuracy drop in points that counts as drift (default 5).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use at most N current rows (seeded sample).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write report.json, report.md and drift.png here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Check new data against a run's reference profile: feature, label, confidence and embedding drift (exit 5 on drift).

    Examples:

      nncli drift --reference runs/quickstart/finetune --current recipes/data/reviews/shifted.csv -o runs/drift

      nncli drift -r runs/quickstart/finetune -c incoming/today.jsonl --text-column body --json

      nncli drift -r train.csv -c today.csv --model runs/quickstart/finetune --alpha 0.01
    """
    def job():
        from . import drift as dr
        from .recipe import find_recipe, load_recipe

        recipe_name, overrides = _split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"reference": reference, "current": current, "model": model, "text_column": _columns(text_column),
                 "label_column": label_column, "alpha": alpha, "max_accuracy_drop": max_accuracy_drop, "limit": limit,
                 "output": output}
        return dr.run(load_recipe("drift", path, overrides, flags), overwrite=overwrite)

    _execute(job, json_out, quiet, debug, _render_drift)


def _render_drift(r: dict) -> None:
    from rich.table import Table

    t = Table(title=f"drift: {'DRIFT DETECTED' if r.get('drift_detected') else 'no drift'} "
                    f"(alpha {r.get('alpha')}, per test {r.get('alpha_per_test', 0):.2g})")
    for col in ("feature", "test", "statistic", "p-value", "effect", "threshold", "verdict"):
        t.add_column(col)
    for x in r.get("tests", []):
        t.add_row(x["feature"], x["test"], f"{x['statistic']:.4g}", "-" if x["p_value"] is None else f"{x['p_value']:.2g}",
                  f"{x['effect_name']} {x['effect']:.3f}", f"{x['threshold']:.3f}", "[red]DRIFT[/]" if x["drift"] else "ok")
    out = _stdout()
    out.print(t)
    a = r.get("accuracy") or {}
    if a.get("reference") is not None:
        out.print(f"accuracy: reference {a['reference']:.4f}, estimated from confidences {a['estimated']:.4f}"
                  + (f", actual {a['actual']:.4f}" if "actual" in a else ""))
    if r.get("top_drifting"):
        out.print("top drifting: " + ", ".join(r["top_drifting"]))


# ---------------------------------------------------------------------------------------------- predict

@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Run directory, model directory, hub id or ONNX export.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Texts: a CSV/TSV/JSON/JSONL/parquet file.")],
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write JSONL here (default: JSONL on stdout).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Column copied to each prediction as its id (default: 'id' if present).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per batch.")] = 64,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N rows.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Predict labels for a file of texts, with the model's label names and calibration temperature.

    Examples:

      nncli predict runs/quickstart/finetune --data new_reviews.csv --output preds.jsonl

      nncli predict runs/quickstart/finetune/onnx --data new.jsonl --text-column body > preds.jsonl
    """
    def job():
        from . import predict as pr

        cols = _columns(text_column) or "text"
        return pr.run(model, data, text_column=cols, text_pair_column=text_pair_column, output=output, id_column=id_column,
                      batch_size=batch_size, threads=threads, limit=limit)

    def render(r):
        if "predictions" in r:
            sys.stdout.write("".join(json.dumps(p, ensure_ascii=False, default=str) + "\n" for p in r["predictions"]))
        else:
            _stdout().print(f"{r['rows']} predictions -> {r['output']} ({r['backend']}, {r['throughput_per_second']} texts/s); "
                            f"predicted: {r['predicted_distribution']}", markup=False)

    _execute(job, json_out, quiet, debug, render)


# ---------------------------------------------------------------------------------------------- validate

@app.command()
def validate(
    args: ArgsArg = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    validation: ValidationOpt = None,
    test: TestOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings (leakage, duplicates, truncation...) as failures (exit 3).")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Pre-flight a finetune recipe: schema, data, labels, leakage, token lengths, memory and time estimate.

    Examples:

      nncli validate reviews

      nncli validate my.yaml data.max_length=256 --strict --json
    """
    def job():
        from . import preflight
        from .errors import InputError
        from .recipe import find_recipe, load_recipe

        recipe_name, overrides = _split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model.name": model, "data.train": data, "data.validation": validation, "data.test": test,
                 "data.text_column": _columns(text_column),
                 "data.label_column": label_column}
        from .recipe import recipe_command

        cmd = recipe_command(path) if path else "finetune"
        if cmd not in ("finetune", "distill"):
            raise UsageError(f"nncli validate checks finetune and distill recipes; {path} is a '{cmd}' recipe",
                             f"run it with: nncli {cmd} {path}")
        recipe = load_recipe(cmd, path, overrides, flags)
        if cmd == "distill":
            from .distill import preflight_recipe

            recipe = preflight_recipe(recipe)
        if recipe.task == "causal-lm":
            from . import lm

            r = lm.run(recipe, dry_run=True)
            lines = [f"{k}: {v['examples']} examples, {v['target_tokens']} target tokens, {v['truncated']} truncated"
                     for k, v in r["data"].items()]
            return {"status": "ok", "exit_code": 0, "warnings": [], "data": r["data"], "summary": "\n".join(lines)}
        pf = preflight.run(recipe)
        for w in pf.warnings:
            console.warn(w)
        result = {"status": "ok", "exit_code": 0, "warnings": pf.warnings, "data": pf.summary, "estimate": pf.estimate}
        if strict and pf.warnings:
            raise InputError(f"{len(pf.warnings)} warning(s) with --strict", "fix the data, or drop --strict", details=pf.warnings)
        result["summary"] = preflight.render(pf)
        return result

    _execute(job, json_out, quiet, debug, lambda r: _stdout().print(r["summary"] + f"\nok: {len(r['warnings'])} warning(s)", markup=False))


# ---------------------------------------------------------------------------------------------- recipes

@recipes_app.command("list")
def recipes_list(json_out: JsonOpt = False):
    """List the recipes shipped with nncli.

    Examples:

      nncli recipes list
    """
    def job():
        from .recipe import shipped_recipes

        items = []
        for name, path in shipped_recipes().items():
            desc = ""
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("#"):
                    desc = line.lstrip("# ").strip()
                    break
            items.append({"name": name, "description": desc, "path": str(path)})
        return {"recipes": items, "exit_code": 0}

    def render(r):
        from rich.table import Table

        t = Table(show_header=True)
        t.add_column("recipe")
        t.add_column("what it does")
        for item in r["recipes"]:
            t.add_row(item["name"], item["description"])
        _stdout().print(t)

    _execute(job, json_out, False, False, render)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="Shipped recipe name or path.")]):
    """Print a recipe.

    Examples:

      nncli recipes show reviews
    """
    def job():
        from .recipe import find_recipe

        return {"text": find_recipe(name).read_text(encoding="utf-8"), "exit_code": 0}

    _execute(job, False, False, False, lambda r: sys.stdout.write(r["text"]))


@recipes_app.command("copy")
def recipes_copy(
    name: Annotated[str, typer.Argument(help="Shipped recipe name.")],
    dest: Annotated[Path, typer.Argument(help="Destination file or directory.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
):
    """Copy a shipped recipe to edit it. Data paths are rewritten to absolute ones so the copy runs anywhere.

    Examples:

      nncli recipes copy reviews my.yaml
    """
    def job():
        import yaml

        from .recipe import PATH_KEYS, find_recipe, get_path, read_yaml, set_path
        from .report import atomic_write_text

        src = find_recipe(name)
        target = dest / src.name if dest.is_dir() else dest
        if target.exists() and not force:
            raise UsageError(f"{target} already exists", "pass --force to overwrite it, or choose another name")
        text = src.read_text(encoding="utf-8")
        raw = read_yaml(src)
        header = [ln for ln in text.splitlines() if ln.startswith("#")]
        if raw.get("command") == "pipeline":
            from .pipeline import copy_paths_absolute

            copy_paths_absolute(raw, src.parent)
        for key in PATH_KEYS.get(raw.get("command", "finetune"), []):
            value = get_path(raw, key)
            if isinstance(value, str) and (src.parent / value).exists():
                set_path(raw, list(key), str((src.parent / value).resolve()))
        atomic_write_text(target, "\n".join(header) + ("\n" if header else "") +
                          yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        return {"copied": str(target), "exit_code": 0}

    _execute(job, False, False, False, lambda r: _stdout().print(r["copied"], markup=False))


@recipes_app.command("validate")
def recipes_validate(paths: Annotated[list[str], typer.Argument(help="Recipe files or shipped names.")], json_out: JsonOpt = False):
    """Check recipes against their schemas (no data is read). Every problem in every file is listed.

    Examples:

      nncli recipes validate recipes/*.yaml
    """
    def job():
        from .recipe import SCHEMAS, _resolve_relative, find_recipe, read_yaml, recipe_command, validate as check

        results, problems = [], []
        for p in paths:
            try:
                path = find_recipe(p)
                cmd = recipe_command(path)
                if cmd == "pipeline":
                    from .pipeline import check as check_pipeline

                    check_pipeline(path)
                else:
                    raw = read_yaml(path)
                    _resolve_relative(raw, path.resolve().parent, cmd)
                    check(SCHEMAS[cmd], raw, source=str(path))
                results.append({"path": str(path), "command": cmd, "valid": True})
            except NncliError as e:
                results.append({"path": p, "valid": False, "problems": e.details or [e.message]})
                problems += [f"{p}: {d}" for d in (e.details or [e.message])]
        if problems:
            raise UsageError(f"{sum(not r['valid'] for r in results)} of {len(results)} recipe(s) invalid", "fix the keys listed",
                             details=problems)
        return {"recipes": results, "exit_code": 0}

    _execute(job, json_out, False, False, lambda r: _stdout().print("\n".join(f"ok: {x['path']}" for x in r["recipes"]), markup=False))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
