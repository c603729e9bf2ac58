"""What a person reads: Markdown tables that survive `|` in their cells (summary.md on GitHub), the drift
report's top drifting features and labelled plot, and package versions in report.json (issue #18, items 7 and 8)."""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table line as GitHub reads them: `\\|` stays inside its cell."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells, cur, i = [], "", 0
    while i < len(body):
        if body.startswith("\\|", i):
            cur, i = cur + "\\|", i + 2
        elif body[i] == "|":
            cells.append(cur)
            cur, i = "", i + 1
        else:
            cur, i = cur + body[i], i + 1
    return [c.strip() for c in cells + [cur]]


def tables(md: str) -> list[list[list[str]]]:
    """Every table in a Markdown text (header, separator, rows) as lists of cells; asserts the separator is there."""
    out, block = [], []
    for line in md.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(split_row(line))
            continue
        if block:
            assert len(block) >= 2 and all(set(c) <= set("-: ") and c for c in block[1]), block[:2]
            out.append(block)
            block = []
    return out


def assert_well_formed(md: str) -> list[list[list[str]]]:
    found = tables(md)
    assert found, "no table"
    for t in found:
        width = len(t[0])
        for row in t[1:]:
            assert len(row) == width, f"row has {len(row)} cells, header {width}: {row}"
    return found


def test_table_checker_catches_an_unescaped_pipe():
    with pytest.raises(AssertionError, match="4 cells, header 2"):
        assert_well_formed("| a | b |\n|---|---|\n| parity max |dlogit| 1e-6 | x |\n")
    assert_well_formed("| a | b |\n|---|---|\n| parity max \\|dlogit\\| 1e-6 | x |\n")


def _write_report(d, report):
    d.mkdir(parents=True)
    (d / "report.json").write_text(json.dumps(report))
    return d


def test_report_summary_escapes_pipes_in_cells(tmp_path):
    from nncli.pipeline import summary

    export = _write_report(tmp_path / "export", {"task": "export", "status": "succeeded",
                                                 "parity": {"max_abs_diff": 6e-7, "flipped": 0}, "gates": []})
    drift = _write_report(tmp_path / "drift", {"task": "drift", "status": "failed", "drift_detected": True,
                                               "top_drifting": ["chars", "a|b"],
                                               "gates": [{"metric": "drift:chars", "passed": False}]})
    md = summary.run([str(export), str(drift)])["markdown"]
    (header, _sep, row_export, row_drift), = assert_well_formed(md)
    note = header.index("note")
    assert row_export[note] == "parity max \\|dlogit\\| 6.00e-07, flipped 0"
    assert row_drift[note] == "DRIFT: chars, a\\|b"


def test_pipeline_markdown_escapes_pipes_and_line_breaks():
    from nncli.pipeline.runner import markdown

    report = {"name": "ci", "status": "failed", "failed_step": "export",
              "steps": [{"name": "export", "command": "export", "status": "failed", "seconds": 2.5,
                         "metrics": {"max_abs_diff": 0.2}, "error": "parity: max |dlogit| 0.2 > 1e-4\nsee report.json"}]}
    (header, _sep, row), = assert_well_formed(markdown(report))
    assert row[header.index("key numbers")] == "max_abs_diff 0.2; parity: max \\|dlogit\\| 0.2 > 1e-4 see report.json"


# ---------------------------------------------------------------------------------------------- drift report

def _drift_report():
    def test(feature, kind, effect, threshold, drift, p=1e-6, name="PSI"):
        return {"test": "KS + PSI", "feature": feature, "kind": kind, "statistic": 0.4, "p_value": p, "effect": effect,
                "effect_name": name, "threshold": threshold, "drift": drift}

    tests = [test("chars", "text", 0.9, 0.3, True), test("oov_rate", "text", 2.4, 0.3, True),
             test("digit_rate", "text", 0.05, 0.3, False),
             {**test("embeddings", "embedding", 0.95, 0.6, True, name="domain AUC"), "test": "MMD"}]
    from nncli.evaluate.drift_tests import severity

    drifting = sorted((t for t in tests if t["drift"]), key=severity, reverse=True)
    return {"drift_detected": True, "top_drifting": [t["feature"] for t in drifting], "tests": tests, "alpha": 0.05,
            "alpha_per_test": 0.0125, "reference": {"source": "train.csv", "rows": 600},
            "current": {"path": "shifted.csv", "rows": 200},
            "accuracy": {"reference": 0.9, "estimated": 0.7, "actual": 0.65}, "artifacts": {"plot": "drift.png"}}


def test_drift_markdown_lists_the_top_drifting_features_most_severe_first():
    from nncli.evaluate.drift import markdown

    md = markdown(_drift_report())
    top, every = assert_well_formed(md)
    assert "## Top drifting (most severe first)" in md and "![drift](drift.png)" in md
    assert [r[0] for r in top[2:]] == ["oov_rate", "embeddings", "chars"]            # 8x, 4.5x, 3x past their thresholds
    assert top[2][2] == "PSI 2.400 > 0.300, p 1e-06" and top[2][3] == "8.00"
    assert [r[-1] for r in every[2:]] == ["DRIFT", "DRIFT", "ok", "DRIFT"]


def test_drift_markdown_says_when_nothing_drifts():
    from nncli.evaluate.drift import markdown

    r = _drift_report()
    r.update(drift_detected=False, top_drifting=[], tests=[{**t, "drift": False} for t in r["tests"]])
    md = markdown(r)
    assert "No test drifts" in md and "Top drifting" not in md


def test_drift_plot_has_axis_labels_and_a_verdict_per_panel():
    from nncli.evaluate.drift_report import figure
    from nncli.evaluate.drift_tests import severity

    rng = np.random.default_rng(0)
    tests = [t for t in _drift_report()["tests"] if t["kind"] == "text"]
    plot = {"ref": {t["feature"]: rng.normal(size=300) for t in tests},
            "cur": {t["feature"]: rng.normal(1, 1, 200) for t in tests}}
    fig = figure(plot, tests, severity)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert [ax.get_xlabel() for ax in panels] == ["out-of-vocabulary rate (share of words)", "length (characters)",
                                                  "digits (share of characters)"]
    assert all(ax.get_ylabel() == "density" for ax in panels)
    assert [ax.get_title().splitlines()[0] for ax in panels] == ["oov_rate: DRIFT", "chars: DRIFT", "digit_rate: ok"]
    assert panels[2].get_title().splitlines()[1] == "PSI 0.050 <= 0.300, p 1e-06"
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["reference (n=300)", "current (n=200)"]


def test_drift_command_report_md_names_what_drifts(trained_run, tmp_path, cli):
    from pathlib import Path

    shifted = Path(__file__).resolve().parent.parent / "recipes" / "data" / "reviews" / "shifted.csv"
    code, stdout, stderr = cli("drift", "--reference", trained_run, "--current", shifted, "-o", tmp_path / "d", "--json")
    assert code == 5, stderr
    top = json.loads(stdout)["top_drifting"]
    md = (tmp_path / "d" / "report.md").read_text()
    first, _ = assert_well_formed(md)
    assert [r[0] for r in first[2:]] == top and top


# ---------------------------------------------------------------------------------------------- environment

def test_environment_reads_installed_versions_from_package_metadata():
    from nncli.core.report import environment

    env = environment()
    assert env["optimum"] == metadata.version("optimum") and env["optimum_onnx"] == metadata.version("optimum-onnx")
    assert env["transformers"] == metadata.version("transformers") and env["sklearn"] == metadata.version("scikit-learn")
    assert "?" not in env.values()
