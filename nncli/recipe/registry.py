"""Which schema each command uses, and which keys hold paths (resolved against the recipe's folder)."""

from __future__ import annotations

from nncli.recipe.audit import AuditRecipe
from nncli.recipe.base import Strict
from nncli.recipe.deploy import BenchRecipe, ExportRecipe, QuantizeRecipe
from nncli.recipe.evaluate import DriftRecipe, EvaluateRecipe
from nncli.recipe.finetune import ClassifierRecipe, DistillRecipe, distill_schema, finetune_schema
from nncli.recipe.pipeline import PipelineRecipe

# finetune recipes are closed per task: see schema_for
SCHEMAS: dict[str, type[Strict]] = {"finetune": ClassifierRecipe, "evaluate": EvaluateRecipe, "export": ExportRecipe,
                                    "quantize": QuantizeRecipe, "drift": DriftRecipe,
                                    "distill": DistillRecipe, "bench": BenchRecipe, "pipeline": PipelineRecipe,
                                    "audit": AuditRecipe}

# Keys in each schema whose values are paths that should be resolved relative to the recipe file.
PATH_KEYS = {"finetune": [("data", "train"), ("data", "validation"), ("data", "test"), ("model", "name"), ("output",)],
             "evaluate": [("data", "path"), ("data", "validation"), ("models",), ("output",)],
             "export": [("model",), ("parity", "data"), ("output",)],
             "quantize": [("model",), ("data", "path"), ("output",)],
             "drift": [("reference",), ("current",), ("model",), ("output",)],
             "bench": [("models",), ("output",), ("baseline",)],
             "pipeline": [("output",)],
             "audit": [("data", "train"), ("data", "validation"), ("data", "test"), ("model",), ("output",), ("fix", "path")],
             "distill": [("data", "train"), ("data", "validation"), ("data", "test"), ("teacher",), ("output",),
                         ("distill", "transfer_data"), ("distill", "cache_dir")]}
PATH_KEYS["finetune"] = PATH_KEYS["finetune"] + [("data", "augment", "synonyms")]


def schema_for(command: str, raw: dict) -> type[Strict]:
    """The schema a raw recipe of `command` is validated against (finetune: the one of its task)."""
    if command == "distill":
        return distill_schema(raw)
    return finetune_schema(raw) if command == "finetune" else SCHEMAS[command]
