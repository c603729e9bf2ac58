"""`nncli explain` on an image classifier: a heatmap per image and method, and how faithful it is.

Methods (each gives one score per input pixel, at the resolution the model sees, of the predicted class's probability):
- `occlusion`: a patch slides over the image (side and stride from the input size unless given); each pixel's score
  is the mean probability lost over the windows that covered it, the window set to the baseline;
- `ig`: integrated gradients (Captum's IntegratedGradients) on pixel_values from the baseline image, summed over the
  colour channels (completeness: the scores sum to p(image) - p(baseline), up to the reported convergence delta);
- `attention`: attention rollout from the class token over the patches, for vision transformers only (a CNN has no
  attention: asking for it is refused).

Baselines, in the processor's normalised space: `zero` (default: the processor's mean colour, the "average" pixel),
`mean` (the image's own per-channel mean), `black`.

Faithfulness, measured: the deletion curve. The image is cut into square cells; cells are set to the baseline in
order of their mean attribution, in DELETION_STEPS equal steps, and the predicted class's probability recorded after
each; its area (mean over the curve, 0..1) is compared with the same for random orders (RANDOM_DRAWS draws, seeded).
A lower area than random means the ranking found what the model used.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError, UsageError, missing_extra
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir
from nncli.evaluate.explain_common import RANDOM_DRAWS, check_methods, ig_converged, ig_schedule, write_outputs

METHODS = ("ig", "occlusion", "attention")
BASELINES = ("zero", "mean", "black")
DELETION_STEPS = 20
ROLLOUT_TYPES = ("vit", "deit", "dinov2", "beit", "data2vec-vision")   # class token first, then one token per patch
BATCH = 32


class ImageExplainer:
    """A PyTorch image classifier: probabilities of a target class for batches of pixel_values (1, 3, H, W) variants."""

    def __init__(self, clf):
        import torch

        self.clf, self.model, self.torch = clf, clf.model, torch

    def probs(self, variants, target: int) -> np.ndarray:
        """p(target) for each array of an iterable of (3, H, W) arrays, BATCH at a time."""
        out, chunk = [], []
        for v in variants:
            chunk.append(v)
            if len(chunk) == BATCH:
                out.append(self._probs(np.stack(chunk), target))
                chunk = []
        if chunk:
            out.append(self._probs(np.stack(chunk), target))
        return np.concatenate(out) if out else np.zeros(0)

    def _probs(self, pv: np.ndarray, target: int) -> np.ndarray:
        from nncli.io.inference import softmax

        return softmax(self.clf.logits_of_pixels(pv.astype(np.float32)) / self.clf.temperature)[:, target]

    def predict(self, x: np.ndarray) -> tuple[int, float]:
        from nncli.io.inference import softmax

        p = softmax(self.clf.logits_of_pixels(x[None]) / self.clf.temperature)[0]
        return int(p.argmax()), float(p.max())

    def baseline(self, x: np.ndarray, kind: str) -> np.ndarray:
        if kind == "zero":
            return np.zeros_like(x)
        if kind == "mean":
            return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).copy()
        black = np.zeros((3, 1, 1), np.float32)
        proc = self.clf.processor
        if getattr(proc, "do_normalize", False):
            mean = np.asarray(proc.image_mean, np.float32).reshape(3, 1, 1)
            std = np.asarray(proc.image_std, np.float32).reshape(3, 1, 1)
            black = (black - mean) / std
        return np.broadcast_to(black, x.shape).copy()

    # --- methods
    def occlusion(self, x: np.ndarray, base: np.ndarray, target: int, p: float, patch: int,
                  stride: int) -> tuple[np.ndarray, dict]:
        h, w = x.shape[1:]
        ys, xs = _starts(h, patch, stride), _starts(w, patch, stride)
        windows = [(y, x0) for y in ys for x0 in xs]

        def variants():
            for y, x0 in windows:
                v = x.copy()
                v[:, y:y + patch, x0:x0 + patch] = base[:, y:y + patch, x0:x0 + patch]
                yield v

        drops = p - self.probs(variants(), target)
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for (y, x0), d in zip(windows, drops):
            total[y:y + patch, x0:x0 + patch] += d
            count[y:y + patch, x0:x0 + patch] += 1
        return total / np.maximum(count, 1), {"patch": patch, "stride": stride, "windows": len(windows)}

    def integrated_gradients(self, x: np.ndarray, base: np.ndarray, target: int, steps: int) -> tuple[np.ndarray, dict]:
        try:
            from captum.attr import IntegratedGradients
        except ImportError:
            raise missing_extra("captum", "explain") from None
        torch, clf = self.torch, self.clf

        def fwd(pv):
            return torch.softmax(self.model(pixel_values=pv).logits.float() / clf.temperature, -1)[:, target]

        xt, bt = torch.from_numpy(x[None]), torch.from_numpy(base[None])
        with torch.no_grad():
            gap = float(fwd(xt)[0] - fwd(bt)[0])
        ig = IntegratedGradients(fwd)
        for n in ig_schedule(steps, steps * 16):
            attr, delta = ig.attribute(xt, baselines=bt, n_steps=n, internal_batch_size=min(n, BATCH),
                                       return_convergence_delta=True)
            if ig_converged(float(delta.abs().max()), gap):
                break
        heat = attr[0].sum(0).detach().numpy().astype(np.float64)
        return heat, {"total_attribution": float(heat.sum()), "prob_minus_baseline": gap,
                      "convergence_delta": float(delta.abs().max()), "steps": n}

    def attention_rollout(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        torch, cfg = self.torch, self.model.config
        if getattr(cfg, "_attn_implementation", "eager") != "eager":
            self.model.set_attn_implementation("eager")     # sdpa returns no attention weights
        with torch.inference_mode():
            att = self.model(pixel_values=torch.from_numpy(x[None]), output_attentions=True).attentions
        h, w = x.shape[1:]
        ps = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
        gh, gw = h // ps, w // ps
        n = att[0].shape[-1]
        roll = torch.eye(n)
        for a in att:
            a = 0.5 * a[0].float().mean(0) + 0.5 * torch.eye(n)
            roll = (a / a.sum(-1, keepdim=True)) @ roll
        grid = roll[0, n - gh * gw:].numpy().reshape(gh, gw)
        heat = np.zeros((h, w))
        heat[:gh * ps, :gw * ps] = np.kron(grid, np.ones((ps, ps)))
        return heat, {"patch": ps}


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts covering 0..size (the last one flush with the edge)."""
    last = max(size - patch, 0)
    starts = list(range(0, last + 1, stride))
    return starts if starts[-1] == last else starts + [last]


def supports_rollout(model) -> bool:
    return getattr(model.config, "model_type", "") in ROLLOUT_TYPES


# ---------------------------------------------------------------------------------------------- faithfulness

def deletion(ex: ImageExplainer, x: np.ndarray, base: np.ndarray, heat: np.ndarray, target: int, cell: int, rng) -> dict:
    """Deletion curve of the attribution order against random orders of the same cells (mean of RANDOM_DRAWS)."""
    h, w = heat.shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.full((gh * cell, gw * cell), np.nan)
    padded[:h, :w] = heat
    scores = np.nanmean(padded.reshape(gh, cell, gw, cell), axis=(1, 3)).ravel()
    order = np.argsort(-scores, kind="stable")
    orders = [order] + [rng.permutation(len(order)) for _ in range(RANDOM_DRAWS)]
    counts = [round(i * len(order) / DELETION_STEPS) for i in range(DELETION_STEPS + 1)]

    def variants():
        for o in orders:
            for k in counts:
                keep = np.ones(gh * gw, bool)
                keep[o[:k]] = False
                mask = np.kron(keep.reshape(gh, gw), np.ones((cell, cell), bool))[:h, :w]
                yield np.where(mask, x, base)

    curves = ex.probs(variants(), target).reshape(len(orders), len(counts))
    aucs = (curves[:, :-1] + curves[:, 1:]).sum(1) / (2 * DELETION_STEPS)
    return {"deletion_auc": float(aucs[0]), "deletion_auc_random": float(aucs[1:].mean()),
            "curve": [round(float(v), 6) for v in curves[0]],
            "random_curve": [round(float(v), 6) for v in curves[1:].mean(0)], "cell": cell}


def summarise(items: list[dict]) -> dict:
    auc = float(np.mean([f["deletion_auc"] for f in items]))
    rand = float(np.mean([f["deletion_auc_random"] for f in items]))
    return {"deletion_auc": auc, "deletion_auc_random": rand, "beats_random": auc < rand,
            "images_beating_random": sum(f["deletion_auc"] < f["deletion_auc_random"] for f in items), "images": len(items),
            "steps": DELETION_STEPS, "random_draws": RANDOM_DRAWS}


# ---------------------------------------------------------------------------------------------- command

def run(model: str, *, text: str | None = None, data: str | None = None, limit: int = 50, methods: list[str] | None = None,
        output: str | None = None, overwrite: bool = False, steps: int = 50, threads: int | None = None, seed: int = 0,
        patch: int | None = None, stride: int | None = None, baseline: str = "zero", image_column: str = "image") -> dict:
    timer = Timer()
    if text is not None or data is None:
        raise UsageError(f"{model} is an image classifier: pass the images to explain with --data",
                         "an image file, a folder of images or a CSV/JSONL listing, e.g. --data photos/")
    if methods:
        check_methods(methods, METHODS)
    if baseline not in BASELINES:
        raise UsageError(f"--baseline {baseline}: unknown", f"choose from {', '.join(BASELINES)}")
    for flag, v in (("--patch", patch), ("--stride", stride)):
        if v is not None and v < 1:
            raise UsageError(f"{flag} {v}: must be at least 1 pixel", "e.g. --patch 8 --stride 4")
    out = RunDir(output, command="explain") if output else None
    if out is not None:
        out.check(overwrite=overwrite, inputs=[data])
    paths, labels = images_to_explain(data, image_column, limit)
    ex = ImageExplainer(_load(model, threads))
    methods = _methods(ex, model, methods)
    h, w = ex.clf.size
    patch = patch or max(2, min(h, w) // 8)
    stride = stride or max(1, patch // 2)
    cfg = {"patch": patch, "stride": stride, "baseline": baseline, "steps": steps, "cell": max(1, min(h, w) // 16)}
    rng = np.random.default_rng(seed)
    results, heatmaps, inputs = [], {}, []
    for i, (path, label) in enumerate(zip(paths, labels)):
        x = ex.clf.pixels([path])[0]
        item, heats = _explain_one(ex, x, methods, cfg, rng)
        results.append({"image": path, "label": label, **item})
        heatmaps.update({f"{m}_{i:03d}": v.astype(np.float32) for m, v in heats.items()})
        inputs.append(x)
        if len(paths) > 1 and (i + 1) % 10 == 0:
            console.log(f"explained {i + 1}/{len(paths)} images")
    report = base_report("explain", None, task="image-classification")
    report.update(model=model, source=data, images=len(results), methods=methods, input_size=[h, w],
                  settings={k: cfg[k] for k in ("patch", "stride", "baseline", "cell")},
                  faithfulness={m: summarise([r["faithfulness"][m] for r in results]) for m in methods},
                  explanations=results, environment=environment(threads),
                  warnings=[w for r in results for w in r.get("warnings", [])])
    if out is not None:
        out.prepare(overwrite=overwrite, inputs=[data, ex.clf.path])
        _write(out, report, timer, ex, inputs, heatmaps)
    report.update(status="succeeded", exit_code=0, finished_at=now(), timings={"wall_seconds": timer()})
    return report


def images_to_explain(data: str, image_column: str, limit: int) -> tuple[list[str], list[str | None]]:
    """One image file, or the images of a folder or CSV/JSONL listing (the first `limit`), every one of them readable."""
    from nncli.io.image_checks import check_files, raise_problems
    from nncli.io.image_inference import list_images
    from nncli.io.images import is_image_file

    p = Path(data).expanduser()
    if p.is_file() and is_image_file(p):
        paths, labels = [str(p)], [None]
    elif p.is_file() and p.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
        raise InputError(f"--data {data}: not an image (png, jpg, jpeg, webp), an image folder or a CSV/JSONL listing",
                         "pass an image file, a folder of images, or a listing with an image-path column")
    else:
        paths, _, labels = list_images(data, image_column)
        paths, labels = paths[:limit], labels[:limit]
    problems: list[str] = []
    check_files(paths, problems)
    raise_problems(problems)
    return paths, labels


def _load(model: str, threads: int | None):
    from nncli.io.image_inference import load_image_classifier

    clf = load_image_classifier(model, threads=threads)
    if clf.backend != "torch":
        raise InputError(f"{model} is an ONNX export: attributions need gradients of the PyTorch model",
                         "pass the run directory or its merged/ folder")
    return clf


def _methods(ex: ImageExplainer, model: str, methods: list[str] | None) -> list[str]:
    rollout = supports_rollout(ex.model)
    if not methods:
        return ["ig", "occlusion"] + (["attention"] if rollout else [])
    if "attention" in methods and not rollout:
        kind = getattr(ex.model.config, "model_type", "this model")
        raise UsageError(f"--method attention: {model} is a {kind}, which has no attention to roll out "
                         f"(rollout needs a vision transformer: {', '.join(ROLLOUT_TYPES)})",
                         "use --method ig,occlusion (or all)")
    return list(dict.fromkeys(methods))


def _explain_one(ex: ImageExplainer, x: np.ndarray, methods: list[str], cfg: dict, rng) -> tuple[dict, dict]:
    target, p = ex.predict(x)
    base = ex.baseline(x, cfg["baseline"])
    item = {"prediction": ex.clf.label_names[target], "probability": p, "details": {}, "faithfulness": {}}
    heats = {}
    for m in methods:
        if m == "ig":
            heat, det = ex.integrated_gradients(x, base, target, cfg["steps"])
        elif m == "occlusion":
            heat, det = ex.occlusion(x, base, target, p, cfg["patch"], cfg["stride"])
        else:
            heat, det = ex.attention_rollout(x)
        heats[m] = heat
        item["details"][m] = det
        item["faithfulness"][m] = deletion(ex, x, base, heat, target, cfg["cell"], rng)
    ig = item["details"].get("ig")
    if ig and not ig_converged(ig["convergence_delta"], ig["prob_minus_baseline"]):
        item["warnings"] = [f"integrated gradients did not converge in {ig['steps']} steps (delta "
                            f"{ig['convergence_delta']:.3f}); treat its heatmap for this image with care"]
    return item, heats


def _write(out: RunDir, report: dict, timer: Timer, ex: ImageExplainer, inputs: list[np.ndarray], heatmaps: dict) -> None:
    import io

    from nncli.evaluate.explain_image_views import panels_png, to_html

    def files():
        pngs = {}
        for i, (r, x) in enumerate(zip(report["explanations"], inputs)):
            name = f"images/{i:03d}-{Path(r['image']).stem}.png"
            pngs[name] = panels_png(ex.clf.processor, x, {m: heatmaps[f"{m}_{i:03d}"] for m in report["methods"]})
            r["png"] = name
        buf = io.BytesIO()
        np.savez_compressed(buf, **heatmaps)
        return {**pngs, "heatmaps.npz": buf.getvalue(), "explanations.html": to_html(report, pngs)}

    write_outputs(out, report, timer, files, {"html": "explanations.html", "heatmaps": "heatmaps.npz", "images": "images/"})
