"""Image classifiers for inference (evaluate, predict, quantize, bench): a run directory, a model directory or an ONNX
export, with the image processor saved beside it; images opened the one way training opened them (image_checks.to_rgb)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.core.errors import InputError


@dataclass
class ImageClassifier:
    name: str
    path: str
    backend: str            # torch | onnx
    label_names: list[str]
    processor: object
    model: object = None    # a transformers model (torch) or an onnxruntime InferenceSession (onnx)
    temperature: float = 1.0

    def pixels(self, paths: list[str]):
        from nncli.io.image_checks import load_rgb

        return self.pixels_of([load_rgb(p) for p in paths])

    def pixels_of(self, images: list):
        """The processor's pixel values of decoded RGB images (PIL)."""
        return self.processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)

    def logits_of_pixels(self, pv: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            return self.model.run(["logits"], {"pixel_values": pv})[0].astype(np.float64)
        import torch

        with torch.inference_mode():
            return self.model(pixel_values=torch.from_numpy(pv)).logits.float().numpy().astype(np.float64)

    @property
    def size(self) -> tuple[int, int]:
        from nncli.train.tasks.image import target_size

        return target_size(self.processor)

    @property
    def max_length(self) -> int:
        """For nncli bench's table: the image side stands where texts have their token count."""
        return self.size[0]

    def synthetic_batch(self, batch_size: int, _seq_len: int | None = None) -> np.ndarray:
        h, w = self.size
        return np.random.default_rng(0).standard_normal((batch_size, 3, h, w)).astype(np.float32)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.logits_of_pixels(batch)

    def logits(self, paths: list[str], batch_size: int = 64) -> np.ndarray:
        parts = [self.logits_of_pixels(self.pixels(paths[i:i + batch_size])) for i in range(0, len(paths), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.label_names)))

    def run(self, paths: list[str], batch_size: int = 64, embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, when asked and the backend can (PyTorch), the pooled embedding the classifier head reads (the
        backbone's pooled output; a vision transformer's [CLS] state), (n, dims) in input order. An ONNX export's
        graph ends in logits: its embeddings are None."""
        head = self.head() if embeddings else None
        if head is None:
            return self.logits(paths, batch_size), None
        seen: list[np.ndarray] = []

        def keep(_module, args):
            seen.append(args[0].detach().reshape(len(args[0]), -1).float().numpy())

        hook = head.register_forward_pre_hook(keep)
        try:
            logits = self.logits(paths, batch_size)
        finally:
            hook.remove()
        return logits, (np.concatenate(seen).astype(np.float32) if seen else None)

    def head(self):
        """The classifier head module (torch only; None for an ONNX export)."""
        if self.backend != "torch":
            return None
        from nncli.io.models import head_modules

        names = [n for n in head_modules(self.model) if "." not in n]
        return getattr(self.model, names[0], None) if names else None


def is_image_model(name: str) -> bool:
    """A model directory (or run) whose config is an image classifier."""
    from nncli.io.models import detect_task

    return detect_task(name) == "image-classification"


def load_image_classifier(name: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                          threads: int | None = None) -> ImageClassifier:
    from nncli.core.machine import set_threads
    from nncli.io.inference import model_dir_of, read_temperature
    from nncli.io.models import check_labels, load_config, resolve
    from nncli.train.image import load_processor

    set_threads(threads)
    p = Path(name)
    d = p.parent if p.suffix == ".onnx" else model_dir_of(name)
    onnx = ([p] if p.suffix == ".onnx" else sorted(d.glob("*.onnx"))) if d is not None else []
    path = str(d) if d is not None and (onnx or (d / "config.json").exists()) else resolve(name, None, allow_pickle).path
    config = load_config(path, trust_remote_code)
    labels = check_labels(config, path)
    processor = load_processor(path, trust_remote_code)
    temperature = read_temperature(Path(path))
    if onnx:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        main = next((f for f in onnx if f.name == "model.onnx"), onnx[0])
        session = ort.InferenceSession(str(main), opts, providers=["CPUExecutionProvider"])
        return ImageClassifier(name, str(main), "onnx", labels, processor, session, temperature)
    from transformers import AutoModelForImageClassification

    try:
        model = AutoModelForImageClassification.from_pretrained(path, use_safetensors=None if allow_pickle else True,
                                                                trust_remote_code=trust_remote_code).eval()
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load {name} as an image classifier: {str(e).splitlines()[0][:200]}",
                         "pass a run directory, a model directory with safetensors weights, or an ONNX export") from None
    return ImageClassifier(name, path, "torch", labels, processor, model, temperature)


def list_images(source: str, image_column: str = "image") -> tuple[list[str], list[int], list[str | None]]:
    """Images to predict: every image file under a folder (sorted; label sub-folders allowed), or a CSV/JSONL's image
    column. Returns (paths, 1-based rows, label names where the folder or the listing has them)."""
    from nncli.io.images import IGNORED_FILES, is_image_file, read_listing

    p = Path(source).expanduser()
    if p.is_dir():
        from nncli.io.images import walk_files

        files = [f for f in walk_files(p, "input") if f.name.lower() not in IGNORED_FILES]
        images = [f for f in files if is_image_file(f)]
        if not images:
            raise InputError(f"input folder {p} has no images (png, jpg, jpeg, webp)", "point at a folder of images")
        labels = [f.parent.name if f.parent != p else None for f in images]
        return [str(f) for f in images], list(range(1, len(images) + 1)), labels
    paths, names, rows, _, missing, _ = read_listing(source, image_column, None, "input")
    if missing:
        raise InputError(f"{len(missing)} image file(s) listed in {p.name} cannot be used: {missing[0]}",
                         "fix the paths (relative paths are relative to the listing's folder)", details=missing)
    return paths, rows, names
