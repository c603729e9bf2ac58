"""Model selection on small, imbalanced data (issue #16): the validation hold-out, the checkpoint ranking and what
report.json says about them. Pure functions and a tiny run; no real model."""

from __future__ import annotations

from collections import Counter

import numpy as np

from nncli.io.labelled import MAX_VALIDATION_SHARE, Split, stratified_split, validation_share
from nncli.train.classifier import SELECTION_RULE, selection, small_validation
from nncli.train.tasks.classify import ClassificationTask, majority_accuracy


def _split(counts: dict[int, int]) -> Split:
    labels = [c for c, n in counts.items() for _ in range(n)]
    return Split("train", "mem", [f"text {i}" for i in range(len(labels))], labels)


def test_validation_share_is_raised_for_a_rare_class_and_capped():
    assert validation_share({0: 900, 1: 100}, 0.1, 10) == 0.1            # 10 minority rows already
    assert validation_share({0: 55, 1: 40}, 0.1, 10) == 0.25             # 10/40, the cap
    assert validation_share({0: 191, 1: 151, 2: 50}, 0.1, 10) == 0.2     # 10/50
    assert validation_share({0: 191, 1: 13}, 0.1, 10) == MAX_VALIDATION_SHARE
    assert validation_share({0: 191, 1: 13}, 0.1, 0) == 0.1              # 0 = exactly the fraction
    assert validation_share({0: 100, 1: 20}, 0.4, 10) == 0.4             # never below what the user asked


def test_stratified_split_gives_the_rarest_class_its_rows_and_says_so():
    notes: list[str] = []
    train, val = stratified_split(_split({0: 400, 1: 150, 2: 50}), 0.1, seed=0, notes=notes, min_per_class=10)
    assert len(val) == 120 and len(train) == 480                          # 20% of 600, not 10%
    assert Counter(val.labels) == {0: 80, 1: 30, 2: 10}                   # still proportional
    assert notes[-1] == ("validation: a stratified 20% split of train (120 rows, seed 0, raised from 10% so the rarest "
                         "class has 10 rows)")
    notes.clear()
    _, val = stratified_split(_split({0: 400, 1: 150, 2: 50}), 0.1, seed=0, notes=notes, min_per_class=0)
    assert len(val) == 60 and notes[-1] == "validation: a stratified 10% split of train (60 rows, seed 0)"


class _Tiny:
    """The parts of ClassificationTask that rank() reads."""

    def __init__(self, metric, majority):
        self.metric, self.majority_accuracy = metric, majority


def test_rank_prefers_reaching_the_majority_class_then_the_metric_then_lower_loss():
    rank = ClassificationTask.rank
    t = _Tiny("macro_f1", 0.7)
    collapsed_to_minority = {"accuracy": 0.5, "macro_f1": 0.60, "loss": 0.5}
    sensible = {"accuracy": 0.75, "macro_f1": 0.55, "loss": 0.9}
    same_f1_lower_loss = {"accuracy": 0.75, "macro_f1": 0.55, "loss": 0.6}
    assert rank(t, sensible) > rank(t, collapsed_to_minority)
    assert rank(t, same_f1_lower_loss) > rank(t, sensible)
    assert rank(_Tiny("loss", 0.7), {"accuracy": 0.1, "macro_f1": 0.1, "loss": 0.2}) > \
        rank(_Tiny("loss", 0.7), {"accuracy": 0.9, "macro_f1": 0.9, "loss": 0.3})


def test_majority_accuracy_ignores_unlabelled_rows():
    assert majority_accuracy(np.array([1, 1, 0, -100, -100, -100]), np.array([1, 0, 1, 1])) == 0.75


def test_selection_states_the_rule_and_warns_on_a_thin_validation_split():
    class Data:
        label_names = ["against", "favor", "none"]
        validation = Split("validation", "v.tsv", ["a"] * 40, [0] * 2 + [1] * 21 + [2] * 17, rows_read=40)

    class State:
        best_step = 92

    report = {"metrics": {"validation": {"n": 40, "macro_f1": 0.61, "ci95": {"macro_f1": [0.45, 0.8]}}}}
    sel = selection(report, Data, _tiny_task(), State)
    assert sel["rule"] == SELECTION_RULE.format(metric="macro_f1")
    assert sel["validation_source"] == "file" and sel["validation_rows"] == 40 and sel["best_step"] == 92
    assert sel["validation_class_counts"] == {"against": 2, "favor": 21, "none": 17} and sel["ci95"] == [0.45, 0.8]
    (w,) = small_validation(sel)
    assert w.startswith("validation has fewer than 10 rows of 'against' 2: the checkpoint choice and the validation scores "
                        "are noisy (95% interval of validation macro_f1: 0.450-0.800)")


def _tiny_task():
    t = _Tiny("macro_f1", 0.525)
    t.n_classes = 3
    return t


class _Probed(_Tiny):
    """A task whose last validation evaluation predicted `new`, for beats_reference."""

    def __init__(self, labels, new, n_classes=2):
        super().__init__("macro_f1", 0.5)
        self.n_classes, self.enc = n_classes, {"validation": {"labels": np.asarray(labels)}}
        self.probs = {"validation": np.eye(n_classes)[np.asarray(new)]}

    predictions = ClassificationTask.predictions
    beats_reference = ClassificationTask.beats_reference
    reference_metric = ClassificationTask.reference_metric


def test_a_checkpoint_replaces_the_probe_only_when_it_beats_it_beyond_noise():
    y = np.array([0, 1] * 100)
    probe = y.copy()
    probe[:60] = 1 - probe[:60]                                     # the probe: 140 of 200 right
    better = y.copy()
    better[:10] = 1 - better[:10]                                   # 190 of 200 right: far beyond noise
    slightly = probe.copy()
    slightly[:2] = y[:2]                                            # 2 more right of 200: noise
    assert _Probed(y, probe).beats_reference(probe.tolist()) == 0.5
    assert _Probed(y, better).beats_reference(probe.tolist()) == 1.0
    assert _Probed(y, slightly).beats_reference(probe.tolist()) == 0.0
    # in the ranking the probe sits between the two: the slight gain does not displace it, the real one does
    m = {"accuracy": 0.7, "macro_f1": 0.7, "loss": 0.6}
    rank = ClassificationTask.rank
    at_probe = rank(_Probed(y, probe), m, probe.tolist())
    assert rank(_Probed(y, slightly), {**m, "macro_f1": 0.71}, probe.tolist()) < at_probe
    assert rank(_Probed(y, better), {**m, "macro_f1": 0.95}, probe.tolist()) > at_probe
    assert rank(_Probed(y, probe), m) == (1.0, 0.7, -0.6)           # no probe: the ranking is unchanged


def test_the_probe_comparison_holds_its_level_over_every_planned_evaluation():
    """Four more right of 200 (none worse): in ~2% of resamples none of the four is drawn, so the gain passes one test
    at 5% but not each of six at 5%/6 (Bonferroni); a clear gain passes both."""
    y = np.array([0, 1] * 100)
    probe = y.copy()
    probe[:60] = 1 - probe[:60]
    four, twelve = probe.copy(), probe.copy()
    four[:4], twelve[:12] = y[:4], y[:12]
    m, rank = {"accuracy": 0.7, "macro_f1": 0.72, "loss": 0.6}, ClassificationTask.rank
    assert rank(_Probed(y, four), m, probe.tolist())[0] == 1.0
    assert rank(_Probed(y, four), m, probe.tolist(), comparisons=6)[0] == 0.0
    assert rank(_Probed(y, twelve), m, probe.tolist(), comparisons=6)[0] == 1.0


def _features(n_major: int, n_minor: int, shift: float, seed: int = 0):
    """384-d features of two classes: the minority class `shift` apart from the majority's along one direction."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * n_major + [1] * n_minor)
    x = rng.normal(size=(len(y), 384))
    x[:, 0] += shift * y
    return x, y


def test_the_probe_keeps_the_loss_weights_when_they_reach_the_majority_class():
    from nncli.train.head_init import fit_probe

    x, y = _features(120, 60, shift=4.0)                            # separable: balanced weights cost no accuracy
    w, b, info = fit_probe(x, y, 2, np.array([0.75, 1.5]), seed=0)
    assert info["class_weights"] == "loss weights" and "weightings_tried" not in info
    assert info["cv_accuracy"] >= info["majority_accuracy"] == round(120 / 180, 4)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.95


def test_the_probe_drops_class_weights_that_push_it_below_the_majority_class():
    """Nearly inseparable, 85:15: balanced weights make the probe predict the rare class often and lose accuracy to
    the majority; the guard falls back to a weaker weighting and says what it tried."""
    from nncli.train.head_init import fit_probe

    x, y = _features(170, 30, shift=0.6)
    weight = len(y) / (2 * np.bincount(y))                          # what class_weights=balanced gives the loss
    w, b, info = fit_probe(x, y, 2, weight, seed=0)
    tried = info["weightings_tried"]
    assert tried["loss weights"] < info["majority_accuracy"] == 0.85
    assert tried["their square root"] < 0.85 and info["class_weights"] == "none"   # the first one that reaches it
    assert info["cv_accuracy"] == tried["none"] >= 0.85
    assert ((x @ w.T + b).argmax(1) == 0).mean() > 0.85              # predicts the majority class at least as often


def test_the_probe_scores_log_loss_exactly_as_sklearns_scorer():
    """neg_log_loss skips sklearn's per-call validation; its value must be sklearn's, bit for bit, for binary and
    multiclass probes and for a test fold that lacks a class (the probe's cross-validation scores with it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from nncli.train.head_init import neg_log_loss

    rng = np.random.default_rng(0)
    for k in (2, 3):
        y = rng.integers(0, k, 90)
        x = rng.normal(size=(90, 5)) + y[:, None]
        lr = LogisticRegression(C=1e4, max_iter=2000).fit(x[:60], y[:60])   # near-certain probabilities
        for rows in (slice(60, 90), np.flatnonzero(y[60:] != 0) + 60):
            expected = -log_loss(y[rows], lr.predict_proba(x[rows]), labels=lr.classes_)   # what its scorer computes
            assert neg_log_loss(lr, x[rows], y[rows]) == expected


def test_the_probes_c_search_stops_early_on_the_same_c_as_the_whole_grid():
    """cv_path stops PATH_PATIENCE Cs past the best; on U-shaped held-out log loss that is LogisticRegressionCV's C
    over the whole grid (the same warm-started path), with its out-of-fold accuracy at that C."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from nncli.train.head_init import CS, cv_path, neg_log_loss

    stopped_early = 0
    for seed, (n, k, shift) in enumerate([(120, 2, 0.8), (200, 3, 0.5), (300, 4, 1.5), (90, 2, 3.0)]):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, k, n)
        x = rng.normal(size=(n, 20)) + shift * np.eye(k, 20)[y]
        folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y))
        full = LogisticRegressionCV(Cs=CS, cv=folds, scoring=neg_log_loss, max_iter=2000).fit(x, y)
        c, acc = cv_path(x, y, None, folds)
        assert c == float(np.atleast_1d(full.C_)[0])
        oof = cross_val_predict(LogisticRegression(C=c, max_iter=2000), x, y, cv=folds)
        assert abs(acc - (oof == y).mean()) <= 2 / n                # warm- vs cold-started fits: at most a row apart
        stopped_early += c < CS[-3]
    assert stopped_early >= 2                                       # the early stop was exercised, not just the grid


def test_probe_features_come_back_in_row_order_whatever_the_batching():
    """features() batches the rows longest first; what it returns must still be row i's features at position i."""
    import torch

    from nncli.train.head_init import features

    class Task:
        rows = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [2, 2], [7, 1, 3, 3]]

        def lengths(self, split):
            return np.array([len(r) for r in self.rows])

        def collate(self, split, idx):
            from nncli.train.batching import pad

            mask_rows = [[1] * len(r) for r in self.rows]
            return {"inputs": {"input_ids": pad(self.rows, idx, 0), "attention_mask": pad(mask_rows, idx, 0)}}

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb, self.head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            m = attention_mask.unsqueeze(-1).float()
            return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1))

    model, task = Model(), Task()
    idx = [4, 0, 2, 3]
    expected = np.stack([model.emb(torch.tensor(task.rows[i])).mean(0).detach().numpy() for i in idx])
    for batch_size in (1, 2, 64):
        got = features(model, task, model.head, idx, batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_auto_epochs_see_about_the_same_number_of_examples_whatever_the_data_size():
    from nncli.recipe.finetune import AUTO_EPOCHS_EXAMPLES
    from nncli.train.preflight import choose_epochs

    got = {n: choose_epochs("auto", n)[0] for n in (40, 620, 1000, 1500, 3000, 3257, 8000, 67000)}
    assert got == {40: 6, 620: 6, 1000: 6, 1500: 4, 3000: 2, 3257: 2, 8000: 1, 67000: 1}
    for n in (1500, 3000, 3257):     # inside the 1..6 range the examples seen stay within half an epoch of the budget
        assert abs(got[n] * n - AUTO_EPOCHS_EXAMPLES) <= n / 2
    assert choose_epochs(2.5, 3000) == (2.5, "set in the recipe")
    assert "3,257 training rows" in choose_epochs("auto", 3257)[1]


def test_auto_epochs_are_the_text_classifier_default_and_bad_values_are_refused():
    import pytest
    from pydantic import ValidationError

    from nncli.recipe.finetune import ClassifierRecipe, DistillRecipe

    data = {"data": {"train": "a.csv"}}
    assert ClassifierRecipe.model_validate(data).train.epochs == "auto"
    assert ClassifierRecipe.model_validate({**data, "train": {"epochs": 3}}).train.epochs == 3
    assert DistillRecipe.model_validate({**data, "teacher": "t"}).train.epochs == 6     # students keep their 6
    for bad in (0, -1, "many", 20000):
        with pytest.raises(ValidationError, match="epochs"):
            ClassifierRecipe.model_validate({**data, "train": {"epochs": bad}})


def test_a_run_records_the_epochs_auto_chose_so_its_recipe_repeats_it(tiny_bert, tiny_data, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path / "run"
    args = ["finetune", "--model", str(tiny_bert), "--data", str(tiny_data["train"]), "--validation",
            str(tiny_data["validation"]), "--output", str(out), "train.max_steps=2", "data.max_length=32", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (0, 5), r.output
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["epochs"]["epochs"] == 6.0 and report["data"]["epochs"]["chosen"].startswith("auto")
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["epochs"] == 6.0
