"""Sequence classification: texts (or text pairs) -> labels.

Dynamic padding, class-weighted cross-entropy (balanced, square-root or none) with optional label smoothing, LoRA on
every linear layer of the backbone with the classification head and the pooler trained fully (they are new for the
task, or, in a sentence-embedding checkpoint, never trained for classification), and a separate head learning rate.
"""

from __future__ import annotations

import numpy as np

from nncli.evaluate import metrics as M
from nncli.io.inference import softmax
from nncli.train.batching import pad
from nncli.train.tasks.base import decay_groups

HEAD_NAMES = ("classifier", "score", "pooler", "pre_classifier")
PROBE_LEVEL = 0.95           # the whole run's confidence that a checkpoint replacing the linear probe is no noise win


class ClassificationTask:
    name = "sequence-classification"
    shown = ("accuracy", "macro_f1", "loss")

    def __init__(self, data, tokenizer, max_length: int, accepted: set[str], *, metric: str = "macro_f1",
                 class_weights: str = "balanced", label_smoothing: float = 0.0, head_lr: float | None = None, train_split=None):
        self.data, self.tok, self.max_length = data, tokenizer, max_length
        self.metric, self.higher_is_better = metric, metric != "loss"
        self.n_classes = len(data.label_names)
        self.head_lr, self.label_smoothing = head_lr, label_smoothing
        splits = {s.name: s for s in data.splits()}
        if train_split is not None:
            splits["train"] = train_split
        self.splits = splits
        self.enc = {name: encode(tokenizer, s.texts, s.pairs, max_length, accepted, s.labels) for name, s in splits.items()}
        self.weight = class_weight(np.asarray(splits["train"].labels), self.n_classes, class_weights)
        self.probs: dict[str, np.ndarray] = {}
        self.majority_accuracy = majority_accuracy(np.asarray(splits["train"].labels), self.enc["validation"]["labels"]) \
            if "validation" in self.enc else 0.0

    def lengths(self, split: str) -> np.ndarray:
        return self.enc[split]["lengths"]

    def collate(self, split: str, idx: list[int]) -> dict:
        import torch

        e = self.enc[split]
        inputs = {k: pad(rows, idx, self.tok.pad_token_id if k == "input_ids" else 0) for k, rows in e["features"].items()}
        return {"inputs": inputs, "labels": torch.as_tensor(e["labels"][list(idx)]), "index": torch.as_tensor(idx)}

    def logits(self, model, batch):
        return model(**batch["inputs"]).logits.float()

    def loss(self, model, batch):
        import torch

        logits = self.logits(model, batch)
        weight = None if self.weight is None else torch.as_tensor(self.weight, dtype=torch.float32, device=logits.device)
        return torch.nn.functional.cross_entropy(logits, batch["labels"], weight=weight, label_smoothing=self.label_smoothing)

    def eval_outputs(self, model, batch) -> dict:
        return {"logits": self.logits(model, batch)}

    def eval_metrics(self, outputs: dict, split: str) -> dict[str, float]:
        probs = softmax(outputs["logits"].astype(np.float64))
        self.probs[split] = probs
        return M.classification(self.enc[split]["labels"], probs.argmax(1), self.n_classes, probs)

    def rank(self, metrics: dict, reference=None, comparisons: int = 1) -> tuple:
        """How the loop ranks validation evaluations (higher is better, compared in order): first whether accuracy
        reaches the majority class's (macro-F1 and balanced metrics alone reward a model that over-predicts rare
        classes), then the metric, then the lower loss (on a small validation split equal macro-F1s are common).

        With a `reference` (the validation predictions of the linear probe the run started from) a checkpoint first
        has to beat the probe beyond noise (`beats_reference`); the probe itself ranks between those that do and
        those that do not, so the simpler model is kept unless the validation data says otherwise. `comparisons` is
        how many evaluations the run plans to compare with the probe: each is tested at 5% / comparisons (Bonferroni),
        so the chance that any checkpoint beats the probe by noise alone stays under 5% for the whole run."""
        if self.metric == "loss":
            return (-metrics["loss"],)
        base = (float(metrics["accuracy"] >= self.majority_accuracy), metrics[self.metric], -metrics["loss"])
        if reference is None:
            return base
        return (self.beats_reference(reference, level=1 - (1 - PROBE_LEVEL) / max(1, comparisons)),) + base

    def predictions(self, split: str) -> list[int]:
        """The class predicted for every row of `split` at the last evaluation."""
        return self.probs[split].argmax(1).tolist()

    @property
    def reference_metric(self) -> str:
        """What a checkpoint must beat the probe on: the selection metric, macro-F1 when that is the loss."""
        return self.metric if self.metric in ("accuracy", "macro_f1") else "macro_f1"

    def beats_reference(self, reference, level: float = 0.95) -> float:
        """1 when the last validation predictions beat `reference` on the selection metric with one-sided `level`
        confidence (paired percentile bootstrap over the validation rows), 0.5 when they are the reference's, else 0."""
        y, new, ref = (np.asarray(a) for a in (self.enc["validation"]["labels"], self.predictions("validation"), reference))
        if np.array_equal(new, ref):
            return 0.5
        def score(pred, idx):
            if self.reference_metric == "accuracy":
                return M.accuracy_rows(y, pred, idx)
            return M.macro_f1_rows(y, pred, idx, self.n_classes)

        resamples = max(1000, int(round(20 / (1 - level))))        # >= 10 resamples beyond the bound in its tail
        bounds = M.bootstrap_rows(lambda idx: score(new, idx) - score(ref, idx), len(y), resamples, 0, 2 * level - 1)
        return float(bounds is not None and bounds[0] > 0)

    def param_groups(self, model, lr: float, weight_decay: float) -> list[dict]:
        head_lr = self.head_lr or lr
        return decay_groups(model, lambda n: head_lr if is_head(n) else lr, weight_decay)


def is_head(name: str) -> bool:
    return "modules_to_save" in name or any(f".{h}." in f".{name}" for h in HEAD_NAMES)


def encode(tok, texts, pairs, max_length: int, accepted: set[str], labels) -> dict:
    enc = tok(texts, pairs, truncation=True, max_length=max_length, verbose=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc and k in accepted]
    return {"features": {k: enc[k] for k in keys}, "labels": np.asarray(labels, dtype=np.int64),
            "lengths": np.array([len(x) for x in enc["input_ids"]])}


def majority_accuracy(train_labels: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy on `labels` of always predicting the most frequent training class."""
    known = train_labels[train_labels >= 0]
    return float((labels == np.bincount(known).argmax()).mean()) if len(known) and len(labels) else 0.0


def class_weight(labels: np.ndarray, n_classes: int, how: str) -> np.ndarray | None:
    """Loss weights normalised to mean 1: inverse class frequency (balanced), its square root (sqrt), or none."""
    if how == "none":
        return None
    labels = labels[labels >= 0]             # unlabelled rows (distillation transfer data) carry -100
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    if how == "sqrt":
        w = np.sqrt(w)
    return w / w.mean()


def build_model(model_path: str, label_names: list[str], recipe, report: dict):
    """The classifier with its new head; LoRA on the backbone's linear layers (heads and pooler trained fully)."""
    from nncli.core import console
    from nncli.io.models import head_modules, load_classifier, lora_target_regex
    from nncli.train import pooling

    model, new_params = load_classifier(model_path, label_names, trust_remote_code=recipe.model.trust_remote_code,
                                        allow_pickle=recipe.model.allow_pickle)
    heads = head_modules(model)
    mode, why = pooling.choose(getattr(recipe.model, "pooling", "auto"), model_path, model)
    pool = pooling.pooling_layer(model)
    if mode == "mean" and pool is None:
        pool = pooling.append_mean_pooling_layer(model)
        if pool is None:
            mode, why = "cls", f"mean pooling is not supported for {type(model).__name__}; the [CLS] pooler is used"
            console.warn(why)
        elif getattr(getattr(recipe, "train", None), "head_init", "random") == "linear_probe" and pooling.identity_pooler(model):
            why += "; the pooler starts as the identity"
    frozen = [f"encoder.layer.{pool}"] if pool is not None else []
    training = {"fully_trained_modules": ["all"], "pooling": {"mode": mode, "why": why, "built_layer": pool}}
    if recipe.method == "lora":
        from peft import LoraConfig, get_peft_model

        target, leaves = lora_target_regex(model, recipe.lora.target_modules, heads, frozen)
        # peft already keeps the task head (classifier / score) for SEQ_CLS; name only what it would not. A built
        # pooling layer is saved with the adapter too, so the hub base model plus adapter/ rebuild the network.
        extra = sorted({h.split(".")[-1] for h in heads} - {"classifier", "score"}) + frozen
        cfg = LoraConfig(task_type="SEQ_CLS", r=recipe.lora.r, lora_alpha=recipe.lora.alpha or 2 * recipe.lora.r,
                         lora_dropout=recipe.lora.dropout, target_modules=target, use_dora=recipe.lora.use_dora,
                         modules_to_save=extra or None)
        model = get_peft_model(model, cfg)
        training.update(lora_targets=leaves, fully_trained_modules=heads)
    if pool is not None:
        pooling.freeze(model, pool)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    training.update(trainable_parameters=n_trainable, total_parameters=sum(p.numel() for p in model.parameters()),
                    newly_initialised=sorted({k.rsplit(".", 1)[0] for k in new_params}))
    report["training"] = training
    return model
