"""Write the options table of every command page in docs/ from the commands themselves (their --help).

    python scripts/docs_options.py          # rewrite the tables between the markers
    python scripts/docs_options.py --check  # exit 1 if a table is out of date (tests/test_docs.py checks the names)

A page holds one table per command, between `<!-- options: COMMAND -->` and `<!-- /options -->`, e.g.
`<!-- options: predict -->` or `<!-- options: recipes copy -->`. Edit the help text in nncli/cli, then rerun this.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- options: (?P<cmd>[a-z -]+?) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)


def command(path: str):
    """The Click command object behind `nncli PATH --help` (PATH like "predict" or "recipes copy")."""
    import typer
    import typer.main

    from nncli.cli import app

    cmd = typer.main.get_command(app)
    ctx = typer.Context(cmd, info_name="nncli")
    for name in path.split():
        cmd = cmd.get_command(ctx, name)
        ctx = typer.Context(cmd, parent=ctx, info_name=name)
    return cmd, ctx


def params(path: str) -> list:
    cmd, ctx = command(path)
    return [p for p in cmd.get_params(ctx) if "--help" not in p.opts]


def _cell(text: str) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _row(p, ctx) -> str:
    if p.param_type_name == "argument":
        name = f"`{p.metavar or p.name.upper()}`"
    else:
        names = list(p.opts) + [f"{s}" for s in p.secondary_opts]
        name = ", ".join(f"`{n}`" for n in names)
        if not getattr(p, "is_flag", False):
            name += f" {p.metavar or p.display_type_rich(ctx).strip('<>')}"
    default = "" if p.default in (None, False, (), []) or getattr(p, "is_flag", False) else f"`{p.default}`"
    req = " (required)" if p.required else ""
    return f"| {name}{req} | {default} | {_cell(p.help or '')} |"


def table(path: str) -> str:
    cmd, ctx = command(path)
    rows = [_row(p, ctx) for p in params(path)]
    return "\n".join(["| argument or option | default | what it does |", "|---|---|---|", *rows]) + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + table(m.group("cmd")) + m.group(4), text)


def main(argv: list[str]) -> int:
    stale = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(page.name)
            if "--check" not in argv:
                page.write_text(new, encoding="utf-8")
    if stale:
        print(("out of date: " if "--check" in argv else "rewrote: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
