"""Temperature scaling refuses or bounds itself when the validation data cannot identify T (issue #18, item 1).

The rule (nncli/evaluate/calibration.py) is checked against independent references: the likelihood-ratio
statistic from scikit-learn's log-loss and scipy's chi-squared, the bootstrap bound from refits with scipy's
optimiser; and end to end on a perfectly separable validation split and on a noisy one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
from conftest import make_rows, write_csv
from scipy import optimize, stats

from nncli.evaluate import calibration as C
from nncli.io.inference import softmax


def _draw(n: int, scale: float, seed: int):
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model at T = 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * scale
    y = np.array([rng.choice(3, p=p) for p in softmax(logits)])
    return logits, y


def _separable(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) * 0.3
    logits[np.arange(n), y] += 2.0          # every prediction right, confidence about 0.75-0.85
    return logits, y


def _reference_mle(logits, y) -> float:
    res = optimize.minimize_scalar(lambda lt: skm.log_loss(y, softmax(logits / np.exp(lt)), labels=[0, 1, 2]),
                                   bounds=(np.log(0.05), np.log(20)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def test_perfectly_separable_validation_refuses_to_sharpen():
    logits, y = _separable(110, seed=0)
    assert (logits.argmax(1) == y).all()
    fit = C.fit(logits, y)
    # plain temperature scaling runs to the bound: every prediction would become (nearly) certain
    assert fit.mle == pytest.approx(0.05, rel=1e-3)
    assert fit.status == "refused" and fit.temperature == 1.0 and fit.errors == 0 and fit.rows == 110
    assert "0 error(s) in 110 validation rows" in fit.reason and "at least 4 errors" in fit.reason


def test_three_errors_are_too_few_to_sharpen_four_are_enough():
    logits, y = _separable(200, seed=1)
    for k, status in ((3, "refused"), (4, "bounded")):
        yy = y.copy()
        wrong = np.arange(k) * 7
        for i in wrong:                      # k confidently wrong predictions... made milder so the fit still wants T < 1
            yy[i] = (y[i] + 1) % 3
            logits[i] = 0.0
            logits[i, yy[i]] = 0.5
            logits[i, y[i]] = 0.9
        fit = C.fit(logits, yy)
        assert fit.errors == k and fit.mle < 1, k
        assert fit.status == status, (k, fit.reason)
        assert (fit.temperature == 1.0) if status == "refused" else (fit.mle < fit.temperature < 1), k


def test_normal_over_confident_model_gets_its_maximum_likelihood_temperature():
    logits, y = _draw(3000, 1.5, seed=2)
    fit = C.fit(logits * 2.5, y)                # 2.5x too sharp
    assert fit.status == "fitted"
    assert fit.temperature == fit.mle == pytest.approx(_reference_mle(logits * 2.5, y), rel=1e-3)
    assert fit.temperature == pytest.approx(2.5, rel=0.1)
    # the likelihood-ratio statistic against T = 1, from scikit-learn's log-loss and scipy's chi-squared
    n = len(y)
    lr = 2 * n * (skm.log_loss(y, softmax(logits * 2.5)) - skm.log_loss(y, softmax(logits * 2.5 / fit.mle)))
    assert fit.lr_statistic == pytest.approx(lr, rel=1e-6)
    assert fit.lr_p_value == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-6, abs=1e-300)


def test_calibrated_model_is_left_alone():
    logits, y = _draw(1000, 1.5, seed=3)
    fit = C.fit(logits, y)
    assert fit.status == "unchanged" and fit.temperature == 1.0 and fit.lr_p_value >= C.ALPHA


def test_under_confident_model_is_sharpened_only_to_the_bootstrap_bound():
    logits, y = _draw(400, 3.0, seed=4)
    soft = logits * 0.4                         # under-confident: the true T is 0.4
    fit = C.fit(soft, y, seed=7)
    assert fit.status == "bounded" and fit.mle < fit.temperature < 1
    # reference: the 97.5th percentile of maximum-likelihood refits on the same resamples
    rng = np.random.default_rng(7)
    refits = [_reference_mle(soft[i], y[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(C.BOOTSTRAP))]
    assert fit.ci95[1] == pytest.approx(np.percentile(refits, 97.5), rel=2e-3)
    assert fit.temperature == pytest.approx(fit.ci95[1])


def test_too_few_rows_are_refused():
    logits, y = _draw(C.MIN_ROWS - 1, 1.5, seed=5)
    fit = C.fit(logits * 3, y)
    assert fit.status == "refused" and fit.temperature == 1.0 and fit.mle is None and f"only {C.MIN_ROWS - 1}" in fit.reason


# ---------------------------------------------------------------------------------------------- end to end

def _predicted(run, rows):
    from nncli.io.inference import load_classifier, release

    clf = load_classifier(str(run), max_length=32)
    try:
        logits = clf.logits([r["text"] for r in rows], None, 64)
    finally:
        release(clf)
    names = ["negative", "neutral", "positive"]
    return [names[i] for i in logits.argmax(1)]


def test_evaluate_calibrate_on_a_separable_split_refuses_and_says_why(trained_run, tiny_data, tmp_path, cli):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rows = make_rows(300, seed=31)
    pred = _predicted(run, rows)
    right = [r for r, p in zip(rows, pred) if p == r["label"]][:120]
    assert len(right) >= 60
    val = write_csv(tmp_path / "separable.csv", right)
    out = tmp_path / "ev"
    code, stdout, stderr = cli("evaluate", run, "--data", tiny_data["test"], "--validation", val, "--calibrate",
                               "--no-robustness", "-o", out, "--json")
    assert code == 0, stderr
    cal = json.loads(stdout)["models"][0]["calibration"]
    assert cal["temperature"] == 1.0 and cal["decision"]["status"] == "refused" and cal["decision"]["errors"] == 0
    assert cal["decision"]["mle"] < 0.2         # what plain temperature scaling would have stored
    assert "calibration: only 0 error(s)" in stderr
    report = json.loads((out / "report.json").read_text())
    assert any("calibration refused" in w for w in report["warnings"])
    assert "Temperature refused" in (out / "report.md").read_text()
    stored = json.loads((run / "merged" / "calibration.json").read_text())
    assert stored["temperature"] == 1.0 and stored["status"] == "refused"


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory, tiny_bert, tiny_data) -> Path:
    """A run that is under-confident by construction: label smoothing 0.4 caps the confidence it learns to give, while
    it still learns the keyword task (so it is right far more often than its confidence says)."""
    from typer.testing import CliRunner

    from nncli.cli import app
    from tests.conftest import finetune_args

    out = tmp_path_factory.mktemp("runs") / "smoothed"
    r = CliRunner().invoke(app, finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.lr=3e-3",
                                              "train.epochs=6", "train.label_smoothing=0.4",
                                              "train.head_init=random", "-q"))   # the trained model, not the probe
    assert r.exit_code == 0, r.stderr
    return out


def test_evaluate_calibrate_on_a_normal_split_sharpens_within_its_bound(smoothed_run, tiny_data, tmp_path, cli):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoothed_run, run)
    names = ["negative", "neutral", "positive"]
    rows = make_rows(300, seed=41)      # fresh rows of the training task, one label in 20 wrong (as in real annotation)
    rows = [{**r, "label": names[(names.index(r["label"]) + 1) % 3]} if i % 20 == 0 else r for i, r in enumerate(rows)]
    val = write_csv(tmp_path / "val.csv", rows)
    code, stdout, stderr = cli("evaluate", run, "--data", tiny_data["test"], "--validation", val, "--calibrate",
                               "--no-robustness", "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    cal = r["models"][0]["calibration"]
    d = cal["decision"]
    # the smoothed model is right far more often than its confidence says: sharpening is supported, but only to the bound
    assert d["status"] == "bounded" and d["errors"] >= 4 and d["mle"] < cal["temperature"] == d["ci95"][1] < 1
    assert cal["ece_after"] < cal["ece_uncalibrated"]
    assert not any("makes ECE on the evaluation data worse" in w for w in r["warnings"])


def test_evaluate_calibrate_says_so_when_held_out_ece_gets_worse(smoothed_run, tiny_data, tmp_path, cli):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoothed_run, run)
    rows = make_rows(300, seed=51)
    pred = _predicted(run, rows)
    names = ["negative", "neutral", "positive"]
    # three in four labels wrong where the model is right: it looks over-confident on this split (the tiny model is
    # under-confident on clean data), so softening is fitted and makes the clean test split's ECE worse
    noisy = [{**r, "label": names[(names.index(r["label"]) + 1) % 3]} if (p == r["label"] and i % 4 != 0) else r
             for i, (r, p) in enumerate(zip(rows, pred))]
    val = write_csv(tmp_path / "noisy.csv", noisy)
    out = tmp_path / "ev"
    code, stdout, stderr = cli("evaluate", run, "--data", tiny_data["test"], "--validation", val, "--calibrate",
                               "--no-robustness", "-o", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    cal = r["models"][0]["calibration"]
    assert cal["decision"]["status"] == "fitted" and cal["temperature"] == cal["decision"]["mle"] > 1
    assert cal["ece_after"] > cal["ece_uncalibrated"]
    assert "makes ECE on the evaluation data worse than the uncalibrated model" in stderr
    assert any("makes ECE on the evaluation data worse" in w for w in json.loads((out / "report.json").read_text())["warnings"])
