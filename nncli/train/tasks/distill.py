"""Distillation as a task: the student's loss is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) *
cross-entropy on the labels, plus optionally hidden_weight * MSE between mean-pooled hidden states of matched layers
(through a learned linear projection when the widths differ). Teacher outputs are computed once and cached on disk,
keyed by the teacher's weights, the texts and the settings, so training never runs the teacher; unlabelled transfer
rows (labelled -100) learn from the soft targets alone. The loss is a mixin (SoftTargets) over a classification task:
DistillTask for texts, ImageDistillTask for images (nncli/train/tasks/image.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.atomic import atomic_write_bytes
from nncli.train.tasks.classify import ClassificationTask
from nncli.train.tasks.image import ImageClassificationTask

IGNORE = -100


def cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    base = os.environ.get("NNCLI_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                             "nncli")
    return Path(base) / "distill"


def model_fingerprint(model_dir: str) -> str:
    h = hashlib.sha256()
    d = Path(model_dir)
    for f in sorted(d.glob("*.safetensors")) + [d / "config.json"]:
        if f.exists():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def teacher_outputs(teacher, texts: list[str], pairs: list[str] | None, layers: list[int] | None, cache: Path,
                    teacher_fp: str, what: str) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Teacher logits (and mean-pooled hidden states of `layers`) for texts, from the disk cache when present."""
    h = hashlib.sha256()
    h.update(f"{teacher_fp}|{teacher.max_length}|{layers}|".encode())
    for i, t in enumerate(texts):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f" + (pairs[i].encode("utf-8", "surrogatepass") if pairs is not None else b"") + b"\x1e")
    return cached_outputs(h.hexdigest()[:24], len(texts), f"{what} texts", cache,
                          lambda: teacher.run(texts, pairs, batch_size=64, embeddings=bool(layers), layers=layers))


def cached_outputs(key: str, n: int, what: str, cache: Path, compute) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Teacher (logits, hidden or None) for n rows under `key` in the disk cache, computed (and stored) when absent."""
    f = cache / f"teacher-{key}.npz"
    if f.exists():
        try:
            with np.load(f, allow_pickle=False) as z:
                logits = z["logits"]
                hidden = z["hidden"].astype(np.float32) if "hidden" in z.files else None
            if len(logits) == n:
                console.log(f"teacher outputs for {n} {what}: reused from cache {f}")
                return logits, hidden, True
        except (OSError, ValueError, KeyError):
            console.warn(f"teacher cache {f} is unreadable; recomputing it")
    console.log(f"teacher: scoring {n} {what} once (cached in {cache})")
    logits, hidden = compute()
    arrays = {"logits": logits.astype(np.float32)}
    if hidden is not None:
        arrays["hidden"] = hidden.astype(np.float16)
    try:
        import io

        cache.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(f, buf.getvalue())
    except Exception as e:  # an unwritable cache only costs time
        console.warn(f"could not write the teacher cache {f} ({type(e).__name__}); it will be recomputed next time")
    return logits, hidden, False




class SoftTargets:
    """The distillation loss over a classification task's batches (rows of `teacher_logits` follow the training
    split's rows; batches carry their row numbers as `index`)."""

    def soft_targets(self, teacher_logits: np.ndarray, teacher_hidden: np.ndarray | None, alpha: float, temperature: float,
                     hidden_weight: float) -> None:
        import torch

        self.alpha, self.temperature, self.hidden_weight = alpha, temperature, hidden_weight
        self.t_logits = torch.from_numpy(np.ascontiguousarray(teacher_logits, dtype=np.float32))
        self.t_hidden = torch.from_numpy(teacher_hidden.astype(np.float32)) if teacher_hidden is not None else None
        self.needs_hidden = hidden_weight > 0 and self.t_hidden is not None

    def attach(self, model) -> str | None:
        """A learned projection from the student's width to the teacher's, when they differ (a submodule while training:
        optimised, checkpointed and restored with the rest)."""
        import torch

        if not self.needs_hidden or model.config.hidden_size == self.t_hidden.shape[-1]:
            return None
        hs, ht = model.config.hidden_size, self.t_hidden.shape[-1]
        model.nncli_distill_projection = torch.nn.ModuleList([torch.nn.Linear(hs, ht) for _ in range(self.t_hidden.shape[1])])
        return f"learned linear {hs} -> {ht} per matched layer"

    @staticmethod
    def detach(model) -> None:
        if hasattr(model, "nncli_distill_projection"):
            del model.nncli_distill_projection

    def loss(self, model, batch):
        import torch
        import torch.nn.functional as F

        output = model(**batch["inputs"], **({"output_hidden_states": True} if self.needs_hidden else {}))
        logits = output.logits.float()
        rows = batch["index"].cpu()
        t, temp = self.t_logits[rows].to(logits.device), self.temperature
        kl = F.kl_div(F.log_softmax(logits / temp, -1), F.log_softmax(t / temp, -1), log_target=True, reduction="batchmean")
        labels = batch["labels"]
        has = labels != IGNORE
        weight = None if self.weight is None else torch.as_tensor(self.weight, dtype=torch.float32, device=logits.device)
        ce = F.cross_entropy(logits[has], labels[has], weight=weight, label_smoothing=self.label_smoothing) if bool(has.any()) \
            else logits.new_zeros(())
        loss = self.alpha * kl * temp * temp + (1 - self.alpha) * ce
        if self.needs_hidden:
            loss = loss + self.hidden_weight * self._hidden_mse(model, output, batch, rows)
        return loss

    def _hidden_mse(self, model, output, batch, rows):
        import torch.nn.functional as F

        mask = batch["inputs"]["attention_mask"].unsqueeze(-1).float()
        target = self.t_hidden[rows].to(mask.device)
        base = model.module if hasattr(model, "module") else model          # DDP wraps the student
        proj = getattr(base, "nncli_distill_projection", None)
        mse = 0.0
        for j in range(target.shape[1]):
            pooled = (output.hidden_states[j + 1].float() * mask).sum(1) / mask.sum(1).clamp(min=1)
            mse = mse + F.mse_loss(proj[j](pooled) if proj is not None else pooled, target[:, j])
        return mse / target.shape[1]


class DistillTask(SoftTargets, ClassificationTask):
    """Text classification with the teacher's soft targets."""

    def __init__(self, *args, teacher_logits: np.ndarray, teacher_hidden: np.ndarray | None, alpha: float, temperature: float,
                 hidden_weight: float, **kw):
        ClassificationTask.__init__(self, *args, **kw)
        self.soft_targets(teacher_logits, teacher_hidden, alpha, temperature, hidden_weight)


class ImageDistillTask(SoftTargets, ImageClassificationTask):
    """Image classification with the teacher's soft targets (logits only: no hidden-state matching)."""

    def __init__(self, *args, teacher_logits: np.ndarray, alpha: float, temperature: float, **kw):
        ImageClassificationTask.__init__(self, *args, **kw)
        self.soft_targets(teacher_logits, None, alpha, temperature, 0.0)
