"""Bad input, table-driven, across the commands: each case asserts the documented exit code, a one-line
error that names the thing and a hint with the fix, no traceback without --debug, and no artifact left
behind that looks complete."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import make_rows, write_csv


def _rows(n=60, seed=1, **kw):
    return make_rows(n, seed, **kw)


def _csv(tmp: Path, name: str, rows: list[dict]) -> Path:
    return write_csv(tmp / name, rows)


def _text(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def _ft(fx, tmp, *extra, data=None, model=None, out="out"):
    return ["finetune", "--model", str(model or fx["tiny_bert"]), "--data", str(data or fx["tiny_data"]["train"]),
            "--output", str(tmp / out), "train.max_steps=2", "data.max_length=32", *map(str, extra)]


def _model_without(tmp: Path, src: Path, drop: str) -> Path:
    import shutil

    d = tmp / f"model-no-{drop.replace('*', 'x')}"
    shutil.copytree(src, d)
    for f in d.glob(drop):
        f.unlink()
    return d


# (id, builder(tmp, fx) -> args, exit code, words the error must contain)
CASES = [
    # --- files
    ("missing-data-file", lambda t, fx: _ft(fx, t, data=t / "nope.csv"), 3, ["nope.csv"]),
    ("data-is-a-directory", lambda t, fx: _ft(fx, t, data=t), 3, ["director"]),
    ("unknown-extension", lambda t, fx: _ft(fx, t, data=_text(t, "d.xlsx", "a,b\n")), 3, ["d.xlsx"]),
    ("empty-file", lambda t, fx: _ft(fx, t, data=_text(t, "empty.csv", "")), 3, ["empty.csv"]),
    ("header-only", lambda t, fx: _ft(fx, t, data=_text(t, "hdr.csv", "text,label\n")), 3, ["hdr.csv"]),
    ("binary-file", lambda t, fx: _ft(fx, t, data=_text(t, "bin.csv", b"\x00\x01\x02\x03" * 50)), 3, ["bin.csv"]),
    ("non-utf8", lambda t, fx: _ft(fx, t, data=_latin1(t)), 3, ["latin.csv", "encoding"]),
    ("ragged-rows", lambda t, fx: _ft(fx, t, data=_text(t, "ragged.csv", "text,label\n" + "good one,positive\n" * 30
                                                         + "bad, really bad,negative\n" * 30)), 3, ["ragged.csv", "row 32"]),
    ("bad-jsonl-line", lambda t, fx: _ft(fx, t, data=_text(t, "d.jsonl", '{"text": "a", "label": "x"}\n{oops\n')), 3,
     ["d.jsonl"]),
    # --- columns and rows
    ("misspelled-text-column", lambda t, fx: _ft(fx, t, "--text-column", "txet"), 2, ["txet", "did you mean"]),
    ("missing-label-column", lambda t, fx: _ft(fx, t, "--label-column", "stars"), 2, ["stars"]),
    ("whitespace-only-texts", lambda t, fx: _ft(fx, t, data=_csv(t, "ws.csv", [{"text": "   ", "label": "a"}] * 40)), 3,
     ["ws.csv"]),
    ("single-class", lambda t, fx: _ft(fx, t, data=_csv(t, "one.csv",
                                                        [{"text": f"text {i}", "label": "pos"} for i in range(40)])),
     3, ["class"]),
    ("unseen-validation-label", lambda t, fx: _ft(fx, t, "--validation", _csv(t, "v.csv", [{"text": "x y", "label": "weird"}] * 5
                                                                               + [{"text": r["text"], "label": r["label"]}
                                                                                  for r in _rows(20, 9)])), 3, ["weird"]),
    ("nan-labels-only", lambda t, fx: _ft(fx, t, data=_csv(t, "nan.csv",
                                                           [{"text": f"t {i}", "label": "nan"} for i in range(40)])),
     3, ["nan.csv"]),
    # --- recipes and flags
    ("malformed-yaml", lambda t, fx: ["finetune", str(_text(t, "bad.yaml", "data: {train: [unclosed\n"))], 2, ["bad.yaml"]),
    ("yaml-not-a-mapping", lambda t, fx: ["finetune", str(_text(t, "list.yaml", "- a\n- b\n"))], 2, ["list.yaml"]),
    ("unknown-recipe-key", lambda t, fx: _ft(fx, t, "train.lrr=1e-3"), 2, ["train.lrr", "did you mean"]),
    ("wrong-type", lambda t, fx: _ft(fx, t, "train.epochs=many"), 2, ["train.epochs"]),
    ("nan-number", lambda t, fx: _ft(fx, t, "train.lr=nan"), 2, ["train.lr"]),
    ("negative-batch", lambda t, fx: _ft(fx, t, "--batch-size", "-4"), 2, ["batch_size"]),
    ("unknown-command-in-recipe", lambda t, fx: ["recipes", "validate", str(_text(t, "c.yaml", "command: finetun\n"))], 2,
     ["finetun", "did you mean"]),
    ("unknown-gate-metric", lambda t, fx: _ft(fx, t, "--min", "accuracyy=0.5"), 2, ["accuracyy"]),
    ("gate-without-value", lambda t, fx: _ft(fx, t, "--min", "accuracy"), 2, ["accuracy"]),
    ("resume-nothing", lambda t, fx: _ft(fx, t, "--resume", out="fresh"), 3, ["nothing to resume"]),
    ("stray-positional", lambda t, fx: ["finetune", "reviews", "oops"], 2, ["oops"]),
    # --- models
    ("model-dir-without-config", lambda t, fx: _ft(fx, t, model=_model_without(t, fx["tiny_bert"], "config.json")), 3,
     ["config.json"]),
    ("model-dir-without-weights", lambda t, fx: _ft(fx, t, model=_model_without(t, fx["tiny_bert"], "*.safetensors")), 3,
     ["weights"]),
    ("model-is-a-file", lambda t, fx: _ft(fx, t, model=fx["tiny_data"]["train"]), 3, ["train.csv"]),
    # --- outputs
    ("output-not-empty", lambda t, fx: ((t / "full").mkdir(), _text(t / "full", "x.txt", "keep"),
                                        _ft(fx, t, out="full"))[-1], 2, ["full", "--overwrite"]),
    ("output-is-a-file", lambda t, fx: (_text(t, "afile", "x"), _ft(fx, t, out="afile"))[-1], 2, ["afile"]),
    ("overwrite-foreign-dir", lambda t, fx: ((t / "mine").mkdir(), _text(t / "mine", "thesis.tex", "precious"),
                                             _ft(fx, t, "--overwrite", out="mine"))[-1], 2, ["not an nncli run directory"]),
    ("read-only-output", lambda t, fx: (_readonly(t / "ro"), _ft(fx, t, out="ro/run"))[-1], 4, ["ro"]),
    # --- other commands
    ("evaluate-missing-model", lambda t, fx: ["evaluate", str(t / "nomodel"), "--data", str(fx["tiny_data"]["test"])], 3,
     ["nomodel"]),
    ("evaluate-without-data", lambda t, fx: ["evaluate", str(fx["trained_run"])], 2, ["data"]),
    ("evaluate-unseen-labels", lambda t, fx: ["evaluate", str(fx["trained_run"]), "--data",
                                              str(_csv(t, "odd.csv", [{"text": "good", "label": "sarcastic"}] * 30))], 3,
     ["sarcastic"]),
    ("export-bad-format", lambda t, fx: ["export", str(fx["trained_run"]), "--format", "tflite", "-o", str(t / "e")], 2,
     ["tflite"]),
    ("export-missing-model", lambda t, fx: ["export", str(t / "gone"), "-o", str(t / "e")], 3, ["gone"]),
    ("quantize-needs-data", lambda t, fx: ["quantize", str(fx["tiny_bert"]), "-o", str(t / "q")], 2, ["--data"]),
    ("quantize-too-few-rows", lambda t, fx: ["quantize", str(fx["trained_run"]), "--data", str(_csv(t, "few.csv", _rows(5))),
                                             "-o", str(t / "q")], 3, ["too few"]),
    ("bench-bad-batch", lambda t, fx: ["bench", str(fx["trained_run"]), "--batch-sizes", "0,x"], 2, ["--batch-sizes"]),
    ("bench-bad-percentage", lambda t, fx: ["bench", str(fx["trained_run"]), "--fail-if-slower", "lots"], 2, ["lots"]),
    ("predict-missing-column", lambda t, fx: ["predict", str(fx["trained_run"]), "--data", str(fx["tiny_data"]["test"]),
                                              "--text-column", "body"], 2, ["body"]),
    ("drift-no-profile", lambda t, fx: ["drift", "-r", str(t), "-c", str(fx["tiny_data"]["test"])], 3, ["profile.json"]),
    ("drift-bad-alpha", lambda t, fx: ["drift", "-r", str(fx["trained_run"]), "-c", str(fx["tiny_data"]["test"]), "--alpha", "2"],
     2, ["alpha"]),
    ("distill-too-many-layers", lambda t, fx: ["distill", "--teacher", str(fx["trained_run"]), "--student", "layers=7", "--data",
                                               str(fx["tiny_data"]["train"]), "-o", str(t / "d")], 2, ["layers=7"]),
    ("distill-onnx-teacher", lambda t, fx: ["distill", "--teacher", str(_onnx_dir(t)), "--data", str(fx["tiny_data"]["train"]),
                                            "-o", str(t / "d")], 3, ["ONNX"]),
    ("pipeline-missing", lambda t, fx: ["run", str(t / "nope.yaml")], 2, ["nope.yaml"]),
    ("pipeline-duplicate-steps", lambda t, fx: ["run", str(_text(t, "p.yaml", "command: pipeline\nsteps:\n"
                                                                 "  - {name: a, command: bench, set: {models: [x]}}\n"
                                                                 "  - {name: a, command: bench, set: {models: [x]}}\n"))], 2,
     ["unique"]),
    ("report-missing", lambda t, fx: ["report", str(t / "norun")], 3, ["norun"]),
    ("strict-warnings", lambda t, fx: ["validate", "--model", str(fx["tiny_bert"]), "--data",
                                       str(_csv(t, "dup.csv", _rows(40, 3) + _rows(40, 3))), "--strict"], 3, ["--strict"]),
]


def _latin1(t: Path) -> Path:
    p = t / "latin.csv"
    p.write_bytes(("text,label\n" + "caf\xe9 good,positive\n" * 30 + "bad thing,negative\n" * 30).encode("latin-1"))
    return p


def _readonly(p: Path) -> None:
    p.mkdir()
    os.chmod(p, stat.S_IRUSR | stat.S_IXUSR)


def _onnx_dir(t: Path) -> Path:
    d = t / "onnxmodel"
    d.mkdir(exist_ok=True)
    (d / "model.onnx").write_bytes(b"not really")
    (d / "config.json").write_text("{}")
    return d


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, cli, tiny_bert, tiny_data, trained_run):
    name, build, code, words = case
    if name == "read-only-output" and os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    fx = {"tiny_bert": tiny_bert, "tiny_data": tiny_data, "trained_run": trained_run}
    args = build(tmp_path, fx)
    before = {p for p in tmp_path.rglob("*")}
    got, stdout, stderr = cli(*args)
    assert got == code, f"{name}: exit {got}, expected {code}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, f"{name}: expected one error line\n{stderr}"
    assert "hint: " in stderr, f"{name}: no hint (the fix)\n{stderr}"
    for w in words:
        if w:
            assert w.lower() in stderr.lower(), f"{name}: '{w}' not in\n{stderr}"
    # nothing that looks complete was left behind
    for p in set(tmp_path.rglob("*")) - before:
        if p.name == "report.json":
            assert json.loads(p.read_text()).get("status") != "succeeded", p
        assert p.name not in ("merged", "model.onnx") or p in before, f"{name}: left {p}"


def test_disk_full_is_exit_4_and_leaves_no_torn_file(monkeypatch, tiny_bert, tiny_data, tmp_path, cli):
    import errno

    from nncli.core import atomic

    real = atomic.os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("report.json") and Path(dst).parent.name == "out":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic.os, "replace", full)
    code, _, stderr = cli(*_ft({"tiny_bert": tiny_bert, "tiny_data": tiny_data}, tmp_path))
    assert code == 4 and "space" in stderr.lower() and "hint: " in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out" / "report.json").exists()
    assert not list((tmp_path / "out").glob("*.tmp*")), "a temporary file was left behind"


def test_debug_shows_the_traceback(tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*_ft({"tiny_bert": tiny_bert, "tiny_data": tiny_data}, tmp_path, "--text-column", "txet", "--debug"))
    assert code == 2 and "Traceback" in stderr


# ---------------------------------------------------------------------------------------------- untrusted files

def test_yaml_cannot_construct_python_objects(tmp_path, cli):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    code, _, stderr = cli("finetune", str(p))
    assert code == 2 and "evil.yaml" in stderr and "Traceback" not in stderr
    assert not marker.exists()


def test_recipe_name_cannot_escape_the_runs_directory(tiny_bert, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli("finetune", "--model", str(tiny_bert), "--data", str(tiny_data["train"]), "name=../../escape")
    assert code == 2 and "path separators" in stderr
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "runs").exists()


def test_model_file_linking_outside_its_directory_is_refused(tiny_bert, tiny_data, tmp_path, cli):
    import shutil

    d = tmp_path / "model"
    shutil.copytree(tiny_bert, d)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (d / "vocab.txt").unlink()
    (d / "vocab.txt").symlink_to(secret)
    code, _, stderr = cli(*_ft({"tiny_bert": d, "tiny_data": tiny_data}, tmp_path))
    assert code == 3 and "outside the model directory" in stderr and "vocab.txt" in stderr


def test_hf_cache_layout_links_are_allowed(tiny_bert, tmp_path):
    import shutil

    from nncli.io.models import check_model_dir

    repo = tmp_path / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in tiny_bert.iterdir():
        shutil.copy2(f, blobs / f.name)
        (snap / f.name).symlink_to(Path("../..") / "blobs" / f.name)
    check_model_dir(snap, allow_pickle=False)   # no exception


def test_remote_code_is_not_run_without_opt_in(tiny_bert, tiny_data, tmp_path, cli):
    import shutil

    d = tmp_path / "custom"
    shutil.copytree(tiny_bert, d)
    marker = tmp_path / "code-ran"
    (d / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                             "from transformers import BertConfig\nclass EvilConfig(BertConfig):\n"
                                             "    model_type = 'evil'\n")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})
    (d / "config.json").write_text(json.dumps(cfg))
    code, _, stderr = cli(*_ft({"tiny_bert": d, "tiny_data": tiny_data}, tmp_path))
    assert code == 3 and "trust_remote_code" in stderr and "Traceback" not in stderr
    assert not marker.exists()
