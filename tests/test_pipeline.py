"""`nncli run` (pipelines) and `nncli report`: the shipped quickstart pipeline end to end on a tiny model,
gates that stop it, skipping unchanged steps, --force, reference checks."""

from __future__ import annotations

import json

import pytest


def _quick(tiny_bert, out, *extra):
    return ["run", "quickstart", f"output={out}", f"finetune.model.name={tiny_bert}", "finetune.train.max_steps=40",
            "finetune.train.lr=5e-3", "finetune.data.max_length=32", "finetune.train.threads=2", "drift.max_accuracy_drop=50",
            "finetune.gates.min={}", "evaluate.gates.min={}",
            "evaluate.gates.max={}", "evaluate.robustness.samples=20", "quantize.max_drop=100", "quantize.require_speedup=false",
            "quantize.min_seconds=0.05", "quantize.method=dynamic", "bench.min_seconds=0.05", "bench.seq_lens=[32]", *extra]


@pytest.fixture(scope="module")
def pipeline_run(tiny_bert, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("pipe") / "quickstart"
    r = CliRunner().invoke(app, [*_quick(tiny_bert, out), "--json"])
    return out, r


@pytest.mark.slow
def test_quickstart_pipeline_runs_every_step(pipeline_run):
    out, r = pipeline_run
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["command"] == "pipeline" and rep["status"] == "succeeded"
    assert [s["name"] for s in rep["steps"]] == ["finetune", "evaluate", "quantize", "export", "bench", "drift"]
    assert all(s["status"] == "succeeded" for s in rep["steps"])
    for s in rep["steps"]:
        assert json.loads((out / s["name"] / "report.json").read_text())["status"] == "succeeded", s["name"]
    assert (out / "finetune" / "merged" / "config.json").exists() and (out / "export" / "model.onnx").exists()
    assert (out / "finetune" / "merged" / "calibration.json").exists()       # evaluate stored its temperature
    bench = json.loads((out / "bench" / "report.json").read_text())
    assert {x["backend"] for x in bench["results"]} >= {"torch", "onnxruntime"}
    assert len({x["model"] for x in bench["results"]}) == 3
    saved = json.loads((out / "report.json").read_text())
    assert saved["status"] == "succeeded" and "| finetune | finetune | succeeded" in (out / "report.md").read_text()
    q = next(s for s in rep["steps"] if s["name"] == "quantize")
    assert "chosen" in q["metrics"]


@pytest.mark.slow
def test_rerun_skips_unchanged_steps_and_force_reruns_one(pipeline_run, tiny_bert, cli):
    out, first = pipeline_run
    assert first.exit_code == 0
    code, stdout, stderr = cli(*_quick(tiny_bert, out), "--json")
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert [s["status"] for s in rep["steps"]] == ["skipped"] * 6
    assert "skipped" in stderr
    code, stdout, stderr = cli(*_quick(tiny_bert, out), "--force", "evaluate", "--json")
    assert code == 0, stderr
    status = {s["name"]: s["status"] for s in json.loads(stdout)["steps"]}
    assert status["evaluate"] == "succeeded" and status["finetune"] == "skipped" and status["export"] == "skipped"
    # a changed input of the first step reruns it and everything that refers to it
    code, stdout, stderr = cli(*_quick(tiny_bert, out), "finetune.train.max_steps=30", "--json")
    assert code == 0, stderr
    assert all(s["status"] == "succeeded" for s in json.loads(stdout)["steps"])


@pytest.mark.slow
def test_failed_gate_stops_the_pipeline_and_names_step_and_gate(tiny_bert, tmp_path, cli):
    out = tmp_path / "p"
    code, stdout, stderr = cli(*_quick(tiny_bert, out), "evaluate.gates.min.accuracy=1.01", "--json")
    assert code == 5, stderr
    rep = json.loads(stdout)
    assert rep["failed_step"] == "evaluate" and rep["status"] == "failed"
    ev = next(s for s in rep["steps"] if s["name"] == "evaluate")
    assert ev["status"] == "failed" and ev["failed_gates"][0]["metric"] == "accuracy"
    assert [s["status"] for s in rep["steps"][2:]] == ["not run"] * 4
    assert "step 'evaluate'" in stderr and "accuracy" in stderr
    assert not (out / "quantize").exists()
    assert json.loads((out / "report.json").read_text())["failed_step"] == "evaluate"


def test_bad_references_are_refused_before_anything_runs(tmp_path, cli):
    p = tmp_path / "p.yaml"
    p.write_text("command: pipeline\nname: p\noutput: " + str(tmp_path / "out") + "\nsteps:\n"
                 "  - {name: ev, command: evaluate, set: {models: ['${ft.run}'], data.path: x.csv}}\n"
                 "  - {name: ft, command: finetune, set: {data.train: x.csv}}\n"
                 "  - {name: q, command: quantize, set: {model: '${ft.merged_model}'}, gates: {min: {accuracy: 0.5}}}\n")
    code, _, stderr = cli("run", str(p))
    assert code == 2 and "refers to a later step" in stderr and "has no 'merged_model'" in stderr and "own thresholds" in stderr
    assert not (tmp_path / "out").exists()


def test_finetune_on_a_pipeline_file_points_to_nncli_run(cli):
    code, _, stderr = cli("finetune", "quickstart")
    assert code == 2 and "nncli run" in stderr


@pytest.mark.slow
def test_report_summarises_a_pipeline_as_markdown(pipeline_run, tmp_path, cli):
    out, r = pipeline_run
    assert r.exit_code == 0
    code, stdout, stderr = cli("report", str(out), str(out / "finetune"), "-o", str(tmp_path / "summary.md"), "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)["runs"]
    assert [x["task"] for x in rows][:6] == ["finetune", "evaluate", "quantize", "export", "bench", "drift"]
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("### nncli report") and "| quickstart/finetune | finetune |" in md
    code, _, stderr = cli("report", str(tmp_path / "nope"))
    assert code == 3 and "report.json" in stderr


def test_ci_examples_are_valid(cli):
    import subprocess
    from pathlib import Path

    ci = Path(__file__).resolve().parent.parent / "examples" / "ci"
    code, _, stderr = cli("recipes", "validate", str(ci / "pipeline.yaml"))
    assert code == 0, stderr
    assert subprocess.run(["bash", "-n", str(ci / "run-pipeline.sh")]).returncode == 0
    import yaml

    wf = yaml.safe_load((ci / "github-actions.yml").read_text())
    steps = wf["jobs"]["pipeline"]["steps"]
    assert any("run-pipeline.sh" in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s.get("if") == "always()" for s in steps)


def test_a_typo_in_a_later_step_is_refused_before_the_first_runs(tmp_path, cli):
    p = tmp_path / "p.yaml"
    p.write_text("command: pipeline\nname: p\noutput: " + str(tmp_path / "out") + "\nsteps:\n"
                 "  - {name: ft, command: finetune, recipe: reviews}\n"
                 "  - {name: q, command: quantize, set: {model: '${ft.run}', max_dorp: 1}}\n")
    code, _, stderr = cli("run", str(p))
    assert code == 2 and "max_dorp" in stderr and "did you mean" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pipeline_with_a_distill_step(tiny_bert, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    p = tmp_path / "d.yaml"
    p.write_text(f"""command: pipeline
name: d
output: {tmp_path / 'out'}
steps:
  - name: teacher
    command: finetune
    set: {{model.name: {tiny_bert}, data.train: {tiny_data['train']}, data.validation: {tiny_data['validation']},
           method: full, train.lr: 3.0e-3, train.epochs: 2, data.max_length: 32}}
  - name: student
    command: distill
    set: {{teacher: "${{teacher.run}}", student: layers=1, data.train: {tiny_data['train']},
           data.validation: {tiny_data['validation']}, train.epochs: 2, data.max_length: 32, distill.control: false,
           distill.bench_seconds: 0.05}}
    gates: {{min: {{retention: 0.0}}}}
  - name: export
    command: export
    set: {{model: "${{student.run}}"}}
""")
    code, stdout, stderr = cli("run", str(p), "--json")
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert [s["status"] for s in rep["steps"]] == ["succeeded"] * 3
    st = next(s for s in rep["steps"] if s["name"] == "student")
    assert "retention" in st["metrics"] and (tmp_path / "out" / "export" / "model.onnx").exists()
