"""nncli evaluate, explain and drift."""

from __future__ import annotations

from typing import Annotated

import typer

from nncli.cli.app import app
from nncli.cli.args import columns, split_args, split_models
from nncli.cli.options import LabelColOpt, OverwriteOpt, PairColOpt, TextColOpt, command_options, positional
from nncli.cli.output import stdout
from nncli.core.errors import UsageError


@app.command()
@command_options(gates=True)
def evaluate(
    args: positional("[RECIPE.yaml] MODEL... [KEY=VALUE]...", "Models (run directories, model directories, hub ids, ONNX "
                      "exports), optionally a recipe and overrides.") = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Evaluation data: a file or hub dataset id.")] = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    slice_column: Annotated[str | None, typer.Option(help="Report every metric per value of this column "
                                                          "(images: a column of the CSV/JSONL listing).")] = None,
    validation: Annotated[str | None,
                          typer.Option(help="Data to fit the calibration temperature on "
                                            "(default: the run's validation split).")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit temperature scaling and store it with the model.",
                                            metavar="")] = False,
    bins: Annotated[int | None, typer.Option(help="Calibration bins, equal width (default 15).")] = None,
    robustness: Annotated[bool | None, typer.Option("--robustness/--no-robustness",
                                                    help="Run the perturbation suite (text or image perturbations).",
                                                    metavar="")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N rows.")] = None,
    output: Annotated[str | None,
                      typer.Option("--output", "-o", help="Write report.json, report.md, predictions and plots here.")] = None,
    overwrite: OverwriteOpt = False,
    task: Annotated[str | None, typer.Option(help="auto (default: from the model's config), sequence-classification, "
                                                  "causal-lm or image-classification.")] = None,
):
    """Evaluate one or more models on the same data: metrics with 95% intervals, calibration, robustness, slices.

    Examples:

      nncli evaluate runs/quickstart/finetune --data recipes/data/reviews/test.csv --slice-column category -o runs/eval

      nncli evaluate runs/quickstart/finetune runs/quickstart/finetune/merged-int8 --data test.csv \\
        --min accuracy=0.85 --max ece=0.05

      nncli evaluate runs/quickstart/finetune --data test.csv --calibrate --json

      nncli evaluate runs/digits --data digits/test -o runs/digits-eval   # images: <folder>/<label>/<image>.png
    """
    def job(gates):
        from nncli.evaluate import evaluation as ev
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe

        recipe_name, models, overrides = split_models(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"data.path": data, "data.text_column": columns(text_column),
                 "data.text_pair_column": text_pair_column, "data.label_column": label_column, "data.slice_column": slice_column,
                 "data.validation": validation, "calibration.fit": True if calibrate else None, "calibration.bins": bins,
                 "robustness.enabled": robustness, "data.limit": limit, "output": output, "task": task,
                 "models": models or None}
        recipe = load_recipe("evaluate", path, overrides, flags, gates=gates)
        return ev.run(recipe, overwrite=overwrite)

    return job, _render_evaluate


def _render_evaluate(report: dict) -> None:
    from rich.table import Table

    out = stdout()
    if report.get("task") == "causal-lm":
        t = Table(title="evaluation (causal LM)")
        for col in ("model", "loss", "perplexity"):
            t.add_column(col)
        for r in report["models"]:
            t.add_row(r["name"], f"{r['metrics']['loss']:.4f}", f"{r['metrics']['perplexity']:.3f}")
        out.print(t)
    else:
        t = Table(title=f"evaluation on {report['data']['rows']} rows: {report['status']}")
        for col in ("model", "accuracy", "macro-F1", "log-loss", "ECE", "flip rate", "worst slice acc", "majority acc"):
            t.add_column(col)
        f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        for r in report["models"]:
            m = r["metrics"]
            t.add_row(r["name"], f(m["accuracy"]), f(m["macro_f1"]), f(m["loss"]), f(m["ece"]), f(m.get("flip_rate")),
                      f(m.get("worst_slice_accuracy")), f(m["majority_accuracy"]))
        out.print(t)
    for g in report.get("gates", []):
        v = "missing" if g["value"] is None else f"{g['value']:.4f}"
        out.print(f"gate {g['metric']} {g['op']} {g['threshold']} ({g['model']}): {v} -> {'pass' if g['passed'] else 'FAIL'}")
    for w in report.get("warnings", []):
        out.print(f"note: {w}", markup=False)



# ---------------------------------------------------------------------------------------------- explain

@app.command()
@command_options()
def explain(
    model: Annotated[str, typer.Argument(help="A run directory, model directory or hub id (PyTorch; classifier, causal LM "
                                              "or image classifier).")],
    text: Annotated[str | None, typer.Option("--text", help="One text to explain.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="A file of texts to explain (and aggregate); for an image "
                                             "classifier an image, a folder of images or a CSV/JSONL listing.")] = None,
    text_column: TextColOpt = None,
    image_column: Annotated[str, typer.Option(help="Images: the listing's column of image paths.")] = "image",
    limit: Annotated[int, typer.Option(help="With --data: explain the first N texts or images.")] = 50,
    method: Annotated[str, typer.Option("--method", help="ig, occlusion, attention, a comma-separated list, or all "
                                        "(images: attention only for vision transformers).")] = "all",
    top_k: Annotated[int, typer.Option("--top-k", help="Texts: words removed/kept for the faithfulness scores.")] = 3,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 50,
    patch: Annotated[int | None, typer.Option(help="Images: occlusion patch side in pixels (default: input side / 8).")] = None,
    stride: Annotated[int | None, typer.Option(help="Images: occlusion stride in pixels (default: patch / 2).")] = None,
    baseline: Annotated[str, typer.Option(help="Images: what occluded/deleted pixels become, and where integrated "
                                          "gradients start: zero (the processor's mean colour), mean (the image's), "
                                          "black.")] = "zero",
    output: Annotated[str | None,
                      typer.Option("--output", "-o",
                                   help="Write report.json, explanations.jsonl and explanations.html here (images: "
                                        "images/*.png, heatmaps.npz and explanations.html).")] = None,
    overwrite: OverwriteOpt = False,
):
    """Explain predictions: word attributions (integrated gradients, occlusion, attention rollout) with measured faithfulness.

    Examples:

      nncli explain runs/quickstart/finetune --text "The battery died after two days"

      nncli explain runs/quickstart/finetune --data recipes/data/reviews/test.csv --limit 100 -o runs/explain

      nncli explain runs/quickstart/finetune --text "fine, I guess" --method ig,occlusion --json

      nncli explain runs/digits --data recipes/data/digits/test/7 --limit 10 -o runs/digits-explain   # images
    """
    def job():
        from nncli.evaluate import explain as xp

        methods = None if method.strip() == "all" else [m.strip() for m in method.split(",") if m.strip()]
        if limit < 1 or top_k < 1 or steps < 2:
            raise UsageError("--limit and --top-k must be at least 1, --steps at least 2", "e.g. --limit 50 --top-k 3 --steps 50")
        return xp.run(model, text=text, data=data, text_column=columns(text_column), limit=limit, methods=methods, output=output,
                      overwrite=overwrite, top_k=top_k, steps=steps,
                      image={"patch": patch, "stride": stride, "baseline": baseline, "image_column": image_column})

    def render(r):
        if r.get("task") == "image-classification":
            from nncli.evaluate.explain_image_views import render_terminal
        else:
            from nncli.evaluate.explain_views import render_terminal

        render_terminal(r, stdout())

    return job, render



# ---------------------------------------------------------------------------------------------- drift

@app.command()
@command_options()
def drift(
    args: positional("[RECIPE.yaml] [KEY=VALUE]...", "Optionally a drift recipe, and overrides.") = None,
    reference: Annotated[str | None, typer.Option("--reference", "-r",
                                                  help="Run directory with profile.json (from finetune or evaluate --output), a "
                                                       "profile.json, or reference data (a file or an image folder).")] = None,
    current: Annotated[str | None,
                       typer.Option("--current", "-c", help="The new data to check (a file or hub dataset id; for an "
                                    "image classifier an image folder or a listing).")] = None,
    model: Annotated[str | None,
                     typer.Option("--model", "-m", help="Model for the model-based tests (default: the profile's).")] = None,
    text_column: Annotated[list[str] | None, typer.Option("--text-column", metavar="COLUMN", help="Text column "
                           "(default: the profile's, else text); repeat it when files name it differently.")] = None,
    label_column: Annotated[str | None, typer.Option("--label-column", metavar="COLUMN", help="Label column, used when "
                            "present (default: the profile's, else label).")] = None,
    image_column: Annotated[str | None, typer.Option("--image-column", metavar="COLUMN", help="Images: a listing's "
                            "column of image paths (default: the profile's, else image).")] = None,
    alpha: Annotated[float | None, typer.Option(help="False-alarm rate for the whole report (default 0.05).")] = None,
    max_accuracy_drop: Annotated[float | None,
                                 typer.Option(help="Accuracy drop in points that counts as drift (default 5).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most N current rows (seeded sample).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write report.json, report.md and drift.png here.")] = None,
    overwrite: OverwriteOpt = False,
):
    """Check new data against a run's reference profile: feature, label, confidence and embedding drift (exit 5 on drift).

    Examples:

      nncli drift --reference runs/quickstart/finetune --current recipes/data/reviews/shifted.csv -o runs/drift

      nncli drift -r runs/quickstart/finetune -c incoming/today.jsonl --text-column body --json

      nncli drift -r train.csv -c today.csv --model runs/quickstart/finetune --alpha 0.01

      nncli drift -r runs/images-quickstart/finetune -c incoming/images/ -o runs/image-drift
    """
    def job():
        from nncli.evaluate import drift as dr
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe

        recipe_name, overrides = split_args(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"reference": reference, "current": current, "model": model, "text_column": columns(text_column),
                 "label_column": label_column, "image_column": image_column, "alpha": alpha,
                 "max_accuracy_drop": max_accuracy_drop, "limit": limit, "output": output}
        return dr.run(load_recipe("drift", path, overrides, flags), overwrite=overwrite)

    return job, _render_drift


def _render_drift(r: dict) -> None:
    from rich.table import Table

    t = Table(title=f"drift: {'DRIFT DETECTED' if r.get('drift_detected') else 'no drift'} "
                    f"(alpha {r.get('alpha')}, per test {r.get('alpha_per_test', 0):.2g})")
    for col in ("feature", "test", "statistic", "p-value", "effect", "threshold", "verdict"):
        t.add_column(col)
    for x in r.get("tests", []):
        t.add_row(x["feature"], x["test"], f"{x['statistic']:.4g}", "-" if x["p_value"] is None else f"{x['p_value']:.2g}",
                  f"{x['effect_name']} {x['effect']:.3f}", f"{x['threshold']:.3f}", "[red]DRIFT[/]" if x["drift"] else "ok")
    out = stdout()
    out.print(t)
    a = r.get("accuracy") or {}
    if a.get("reference") is not None:
        out.print(f"accuracy: reference {a['reference']:.4f}, estimated from confidences {a['estimated']:.4f}"
                  + (f", actual {a['actual']:.4f}" if "actual" in a else ""))
    if r.get("top_drifting"):
        out.print("top drifting: " + ", ".join(r["top_drifting"]))


# ---------------------------------------------------------------------------------------------- audit

@app.command()
@command_options(gates=True)
def audit(
    args: positional("[RECIPE.yaml] DATA [KEY=VALUE]...",
                      "The data file to audit (or hub dataset id), optionally a recipe and overrides.") = None,
    validation: Annotated[str | None, typer.Option("--validation", help="Validation file, audited too.")] = None,
    test: Annotated[str | None, typer.Option("--test", help="Test file: audited too, and checked for overlap.")] = None,
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Encoder for embeddings (default: TF-IDF only).")] = None,
    folds: Annotated[int | None, typer.Option(help="k of the out-of-fold probabilities (default 5).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Token limit for the truncation check (default 128).")] = None,
    fix: Annotated[str | None, typer.Option("--fix", metavar="OUT",
                                            help="Write a cleaned copy of DATA here (.csv .tsv .jsonl .parquet).")] = None,
    fix_policy: Annotated[str | None, typer.Option("--fix-policy", help="remove (default), relabel or mark.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o",
                                               help="Write report.json, audit.jsonl, README.md and audit.html here.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory or --fix file.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed for the folds (default 0).")] = None,
):
    """Audit labelled data: likely label errors, duplicates and train/test leakage, outliers, unusable texts (exit 5 on a gate).

    Examples:

      nncli audit train.csv --test test.csv -o runs/audit

      nncli audit train.csv --model sentence-transformers/all-MiniLM-L6-v2 --fix train.clean.csv --fix-policy relabel

      nncli audit train.csv --test test.csv --max label_issue_rate=0.05 --max cross_split_duplicates=0 --json
    """
    def job(gates):
        from nncli.evaluate import audit as au
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe

        recipe_name, data, overrides = split_models(args)
        if len(data) > 1:
            raise UsageError(f"one data file at a time, got {len(data)}: {', '.join(data)}",
                             "pass validation and test files with --validation and --test")
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"data.train": data[0] if data else None, "data.validation": validation, "data.test": test,
                 "data.text_column": columns(text_column), "data.text_pair_column": text_pair_column,
                 "data.label_column": label_column, "data.max_length": max_length, "model": model,
                 "label_issues.folds": folds, "fix.path": fix, "fix.policy": fix_policy, "output": output, "seed": seed}
        recipe = load_recipe("audit", path, overrides, flags, gates=gates)
        return au.run(recipe, overwrite=overwrite)

    return job, _render_audit


def _render_audit(r: dict) -> None:
    from rich.table import Table

    m = r["metrics"]
    t = Table(title=f"audit of {m['rows']} rows: {m['flagged_rows']} flagged ({m['flagged_rate']:.1%})")
    for col in ("finding", "rows", "top example (split:row)"):
        t.add_column(col)
    for kind, items in r.get("top", {}).items():
        f = items[0]
        t.add_row(kind, str(r["counts"][kind]), f"{f['split']}:{f['row']} {f['text'][:70]!r}")
    out = stdout()
    out.print(t)
    li = r.get("label_issues")
    if li:
        out.print(f"label model: out-of-fold accuracy {li['oof_accuracy']:.3f}; "
                  f"estimated noise rate {li['estimated_noise_rate']:.1%}"
                  + "".join(f"; {p['given']}->{p['true']} {p['share_of_rows']:.1%}" for p in li["pairs"][:3]), markup=False)
    for g in r.get("gates", []):
        out.print(f"gate {g['metric']} {g['op']} {g['threshold']}: {g['value']} -> {'pass' if g['passed'] else 'FAIL'}")
    if r.get("fix"):
        x = r["fix"]
        out.print(f"fixed copy: {x['path']} ({x['rows_out']} of {x['rows_in']} rows; {x['removed']} removed, "
                  f"{x['relabelled']} relabelled)", markup=False)
    if r.get("artifacts"):
        out.print("findings: audit.jsonl, audit.html, README.md in the output directory")
    for w in r.get("warnings", []):
        out.print(f"note: {w}", markup=False)
