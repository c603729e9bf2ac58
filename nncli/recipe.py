"""Typed, closed recipe schemas, KEY=VALUE overrides, and error reports with "did you mean".

Precedence, written once (load_recipe): schema defaults < recipe file < KEY=VALUE overrides < flags.
Relative paths inside a recipe file are resolved against the recipe's own folder when that file
exists there (so shipped recipes run from anywhere); paths given as overrides or flags are relative to
the current directory, as on any command line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError, UsageError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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


class AugmentSpec(Strict):
    methods: list[Literal["deletion", "swap", "synonym"]] = Field(default_factory=list, description="empty = no augmentation")
    p: float = Field(0.1, gt=0, le=0.5, description="share of words changed per method")
    copies: int = Field(1, ge=1, le=10, description="augmented variants per training example")
    synonyms: str | None = Field(None, description="word-group file for synonym replacement; default: the shipped list")


class DataSpec(Strict):
    train: str | None = Field(None, description="training data: CSV/TSV/JSON/JSONL/parquet file or hub dataset id")
    validation: str | None = Field(None, description="validation file; default: a stratified split of train")
    test: str | None = Field(None, description="optional test file, scored once at the end")
    config: str | None = Field(None, description="hub dataset configuration name")
    train_split: str = "train"
    validation_split: str | None = Field(None, description="hub split name for validation (e.g. validation)")
    test_split: str | None = Field(None, description="hub split name for test")
    text_column: Union[str, list[str]] = Field("text", description="text column; a list means: the first one each file has")
    text_pair_column: str | None = None
    label_column: Union[str, list[str]] = "label"
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    max_length: int = Field(128, ge=8, le=8192)
    clean_text: bool = Field(True, description="unescape HTML entities, strip wrapping quotes, fold whitespace")
    max_train_samples: int | None = Field(None, ge=1, description="use a seeded random subset of N training rows")
    encoding: str = Field("utf-8", description="text encoding of local files (e.g. latin-1, cp1252)")
    # causal-lm only
    prompt_column: str | None = Field(None, description="causal-lm: prompt column (with completion_column)")
    completion_column: str | None = Field(None, description="causal-lm: completion column; loss on completions only")
    messages_column: str | None = Field(None, description="causal-lm: chat conversations, a list of {role, content}")
    chat_template: str | None = Field(None, description="causal-lm: Jinja chat template when the tokenizer has none")
    augment: AugmentSpec = AugmentSpec()
    packing: bool = Field(False, description="causal-lm: pack short examples into full max_length sequences")
    train_on_prompt: bool = Field(False, description="causal-lm: also compute the loss on prompt/user tokens")


class LoraSpec(Strict):
    r: int = Field(16, ge=1, le=1024)
    alpha: float | None = Field(None, description="LoRA scaling numerator; default 2*r")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: Union[Literal["auto", "all-linear", "attention"], list[str]] = "auto"
    use_dora: bool = False


class TrainSpec(Strict):
    epochs: float = Field(10, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(16, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, lt=1, description="peak learning rate; default 5e-4 for LoRA, 1e-4 for full")
    head_lr: float | None = Field(None, gt=0, lt=1, description="learning rate of the classifier head and pooler; default = lr")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: Union[Literal["epoch"], int] = Field("epoch", description="'epoch' or a number of optimizer steps")
    early_stopping_patience: int = Field(3, ge=0, description="evaluations without improvement before stopping; 0 = off")
    metric: Literal["macro_f1", "accuracy", "loss"] = "macro_f1"
    class_weights: Literal["balanced", "none"] = "balanced"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: int = 42
    bf16: Union[bool, Literal["auto"]] = Field(False, description="bf16 autocast for training: true, false, or auto (on where "
                                               "the CPU has native bf16)")
    group_by_length: bool = True
    threads: int | None = Field(None, ge=1, description="torch threads; default: all cores")
    lr_finder_steps: int = Field(200, ge=20, le=5000, description="steps of the learning-rate range test (--find-lr)")

    @field_validator("eval_every")
    @classmethod
    def _positive_steps(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'epoch' or a positive number of steps")
        return v


class LoggingSpec(Strict):
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard")
    every_steps: int = Field(10, ge=1, description="log training loss every N optimizer steps")


class GatesSpec(Strict):
    min: dict[str, float] = Field(default_factory=dict, description="metric: lowest acceptable value")
    max: dict[str, float] = Field(default_factory=dict, description="metric: highest acceptable value")


class SweepSpec(Strict):
    space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="dotted recipe key -> {low, high, log} or {choices}")
    metric: Literal["accuracy", "macro_f1", "loss"] | None = Field(None, description="validation metric; default train.metric")
    pruner: Literal["median", "halving"] = "median"
    startup_trials: int = Field(3, ge=0, description="median pruner: trials that are never pruned")
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="points to try first, e.g. the recipe's own values")
    study_name: str | None = None


class FinetuneRecipe(Strict):
    command: Literal["finetune"] = "finetune"
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"
    name: str | None = Field(None, description="run name; default: the recipe file's name")
    output: str | None = Field(None, description="run directory; default runs/<name>")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    method: Literal["lora", "full"] = "lora"
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    logging: LoggingSpec = LoggingSpec()
    gates: GatesSpec = GatesSpec()
    sweep: SweepSpec | None = Field(None, description="search space and settings for nncli sweep (ignored by finetune)")

    @model_validator(mode="after")
    def _check(self):
        if self.data.train is None:
            raise ValueError("data.train: required (a data file or hub dataset id); set it in the recipe or pass --data")
        return self


class DistillSpec(Strict):
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target KL term (1 - alpha: hard-label cross-entropy)")
    temperature: float = Field(2.0, gt=0, description="softmax temperature for the soft targets")
    hidden_weight: float = Field(0.0, ge=0, description="weight of the hidden-state MSE on matched layers (0 = off)")
    transfer_data: str | None = Field(None, description="unlabelled texts the teacher labels for the student")
    transfer_text_column: Union[str, list[str], None] = Field(None, description="default: data.text_column")
    transfer_limit: int | None = Field(None, ge=1, description="use at most N transfer texts")
    cache_dir: str | None = Field(None, description="teacher-output cache; default $NNCLI_CACHE_DIR or ~/.cache/nncli/distill")
    control: bool = Field(True, description="also train the same student without the teacher, to measure the gain")
    bench_seconds: float = Field(1.0, gt=0, description="time each teacher/student speed measurement at least this long")
    keep_student_init: bool = Field(False, description="keep the student's initial weights (student_init/) after the run")


class DistillRecipe(FinetuneRecipe):
    command: Literal["distill"] = "distill"
    method: Literal["lora", "full"] = Field("full", description="students are trained fully by default")
    teacher: str | None = Field(None, description="the fine-tuned teacher: run directory, model directory or hub id")
    student: str | None = Field("layers=3", description="layers=N (subset of the teacher's layers), hidden=H, both, or a model")
    distill: DistillSpec = DistillSpec()

    @model_validator(mode="after")
    def _check_teacher(self):
        if not self.teacher:
            raise ValueError("teacher: required (a fine-tuned classifier: run directory or model directory); pass --teacher")
        return self


class EvalDataSpec(Strict):
    path: str | None = Field(None, description="evaluation data: a file or hub dataset id")
    config: str | None = None
    split: str = Field("test", description="hub split name")
    validation: str | None = Field(None, description="data to fit the calibration temperature on; default: the run's validation split")
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
    samples: int = Field(500, ge=10, description="perturb at most this many texts (a seeded sample)")
    perturbations: list[Literal["typo_swap", "typo_drop", "typo_insert", "lowercase", "uppercase", "punctuation",
                                "whitespace", "truncate"]] = Field(
        default_factory=lambda: ["typo_swap", "typo_drop", "typo_insert", "lowercase", "uppercase", "punctuation",
                                 "whitespace", "truncate"])
    seed: int = 0


class EvaluateRecipe(Strict):
    command: Literal["evaluate"] = "evaluate"
    task: Literal["auto", "sequence-classification", "causal-lm"] = "auto"
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


class ParitySpec(Strict):
    data: str | None = Field(None, description="texts to compare on; default: the run's validation data")
    text_column: Union[str, list[str]] = "text"
    samples: int = Field(256, ge=1, description="compare on at most this many texts")
    atol: float = Field(1e-4, gt=0, description="largest acceptable absolute logit difference")
    max_flipped: int = Field(0, ge=0, description="largest acceptable number of changed top-1 predictions")


class ExportRecipe(Strict):
    command: Literal["export"] = "export"
    name: str | None = None
    task: Literal["auto", "sequence-classification", "causal-lm"] = "auto"
    model: str | None = Field(None, description="run directory, model directory or hub id")
    format: Literal["onnx", "safetensors"] = "onnx"
    output: str | None = Field(None, description="export directory (default: <run>/onnx or <run>/export)")
    opset: int | None = Field(None, ge=11, le=23)
    parity: ParitySpec = ParitySpec()
    trust_remote_code: bool = False
    allow_pickle: bool = False

    @model_validator(mode="after")
    def _check(self):
        if not self.model:
            raise ValueError("model: required (a run directory, model directory or hub id)")
        return self


class QuantDataSpec(Strict):
    path: str | None = Field(None, description="labelled data to measure accuracy on; default: the run's validation split")
    text_column: Union[str, list[str]] = "text"
    label_column: Union[str, list[str]] = "label"
    limit: int | None = Field(None, ge=1, description="measure accuracy on at most N rows")


class QuantizeRecipe(Strict):
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
    calibration_samples: int = Field(256, ge=8, description="texts for static calibration (from the training data)")
    batch_size: int = Field(32, ge=1, description="batch size for the throughput measurement")
    seq_len: int = Field(128, ge=8, description="sequence length for the latency/throughput measurement")
    threads: int | None = Field(None, ge=1)
    min_seconds: float = Field(2.0, gt=0, description="time each latency measurement at least this long")

    @model_validator(mode="after")
    def _check(self):
        if not self.model:
            raise ValueError("model: required (a run directory or model directory)")
        return self


class DriftRecipe(Strict):
    command: Literal["drift"] = "drift"
    name: str | None = None
    reference: str | None = Field(None, description="run directory (or evaluate output) holding profile.json, a profile.json, "
                                                    "or a reference data file")
    current: str | None = Field(None, description="the new data to check: a file or hub dataset id")
    model: str | None = Field(None, description="model for the model-based tests; default: the one the profile was built with")
    text_column: Union[str, list[str], None] = Field(None, description="default: the profile's text column, else 'text'")
    label_column: Union[str, list[str], None] = Field(None, description="used when present in the current data "
                                                                        "(default: the profile's label column)")
    alpha: float = Field(0.05, gt=0, lt=1, description="false-alarm rate for the whole report (Bonferroni over the tests)")
    max_accuracy_drop: float = Field(5.0, ge=0, description="accuracy drop (points, estimated or actual) that counts as drift")
    model_sample: int = Field(5000, ge=20, description="run the model on at most this many current texts (seeded sample)")
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
    fail_if_slower: float | None = Field(None, gt=0, lt=1, description="with baseline: fail if throughput falls by more than this fraction")

    @model_validator(mode="after")
    def _check(self):
        if not self.models:
            raise ValueError("models: at least one model is required")
        if min(self.batch_sizes) < 1 or min(self.seq_lens) < 1:
            raise ValueError("batch_sizes and seq_lens must be positive integers")
        return self


class PipelineStep(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", description="referred to by later steps as ${name.key}")
    command: Literal["finetune", "distill", "evaluate", "quantize", "export", "bench", "drift"]
    recipe: str | None = Field(None, description="a recipe file for this command (relative to the pipeline file)")
    set: dict[str, Any] = Field(default_factory=dict, description="recipe keys for this step (nested or dotted), over the recipe file")
    gates: GatesSpec = GatesSpec()


class PipelineRecipe(Strict):
    command: Literal["pipeline"] = "pipeline"
    name: str | None = None
    output: str | None = Field(None, description="pipeline directory; each step writes to <output>/<step name>; default runs/<name>")
    steps: list[PipelineStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"steps: step names must be unique ({', '.join(dup)} repeated)")
        return self


SCHEMAS: dict[str, type[Strict]] = {"finetune": FinetuneRecipe, "evaluate": EvaluateRecipe, "export": ExportRecipe,
                                    "quantize": QuantizeRecipe, "drift": DriftRecipe,
                                    "distill": DistillRecipe, "bench": BenchRecipe, "pipeline": PipelineRecipe}

# Keys in each schema whose values are paths that should be resolved relative to the recipe file.
PATH_KEYS = {"finetune": [("data", "train"), ("data", "validation"), ("data", "test"), ("model", "name"), ("output",)],
             "evaluate": [("data", "path"), ("data", "validation"), ("models",), ("output",)],
             "export": [("model",), ("parity", "data"), ("output",)],
             "quantize": [("model",), ("data", "path"), ("output",)],
             "drift": [("reference",), ("current",), ("model",), ("output",)],
             "bench": [("models",), ("output",), ("baseline",)],
             "pipeline": [("output",)],
             "distill": [("data", "train"), ("data", "validation"), ("data", "test"), ("teacher",), ("output",),
                         ("distill", "transfer_data"), ("distill", "cache_dir")]}
PATH_KEYS["finetune"] = PATH_KEYS["finetune"] + [("data", "augment", "synonyms")]


# ---------------------------------------------------------------------------------------------- loading

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
        data = yaml.safe_load(text)
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
        value = yaml.safe_load(raw) if raw.strip() else None
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


def _resolve_relative(raw: dict, base: Path, command: str) -> None:
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
        _resolve_relative(raw, Path(path).resolve().parent, command)
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


# ---------------------------------------------------------------------------------------------- shipped recipes

def recipes_dir() -> Path:
    """Shipped recipes: inside the installed wheel (nncli/recipes) or the source checkout (recipes/)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "recipes", here.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    raise InputError("the shipped recipes are missing from this installation", "reinstall nncli")


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(shipped), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"shipped recipes: {', '.join(shipped)}"
    raise UsageError(f"no recipe file or shipped recipe named '{name_or_path}'", hint)


def recipe_command(path: Path) -> str:
    raw = read_yaml(path)
    cmd = raw.get("command", "finetune")
    if cmd not in SCHEMAS:
        close = difflib.get_close_matches(str(cmd), list(SCHEMAS), n=1)
        raise UsageError(f"{path}: command: unknown command {cmd!r}" + (f"; did you mean '{close[0]}'?" if close else ""),
                         f"one of: {', '.join(SCHEMAS)}")
    return cmd
