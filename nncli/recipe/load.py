"""Loading recipes: defaults < recipe file < KEY=VALUE overrides < flags (written once, here), errors with did-you-mean.

Relative paths inside a recipe file are resolved against the recipe's own folder when that file
exists there (so shipped recipes run from anywhere); paths given as overrides or flags are relative to
the current directory, as on any command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nncli.core.errors import UsageError
from nncli.recipe.base import Strict
from nncli.recipe.finetune import FinetuneRecipe
from nncli.recipe.registry import PATH_KEYS

# ---------------------------------------------------------------------------------------------- loading

class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first: int):
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first})")
        self.key, self.line, self.first = key, line, first


class UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *defaults` then overriding keys is fine
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:   # an unhashable key: the safe constructor reports it
                    break
                if first is not None:
                    raise DuplicateKey(key, key_node.start_mark.line + 1, first)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def safe_load(text: str):
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"recipe not found: {p}", "check the path, or list shipped recipes with: nncli recipes list")
    if p.is_dir():
        raise UsageError(f"recipe path is a directory: {p}", "pass a YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read recipe {p}: {e}", "save it as UTF-8 text") from e
    try:
        data = safe_load(text)
    except DuplicateKey as e:
        raise UsageError(f"{p}: {e}", f"a repeated key would silently replace the first one: keep one '{e.key}' "
                         "(merge the two if they are blocks)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{p}: malformed YAML{where}: {problem}", "fix the YAML syntax (indentation, colons, quotes)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{p}: a recipe must be a mapping of keys to values, got {type(data).__name__}",
                         "start from a shipped recipe: nncli recipes copy quickstart my.yaml")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UsageError(f"override '{item}' is not KEY=VALUE", "write overrides as dotted keys, e.g. train.lr=1e-3")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"override '{item}' has an empty key", "write overrides as dotted keys, e.g. train.lr=1e-3")
    try:
        value = safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return split_key(key), value


def split_key(key: str) -> list[str]:
    """A dotted key as a path; under gates.min / gates.max the rest is one metric name (test.accuracy)."""
    parts = key.split(".")
    if len(parts) > 3 and parts[0] == "gates" and parts[1] in ("min", "max"):
        return parts[:2] + [".".join(parts[2:])]
    return parts


def set_path(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def get_path(tree: dict, path: tuple | list):
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def resolve_relative(raw: dict, base: Path, command: str) -> None:
    def fix(value, key):
        if isinstance(value, str) and value and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists() or key == ("output",) and value.startswith("."):
                return str(candidate.resolve())
        return value

    for path in PATH_KEYS.get(command, []):
        value = get_path(raw, path)
        if isinstance(value, list):
            set_path(raw, list(path), [fix(v, path) for v in value])
        elif value is not None:
            set_path(raw, list(path), fix(value, path))


def load_recipe(command: str, path: str | Path | None = None, overrides: list[str] | None = None,
                flags: dict[str, Any] | None = None, gates: dict[str, dict[str, float]] | None = None) -> Strict:
    """Build a validated recipe: defaults < file < overrides < flags (flags use dotted keys too). `gates`
    ({"min": {metric: x}, "max": {...}}, from --min/--max) add to the recipe's own gates, so they are saved with the
    resolved recipe and apply again when it is re-run."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
        resolve_relative(raw, Path(path).resolve().parent, command)
        file_command = raw.get("command", command)
        if file_command != command:
            runner = "run" if file_command == "pipeline" else file_command
            raise UsageError(f"{path}: this is a '{file_command}' recipe, not a '{command}' recipe",
                             f"run it with: nncli {runner} {path}")
        if not raw.get("name"):
            raw["name"] = Path(path).stem
    for item in overrides or []:
        keys, value = parse_override(item)
        set_path(raw, keys, value)
    for dotted, value in (flags or {}).items():
        if value is not None:
            set_path(raw, dotted.split("."), value)
    for side, table in (gates or {}).items():
        for metric, threshold in table.items():
            set_path(raw, ["gates", side, metric], threshold)
    return validate(command, raw, source=str(path) if path else "recipe")


def load_run_recipe(run_dir: str | Path) -> FinetuneRecipe:
    """The resolved recipe of a training run directory (finetune or distill: both carry data and train sections)."""
    path = Path(run_dir) / "recipe.yaml"
    return load_recipe("distill" if read_yaml(path).get("command") == "distill" else "finetune", path)


def validate(command: str, raw: dict, source: str = "recipe") -> Strict:
    """The recipe for `command` (for finetune: the schema of its task), or every problem at once as a UsageError."""
    from nncli.recipe.hints import format_errors
    from nncli.recipe.registry import schema_for

    schema = schema_for(command, raw)
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        problems = format_errors(schema, e)
        raise UsageError(f"{source}: {len(problems)} problem(s) in the recipe", "fix the keys listed above; "
                         f"see every key with: nncli recipes show {'reviews' if command == 'finetune' else command}",
                         details=problems) from None


def dump(recipe: Strict) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
