"""`nncli audit`: find mislabelled rows, duplicates and leakage, outliers and unusable texts before training.

The rows of every given file (train, and optionally validation and test) are pooled; each finding names the file's
split and the row number in that file (0 = the first data row after the header, as pandas numbers them). The
detectors are in audit_checks.py, the README/HTML rendering in audit_render.py. An audit never writes to its
inputs: `--fix` writes a cleaned copy of the train file elsewhere.

Row numbers are 1-based data rows of each file (the header is not counted), as everywhere in nncli (`Split.rows`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, now
from nncli.core.rundir import RunDir
from nncli.evaluate import audit_checks as ck

KIND_ORDER = ("label_issue", "label_conflict", "cross_split_duplicate", "duplicate", "empty_text", "missing_label",
              "boilerplate", "outlier", "script", "length", "truncated")
FIX_KINDS = {"label_issue", "label_conflict", "duplicate", "empty_text", "missing_label", "boilerplate"}
METRICS = ("rows", "flagged_rows", "flagged_rate", "label_issues", "label_issue_rate", "estimated_noise_rate", "duplicates",
           "cross_split_duplicates", "label_conflicts", "outliers", "outlier_rate", "empty_texts", "missing_labels",
           "boilerplate", "script_mix", "length_extremes", "truncated", "truncated_rate", "imbalance_ratio")


@dataclass
class Pool:
    """All audited rows of all splits, in order (train, validation, test; then row number)."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray
    split: list[str]
    rows: list[int]
    label_names: list[str]
    dropped: list[dict] = field(default_factory=list)     # findings for rows to_split dropped (empty text, no label)


# ---------------------------------------------------------------------------------------------- reading

def kept_rows(table, split, clean: bool) -> list[int]:
    """Row numbers (in the file) of the rows a Split kept."""
    from nncli.io.labelled import clean_text, normalise_label

    rows = getattr(split, "rows", None)
    if rows is not None:
        return list(rows)
    texts = table.columns[split.columns["text"]]
    lab = split.columns.get("label")
    labels = table.columns[lab] if lab else None
    return [i + 1 for i, raw in enumerate(texts)
            if clean_text(raw, clean).strip() and (labels is None or normalise_label(labels[i]) is not None)]


def load(recipe) -> tuple[Pool, dict, list[str]]:
    """Read every file; returns the pool, the tables by split (for --fix) and the readers' notes."""
    from nncli.io.labelled import sort_labels, to_split
    from nncli.io.tables import is_local, read_table

    d = recipe.data
    sources = [("train", d.train, d.train_split)]
    for role, path, hub_split, default in (("validation", d.validation, d.validation_split, "validation"),
                                           ("test", d.test, d.test_split, "test")):
        src = path or (d.train if hub_split and not is_local(d.train) else None)
        if src:
            sources.append((role, src, hub_split or default))
    tables, splits, notes = {}, [], []
    for role, src, hub_split in sources:
        table = read_table(src, role=role, encoding=d.encoding, config=d.config, split=hub_split)
        s, names = to_split(table, role, d.text_column, d.label_column, d.text_pair_column, clean=d.clean_text,
                            keep_columns=False)
        if len(s) == 0:
            raise InputError(f"{role} data {Path(str(src)).name} has no usable rows ({s.rows_read} read, all empty or "
                             "unlabelled)",
                             f"check data.text_column={d.text_column} and data.label_column={d.label_column}")
        tables[role] = table
        splits.append((role, s, names, kept_rows(table, s, d.clean_text)))
        notes.extend(table.notes)
    names_all = {n for _, _, names, _ in splits for n in names}
    if len(names_all) < 2:
        raise InputError(f"the data has a single label ({next(iter(names_all))!r}): label checks need at least two classes",
                         "check data.label_column")
    label_names = sort_labels(names_all)
    index = {n: i for i, n in enumerate(label_names)}
    texts, pairs, labels, split_of, rows, dropped = [], [], [], [], [], []
    for role, s, names, kept in splits:
        texts += s.texts
        pairs += (s.pairs or [""] * len(s)) if d.text_pair_column else []
        labels += [index[n] for n in names]
        split_of += [role] * len(s)
        rows += kept
        dropped += _dropped(tables[role], s, set(kept), role, d.clean_text)
    pool = Pool(texts, pairs if d.text_pair_column else None, np.array(labels, dtype=int), split_of, rows, label_names, dropped)
    return pool, tables, notes


def _dropped(table, s, kept: set[int], role: str, clean: bool) -> list[dict]:
    from nncli.io.labelled import clean_text

    raw = table.columns[s.columns["text"]]
    out = []
    for i in range(table.n_rows):
        if i + 1 not in kept:
            empty = not clean_text(raw[i], clean).strip()
            out.append({"split": role, "row": i + 1, "kind": "empty_text" if empty else "missing_label", "score": 1.0,
                        "label": None,
                        "text": "" if raw[i] is None else str(raw[i])[:300], "evidence": {}})
    return out


def pool_of(data) -> Pool:
    """A Pool from a LabelledData (pre-flight): row numbers are Split.rows when present, else positions in the split."""
    texts, pairs, labels, split_of, rows = [], [], [], [], []
    has_pairs = data.train.pairs is not None
    for s in data.splits():
        texts += s.texts
        pairs += (s.pairs or [""] * len(s)) if has_pairs else []
        labels += list(s.labels)
        split_of += [s.name] * len(s)
        rows += list(getattr(s, "rows", None) or range(1, len(s) + 1))
    return Pool(texts, pairs if has_pairs else None, np.array(labels, dtype=int), split_of, rows, list(data.label_names))


# ---------------------------------------------------------------------------------------------- representation

@dataclass
class Representation:
    features: object            # what the cheap model learns from
    vectors: object             # L2-normalised rows for similarities
    kind: str                   # tfidf | embeddings
    lengths: np.ndarray | None  # tokens per text (with a model)
    info: dict


def represent(pool: Pool, model: str | None, *, max_length: int = 128, batch_size: int = 64, threads: int | None = None,
              trust_remote_code: bool = False, allow_pickle: bool = False) -> Representation:
    joined = pool.texts if pool.pairs is None else [f"{a} [SEP] {b}" for a, b in zip(pool.texts, pool.pairs)]
    words = ck.tfidf_features(joined)
    if model is None:
        return Representation(words, ck.tfidf_features(joined, analyzer="char"), "tfidf", None,
                              {"model": None, "features": "TF-IDF word 1-2 grams", "similarity": "TF-IDF char 3-5 grams"})
    from scipy.sparse import csr_matrix, hstack

    from nncli.evaluate.audit_embed import encode

    emb, lengths, info = encode(pool.texts, pool.pairs, model, max_length=max_length, batch_size=batch_size, threads=threads,
                                trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    features = hstack([words, csr_matrix(ck.l2_normalise(emb.reshape(len(emb), -1)))]).tocsr()
    return Representation(features, ck.l2_normalise(emb[:, -1]), "embeddings", lengths,
                          {**info, "features": f"TF-IDF word 1-2 grams + mean-pooled embeddings of layers {info['layers']}",
                           "similarity": "cosine of the last layer's mean-pooled embeddings"})


# ---------------------------------------------------------------------------------------------- analysis

def analyse(pool: Pool, rep: Representation, *, folds: int = 5, seed: int = 0, dup_threshold: float | None = None, k: int = 10,
            max_length: int = 128, checks: tuple = ("label_issues", "duplicates", "outliers")) -> tuple[list[dict], dict]:
    """Every detector on the pool. Returns findings (dicts, sorted) and the statistics for report.json."""
    raw: list[tuple] = []
    stats: dict = {"representation": rep.info, "class_balance": _balance(pool)}
    if "label_issues" in checks:
        probs, model_info = ck.out_of_fold_probs(rep.features, pool.labels, len(pool.label_names), folds=folds, seed=seed)
        issues, noise = ck.label_issues(pool.labels, probs, pool.label_names)
        raw += issues
        stats["label_issues"] = {"model": f"logistic regression on {rep.info['features']}", **model_info, **noise}
    threshold = dup_threshold or (0.95 if rep.kind == "embeddings" else 0.9)
    if "duplicates" in checks or "outliers" in checks:
        pairs, knn = ck.neighbours(rep.vectors, threshold=threshold, k=k)
        if "duplicates" in checks:
            order = np.arange(len(pool.texts))
            group = np.array([{"train": 0, "validation": 1, "test": 2}.get(s, 3) for s in pool.split])
            raw += ck.duplicates(pool.texts, pool.labels, order, group, pool.label_names, pairs=pairs)
            stats["duplicates"] = {"threshold": threshold, "similarity": rep.info["similarity"], "near_pairs_checked": len(pairs),
                                   "normalisation": "NFKC, case-folded, punctuation and whitespace folded"}
        if "outliers" in checks and len(pool.texts) > k + 1:
            found, info = ck.outliers(knn)
            raw += found
            stats["outliers"] = {"k": k, "score": "mean cosine distance to the k nearest rows", **info}
    found, hyg = ck.hygiene(pool.texts)
    raw += found
    stats["hygiene"] = hyg
    if rep.lengths is not None:
        raw += ck.truncated(rep.lengths, max_length)
        stats["tokens"] = {"max_length": max_length, "p50": int(np.median(rep.lengths)),
                           "p99": int(np.quantile(rep.lengths, 0.99)), "max": int(rep.lengths.max())}
    findings = [_finding(pool, *f) for f in raw] + list(pool.dropped)
    findings.sort(key=lambda f: (KIND_ORDER.index(f["kind"]), -f["score"], f["split"], f["row"]))
    return findings, stats


def _finding(pool: Pool, i: int, kind: str, score: float, ev: dict) -> dict:
    ev = dict(ev)
    if "of" in ev:
        j = ev.pop("of")
        ev["of"] = {"split": pool.split[j], "row": pool.rows[j], "text": pool.texts[j][:300]}
    return {"split": pool.split[i], "row": pool.rows[i], "kind": kind, "score": score, "label": pool.label_names[pool.labels[i]],
            "text": pool.texts[i][:300], "evidence": ev}


def _balance(pool: Pool) -> dict:
    out = {}
    for name in dict.fromkeys(pool.split):
        idx = [i for i, s in enumerate(pool.split) if s == name]
        out[name] = ck.class_balance(pool.labels[idx], pool.label_names)
    return out


def metrics_of(pool: Pool, findings: list[dict], stats: dict) -> dict:
    n = len(pool.texts)
    kinds = Counter(f["kind"] for f in findings)
    flagged = {(f["split"], f["row"]) for f in findings}
    train_balance = stats["class_balance"].get("train", {})
    m = {"rows": n, "flagged_rows": len(flagged), "flagged_rate": round(len(flagged) / max(n, 1), 4),
         "label_issues": kinds["label_issue"], "label_issue_rate": round(kinds["label_issue"] / max(n, 1), 4),
         "estimated_noise_rate": (stats.get("label_issues") or {}).get("estimated_noise_rate"),
         "duplicates": kinds["duplicate"], "cross_split_duplicates": kinds["cross_split_duplicate"],
         "label_conflicts": kinds["label_conflict"], "outliers": kinds["outlier"],
         "outlier_rate": round(kinds["outlier"] / max(n, 1), 4),
         "empty_texts": kinds["empty_text"], "missing_labels": kinds["missing_label"], "boilerplate": kinds["boilerplate"],
         "script_mix": kinds["script"], "length_extremes": kinds["length"],
         "truncated": kinds["truncated"] if "tokens" in stats else None,
         "truncated_rate": round(kinds["truncated"] / max(n, 1), 4) if "tokens" in stats else None,
         "imbalance_ratio": train_balance.get("imbalance_ratio")}
    return m


def warnings_of(m: dict) -> list[str]:
    w = []
    if m["label_issues"]:
        w.append(f"label issues: {m['label_issues']} of {m['rows']} rows ({m['label_issue_rate']:.1%}) look mislabelled "
                 f"(estimated noise rate {m['estimated_noise_rate']:.1%}); see audit.jsonl, kind label_issue")
    if m["cross_split_duplicates"]:
        w.append(f"leakage: {m['cross_split_duplicates']} validation/test rows repeat an earlier split's row (exact or near)")
    if m["label_conflicts"]:
        w.append(f"label conflicts: {m['label_conflicts']} rows repeat another row with a different label")
    if m["duplicates"]:
        w.append(f"duplicates: {m['duplicates']} rows repeat a row of the same split")
    if m["boilerplate"] or m["empty_texts"]:
        w.append(f"unusable texts: {m['empty_texts']} empty, {m['boilerplate']} boilerplate")
    if m["truncated_rate"] and m["truncated_rate"] > 0.1:
        w.append(f"{m['truncated_rate']:.0%} of texts are longer than max_length tokens and would be truncated")
    if m["imbalance_ratio"] and m["imbalance_ratio"] >= 5:
        w.append(f"classes are imbalanced {m['imbalance_ratio']:.1f}:1 (largest:smallest) in train")
    return w


def preflight_summary(data, *, model_path: str | None, seed: int) -> tuple[dict, list[str]]:
    """The audit as a pre-flight step (`data.audit=true`): a summary for report.json and the warnings to print.

    `data` is a LabelledData; `model_path` the encoder to embed with (None: TF-IDF only)."""
    pool = pool_of(data)
    rep = represent(pool, model_path)
    findings, stats = analyse(pool, rep, seed=seed)
    m = metrics_of(pool, findings, stats)
    top = [{k: f[k] for k in ("split", "row", "label", "text", "score")} | {"suggested": f["evidence"].get("suggested")}
           for f in findings if f["kind"] == "label_issue"][:10]
    summary = {"metrics": m, "noise_pairs": (stats.get("label_issues") or {}).get("pairs", [])[:5], "top_label_issues": top,
               "representation": rep.info, "hint": "nncli audit on this data lists every finding and cleans a copy (--fix)"}
    return summary, warnings_of(m)


# ---------------------------------------------------------------------------------------------- the command

def run(recipe, *, overwrite: bool = False) -> dict:
    from nncli.evaluate import audit_render as rd

    timer = Timer()
    from nncli.core.report import gates_of

    gates = gates_of(recipe.gates)
    check_gate_metrics(gates, list(METRICS))
    inputs = [p for p in (recipe.data.train, recipe.data.validation, recipe.data.test) if p]
    fix = rd.check_fix_path(recipe.fix.path, inputs, overwrite) if recipe.fix.path else None
    out = RunDir(recipe.output) if recipe.output else None
    if out is not None:
        rd.check_output(out.path, inputs, fix, overwrite)
    pool, tables, notes = load(recipe)
    console.log(f"audit: {len(pool.texts)} rows ({', '.join(f'{k} {v}' for k, v in Counter(pool.split).items())}), "
                f"{len(pool.label_names)} labels; {'embeddings of ' + recipe.model if recipe.model else 'TF-IDF'}")
    rep = represent(pool, recipe.model, max_length=recipe.data.max_length, batch_size=recipe.batch_size, threads=recipe.threads,
                    trust_remote_code=recipe.trust_remote_code, allow_pickle=recipe.allow_pickle)
    checks = tuple(c for c in ("label_issues", "duplicates", "outliers") if getattr(recipe, c).enabled)
    findings, stats = analyse(pool, rep, folds=recipe.label_issues.folds, seed=recipe.seed,
                              dup_threshold=recipe.duplicates.threshold, k=recipe.outliers.k, max_length=recipe.data.max_length,
                              checks=checks)
    m = metrics_of(pool, findings, stats)
    report = base_report("audit", recipe.name)
    report.update(data={role: {"source": str(t.source), "rows_read": t.n_rows, "audited": pool.split.count(role)}
                        for role, t in tables.items()},
                  label_names=pool.label_names, metrics=m, counts=dict(Counter(f["kind"] for f in findings)), **stats,
                  warnings=notes + warnings_of(m), environment=environment(recipe.threads))
    report["gates"] = evaluate_gates(gates, m)
    failed = [g for g in report["gates"] if not g["passed"]]
    if fix is not None:
        report["fix"] = rd.write_fix(fix, tables["train"], findings, recipe)
    report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now(),
                  timings={"wall_seconds": timer()})
    report["top"] = {kind: [f for f in findings if f["kind"] == kind][:10] for kind in KIND_ORDER if report["counts"].get(kind)}
    if out is not None:
        rd.write_outputs(out, report, findings, recipe, overwrite)
    if failed:
        what = ", ".join(f"{g['metric']} {g['value']} (must be {g['op']} {g['threshold']})" for g in failed)
        raise GateFailed(f"{len(failed)} audit gate(s) failed: {what}",
                         "fix the data (see audit.jsonl, or --fix out.csv), or relax the threshold", report=report)
    return report


def fix_plan(findings: list[dict], policy: str) -> tuple[set[int], dict[int, str], dict[int, list[str]]]:
    """Train rows to drop, rows to relabel (row -> label) and every train row's finding kinds, per --fix-policy."""
    drop: set[int] = set()
    relabel: dict[int, str] = {}
    kinds: dict[int, list[str]] = {}
    for f in findings:
        if f["split"] == "train":
            kinds.setdefault(f["row"], []).append(f["kind"])
        elif f["kind"] == "cross_split_duplicate" and f["evidence"]["of"]["split"] == "train":
            kinds.setdefault(f["evidence"]["of"]["row"], []).append("leaked_into_" + f["split"])
    suggested = {f["row"]: f["evidence"]["suggested"] for f in findings if f["split"] == "train" and f["kind"] == "label_issue"}
    for row, ks in kinds.items():
        if policy == "relabel" and "label_issue" in ks and not (set(ks) - {"label_issue"}) & FIX_KINDS:
            relabel[row] = suggested[row]
        elif (set(ks) & FIX_KINDS) or any(k.startswith("leaked_into_") for k in ks):
            drop.add(row)
    if policy == "mark":
        drop, relabel = set(), {}
    return drop, relabel, kinds
