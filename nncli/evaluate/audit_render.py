"""What `nncli audit` writes: the run directory (report.json, audit.jsonl, README.md, audit.html, recipe.yaml) and the
`--fix` copy of the train file. Nothing here ever writes to an input."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from nncli.core.atomic import atomic_write_bytes, atomic_write_text, json_default
from nncli.core.errors import UsageError

FIX_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
HTML_CAP = 5000


# ---------------------------------------------------------------------------------------------- checks before any work

def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_fix_path(path: str, inputs: list[str], overwrite: bool) -> Path:
    p = Path(path).expanduser()
    for i in inputs:
        if _same(p, Path(i).expanduser()):
            raise UsageError(f"--fix {path} is an input file: an audit never modifies its inputs",
                             "write the cleaned copy to a new file, e.g. --fix train.clean.csv")
    if p.suffix.lower() not in FIX_FORMATS:
        raise UsageError(f"--fix {path}: unknown extension {p.suffix or '(none)'}", f"use one of {', '.join(FIX_FORMATS)}")
    if p.is_dir():
        raise UsageError(f"--fix {path} is a directory", "pass a file path, e.g. --fix train.clean.csv")
    if p.exists() and not overwrite:
        raise UsageError(f"--fix {path} already exists", "pass --overwrite to replace it, or choose another path")
    return p


def check_output(out: Path, inputs: list[str], fix: Path | None, overwrite: bool) -> None:
    """The output directory must not be, contain or lie inside an input (--overwrite empties it), nor hold the --fix
    file (it is written first); an existing one needs --overwrite (checked now, not after the work)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"output directory {out} exists and is not empty", "pass --overwrite, or choose another --output")
    o = out.expanduser().resolve()
    if fix is not None and o in fix.expanduser().resolve().parents:
        raise UsageError(f"--fix {fix} is inside --output {out}", "write the cleaned copy outside the output directory")
    for i in inputs:
        q = Path(i).expanduser()
        if not q.exists():
            continue
        q = q.resolve()
        if q == o or o in q.parents or q in o.parents:
            raise UsageError(f"--output {out} would hold or replace the input {i}",
                             "choose an output directory away from the data")


# ---------------------------------------------------------------------------------------------- --fix

def write_fix(path: Path, table, findings: list[dict], recipe) -> dict:
    from nncli.evaluate.audit import fix_plan

    policy = recipe.fix.policy
    drop, relabel, kinds = fix_plan(findings, policy)
    cols = list(table.columns)
    label_col = _label_column(table, recipe.data.label_column)
    suggested = {f["row"]: f["evidence"]["suggested"] for f in findings if f["split"] == "train" and f["kind"] == "label_issue"}
    rows = []
    for i in range(table.n_rows):
        row = i + 1                      # findings name 1-based data rows
        if row in drop:
            continue
        r = {c: table.columns[c][i] for c in cols}
        if row in relabel and label_col:
            old = r[label_col]
            new = relabel[row]
            r[label_col] = int(new) if isinstance(old, int) and not isinstance(old, bool) and new.lstrip("-").isdigit() else new
        if policy == "mark":
            r["audit_kinds"] = ";".join(sorted(set(kinds.get(row, []))))
            r["audit_suggested_label"] = suggested.get(row, "")
        rows.append(r)
    _write_table(path, rows, cols + (["audit_kinds", "audit_suggested_label"] if policy == "mark" else []))
    return {"path": str(path), "policy": policy, "rows_in": table.n_rows, "rows_out": len(rows), "removed": len(drop),
            "relabelled": len(relabel), "source": str(table.source)}


def _label_column(table, column) -> str | None:
    for c in [column] if isinstance(column, str) else list(column):
        if c in table.columns:
            return c
    return None


def _write_table(path: Path, rows: list[dict], cols: list[str]) -> None:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({c: [r[c] for r in rows] for c in cols}), buf)
        atomic_write_bytes(path, buf.getvalue())
        return
    if suffix == ".jsonl":
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in rows))
        return
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r[c] is None else r[c] for c in cols])
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------- the run directory

def write_outputs(out, report: dict, findings: list[dict], recipe, overwrite: bool) -> None:
    from nncli.recipe.load import dump

    out.prepare(overwrite=overwrite)
    report["artifacts"] = {"report": "report.json", "findings": "audit.jsonl", "summary": "README.md", "html": "audit.html",
                           "recipe": "recipe.yaml"}
    out.write_text("recipe.yaml", dump(recipe))
    out.write_text("audit.jsonl", "".join(json.dumps(f, ensure_ascii=False, default=json_default) + "\n" for f in findings))
    out.write_text("README.md", markdown(report))
    out.write_text("audit.html", to_html(report, findings))
    out.write_json("report.json", report)


def _pct(v) -> str:
    return "–" if v is None else f"{v:.1%}"


def markdown(report: dict) -> str:
    m = report["metrics"]
    lines = [f"# Data audit: {report['status']}", "",
             "Data: " + "; ".join(f"{k} {v['source']} ({v['audited']} of {v['rows_read']} rows audited)"
                                  for k, v in report["data"].items()),
             f"Representation: {report['representation']['features']}; similarity: {report['representation']['similarity']}.",
             "",
             "| check | rows | share |", "|---|---|---|"]
    for key, name in (("label_issues", "label issues (confident learning)"),
                      ("label_conflicts", "duplicates with different labels"),
                      ("cross_split_duplicates", "cross-split duplicates (leakage)"), ("duplicates", "duplicates within a split"),
                      ("outliers", "outliers"), ("empty_texts", "empty texts"), ("missing_labels", "missing labels"),
                      ("boilerplate", "boilerplate"), ("script_mix", "script mix"), ("length_extremes", "length extremes"),
                      ("truncated", "truncated by the tokenizer")):
        v = m.get(key)
        lines.append(f"| {name} | {'not checked' if v is None else v} | {'' if v is None else _pct(v / max(m['rows'], 1))} |")
    li = report.get("label_issues")
    if li:
        lines += ["", f"Label model: {li['model']}, {li['folds']}-fold out-of-fold, C={li['C']}, out-of-fold accuracy "
                      f"{li['oof_accuracy']:.3f}. Estimated noise rate {_pct(li['estimated_noise_rate'])}.", "",
                  "| given | likely true | share of rows | share of the given class |", "|---|---|---|---|"]
        lines += [f"| {p['given']} | {p['true']} | {_pct(p['share_of_rows'])} | {_pct(p['share_of_given_class'])} |"
                  for p in li["pairs"][:10]]
    lines += ["", "Class balance: " + "; ".join(f"{k}: " + ", ".join(f"{n} {c}" for n, c in v["counts"].items())
                                                for k, v in report["class_balance"].items())]
    for kind, items in report.get("top", {}).items():
        lines += ["", f"## {kind.replace('_', ' ')} (top {len(items)})", "", "| split | row | label | score | text | evidence |",
                  "|---|---|---|---|---|---|"]
        for f in items:
            lines.append(f"| {f['split']} | {f['row']} | {_md(f['label'])} | {f['score']:.3f} | {_md(f['text'][:120])} | "
                         f"{_md(_evidence(f))} |")
    if report.get("gates"):
        lines += ["", "## Gates", ""] + [f"- {g['metric']} {g['op']} {g['threshold']}: {g['value']} → "
                                         f"{'pass' if g['passed'] else 'FAIL'}" for g in report["gates"]]
    if report.get("fix"):
        x = report["fix"]
        lines += ["", f"Fixed copy ({x['policy']}): {x['path']}, {x['rows_out']} of {x['rows_in']} rows, {x['removed']} removed, "
                      f"{x['relabelled']} relabelled."]
    return "\n".join(lines) + "\n"


def _md(v) -> str:
    return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")


def _evidence(f: dict) -> str:
    e = dict(f["evidence"])
    of = e.pop("of", None)
    s = ", ".join(f"{k} {v}" for k, v in e.items() if not isinstance(v, dict))
    if of:
        s = f"of {of['split']} row {of['row']}" + (f", {s}" if s else "")
    return s


def to_html(report: dict, findings: list[dict]) -> str:
    """One self-contained page: the summary, then every finding in a table filtered by kind and a search box."""
    kinds = list(dict.fromkeys(f["kind"] for f in findings))
    shown = findings[:HTML_CAP]
    e = html.escape
    rows = "".join(f"<tr data-kind='{e(f['kind'])}'><td>{e(f['kind'])}</td><td>{e(f['split'])}</td><td>{f['row']}</td>"
                   f"<td>{e(str(f['label']))}</td><td>{f['score']:.3f}</td><td>{e(f['text'])}</td><td>{e(_evidence(f))}</td></tr>"
                   for f in shown)
    options = "".join(f"<option value='{e(k)}'>{e(k)} ({report['counts'].get(k, 0)})</option>" for k in kinds)
    summary = e(markdown({**report, "top": {}}))
    more = (f"<p>Showing the first {HTML_CAP} of {len(findings)} findings; audit.jsonl has them all.</p>"
            if len(findings) > HTML_CAP else "")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>nncli audit</title><style>"
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;"
            "padding:3px 6px;vertical-align:top;font-size:13px}th{background:#eee;position:sticky;top:0}pre{background:#f7f7f7;"
            "padding:1em;white-space:pre-wrap}</style></head><body><h1>Data audit</h1>"
            f"<pre>{summary}</pre>{more}<p>Kind: <select id='kind'><option value=''>all ({len(findings)})</option>{options}"
            "</select> "
            "Search: <input id='q' size='40'></p><table><thead><tr><th>kind</th><th>split</th><th>row</th><th>label</th>"
            f"<th>score</th><th>text</th><th>evidence</th></tr></thead><tbody id='rows'>{rows}</tbody></table><script>"
            "const k=document.getElementById('kind'),q=document.getElementById('q');function f(){const kv=k.value,"
            "qv=q.value.toLowerCase();for(const r of document.getElementById('rows').rows){r.style.display=(!kv||"
            "r.dataset.kind===kv)&&(!qv||r.textContent.toLowerCase().includes(qv))?'':'none'}}k.onchange=f;q.oninput=f;"
            "</script></body></html>")
