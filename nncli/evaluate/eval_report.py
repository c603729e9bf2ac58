"""What `nncli evaluate` writes besides report.json: predictions.jsonl, the confusion-matrix and reliability plots,
and report.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from nncli.recipe.evaluate import EvaluateRecipe


def write_predictions(path: Path, split, y, pred, probs, labels, recipe: EvaluateRecipe) -> None:
    id_col = recipe.data.id_column or ("id" if "id" in split.extra else None)
    ids = split.extra.get(id_col) if id_col else None
    lines = []
    for i in range(len(split)):
        rec = {"id": ids[i] if ids is not None else i, "text": split.texts[i], "label": labels[int(y[i])],
               "predicted": labels[int(pred[i])], "correct": bool(y[i] == pred[i]),
               "probabilities": {labels[k]: round(float(probs[i, k]), 6) for k in range(len(labels))}}
        if recipe.data.slice_column:
            rec["slice"] = split.extra.get(recipe.data.slice_column, [None] * len(split))[i]
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    from nncli.core.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_confusion(path: Path, cm: np.ndarray, labels: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"confusion matrix: {Path(title).name}", fontsize=9)
    _save_fig(fig, path)


def plot_reliability(path: Path, bins: list[dict], title: str, ece: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    full = [b for b in bins if b["count"]]
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in full], [b["accuracy"] for b in full], width=[b["hi"] - b["lo"] for b in full],
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="C3", ms=3, label="bin confidence")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.set_xlabel("confidence"), ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: {Path(title).name} (ECE {ece:.3f})", fontsize=9), ax.legend(fontsize=7, loc="upper left")
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    from nncli.core.atomic import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/").replace("/", "_"))[-60:]


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _ci(res: dict, key: str) -> str:
    ci = (res.get("ci95") or {}).get(key)
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def markdown(report: dict) -> str:
    lines = [f"# Evaluation: {report.get('name') or Path(report['data']['source']).name}", "",
             f"Data: `{report['data']['source']}`, {report['data']['rows']} rows. nncli {report['nncli_version']}, "
             f"{report['finished_at']}.", ""]
    if report.get("task") == "causal-lm":
        lines += ["| model | loss | perplexity (95% CI) |", "|---|---|---|"]
        for r in report["models"]:
            lines.append(f"| {r['name']} | {r['metrics']['loss']:.4f} | {r['metrics']['perplexity']:.3f}{_ci(r, 'perplexity')} |")
        return "\n".join(lines) + "\n"
    lines += ["## Summary (95% bootstrap intervals)", "",
              "| model | accuracy | macro-F1 | log-loss | ECE | Brier | mean flip rate | majority acc |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        m = r["metrics"]
        lines.append(f"| {r['name']} | {m['accuracy']:.3f}{_ci(r, 'accuracy')} | {m['macro_f1']:.3f}{_ci(r, 'macro_f1')} | "
                     f"{m['loss']:.3f} | {m['ece']:.3f}{_ci(r, 'ece')} | {m['brier']:.3f} | "
                     f"{fmt(m.get('flip_rate'))} | {m['majority_accuracy']:.3f} |")
    if report.get("comparison"):
        lines += ["", "## Against the first model", "", "| model | accuracy delta (95% CI) | agreement |", "|---|---|---|"]
        for row in report["comparison"][1:]:
            ci = row.get("accuracy_delta_ci95")
            lines.append(f"| {row['model']} | {row['accuracy_delta']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")
                         + f" | {row['agreement_with_first']:.3f} |")
    for r in report["models"]:
        lines += _model_section(r)
    if report.get("gates"):
        lines += ["", "## Gates", "", "| model | metric | rule | value | result |", "|---|---|---|---|---|"]
        for g in report["gates"]:
            lines.append(f"| {g['model']} | {g['metric']} | {g['op']} {g['threshold']} | {fmt(g['value'])} | "
                         f"{'pass' if g['passed'] else '**FAIL**'} |")
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _model_section(r: dict) -> list[str]:
    """One model's part of report.md: per-class scores, confusion matrix, calibration, robustness, slices, plots."""
    lines = ["", f"## {r['name']}", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, pc in r["per_class"].items():
        lines.append(f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {int(pc['support'])} |")
    cm = r["confusion_matrix"]
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    for label, row in zip(cm["labels"], cm["matrix"]):
        lines.append(f"| **{label}** | " + " | ".join(map(str, row)) + " |")
    c = r["calibration"]
    fitted = f" (fitted on {c['fitted_on']}: ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f})" if "fitted_on" in c else ""
    lines += ["", f"Calibration: ECE {c['ece']:.4f}, MCE {c['mce']:.4f}, Brier {c['brier']:.4f}, "
                  f"temperature {c['temperature']:.3f}{fitted}."]
    if c.get("decision"):
        lines += ["", f"Temperature {c['decision']['status']}: {c['decision']['reason']}."]
    if r.get("robustness"):
        rb = r["robustness"]
        lines += ["", f"Robustness on {rb['samples']} of {rb['rows']} texts (seed {rb['seed']}, "
                      f"clean accuracy {rb['clean_accuracy']:.3f}):",
                  "", "| perturbation | accuracy (95% CI) | drop | flip rate (95% CI) |", "|---|---|---|---|"]
        for k, v in rb["perturbations"].items():
            acc, flip = v["accuracy_ci95"], v["flip_rate_ci95"]
            lines.append(f"| {k} | {v['accuracy']:.3f} [{acc[0]:.3f}, {acc[1]:.3f}] | {v['accuracy_drop']:+.3f} | "
                         f"{v['flip_rate']:.3f} [{flip[0]:.3f}, {flip[1]:.3f}] |")
    if r.get("slices"):
        lines += ["", "Slices, worst first (small slices flagged and listed last):", "",
                  "| slice | rows | accuracy (95% CI) | macro-F1 | ECE | |", "|---|---|---|---|---|---|"]
        for s in r["slices"]:
            ci = s.get("ci95_accuracy")
            lines.append(f"| {s['value']} | {s['count']} | {s['accuracy']:.3f}"
                         + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                         + f" | {s['macro_f1']:.3f} | {s['ece']:.3f} | {'too small to trust' if s['small'] else ''} |")
    for key in ("confusion_matrix", "reliability"):
        if r.get("artifacts", {}).get(key):
            lines += ["", f"![{key}]({r['artifacts'][key]})"]
    return lines


def raise_if_failed(failed: list[dict], out, report: dict) -> None:
    """GateFailed (exit 5) naming every failed gate and its model, for text and image evaluations alike."""
    from nncli.core.errors import GateFailed
    from nncli.core.report import describe_failed

    if not failed:
        return
    raise GateFailed(describe_failed(failed), f"see {out.path}/report.json" if out else
                     "rerun with --output DIR for the full report", report=report)

