"""Evaluation recipes: evaluate and drift."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from nncli.recipe.base import GatesSpec, Strict


class EvalDataSpec(Strict):
    path: str | None = Field(None, description="evaluation data: a file or hub dataset id; for images an image folder "
                             "(<folder>/<label>/<image>) or a CSV/JSONL of image paths and labels")
    image_column: str = Field("image", description="images: the listing's column of image paths (relative to the file)")
    config: str | None = None
    split: str = Field("test", description="hub split name")
    validation: str | None = Field(None,
                                   description="data to fit the calibration temperature on; default: the run's validation split")
    text_column: Union[str, list[str]] = "text"
    text_pair_column: str | None = None
    label_column: Union[str, list[str]] = "label"
    slice_column: str | None = Field(None, description="report every metric per value of this column")
    id_column: str | None = Field(None, description="row id written to predictions.jsonl (default: an 'id' column if present)")
    encoding: str = "utf-8"
    clean_text: bool = True
    max_length: int | None = Field(None, ge=8, le=8192, description="default: the model's limit (at most 512)")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N rows")


class CalibrationSpec(Strict):
    fit: bool = Field(False, description="fit temperature scaling on validation data and store it with the model")
    bins: int = Field(15, ge=2, le=100)


class RobustnessSpec(Strict):
    enabled: bool = True
    samples: int = Field(500, ge=10, description="perturb at most this many texts or images (a seeded sample)")
    perturbations: list[Literal["typo_swap", "typo_drop", "typo_insert", "lowercase", "uppercase", "punctuation",
                                "whitespace", "truncate", "gaussian_noise", "gaussian_blur", "brightness", "contrast",
                                "jpeg", "rotation"]] | None = Field(
        None, description="default: all of the model's kind (texts: typo_swap, typo_drop, typo_insert, lowercase, "
                          "uppercase, punctuation, whitespace, truncate; images: gaussian_noise, gaussian_blur, "
                          "brightness, contrast, jpeg, rotation)")
    seed: int = 0


class EvaluateRecipe(Strict):
    command: Literal["evaluate"] = "evaluate"
    task: Literal["auto", "sequence-classification", "causal-lm", "image-classification"] = "auto"
    name: str | None = None
    output: str | None = Field(None, description="directory for report.json, report.md, predictions and plots")
    models: list[str] = Field(default_factory=list, description="run directories, model directories, hub ids or ONNX exports")
    data: EvalDataSpec = EvalDataSpec()
    calibration: CalibrationSpec = CalibrationSpec()
    robustness: RobustnessSpec = RobustnessSpec()
    slice_min_count: int = Field(30, ge=1, description="slices with fewer rows are flagged as too small to trust")
    bootstrap: int = Field(1000, ge=0, le=100000, description="bootstrap resamples for confidence intervals (0 = off)")
    profile: bool = Field(True, description="with --output: also write a reference profile (profile.json) for nncli drift")
    batch_size: int = Field(64, ge=1)
    threads: int | None = Field(None, ge=1)
    seed: int = 0
    trust_remote_code: bool = False
    allow_pickle: bool = False
    gates: GatesSpec = GatesSpec()

    @model_validator(mode="after")
    def _check(self):
        if not self.models:
            raise ValueError("models: at least one model is required (a run directory, model directory or hub id)")
        if self.data.path is None:
            raise ValueError("data.path: required (a data file or hub dataset id); pass --data")
        return self


class DriftRecipe(Strict):
    command: Literal["drift"] = "drift"
    name: str | None = None
    reference: str | None = Field(None, description="run directory (or evaluate output) holding profile.json, a profile.json, "
                                                    "or a reference data file")
    current: str | None = Field(None, description="the new data to check: a file or hub dataset id; for an image "
                                                  "classifier an image folder or a CSV/JSONL listing of image paths")
    model: str | None = Field(None, description="model for the model-based tests; default: the one the profile was built with")
    text_column: Union[str, list[str], None] = Field(None, description="default: the profile's text column, else 'text'")
    image_column: str | None = Field(None, description="images: a listing's column of image paths (default: the profile's, "
                                                       "else 'image')")
    label_column: Union[str, list[str], None] = Field(None, description="used when present in the current data "
                                                                        "(default: the profile's label column)")
    alpha: float = Field(0.05, gt=0, lt=1, description="false-alarm rate for the whole report (Bonferroni over the tests)")
    max_accuracy_drop: float = Field(5.0, ge=0, description="accuracy drop (points, estimated or actual) that counts as drift")
    model_sample: int = Field(5000, ge=20, description="run the model on at most this many current texts or images "
                                                       "(seeded sample)")
    limit: int | None = Field(None, ge=20, description="use at most this many current rows (seeded sample)")
    output: str | None = Field(None, description="directory for report.json, report.md and drift.png")
    threads: int | None = Field(None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if not self.reference:
            raise ValueError("reference: required (a run directory made by nncli finetune); pass --reference")
        if not self.current:
            raise ValueError("current: required (the new data to check); pass --current")
        return self
