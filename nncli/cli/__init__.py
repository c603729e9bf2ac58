"""The command line: a thin adapter over the capabilities (the only package that imports Typer).

app.py holds the root command and main(); options.py the shared option aliases and command_options (the options
every command ends with, and the run through output.execute); output.py the one output object
(human / --json / --quiet) and the exit-code mapping; args.py the positional-argument conventions; one module per
command group registers its commands on the app when imported here.
"""

from nncli.cli import deploy, evaluate, pipeline, recipes, train  # noqa: F401  (registers the commands)
from nncli.cli.app import app, main

__all__ = ["app", "main"]
