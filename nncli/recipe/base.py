"""Shared recipe building blocks: the closed Strict base, the data files and splits, the model spec and gates."""

from __future__ import annotations

from typing import ClassVar, Union

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


class DataFiles(Strict):
    """The keys every training-data section starts with: train/validation/test (files or a hub dataset's splits) and
    the text column."""
    train: str | None = Field(None, description="training data: CSV/TSV/JSON/JSONL/parquet file or hub dataset id")
    validation: str | None = Field(None, description="validation file; default: a stratified split of train")
    test: str | None = Field(None, description="optional test file, scored once at the end")
    config: str | None = Field(None, description="hub dataset configuration name")
    train_split: str = "train"
    validation_split: str | None = Field(None, description="hub split name for validation (e.g. validation)")
    test_split: str | None = Field(None, description="hub split name for test")
    text_column: Union[str, list[str]] = Field("text", description="text column; a list means: the first one each file has")


class OneModel(Strict):
    """A recipe of one model (`model`, required); MODEL_KINDS says in the error what it may be."""
    MODEL_KINDS: ClassVar[str] = "a run directory, model directory or hub id"

    @model_validator(mode="after")
    def _check_model(self):
        if not self.model:
            raise ValueError(f"model: required ({self.MODEL_KINDS})")
        return self


class ModelSpec(Strict):
    name: str = Field(DEFAULT_MODEL, description="hub id or local model directory")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    trust_remote_code: bool = Field(False, description="run code shipped with the model; off unless you trust it")
    allow_pickle: bool = Field(False, description="allow pickle (.bin) weights; safetensors only by default")


class GatesSpec(Strict):
    min: dict[str, float] = Field(default_factory=dict, description="metric: lowest acceptable value")
    max: dict[str, float] = Field(default_factory=dict, description="metric: highest acceptable value")
