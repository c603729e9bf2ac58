"""The statistics behind `nncli drift`: two-sample tests (KS, chi-squared, MMD), effect sizes (PSI, Cramér's V,
domain-classifier AUC) with their materiality thresholds, and the ATC threshold for label-free accuracy."""

from __future__ import annotations

import math

import numpy as np

BINS = 10
MIN_PSI = 0.1            # "moderate shift" in credit-risk practice; raised for small samples (see psi_threshold)
MIN_CRAMER_V = 0.1       # Cohen's "small" effect
MIN_AUC = 0.6            # a domain classifier that separates the two samples this well is a material shift
PERMUTATIONS = 1000


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = BINS) -> tuple[float, int]:
    """Population stability index over bins cut at the reference's quantiles, with a bin for values at or below
    the reference's minimum and one for values above its maximum (new extremes are a shift too).

    Counts are smoothed by +0.5 so empty bins stay finite. Returns (psi, number of bins)."""
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) + 0.5
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) + 0.5
    p, q = r / r.sum(), c / c.sum()
    return float(np.sum((q - p) * np.log(q / p))), len(r)


def psi_threshold(n_ref: int, n_cur: int, n_bins: int, alpha: float) -> float:
    """PSI's materiality threshold: 0.1, or the (1 - alpha) quantile of PSI between two samples of one distribution.

    Under no shift, n_eff * PSI is approximately chi-squared with (bins - 1) degrees of freedom, n_eff = n*m/(n+m),
    so small samples get a higher threshold instead of false alarms."""
    from scipy.stats import chi2

    n_eff = n_ref * n_cur / max(n_ref + n_cur, 1)
    return max(MIN_PSI, float(chi2.ppf(1 - alpha, max(n_bins - 1, 1))) / max(n_eff, 1.0))


def ks(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    r = ks_2samp(ref, cur)
    return float(r.statistic), float(r.pvalue)


def chi2_categorical(ref_counts: dict, cur_counts: dict) -> tuple[float, float, float]:
    """Chi-squared test of homogeneity on the 2 x K table; returns (chi2, p, Cramér's V)."""
    from scipy.stats import chi2_contingency

    cats = sorted(set(ref_counts) | set(cur_counts), key=str)
    table = np.array([[ref_counts.get(k, 0) for k in cats], [cur_counts.get(k, 0) for k in cats]], dtype=float)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    stat, p, _, _ = chi2_contingency(table, correction=False)
    v = math.sqrt(stat / table.sum()) if table.sum() else 0.0   # min(rows, cols) - 1 = 1 for two samples
    return float(stat), float(p), float(v)


def mmd_permutation(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float]:
    """Squared maximum mean discrepancy (RBF kernel, median-distance bandwidth) and its permutation p-value."""
    z = np.vstack([x, y]).astype(np.float64)
    n = len(x)
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0)
    med = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / max(med, 1e-12))
    rng = np.random.default_rng(seed)
    w = np.empty((len(z), permutations + 1))
    base = np.r_[np.full(n, 1.0 / n), np.full(len(y), -1.0 / len(y))]
    w[:, 0] = base
    for i in range(permutations):
        w[:, i + 1] = base[rng.permutation(len(z))]
    stats = np.einsum("ij,ij->j", w, k @ w)
    p = (1 + np.sum(stats[1:] >= stats[0] - 1e-12)) / (permutations + 1)
    return float(stats[0]), float(p)


def domain_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling the current sample (1) from the reference (0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    z = np.vstack([x, y])
    t = np.r_[np.zeros(len(x)), np.ones(len(y))]
    folds = int(min(5, len(x), len(y)))
    if folds < 2:
        return 0.5
    s = cross_val_predict(LogisticRegression(max_iter=1000, C=1.0), z, t,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                          method="decision_function")
    return float(roc_auc_score(t, s))


def atc_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Average thresholded confidence: the threshold t at which the share of confidences above t equals the accuracy."""
    acc = float(np.mean(correct))
    if acc >= 1:  # no errors seen: anything less confident than every reference prediction counts as a likely error
        return float(np.min(confidence)) - 1e-9
    return float(np.quantile(confidence, 1 - acc)) if acc > 0 else 1.0
