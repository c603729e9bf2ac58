"""Temperature scaling that only changes a model when the validation data can tell it how.

Temperature scaling (Guo et al. 2017) fits one T > 0 by maximum likelihood on validation logits. On
validation data the model already gets (nearly) right, the likelihood keeps improving as T -> 0: every
prediction is pushed towards certainty, and on new data the wrong answers become certain too. So the
fitted T is used only when the data supports it. The rule, in order:

1. **Enough rows** (MIN_ROWS): fewer, and T stays 1.
2. **Evidence against T = 1**: a likelihood-ratio test, 2 n (NLL(1) - NLL(T_hat)) against chi-squared
   with 1 degree of freedom (Wilks). Not significant at ALPHA: T stays 1, the model is calibrated as far
   as this data can tell.
3. **Softening** (T_hat > 1, the model is over-confident): T_hat is used. It makes predictions less
   certain, the safe direction.
4. **Sharpening** (T_hat < 1) needs evidence from the errors, since only wrong predictions bound how
   certain the model may be:
   - at least MIN_ERRORS validation errors. With k errors, a bootstrap resample misses all of them with
     probability (1 - k/n)^n ~ e^-k, and on such a resample T_hat runs to the search bound (no finite
     maximum). The 95% interval of T_hat is finite only if that happens in under 2.5% of resamples:
     e^-k < 0.025, k >= 4. Fewer errors: sharpening is refused and T stays 1.
   - T is the upper end of the 95% bootstrap interval of T_hat (BOOTSTRAP resamples, seeded): the least
     sharpening the data supports, never below T_hat. If the interval reaches 1, T stays 1.

The caller compares the expected calibration error on its evaluation data (held out from the fit) with
and without the temperature, and says so when the temperature made it worse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MIN_ROWS = 30
MIN_ERRORS = 4       # e^-4 = 0.018 < 0.025: the 95% bootstrap interval of a sharpening T is finite
ALPHA = 0.05
BOOTSTRAP = 200
T_BOUNDS = (0.05, 20.0)


@dataclass
class TemperatureFit:
    temperature: float          # the one to use
    status: str                 # fitted | bounded | unchanged | refused
    reason: str
    mle: float | None = None    # the maximum-likelihood T (what plain temperature scaling would use)
    ci95: list[float] | None = None
    rows: int = 0
    errors: int = 0
    lr_statistic: float | None = None
    lr_p_value: float | None = None
    rule: dict = field(default_factory=lambda: {"min_rows": MIN_ROWS, "min_errors_to_sharpen": MIN_ERRORS, "alpha": ALPHA,
                                                "bootstrap": BOOTSTRAP})

    def as_dict(self) -> dict:
        return asdict(self)


def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of softmax(logits / t)."""
    z = logits / t
    z = z - z.max(1, keepdims=True)
    return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())


def mle_temperature(logits, y_true) -> float:
    """The T in T_BOUNDS minimising the NLL of softmax(logits / T), by a bounded 1-D search on log T."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))


def bootstrap_temperature(logits, y, n: int = BOOTSTRAP, seed: int = 0) -> list[float]:
    """Percentile 95% interval of the maximum-likelihood T over resampled validation rows."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    rng = np.random.default_rng(seed)
    fits = [mle_temperature(logits[idx], y[idx]) for idx in (rng.integers(0, len(y), len(y)) for _ in range(n))]
    return [float(np.percentile(fits, 2.5)), float(np.percentile(fits, 97.5))]


def fit(logits, y_true, seed: int = 0) -> TemperatureFit:
    """Decide the temperature for these validation logits and labels (see the module docstring for the rule)."""
    from scipy.stats import chi2

    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y_true)
    n = len(y)
    k = int((logits.argmax(1) != y).sum()) if n else 0
    if n < MIN_ROWS:
        return TemperatureFit(1.0, "refused", f"only {n} validation rows (at least {MIN_ROWS} are needed to fit a temperature)",
                              rows=n, errors=k)
    t_hat = mle_temperature(logits, y)
    lr = max(0.0, 2 * n * (nll(logits, y, 1.0) - nll(logits, y, t_hat)))
    p = float(chi2.sf(lr, 1))
    base = dict(mle=t_hat, rows=n, errors=k, lr_statistic=lr, lr_p_value=p)
    if t_hat < 1 and k < MIN_ERRORS:
        return TemperatureFit(1.0, "refused", f"only {k} error(s) in {n} validation rows: a temperature below 1 (the fit "
                              f"wants {t_hat:.3f}) would make every prediction more certain, and at least {MIN_ERRORS} errors "
                              "are needed to tell how far; kept 1. Calibrate on a larger or harder validation split", **base)
    if p >= ALPHA:
        return TemperatureFit(1.0, "unchanged", f"no evidence that the model is miscalibrated on {n} validation rows "
                              f"(likelihood-ratio test of T=1: p={p:.3g}); kept 1", **base)
    if t_hat >= 1:
        return TemperatureFit(t_hat, "fitted", f"over-confident on validation: T={t_hat:.3f} (likelihood-ratio p={p:.3g})",
                              **base)
    ci = bootstrap_temperature(logits, y, seed=seed)
    if ci[1] >= 1:
        return TemperatureFit(1.0, "unchanged", f"the 95% bootstrap interval of T [{ci[0]:.3f}, {ci[1]:.3f}] reaches 1: "
                              "too little evidence to make the model more certain; kept 1", ci95=ci, **base)
    t = max(ci[1], t_hat)
    return TemperatureFit(t, "bounded", f"under-confident on validation: the fit wants T={t_hat:.3f}; used {t:.3f}, the "
                          f"upper end of its 95% bootstrap interval [{ci[0]:.3f}, {ci[1]:.3f}] (the least sharpening the data "
                          "supports)", ci95=ci, **base)
