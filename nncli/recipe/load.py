"""Loading recipes: defaults < recipe file < KEY=VALUE overrides < flags (written once, here), errors with did-you-mean.

Relative paths inside a recipe file are resolved against the recipe's own folder when that file
exists there (so shipped recipes run from anywhere); paths given as overrides or flags are relative to
the current directory, as on any command line."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nncli.core.errors import UsageError
from nncli.recipe.base import Strict
from nncli.recipe.finetune import FinetuneRecipe
from nncli.recipe.registry import PATH_KEYS, SCHEMAS

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
        raise UsageError(f"cannot read recipe {p}: {e}", "save it as UTF-8 text")
    try:
        data = safe_load(text)
    except DuplicateKey as e:
        raise UsageError(f"{p}: {e}", f"a repeated key would silently replace the first one: keep one '{e.key}' "
                         "(merge the two if they are blocks)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{p}: malformed YAML{where}: {problem}", "fix the YAML syntax (indentation, colons, quotes)")
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
    return key.split("."), value


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
                flags: dict[str, Any] | None = None) -> Strict:
    """Build a validated recipe: defaults < file < overrides < flags (flags use dotted keys too)."""
    schema = SCHEMAS[command]
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
    return validate(schema, raw, source=str(path) if path else "recipe")


def load_run_recipe(run_dir: str | Path) -> "FinetuneRecipe":
    """The resolved recipe of a training run directory (finetune or distill: both carry data and train sections)."""
    path = Path(run_dir) / "recipe.yaml"
    return load_recipe("distill" if read_yaml(path).get("command") == "distill" else "finetune", path)


def validate(schema: type[Strict], raw: dict, source: str = "recipe") -> Strict:
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        problems = format_errors(schema, e)
        raise UsageError(f"{source}: {len(problems)} problem(s) in the recipe", "fix the keys listed above; "
                         "see every key with: nncli recipes show quickstart", details=problems)


def format_errors(schema: type[BaseModel], error: ValidationError) -> list[str]:
    out = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[", "list["))]
        key = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = _fields_at(schema, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            msg = "unknown key" + (f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else
                                   f"; known keys here: {', '.join(sorted(known))}")
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
            if msg.startswith(key + ": "):
                msg = msg[len(key) + 2:]
            elif ": " in msg and key == "(top level)":
                key, _, msg = msg.partition(": ")
        if "input" in err and err["type"] not in ("extra_forbidden", "missing") and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
        line = f"{key}: {msg}"
        if line not in out:
            out.append(line)
    return out


def _fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    model = schema
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def dump(recipe: Strict) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
