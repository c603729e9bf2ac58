"""Causal language modelling: next-token loss on the target tokens (labels -100 elsewhere: prompts, user turns,
padding), evaluated as token-weighted mean loss and its perplexity."""

from __future__ import annotations

import math

import numpy as np

from nncli.train.batching import pad
from nncli.train.lm_data import IGNORE, pack
from nncli.train.tasks.base import decay_groups


class CausalLMTask:
    name = "causal-lm"
    metric = "loss"
    higher_is_better = False
    shown = ("loss", "perplexity")

    def __init__(self, examples: dict, pad_id: int, max_length: int, packing: bool, eos_id: int | None):
        self.pad_id = pad_id
        self.enc = {}
        for name, ex in examples.items():
            ids, labels = pack(ex, max_length, eos_id) if packing and name == "train" else (ex.input_ids, ex.labels)
            self.enc[name] = {"ids": ids, "labels": labels, "lengths": np.array([len(x) for x in ids])}

    def lengths(self, split: str) -> np.ndarray:
        return self.enc[split]["lengths"]

    def collate(self, split: str, idx: list[int]) -> dict:
        import torch

        e = self.enc[split]
        ids = pad(e["ids"], idx, self.pad_id)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(idx):
            mask[r, : len(e["ids"][i])] = 1
        return {"inputs": {"input_ids": ids, "attention_mask": mask}, "labels": pad(e["labels"], idx, IGNORE),
                "index": torch.as_tensor(idx)}

    def loss(self, model, batch):
        return model(**batch["inputs"], labels=batch["labels"]).loss

    def eval_outputs(self, model, batch) -> dict:
        """Per example: the summed negative log-likelihood of its target tokens, and how many there are."""
        import torch

        logits = model(**batch["inputs"]).logits.float()[:, :-1]
        target = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                                                reduction="none").view(target.shape)
        count = (target != IGNORE)
        return {"nll": (nll * count).sum(1), "tokens": count.sum(1).float()}

    def eval_metrics(self, outputs: dict, split: str) -> dict[str, float]:
        tokens = float(outputs["tokens"].sum())
        mean = float(outputs["nll"].sum()) / max(tokens, 1.0)
        return {"loss": mean, "perplexity": float(math.exp(min(mean, 50))), "target_tokens": int(tokens)}

    def param_groups(self, model, lr: float, weight_decay: float) -> list[dict]:
        return decay_groups(model, lambda n: lr, weight_decay)
