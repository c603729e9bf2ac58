"""`nncli evaluate`: metrics, calibration, robustness, slices, comparison, gates, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as skm


def _eval(cli, *args):
    code, stdout, stderr = cli("evaluate", *map(str, args))
    return code, stdout, stderr


def test_evaluate_run_directory_end_to_end(trained_run, tiny_data, tmp_path, cli):
    out = tmp_path / "ev"
    code, stdout, stderr = _eval(cli, trained_run, "--data", tiny_data["test"], "--slice-column", "category", "-o", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    m = r["models"][0]
    for key in ("accuracy", "macro_f1", "loss", "ece", "mce", "brier", "flip_rate", "worst_slice_accuracy", "majority_accuracy"):
        assert key in m["metrics"], key
    assert m["ci95"]["accuracy"][0] <= m["metrics"]["accuracy"] <= m["ci95"]["accuracy"][1]
    assert set(m["per_class"]) == {"negative", "neutral", "positive"}
    assert len(m["robustness"]["perturbations"]) == 8
    assert {s["value"] for s in m["slices"]} == {"a", "b"}
    for name in ("report.json", "report.md", "predictions.jsonl", "confusion_matrix.png", "reliability.png", "recipe.yaml"):
        assert (out / name).exists(), name
    assert json.loads((out / "report.json").read_text())["status"] == "succeeded"

    # the report's numbers agree with scikit-learn recomputed from the audit file
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 60 and preds[0]["id"] == "3-0"
    y = [p["label"] for p in preds]
    yhat = [p["predicted"] for p in preds]
    assert m["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat), abs=1e-6)
    assert m["metrics"]["macro_f1"] == pytest.approx(skm.f1_score(y, yhat, average="macro"), abs=1e-6)
    labels = m["labels"]
    probs = np.array([[p["probabilities"][k] for k in labels] for p in preds])
    assert m["metrics"]["loss"] == pytest.approx(skm.log_loss(y, probs, labels=labels), abs=1e-4)
    md = (out / "report.md").read_text()
    assert "Robustness" in md and "Slices" in md and "Confusion matrix" in md


def test_gates_pass_and_fail(trained_run, tiny_data, tmp_path, cli):
    code, stdout, stderr = _eval(cli, trained_run, "--data", tiny_data["test"], "--no-robustness", "--max", "ece=1", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["gates"][0]["passed"] is True
    out = tmp_path / "ev"
    code, stdout, stderr = _eval(cli, trained_run, "--data", tiny_data["test"], "--min", "accuracy=1.01", "--max", "flip_rate=0",
                                 "-o", out, "--json")
    assert code == 5
    gates = json.loads(stdout)["gates"]
    assert {g["metric"]: g["passed"] for g in gates} == {"accuracy": False, "flip_rate": gates[1]["value"] == 0}
    assert set(gates[0]) >= {"metric", "op", "threshold", "value", "passed"}
    assert json.loads((out / "report.json").read_text())["exit_code"] == 5
    code, _, stderr = _eval(cli, trained_run, "--data", tiny_data["test"], "--min", "acuracy=0.5")
    assert code == 2 and "did you mean 'accuracy'" in stderr


def test_a_text_gate_decides_on_the_interval_bound_and_names_its_rows(trained_run, tiny_data, tmp_path, cli):
    import csv

    rows = list(csv.DictReader(open(tiny_data["test"], newline="")))
    for r in rows[::3]:                                              # a third of the labels wrong: accuracy well below 1
        r["label"] = {"negative": "positive", "positive": "neutral", "neutral": "negative"}[r["label"]]
    noisy = tmp_path / "noisy.csv"
    with open(noisy, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, stdout, _ = _eval(cli, trained_run, "--data", noisy, "--no-robustness", "--json")
    m = json.loads(stdout)["models"][0]
    acc, (lo, hi) = m["metrics"]["accuracy"], m["ci95"]["accuracy"]
    assert lo < acc < 1                                              # 60 rows: the interval is wide
    between = round((lo + acc) / 2, 4)                               # the point passes it, the lower bound does not
    code, stdout, stderr = _eval(cli, trained_run, "--data", noisy, "--no-robustness", "--min",
                                 f"accuracy={between}", "--json")
    assert code == 5, stderr
    (g,) = json.loads(stdout)["gates"]
    assert g["value"] == acc and g["ci95"] == [lo, hi] and g["decided_on"] == "lower bound" and g["n"] == 60
    assert "n=60" in stderr and "lower bound" in stderr
    code, stdout, _ = _eval(cli, trained_run, "--data", noisy, "--no-robustness", "--min",
                            f"accuracy={round(lo - 0.01, 4)}", "--json")
    assert code == 0 and json.loads(stdout)["gates"][0]["passed"] is True


def test_calibrate_stores_temperature_used_later(trained_run, tiny_data, tmp_path, cli):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code, stdout, stderr = _eval(cli, run, "--data", tiny_data["test"], "--calibrate", "--no-robustness", "--json")
    assert code == 0, stderr
    cal = json.loads(stdout)["models"][0]["calibration"]
    assert cal["fitted_rows"] == 60 and "recipe.yaml validation split" in cal["fitted_on"]
    stored = json.loads((run / "merged" / "calibration.json").read_text())
    assert stored["temperature"] == pytest.approx(cal["temperature"])
    code, stdout, _ = _eval(cli, run, "--data", tiny_data["test"], "--no-robustness", "--json")
    assert json.loads(stdout)["models"][0]["calibration"]["temperature"] == pytest.approx(cal["temperature"])


def test_calibrate_without_validation_data_is_refused(tiny_bert, tiny_data, trained_run, cli):
    code, _, stderr = _eval(cli, trained_run / "merged", "--data", tiny_data["test"], "--calibrate")
    assert code == 0, stderr  # merged/ inside a run directory finds the run's validation split
    code, _, stderr = _eval(cli, tiny_bert, "--data", tiny_data["test"], "--calibrate")
    assert code == 3 and "--validation" in stderr


def test_several_models_side_by_side(trained_run, tiny_data, cli):
    code, stdout, stderr = _eval(cli, trained_run, trained_run / "merged", "--data", tiny_data["test"], "--no-robustness",
                                 "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert len(r["models"]) == 2 and len(r["comparison"]) == 2
    assert r["comparison"][1]["agreement_with_first"] == 1.0
    assert r["comparison"][1]["accuracy_delta"] == 0.0


def test_robustness_is_seeded(trained_run, tiny_data, cli):
    runs = []
    for _ in range(2):
        code, stdout, stderr = _eval(cli, trained_run, "--data", tiny_data["test"], "--json")
        assert code == 0, stderr
        runs.append(json.loads(stdout)["models"][0]["robustness"])
    assert runs[0] == runs[1]
    assert runs[0]["perturbations"]["lowercase"]["flip_rate"] == 0.0  # an uncased tokenizer ignores case


def test_unknown_labels_and_missing_slice_column(trained_run, tmp_path, cli):
    p = tmp_path / "odd.csv"
    p.write_text("text,label,category\ngreat lamp,positive,a\nbroken toy,angry,b\n")
    code, _, stderr = _eval(cli, trained_run, "--data", p)
    assert code == 3 and "'angry'" in stderr and "the model's labels" in stderr
    code, _, stderr = _eval(cli, trained_run, "--data", p, "--slice-column", "categry")
    assert code == 2 and "did you mean 'category'" in stderr


def test_causal_lm_perplexity_matches_manual(tiny_gpt2, tmp_path, cli):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["great lamp and very happy", "awful broken kettle", "the book arrived on a day"]
    p = tmp_path / "lm.jsonl"
    p.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    code, stdout, stderr = _eval(cli, tiny_gpt2, "--data", p, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["command"] == "evaluate" and r["task"] == "causal-lm"
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = tok(t, return_tensors="pt")["input_ids"]
            loss = model(ids, labels=ids).loss.item()
            total += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    assert r["models"][0]["metrics"]["perplexity"] == pytest.approx(float(np.exp(total / count)), rel=1e-4)
