"""`nncli drift`: does new data still look like what the model was trained on, and is the model likely still right?

A *reference profile* (profile.json + profile.npz) is written by `nncli finetune` (text statistics on the
training and validation texts; model outputs and embeddings on the held-out validation split) and by
`nncli evaluate --output` (on the evaluated data). `nncli drift` compares new data against it:

- per text feature (length in characters, words and tokens, tokens per word, unknown-token rate,
  out-of-vocabulary rate, shares of non-ASCII, digit, upper-case and punctuation characters), and the
  model's confidence and entropy: Kolmogorov–Smirnov test (significance) and population stability
  index (effect size, threshold corrected for sample size);
- label and predicted-class distributions: chi-squared test on the contingency table (significance)
  and Cramér's V (effect size);
- sentence embeddings (mean-pooled last layer, randomly projected to <= 32 dimensions):
  maximum mean discrepancy with an RBF kernel and a permutation test (significance), and the
  cross-validated AUC of a domain classifier telling reference from current (effect size);
- accuracy: a label-free estimate from the model's confidences (average thresholded confidence,
  Garg et al. 2022, threshold fitted on the reference's labelled held-out data) and, when the new data
  has labels, the actual accuracy.

A test reports drift only when it is significant (p below alpha / number of tests, Bonferroni, so the
whole report's false-alarm rate stays at most alpha) *and* its effect size passes a materiality
threshold, so large samples do not alarm on trivial differences. Any drifting test → exit 5.

This module reads the inputs and writes the report; the profile is drift_profile.py, the statistics
drift_stats.py, the tests drift_tests.py, report.md and drift.png drift_report.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording
from nncli.evaluate.drift_profile import PROFILE_ARRAYS, PROFILE_FILE, Profile, build_profile, load_profile
from nncli.evaluate.drift_tests import compare, severity


def run(recipe, *, overwrite: bool = False) -> dict:
    from nncli.io.inference import release

    timer = Timer()
    out = RunDir(recipe.output, command="drift") if recipe.output else None
    if out is not None:
        out.check(overwrite=overwrite, inputs=[recipe.current])    # fail fast; prepared once the tests have run
    ref_path = Path(recipe.reference)
    if not ref_path.exists():
        raise InputError(f"reference {recipe.reference} does not exist",
                         "pass a run directory made by nncli finetune, or a profile.json")
    profile, clf = _reference(recipe, ref_path)
    result, current, warnings = _check(recipe, profile, clf)
    release(clf)
    plot = result.pop("_plot")
    tests = result["tests"]
    drifting = sorted((t for t in tests if t["drift"]), key=severity, reverse=True)
    report = _report(recipe, ref_path, profile, current, warnings, result, drifting)
    ending = {"status": "failed" if drifting else "succeeded", "exit_code": 5 if drifting else 0}
    if out is not None:
        ref_files = [ref_path / PROFILE_FILE, ref_path / PROFILE_ARRAYS] if ref_path.is_dir() else [ref_path]
        out.prepare(overwrite=overwrite, inputs=[*ref_files, recipe.current, clf.path if clf is not None else None])
        _write(out, report, plot, tests, {**ending, "timings": {"wall_seconds": timer()}})
    report.update(**ending, finished_at=now(), timings={"wall_seconds": timer()})
    if drifting:
        raise GateFailed(f"drift detected in {len(drifting)} of {len(tests)} tests: "
                         + ", ".join(t["feature"] for t in drifting[:5]),
                         "inspect the table (and drift.png); re-train or re-calibrate on recent data if the shift is real",
                         report=report)
    return report


def _check(recipe, profile: Profile, clf) -> tuple[dict, dict, list[str]]:
    """The current data read the profile's way (texts or images), every test run: (result, current, warnings)."""
    from nncli.evaluate import drift_images as di

    what = f" with model {clf.name}" if clf else " (no model: input and label tests only)"
    if di.is_image_profile(profile):
        cur = di.read_current(recipe, profile)
        console.log(f"drift: {len(cur.paths)} current images from {recipe.current} against the profile of "
                    f"{profile.meta.get('source')}{what}")
        result = di.compare(profile, cur, clf, recipe)
        return result, {"path": recipe.current, "rows": len(cur.paths), "rows_read": cur.rows_read, "dropped": cur.dropped,
                        "has_labels": cur.labels is not None, "kind": "images"}, cur.notes
    table, s, texts, labels, pairs = _current(recipe, profile)
    console.log(f"drift: {len(texts)} current texts from {recipe.current} against the profile of {profile.meta.get('source')}"
                + what)
    result = compare(profile, texts, labels, clf=clf, pairs=pairs, alpha=recipe.alpha, max_accuracy_drop=recipe.max_accuracy_drop,
                     model_sample=recipe.model_sample, seed=recipe.seed)
    return result, {"path": recipe.current, "rows": len(texts), "rows_read": s.rows_read, "dropped": s.dropped,
                    "has_labels": labels is not None}, list(table.notes)


def _reference(recipe, ref_path: Path) -> tuple[Profile, object]:
    """The reference profile (a run directory's, a profile.json, or made now from a data file or an image folder) and
    the model to test with."""
    from nncli.evaluate import drift_images as di
    from nncli.io.inference import load_classifier
    from nncli.io.labelled import to_split
    from nncli.io.tables import read_table

    clf = None
    if ref_path.is_dir() and not (ref_path / PROFILE_FILE).exists() and di.is_image_reference(ref_path):
        return di.profile_now(recipe, ref_path)
    if ref_path.is_file() and ref_path.name != PROFILE_FILE:
        # a data file as the reference: profile it now (with --model for model-based tests)
        if recipe.model:
            clf = load_classifier(recipe.model, threads=recipe.threads)
        table = read_table(str(ref_path), role="reference data")
        lab_col = _present(table, recipe.label_column or "label")
        s, names = to_split(table, "reference data", recipe.text_column or "text", lab_col, key_prefix="reference")
        profile = build_profile(s.texts, names if lab_col else None, clf=clf, model_texts=s.texts if clf else None,
                                model_labels=names if (clf and lab_col) else None, source=str(ref_path),
                                text_column=s.columns.get("text") if s.columns else None, label_column=lab_col,
                                model_ref=recipe.model, seed=recipe.seed)
        return profile, clf
    profile, ref_dir = load_profile(str(ref_path))
    model_ref = recipe.model or _model_of(profile, ref_dir)
    if model_ref and profile.meta.get("model"):
        if di.is_image_profile(profile):
            clf = di.load_model(model_ref, recipe.threads)
        else:   # the same truncation as the profile: mean-pooled embeddings and confidences depend on it
            clf = load_classifier(model_ref, threads=recipe.threads, max_length=profile.meta["model"].get("max_length"))
        # the profile's confidences were taken at its temperature: compare like with like even if the model
        # has been calibrated since (calibration.json)
        clf.temperature = float(profile.meta["model"].get("temperature") or 1.0)
        want = profile.meta["model"]["label_names"]
        if clf.label_names != want:
            raise InputError(f"model {model_ref} has labels {clf.label_names}, the profile was made with {want}",
                             "pass the model the profile was built with (--model)")
    return profile, clf


def _current(recipe, profile: Profile):
    """The current data, read with the profile's columns: (table, split, texts, labels or None, pairs or None)."""
    from nncli.io.labelled import to_split
    from nncli.io.tables import read_table

    cols = profile.meta.get("columns") or {}
    table = read_table(recipe.current, role="current data")
    text_col = recipe.text_column or cols.get("text") or "text"
    lab_col = _present(table, recipe.label_column or cols.get("label") or "label")
    pair_col = cols.get("text_pair")
    s, names = to_split(table, "current data", text_col, lab_col, pair_column=pair_col, key_prefix="current")
    if len(s) < 20:
        raise InputError(f"current data {Path(recipe.current).name} has only {len(s)} usable rows: too few to test for drift",
                         "pass at least a few hundred texts (20 is the minimum)")
    if recipe.limit and recipe.limit < len(s):
        keep = np.sort(np.random.default_rng(recipe.seed).permutation(len(s))[: recipe.limit])
        texts = [s.texts[i] for i in keep]
        labels = [names[i] for i in keep] if lab_col else None
        pairs = [s.pairs[i] for i in keep] if s.pairs is not None else None
    else:
        texts, labels, pairs = s.texts, (names if lab_col else None), s.pairs
    return table, s, texts, labels, pairs


def _report(recipe, ref_path: Path, profile: Profile, current: dict, warnings: list[str], result: dict,
            drifting: list[dict]) -> dict:
    tests = result["tests"]
    report = base_report("drift", recipe.name, task=profile.meta.get("task"))
    report.update(reference={"path": str(ref_path), "source": profile.meta.get("source"), "rows": profile.meta.get("rows"),
                             "model": (profile.meta.get("model") or {}).get("ref")},
                  current=current, tests=tests, accuracy=result["accuracy"], alpha=recipe.alpha,
                  alpha_per_test=result["alpha_per_test"], drift_detected=bool(drifting),
                  top_drifting=[t["feature"] for t in drifting[:5]], warnings=list(warnings),
                  environment=environment(recipe.threads))
    report["gates"] = [{"metric": f"drift:{t['feature']}", "op": "==", "threshold": 0, "value": int(t["drift"]),
                        "passed": not t["drift"]}
                       for t in tests]
    return report


def _write(out: RunDir, report: dict, plot: dict, tests: list[dict], ending: dict) -> None:
    with recording(out, report):
        report["artifacts"] = {"report": "report.json", "plot": "drift.png", "summary": "report.md"}
        _plot(out / "drift.png", plot, tests)
        report.update(**ending, finished_at=now())
        out.write_text("report.md", markdown(report))
        out.write_json("report.json", report)
        out.complete()


def _present(table, column: str | None) -> str | None:
    if not column:
        return None
    cols = [column] if isinstance(column, str) else list(column)
    for c in cols:
        if c in table.columns:
            return c
    return None


def _model_of(profile: Profile, ref_dir: Path) -> str | None:
    m = profile.meta.get("model")
    if not m:
        return None
    ref = m.get("ref")
    if ref and not Path(ref).is_absolute():
        cand = (ref_dir / ref)
        if cand.exists():
            return str(cand)
    if ref and Path(ref).exists():
        return ref
    raise InputError(f"the model the profile was built with ({ref}) is not there any more",
                     "pass it with --model (a run directory or model directory)")


def markdown(report: dict) -> str:
    from nncli.evaluate.drift_report import markdown as render

    return render(report, severity)


def _plot(path: Path, plot: dict, tests: list[dict]) -> None:
    from nncli.evaluate.drift_report import write_plot

    write_plot(path, plot, tests, severity)
