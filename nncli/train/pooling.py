"""Mean pooling inside a standard architecture, for checkpoints that were trained for it (sentence-transformers).

A BERT-style sequence classifier reads the [CLS] token through its pooler; all-MiniLM-L6-v2 and its kind were
trained to be read as the mean of their token states, and their [CLS] state hardly varies between inputs. nncli
appends one more encoder layer, built (not learned) so that the [CLS] output is the layer-normalised mean of the
previous layer's token states over the real (unmasked) tokens:

- queries and keys are zero, so every real token gets the same attention weight (padding stays masked);
- values are c * identity and the attention output projection the identity, so the [CLS] residual
  x_cls + c * mean(x) is dominated by the mean (c = 1000: x_cls contributes 0.1%), and LayerNorm is scale-invariant;
- the feed-forward block outputs zero, and both LayerNorms are the identity affine map.

The result is still `BertForSequenceClassification` (or RoBERTa/XLM-R/ELECTRA): config.num_hidden_layers + 1, no
custom code, so the merged model exports to ONNX, quantizes and loads in `transformers.pipeline` as before. The
built layer is frozen during training (LoRA never targets it); for the LoRA adapter it is saved as a module to
save, so the hub base model plus adapter/ rebuild the same network.
"""

from __future__ import annotations

import json
from pathlib import Path

SCALE = 1000.0
SUPPORTED = ("BertLayer", "RobertaLayer", "XLMRobertaLayer", "ElectraLayer", "CamembertLayer")


def checkpoint_pooling(model_path: str) -> str | None:
    """'mean' / 'cls' when a sentence-transformers checkpoint says how it pools (1_Pooling/config.json), else None."""
    found = sorted(Path(model_path).glob("*Pooling*/config.json")) + sorted(Path(model_path).parent.glob("*Pooling*/config.json"))
    for cfg in found:
        try:
            c = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        if c.get("pooling_mode_mean_tokens"):
            return "mean"
        if c.get("pooling_mode_cls_token"):
            return "cls"
    return None


def layers_of(model):
    """(the encoder's ModuleList of layers, its parent config) for a BERT-style model, or None."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None or not len(layers) or type(layers[0]).__name__ not in SUPPORTED:
        return None
    return layers


def append_mean_pooling_layer(model) -> int | None:
    """Append the built mean-pooling layer; returns its index, or None when the architecture is not supported."""
    import copy

    import torch

    layers = layers_of(model)
    if layers is None:
        return None
    layer = copy.deepcopy(layers[-1])
    h = model.config.hidden_size
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        att = layer.attention
        att.self.value.weight.copy_(torch.eye(h) * SCALE)
        att.output.dense.weight.copy_(torch.eye(h))
        att.output.LayerNorm.weight.fill_(1.0)
        layer.output.LayerNorm.weight.fill_(1.0)
    for p in layer.parameters():
        p.requires_grad_(False)
    layers.append(layer)
    model.config.num_hidden_layers = len(layers)
    model.config.nncli_pooling = {"mode": "mean", "layer": len(layers) - 1, "scale": SCALE}
    return len(layers) - 1


def pooling_layer(model) -> int | None:
    """The index of a built mean-pooling layer the model carries (from its config), or None."""
    info = getattr(model.config, "nncli_pooling", None)
    return info.get("layer") if isinstance(info, dict) and info.get("mode") == "mean" else None


def freeze(model, index: int) -> None:
    """The built layer is never trained (gradients would break its uniform attention)."""
    key = f"encoder.layer.{index}."
    for name, p in model.named_parameters():
        if key in name:
            p.requires_grad_(False)


def choose(setting: str, model_path: str, model) -> tuple[str, str]:
    """(pooling, why): `mean` for checkpoints trained for mean pooling (sentence-transformers' pooling config), `cls`
    otherwise, or what the recipe says; a model that already carries the built layer keeps it."""
    if pooling_layer(model) is not None:
        return "mean", "the model already carries nncli's mean-pooling layer"
    if setting != "auto":
        return setting, f"model.pooling={setting}"
    found = checkpoint_pooling(model_path)
    if found == "mean":
        return "mean", "the checkpoint was trained for mean pooling (its sentence-transformers pooling config says so)"
    return "cls", "the checkpoint's own [CLS] pooler" + (" (its pooling config says cls)" if found == "cls" else "")


def identity_pooler(model) -> bool:
    """Set the [CLS] pooler's dense layer to the identity, so the head reads tanh(the layer-normalised mean) — the
    sentence embedding the checkpoint was trained to produce — and not the output of a pooler left from the
    checkpoint's pre-training (a next-sentence task), which the linear probe measured to be a worse start (TweetEval
    stance-climate test macro-F1 0.52 vs 0.60 for the same probe; benchmarks/README.md). Returns whether it was set."""
    import torch

    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    dense = getattr(getattr(base, "pooler", None), "dense", None)
    if not isinstance(dense, torch.nn.Linear) or dense.in_features != dense.out_features:
        return False
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.in_features))
        if dense.bias is not None:
            dense.bias.zero_()
    return True

