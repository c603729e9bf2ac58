"""What a new user reads first (issue #18, items 5 and 8): every --help states the defaults and never suggests that a
flag takes a value; `recipes list` shows whole sentences; predict's stdout is the result and stderr no copy of it."""

from __future__ import annotations

import json
import re

import pytest
import typer
import typer.main

from nncli.cli import app

# options that have no default: absent means the thing is not used (a test file, a gate, a limit, a baseline), nothing
# is written, or the data is required; their help need not say "default"
NO_DEFAULT = {"--data", "--test", "--validation", "--text", "--prompt", "--text-pair-column", "--slice-column",
              "--prompt-column", "--completion-column", "--messages-column", "--transfer-data", "--teacher", "--reference",
              "--current", "--baseline", "--fail-if-slower", "--fix", "--min", "--max", "--min-retention", "--limit",
              "--timeout", "--force", "--output"}


def _walk():
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="nncli")
    todo = [(["nncli"], root, ctx)]
    while todo:
        path, cmd, c = todo.pop()
        yield " ".join(path), cmd, c
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(c):
                sub = cmd.get_command(c, name)
                todo.append((path + [name], sub, typer.Context(sub, parent=c, info_name=name)))


def _options():
    for path, cmd, ctx in _walk():
        for p in cmd.get_params(ctx):
            if p.param_type_name == "option":
                yield path, p, ctx


def _help(path: str, cli) -> str:
    code, stdout, stderr = cli(*path.split()[1:], "--help")
    assert code == 0, stderr
    return " ".join(stdout.replace("│", " ").split())


def test_every_command_is_walked():
    paths = {path for path, _, _ in _walk()}
    assert {"nncli finetune", "nncli predict", "nncli recipes list", "nncli recipes copy", "nncli audit"} <= paths
    assert len(paths) >= 20


def test_flags_show_no_value_in_help(cli):
    flags = 0
    for path, p, ctx in _options():
        if getattr(p, "is_flag", False):
            flags += 1
            assert not p.display_type_rich(ctx), f"{path} {p.opts[0]} is a flag but --help shows {p.display_type_rich(ctx)!r}"
        else:
            shown = p.display_type_rich(ctx) or ""
            assert "list[" not in shown and "bool" not in shown, f"{path} {p.opts[0]} shows {shown!r}"
    assert flags > 50
    for path, _, _ in _walk():
        text = _help(path, cli)
        assert "<bool>" not in text, path


def test_every_option_with_a_default_shows_it(cli):
    for path, p, _ in _options():
        if getattr(p, "is_flag", False) or "--help" in p.opts:
            continue
        if p.default is not None:
            assert p.show_default is not False, f"{path} {p.opts[0]} hides its default"
            shown = f"[default: {p.default}]"
            assert shown in _help(path, cli), f"{path} --help lacks {shown} for {p.opts[0]}"
        elif p.opts[0] not in NO_DEFAULT:
            assert "default" in (p.help or ""), f"{path} {p.opts[0]}: the help should say what happens without it"


# ---------------------------------------------------------------------------------------------- recipes list

def _first_sentence(path) -> str:
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or (header and not line.strip("# ")):
            break
        if line.strip("# "):
            header.append(line.strip("# "))
    return re.split(r"(?<=[.!?])\s+(?=[A-Z(`])", " ".join(header), maxsplit=1)[0]


def test_recipes_list_shows_each_whole_first_sentence(cli):
    from nncli.recipe.shipped import shipped_recipes

    code, stdout, _ = cli("recipes", "list", "--json")
    assert code == 0
    listed = {r["name"]: r["description"] for r in json.loads(stdout)["recipes"]}
    assert set(listed) == set(shipped_recipes()) and len(listed) >= 7
    for name, path in shipped_recipes().items():
        assert listed[name] == _first_sentence(path) and listed[name].endswith((".", ")")), (name, listed[name])
    assert listed["quickstart"].endswith("and check drift on held-out data.")   # was cut at "quantize within an"
    code, stdout, _ = cli("recipes", "list")
    cells: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        parts = [c.strip() for c in line.split("│")]
        if len(parts) == 4:
            current = parts[1] or current
            cells.setdefault(current, []).append(parts[2])
    for name, desc in listed.items():
        assert " ".join(cells[name]).replace("  ", " ") == desc, name      # wrapped, never cut


# ---------------------------------------------------------------------------------------------- predict streams

@pytest.fixture(scope="module")
def new_texts(tmp_path_factory):
    from conftest import make_rows, write_csv

    rows = [{"id": r["id"], "text": r["text"]} for r in make_rows(7, 11)]
    return write_csv(tmp_path_factory.mktemp("predict") / "new.csv", rows)


def test_predict_stdout_is_the_jsonl_and_stderr_only_the_summary(trained_run, new_texts, cli):
    code, stdout, stderr = cli("predict", trained_run, "--data", new_texts)
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["row"] for r in rows] == list(range(1, 8)) and all(r["predicted"] for r in rows)
    assert "predict: 7 input rows, 7 scored, 0 skipped" in stderr
    assert '"row"' not in stderr and "predicted" not in stderr          # no copy of the result


def test_predict_with_output_says_it_once(trained_run, new_texts, tmp_path, cli):
    out = tmp_path / "preds.jsonl"
    code, stdout, stderr = cli("predict", trained_run, "--data", new_texts, "--output", out)
    assert code == 0, stderr
    assert len(out.read_text().splitlines()) == 7
    assert len(stdout.strip().splitlines()) == 1 and str(out) in stdout and "7 rows (7 scored)" in stdout
    assert str(out) not in stderr and "7 input rows" not in stderr and "wrote" not in stderr


def test_predict_json_is_one_object_and_stderr_no_copy(trained_run, new_texts, cli):
    code, stdout, stderr = cli("predict", trained_run, "--data", new_texts, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["rows"] == 7 and len(result["predictions"]) == 7
    assert "{" not in stderr
