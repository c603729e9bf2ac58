"""nncli recipes list, show, copy and validate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.app import recipes_app
from nncli.cli.options import JsonOpt
from nncli.cli.output import execute, stdout
from nncli.core.errors import NncliError, UsageError

# ---------------------------------------------------------------------------------------------- recipes

@recipes_app.command("list")
def recipes_list(ctx: typer.Context, json_out: JsonOpt = False):
    """List the recipes shipped with nncli.

    Examples:

      nncli recipes list
    """
    def job():
        from nncli.recipe.shipped import describe, shipped_recipes

        items = [{"name": name, "description": describe(path), "path": str(path)} for name, path in shipped_recipes().items()]
        return {"recipes": items, "exit_code": 0}

    def render(r):
        from rich.table import Table

        t = Table(show_header=True)
        t.add_column("recipe", no_wrap=True)
        t.add_column("what it does", overflow="fold")   # wrapped, never cut
        for item in r["recipes"]:
            t.add_row(item["name"], item["description"])
        stdout().print(t)

    execute(ctx, job, json_out, False, False, render)


@recipes_app.command("show")
def recipes_show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Shipped recipe name or path.")]):
    """Print a recipe.

    Examples:

      nncli recipes show reviews
    """
    def job():
        from nncli.recipe.shipped import find_recipe

        return {"text": find_recipe(name).read_text(encoding="utf-8"), "exit_code": 0}

    execute(ctx, job, False, False, False, lambda r: sys.stdout.write(r["text"]))


@recipes_app.command("copy")
def recipes_copy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Shipped recipe name.")],
    dest: Annotated[Path, typer.Argument(help="Destination file or directory.")],
    force: Annotated[bool, typer.Option("--force", "--overwrite", help="Overwrite an existing file.", metavar="")] = False,
):
    """Copy a shipped recipe to edit it. Data paths are rewritten to absolute ones so the copy runs anywhere.

    Examples:

      nncli recipes copy reviews my.yaml
    """
    def job():
        import yaml

        from nncli.core.atomic import atomic_write_text
        from nncli.core.outputs import prepare_output_file
        from nncli.recipe.load import get_path, read_yaml, set_path
        from nncli.recipe.registry import PATH_KEYS
        from nncli.recipe.shipped import find_recipe

        src = find_recipe(name)
        target = dest / src.name if dest.is_dir() else dest
        prepare_output_file(target, overwrite=force, inputs=[src], what="destination", flag="--force")
        text = src.read_text(encoding="utf-8")
        raw = read_yaml(src)
        header = [ln for ln in text.splitlines() if ln.startswith("#")]
        if raw.get("command") == "pipeline":
            from nncli.pipeline.runner import copy_paths_absolute

            copy_paths_absolute(raw, src.parent)
        for key in PATH_KEYS.get(raw.get("command", "finetune"), []):
            value = get_path(raw, key)
            if isinstance(value, str) and (src.parent / value).exists():
                set_path(raw, list(key), str((src.parent / value).resolve()))
        atomic_write_text(target, "\n".join(header) + ("\n" if header else "") +
                          yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        return {"copied": str(target), "exit_code": 0}

    execute(ctx, job, False, False, False, lambda r: stdout().print(r["copied"], markup=False))


@recipes_app.command("validate")
def recipes_validate(ctx: typer.Context, paths: Annotated[list[str], typer.Argument(help="Recipe files or shipped names.")],
                     json_out: JsonOpt = False):
    """Check recipes against their schemas (no data is read). Every problem in every file is listed.

    Examples:

      nncli recipes validate recipes/*.yaml
    """
    def job():
        from nncli.recipe.load import read_yaml, resolve_relative
        from nncli.recipe.load import validate as check
        from nncli.recipe.shipped import find_recipe, recipe_command

        results, problems = [], []
        for p in paths:
            try:
                path = find_recipe(p)
                cmd = recipe_command(path)
                if cmd == "pipeline":
                    from nncli.pipeline.runner import check as check_pipeline

                    check_pipeline(path)
                else:
                    raw = read_yaml(path)
                    resolve_relative(raw, path.resolve().parent, cmd)
                    check(cmd, raw, source=str(path))
                results.append({"path": str(path), "command": cmd, "valid": True})
            except NncliError as e:
                results.append({"path": p, "valid": False, "problems": e.details or [e.message]})
                problems += [f"{p}: {d}" for d in (e.details or [e.message])]
        if problems:
            raise UsageError(f"{sum(not r['valid'] for r in results)} of {len(results)} recipe(s) invalid", "fix the keys listed",
                             details=problems)
        return {"recipes": results, "exit_code": 0}

    execute(ctx, job, json_out, False, False, lambda r: stdout().print("\n".join(f"ok: {x['path']}" for x in r["recipes"]),
                                                                       markup=False))
