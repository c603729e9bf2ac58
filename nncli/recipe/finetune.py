"""Training recipes: finetune (classification, causal LM) and distill."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from nncli.recipe.base import GatesSpec, ModelSpec, Strict


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
