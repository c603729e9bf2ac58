"""`nncli quantize`: int8 that is measured, not assumed.

Candidates (PyTorch dynamic int8; ONNX Runtime dynamic int8 per-tensor, per-channel, and with the
classification head kept in fp32; ONNX Runtime static int8 calibrated on training texts) are each
scored against the fp32 model on labelled data — accuracy, agreement, flipped predictions — and timed
(latency at batch 1, throughput at the chosen batch). `auto` keeps the fastest candidate that stays
within --max-drop accuracy points (and --max-flip-rate, when set) and is actually faster than fp32 (among
candidates within 5% of the fastest, the one that flips fewest predictions). If
none qualifies, nothing is written and the command exits 5 with the table of what it tried.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError, UsageError
from nncli.recipe.deploy import QuantizeRecipe
from nncli.recipe.load import dump
from nncli.core.rundir import RunDir, recording
from nncli.core.report import Timer, base_report, environment, now

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "sentencepiece.bpe.model", "spiece.model", "calibration.json")


def candidates_for(method: str, backend: str) -> list[str]:
    torch_c = ["torch-dynamic-int8", "torch-dynamic-int8-head-fp32"]
    ort_dynamic = ["ort-dynamic-int8", "ort-dynamic-int8-per-channel", "ort-dynamic-int8-head-fp32"]
    ort_static = ["ort-static-int8"]
    out = []
    if backend in ("auto", "torch") and method in ("auto", "dynamic"):
        out += torch_c
    if backend in ("auto", "onnxruntime"):
        if method in ("auto", "dynamic"):
            out += ort_dynamic
        if method in ("auto", "static"):
            out += ort_static
    if not out:
        raise UsageError(f"method={method} is not available for backend={backend}", "static quantization needs --backend onnxruntime")
    return out


def run(recipe: QuantizeRecipe, *, overwrite: bool = False) -> dict:
    timer = Timer()
    from nncli.core.timing import measure
    from nncli.evaluate.evaluation import _run_dir_for
    from nncli.io.inference import load_classifier, map_labels, release, softmax
    from nncli.io.models import resolve

    source = resolve(recipe.model)
    run_dir = _run_dir_for(recipe.model)
    out_path = Path(recipe.output) if recipe.output else (run_dir / "quantized" if run_dir else None)
    if out_path is None:
        raise UsageError("quantize needs --output DIR (the model is not a run directory)", "pass --output models/int8")
    texts, labels, calib_texts, data_source = _data(recipe, run_dir)
    names = candidates_for(recipe.method, recipe.backend)
    out = RunDir(out_path, command="quantize")
    inputs = [source.path, recipe.data.path, run_dir / "recipe.yaml" if run_dir is not None and not recipe.data.path else None]
    out.check(overwrite=overwrite, inputs=inputs)    # fail fast; the directory is prepared only when a candidate qualifies

    ref = load_classifier(source.path, threads=recipe.threads)
    y = np.asarray(map_labels(labels, ref.label_names, data_source))
    timing = {"min_seconds": recipe.min_seconds, "min_repeats": 5, "warmup": 2}

    def score(clf) -> dict:
        probs = softmax(clf.logits(texts, batch_size=32))
        pred = probs.argmax(1)
        b1, bn = clf.synthetic_batch(1, min(recipe.seq_len, clf.max_length)), clf.synthetic_batch(recipe.batch_size, min(recipe.seq_len, clf.max_length))
        lat = measure(lambda: clf.forward(b1), **timing)
        thr = measure(lambda: clf.forward(bn), **timing)
        return {"pred": pred, "accuracy": float((pred == y).mean()), "latency_ms_batch1": lat["p50_ms"],
                "throughput_per_second": recipe.batch_size / (thr["p50_ms"] / 1000)}

    console.log(f"fp32 reference: {source.path} on {len(texts)} labelled texts from {data_source}")
    fp32 = score(ref)
    rows = [{"candidate": "fp32 (torch)", "backend": "torch", "size_mb": _size_mb(Path(source.path), "*.safetensors"),
             **_public(fp32), "accuracy_drop": 0.0, "flip_rate": 0.0, "speedup": 1.0, "status": "reference"}]
    work = Path(tempfile.mkdtemp(prefix="nncli-quantize-"))
    try:
        onnx_dir = None
        if any(n.startswith("ort") for n in names):
            onnx_dir = work / "fp32-onnx"
            with contextlib.redirect_stdout(sys.stderr):
                _export_fp32(source.path, onnx_dir)
            ort_fp32 = load_classifier(str(onnx_dir), threads=recipe.threads)
            s = score(ort_fp32)
            release(ort_fp32)
            rows.append(_row("fp32 (onnxruntime)", "onnxruntime", _size_mb(onnx_dir, "*.onnx"), s, fp32, y, recipe, reference=True))
        built = {}
        for name in names:
            t = Timer()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # onnxruntime's calibrator prints progress on stdout
                    path = _build(name, source.path, onnx_dir, work, calib_texts, ref)
            except Exception as e:  # one candidate failing must not hide the others
                console.warn(f"{name}: could not be built ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
                rows.append({"candidate": name, "status": f"error: {type(e).__name__}", "accuracy": None})
                continue
            clf = load_classifier(str(path), threads=recipe.threads)
            s = score(clf)
            release(clf)
            row = _row(name, clf.backend, _size_mb(path, "*.onnx" if name.startswith("ort") else "*.safetensors"), s, fp32, y, recipe)
            row["build_seconds"] = t()
            rows.append(row)
            built[name] = path
            console.log(f"  {name}: accuracy {row['accuracy']:.4f} ({-row['accuracy_drop'] * 100:+.2f} pts), flips "
                        f"{row['flip_rate']:.1%}, {row['throughput_per_second']:.1f}/s ({row['speedup']:.2f}x), {row['status']}")
        passing = [r for r in rows if r.get("status") == "passes"]
        report = base_report("quantize", recipe.name)
        report.update(source={"model": recipe.model, "path": source.path}, data={"source": data_source, "rows": len(texts)},
                      candidates=rows, settings={"max_drop_points": recipe.max_drop, "max_flip_rate": recipe.max_flip_rate,
                                                 "batch_size": recipe.batch_size, "seq_len": recipe.seq_len},
                      environment=environment(recipe.threads))
        if not passing:
            report.update(status="failed", exit_code=5, finished_at=now(), timings={"wall_seconds": timer()})
            report["gates"] = [{"metric": "qualifying_candidates", "op": ">=", "threshold": 1, "value": 0, "passed": False}]
            raise GateFailed(f"no int8 candidate kept accuracy within {recipe.max_drop} points while being faster than fp32; "
                             "nothing was written", "see the table; raise --max-drop knowingly, or keep the fp32 model",
                             report=report)
        # timings are noisy: among candidates within 5% of the fastest, keep the one that changes fewest predictions
        fastest = max(r["throughput_per_second"] for r in passing)
        best = min((r for r in passing if r["throughput_per_second"] >= 0.95 * fastest), key=lambda r: (r["flip_rate"], -r["throughput_per_second"]))
        best["status"] = "chosen"
        out.prepare(overwrite=overwrite, inputs=inputs)
        with recording(out, report):
            for f in Path(built[best["candidate"]]).iterdir():
                shutil.copy2(f, out / f.name) if f.is_file() else shutil.copytree(f, out / f.name)
            out.write_text("recipe.yaml", dump(recipe))
            report.update(chosen=best["candidate"], status="succeeded", exit_code=0, finished_at=now(),
                          timings={"wall_seconds": timer()}, artifacts={"model": str(out.path)})
            report["gates"] = [
                {"metric": "accuracy_drop_points", "op": "<=", "threshold": recipe.max_drop, "value": best["accuracy_drop"] * 100,
                 "passed": True}]
            out.write_json("report.json", report)
            out.complete()
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _public(s: dict) -> dict:
    return {k: v for k, v in s.items() if k != "pred"}


def _row(name, backend, size, s, fp32, y, recipe: QuantizeRecipe, reference: bool = False) -> dict:
    drop = fp32["accuracy"] - s["accuracy"]
    flip = float((s["pred"] != fp32["pred"]).mean())
    speedup = s["throughput_per_second"] / fp32["throughput_per_second"]
    reasons = []
    if drop * 100 > recipe.max_drop + 1e-9:
        reasons.append(f"accuracy drop {drop * 100:.2f} > {recipe.max_drop} pts")
    if recipe.max_flip_rate is not None and flip > recipe.max_flip_rate:
        reasons.append(f"flip rate {flip:.1%} > {recipe.max_flip_rate:.1%}")
    if speedup <= 1.0 and recipe.require_speedup:
        reasons.append(f"not faster than fp32 ({speedup:.2f}x)")
    status = "reference" if reference else ("passes" if not reasons else "rejected: " + "; ".join(reasons))
    return {"candidate": name, "backend": backend, "size_mb": size, **_public(s), "accuracy_drop": drop, "flip_rate": flip,
            "speedup": speedup, "status": status}


def _size_mb(path: Path, pattern: str) -> float:
    return round(sum(f.stat().st_size for f in Path(path).glob(pattern)) / 1e6, 2)


def _data(recipe: QuantizeRecipe, run_dir: Path | None):
    from nncli.io.labelled import load_labelled, read_texts

    calib = []
    if recipe.data.path:
        s, names, _ = read_texts(recipe.data.path, recipe.data.text_column, role="quantize data", label_column=recipe.data.label_column)
        texts, labels, source = s.texts, names, s.source
        calib = texts
    elif run_dir is not None:
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        d = load_labelled(ft.data, seed=ft.train.seed)
        texts, labels = d.validation.texts, [d.label_names[i] for i in d.validation.labels]
        source = f"{run_dir}/recipe.yaml validation split"
        calib = d.train.texts
    else:
        raise UsageError("quantize needs labelled data to measure accuracy: the model is not a run directory",
                         "pass --data FILE with --text-column and --label-column (e.g. your validation data)")
    if recipe.data.limit and recipe.data.limit < len(texts):
        texts, labels = texts[: recipe.data.limit], labels[: recipe.data.limit]
    if len(texts) < 20:
        raise InputError(f"only {len(texts)} labelled rows to measure accuracy on: too few to judge an accuracy drop",
                         "pass a larger --data file (a few hundred rows)")
    rng = np.random.default_rng(0)
    calib = [calib[i] for i in rng.permutation(len(calib))[: recipe.calibration_samples]]
    return texts, labels, calib, source


def _export_fp32(src: str, dest: Path) -> None:
    from nncli.deploy.export import _export_onnx
    from nncli.recipe.deploy import ExportRecipe

    _export_onnx(src, dest, "sequence-classification", ExportRecipe(model=src))
    if (Path(src) / "calibration.json").exists():
        shutil.copy2(Path(src) / "calibration.json", dest / "calibration.json")


def _build(name: str, src: str, onnx_dir: Path | None, work: Path, calib_texts: list[str], ref) -> Path:
    dest = work / name
    dest.mkdir(parents=True, exist_ok=True)
    if name.startswith("torch-dynamic-int8"):
        import json as _json

        for f in Path(src).iterdir():
            if f.is_file():
                shutil.copy2(f, dest / f.name)
        exclude = ["classifier", "pooler", "score"] if name.endswith("head-fp32") else []
        (dest / "quantization.json").write_text(_json.dumps({"method": "torch-dynamic-int8", "modules": "torch.nn.Linear",
                                                             "exclude": exclude, "dtype": "qint8",
                                                             "note": "fp32 weights on disk; int8 applied when nncli loads the model"}))
        return dest
    import logging

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    logging.getLogger("optimum").setLevel(logging.ERROR)
    quantizer = ORTQuantizer.from_pretrained(onnx_dir, file_name="model.onnx")
    head_nodes = _head_nodes(onnx_dir / "model.onnx")
    if name == "ort-dynamic-int8":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-dynamic-int8-per-channel":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-dynamic-int8-head-fp32":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True, nodes_to_exclude=head_nodes)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-static-int8":
        from datasets import Dataset

        cfg = AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=True, operators_to_quantize=["MatMul"],
                                                 nodes_to_exclude=head_nodes)
        enc = ref.tokenizer(calib_texts, padding="max_length", truncation=True, max_length=128)  # calibration needs one shape
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        ds = Dataset.from_dict({k: enc[k] for k in keep})
        calibration = AutoCalibrationConfig.percentiles(ds, percentile=99.99)
        ranges = quantizer.fit(dataset=ds, calibration_config=calibration, operators_to_quantize=cfg.operators_to_quantize,
                               onnx_augmented_model_name=str(work / "augmented.onnx"))
        quantizer.quantize(quantization_config=cfg, save_dir=dest, calibration_tensors_range=ranges)
    else:  # pragma: no cover
        raise ValueError(name)
    produced = next(dest.glob("*.onnx"))
    produced.rename(dest / "model.onnx")
    for f in TOKENIZER_FILES:
        if (onnx_dir / f).exists():
            shutil.copy2(onnx_dir / f, dest / f)
    return dest


def _head_nodes(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return [n.name for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and any(k in n.name for k in ("classifier", "pooler",
                                                                                                       "score", "pre_classifier"))]
