"""nncli run (pipelines) and nncli report."""

from __future__ import annotations

from typing import Annotated

import typer

from nncli.cli.app import app
from nncli.cli.args import split_args
from nncli.cli.options import command_options, positional
from nncli.cli.output import stdout
from nncli.core.errors import UsageError

# ---------------------------------------------------------------------------------------------- run / report

@app.command("run")
@command_options()
def run_pipeline(
    args: positional("PIPELINE.yaml [KEY=VALUE]...",
                      "A pipeline file (or shipped pipeline name) and overrides (STEP.KEY=VALUE for one step).") = None,
    force: Annotated[list[str] | None,
                     typer.Option("--force", metavar="STEP",
                                  help="Rerun this step even if its inputs are unchanged (repeatable).")] = None,
):
    """Run a pipeline: finetune -> evaluate -> distill -> quantize -> export -> bench, stopping at the first failed gate (exit 5).

    Examples:

      nncli run quickstart

      nncli run pipeline.yaml finetune.train.epochs=3 --force evaluate --json

      nncli run ci.yaml evaluate.gates.min.accuracy=0.9 && nncli report runs/ci -o summary.md
    """
    def job():
        from nncli.pipeline import runner as pipeline
        from nncli.recipe.shipped import find_recipe

        name, overrides = split_args(args)
        if not name:
            raise UsageError("nncli run needs a pipeline file", "e.g. nncli run quickstart (see nncli recipes list)")
        return pipeline.run(find_recipe(name), overrides, force=force)

    return job, _render_pipeline


def _render_pipeline(r: dict) -> None:
    from rich.table import Table

    from nncli.pipeline.steps import fmt

    t = Table(title=f"pipeline {r.get('name') or ''}: {r.get('status')}")
    for col in ("step", "command", "status", "seconds", "key numbers"):
        t.add_column(col)
    for s in r.get("steps", []):
        nums = ", ".join(f"{k} {fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        t.add_row(s["name"], s["command"], s.get("status", ""), f"{s.get('seconds', 0):.1f}", nums)
    stdout().print(t)
    stdout().print(f"report: {r.get('output')}/report.json", markup=False)


@app.command("report")
@command_options()
def report_cmd(
    runs: Annotated[list[str],
                    typer.Argument(help="Run directories (finetune, distill, evaluate, quantize, export, bench, drift, "
                                        "pipeline).")],
    output: Annotated[str | None,
                      typer.Option("--output", "-o",
                                   help="Write the Markdown summary here (for a pull-request comment).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing -o file.")] = False,
):
    """Print runs side by side (metrics, sizes, speeds) and write a Markdown summary fit for a pull-request comment.

    Examples:

      nncli report runs/quickstart/finetune

      nncli report runs/main runs/pr-123 -o summary.md
    """
    def job():
        from nncli.pipeline import summary

        return summary.run(runs, output, overwrite=overwrite)

    def render(r):
        from rich.table import Table

        from nncli.pipeline.summary import COLUMNS, fmt

        cols = [(k, h) for k, h in COLUMNS if any(x.get(k) is not None for x in r["runs"])]
        t = Table(title="nncli report")
        for _, h in cols:
            t.add_column(h)
        for x in r["runs"]:
            t.add_row(*[fmt(x.get(k)) for k, _ in cols])
        stdout().print(t)
        if r.get("output"):
            stdout().print(f"markdown: {r['output']}", markup=False)

    return job, render
