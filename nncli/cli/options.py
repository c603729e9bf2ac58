"""Shared option aliases: every repeated parameter is declared once here."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer

from nncli.recipe.finetune import AUTO_EPOCHS_EXAMPLES

# ---------------------------------------------------------------------------------------------- shared options

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout (results only).", metavar="")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.", metavar="")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also NNCLI_DEBUG=1).", metavar="")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.", metavar="")]
OverwriteRunOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run directory.", metavar="")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --output from its checkpoint.",
                                         metavar="")]


def positional(metavar: str, help: str):
    """The positional words of a command (recipe, models or data, then KEY=VALUE overrides), as an Annotated alias."""
    return Annotated[list[str] | None, typer.Argument(metavar=metavar, help=help, show_default=False)]


ArgsArg = positional("[RECIPE] [KEY=VALUE]...", "A recipe file or shipped recipe name (finetune, sweep, validate: or a data "
                     "file, the training data), then dotted overrides such as train.lr=1e-3.")
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Hub id, model directory or run directory "
                                                 "(default sentence-transformers/all-MiniLM-L6-v2).")]
DataOpt = Annotated[str | None,
                    typer.Option("--data", "-d", help="Training data: CSV/TSV/JSON/JSONL/parquet file or hub dataset id.")]
ValidationOpt = Annotated[str | None,
                          typer.Option("--validation", help="Validation file (default: a stratified split of --data, 10%, "
                                                            "more until each class has 10 rows).")]
TestOpt = Annotated[str | None, typer.Option("--test", help="Test file, scored once at the end.")]
TextColOpt = Annotated[list[str] | None, typer.Option("--text-column", metavar="COLUMN",
                                                      help="Text column (default text); repeat it when files name it "
                                                           "differently.")]
PairColOpt = Annotated[str | None, typer.Option("--text-pair-column", help="Second text column for pair tasks.")]
LabelColOpt = Annotated[str | None, typer.Option("--label-column", metavar="COLUMN",
                                                 help="Label column, strings or integers (default label).")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Run directory (default runs/<recipe name>).")]
MinOpt = Annotated[list[str] | None, typer.Option("--min", metavar="METRIC=VALUE",
                                                  help="Gate: fail (exit 5) if METRIC is below VALUE.")]
MaxOpt = Annotated[list[str] | None, typer.Option("--max", metavar="METRIC=VALUE",
                                                  help="Gate: fail (exit 5) if METRIC is above VALUE.")]


def finetune_default(key: str):
    """The schema default of a classifier recipe key, so --help states it (flags override the recipe, so they have none)."""
    from nncli.recipe.finetune import ClassifierData, TextClassifierTrain

    section, _, leaf = key.partition(".")
    return getattr({"train": TextClassifierTrain(), "data": ClassifierData()}[section], leaf)


_T, _D = "train.", "data."
EpochsOpt = Annotated[float | None,
                      typer.Option(metavar="N", help=f"Training epochs (default auto: about {AUTO_EPOCHS_EXAMPLES:,} training "
                                                     "examples seen, 1 to 6 epochs; early stopping may end sooner).")]
DistillEpochsOpt = Annotated[float | None,
                             typer.Option(metavar="N", help="Training epochs of the student (default 6; early stopping "
                                                            "may end sooner).")]
LrOpt = Annotated[float | None, typer.Option(metavar="LR", help="Peak learning rate (default 5e-4 with LoRA, 1e-4 full).")]
BatchOpt = Annotated[int | None,
                     typer.Option(metavar="N", help=f"Examples per batch (default {finetune_default(_T + 'batch_size')}).")]
MaxLengthOpt = Annotated[int | None, typer.Option(metavar="TOKENS", help="Truncate texts to this many tokens (default auto: "
                                                     "the shortest of 64..512 that keeps 95% of training texts whole).")]
SeedOpt = Annotated[int | None,
                    typer.Option(metavar="N", help=f"Random seed (default {finetune_default(_T + 'seed')}; same seed, "
                                                "same metrics on CPU).")]


# ---------------------------------------------------------------------------------------------- closing options

def _tail(gates: bool) -> list[inspect.Parameter]:
    named = ([("min_", MinOpt, None), ("max_", MaxOpt, None)] if gates else []) + [
        ("json_out", JsonOpt, False), ("quiet", QuietOpt, False), ("debug", DebugOpt, False)]
    return [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d) for n, a, d in named]


_TRAINING_INPUTS = [("args", ArgsArg), ("model", ModelOpt), ("data", DataOpt), ("validation", ValidationOpt), ("test", TestOpt),
                    ("text_column", TextColOpt)]


def command_options(*, gates: bool = False, training_inputs: bool = False):
    """Decorate a command whose body declares only its own options and returns (job, render): the command gets the
    context first and the options every command ends with (--min/--max when `gates`, then --json, --quiet, --debug)
    last, and runs job through nncli.cli.output.execute. With `gates`, job takes the parsed --min/--max gates. With
    `training_inputs`, the command starts with finetune's inputs (RECIPE, --model, --data, --validation, --test,
    --text-column), and the body's first parameter receives them as one nncli.cli.args.TrainingInputs."""
    def decorate(body):
        sig = inspect.signature(body, eval_str=True)
        own = list(sig.parameters.values())[1 if training_inputs else 0:]
        head = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=a, default=None)
                for n, a in (_TRAINING_INPUTS if training_inputs else [])]

        @functools.wraps(body)
        def command(ctx: typer.Context, **kw):
            from nncli.cli.args import gate_flags
            from nncli.cli.output import execute

            mins, maxs = kw.pop("min_", None), kw.pop("max_", None)
            json_out, quiet, debug = kw.pop("json_out"), kw.pop("quiet"), kw.pop("debug")
            if training_inputs:
                from nncli.cli.args import TrainingInputs

                job, render = body(TrainingInputs(*(kw.pop(n) for n, _ in _TRAINING_INPUTS)), **kw)
            else:
                job, render = body(**kw)
            execute(ctx, (lambda: job(gate_flags(mins, maxs))) if gates else job, json_out, quiet, debug, render)

        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        command.__signature__ = sig.replace(parameters=[context, *head, *own, *_tail(gates)])
        return command
    return decorate
