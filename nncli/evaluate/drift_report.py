"""The drift report a person reads: report.md (verdict, the most drifting features first, every test) and drift.png
(reference against current per feature, each panel with axis labels and its own verdict)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from nncli.core.atomic import atomic_write_bytes
from nncli.core.markdown import table

# what each feature measures, as an axis label
FEATURE_LABELS = {
    "chars": "length (characters)", "words": "length (words)", "tokens": "length (tokens)",
    "tokens_per_word": "tokens per word", "unk_rate": "unknown-token rate (share of tokens)",
    "oov_rate": "out-of-vocabulary rate (share of words)", "non_ascii_rate": "non-ASCII characters (share)",
    "digit_rate": "digits (share of characters)", "upper_rate": "upper-case letters (share of characters)",
    "punct_rate": "punctuation (share of characters)", "confidence": "model confidence (top-class probability)",
    "entropy": "prediction entropy (normalised, 0-1)",
    "width": "image width (pixels)", "height": "image height (pixels)", "aspect": "aspect ratio (width / height)",
    "brightness": "brightness (mean luma, 0-1)", "contrast": "contrast (luma standard deviation, 0-1)",
    "colourfulness": "colourfulness (Hasler-Süsstrunk)", "saturation": "saturation (mean HSV, 0-1)",
}
NUMERIC_KINDS = ("text", "image", "model")


def _p(t: dict) -> str:
    return "–" if t.get("p_value") is None else f"{t['p_value']:.3g}"


def _why(t: dict) -> str:
    """One line on why a test drifts: its effect against the threshold, and its significance."""
    inclusive = t["kind"] == "embedding" or t["effect_name"] == "Cramér's V"    # these pass their threshold at >=
    past = t["effect"] >= t["threshold"] if inclusive else t["effect"] > t["threshold"]
    op = (">=" if inclusive else ">") if past else ("<" if inclusive else "<=")
    sig = "" if t.get("p_value") is None else f", p {_p(t)}"
    return f"{t['effect_name']} {t['effect']:.3f} {op} {t['threshold']:.3f}{sig}"


def markdown(report: dict, severity) -> str:
    verdict = "DRIFT DETECTED" if report["drift_detected"] else "no drift"
    ref, cur = report["reference"], report["current"]
    lines = [f"# Drift report: {verdict}", "",
             f"Reference: {ref['source']} ({ref['rows']} rows); current: {cur['path']} ({cur['rows']} rows). "
             f"alpha {report['alpha']} (per test {report['alpha_per_test']:.4g}, Bonferroni).", ""]
    by_feature = {t["feature"]: t for t in report["tests"]}
    top = [by_feature[f] for f in report.get("top_drifting") or [] if f in by_feature]
    if top:
        lines += ["## Top drifting (most severe first)", ""]
        lines += table(["feature", "kind", "why", "severity (x threshold)"],
                       [[t["feature"], t["kind"], _why(t), f"{severity(t):.2f}"] for t in top])
        more = sum(1 for t in report["tests"] if t["drift"]) - len(top)
        lines += [""] + ([f"... and {more} more drifting test(s) below.", ""] if more > 0 else [])
    else:
        lines += ["No test drifts: none is both significant and past its effect-size threshold.", ""]
    lines += ["## Every test", ""]
    lines += table(["test", "feature", "statistic", "p-value", "effect", "threshold", "verdict"],
                   [[t["test"], t["feature"], f"{t['statistic']:.4g}", _p(t), f"{t['effect_name']} {t['effect']:.3f}",
                     f"{t['threshold']:.3f}", "DRIFT" if t["drift"] else "ok"] for t in report["tests"]])
    a = report.get("accuracy") or {}
    if a:
        lines += ["", f"Accuracy: reference {a.get('reference', float('nan')):.4f}, estimated without labels "
                      f"{a.get('estimated', float('nan')):.4f}" + (f", actual {a['actual']:.4f}" if "actual" in a else "")]
    notes = list(dict.fromkeys([*(report.get("warnings") or []),
                                *(f"{t['feature']}: {t['note']}" for t in report["tests"] if t.get("note"))]))
    if notes:
        lines += ["", "Notes:", ""] + [f"- {w}" for w in notes]
    if report.get("artifacts", {}).get("plot"):
        lines += ["", f"![drift]({report['artifacts']['plot']})"]
    return "\n".join(lines) + "\n"


def figure(plot: dict, tests: list[dict], severity):
    """Histograms of the reference and the current data for the (up to 8) most drifting numeric features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [t for t in tests if t["kind"] in NUMERIC_KINDS and plot["ref"].get(t["feature"]) is not None
               and t["feature"] in plot["cur"]]
    numeric = sorted(numeric, key=severity, reverse=True)[:8]
    if not numeric:
        return None
    cols = min(4, len(numeric))
    rows = math.ceil(len(numeric) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, t in zip(axes.flat, numeric):
        r, c = np.asarray(plot["ref"][t["feature"]], float), np.asarray(plot["cur"][t["feature"]], float)
        lo, hi = np.quantile(np.r_[r, c], [0.0, 0.99])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        ax.hist(np.clip(r, lo, hi), bins=bins, density=True, alpha=0.5, label=f"reference (n={len(r)})")
        ax.hist(np.clip(c, lo, hi), bins=bins, density=True, alpha=0.5, label=f"current (n={len(c)})")
        verdict = "DRIFT" if t["drift"] else "ok"
        ax.set_title(f"{t['feature']}: {verdict}\n{_why(t)}", fontsize=8.5, color="#b00020" if t["drift"] else "#1b5e20")
        ax.set_xlabel(FEATURE_LABELS.get(t["feature"], t["feature"]), fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(numeric):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def write_plot(path: Path, plot: dict, tests: list[dict], severity) -> None:
    fig = figure(plot, tests, severity)
    if fig is None:
        return
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
