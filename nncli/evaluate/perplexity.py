"""Causal-LM evaluation for `nncli evaluate`: token-weighted loss and perplexity, with a bootstrap interval."""

from __future__ import annotations

import numpy as np

from nncli.core.report import Timer
from nncli.evaluate import metrics as M
from nncli.recipe.evaluate import EvaluateRecipe


def evaluate_lm(name: str, split, recipe: EvaluateRecipe) -> dict:
    import torch

    from nncli.core.machine import set_threads
    from nncli.io.models import load_tokenizer, resolve

    set_threads(recipe.threads)
    resolved = resolve(name, None, recipe.allow_pickle)
    from transformers import AutoModelForCausalLM

    from nncli.io.models import is_weights_error, load_config, weights_error

    load_config(resolved.path, recipe.trust_remote_code)
    tok = load_tokenizer(resolved.path, recipe.trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, trust_remote_code=recipe.trust_remote_code,
                                                     use_safetensors=None if recipe.allow_pickle else True).eval()
    except Exception as e:
        if is_weights_error(e):
            raise weights_error(e, resolved.path) from None
        raise
    max_len = recipe.data.max_length or min(1024, getattr(model.config, "max_position_embeddings", 1024) or 1024)
    nll, counts = [], []
    t = Timer()
    with torch.inference_mode():
        for i in range(0, len(split), recipe.batch_size):
            texts = split.texts[i:i + recipe.batch_size]
            enc = tok(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            logits = model(**enc).logits[:, :-1].float()
            target = labels[:, 1:]
            lp = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none",
                                                   ignore_index=-100).view(target.shape)
            mask = (target != -100).float()
            nll.extend((lp * mask).sum(1).tolist())
            counts.extend(mask.sum(1).tolist())
    nll, counts = np.array(nll), np.array(counts)
    keep = counts > 0
    loss = float(nll[keep].sum() / counts[keep].sum())
    metrics = {"loss": loss, "perplexity": float(np.exp(loss))}
    ci = M.bootstrap(lambda a, b: float(np.exp(a.sum() / b.sum())), [nll[keep], counts[keep]], recipe.bootstrap, recipe.seed) \
        if recipe.bootstrap else None
    return {"name": name, "backend": "torch", "path": resolved.path, "metrics": metrics, "ci95": {"perplexity": ci},
            "tokens": int(counts.sum()), "throughput_per_second": round(len(split) / t(), 2), "flat": metrics, "warnings": []}
