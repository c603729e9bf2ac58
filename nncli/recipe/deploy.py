"""Deployment recipes: export, quantize and bench."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from nncli.recipe.base import OneModel, Strict


class ParitySpec(Strict):
    data: str | None = Field(None, description="texts (images: a folder or listing) to compare on; default: the run's "
                             "validation data")
    text_column: Union[str, list[str]] = "text"
    samples: int = Field(256, ge=1, description="compare on at most this many texts")
    atol: float = Field(1e-4, gt=0, description="largest acceptable absolute logit difference")
    max_flipped: int = Field(0, ge=0, description="largest acceptable number of changed top-1 predictions")


class ExportRecipe(OneModel):
    command: Literal["export"] = "export"
    name: str | None = None
    task: Literal["auto", "sequence-classification", "causal-lm", "image-classification"] = "auto"
    model: str | None = Field(None, description="run directory, model directory or hub id")
    format: Literal["onnx", "safetensors"] = "onnx"
    output: str | None = Field(None, description="export directory (default: <run>/onnx or <run>/export)")
    opset: int | None = Field(None, ge=11, le=23)
    parity: ParitySpec = ParitySpec()
    trust_remote_code: bool = False
    allow_pickle: bool = False


class QuantDataSpec(Strict):
    path: str | None = Field(None, description="labelled data to measure accuracy on (images: a <folder>/<label>/ folder or "
                             "a listing); default: the run's validation split")
    text_column: Union[str, list[str]] = "text"
    image_column: str = Field("image", description="images: the listing's column of image paths")
    label_column: Union[str, list[str]] = "label"
    limit: int | None = Field(None, ge=1, description="measure accuracy on at most N rows")


class QuantizeRecipe(OneModel):
    MODEL_KINDS = "a run directory or model directory"
    command: Literal["quantize"] = "quantize"
    name: str | None = None
    model: str | None = Field(None, description="run directory or model directory (a sequence classifier)")
    method: Literal["auto", "dynamic", "static"] = "auto"
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    max_drop: float = Field(1.0, ge=0, description="largest acceptable accuracy loss, in percentage points")
    max_flip_rate: float | None = Field(None, ge=0, le=1, description="largest acceptable share of changed predictions")
    require_speedup: bool = Field(True, description="refuse candidates that are not faster than fp32 (false: size is the goal)")
    output: str | None = Field(None, description="default: <run>/quantized")
    data: QuantDataSpec = QuantDataSpec()
    calibration_samples: int = Field(256, ge=8, description="texts or images for static calibration: a seeded "
                                     "sample of the run's training split (texts without a run: the --data texts)")
    batch_size: int = Field(32, ge=1, description="batch size for the throughput measurement")
    seq_len: int = Field(128, ge=8, description="sequence length for the latency/throughput measurement")
    threads: int | None = Field(None, ge=1)
    min_seconds: float = Field(2.0, gt=0, description="time each latency measurement at least this long")


class BenchRecipe(Strict):
    command: Literal["bench"] = "bench"
    name: str | None = None
    models: list[str] = Field(default_factory=list, description="run directories, model directories or ONNX exports")
    batch_sizes: list[int] = Field([1, 8, 32], min_length=1)
    seq_lens: list[int] = Field([32, 128], min_length=1)
    threads: int | None = Field(None, ge=1)
    torch_int8: bool = False
    min_seconds: float = Field(2.0, gt=0)
    output: str | None = None
    baseline: str | None = Field(None, description="an earlier bench report.json to compare with")
    fail_if_slower: float | None = Field(None, gt=0, lt=1,
                                         description="with baseline: fail if throughput falls by more than this fraction")

    @model_validator(mode="after")
    def _check(self):
        if not self.models:
            raise ValueError("models: at least one model is required")
        if min(self.batch_sizes) < 1 or min(self.seq_lens) < 1:
            raise ValueError("batch_sizes and seq_lens must be positive integers")
        return self
