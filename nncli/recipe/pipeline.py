"""Pipeline recipes: named steps of other commands."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from nncli.recipe.base import GatesSpec, Strict


class PipelineStep(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", description="referred to by later steps as ${name.key}")
    command: Literal["finetune", "distill", "evaluate", "quantize", "export", "bench", "drift"]
    recipe: str | None = Field(None, description="a recipe file for this command (relative to the pipeline file)")
    set: dict[str, Any] = Field(default_factory=dict,
                                description="recipe keys for this step (nested or dotted), over the recipe file")
    gates: GatesSpec = GatesSpec()


class PipelineRecipe(Strict):
    command: Literal["pipeline"] = "pipeline"
    name: str | None = None
    output: str | None = Field(None,
                               description="pipeline directory; each step writes to <output>/<step name>; default runs/<name>")
    steps: list[PipelineStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"steps: step names must be unique ({', '.join(dup)} repeated)")
        return self
