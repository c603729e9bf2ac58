"""The README and docs/ against the commands themselves (issue #18, items 2 and 10): the README's first screen is
the newcomer's path, every command has a page listing exactly the options its --help lists, every command line
in the docs uses options that command has, every link resolves, and the adapter snippet runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "scripts"))

import docs_options  # noqa: E402

# flags of other programs that the docs show (pip, torchrun, accelerate)
EXTERNAL_FLAGS = {"--index-url", "--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port",
                  "--multi_gpu", "--num_processes", "--dry-run"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _commands() -> list[str]:
    """Every leaf command, as its path: "finetune", "recipes copy", ..."""
    root, ctx = docs_options.command("")
    out = []
    for name in root.list_commands(ctx):
        sub = root.get_command(ctx, name)
        if hasattr(sub, "list_commands"):
            out += [f"{name} {leaf}" for leaf in sub.list_commands(ctx)]
        else:
            out.append(name)
    return out


def _names(path: str) -> set[str]:
    names = set()
    for p in docs_options.params(path):
        if p.param_type_name == "option":
            names |= set(p.opts) | set(p.secondary_opts)
    return names


GLOBAL = {"--json", "--quiet", "-q", "--debug", "--version", "--install-completion", "--show-completion", "--help", "-h"}


def _page_of(path: str) -> Path:
    return DOCS / f"{path.split()[0]}.md"


def test_every_command_has_a_page_with_its_options_table():
    commands = _commands()
    assert {"finetune", "evaluate", "predict", "export", "quantize", "bench", "distill", "drift", "explain", "audit",
            "sweep", "generate", "run", "report", "validate", "recipes list", "recipes copy"} <= set(commands)
    for path in commands:
        page = _page_of(path)
        assert page.exists(), f"{path}: no {page.relative_to(ROOT)}"
        blocks = {m.group("cmd"): m.group("body") for m in docs_options.BLOCK.finditer(page.read_text())}
        assert path in blocks, f"{page.name} has no <!-- options: {path} --> table"
        listed = set(re.findall(r"`(--?[a-z][a-z0-9-]*)`", blocks[path]))
        expected = _names(path)
        assert expected - listed == set(), f"{page.name}: options of `nncli {path} --help` missing from the page"
        assert listed - expected == set(), f"{page.name}: options in the table that `nncli {path}` does not have"


def test_options_tables_are_current():
    """Help text and defaults in the tables are the commands' own: `python scripts/docs_options.py` rewrites them."""
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        assert docs_options.render(text) == text, f"{page.name} is out of date: run python scripts/docs_options.py"


def _command_lines(text: str) -> list[str]:
    """`nncli ...` lines inside fenced code blocks, continuation lines joined, comments dropped."""
    lines, out, fence = text.splitlines(), [], False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fence = not fence
        elif fence and re.match(r"\s*(\$ )?(nncli|torchrun|accelerate) ", line):
            full = line
            while full.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                full = full.rstrip()[:-1] + " " + lines[i].strip()
            out.append(re.sub(r"\s+#.*$", "", full).strip())
        i += 1
    return out


def _command_of(tokens: list[str], commands: list[str]) -> str | None:
    for n in (2, 1):
        if " ".join(tokens[:n]) in commands:
            return " ".join(tokens[:n])
    return None


def test_every_command_line_in_the_docs_uses_options_the_command_has():
    commands, checked = _commands(), 0
    for page in _pages():
        for line in _command_lines(page.read_text()):
            for segment in re.split(r"\s*(?:&&|\|\||\||;)\s*", line):
                tokens = segment.split()
                if "nncli" not in tokens:
                    continue
                tokens = tokens[tokens.index("nncli") + 1:]
                while tokens and tokens[0].startswith("-"):      # global flags before the command
                    assert tokens.pop(0) in GLOBAL, f"{page.name}: {segment}"
                cmd = _command_of(tokens, commands)
                assert cmd, f"{page.name}: unknown command in {segment!r}"
                allowed = _names(cmd) | GLOBAL
                for flag in (t.split("=", 1)[0] for t in tokens if t.startswith("-") and not re.match(r"-\d", t)):
                    assert flag in allowed, f"{page.name}: `nncli {cmd}` has no {flag} ({segment})"
                checked += 1
    assert checked > 50        # the docs are full of examples; a parser that found none would pass vacuously


def test_every_flag_the_docs_mention_exists():
    known = set(GLOBAL) | EXTERNAL_FLAGS
    for path in _commands():
        known |= _names(path)
    for page in _pages():
        unknown = set(FLAG.findall(page.read_text())) - known
        assert not unknown, f"{page.name} mentions {sorted(unknown)}, which no nncli command has"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return s.replace(" ", "-")


def test_every_link_resolves():
    readme_docs = set(re.findall(r"\]\((docs/[\w.-]+\.md)", README.read_text()))
    assert len(readme_docs) >= 15
    for page in _pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            assert dest.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
            if anchor and dest.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)}
                assert anchor in slugs, f"{page.relative_to(ROOT)}: no heading for #{anchor} in {dest.name}"


def test_docs_install_the_distribution_name():
    for page in _pages():
        text = page.read_text()
        assert not re.search(r"pip install (-\S+ )*'?nncli(\[|'|\s|$)", text), page.name
        assert "'nncli[" not in text and "`nncli[" not in text, page.name


def test_readme_first_screen_is_the_newcomers_path():
    first = "\n".join(README.read_text().splitlines()[:40])
    assert "make demo" in first and "pip install -c constraints.txt 'nncli-toolkit[demo]'" in first
    assert re.search(r"nncli finetune my\.csv --text-column \w+ --label-column \w+", first)
    assert "nncli evaluate runs/" in first and "nncli predict runs/" in first
    for artifact in ("report.json", "README.md", "merged/", "adapter/", "recipe.yaml"):
        assert artifact in first, artifact
    assert "docs/exit-codes.md" in first and "TensorBoard" in first
    assert README.read_text().count("<!-- demo-figures") == 1 and "<!-- /demo-figures -->" in README.read_text()
    assert "benchmarks/README.md" in README.read_text()


def test_the_positional_data_file_of_the_first_screen_is_the_training_data(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli("validate", tiny_data["train"], "--model", tiny_bert, "--text-column", "text",
                               "--label-column", "label", "--json")
    assert code == 0, stderr
    code, _, stderr = cli("validate", tiny_data["train"], "--data", tiny_data["test"], "--model", tiny_bert)
    assert code == 2 and "is a data file, and --data" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------- the adapter snippet

def _snippets() -> list[tuple[Path, str]]:
    out = []
    for page in _pages():
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            if "PeftModel" in block:
                out.append((page, block))
    return out


@pytest.mark.slow
def test_the_adapter_snippet_runs_as_written_and_names_the_labels(tiny_bert, tiny_data, tmp_path, cli):
    snippets = _snippets()
    assert any(page == README for page, _ in snippets), "the README shows no adapter snippet"
    run = tmp_path / "run"
    from conftest import finetune_args

    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, run, "train.epochs=1", "-q"))
    assert code == 0, stderr
    assert (run / "adapter" / "adapter_config.json").exists()
    from transformers import pipeline

    merged = pipeline("text-classification", model=str(run / "merged"), device="cpu")
    for page, code_text in snippets:
        assert code_text.count('"runs/quickstart/finetune/adapter"') == 1, page.name
        ns: dict = {}
        exec(compile(code_text.replace("runs/quickstart/finetune/adapter", str(run / "adapter")), str(page), "exec"), ns)
        labels = ns["labels"]
        assert len(labels) == len(ns["texts"]) == 2
        assert set(labels) <= {"negative", "neutral", "positive"}, labels    # the run's names, not LABEL_0
        assert labels == [r["label"] for r in merged(ns["texts"])]             # and the trained head, not a random one
