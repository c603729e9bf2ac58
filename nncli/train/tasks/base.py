"""The contract between the training loop and a task."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Task(Protocol):
    name: str                 # sequence-classification | causal-lm | image-classification | ...
    metric: str               # the validation metric early stopping watches
    higher_is_better: bool

    def lengths(self, split: str) -> np.ndarray:
        """One length per example of `split` (train, validation, test): batching groups similar lengths."""

    def collate(self, split: str, idx: list[int]) -> dict[str, Any]:
        """A batch: {"inputs": {name: tensor}, "labels": tensor, "index": tensor of the rows}, on the CPU."""

    def loss(self, model, batch: dict[str, Any]):
        """The training loss of a batch (a scalar tensor)."""

    def eval_outputs(self, model, batch: dict[str, Any]) -> dict[str, Any]:
        """Per-example tensors (first dimension = batch) that eval_metrics needs; the loop gathers them."""

    def eval_metrics(self, outputs: dict[str, np.ndarray], split: str) -> dict[str, float]:
        """Metrics of a whole split from its per-example outputs, in the split's row order."""

    def param_groups(self, model, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups (learning rate and weight decay per group)."""


def decay_groups(model, lr_of, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; `lr_of(name)` gives each parameter's learning rate."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "norm" in name.lower() or name.endswith("bias")
        groups.setdefault((lr_of(name), no_decay), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": 0.0 if nd else weight_decay} for (lr, nd), ps in groups.items()]
