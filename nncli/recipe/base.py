"""Shared recipe building blocks: the closed Strict base, the model spec and gates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _safe_name(self):
        # names become directories (runs/<name>): a recipe must not be able to write outside them
        name = getattr(self, "name", None) if "command" in type(self).model_fields else None   # recipes, not model specs
        if isinstance(name, str) and ("/" in name or "\\" in name or name.strip(". ") == "" or "\0" in name):
            raise ValueError(f"name: {name!r} must not contain path separators or be only dots (it names runs/<name>)")
        return self


class ModelSpec(Strict):
    name: str = Field(DEFAULT_MODEL, description="hub id or local model directory")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    trust_remote_code: bool = Field(False, description="run code shipped with the model; off unless you trust it")
    allow_pickle: bool = Field(False, description="allow pickle (.bin) weights; safetensors only by default")


class GatesSpec(Strict):
    min: dict[str, float] = Field(default_factory=dict, description="metric: lowest acceptable value")
    max: dict[str, float] = Field(default_factory=dict, description="metric: highest acceptable value")
