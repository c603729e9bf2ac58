"""Never lose a user's data (issue #17), table-driven across the commands.

Each case builds the situation in its own folder, runs the command once, and asserts the documented exit code, one
`error:` line that names the file or folder (and a `hint:` line with the fix), no traceback, and - with a sha256 of
every file that existed before in the folders involved, taken before and compared after - that nothing the user had
was changed. Outputs aliasing inputs, existing files and folders, corrupt artifacts of every kind nncli reads back,
gates that could pass by accident; then two real processes on one --output, an interrupted pipeline step, and what
happens to a replaced run when its successor fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_rows, write_csv

MARKER = ".nncli-run.json"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers

def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the given folders (or of the given files)."""
    out = {}
    for root in map(Path, roots):
        files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_unchanged(before: dict[str, str], name: str) -> None:
    for path, digest in before.items():
        assert Path(path).is_file(), f"{name}: {path} was removed"
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest, f"{name}: {path} was changed"


def _text(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _json(p: Path, obj) -> Path:
    return _text(p, json.dumps(obj))


def _user_dir(p: Path) -> Path:
    """A folder of the user's: nothing in it was written by nncli."""
    _text(p / "thesis.tex", "\\section{Results} months of work")
    _text(p / "notes" / "ideas.md", "- try a smaller model\n")
    return p


def _marker(p: Path, command: str) -> Path:
    """A run directory nncli wrote (its marker, as nncli writes it)."""
    _json(p / MARKER, {"command": command, "created_at": "2026-01-01T00:00:00+00:00", "nncli_version": "0.1.0", "pid": 1})
    return p


def _run_copy(t: Path, fx) -> Path:
    return Path(shutil.copytree(fx["run"], t / "run"))


def _data(t: Path) -> Path:
    return write_csv(t / "data" / "test.csv", make_rows(40, 3))


def _onnx_with_gap(t: Path) -> Path:
    d = t / "onnx"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"not parsed: the config is checked first")
    _json(d / "config.json", {"model_type": "bert", "id2label": {"0": "negative", "2": "positive"}})
    return d


def _truncated(t: Path, fx) -> Path:
    run = _run_copy(t, fx)
    w = run / "merged" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 3])
    return run


def _remote_code(t: Path, fx) -> Path:
    d = Path(shutil.copytree(fx["run"] / "merged", t / "custom"))
    (d / "configuration_evil.py").write_text(f"open({str(t / 'code-ran')!r}, 'w').write('x')\n"
                                             "from transformers import BertConfig\nclass EvilConfig(BertConfig):\n"
                                             "    model_type = 'evil'\n")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})
    _json(d / "config.json", cfg)
    return d


def _merged_with(t: Path, fx, name: str, content: str) -> Path:
    d = Path(shutil.copytree(fx["run"] / "merged", t / "model"))
    _text(d / name, content)
    return d


def _config_gap(t: Path, fx) -> Path:
    d = Path(shutil.copytree(fx["run"] / "merged", t / "model"))
    cfg = json.loads((d / "config.json").read_text())
    names = list(cfg["id2label"].values())
    cfg["id2label"] = {"0": names[0], "1": names[1], "5": names[2]}
    cfg["label2id"] = {names[0]: 0, names[1]: 1, names[2]: 5}
    _json(d / "config.json", cfg)
    return d


def _baseline(t: Path, fx, **row) -> Path:
    base = {"model": str(fx["run"]), "backend": "torch", "batch_size": 1, "seq_len": 8, "throughput_per_second": 100.0,
            "p50_ms": 10.0, "p95_ms": 11.0, "p99_ms": 12.0}
    return _json(t / "base" / "report.json", {"schema_version": 1, "task": "bench", "status": "succeeded",
                                              "results": [{**base, **row}]})


BENCH = ["--batch-sizes", "1", "--seq-lens", "8", "--min-seconds", "0.01"]


def _bench(fx, *extra) -> list:
    return ["bench", fx["run"], *BENCH, *extra]


def _pipeline(t: Path, fx, output: Path, step_extra: str = "", name: str = "pipe.yaml") -> Path:
    return _text(t / name, f"command: pipeline\nname: p\noutput: {output}\nsteps:\n"
                           f"  - {{name: speed, command: bench, set: {{models: [{fx['run']}], batch_sizes: [1], "
                           f"seq_lens: [8], min_seconds: 0.01{step_extra}}}}}\n")


def _evaluate(model, data, *extra) -> list:
    return ["evaluate", model, "--data", data, "--no-robustness", *extra]


# ---------------------------------------------------------------------------------------------- the table
# Each case: its id, the exit code, what the error line must name (the file or folder; a function of (tmp, fx) where it
# is only known then), and other words stderr must contain. The function builds the situation and returns the argv.

CASES: list[tuple] = []


def case(name: str, code: int, names, *words: str):
    def register(build):
        CASES.append((name, build, code, names, list(words)))
        return build
    return register


# --- outputs that would destroy the user's files (section 1 of the issue)

@case("bench-missing-model-overwrite-foreign-dir", 3, "no-such-model")
def _(t, fx):
    return ["bench", "no-such-model", "-o", _user_dir(t / "mine"), "--overwrite"]


@case("bench-overwrite-foreign-dir", 2, "mine", "not an nncli run directory")
def _(t, fx):
    return _bench(fx, "-o", _user_dir(t / "mine"), "--overwrite")


@case("evaluate-overwrite-foreign-dir", 2, "mine", "--overwrite replaces only")
def _(t, fx):
    return _evaluate(fx["run"], _data(t), "-o", _user_dir(t / "mine"), "--overwrite")


@case("evaluate-overwrite-run-of-an-older-nncli", 2, "old", "earlier nncli version", "delete it yourself")
def _(t, fx):
    _json(t / "old" / "report.json", {"task": "evaluate", "status": "succeeded"})
    _text(t / "old" / "recipe.yaml", "command: evaluate\n")
    return _evaluate(fx["run"], _data(t), "-o", t / "old", "--overwrite")


@case("evaluate-existing-run-without-overwrite", 2, "prev", "--overwrite")
def _(t, fx):
    _text(_marker(t / "prev", "evaluate") / "report.json", "{}")
    return _evaluate(fx["run"], _data(t), "-o", t / "prev")


@case("export-run-onto-itself", 2, "run", "contains the input")
def _(t, fx):
    return ["export", _run_copy(t, fx), "-o", t / "run", "--overwrite"]


@case("export-into-the-merged-model", 2, "merged", "is the input")
def _(t, fx):
    return ["export", _run_copy(t, fx), "-o", t / "run" / "merged", "--overwrite"]


@case("evaluate-output-contains-the-data", 2, "test.csv", "contains the input")
def _(t, fx):
    return _evaluate(fx["run"], _data(t), "-o", t / "data")


@case("evaluate-output-is-the-run", 2, "merged", "contains the input")
def _(t, fx):
    return _evaluate(_run_copy(t, fx), _data(t), "-o", t / "run", "--overwrite")


@case("drift-output-contains-current-data", 2, "test.csv", "contains the input")
def _(t, fx):
    return ["drift", "-r", fx["run"], "-c", _data(t), "-o", t / "data", "--overwrite"]


@case("quantize-output-foreign-dir", 2, "mine", "not an nncli run directory")
def _(t, fx):
    return ["quantize", fx["run"], "-o", _user_dir(t / "mine"), "--overwrite"]


@case("explain-output-foreign-dir", 2, "mine", "not an nncli run directory")
def _(t, fx):
    return ["explain", fx["run"], "--text", "great lamp", "-o", _user_dir(t / "mine"), "--overwrite"]


@case("predict-output-is-the-input", 2, "test.csv", "is the input")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--output", t / "data" / "test.csv"]


@case("predict-output-is-the-input-with-overwrite", 2, "test.csv", "is the input")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--output", t / "data" / "test.csv", "--overwrite"]


@case("predict-output-exists", 2, "old.jsonl", "--overwrite")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--output", _text(t / "old.jsonl", "{}\n")]


@case("predict-output-is-a-directory", 2, "mine", "directory")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--output", _user_dir(t / "mine")]


@case("report-onto-the-runs-report-json", 2, "report.json", "is the input")
def _(t, fx):
    return ["report", _run_copy(t, fx), "-o", t / "run" / "report.json", "--overwrite"]


@case("report-onto-an-existing-file", 2, "summary.md", "--overwrite")
def _(t, fx):
    return ["report", fx["run"], "-o", _text(t / "summary.md", "my notes")]


@case("recipes-copy-onto-an-existing-file", 2, "my.yaml", "--force")
def _(t, fx):
    return ["recipes", "copy", "reviews", _text(t / "my.yaml", "# mine\n")]


@case("recipes-copy-onto-the-shipped-recipe", 2, "reviews.yaml", "is the input")
def _(t, fx):
    return ["recipes", "copy", "reviews", REPO / "recipes" / "reviews.yaml", "--force"]


@case("pipeline-step-output-is-a-foreign-dir", 2, "mine", "step 'speed'", "not an nncli run directory")
def _(t, fx):
    return ["run", _pipeline(t, fx, t / "p", f", output: {_user_dir(t / 'mine')}")]


@case("pipeline-output-is-a-foreign-dir", 2, "mine", "not an nncli run directory")
def _(t, fx):
    return ["run", _pipeline(t, fx, _user_dir(t / "mine"))]


@case("pipeline-output-is-another-commands-run", 2, "ev", "not a pipeline")
def _(t, fx):
    _text(_marker(t / "ev", "evaluate") / "report.json", "{}")
    return ["run", _pipeline(t, fx, t / "ev")]


@case("pipeline-output-of-an-older-nncli", 2, "old", "earlier nncli version")
def _(t, fx):
    _json(t / "old" / "pipeline-state.json", {"steps": {}})
    return ["run", _pipeline(t, fx, t / "old")]


@case("pipeline-output-contains-its-own-file", 2, "pipe.yaml", "contains the input")
def _(t, fx):
    return ["run", _pipeline(t, fx, t)]


# --- corrupt artifacts nncli reads back (section 4)

@case("calibration-null", 3, "calibration.json", "temperature", "--calibrate")
def _(t, fx):
    return ["predict", _merged_with(t, fx, "calibration.json", '{"temperature": null}'), "--data", _data(t)]


@case("calibration-not-json", 3, "calibration.json", "not valid JSON")
def _(t, fx):
    return _evaluate(_merged_with(t, fx, "calibration.json", "{temperature: 1.2"), _data(t))


@case("calibration-out-of-range", 3, "calibration.json", "temperature")
def _(t, fx):
    return ["predict", _merged_with(t, fx, "calibration.json", '{"temperature": 1e9}'), "--data", _data(t)]


@case("quantization-garbage", 3, "quantization.json", "nncli quantize")
def _(t, fx):
    return ["predict", _merged_with(t, fx, "quantization.json", "\x00garbage\x01"), "--data", _data(t)]


@case("quantization-unknown-method", 3, "quantization.json", "method")
def _(t, fx):
    return ["predict", _merged_with(t, fx, "quantization.json", '{"method": "magic"}'), "--data", _data(t)]


@case("truncated-weights-predict", 3, "model.safetensors", "incomplete or corrupt")
def _(t, fx):
    return ["predict", _truncated(t, fx), "--data", _data(t)]


@case("truncated-weights-evaluate", 3, "model.safetensors")
def _(t, fx):
    return _evaluate(_truncated(t, fx), _data(t))


@case("truncated-weights-explain", 3, "model.safetensors")
def _(t, fx):
    return ["explain", _truncated(t, fx), "--text", "great lamp"]


@case("truncated-weights-bench", 3, "model.safetensors")
def _(t, fx):
    return ["bench", _truncated(t, fx), *BENCH]


@case("remote-code-predict", 3, "config.json", "trust_remote_code")
def _(t, fx):
    return ["predict", _remote_code(t, fx), "--data", _data(t)]


@case("remote-code-evaluate", 3, "config.json", "trust_remote_code")
def _(t, fx):
    return _evaluate(_remote_code(t, fx), _data(t))


@case("onnx-config-id2label-gap", 3, "config.json", "id2label", "gap")
def _(t, fx):
    return ["predict", _onnx_with_gap(t), "--data", _data(t)]


@case("torch-config-id2label-gap", 3, "config.json", "id2label")
def _(t, fx):
    return _evaluate(_config_gap(t, fx), _data(t))


@case("report-json-is-a-list", 3, "report.json", "list")
def _(t, fx):
    return ["report", _json(t / "r" / "report.json", [1, 2]).parent]


@case("pipeline-report-step-without-output", 3, "report.json", "output")
def _(t, fx):
    steps = [{"name": "speed", "command": "bench", "status": "succeeded"}]
    return ["report", _json(t / "r" / "report.json", {"task": "pipeline", "status": "succeeded", "steps": steps}).parent]


@case("bench-baseline-zero-throughput", 3, "report.json", "throughput_per_second")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx, throughput_per_second=0))


@case("bench-baseline-is-a-list", 3, "base.json", "list")
def _(t, fx):
    return _bench(fx, "--baseline", _json(t / "base.json", []))


@case("bench-baseline-not-json", 3, "base.json", "not valid JSON")
def _(t, fx):
    return _bench(fx, "--baseline", _text(t / "base.json", "{oops"))


@case("bench-baseline-of-another-command", 3, "report.json", "not by nncli bench")
def _(t, fx):
    return _bench(fx, "--baseline", fx["run"])


@case("bench-baseline-shares-no-configuration", 3, "report.json", "shares no configuration")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx, batch_size=64), "--fail-if-slower", "10%")


@case("drift-profile-not-json", 3, "profile.json", "re-running")
def _(t, fx):
    return ["drift", "-r", _text(_run_copy(t, fx) / "profile.json", "{"), "-c", _data(t)]


@case("drift-profile-wrong-types", 3, "profile.json", "model")
def _(t, fx):
    ref = _json(t / "ref" / "profile.json", {"schema_version": 1, "model": {"label_names": "abc", "rows": "many"}})
    return ["drift", "-r", ref, "-c", _data(t)]


@case("pipeline-state-corrupt", 3, "pipeline-state.json", "delete it")
def _(t, fx):
    _text(_marker(t / "p", "pipeline") / "pipeline-state.json", '{"steps": {"speed": {"status": 3}}}')
    return ["run", _pipeline(t, fx, t / "p")]


# --- gates that could pass by accident (section 3), and the usage errors of section 4

@case("fail-if-slower-bare-1", 2, "--fail-if-slower", "ambiguous", "1%")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx), "--fail-if-slower", "1")


@case("fail-if-slower-1.5", 2, "--fail-if-slower", "ambiguous")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx), "--fail-if-slower", "1.5")


@case("fail-if-slower-zero", 2, "--fail-if-slower", "out of range")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx), "--fail-if-slower", "0")


@case("fail-if-slower-100-percent", 2, "--fail-if-slower", "out of range")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx), "--fail-if-slower", "100%")


@case("fail-if-slower-nan", 2, "--fail-if-slower", "finite")
def _(t, fx):
    return _bench(fx, "--baseline", _baseline(t, fx), "--fail-if-slower", "nan")


@case("min-gate-nan", 2, "accuracy=nan", "finite")
def _(t, fx):
    return _evaluate(fx["run"], _data(t), "--min", "accuracy=nan")


@case("max-gate-infinity", 2, "ece=inf", "finite")
def _(t, fx):
    return _evaluate(fx["run"], _data(t), "--max", "ece=inf")


@case("recipe-with-two-train-blocks", 2, "dup.yaml", "duplicate key 'train' at line 5", "first at line 1")
def _(t, fx):
    return ["finetune", _text(t / "dup.yaml", "train:\n  epochs: 1\ndata:\n  train: x.csv\ntrain:\n  epochs: 30\n")]


@case("recipe-with-a-nested-duplicate", 2, "dup.yaml", "duplicate key 'path' at line 5")
def _(t, fx):
    return ["evaluate", _text(t / "dup.yaml", "command: evaluate\ndata:\n  path: a.csv\n  limit: 5\n  path: b.csv\n"), "m"]


@case("pipeline-with-a-duplicate-key", 2, "p.yaml", "duplicate key 'output'")
def _(t, fx):
    return ["run", _text(t / "p.yaml", "command: pipeline\noutput: x\noutput: y\nsteps: []\n")]


@case("generate-on-a-classification-run", 3, lambda t, fx: str(fx["run"]), "language-modelling head",
      "BertForSequenceClassification")
def _(t, fx):
    return ["generate", fx["run"], "--prompt", "hello"]


@case("predict-batch-size-zero", 2, "--batch-size")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--batch-size", "0"]


@case("predict-limit-zero", 2, "--limit")
def _(t, fx):
    return ["predict", fx["run"], "--data", _data(t), "--limit", "0"]


@pytest.fixture(scope="module")
def fx(trained_run, tmp_path_factory):
    """A private copy of the trained run, so the cases (and other test modules) cannot disturb each other."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("safety") / "trained"))
    (run / "merged" / "calibration.json").unlink(missing_ok=True)
    return {"run": run}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_data_safety(case, tmp_path, fx, cli):
    name, build, code, names, words = case
    args = [str(a) for a in build(tmp_path, fx)]
    names = names(tmp_path, fx) if callable(names) else names
    before = snapshot(tmp_path, fx["run"], REPO / "recipes")
    got, stdout, stderr = cli(*args)
    assert got == code, f"{name}: exit {got}, expected {code}\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, f"{name}: expected one error line\n{stderr}"
    assert names.lower() in errors[0].lower(), f"{name}: the error does not name {names!r}: {errors[0]}"
    hints = [ln for ln in stderr.splitlines() if ln.startswith("hint: ")]
    assert len(hints) == 1 and len(hints[0]) > len("hint: ") + 10, f"{name}: no hint with the fix\n{stderr}"
    for w in words:
        assert w.lower() in stderr.lower(), f"{name}: {w!r} not in\n{stderr}"
    assert_unchanged(before, name)
    assert not (tmp_path / "code-ran").exists(), "the model's own code ran"
    assert not list(tmp_path.rglob(".*.nncli-old-*")), f"{name}: a run was moved aside"


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


# ---------------------------------------------------------------------------------------------- units behind the table

@pytest.mark.parametrize("value,fraction", [("10%", 0.10), ("0.10", 0.10), ("0.999", 0.999), ("99%", 0.99), ("0.5%", 0.005),
                                            (" 10 % ", 0.10), ("1e-3", 0.001)])
def test_fail_if_slower_accepts_one_stated_unit(value, fraction):
    from nncli.core.report import parse_slowdown

    assert parse_slowdown(value) == pytest.approx(fraction, abs=1e-12)


@pytest.mark.parametrize("value", ["1", "1.0", "1.5", "10", "0", "0%", "0.0", "100%", "150%", "-0.1", "-5%", "nan", "inf",
                                   "1e999", "ten", ""])
def test_fail_if_slower_refuses_ambiguous_and_out_of_range_values(value):
    from nncli.core.errors import UsageError
    from nncli.core.report import parse_slowdown

    with pytest.raises(UsageError) as e:
        parse_slowdown(value)
    assert e.value.code == 2 and e.value.hint


def test_yaml_merge_keys_may_override_but_plain_duplicates_may_not(tmp_path):
    from nncli.core.errors import UsageError
    from nncli.recipe.load import read_yaml

    ok = _text(tmp_path / "ok.yaml", "base: &b {epochs: 1, lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 2\n")
    assert read_yaml(ok)["train"] == {"epochs": 2, "lr": 0.1}
    with pytest.raises(UsageError) as e:
        read_yaml(_text(tmp_path / "bad.yaml", "train:\n  lr: 1\n  model:\n    name: a\n    name: b\n"))
    assert str(e.value) == f"{tmp_path / 'bad.yaml'}: duplicate key 'name' at line 5 (first at line 4)"


def test_run_directory_marker_lock_and_replacement(tmp_path):
    from nncli.core.errors import UsageError
    from nncli.core.rundir import LOCK, RunDir, is_run_dir, release_all

    d = RunDir(tmp_path / "r", command="evaluate").prepare()
    marker = json.loads((tmp_path / "r" / MARKER).read_text())
    assert set(marker) == {"command", "created_at", "nncli_version", "pid"}
    assert marker["command"] == "evaluate" and marker["pid"] == os.getpid() and is_run_dir(tmp_path / "r")
    assert (tmp_path / "r" / LOCK).read_text() == str(os.getpid())
    _text(tmp_path / "r" / "report.json", '{"status": "succeeded"}')
    with pytest.raises(UsageError, match="exists and is not empty"):
        RunDir(tmp_path / "r", command="evaluate").prepare()
    again = RunDir(tmp_path / "r", command="evaluate").prepare(overwrite=True)   # the same process: its own lock is adopted
    assert again.previous is not None and (again.previous / "report.json").read_text() == '{"status": "succeeded"}'
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [MARKER, LOCK]
    again.complete()
    assert not again.previous and not list(tmp_path.glob(".r.nncli-old-*"))
    release_all()
    assert d._fd is None and again._fd is None


def test_release_keeps_the_replaced_run_when_the_new_one_did_not_finish(tmp_path):
    from nncli.core.rundir import RunDir, release_all

    RunDir(tmp_path / "r", command="evaluate").prepare()
    _text(tmp_path / "r" / "predictions.jsonl", "old\n")
    release_all()
    new = RunDir(tmp_path / "r", command="evaluate").prepare(overwrite=True)
    _json(tmp_path / "r" / "report.json", {"status": "failed", "exit_code": 3})
    release_all()
    assert (new.previous / "predictions.jsonl").read_text() == "old\n"
    RunDir(tmp_path / "s", command="evaluate").prepare()
    release_all()
    gated = RunDir(tmp_path / "s", command="evaluate").prepare(overwrite=True)
    kept = gated.previous
    _json(tmp_path / "s" / "report.json", {"status": "failed", "exit_code": 5})   # a failed gate: the run did finish
    release_all()
    assert kept.name.startswith(".s.nncli-old-") and not kept.exists()


def test_overwrite_refuses_a_link_and_the_current_directory(tmp_path, monkeypatch):
    from nncli.core.errors import UsageError
    from nncli.core.rundir import RunDir, release_all

    RunDir(tmp_path / "r", command="evaluate").prepare()
    _text(tmp_path / "r" / "report.json", "{}")
    release_all()
    (tmp_path / "link").symlink_to(tmp_path / "r")
    before = snapshot(tmp_path / "r")
    with pytest.raises(UsageError, match="symbolic link"):
        RunDir(tmp_path / "link").prepare(overwrite=True)
    monkeypatch.chdir(tmp_path / "r")
    with pytest.raises(UsageError, match="current directory"):
        RunDir(".").prepare(overwrite=True)
    assert_unchanged(before, "refused overwrite")
    assert not list(tmp_path.glob(".*nncli-old-*"))


# ---------------------------------------------------------------------------------------------- replaced runs, for real

@pytest.mark.slow
def test_overwrite_replaces_an_nncli_run_only_once_the_new_one_completes(fx, tmp_path, cli):
    out = tmp_path / "eval"
    data = _data(tmp_path)
    code, _, stderr = cli(*_evaluate(fx["run"], data, "-o", out))
    assert code == 0, stderr
    first = json.loads((out / "report.json").read_text())["started_at"]
    time.sleep(1.1)
    code, _, stderr = cli(*_evaluate(fx["run"], data, "-o", out, "--overwrite"))
    assert code == 0, stderr
    assert json.loads((out / "report.json").read_text())["started_at"] != first
    assert not list(tmp_path.glob(".eval.nncli-old-*")), "the replaced run was not deleted after the new one completed"


@pytest.mark.slow
def test_a_failed_run_keeps_the_run_it_replaced_and_says_where(fx, tmp_path, cli):
    """A weights file that only fails when loaded (after the output was prepared): the new run ends `failed` with the
    error in its report.json, and the old run is kept, byte for byte, in the hidden sibling that stderr names."""
    out = tmp_path / "eval"
    data = _data(tmp_path)
    code, _, stderr = cli(*_evaluate(fx["run"], data, "-o", out))
    assert code == 0, stderr
    old = {Path(p).relative_to(out): h for p, h in snapshot(out).items()}
    bad = _truncated(tmp_path, fx)
    code, _, stderr = cli(*_evaluate(bad, data, "-o", out, "--overwrite"))
    assert code == 3 and "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "model.safetensors" in errors[0]
    kept = list(tmp_path.glob(".eval.nncli-old-*"))
    assert len(kept) == 1 and f"is kept in {kept[0]}" in stderr
    assert {Path(p).relative_to(kept[0]): h for p, h in snapshot(kept[0]).items()} == old
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "failed" and rep["exit_code"] == 3 and "model.safetensors" in rep["error"]
    assert rep["previous_run"] == str(kept[0])


# ---------------------------------------------------------------------------------------------- real processes

def _wait_for(f: Path, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not f.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if not f.exists():
        out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
        raise AssertionError(f"the first process never held the lock (exit {proc.returncode})\n{err[-2000:]}")


@pytest.mark.slow
def test_two_processes_on_one_output_the_second_is_refused_with_the_first_ones_pid(fx, tmp_path):
    data, out, hold = _data(tmp_path), tmp_path / "eval", tmp_path / "hold"
    args = [sys.executable, "-m", "nncli", *map(str, _evaluate(fx["run"], data, "-o", out))]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "NNCLI_TEST_HOLD_LOCK": str(hold)})
    try:
        _wait_for(hold, first)
        before = snapshot(tmp_path)
        second = subprocess.run([*args, "--overwrite"], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
        assert errors == [f"error: output directory {out} is in use by pid {first.pid} (another nncli command is writing to it)"]
        assert "hint: " in second.stderr and "Traceback" not in second.stderr
        assert_unchanged(before, "second process")
    finally:
        hold.unlink(missing_ok=True)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((out / "report.json").read_text())["status"] == "succeeded"


HOLDER = """
import pathlib, sys, time
from nncli.core.rundir import RunDir
out = pathlib.Path(sys.argv[1])
RunDir(out, command="finetune").prepare()
(out / "checkpoint").mkdir()
(out / "checkpoint" / "state.json").write_text("{}")
pathlib.Path(sys.argv[2]).write_text("ready")
time.sleep(240)
"""


def test_finetune_resume_refuses_a_run_in_use_by_another_process(tiny_bert, tiny_data, tmp_path):
    """Finetune-specific (its engine is being replaced; this CLI behaviour stays): a second `--resume` on a run that
    another process holds is refused before it trains into the same directory (issue #17: duplicate evaluations)."""
    out, ready = tmp_path / "run", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ready)], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, holder, 120)
        before = snapshot(out, tiny_data["dir"])
        args = ["finetune", "--model", tiny_bert, "--data", tiny_data["train"], "--validation", tiny_data["validation"],
                "--output", out, "train.max_steps=2", "data.max_length=32", "--resume"]
        second = subprocess.run([sys.executable, "-m", "nncli", *map(str, args)], capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert second.returncode == 2, second.stderr
    errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: output directory {out} is in use by pid {holder.pid} (another nncli command is writing to it)"]
    assert "Traceback" not in second.stderr
    assert_unchanged(before, "second --resume")


@pytest.mark.slow
def test_an_interrupted_pipeline_step_is_recorded_and_the_rerun_completes(fx, tmp_path, cli):
    pipe, hold = _pipeline(tmp_path, fx, tmp_path / "p"), tmp_path / "hold"
    before = snapshot(fx["run"], pipe)
    proc = subprocess.Popen([sys.executable, "-m", "nncli", "run", str(pipe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "NNCLI_TEST_HOLD_LOCK": str(hold), "NNCLI_TEST_HOLD_NAME": "speed"})
    try:
        _wait_for(hold, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "interrupted during step 'speed'" in errors[0] and "hint: " in err and "Traceback" not in err
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["status"] == "interrupted" and rep["exit_code"] == 130 and rep["steps"][0]["status"] == "interrupted"
    assert json.loads((tmp_path / "p" / "pipeline-state.json").read_text())["steps"]["speed"]["status"] == "interrupted"
    assert_unchanged(before, "interrupted pipeline")
    code, stdout, stderr = cli("run", pipe, "--json")
    assert code == 0, stderr
    assert [s["status"] for s in json.loads(stdout)["steps"]] == ["succeeded"]
    assert not list((tmp_path / "p").glob(".speed.nncli-old-*"))
    assert_unchanged(before, "rerun")


# ---------------------------------------------------------------------------------------------- predictions keep their rows

@pytest.mark.slow
def test_predict_emits_one_row_per_input_row_in_order(fx, tmp_path, cli):
    rows = [{"uid": "a", "text": "great lamp"}, {"uid": "b", "text": ""}, {"uid": "c", "text": "awful box"},
            {"uid": "d", "text": "   "}, {"uid": "e", "text": "okay kettle"}]
    data = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "preds.jsonl"
    code, stdout, stderr = cli("predict", fx["run"], "--data", data, "--id-column", "uid", "--output", out, "--json")
    assert code == 0, stderr
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(g["row"], g["id"]) for g in got] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert [g["skipped"] for g in got] == [None, "empty text", None, "empty text", None]
    assert [g["predicted"] is None for g in got] == [False, True, False, True, False]
    assert [g["text"] for g in got][:3] == ["great lamp", "", "awful box"]
    r = json.loads(stdout)
    assert (r["rows"], r["scored"], r["skipped"]) == (5, 3, {"empty_text": 2})
    assert "predict: 5 input rows, 3 scored, 2 skipped" in stderr
    code, stdout, stderr = cli("predict", fx["run"], "--data", data, "--limit", "2")
    assert code == 0, stderr
    assert [(json.loads(x)["row"], json.loads(x)["skipped"]) for x in stdout.splitlines()] == [(1, None), (2, "empty text")]


def test_split_rows_are_the_source_row_numbers(tmp_path):
    from nncli.io.labelled import subset, to_split
    from nncli.io.tables import read_table

    data = write_csv(tmp_path / "d.csv", [{"text": t, "label": "x"} for t in ["a", "", "b", "c", " ", "d"]])
    split, _ = to_split(read_table(str(data)), "d", "text", "label")
    assert split.rows == [1, 3, 4, 6] and split.texts == ["a", "b", "c", "d"]
    assert subset(split, [1, 3]).rows == [3, 6]


# ---------------------------------------------------------------------------------------------- explain says what it cut

@pytest.mark.slow
def test_explain_on_a_long_text_says_what_was_truncated(fx, tmp_path, cli):
    text = " ".join(["great", "lamp", "but", "awful", "box", "week"] * 700)   # 4,200 words
    out = tmp_path / "x"
    code, stdout, stderr = cli("explain", fx["run"], "--text", text, "--method", "occlusion", "-o", out, "--json")
    assert code == 0, stderr
    e = json.loads(stdout)["explanations"][0]
    t = e["truncated"]
    assert t["words"] == 4200 and t["words_explained"] == len(e["words"]) < 4200 and t["characters"] == len(text)
    assert t["tokens"] > t["max_length"] and text[: t["characters_explained"]].split()[-1] == e["words"][-1]
    assert f"only its first {t['words_explained']} of 4200 words" in stderr and "truncated" in stderr
    saved = json.loads((out / "report.json").read_text())
    assert saved["truncated"] == 1 and saved["warnings"] and "4200 words" in saved["warnings"][0]
