"""The recipes shipped with nncli."""

from __future__ import annotations

import difflib
from pathlib import Path

from nncli.core.errors import InputError, UsageError
from nncli.recipe.load import read_yaml
from nncli.recipe.registry import SCHEMAS

# ---------------------------------------------------------------------------------------------- shipped recipes

def recipes_dir() -> Path:
    """Shipped recipes: inside the installed wheel (nncli/recipes) or the source checkout (recipes/)."""
    pkg = Path(__file__).resolve().parents[1]
    for candidate in (pkg / "recipes", pkg.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    raise InputError("the shipped recipes are missing from this installation", "reinstall nncli")


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def describe(path: Path) -> str:
    """The first sentence of a recipe's comment header (its first paragraph may span several lines), whole."""
    import re

    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            if words:
                break
            continue
        words.append(text)
    paragraph = " ".join(words)
    return re.split(r"(?<=[.!?])\s+(?=[A-Z(`])", paragraph, maxsplit=1)[0]


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(shipped), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"shipped recipes: {', '.join(shipped)}"
    raise UsageError(f"no recipe file or shipped recipe named '{name_or_path}'", hint)


def recipe_command(path: Path) -> str:
    raw = read_yaml(path)
    cmd = raw.get("command", "finetune")
    if cmd not in SCHEMAS:
        close = difflib.get_close_matches(str(cmd), list(SCHEMAS), n=1)
        raise UsageError(f"{path}: command: unknown command {cmd!r}" + (f"; did you mean '{close[0]}'?" if close else ""),
                         f"one of: {', '.join(SCHEMAS)}")
    return cmd
