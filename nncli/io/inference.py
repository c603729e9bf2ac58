"""Batch inference behind one interface, whatever the model is: a run directory, a model directory, a
hub id (PyTorch), or an ONNX export. Used by evaluate, predict, drift and bench.

Texts are sorted by length before batching (less padding), results come back in input order, and a
calibration temperature stored with the model (calibration.json) is applied to the logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.core.errors import InputError

CALIBRATION_FILE = "calibration.json"
SAMPLE_TEXT = ("The battery lasts two days, the screen is sharp and bright, but the speaker crackles at high volume "
               "and the case scratches easily. Delivery was quick and support answered within an hour. ")


@dataclass
class Classifier:
    name: str
    path: str
    backend: str                      # torch | onnxruntime
    label_names: list[str]
    temperature: float = 1.0
    max_length: int = 512
    info: dict = field(default_factory=dict)
    model: object = None              # a torch module or an onnxruntime InferenceSession
    tokenizer: object = None

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64) -> np.ndarray:
        """Raw logits (before temperature), in input order."""
        return self.run(texts, pairs, batch_size)[0]

    def run(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64,
            embeddings: bool = False, layers: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, when asked and the backend can (PyTorch), mean-pooled hidden states in input order:
        (n, hidden) of the last layer, or (n, len(layers), hidden) of the given hidden_states indices."""
        tok = self.tokenizer
        enc = tok(texts, pairs, truncation=True, max_length=self.max_length, verbose=False)
        lengths = np.array([len(x) for x in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        emb = None
        want = embeddings and self.backend.startswith("torch")
        keys = self.info["inputs"]
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            width = int(lengths[idx].max())
            batch = {}
            for k in keys:
                pad = tok.pad_token_id if k == "input_ids" else 0
                arr = np.full((len(idx), width), pad, dtype=np.int64)
                for r, j in enumerate(idx):
                    seq = enc[k][j]
                    arr[r, : len(seq)] = seq
                batch[k] = arr
            if want:
                mask = np.zeros((len(idx), width), dtype=np.float32)
                for r, j in enumerate(idx):
                    mask[r, : lengths[j]] = 1
                logits, e = self._forward_with_embeddings(batch, mask, layers)
                if emb is None:
                    emb = np.zeros((len(texts), *e.shape[1:]), dtype=np.float32)
                emb[idx] = e
                out[idx] = logits
            else:
                out[idx] = self.forward(batch)
        return out, emb

    def forward(self, batch: dict) -> np.ndarray:
        """Logits of one batch of numpy inputs (input_ids, attention_mask[, token_type_ids])."""
        if self.backend == "onnxruntime":
            return self.model.run(None, batch)[0]
        import torch

        with torch.inference_mode():
            return self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()

    def _forward_with_embeddings(self, batch: dict, mask: np.ndarray,
                                 layers: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            o = self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
            m = torch.from_numpy(mask).unsqueeze(-1)
            pooled = [(o.hidden_states[i].float() * m).sum(1) / m.sum(1).clamp(min=1) for i in (layers or [-1])]
            out = torch.stack(pooled, 1) if layers else pooled[0]
            return o.logits.float().numpy(), out.numpy()

    def synthetic_batch(self, batch_size: int, seq_len: int) -> dict:
        """Inputs of exactly seq_len tokens built from real text (the first tokens of a repeated review), for timing:
        padding never flatters one backend."""
        enc = self.tokenizer([SAMPLE_TEXT * max(1, seq_len // 20)], None, truncation=True, max_length=seq_len)
        ids = list(enc["input_ids"][0])
        if len(ids) < seq_len:
            ids = (ids * (seq_len // len(ids) + 1))[:seq_len]
        batch = {"input_ids": np.tile(np.array(ids, dtype=np.int64), (batch_size, 1)),
                 "attention_mask": np.ones((batch_size, seq_len), dtype=np.int64),
                 "token_type_ids": np.zeros((batch_size, seq_len), dtype=np.int64)}
        return {k: v for k, v in batch.items() if k in self.info["inputs"]}

    def predict_proba(self, texts, pairs=None, batch_size: int = 64, temperature: float | None = None) -> np.ndarray:
        return softmax(self.logits(texts, pairs, batch_size) / (temperature or self.temperature))


def release(clf: Classifier | None) -> None:
    """Free a model now (an ONNX Runtime session's spinning threads would otherwise slow whatever runs next)."""
    import gc

    if clf is not None:
        clf.model = None
    gc.collect()


def trained_length(config: dict) -> int | None:
    """The max_length an nncli run trained and scored with (config.json's `nncli` section): every later command
    truncates the same way, so its numbers are the run's."""
    info = config.get("nncli")
    n = info.get("max_length") if isinstance(info, dict) else None
    return int(n) if isinstance(n, int) and n > 0 else None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def model_dir_of(name: str) -> Path | None:
    """The local directory holding a model's files (for run directories, merged/ or the ONNX export)."""
    p = Path(name)
    if not p.is_dir():
        return None
    from nncli.io.models import TRAINING_COMMANDS, run_command

    if run_command(p) in TRAINING_COMMANDS:
        for sub in ("merged",):
            if (p / sub / "config.json").exists():
                return p / sub
    return p


def read_temperature(model_dir: Path | None) -> float:
    from nncli.core.artifacts import Calibration, read_artifact

    if model_dir is None or not (model_dir / CALIBRATION_FILE).exists():
        return 1.0
    return read_artifact(model_dir / CALIBRATION_FILE, Calibration).temperature


def check_model(name: str, *, allow_pickle: bool = False) -> Path | None:
    """Cheap checks that `name` is a model nncli can load (before any output is prepared): the local directory that
    holds its files, or None for a hub model. Weights are only read when the model is loaded."""
    from nncli.io.models import resolve

    p = Path(name)
    if p.is_file() and p.suffix == ".onnx":
        return p.parent
    d = model_dir_of(name)
    if d is not None and any(d.glob("*.onnx")):
        _onnx_config(d)
        return d
    resolved = resolve(name, None, allow_pickle)
    return Path(resolved.path) if resolved.source != "hub" else None


def load_classifier(name: str, *, trust_remote_code: bool = False, allow_pickle: bool = False, threads: int | None = None,
                    max_length: int | None = None) -> Classifier:
    from nncli.core.machine import set_threads
    from nncli.io.models import check_tokenizer_matches, load_tokenizer, resolve

    d = model_dir_of(name)
    p = Path(name)
    if p.is_file() and p.suffix == ".onnx":
        if p.name == "model.onnx":
            return _load_onnx(name, p.parent, max_length, threads)
        return _load_onnx_file(name, p, max_length, threads)
    if d is not None and any(d.glob("*.onnx")):
        return _load_onnx(name, d, max_length, threads)
    set_threads(threads)
    resolved = resolve(name, None, allow_pickle)
    from transformers import AutoModelForSequenceClassification

    from nncli.io.models import check_labels, is_weights_error, load_config, weights_error

    config = load_config(resolved.path, trust_remote_code)
    archs = " ".join(config.architectures or [])
    if "ForSequenceClassification" not in archs:
        raise InputError(f"{name} is not a sequence classifier (architecture: {archs or config.model_type})",
                         "pass a fine-tuned classifier (a run directory or its merged/ folder)")
    labels = check_labels(config, resolved.path)
    tok = load_tokenizer(resolved.path, trust_remote_code)
    check_tokenizer_matches(tok, config, resolved.path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved.path, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True).eval()
    except Exception as e:
        if is_weights_error(e):
            raise weights_error(e, resolved.path) from None
        raise
    quant = _torch_quantization(Path(resolved.path))
    if quant:
        model = quantize_dynamic_int8(model, exclude=quant.get("exclude", []))
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted and k in tok.model_input_names]
    limit = max_length or trained_length(config.to_dict()) or min(512, getattr(config, "max_position_embeddings", 512) or 512)
    return Classifier(name, resolved.path, "torch-int8" if quant else "torch", labels, read_temperature(Path(resolved.path)),
                      limit,
                      {"inputs": inputs, "source": resolved.source, "config": config.to_dict()}, model, tok)


QUANTIZATION_FILE = "quantization.json"


def _torch_quantization(model_dir: Path) -> dict | None:
    from nncli.core.artifacts import Quantization, read_artifact

    f = model_dir / QUANTIZATION_FILE
    if not f.exists():
        return None
    return read_artifact(f, Quantization).model_dump()


def quantize_dynamic_int8(model, exclude: list[str] | None = None):
    """PyTorch dynamic int8 on nn.Linear layers (int8 weights, activations quantized per batch), except modules
    whose qualified name contains one of `exclude` (e.g. the classification head)."""
    import warnings

    import torch

    exclude = exclude or []
    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not any(e in n for e in exclude)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in 2.13 but remains the eager CPU path
        return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


class LiteTokenizer:
    """The `tokenizers` library alone (no torch, no transformers): what the ONNX path needs at run time."""

    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer

        f = model_dir / "tokenizer.json"
        if not f.exists():
            raise InputError(f"{model_dir} has no tokenizer.json (a fast tokenizer is needed for ONNX inference)",
                             "re-export the model with nncli export, which saves the tokenizer beside it")
        self._tok = Tokenizer.from_file(str(f))
        self._tok.no_padding()
        special = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (model_dir / name).exists():
                try:
                    table = json.loads((model_dir / name).read_text())
                    special.update({k: v for k, v in table.items() if k.endswith("_token")})
                except (OSError, ValueError, AttributeError):
                    raise InputError(f"{model_dir / name} is not a readable JSON object",
                                     "re-export the model with nncli export") from None
        pad = special.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = (self._tok.token_to_id(pad) if pad else None) or 0

    def __call__(self, texts, pairs=None, truncation=True, max_length=512, verbose=False):
        self._tok.enable_truncation(max_length)
        batch = self._tok.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
        return {"input_ids": [e.ids for e in batch], "attention_mask": [e.attention_mask for e in batch],
                "token_type_ids": [e.type_ids for e in batch]}


def _load_onnx(name: str, d: Path, max_length: int | None, threads: int | None) -> Classifier:
    files = sorted(d.glob("*.onnx"))
    path = next((f for f in files if f.name == "model.onnx"), files[0])
    return _load_onnx_file(name, path, max_length, threads)


def _load_onnx_file(name: str, path: Path, max_length: int | None, threads: int | None) -> Classifier:
    try:
        import onnxruntime as ort
    except ImportError:
        from nncli.core.errors import missing_extra
        raise missing_extra("onnxruntime", None) from None

    d = path.parent
    config, labels = _onnx_config(d)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    # ONNX Runtime's idle worker threads spin (busy-wait) for low latency; measured here, switching that off
    # made int8 inference 2.5x slower. The price: a live session slows other engines in the same process,
    # so bench and quantize close each session before timing anything else (see release()).
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InputError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:200]}",
                         "re-export it with nncli export") from e
    if not labels:
        labels = [f"LABEL_{i}" for i in range(sess.get_outputs()[0].shape[-1])]
    tok = LiteTokenizer(d)
    inputs = [i.name for i in sess.get_inputs()]
    limit = max_length or trained_length(config) or min(512, config.get("max_position_embeddings", 512) or 512)
    return Classifier(name, str(path), "onnxruntime", labels, read_temperature(d), limit,
                      {"inputs": inputs, "source": "onnx", "config": config}, sess, tok)


def _onnx_config(d: Path) -> tuple[dict, list[str]]:
    from nncli.core.artifacts import config_labels

    f = d / "config.json"
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{f} is missing or malformed ({type(e).__name__})", "re-export the model with nncli export") from None
    if not isinstance(config, dict):
        raise InputError(f"{f} must hold a JSON object", "re-export the model with nncli export")
    return config, config_labels(config, f)


def map_labels(names: list[str | None], model_labels: list[str], source: str) -> list[int]:
    """Map data labels to the model's label ids; integer labels map by index when the model has generic names."""
    index = {n: i for i, n in enumerate(model_labels)}
    generic = all(n.startswith("LABEL_") for n in model_labels)
    out, unseen = [], {}
    for n in names:
        if n in index:
            out.append(index[n])
        elif generic and n is not None and n.lstrip("-").isdigit() and 0 <= int(n) < len(model_labels):
            out.append(int(n))
        else:
            unseen[str(n)] = unseen.get(str(n), 0) + 1
            out.append(-1)
    if unseen:
        listing = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unseen.items(), key=lambda kv: -kv[1])[:5])
        raise InputError(f"{Path(source).name} has labels the model does not know: {listing}; the model's labels: "
                         f"{', '.join(model_labels)}", "check --label-column, or fix or drop those rows")
    return out
