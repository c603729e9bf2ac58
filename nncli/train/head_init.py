"""Linear probe, then fine-tune (LP-FT, Kumar et al. 2022): the new classification head starts as a logistic
regression fitted on the frozen model's features instead of at random.

On small data a randomly initialised head spends the first epochs learning what a linear probe finds in seconds, and
its early gradients distort the pretrained features; measured on TweetEval stance (benchmarks/README.md), frozen
embeddings + logistic regression beat a fine-tune from a random head on two of five tasks. Here the features are
exactly what the head's last linear layer reads (after the pooler, in evaluation mode), the regression picks its
regularisation by stratified cross-validation on the training rows (log loss) and uses the training loss's class
weights unless they push its out-of-fold accuracy below the majority class's (then a weaker weighting: fit_probe),
and its coefficients are folded back through the standardisation into the layer's weight and bias, so the
model before the first optimizer step *is* the linear probe. The loop then evaluates that start as a candidate
(FitConfig.eval_at_start) and keeps its validation predictions: a fine-tuned checkpoint replaces the probe only when
it beats it beyond paired-bootstrap noise (ClassificationTask.beats_reference), else the probe is what is kept.
"""

from __future__ import annotations

import numpy as np

from nncli.core import console

MAX_ROWS = 5000                   # a seeded stratified sample beyond this: the probe is a start, not the model
CS = np.logspace(-3, 1, 9)
PATH_PATIENCE = 2                 # Cs past the best before the search stops


def head_linear(model, n_classes: int):
    """The last linear layer of the classification head (the trainable copy under peft), or None."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(base, "base_model_prefix", "")
    found = None
    for name, module in base.named_modules():
        if name.split(".")[0] == prefix or "original_module" in name:
            continue
        if isinstance(module, torch.nn.Linear) and module.out_features == n_classes:
            found = module
    return found


def is_new_head(newly_initialised: list[str]) -> bool:
    return any(n.split(".")[0] in ("classifier", "score") for n in newly_initialised)


def features(model, task, layer, idx: list[int], batch_size: int = 64) -> np.ndarray:
    """What `layer` reads for the training rows `idx` (in that order), with the model in evaluation mode (no dropout).
    Batched longest first, as evaluation is: in file order a batch pads to its longest text (2.9x the time on SST-2)."""
    import torch

    from nncli.train.batching import eval_shard

    batches, _ = eval_shard(np.asarray(task.lengths("train"))[idx], batch_size)   # positions in idx, longest first
    seen: list = []
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in batches:
                model(**task.collate("train", [idx[j] for j in b])["inputs"])
    finally:
        handle.remove()
        model.train(was_training)
    out = np.empty((len(idx), seen[0].shape[1]))
    out[np.concatenate(batches)] = torch.cat(seen).numpy()
    return out


def sample(labels: np.ndarray, seed: int) -> list[int]:
    idx = np.flatnonzero(labels >= 0)
    if len(idx) > MAX_ROWS:
        from sklearn.model_selection import train_test_split

        idx, _ = train_test_split(idx, train_size=MAX_ROWS, random_state=seed, stratify=labels[idx])
    return sorted(int(i) for i in idx)


def weightings(weight: np.ndarray | None) -> list[tuple[str, np.ndarray | None]]:
    """The training loss's class weights, then weaker ones (their square root, none): the probe's candidates."""
    if weight is None:
        return [("none", None)]
    root = np.sqrt(weight) / np.sqrt(weight).mean()
    return [("loss weights", weight), ("their square root", root), ("none", None)]


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, weight: np.ndarray | None, seed: int):
    """(weight matrix n_classes x d, bias, what was fitted) of a class-weighted logistic regression.

    Regularisation by cross-validated log loss; class weights as the training loss's, unless with them the probe's
    out-of-fold accuracy falls below the majority class's (balanced weights can push a weak probe into the rare
    classes): then the first weaker weighting that reaches it, else the one with the best out-of-fold accuracy: the
    same accuracy-first rule the loop ranks checkpoints by."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    mu, sd = x.mean(0), np.full(x.shape[1], x.std() + 1e-6)   # one scale for all features: a per-feature one would
    # divide the fitted weights by near-constant features' tiny spread and blow up the logits (and export's parity)
    z = (x - mu) / sd
    present = np.unique(y)
    folds = int(min(5, np.bincount(y)[present].min()))
    info = {"cv_folds": folds, "class_weights": "loss weights" if weight is not None else "none"}
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        lr, info = _weighted_cv(z, y, weight, cv, info)
    else:
        info["C"] = 0.1
        cw = None if weight is None else {int(c): float(weight[c]) for c in present}
        lr = LogisticRegression(C=0.1, class_weight=cw, max_iter=2000).fit(z, y)
    coef, intercept = lr.coef_, lr.intercept_
    if len(present) == 2 and coef.shape[0] == 1:                     # binary: one logit -> two symmetric ones
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    w = np.zeros((n_classes, x.shape[1]))
    b = np.full(n_classes, float(intercept.min()) - 10.0)            # a class absent from training is never predicted
    w[present], b[present] = coef / sd, intercept - (coef * (mu / sd)).sum(1)
    return w, b, info


def neg_log_loss(estimator, x: np.ndarray, y: np.ndarray) -> float:
    """sklearn's "neg_log_loss" scorer, bit for bit (same clipping, same mean), without its per-call input validation,
    which is most of a small probe's cross-validation time (up to 9 C values x 5 folds x 3 weightings). Not
    metrics.log_loss, which clips at 1e-15 and renormalises: the probe's choice of C stays sklearn's."""
    p = estimator.predict_proba(x)
    eps = np.finfo(p.dtype).eps
    picked = np.clip(p, eps, 1 - eps)[np.arange(len(y)), np.searchsorted(estimator.classes_, y)]
    return -float(np.mean(-np.log(picked)))


def _weighted_cv(z: np.ndarray, y: np.ndarray, weight, cv, info: dict):
    """The fitted regression for the first weighting whose out-of-fold accuracy reaches the majority class's."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    majority = float(np.bincount(y).max() / len(y))
    folds = list(cv.split(z, y))
    tried = []
    for name, wt in weightings(weight):
        cw = None if wt is None else {int(c): float(wt[c]) for c in present}
        c, acc = cv_path(z, y, cw, folds)
        tried.append((acc, name, c, cw))
        if acc >= majority:
            break
    acc, name, c, cw = tried[-1] if tried[-1][0] >= majority else max(tried, key=lambda t: t[0])
    info.update(C=c, class_weights=name, cv_accuracy=round(acc, 4), majority_accuracy=round(majority, 4))
    if len(tried) > 1:
        info["weightings_tried"] = {t[1]: round(t[0], 4) for t in tried}
    return LogisticRegression(C=c, class_weight=cw, max_iter=2000).fit(z, y), info


def cv_path(z: np.ndarray, y: np.ndarray, cw, folds, patience: int = PATH_PATIENCE) -> tuple[float, float]:
    """(C, out-of-fold accuracy at that C): LogisticRegressionCV's search (C ascending, each fold's fit warm-started
    from the previous C's, the C with the best mean held-out log loss), stopped once `patience` Cs in a row score
    below the best. Held-out log loss against C is U-shaped, so this is the same C as the whole grid at a fraction of
    the time: the large Cs it skips need the most iterations (on 3,257 emotion rows 36 s -> 8 s, same C)."""
    from sklearn.linear_model import LogisticRegression

    models = [LogisticRegression(class_weight=cw, max_iter=2000, warm_start=True) for _ in folds]
    scores, preds = [], []
    for c in CS:
        fold_scores, pred = [], np.empty_like(y)
        for m, (tr, te) in zip(models, folds):
            m.set_params(C=float(c)).fit(z[tr], y[tr])
            fold_scores.append(neg_log_loss(m, z[te], y[te]))
            pred[te] = m.predict(z[te])
        scores.append(float(np.mean(fold_scores)))
        preds.append(pred)
        best = int(np.argmax(scores))
        if len(scores) - 1 - best >= patience:
            break
    return float(CS[best]), float((preds[best] == y).mean())


def linear_probe_init(model, task, seed: int) -> dict | None:
    """Set the head's last linear layer to the linear probe; returns what was done (for report.json), or None."""
    import torch

    layer = head_linear(model, task.n_classes)
    if layer is None:
        console.warn("head_init=linear_probe: no linear layer with one output per class in the head; random head kept")
        return None
    labels = np.asarray(task.enc["train"]["labels"])
    idx = sample(labels, seed)
    x = features(model, task, layer, idx)
    w, b, fitted = fit_probe(x, labels[idx], task.n_classes, task.weight, seed)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
    pred = (x @ w.T + b).argmax(1)
    out = {"method": "linear_probe", "rows": len(idx), **fitted,
           "train_accuracy": round(float((pred == labels[idx]).mean()), 4)}
    console.log(f"head: linear probe on the frozen features of {len(idx)} training rows (C={fitted['C']:g}, "
                f"{fitted['cv_folds']}-fold CV, class weights: {fitted['class_weights']}, train accuracy "
                f"{out['train_accuracy']:.3f}); the loop scores it before the first step as a candidate")
    if "weightings_tried" in fitted:
        console.log(f"head: with the loss's class weights the probe's out-of-fold accuracy fell below the majority "
                    f"class's ({fitted['majority_accuracy']:.3f}): tried {fitted['weightings_tried']}")
    return out
