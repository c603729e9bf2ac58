"""Training recipes, closed per task: a key that does not apply to the recipe's task is an error with a hint.

`task: sequence-classification` (the default) -> ClassifierRecipe, `task: causal-lm` -> CausalLMRecipe,
`task: image-classification` (the default when data.train is an image folder) -> ImageClassifierRecipe; distill
recipes (`command: distill`) are classifier recipes with a teacher and a student. The schema for a raw recipe is
chosen by `finetune_schema(raw)`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from nncli.recipe.base import DataFiles, GatesSpec, ModelSpec, Strict

DEFAULT_LR = {"lora": 5e-4, "full": 1e-4}


class AugmentSpec(Strict):
    methods: list[Literal["deletion", "swap", "synonym"]] = Field(default_factory=list, description="empty = no augmentation")
    p: float = Field(0.1, gt=0, le=0.5, description="share of words changed per method")
    copies: int = Field(1, ge=1, le=10, description="augmented variants per training example")
    synonyms: str | None = Field(None, description="word-group file for synonym replacement; default: the shipped list")


class DataBase(DataFiles):
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5,
                                       description="share of train held out when there is no validation file")
    max_train_samples: int | None = Field(None, ge=1, description="use a seeded random subset of N training rows")
    encoding: str = Field("utf-8", description="text encoding of local files (e.g. latin-1, cp1252)")
    quoting: Literal["auto", "standard", "none"] = Field("auto", description="CSV/TSV quoting: decided per file (auto), "
                                                         "RFC 4180 (standard), or off (none)")


class ClassifierData(DataBase):
    text_pair_column: str | None = None
    validation_min_per_class: int = Field(10, ge=0, le=1000, description="raise data.validation_fraction (up to 25%) until "
                                          "the rarest class has this many validation rows; 0 = exactly validation_fraction")
    label_column: Union[str, list[str]] = "label"
    max_length: Union[int, Literal["auto"]] = Field("auto", description="tokens per text; auto: the shortest of 64..512 "
                                                    "that keeps 95% of training texts whole (within the model's positions)")
    clean_text: bool = Field(True, description="unescape HTML entities (also put into the saved tokenizer, so clients match)")
    augment: AugmentSpec = AugmentSpec()
    audit: bool = Field(False, description="run nncli audit's checks in pre-flight and put its summary in the report")

    @field_validator("max_length")
    @classmethod
    def _length_range(cls, v):
        if isinstance(v, int) and not 8 <= v <= 8192:
            raise ValueError("must be 'auto' or between 8 and 8192 tokens")
        return v


class LMData(DataBase):
    max_length: int = Field(512, ge=8, le=32768, description="tokens per example; longer examples are truncated and counted")
    prompt_column: str | None = Field(None, description="prompt column (with completion_column)")
    completion_column: str | None = Field(None, description="completion column; loss on completions only")
    messages_column: str | None = Field(None, description="chat conversations, a list of {role, content}")
    chat_template: str | None = Field(None, description="Jinja chat template when the tokenizer has none")
    packing: bool = Field(False, description="pack short examples into full max_length sequences")
    train_on_prompt: bool = Field(False, description="also compute the loss on prompt/user tokens")


class LoraSpec(Strict):
    r: int = Field(16, ge=1, le=1024)
    alpha: float | None = Field(None, description="LoRA scaling numerator; default 2*r")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: Union[Literal["auto", "all-linear", "attention"], list[str]] = "auto"
    use_dora: bool = False


class TrainBase(Strict):
    epochs: float = Field(10, gt=0, le=10000)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(16, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, lt=1, description="peak learning rate; default 5e-4 for LoRA, 1e-4 for full")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: Union[Literal["epoch"], int] = Field("epoch", description="'epoch' or a number of optimizer steps")
    early_stopping_patience: int = Field(3, ge=0, description="evaluations without improvement before stopping; 0 = off")
    seed: int = Field(42, ge=0, lt=2**32)
    bf16: Union[bool, Literal["auto"]] = Field(False, description="bf16 mixed precision: true, false, or auto (where the device "
                                               "has native bf16: a GPU, or a CPU with avx512_bf16/AMX)")
    group_by_length: bool = True
    threads: int | None = Field(None, ge=1, description="torch threads; default: this process's share of the cores")
    lr_finder_steps: int = Field(200, ge=20, le=5000, description="steps of the learning-rate range test (--find-lr)")

    @field_validator("eval_every")
    @classmethod
    def _positive_steps(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'epoch' or a positive number of steps")
        return v


class ClassifierTrain(TrainBase):
    epochs: float = Field(6, gt=0, le=10000, description="training epochs (early stopping may end sooner); 6: measured on "
                          "TweetEval, see benchmarks/README.md")
    head_lr: float | None = Field(None, gt=0, lt=1, description="learning rate of the classifier head and pooler; default = lr")
    metric: Literal["macro_f1", "accuracy", "loss"] = "macro_f1"
    class_weights: Literal["balanced", "sqrt", "none"] = Field("balanced", description="loss weights: inverse class "
                                                              "frequency, its square root, or none")
    label_smoothing: float = Field(0.0, ge=0, lt=1)


AUTO_EPOCHS_EXAMPLES = 6000      # train.epochs=auto: about this many training examples seen (see choose_epochs)


class TextClassifierTrain(ClassifierTrain):
    epochs: Union[float, Literal["auto"]] = Field(
        "auto", description=f"training epochs (early stopping may end sooner); auto: about {AUTO_EPOCHS_EXAMPLES:,} "
        "training examples seen, from 1 to 6 epochs (6 up to 1,000 rows, 2 at 3,000, 1 above 4,000; measured on "
        "TweetEval, see benchmarks/README.md)",
        json_schema_extra={"anyOf": [{"const": "auto"}, {"type": "number", "exclusiveMinimum": 0, "maximum": 10000}]})
    head_init: Literal["linear_probe", "random"] = Field(
        "linear_probe", description="start of a new classification head: a linear probe on the frozen features, kept "
        "unless a fine-tuned checkpoint beats it on validation beyond noise (LP-FT; measured on TweetEval, see "
        "benchmarks/README.md), or random; a head that came with the checkpoint is kept")

    @field_validator("epochs", mode="plain")
    @classmethod
    def _epochs_auto_or_number(cls, v):        # one message, not one per member of the union
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"Input should be 'auto' or a number of epochs (got {v!r})")
        if not math.isfinite(v):
            raise ValueError("Input should be a finite number")
        if not 0 < v <= 10000:
            raise ValueError(f"Input should be above 0 and at most 10000 (got {v})")
        return float(v)


class DistillTrain(TextClassifierTrain):
    epochs: float = Field(6, gt=0, le=10000, description="training epochs of the student (early stopping may end sooner)")


class LMTrain(TrainBase):
    metric: Literal["loss"] = Field("loss", description="causal LMs are selected on validation loss")


class LoggingSpec(Strict):
    every_steps: int = Field(10, ge=1, description="log training loss every N optimizer steps")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="also log to these trackers (tensorboard writes <run>/tensorboard)")


class SweepSpec(Strict):
    space: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                             description="dotted recipe key -> {low, high, log} or {choices}")
    metric: Literal["accuracy", "macro_f1", "loss"] | None = Field(None, description="validation metric; default train.metric")
    pruner: Literal["median", "halving"] = "median"
    startup_trials: int = Field(3, ge=0, description="median pruner: trials that are never pruned")
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="points to try first, e.g. the recipe's own values")
    study_name: str | None = None


class FinetuneBase(Strict):
    command: Literal["finetune"] = "finetune"
    name: str | None = Field(None, description="run name; default: the recipe file's name")
    output: str | None = Field(None, description="run directory; default runs/<name>")
    model: ModelSpec = ModelSpec()
    method: Literal["lora", "full"] = "lora"
    lora: LoraSpec = LoraSpec()
    logging: LoggingSpec = LoggingSpec()
    gates: GatesSpec = GatesSpec()
    sweep: SweepSpec | None = Field(None, description="search space and settings for nncli sweep (ignored by finetune)")

    @model_validator(mode="after")
    def _check(self):
        if self.data.train is None:
            raise ValueError("data.train: required (a data file or hub dataset id); set it in the recipe or pass --data")
        return self

    def learning_rate(self) -> float:
        """The peak learning rate this recipe trains with (the method's default when train.lr is unset)."""
        return self.train.lr or DEFAULT_LR[self.method]


class ClassifierModel(ModelSpec):
    pooling: Literal["auto", "cls", "mean"] = Field("auto", description="how the head reads the text: auto = mean pooling for "
                                                    "checkpoints trained for it (sentence-transformers), else the [CLS] pooler")


class ClassifierBase(FinetuneBase):
    """What every classifier recipe (texts or images) shares: the classifier's training settings."""
    train: ClassifierTrain = ClassifierTrain()


class ClassifierRecipe(ClassifierBase):
    task: Literal["sequence-classification"] = "sequence-classification"
    model: ClassifierModel = ClassifierModel()
    data: ClassifierData = ClassifierData()
    train: TextClassifierTrain = TextClassifierTrain()


class CausalLMRecipe(FinetuneBase):
    task: Literal["causal-lm"] = "causal-lm"
    data: LMData = LMData()
    train: LMTrain = LMTrain()


class ImageAugmentSpec(Strict):
    crop_scale: tuple[float, float] = Field((0.8, 1.0), description="random resized crop: share of the image area kept, "
                                            "low and high ([1, 1] = no cropping)")
    hflip: bool = Field(True, description="random horizontal flips (turn off for digits, text, or anything handed)")
    color_jitter: float = Field(0.0, ge=0, le=1, description="random brightness, contrast and saturation change, up to "
                                "this share")

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v):
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("must be [low, high] with 0 < low <= high <= 1")
        return v


class ImageData(Strict):
    train: str | None = Field(None, description="image folder (root/<label>/*.png|jpg|jpeg|webp, or root/train, root/test) "
                              "or a CSV/JSONL with an image-path column and a label column")
    validation: str | None = Field(None, description="validation folder or listing; default: a stratified split of train")
    test: str | None = Field(None, description="optional test folder or listing, scored once at the end")
    image_column: str = Field("image", description="CSV/JSONL: column of image paths (relative to the file's folder)")
    label_column: str = "label"
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="share of train held out when there is no validation set")
    max_train_samples: int | None = Field(None, ge=1, description="use a seeded random subset of N training images")
    min_image_size: int = Field(16, ge=1, description="warn about images smaller than this many pixels on a side")
    augment: ImageAugmentSpec = ImageAugmentSpec()


class ImageModel(ModelSpec):
    name: str | None = Field(None, description="image classifier or backbone: hub id (google/vit-base-patch16-224, "
                             "microsoft/resnet-50) or a local directory with its preprocessor_config.json")


class ImageClassifierRecipe(ClassifierBase):
    task: Literal["image-classification"] = "image-classification"
    model: ImageModel = ImageModel()
    data: ImageData = ImageData()

    @model_validator(mode="after")
    def _needs_model(self):
        if not self.model.name:
            raise ValueError("model.name: required for images (e.g. google/vit-base-patch16-224 or a local model directory); "
                             "pass --model")
        return self


FinetuneRecipe = Union[ClassifierRecipe, CausalLMRecipe, ImageClassifierRecipe]
TASK_SCHEMAS: dict[str, type[FinetuneBase]] = {"sequence-classification": ClassifierRecipe, "causal-lm": CausalLMRecipe,
                                               "image-classification": ImageClassifierRecipe}


class DistillBase(Strict):
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target KL term (1 - alpha: hard-label cross-entropy)")
    temperature: float = Field(2.0, gt=0, description="softmax temperature for the soft targets")
    cache_dir: str | None = Field(None, description="teacher-output cache; default $NNCLI_CACHE_DIR or ~/.cache/nncli/distill")
    control: bool = Field(True, description="also train the same student without the teacher, to measure the gain")
    bench_seconds: float = Field(1.0, gt=0, description="time each teacher/student speed measurement at least this long")
    keep_student_init: bool = Field(False, description="keep the student's initial weights (student_init/) after the run")


class DistillSpec(DistillBase):
    hidden_weight: float = Field(0.0, ge=0, description="weight of the hidden-state MSE on matched layers (0 = off)")
    transfer_data: str | None = Field(None, description="unlabelled texts the teacher labels for the student")
    transfer_text_column: Union[str, list[str], None] = Field(None, description="default: data.text_column")
    transfer_limit: int | None = Field(None, ge=1, description="use at most N transfer texts")


class ImageDistillSpec(DistillBase):
    """Images: the teacher scores each training image once, without augmentation (see docs/distill.md)."""


class TeacherStudent(Strict):
    command: Literal["distill"] = "distill"
    method: Literal["lora", "full"] = Field("full", description="students are trained fully by default")
    teacher: str | None = Field(None, description="the fine-tuned teacher: run directory, model directory or hub id")

    @model_validator(mode="after")
    def _check_teacher(self):
        if not self.teacher:
            raise ValueError("teacher: required (a fine-tuned classifier: run directory or model directory); pass --teacher")
        return self


class DistillRecipe(TeacherStudent, ClassifierRecipe):
    student: str | None = Field("layers=3", description="layers=N (subset of the teacher's layers), hidden=H, both, or a model")
    train: DistillTrain = DistillTrain()
    distill: DistillSpec = DistillSpec()


class ImageDistillRecipe(TeacherStudent, ImageClassifierRecipe):
    student: str | None = Field(None, description="layers=N (a vision transformer's layers kept), depths=A-B-.. (blocks kept "
                                "per stage of a CNN; fewer numbers: fewer stages), or a model; default: half the teacher's")
    distill: ImageDistillSpec = ImageDistillSpec()

    @model_validator(mode="after")
    def _needs_model(self):          # the student comes from the teacher (or --student): no model.name needed
        return self


def default_task(raw: dict) -> str:
    """A recipe without a task: image-classification when data.train is an image folder, else sequence-classification."""
    from nncli.io.images import is_image_folder

    train = (raw.get("data") or {}).get("train") if isinstance(raw.get("data"), dict) else None
    return "image-classification" if isinstance(train, str) and is_image_folder(train) else "sequence-classification"


def distill_schema(raw: dict) -> type[Strict]:
    """A distill recipe's schema: images when its task says so, its data is an image folder or its teacher is an
    image classifier; texts otherwise."""
    task = raw.get("task")
    if task is None:
        from nncli.io.image_inference import is_image_model

        teacher = raw.get("teacher")
        images = default_task(raw) == "image-classification" or (isinstance(teacher, str) and is_image_model(teacher))
        task = "image-classification" if images else "sequence-classification"
    return ImageDistillRecipe if task == "image-classification" else DistillRecipe


def finetune_schema(raw: dict) -> type[FinetuneBase]:
    """The schema of a finetune recipe, by its `task` (default: sequence-classification)."""
    from nncli.core.errors import UsageError

    task = raw.get("task") or default_task(raw)
    if task not in TASK_SCHEMAS:
        import difflib

        close = difflib.get_close_matches(str(task), list(TASK_SCHEMAS), n=1)
        raise UsageError(f"task: unknown task {task!r}" + (f"; did you mean '{close[0]}'?" if close else ""),
                         f"one of: {', '.join(TASK_SCHEMAS)}")
    return TASK_SCHEMAS[task]
