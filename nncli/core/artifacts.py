"""Every file nncli reads back, with a schema: a corrupt, truncated or hand-edited file is an input error (exit 3)
with a one-line message naming the file and the fix, never an internal error.

The schemas check what nncli relies on and let the rest through (extra keys are allowed: the files carry more
than their readers need, and newer versions add to them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nncli.core.errors import InputError

M = TypeVar("M", bound=BaseModel)


class Artifact(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    fix: ClassVar[str] = "re-run the nncli command that wrote it, or delete it"


def read_artifact(path: str | Path, model: type[M], *, hint: str | None = None) -> M:
    """Parse and validate a JSON file nncli wrote (or a user handed over as such): InputError on any problem."""
    p = Path(path)
    fix = hint or getattr(model, "fix", Artifact.fix)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p} not found", fix) from None
    except IsADirectoryError:
        raise InputError(f"{p} is a directory, not a JSON file", fix) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p} cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})", fix) from None
    try:
        data = json.loads(text)
    except ValueError as e:
        where = f" (line {e.lineno}, column {e.colno}: {e.msg})" if hasattr(e, "lineno") else ""
        raise InputError(f"{p} is not valid JSON{where}", fix) from None
    if not isinstance(data, dict):
        raise InputError(f"{p} must hold a JSON object, it holds a {_json_type(data)}", fix)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{p}: {_first_problem(e)}", fix) from None


def _json_type(v) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(v), "value")


def _first_problem(e: ValidationError) -> str:
    errs = e.errors()
    err = errs[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if err["type"] == "missing" or isinstance(got, (dict, list)) else f" (got {json.dumps(got, default=str)[:60]})"
    more = f"; {len(errs) - 1} more problem(s)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{shown}{more}" if loc else f"{msg}{more}"


# ---------------------------------------------------------------------------------------------- model files

class Calibration(Artifact):
    """calibration.json beside a model (nncli evaluate --calibrate)"""

    fix: ClassVar[str] = "delete it, or re-run nncli evaluate --calibrate"

    temperature: float = Field(gt=0.01, lt=100)
    method: str | None = None


class Quantization(Artifact):
    """quantization.json beside a PyTorch int8 model (nncli quantize)"""

    fix: ClassVar[str] = "re-run nncli quantize, or delete the model"

    method: Literal["torch-dynamic-int8"]
    exclude: list[str] = Field(default_factory=list)


class StudentInit(Artifact):
    """nncli_student.json in a distillation run's student_init/"""

    fix: ClassVar[str] = "run the distillation again without --resume"

    source: str | None = Field(None, alias="from")


# ---------------------------------------------------------------------------------------------- reports

class Gate(Artifact):
    metric: str
    passed: bool = True


class Report(Artifact):
    """report.json of an nncli run"""

    fix: ClassVar[str] = "point at a run directory written by nncli, or re-run the command that wrote it"

    schema_version: int | None = None
    task: str | None = None
    command: str | None = None
    status: str | None = None
    metrics: dict = Field(default_factory=dict)
    gates: list[Gate] = Field(default_factory=list)
    artifacts: dict = Field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """The command that wrote it (schema 2 names it `command`; schema 1 called it `task`)."""
        return self.command if (self.schema_version or 1) >= 2 and self.command else self.task


class BenchRow(Artifact):
    model: str
    backend: str
    batch_size: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    throughput_per_second: float = Field(gt=0)
    p50_ms: float = Field(gt=0)


class BenchReport(Report):
    """report.json of nncli bench --output"""

    fix: ClassVar[str] = "pass the report.json of an earlier nncli bench --output run"

    results: list[BenchRow] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _is_bench(cls, data):
        if isinstance(data, dict):
            kind = data.get("command") if (data.get("schema_version") or 1) >= 2 and data.get("command") else data.get("task")
            if kind != "bench":
                raise ValueError(f"written by nncli {kind or '(unknown command)'}, not by nncli bench")
        return data


class PipelineStepRow(Artifact):
    name: str
    command: str
    output: str
    status: str = "not run"


class PipelineReport(Report):
    """report.json of nncli run (a pipeline)"""

    fix: ClassVar[str] = "re-run the pipeline (nncli run PIPELINE.yaml) to rewrite it"

    steps: list[PipelineStepRow] = Field(default_factory=list)


class StepState(Artifact):
    fingerprint: str | None = None
    status: str
    outputs: dict[str, str] | None = None
    run_id: str | None = None
    finished_at: str | None = None


class PipelineState(Artifact):
    """pipeline-state.json in a pipeline directory"""

    fix: ClassVar[str] = "delete it (every step then runs again)"

    schema_version: int = 1
    steps: dict[str, StepState] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- drift profiles

class ProfileModel(Artifact):
    ref: str | None = None
    label_names: list[str] = Field(min_length=1)
    temperature: float | None = Field(None, gt=0)
    max_length: int | None = Field(None, ge=1)
    rows: int = Field(ge=0)
    predictions: dict[str, int] = Field(default_factory=dict)
    accuracy: float | None = Field(None, ge=0, le=1)
    atc_threshold: float | None = None


class Profile(Artifact):
    """profile.json, a drift reference profile"""

    fix: ClassVar[str] = "re-create it by re-running the finetune or evaluate that wrote it"

    schema_version: int
    source: str | None = None
    rows: int | None = Field(None, ge=0)
    columns: dict[str, str | list[str] | None] = Field(default_factory=dict)
    features: dict = Field(default_factory=dict)
    labels: dict[str, int] | None = None
    model: ProfileModel | None = None


def config_labels(config: dict, path: Path) -> list[str]:
    """The label names of a model's config.json (id2label), refusing gaps and non-integer ids."""
    raw = config.get("id2label")
    if not raw:
        return []
    try:
        table = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"{path}: id2label must map integer ids to label names",
                         "re-export the model with nncli export") from None
    missing = sorted(set(range(len(table))) - set(table))
    if missing:
        raise InputError(f"{path}: id2label has a gap (no label for id {missing[0]}; ids must be 0..{len(table) - 1})",
                         "fix id2label in config.json so the ids run 0, 1, 2, ... or re-export the model with nncli export")
    return [table[i] for i in range(len(table))]
