"""Positional-argument conventions shared by the commands: [RECIPE] [MODEL...] [KEY=VALUE...]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nncli.core.errors import UsageError


def split_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    args = list(args or [])
    recipe = None
    if args and "=" not in args[0]:
        recipe = args.pop(0)
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UsageError(f"unexpected argument {stray[0]!r}: after the recipe only KEY=VALUE overrides are allowed",
                         "put flags before or after, e.g. nncli finetune recipe.yaml train.lr=1e-3 --epochs 3")
    return recipe, args


DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")


def recipe_or_data(recipe: str | None, data: str | None) -> tuple[str | None, str | None]:
    """A data file where the recipe goes (`nncli finetune my.csv --label-column stars`) is the training data."""
    if recipe is None or not recipe.lower().endswith(DATA_SUFFIXES):
        return recipe, data
    if data is not None:
        raise UsageError(f"{recipe!r} is a data file, and --data {data!r} was given too",
                         f"give the training data once: --data {data}, or {recipe} alone")
    return None, recipe


@dataclass
class TrainingInputs:
    """What finetune, sweep and validate start with: [RECIPE] [KEY=VALUE]... --model --data --validation --test
    --text-column (see nncli.cli.options.command_options)."""
    args: list[str] | None
    model: str | None
    data: str | None
    validation: str | None
    test: str | None
    text_column: list[str] | None

    def resolve(self, label_column: str | None) -> tuple[Path | None, list[str], dict]:
        """(recipe path or None, overrides, flags as dotted recipe keys); a data file in the recipe's place is the
        training data (nncli finetune my.csv ...)."""
        from nncli.recipe.shipped import find_recipe

        name, overrides = split_args(self.args)
        name, train = recipe_or_data(name, self.data)
        flags = {"model.name": self.model, "data.train": train, "data.validation": self.validation, "data.test": self.test,
                 "data.text_column": columns(self.text_column), "data.label_column": label_column}
        return (find_recipe(name) if name else None), overrides, flags


def columns(names: list[str] | None):
    """A repeated --text-column: one name, or a list of candidates (the first each file has)."""
    if not names:
        return None
    return names[0] if len(names) == 1 else list(names)


def split_models(args: list[str] | None) -> tuple[str | None, list[str], list[str]]:
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


def model_and_overrides(args: list[str] | None) -> tuple[str | None, str | None, list[str]]:
    recipe, models, overrides = split_models(args)
    if len(models) > 1:
        raise UsageError(f"one model at a time, got {len(models)}: {', '.join(models)}", "run the command once per model")
    return recipe, (models[0] if models else None), overrides


def int_list(value: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
        if not out or min(out) < 1:
            raise ValueError
        return out
    except ValueError:
        raise UsageError(f"{name} {value!r} is not a comma-separated list of positive integers", f"e.g. {name} 1,8,32") from None


def gate_flags(mins: list[str] | None, maxs: list[str] | None) -> dict[str, dict[str, float]]:
    """--min METRIC=X / --max METRIC=X as overrides of the recipe's gates (saved with it, re-applied on re-runs)."""
    from nncli.core.report import parse_gate_flags

    return {"min": parse_gate_flags(mins, "min"), "max": parse_gate_flags(maxs, "max")}
