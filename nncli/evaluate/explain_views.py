"""How `nncli explain` shows its results: an HTML page and coloured words in the terminal."""

from __future__ import annotations

import html


def page(report: dict, body: list[str]) -> str:
    """The one HTML page of `nncli explain` (texts and images): title, style, then `body`."""
    head = ["<!doctype html><html><head><meta charset='utf-8'><title>nncli explain</title><style>",
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}span.w{padding:0 2px;border-radius:3px}",
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{image-rendering:pixelated}"
            "</style></head><body>", f"<h1>Explanations: {html.escape(str(report['model']))}</h1>"]
    return "\n".join(head + body + ["</body></html>"]) + "\n"


def to_html(report: dict) -> str:
    parts = []
    if report.get("faithfulness"):
        parts.append("<h2>Faithfulness (k = top words)</h2><table><tr><th>method</th><th>comprehensiveness</th>"
                     "<th>random</th><th>sufficiency</th><th>random</th></tr>")
        for m, f in report["faithfulness"].items():
            parts.append(f"<tr><td>{m}</td><td>{f['comprehensiveness']:.3f}</td><td>{f['comprehensiveness_random']:.3f}</td>"
                         f"<td>{f['sufficiency']:.3f}</td><td>{f['sufficiency_random']:.3f}</td></tr>")
        parts.append("</table>")
    for r in report["explanations"]:
        parts.append(f"<h3>{html.escape(r['prediction'])} ({r['probability']:.3f})</h3>")
        for m, sc in r["scores"].items():
            peak = max((abs(x) for x in sc), default=1.0) or 1.0
            parts.append(f"<p><b>{m}</b>: " + _highlight(r["text"], r["spans"], sc, peak) + "</p>")
    return page(report, parts)


def _highlight(text: str, spans, scores, peak: float) -> str:
    out, pos = [], 0
    for (a, b), s in zip(spans, scores):
        out.append(html.escape(text[pos:a]))
        alpha = min(1.0, abs(s) / peak)
        colour = f"rgba(0,160,0,{alpha:.2f})" if s >= 0 else f"rgba(220,0,0,{alpha:.2f})"
        out.append(f"<span class='w' style='background:{colour}' title='{s:.4f}'>{html.escape(text[a:b])}</span>")
        pos = b
    out.append(html.escape(text[pos:]))
    return "".join(out)


def render_terminal(report: dict, out) -> None:
    """Words coloured by their score: green pushes towards the prediction, red away from it."""
    from rich.text import Text

    for r in report["explanations"][:20]:
        out.print(f"[bold]{r['prediction']}[/] ({r['probability']:.3f}): {r['text'][:80]}")
        for m, sc in r["scores"].items():
            peak = max((abs(x) for x in sc), default=1.0) or 1.0
            line = Text(f"  {m:10s} ")
            for w, s in zip(r["words"], sc):
                level = min(1.0, abs(s) / peak)
                style = ("green" if s >= 0 else "red") + (" bold" if level > 0.5 else "") if level > 0.15 else "dim"
                line.append(w, style=style)
                line.append(" ")
            out.print(line)
    print_summary(report, out, lambda f: f"comprehensiveness {f['comprehensiveness']:.3f} "
                  f"(random {f['comprehensiveness_random']:.3f}), sufficiency {f['sufficiency']:.3f} "
                  f"(random {f['sufficiency_random']:.3f}), k={f['k']}")
    for cls, words in (report.get("shortcuts") or {}).items():
        out.print(f"pushes towards {cls}: " + ", ".join(f"{w['word']} ({w['count']})" for w in words[:8]), markup=False)


def print_summary(report: dict, out, describe) -> None:
    """The report's notes, then one faithfulness line per method (`describe(scores)` says what the scores are)."""
    for w in report.get("warnings") or []:
        out.print(f"note: {w}", markup=False)
    for m, f in (report.get("faithfulness") or {}).items():
        out.print(f"faithfulness {m}: {describe(f)}", markup=False)
