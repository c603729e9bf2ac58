"""Metrics against scikit-learn (to 1e-6) and an independent ECE implementation; temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm

from nncli.evaluate import metrics as M
from nncli.io.inference import softmax


def _data(n=500, k=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    y = np.array([rng.choice(k, p=p) for p in softmax(logits)])
    return y, softmax(logits), logits


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_metrics_match_sklearn(k):
    y, probs, _ = _data(k=k, seed=k)
    pred = probs.argmax(1)
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    assert M.macro_f1(y, pred, k) == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    pc = M.per_class(y, pred, k)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    np.testing.assert_allclose(pc["precision"], p, atol=1e-6)
    np.testing.assert_allclose(pc["recall"], r, atol=1e-6)
    np.testing.assert_allclose(pc["f1"], f, atol=1e-6)
    np.testing.assert_array_equal(pc["support"], s)
    np.testing.assert_array_equal(M.confusion(y, pred, k), skm.confusion_matrix(y, pred, labels=list(range(k))))
    assert M.log_loss(y, probs) == pytest.approx(skm.log_loss(y, probs, labels=list(range(k))), abs=1e-6)
    expected_brier = skm.brier_score_loss(y, probs[:, 1]) if k == 2 else skm.brier_score_loss(y, probs, labels=list(range(k)))
    assert M.brier(y, probs) == pytest.approx(expected_brier, abs=1e-6)


def test_macro_f1_with_a_class_never_predicted_matches_sklearn():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1])
    assert M.macro_f1(y, pred, 3) == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-6)


def _ece_reference(y, probs, bins):
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    worst = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        in_bin = [(c, p == t) for c, p, t in zip(conf, pred, y) if (lo < c <= hi) or (b == 0 and c == 0)]
        if in_bin:
            gap = abs(np.mean([x[1] for x in in_bin]) - np.mean([x[0] for x in in_bin]))
            total += len(in_bin) / len(y) * gap
            worst = max(worst, gap)
    return total, worst


@pytest.mark.parametrize("bins", [5, 10, 15])
def test_ece_and_mce_match_reference(bins):
    y, probs, _ = _data(n=800, seed=bins)
    e, m, table = M.ece(y, probs, bins)
    ref_e, ref_m = _ece_reference(y, probs, bins)
    assert e == pytest.approx(ref_e, abs=1e-9) and m == pytest.approx(ref_m, abs=1e-9)
    assert sum(b["count"] for b in table) == len(y)


def test_perfectly_calibrated_model_has_small_ece():
    y, probs, _ = _data(n=20000, seed=3)  # labels drawn from the probabilities themselves
    assert M.ece(y, probs, 15)[0] < 0.02


def test_temperature_scaling_recovers_true_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(4000, 3)) * 1.5
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    overconfident = true_logits * 2.5  # a model 2.5x too sharp
    t = M.fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.1)
    assert M.ece(y, softmax(overconfident / t))[0] < M.ece(y, softmax(overconfident))[0]


def test_bootstrap_interval_contains_point_estimate():
    y, probs, _ = _data(n=300, seed=9)
    pred = probs.argmax(1)
    lo, hi = M.bootstrap(lambda a, b: float((a == b).mean()), [y, pred], 500, 0)
    assert lo <= M.accuracy(y, pred) <= hi and hi - lo < 0.2
    ci = M.bootstrap_ci(y, pred, 3, n=300)
    assert ci["macro_f1"][0] <= M.macro_f1(y, pred, 3) <= ci["macro_f1"][1]


@pytest.mark.parametrize("k", [2, 4])
def test_vectorised_macro_f1_over_resamples_equals_the_per_resample_one(k):
    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, k, 37), rng.integers(0, k, 37)
    pred[:5] = 0                                                    # and some resamples miss a class entirely
    idx = np.vstack([rng.integers(0, 37, (50, 37)), np.tile(np.arange(6), (3, 7))[:, :37]])
    expected = [M.macro_f1(y[i], pred[i], k) for i in idx]
    assert np.allclose(M.macro_f1_rows(y, pred, idx, k), expected, atol=1e-12)


def test_vectorised_bootstrap_draws_the_same_resamples_in_chunks():
    rng = np.random.default_rng(4)
    y, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    loop = M.bootstrap(lambda a, b: M.macro_f1(a, b, 3), [y, pred], 700, seed=5)
    whole = M.bootstrap_rows(lambda i: M.macro_f1_rows(y, pred, i, 3), 200, 700, seed=5)
    chunks = list(M.resamples(200, 700, seed=5, cells=200 * 64))   # 64 resamples a chunk: 11 chunks
    assert len(chunks) == 11 and sum(len(c) for c in chunks) == 700
    assert np.allclose(loop, whole, atol=1e-12)
    assert np.array_equal(np.vstack(chunks), np.random.default_rng(5).integers(0, 200, (700, 200)))
