"""`nncli drift`: statistics against scipy and known shifts, false-alarm rate, and the command end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import make_rows, write_csv
from scipy import stats

from nncli.evaluate import drift_profile as P
from nncli.evaluate import drift_stats as S
from nncli.evaluate import drift_tests as T

# ---------------------------------------------------------------------------------------------- statistics

def test_ks_matches_scipy_and_detects_a_known_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.3, 1, 2000)
    d, p = S.ks(a, b)
    ref = stats.ks_2samp(a, b)
    assert d == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-9)
    # the population KS distance between N(0,1) and N(0.3,1) is 2*Phi(0.15)-1
    assert d == pytest.approx(2 * stats.norm.cdf(0.15) - 1, abs=0.03)
    assert p < 1e-6


def test_psi_matches_its_analytic_value_for_a_known_shift():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 200_000), rng.normal(0.5, 1, 200_000)
    value, bins = S.psi(ref, cur)
    # reference deciles of N(0,1); the current distribution's mass in each decile bin
    edges = stats.norm.ppf(np.linspace(0, 1, 11)[1:-1])
    p = np.full(10, 0.1)
    q = np.diff(np.r_[0, stats.norm.cdf(edges - 0.5), 1])
    expected = float(np.sum((q - p) * np.log(q / p)))
    assert bins == 12  # ten deciles, plus "at or below the reference minimum" and "above its maximum"
    assert value == pytest.approx(expected, abs=0.01)


def test_psi_same_distribution_is_small_and_new_values_are_seen():
    rng = np.random.default_rng(2)
    value, bins = S.psi(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000))
    assert value < S.psi_threshold(5000, 5000, bins, 0.01)
    zeros = np.zeros(1000)                       # e.g. an unknown-token rate that was always 0
    some = np.r_[np.zeros(700), np.full(300, 0.2)]
    v, b = S.psi(zeros, some)
    assert b == 2 and v > 1.0


def test_psi_threshold_accounts_for_sample_size():
    small = S.psi_threshold(50, 50, 12, 0.01)
    large = S.psi_threshold(50_000, 50_000, 12, 0.01)
    assert small > 0.5 and large == S.MIN_PSI
    # it is the (1-alpha) chi-squared quantile over the effective sample size
    assert small == pytest.approx(stats.chi2.ppf(0.99, 11) / 25)


def test_chi2_matches_scipy_and_cramers_v():
    ref, cur = {"a": 300, "b": 200, "c": 100}, {"a": 150, "b": 200, "c": 250, "d": 5}
    stat, p, v = S.chi2_categorical(ref, cur)
    table = np.array([[300, 200, 100, 0], [150, 200, 250, 5]])
    s2, p2, _, _ = stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(s2) and p == pytest.approx(p2)
    assert v == pytest.approx(math.sqrt(s2 / table.sum()))
    assert S.chi2_categorical({"a": 10}, {"a": 20}) == (0.0, 1.0, 0.0)


def test_mmd_false_alarm_rate_near_alpha_and_power_under_shift():
    rng = np.random.default_rng(3)
    alarms = 0
    reps = 60
    for i in range(reps):
        x, y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
        _, p = S.mmd_permutation(x, y, permutations=199, seed=i)
        alarms += p < 0.05
    assert alarms / reps <= 0.12  # nominal 0.05; binomial spread over 60 repeats
    x, y = rng.normal(size=(100, 5)), rng.normal(0.6, 1, size=(100, 5))
    stat, p = S.mmd_permutation(x, y, permutations=199)
    assert p <= 0.01 and stat > 0
    assert S.domain_auc(x, y) > 0.7
    assert abs(S.domain_auc(rng.normal(size=(200, 5)), rng.normal(size=(200, 5))) - 0.5) < 0.1


def test_ks_false_alarm_rate_is_near_the_chosen_level():
    rng = np.random.default_rng(4)
    ps = np.array([S.ks(rng.normal(size=300), rng.normal(size=300))[1] for _ in range(400)])
    assert 0.02 <= (ps < 0.05).mean() <= 0.09


def test_large_samples_with_a_trivial_shift_are_not_material():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 50_000), rng.normal(0.04, 1, 50_000)
    t = T.finish_test(T.numeric_test("x", "text", ref, cur), 0.01, 0)
    assert t["significant"] and not t["drift"]  # significant, but PSI far below 0.1
    t = T.finish_test(T.numeric_test("x", "text", ref, rng.normal(0.6, 1, 50_000)), 0.01, 0)
    assert t["drift"]


def test_atc_threshold_reproduces_the_accuracy():
    rng = np.random.default_rng(6)
    conf = rng.uniform(0.3, 1, 1000)
    correct = rng.uniform(size=1000) < conf
    t = S.atc_threshold(conf, correct)
    assert np.mean(conf > t) == pytest.approx(correct.mean(), abs=0.002)


def _texts(seed: int, n: int, shifted: bool = False) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "fine", "product", "works", "broken", "great", "poor", "delivery", "price", "quality"]
    extra = ["HOTEL", "room!!", "café", "2024", "#1", "lol"]
    out = []
    for _ in range(n):
        k = int(rng.integers(4, 14)) if not shifted else int(rng.integers(10, 30))
        w = list(rng.choice(words + (extra if shifted else []), size=k))
        out.append(" ".join(w) + ".")
    return out


def test_no_drift_between_two_samples_of_one_distribution_text_only():
    """Whole-report false alarms on same-distribution text (Bonferroni + effect sizes): at most alpha."""
    alarms = 0
    for i in range(10):
        prof = P.build_profile(_texts(100 + i, 400), None, seed=i)
        r = T.compare(prof, _texts(200 + i, 300), None, alpha=0.05)
        alarms += any(t["drift"] for t in r["tests"])
    assert alarms <= 1
    prof = P.build_profile(_texts(1, 400), None)
    r = T.compare(prof, _texts(2, 300, shifted=True), None, alpha=0.05)
    drifting = {t["feature"] for t in r["tests"] if t["drift"]}
    assert {"chars", "words", "oov_rate"} <= drifting


# ---------------------------------------------------------------------------------------------- end to end

def test_finetune_writes_a_reference_profile(trained_run):
    meta = json.loads((trained_run / "profile.json").read_text())
    assert meta["schema_version"] == 1 and meta["model"]["ref"] == "merged"
    assert {"chars", "tokens", "oov_rate", "unk_rate"} <= set(meta["features"])
    assert meta["model"]["label_names"] == ["negative", "neutral", "positive"]
    test_accuracy = json.loads((trained_run / "report.json").read_text())["metrics"]["test"]["accuracy"]
    assert meta["model"]["split"] == "test" and meta["model"]["accuracy"] == pytest.approx(test_accuracy)
    assert meta["model"]["max_length"] == 32  # drift truncates the new data the same way
    with np.load(trained_run / "profile.npz", allow_pickle=False) as z:
        assert z["emb_reference"].shape[1] <= P.PCA_DIMS and len(z["vocab"]) > 10
    assert json.loads((trained_run / "report.json").read_text())["artifacts"]["profile"] == "profile.json"


def test_drift_command_same_domain_passes_and_shifted_data_fails(trained_run, tmp_path, cli):
    same = write_csv(tmp_path / "same.csv", make_rows(300, seed=77))
    code, stdout, stderr = cli("drift", "--reference", trained_run, "--current", same, "--json", "-o", tmp_path / "ok")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["drift_detected"] is False and r["current"]["has_labels"] is True
    kinds = {t["kind"] for t in r["tests"]}
    assert {"text", "label", "model", "embedding", "accuracy"} <= kinds
    assert {"actual", "estimated", "reference"} <= set(r["accuracy"])
    assert (tmp_path / "ok" / "drift.png").stat().st_size > 1000 and (tmp_path / "ok" / "report.md").exists()

    from pathlib import Path

    shifted = Path(__file__).resolve().parent.parent / "recipes" / "data" / "reviews" / "shifted.csv"
    code, stdout, stderr = cli("drift", "--reference", trained_run, "--current", shifted, "--json")
    assert code == 5, stderr
    r = json.loads(stdout)
    assert r["drift_detected"] is True and r["top_drifting"]
    assert r["exit_code"] == 5 and any(not g["passed"] for g in r["gates"])
    assert "drift detected" in stderr


def test_drift_with_a_data_file_as_reference_and_no_model(tmp_path, cli):
    ref = write_csv(tmp_path / "ref.csv", make_rows(300, seed=1))
    cur = write_csv(tmp_path / "cur.csv", make_rows(300, seed=2))
    code, stdout, stderr = cli("drift", "-r", ref, "-c", cur, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert {t["kind"] for t in r["tests"]} == {"text", "label"}


def test_drift_refuses_bad_input_clearly(trained_run, tmp_path, cli):
    code, _, stderr = cli("drift", "--reference", tmp_path, "--current", tmp_path / "nope.csv")
    assert code == 3 and "profile.json" in stderr and "Traceback" not in stderr
    tiny = write_csv(tmp_path / "tiny.csv", make_rows(5, seed=3))
    code, _, stderr = cli("drift", "--reference", trained_run, "--current", tiny)
    assert code == 3 and "too few" in stderr
    code, _, stderr = cli("drift", "--current", tiny)
    assert code == 2 and "reference" in stderr


def test_evaluate_output_is_a_drift_reference(trained_run, tmp_path, cli):
    data = write_csv(tmp_path / "eval.csv", make_rows(200, seed=11))
    code, _, stderr = cli("evaluate", trained_run, "--data", data, "-o", tmp_path / "ev", "--no-robustness", "--json")
    assert code == 0, stderr
    meta = json.loads((tmp_path / "ev" / "profile.json").read_text())
    assert meta["rows"] == 200 and meta["model"]["rows"] == 200
    cur = write_csv(tmp_path / "cur.csv", make_rows(200, seed=12))
    code, stdout, stderr = cli("drift", "-r", tmp_path / "ev", "-c", cur, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["reference"]["model"] == str(trained_run.resolve())
