"""The root command: global flags, the version, and main(), which also turns Typer's own usage errors into the
documented exit code 2 (and exactly one JSON object under --json).

Every command module registers its commands on `app` when imported (see nncli/cli/__init__.py); each command is
a thin adapter: parse -> load_recipe -> <capability>.run -> Output -> exit code. Heavy libraries are imported
inside the capabilities, so `nncli --help` stays instant.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from nncli import __version__
from nncli.cli.options import DebugOpt, JsonOpt, QuietOpt
from nncli.cli.output import Output, print_json


class Group(TyperGroup):
    """Typer writes `<bool>` beside a flag that takes no value (--help, --install-completion, any flag declared without
    metavar=""), as if it took one: blank it here, for this group and every command under it."""

    def get_params(self, ctx):
        return _blank_flag_types(super().get_params(ctx))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            _blank_flag_types(cmd.get_params(ctx))
        return cmd


def _blank_flag_types(params: list) -> list:
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


app = typer.Typer(name="nncli", cls=Group, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Fine-tune, evaluate, distill, quantize and export Hugging Face models, with gates for CI.\n\n"
                       "Exit codes: 0 ok, 1 internal error, 2 usage, 3 input, 4 environment, 5 gate failed, "
                       "130 interrupted.")
recipes_app = typer.Typer(cls=Group, no_args_is_help=True, help="List, show, copy and validate recipes.")
app.add_typer(recipes_app, name="recipes", help="List, show, copy and validate recipes.")


def _version(value: bool):
    if value:
        typer.echo(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.",
                                          metavar="")] = False,
):
    """Fine-tune, evaluate, distill, quantize and export Hugging Face models, with gates for CI."""
    ctx.obj = Output(json_out, quiet, debug)


def main(argv: list[str] | None = None) -> None:
    from nncli.core import signals

    signals.install()   # first: from here to the exit, SIGINT or SIGTERM at any moment means exit code 130
    code = 1
    try:
        code = _main(sys.argv[1:] if argv is None else argv)
        signals.hold("cli.exit")
    except KeyboardInterrupt:   # one that no command handled (argument parsing, printing a result)
        code = 130
        print("warning: interrupted", file=sys.stderr)
    finally:
        code = signals.finish(code)
    sys.exit(code)


def _main(args: list[str]) -> int:
    try:
        code = app(args=args, prog_name="nncli", standalone_mode=False)
    except Exception as e:
        if type(e).__name__ == "Abort":   # Ctrl-C at a prompt
            return 130
        if not (hasattr(e, "exit_code") and hasattr(e, "format_message") and hasattr(e, "show")):
            raise
        # Typer's (Click's) own usage errors: unknown flags or commands, missing arguments
        if "--json" in args:
            print_json({"status": "error", "exit_code": 2, "error": e.format_message(),
                        "hint": "see nncli --help, or nncli COMMAND --help"})
        else:
            e.show()
        return 2 if e.exit_code not in (0, 1) else e.exit_code
    return code or 0
