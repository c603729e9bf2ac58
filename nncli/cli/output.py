"""One output object per invocation: results go to stdout (a human table, or exactly one JSON object with
--json), everything else to stderr; every outcome maps to the documented exit code (GUIDE §3)."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from nncli.core import console, signals
from nncli.core.atomic import json_default
from nncli.core.errors import ExitCode, NncliError
from nncli.core.rundir import release_all


@dataclass
class Output:
    json: bool = False
    quiet: bool = False
    debug: bool = False

    @classmethod
    def of(cls, ctx: typer.Context | None, json_out: bool = False, quiet: bool = False, debug: bool = False) -> Output:
        """The root's flags (nncli --json finetune ...) merged with the command's (nncli finetune ... --json)."""
        root = ctx.find_root().obj if ctx is not None else None
        root = root if isinstance(root, Output) else Output()
        env_debug = os.environ.get("NNCLI_DEBUG", "") not in ("", "0")
        return cls(root.json or json_out, root.quiet or quiet, root.debug or debug or env_debug)

    def result(self, result: Any, render: Callable[[dict], None] | None) -> None:
        if self.json:
            print_json(result if isinstance(result, dict) else {"result": result})
        elif render is not None:
            render(result)

    def error(self, e: NncliError, render: Callable[[dict], None] | None) -> None:
        report = getattr(e, "report", None)
        if hasattr(report, "to_dict"):
            report = report.to_dict()
        if self.json:
            payload = report if report is not None else {"status": "error"}
            print_json({**payload, "error": e.message, "hint": e.hint, "details": e.details, "exit_code": int(e.code)})
        elif report is not None and render is not None:
            render(report)
        c = console.console()
        c.print(f"error: {e.message}", markup=False)
        for d in e.details:
            c.print(f"  - {d}", markup=False)
        if e.hint:
            c.print(f"hint: {e.hint}", markup=False)
        if self.debug:
            traceback.print_exception(e, file=sys.stderr)

    def bug(self, e: Exception) -> None:
        if self.json:
            print_json({"status": "error", "exit_code": int(ExitCode.INTERNAL),
                        "error": f"internal error: {type(e).__name__}: {e}"})
        if self.debug:
            traceback.print_exc(file=sys.stderr)
        console.console().print(f"error: internal error ({type(e).__name__}: {e}). This is a bug in nncli; "
                                "rerun with --debug for the traceback and report it.", markup=False)


def execute(ctx: typer.Context | None, job: Callable[[], Any], json_out: bool = False, quiet: bool = False, debug: bool = False,
            render: Callable[[dict], None] | None = None) -> None:
    """Run a capability, print its result, and exit with the documented code."""
    out = Output.of(ctx, json_out, quiet, debug)
    console.state.quiet, console.state.debug = out.quiet, out.debug
    code = ExitCode.OK
    try:
        try:
            result = job()
            if hasattr(result, "to_dict"):          # a RunReport
                result = result.to_dict()
        finally:
            signals.job_done()   # a signal from now on is recorded (exit 130), never cuts the report short
            release_all()   # locks of the run directories this command prepared; replaced runs finalised
        if console.is_main_process():  # under torchrun, the main process alone prints results
            out.result(result, render)
        code = ExitCode(result.get("exit_code") or 0) if isinstance(result, dict) else ExitCode.OK
    except NncliError as e:
        code = e.code
        signals.hold("cli.error")
        out.error(e, render)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        console.warn("interrupted")
        if out.json:
            print_json({"status": "interrupted", "exit_code": int(code)})
    except Exception as e:  # a bug: say so plainly
        code = ExitCode.INTERNAL
        out.bug(e)
    raise typer.Exit(int(code))


def print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def stdout():
    """A Rich console on stdout for human-readable results (colour only on a terminal)."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, no_color=not tty, width=None if tty else 160)


def render_gates(out, report: dict) -> None:
    for g in report.get("gates", []):
        v = "missing" if g.get("value") is None else f"{g['value']:.4f}"
        how = f" ({g['decided_on']} {g['ci95'][0 if g['op'] == '>=' else 1]:.4f})" if g.get("decided_on") else ""
        n = f", n={g['n']}" if g.get("n") else ""
        out.print(f"gate {g['metric']} {g['op']} {g['threshold']}: {v}{how}{n} -> {'pass' if g['passed'] else 'FAIL'}",
                  markup=False)
