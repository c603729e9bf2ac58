"""`nncli export`: ONNX (through optimum-onnx) or safetensors, with a parity gate that is always on.

The export is written to a staging folder, compared with the source model on real texts (max and mean
absolute logit difference, top-1 agreement, flipped labels), and only then moved into place. An export
whose outputs changed is moved to <output>/rejected/, the report says why, and the command exits 5:
nothing that loads from <output> has changed behaviour.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError, Interrupted, UsageError
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording
from nncli.core.signals import StopFlag, deferred, hold
from nncli.recipe.deploy import ExportRecipe
from nncli.recipe.load import dump

COPY_ALONG = ("calibration.json",)


def run(recipe: ExportRecipe, *, overwrite: bool = False) -> dict:
    timer = Timer()
    from nncli.io.models import detect_task, resolve, run_dir_for

    source = resolve(recipe.model, None, recipe.allow_pickle)
    task = recipe.task if recipe.task != "auto" else detect_task(source.path)
    run_dir = run_dir_for(recipe.model)
    if task == "image-classification" and recipe.format != "onnx":
        raise UsageError("export of image classifiers supports format=onnx (merged/ already is the safetensors model)",
                         "drop --format, or use the run's merged/ folder")
    default_out = (run_dir / ("onnx" if recipe.format == "onnx" else "export")) if run_dir else None
    if recipe.output is None and default_out is None:
        raise UsageError("export needs --output DIR (the model is not a run directory)", "pass --output exports/my-model")
    out = RunDir(recipe.output or default_out, command="export")
    texts = _parity_inputs(recipe, run_dir, task)         # every input is read before the output is touched
    inputs = [source.path, recipe.parity.data,
              run_dir / "recipe.yaml" if run_dir is not None and not recipe.parity.data else None]
    out.prepare(overwrite=overwrite, inputs=inputs)
    report = base_report("export", recipe.name)
    report.update(source={"model": recipe.model, "path": source.path, "resolved_from": source.source}, format=recipe.format,
                  task=task)
    with recording(out, report):
        out.write_text("recipe.yaml", dump(recipe))
        staging = out / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        stop = StopFlag("stopping the export at the next safe point; nothing will be kept").install()
        try:
            return _export_and_check(recipe, source, task, texts, out, staging, report, timer, stop)
        except KeyboardInterrupt:
            shutil.rmtree(staging, ignore_errors=True)
            raise Interrupted(f"export interrupted; nothing was exported to {out.path}", "run the same command again") from None
        finally:
            stop.restore()


def _export_and_check(recipe: ExportRecipe, source, task: str, texts: list[str], out: RunDir, staging: Path, report: dict,
                      timer: Timer, stop: StopFlag) -> dict:
    t = Timer()
    try:
        if recipe.format == "onnx":
            export_onnx(source.path, staging, task, recipe)
        else:
            _export_safetensors(source.path, staging, task, recipe)
    except (InputError, UsageError):
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"export of {recipe.model} to {recipe.format} failed: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                         "check that the architecture is supported by optimum-onnx (nncli --debug shows the traceback)") from e
    for name in COPY_ALONG:
        if (Path(source.path) / name).exists():
            shutil.copy2(Path(source.path) / name, staging / name)
    export_seconds = t()
    hold("export.staged")
    stop.check()

    noun = "images" if task == "image-classification" else "texts"
    console.log(f"parity: comparing {recipe.format} export with {recipe.model} on {len(texts)} {noun}")
    parity = _parity(source.path, staging, texts, task, recipe)
    passed = parity["max_abs_diff"] <= recipe.parity.atol and parity["flipped"] <= recipe.parity.max_flipped
    report["parity"] = parity
    report["gates"] = [
        {"metric": "parity.max_abs_diff", "op": "<=", "threshold": recipe.parity.atol, "value": parity["max_abs_diff"],
         "passed": parity["max_abs_diff"] <= recipe.parity.atol},
        {"metric": "parity.flipped", "op": "<=", "threshold": recipe.parity.max_flipped, "value": parity["flipped"],
         "passed": parity["flipped"] <= recipe.parity.max_flipped}]
    files = sorted(p.name for p in staging.iterdir())
    stop.check()   # the last safe point: after this the export is moved into place, and no signal stops that halfway
    with deferred():
        hold("export.moving")
        _move_into_place(staging, out, files, passed, report)
        hold("export.moved")
        size = sum(p.stat().st_size for p in (out.path if passed else out / "rejected").glob("*.onnx"))
        report["size_mb"] = round(size / 1e6, 2) if size else None
        report["timings"] = {"export_seconds": export_seconds, "wall_seconds": timer()}
        report["environment"] = environment()
        report.update(status="succeeded" if passed else "failed", exit_code=0 if passed else 5, finished_at=now())
        out.write_json("report.json", report)
        out.complete()
    console.log(f"parity: max |Δlogit| {parity['max_abs_diff']:.2e}, mean {parity['mean_abs_diff']:.2e}, top-1 agreement "
                f"{parity['agreement']:.4f}, {parity['flipped']} flipped")
    if not passed:
        raise GateFailed(f"export parity failed: max |Δlogit| {parity['max_abs_diff']:.3g} (limit {recipe.parity.atol:g}), "
                         f"{parity['flipped']} flipped prediction(s) (limit {recipe.parity.max_flipped}); the export was moved "
                         f"to {out.path}/rejected", "do not ship it; report the architecture, or relax parity.atol knowingly",
                         report=report)
    return report


def _move_into_place(staging: Path, out: RunDir, files: list[str], passed: bool, report: dict) -> None:
    if passed:
        for name in files:
            os.replace(staging / name, out / name)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(out / "rejected", ignore_errors=True)
        report["artifacts"] = {f: f for f in files}
    else:
        shutil.rmtree(out / "rejected", ignore_errors=True)
        os.replace(staging, out / "rejected")
        report["artifacts"] = {"rejected": "rejected"}


def _parity_inputs(recipe: ExportRecipe, run_dir: Path | None, task: str) -> list[str]:
    """Real inputs for the parity check: texts, or image paths for an image classifier."""
    from nncli.io.labelled import load_labelled, read_texts

    if task == "image-classification":
        from nncli.deploy.export_images import parity_images

        return sample(parity_images(recipe, run_dir), recipe.parity.samples)
    if recipe.parity.data:
        s, _, _ = read_texts(recipe.parity.data, recipe.parity.text_column, role="parity")
        texts = s.texts
    elif run_dir is not None:
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        if getattr(ft, "task", None) == "causal-lm":
            from nncli.io.models import load_tokenizer
            from nncli.train.lm_data import load_examples

            tok = load_tokenizer(str(run_dir / "merged"))
            val = load_examples(ft, tok)["validation"]
            texts = [tok.decode(ids, skip_special_tokens=True) for ids in val.input_ids]
        else:
            texts = load_labelled(ft.data, seed=ft.train.seed).validation.texts
    else:
        raise UsageError("export needs texts for the parity check: the model is not a run directory",
                         "pass --data FILE (real inputs, e.g. your validation data) and --text-column")
    return sample(texts, recipe.parity.samples)


def sample(items: list[str], n: int, seed: int = 0) -> list[str]:
    """At most n of the items (all of them when there are fewer), a seeded sample in their original order."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in sorted(np.random.default_rng(seed).choice(len(items), n, replace=False))]


def export_onnx(src: str, dest: Path, task: str, recipe: ExportRecipe) -> None:
    import logging
    import warnings

    from optimum.exporters.onnx import main_export

    hf_task = {"causal-lm": "text-generation-with-past", "image-classification": "image-classification"}.get(
        task, "text-classification")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("optimum").level
        logging.getLogger("optimum").setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                main_export(src, dest, task=hf_task, opset=recipe.opset, do_validation=False,
                            trust_remote_code=recipe.trust_remote_code, local_files_only=True)
        finally:
            logging.getLogger("optimum").setLevel(level)


def _export_safetensors(src: str, dest: Path, task: str, recipe: ExportRecipe) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from nncli.io.models import load_tokenizer

    cls = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    model = cls.from_pretrained(src, trust_remote_code=recipe.trust_remote_code,
                                use_safetensors=None if recipe.allow_pickle else True)
    model.save_pretrained(dest, safe_serialization=True)
    load_tokenizer(src, recipe.trust_remote_code).save_pretrained(dest)


def _parity(src: str, dest: Path, texts: list[str], task: str, recipe: ExportRecipe) -> dict:
    if task == "causal-lm":
        a, b = _lm_logits(src, texts, "torch", recipe), _lm_logits(str(dest), texts, recipe.format, recipe)
    elif task == "image-classification":
        from nncli.deploy.export_images import image_logits

        a, b = image_logits(src, dest, texts, recipe)
    else:
        from nncli.io.inference import load_classifier

        ref = load_classifier(src, trust_remote_code=recipe.trust_remote_code, allow_pickle=recipe.allow_pickle)
        new = load_classifier(str(dest), trust_remote_code=recipe.trust_remote_code)
        a, b = ref.logits(texts, batch_size=16), new.logits(texts, batch_size=16)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    agree = a.argmax(-1) == b.argmax(-1)
    return {"samples": len(texts), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "agreement": float(agree.mean()), "flipped": int((~agree).sum()), "atol": recipe.parity.atol,
            "max_flipped": recipe.parity.max_flipped}


def _lm_logits(path: str, texts: list[str], fmt: str, recipe: ExportRecipe) -> np.ndarray:
    """Last-position next-token logits for each text (one text at a time: no padding effects)."""
    import torch

    from nncli.io.models import load_tokenizer

    tok = load_tokenizer(path, recipe.trust_remote_code)
    if fmt == "onnx":
        from optimum.onnxruntime import ORTModelForCausalLM

        model = ORTModelForCausalLM.from_pretrained(path)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=recipe.trust_remote_code).eval()
    out = []
    with torch.inference_mode():
        for t in texts[:64]:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=128)
            out.append(model(**enc).logits[0, -1].float().numpy())
    return np.stack(out)

