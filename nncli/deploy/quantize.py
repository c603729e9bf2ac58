"""`nncli quantize`: int8 that is measured, not assumed, and judged on enough rows.

Candidates (nncli/deploy/int8.py: PyTorch dynamic int8; ONNX Runtime dynamic int8 per tensor, per channel and
with the head in fp32; ONNX Runtime static int8 calibrated on training texts) are each compared with the fp32
model and timed (latency at batch 1, throughput at the chosen batch):

- flips (changed predictions) need no labels, so they are counted on every text available (the run's train,
  validation and test texts, and --data): the flip rate and its 95% upper bound;
- the accuracy drop is measured on the labelled held-out rows (the run's validation and test splits, or --data)
  with exact McNemar statistics, and bounded by the flip rate (a flip changes the correctness of at most one row);
- a candidate passes when the 95% upper bound of its drop is within --max-drop points (and of its flip rate within
  --max-flip-rate, when set) and it is faster than fp32. Among the passing candidates within 5% of the fastest, the
  one that flips fewest predictions is kept; if none passes, nothing is written and the command exits 5 with the
  table of what it tried (and, when the rows are too few to show a small drop, says so).
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
from nncli.core.report import RunReport, Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording
from nncli.recipe.deploy import QuantizeRecipe
from nncli.recipe.load import dump


def candidates_for(method: str, backend: str) -> list[str]:
    torch_c = ["torch-dynamic-int8", "torch-dynamic-int8-head-fp32"]
    ort_dynamic = ["ort-dynamic-int8", "ort-dynamic-int8-per-channel", "ort-dynamic-int8-head-fp32"]
    out = []
    if backend in ("auto", "torch") and method in ("auto", "dynamic"):
        out += torch_c
    if backend in ("auto", "onnxruntime"):
        out += ort_dynamic if method in ("auto", "dynamic") else []
        out += ["ort-static-int8"] if method in ("auto", "static") else []
    if not out:
        raise UsageError(f"method={method} is not available for backend={backend}",
                         "static quantization needs --backend onnxruntime")
    return out


def run(recipe: QuantizeRecipe, *, overwrite: bool = False) -> RunReport:
    from nncli.io.inference import map_labels
    from nncli.io.models import detect_task, resolve, run_dir_for

    timer = Timer()
    source = resolve(recipe.model)
    run_dir = run_dir_for(recipe.model)
    if detect_task(source.path) == "image-classification":
        from nncli.deploy.quantize_images import ImageKind as Kind
    else:
        Kind = TextKind
    kind = Kind(recipe, source, run_dir)
    names = kind.candidates()
    out_path = Path(recipe.output) if recipe.output else (run_dir / "quantized" if run_dir else None)
    if out_path is None:
        raise UsageError("quantize needs --output DIR (the model is not a run directory)", "pass --output models/int8")
    data = kind.data()
    out = RunDir(out_path, command="quantize")
    inputs = [source.path, recipe.data.path, run_dir / "recipe.yaml" if run_dir is not None and not recipe.data.path else None]
    out.check(overwrite=overwrite, inputs=inputs)    # fail fast; the directory is prepared only when a candidate qualifies
    ref = kind.load(source.path)
    data["y"] = np.asarray(map_labels(data["labels"], ref.label_names, data["source"]))
    report = base_report("quantize", recipe.name, task=kind.task)
    report.update(source={"model": recipe.model, "path": source.path}, environment=environment(recipe.threads),
                  data={"source": data["source"], "labelled_rows": len(data["inputs"]), **kind.summary(data)},
                  settings={"max_drop_points": recipe.max_drop, "max_flip_rate": recipe.max_flip_rate, "confidence": 0.95,
                            "batch_size": recipe.batch_size, **kind.settings()})
    work = Path(tempfile.mkdtemp(prefix="nncli-quantize-"))
    try:
        rows, built = _measure_all(kind, ref, data, names, work)
        report["candidates"] = rows
        passing = [r for r in rows if r.get("status") == "passes"]
        if not passing:
            _refuse(report, rows, recipe, timer)
        # timings are noisy: among candidates within 5% of the fastest, keep the one that changes fewest predictions
        fastest = max(r["throughput_per_second"] for r in passing)
        best = min((r for r in passing if r["throughput_per_second"] >= 0.95 * fastest),
                   key=lambda r: (r["flip_rate"], -r["throughput_per_second"]))
        best["status"] = "chosen"
        out.prepare(overwrite=overwrite, inputs=inputs)
        return _write(out, report, recipe, built[best["candidate"]], best, timer)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class TextKind:
    """What quantize needs of a sequence classifier (nncli/deploy/quantize_images.py has the image classifier's)."""
    task, noun = "sequence-classification", "texts"

    def __init__(self, recipe: QuantizeRecipe, source, run_dir: Path | None):
        self.recipe, self.source, self.run_dir = recipe, source, run_dir

    def candidates(self) -> list[str]:
        return candidates_for(self.recipe.method, self.recipe.backend)

    def data(self) -> dict:
        return _data(self.recipe, self.run_dir)

    def summary(self, data: dict) -> dict:
        return {"texts_for_flips": len(data["all_inputs"]), "calibration_texts": len(data["calib"])}

    def settings(self) -> dict:
        return {"seq_len": self.recipe.seq_len}

    def load(self, path) -> object:
        from nncli.io.inference import load_classifier

        return load_classifier(str(path), threads=self.recipe.threads)

    load_built = load

    def export_fp32(self, onnx_dir: Path) -> None:
        from nncli.deploy.int8 import export_fp32

        export_fp32(self.source.path, onnx_dir)

    def build(self, name: str, onnx_dir: Path | None, work: Path, data: dict, ref) -> Path:
        from nncli.deploy.int8 import build

        return build(name, self.source.path, onnx_dir, work, data["calib"], ref)

    def prepare(self, ref, data: dict) -> None:
        pass

    def logits(self, clf, data: dict) -> np.ndarray:
        return clf.logits(data["all_inputs"], batch_size=32)

    def timed(self, clf) -> tuple:
        """Two calls to time: a batch of one and a batch of recipe.batch_size, at recipe.seq_len tokens."""
        seq = min(self.recipe.seq_len, clf.max_length)
        b1, bn = clf.synthetic_batch(1, seq), clf.synthetic_batch(self.recipe.batch_size, seq)
        return (lambda: clf.forward(b1)), (lambda: clf.forward(bn))

    def details(self, path: Path) -> dict:
        return {}


def _measure_all(kind, ref, data, names, work: Path) -> tuple[list[dict], dict]:
    from nncli.io.inference import release

    recipe = kind.recipe
    console.log(f"fp32 reference: {kind.source.path}; accuracy on {len(data['inputs'])} labelled {kind.noun} "
                f"({data['source']}), flips on {len(data['all_inputs'])} {kind.noun}")
    kind.prepare(ref, data)
    fp32 = _score(kind, ref, data)
    rows = [{"candidate": "fp32 (torch)", "backend": "torch", "size_mb": _size_mb(Path(kind.source.path), "*.safetensors"),
             **_public(fp32), **_accuracy_interval(fp32, data), "accuracy_drop": 0.0, "flip_rate": 0.0,
             "speedup": 1.0, "status": "reference"}]
    built, onnx_dir = {}, None
    if any(n.startswith("ort") for n in names):
        onnx_dir = work / "fp32-onnx"
        with contextlib.redirect_stdout(sys.stderr):
            kind.export_fp32(onnx_dir)
        clf = kind.load_built(onnx_dir)
        rows.append(_judge("fp32 (onnxruntime)", clf.backend, _size_mb(onnx_dir, "*.onnx"), _score(kind, clf, data), fp32,
                           data, recipe, reference=True))
        release(clf)
    for name in names:
        t = Timer()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # onnxruntime's calibrator prints progress on stdout
                path = kind.build(name, onnx_dir, work, data, ref)
        except Exception as e:  # one candidate failing must not hide the others
            console.warn(f"{name}: could not be built ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
            rows.append({"candidate": name, "status": f"error: {type(e).__name__}", "accuracy": None})
            continue
        clf = kind.load_built(path)
        row = _judge(name, clf.backend, _size_mb(path, "*.onnx" if name.startswith("ort") else "*.safetensors"),
                     _score(kind, clf, data), fp32, data, recipe)
        release(clf)
        row.update(build_seconds=t(), **kind.details(path))
        rows.append(row)
        built[name] = path
        console.log(f"  {name}: accuracy {row['accuracy']:.4f} (drop {row['accuracy_drop'] * 100:+.2f} pts, at most "
                    f"{row['accuracy_drop_upper'] * 100:.2f}), flips {row['flip_rate']:.1%}, "
                    f"{row['throughput_per_second']:.1f}/s ({row['speedup']:.2f}x), {row['status']}")
    return rows, built


def _score(kind, clf, data: dict) -> dict:
    from nncli.core.timing import measure

    recipe = kind.recipe
    timing = {"min_seconds": recipe.min_seconds, "min_repeats": 5, "warmup": 2}
    pred_all = kind.logits(clf, data).argmax(1)
    pred = pred_all[data["labelled_index"]]
    one, batch = kind.timed(clf)
    lat, thr = measure(one, **timing), measure(batch, **timing)
    return {"pred": pred, "pred_all": pred_all, "accuracy": float((pred == data["y"]).mean()), "latency_ms_batch1": lat["p50_ms"],
            "throughput_per_second": recipe.batch_size / (thr["p50_ms"] / 1000)}


def _public(s: dict) -> dict:
    return {k: v for k, v in s.items() if k not in ("pred", "pred_all")}


def _judge(name, backend, size, s, fp32, data, recipe: QuantizeRecipe, reference: bool = False) -> dict:
    from nncli.evaluate.metrics import paired_drop, rate_bounds

    paired = paired_drop(data["y"], fp32["pred"], s["pred"])
    flips, n_all = int((s["pred_all"] != fp32["pred_all"]).sum()), len(fp32["pred_all"])
    flip_upper = rate_bounds(flips, n_all)[1]
    upper = min(paired["upper"], flip_upper)             # a flip changes the correctness of at most one row
    speedup = s["throughput_per_second"] / fp32["throughput_per_second"]
    reasons = []
    if upper * 100 > recipe.max_drop + 1e-9:
        how = ("" if paired["drop"] * 100 > recipe.max_drop
               else f" (measured {paired['drop'] * 100:+.2f}; too few rows to rule out more)")
        reasons.append(f"accuracy drop could be {upper * 100:.2f} > {recipe.max_drop} pts at 95% confidence{how}")
    if recipe.max_flip_rate is not None and flip_upper > recipe.max_flip_rate:
        reasons.append(f"flip rate could be {flip_upper:.1%} > {recipe.max_flip_rate:.1%}")
    if speedup <= 1.0 and recipe.require_speedup:
        reasons.append(f"not faster than fp32 ({speedup:.2f}x)")
    status = "reference" if reference else ("passes" if not reasons else "rejected: " + "; ".join(reasons))
    return {"candidate": name, "backend": backend, "size_mb": size, **_public(s), **_accuracy_interval(s, data),
            "accuracy_drop": paired["drop"],
            "accuracy_drop_ci95": [paired["lower"], upper], "accuracy_drop_upper": upper, "n_labelled": paired["n"],
            "mcnemar_p": paired["mcnemar_p"], "flips": flips, "flip_rate": flips / n_all, "flip_rate_upper": flip_upper,
            "n_flip_texts": n_all,
            "speedup": speedup, "status": status}


def _accuracy_interval(s: dict, data: dict) -> dict:
    """The candidate's own accuracy on the labelled rows with its two-sided 95% Clopper-Pearson interval."""
    from nncli.evaluate.metrics import rate_bounds

    n = len(data["y"])
    correct = int((s["pred"] == data["y"]).sum())
    return {"accuracy_ci95": [rate_bounds(correct, n, 0.975)[0], rate_bounds(correct, n, 0.975)[1]], "n_labelled": n}


def _refuse(report, rows, recipe, timer) -> None:
    report.update(status="failed", exit_code=5, finished_at=now(), timings={"wall_seconds": timer()})
    report["gates"] = [{"metric": "qualifying_candidates", "op": ">=", "threshold": 1, "value": 0, "passed": False}]
    small = [r for r in rows if "too few rows" in str(r.get("status"))]
    hint = ("see the table; the labelled rows are too few to show a drop within the budget: pass --data with more "
            "labelled held-out rows" if small else "see the table; raise --max-drop knowingly, or keep the fp32 model")
    raise GateFailed(f"no int8 candidate kept accuracy within {recipe.max_drop} points (95% upper bound) while being faster "
                     "than fp32; nothing was written", hint, report=report)


def _write(out: RunDir, report, recipe, built: Path, best: dict, timer) -> RunReport:
    with recording(out, report):
        for f in Path(built).iterdir():
            shutil.copy2(f, out / f.name) if f.is_file() else shutil.copytree(f, out / f.name)
        out.write_text("recipe.yaml", dump(recipe))
        report.update(chosen=best["candidate"], status="succeeded", exit_code=0, finished_at=now(),
                      timings={"wall_seconds": timer()}, artifacts={"model": str(out.path)})
        report["gates"] = [{"metric": "accuracy_drop_points", "op": "<=", "threshold": recipe.max_drop,
                            "value": best["accuracy_drop"] * 100, "ci95": [x * 100 for x in best["accuracy_drop_ci95"]],
                            "decided_on": "upper bound", "n": best["n_labelled"], "passed": True}]
        out.write_json("report.json", report)
        out.complete()
    return report


def _size_mb(path: Path, pattern: str) -> float:
    return round(sum(f.stat().st_size for f in Path(path).glob(pattern)) / 1e6, 2)


def _data(recipe: QuantizeRecipe, run_dir: Path | None) -> dict:
    """Labelled held-out texts for the accuracy drop; every text available for the flips; training texts to calibrate
    (the labelled texts when the model is not a run directory)."""
    from nncli.io.labelled import load_labelled, read_texts

    def given():
        s, names, _ = read_texts(recipe.data.path, recipe.data.text_column, role="quantize data",
                                 label_column=recipe.data.label_column)
        return s.texts, names, s.source

    def calibration(train: list[str], labelled: list[str]) -> list[str]:
        pool = train or labelled
        return [pool[i] for i in np.random.default_rng(0).permutation(len(pool))[: recipe.calibration_samples]]

    return held_out(recipe, run_dir, given=given, from_run=lambda ft: load_labelled(ft.data, seed=ft.train.seed),
                    field="texts", calibration=calibration,
                    words=("rows", "data", "FILE with --text-column and --label-column (e.g. your validation data)",
                           "file (a few hundred rows)"))


def held_out(recipe, run_dir: Path | None, *, given, from_run, field: str, calibration, words: tuple[str, ...]) -> dict:
    """The inputs quantize judges on, for text and images alike: labelled held-out inputs for the accuracy drop (--data,
    else the run's validation and test splits), every distinct input available (plus the run's training inputs) for
    the flips, and what to calibrate static int8 on. words: (unit, what is needed, how to pass --data, what a larger
    one is)."""
    unit, what, how, larger = words
    inputs, labels, extra, source = [], [], [], ""
    if recipe.data.path:
        inputs, labels, source = given()
    if run_dir is not None:
        from nncli.recipe.load import load_run_recipe

        d = from_run(load_run_recipe(run_dir))
        held = [s for s in (d.validation, d.test) if s is not None]
        if not recipe.data.path:
            inputs = [x for s in held for x in getattr(s, field)]
            labels = [d.label_names[i] for s in held for i in s.labels]
            source = f"{run_dir}/recipe.yaml " + " + ".join(s.name for s in held) + " split(s)"
        extra = getattr(d.train, field)
    elif not recipe.data.path:
        raise UsageError(f"quantize needs labelled {what} to measure accuracy: the model is not a run directory",
                         f"pass --data {how}")
    if recipe.data.limit and recipe.data.limit < len(inputs):
        inputs, labels = inputs[: recipe.data.limit], labels[: recipe.data.limit]
    if len(inputs) < 20:
        raise InputError(f"only {len(inputs)} labelled {unit} to measure accuracy on: too few to judge an accuracy drop",
                         f"pass a larger --data {larger}")
    all_inputs = list(dict.fromkeys(inputs + extra))       # every distinct input once; the labelled ones first
    index = {x: i for i, x in enumerate(all_inputs)}
    return {"inputs": inputs, "labels": labels, "source": source, "all_inputs": all_inputs,
            "labelled_index": np.array([index[x] for x in inputs]), "calib": calibration(extra, inputs)}
