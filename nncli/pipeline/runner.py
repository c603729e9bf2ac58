"""`nncli run PIPELINE.yaml`: named steps (finetune, distill, evaluate, quantize, export, bench, drift) in order.

- A step is a recipe of one command (`recipe:` a file, `set:` keys over it) and writes to
  <pipeline output>/<step name>. Later steps refer to earlier outputs as `${finetune.merged}`,
  `${quantize.model}`, `${evaluate.report}`; every reference is checked before anything runs.
- Gates: a step's own thresholds (quantize max_drop, export parity, bench fail_if_slower, drift) and
  `gates: {min: ..., max: ...}` on finetune, distill and evaluate. The first failed gate stops the
  pipeline (exit 5); the first error stops it with that error's exit code.
- Re-running skips a step whose fingerprint is unchanged: its resolved recipe, the content of every
  input file or directory outside the pipeline, and the runs of the steps it refers to (a step that
  ran again makes everything downstream of it run again). `--force STEP` reruns one step. An
  interrupted finetune/distill step resumes from its checkpoint.
- One pipeline report (report.json + report.md) with every step's status, metrics, artifacts, timings.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from nncli import __version__
from nncli.core import console
from nncli.core.errors import GateFailed, Interrupted, NncliError, UsageError
from nncli.recipe.registry import PATH_KEYS, SCHEMAS
from nncli.recipe.pipeline import PipelineRecipe
from nncli.core.markdown import table
from nncli.recipe.load import fingerprint, get_path, parse_override, read_yaml, set_path, validate
from nncli.core.rundir import RunDir
from nncli.core.report import Timer, base_report, now
from nncli.core.atomic import atomic_write_json, atomic_write_text

STATE_FILE = "pipeline-state.json"
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_]*)\}")
OUTPUTS = {
    "finetune": {"output": "", "run": "", "merged": "merged", "adapter": "adapter", "report": "report.json"},
    "distill": {"output": "", "run": "", "merged": "merged", "report": "report.json"},
    "evaluate": {"output": "", "report": "report.json"},
    "quantize": {"output": "", "model": "", "report": "report.json"},
    "export": {"output": "", "model": "", "report": "report.json"},
    "bench": {"output": "", "report": "report.json"},
    "drift": {"output": "", "report": "report.json"},
}
GATED = ("finetune", "distill", "evaluate")


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[PipelineRecipe, Path]:
    path = Path(path)
    raw = read_yaml(path)
    if raw.get("command", "pipeline") != "pipeline":
        raise UsageError(f"{path}: this is a '{raw.get('command')}' recipe, not a pipeline",
                         f"run it with: nncli {raw.get('command')} {path}")
    raw.setdefault("name", path.stem)
    steps = {s.get("name"): s for s in raw.get("steps", []) if isinstance(s, dict)}
    for item in overrides or []:
        keys, value = parse_override(item)
        if keys[0] in steps and len(keys) > 1 and keys[1] == "gates":   # evaluate.gates.min.accuracy=0.9: the step's gates
            step = steps[keys[0]]
            if len(keys) > 3:   # a metric name may itself contain dots (test.macro_f1)
                set_path(step, ["gates", keys[2]], {**(get_path(step, ["gates", keys[2]]) or {}), ".".join(keys[3:]): value})
            else:
                set_path(step, keys[1:], value)
        elif keys[0] in steps and len(keys) > 1:   # finetune.train.epochs=1 -> that step's recipe key
            steps[keys[0]].setdefault("set", {})[".".join(keys[1:])] = value
        else:
            set_path(raw, keys, value)
    recipe = validate(PipelineRecipe, raw, source=str(path))
    return recipe, path.resolve().parent


def run(path: str | Path, overrides: list[str] | None = None, *, force: list[str] | None = None) -> dict:
    timer = Timer()
    recipe, base = load(path, overrides)
    force = list(force or [])
    names = [s.name for s in recipe.steps]
    unknown = [f for f in force if f not in names]
    if unknown:
        raise UsageError(f"--force {unknown[0]}: no such step", f"steps: {', '.join(names)}")
    out = RunDir((Path(recipe.output) if recipe.output else Path("runs") / (recipe.name or "pipeline")).resolve())
    _check_output(out.path)
    _check_references(recipe)
    _check_steps(recipe, base)   # every step's recipe is valid before the first one runs
    out.path.mkdir(parents=True, exist_ok=True)
    state = _read_state(out.path)
    report = base_report("pipeline", recipe.name)
    report.update(pipeline=str(Path(path).resolve()), output=str(out.path), steps=[], status="running")
    outputs: dict[str, dict] = {}
    run_ids: dict[str, str] = {}

    def save(status: str, code: int) -> None:
        report.update(status=status, exit_code=code, timings={"wall_seconds": timer()})
        if status != "running":
            report["finished_at"] = now()
        atomic_write_json(out.path / "report.json", report)
        atomic_write_text(out.path / "report.md", markdown(report))
        atomic_write_json(out.path / STATE_FILE, state)

    report["steps"] = [{"name": s.name, "command": s.command, "output": str(out.path / s.name), "status": "not run"}
                       for s in recipe.steps]
    save("running", 0)
    for i, step in enumerate(recipe.steps):
        cmd = step.command
        step_out = out.path / step.name
        row = report["steps"][i]
        try:
            step_recipe, refs = _build(step, base, step_out, outputs)
        except NncliError as e:
            row.update(status="error", error=e.message)
            save("error", int(e.code))
            raise type(e)(f"step '{step.name}' ({cmd}): {e.message}", e.hint, details=e.details) from e
        dump_ = step_recipe.model_dump(mode="json")
        fp = _fingerprint(cmd, dump_, {r: run_ids[r] for r in refs}, out.path)
        prev = state["steps"].get(step.name, {})
        row["fingerprint"] = fp
        if (prev.get("fingerprint") == fp and prev.get("status") == "succeeded" and step.name not in force
                and (step_out / "report.json").exists()):
            console.log(f"[{i + 1}/{len(recipe.steps)}] {step.name} ({cmd}): inputs unchanged since {prev.get('finished_at')}, skipped")
            row.update(status="skipped", reason="unchanged inputs", seconds=0.0, **_summary(cmd, _read_report(step_out)))
            outputs[step.name] = prev["outputs"]
            run_ids[step.name] = prev["run_id"]
            continue
        resume = prev.get("fingerprint") == fp and prev.get("status") == "interrupted" and cmd in ("finetune", "distill") \
            and (step_out / "checkpoint" / "state.json").exists()
        console.log(f"[{i + 1}/{len(recipe.steps)}] {step.name} ({cmd})" + (": resuming from its checkpoint" if resume else ""))
        t = Timer()
        gates = _gates(step, step_recipe)
        state["steps"][step.name] = {"fingerprint": fp, "status": "running", "started_at": now()}
        save("running", 0)
        try:
            result = _execute(cmd, step_recipe, gates, resume)
        except GateFailed as e:
            rep = e.report or _read_report(step_out)
            failed = [g for g in (rep or {}).get("gates", []) if not g.get("passed", True)]
            row.update(status="failed", seconds=t(), error=e.message, failed_gates=failed, **_summary(cmd, rep))
            state["steps"][step.name].update(status="failed", finished_at=now())
            report["failed_step"] = step.name
            save("failed", 5)
            raise GateFailed(f"step '{step.name}' ({cmd}) failed a gate: {e.message}; later steps were not run",
                             f"see {step_out}/report.json and {out.path}/report.json", report=report) from e
        except Interrupted as e:
            row.update(status="interrupted", seconds=t(), error=e.message)
            state["steps"][step.name].update(status="interrupted")
            save("interrupted", 130)
            raise Interrupted(f"step '{step.name}' ({cmd}): {e.message}", f"run the pipeline again: nncli run {path} "
                              "(an interrupted finetune or distill step resumes from its checkpoint)") from e
        except NncliError as e:
            row.update(status="error", seconds=t(), error=e.message)
            state["steps"][step.name].update(status="error")
            report["failed_step"] = step.name
            save("error", int(e.code))
            raise type(e)(f"step '{step.name}' ({cmd}): {e.message}", e.hint, details=e.details) from e
        except BaseException:
            row.update(status="error", seconds=t())
            state["steps"][step.name].update(status="error")
            save("error", 1)
            raise
        outs = {k: str(step_out / v) if v else str(step_out) for k, v in OUTPUTS[cmd].items()}
        run_id = hashlib.sha256(f"{fp}|{now()}".encode()).hexdigest()[:16]
        state["steps"][step.name].update(status="succeeded", finished_at=now(), outputs=outs, run_id=run_id)
        outputs[step.name], run_ids[step.name] = outs, run_id
        row.update(status="succeeded", seconds=t(), **_summary(cmd, result))
        save("running", 0)
    save("succeeded", 0)
    return report


def check(path: str | Path, overrides: list[str] | None = None) -> PipelineRecipe:
    """Validate a pipeline without running it: its structure, its references, and every step's recipe."""
    recipe, base = load(path, overrides)
    _check_references(recipe)
    _check_steps(recipe, base)
    return recipe


def _check_steps(recipe: PipelineRecipe, base: Path) -> None:
    outputs: dict[str, dict] = {}
    problems = []
    for step in recipe.steps:
        placeholder = Path("/nncli-pipeline-check") / step.name
        try:
            _build(step, base, placeholder, outputs)
        except NncliError as e:
            problems += [f"steps.{step.name}: {d}" for d in (e.details or [e.message])]
        outputs[step.name] = {k: str(placeholder / v) if v else str(placeholder) for k, v in OUTPUTS[step.command].items()}
    if problems:
        raise UsageError(f"{len(problems)} problem(s) in the pipeline's steps", "fix the keys listed", details=problems)


def copy_paths_absolute(raw: dict, src_dir: Path) -> dict:
    """For `nncli recipes copy`: step recipe files and relative paths in `set:` made absolute."""
    for step in raw.get("steps", []) or []:
        if not isinstance(step, dict):
            continue
        if isinstance(step.get("recipe"), str) and (src_dir / step["recipe"]).exists():
            step["recipe"] = str((src_dir / step["recipe"]).resolve())
        keys = {".".join(k) for k in PATH_KEYS.get(step.get("command", ""), [])}
        for k, v in list((step.get("set") or {}).items()):
            if k in keys and isinstance(v, str) and not REF.search(v) and (src_dir / v).exists():
                step["set"][k] = str((src_dir / v).resolve())
    return raw


# ---------------------------------------------------------------------------------------------- steps

def _check_output(p: Path) -> None:
    if p.exists() and not p.is_dir():
        raise UsageError(f"pipeline output {p} is a file", "set output: to a directory")
    if p.exists() and any(p.iterdir()) and not (p / STATE_FILE).exists():
        raise UsageError(f"pipeline output {p} exists, is not empty and is not a pipeline directory",
                         "set output: to a new or empty directory (a pipeline directory is reused on purpose)")


def _check_references(recipe: PipelineRecipe) -> None:
    seen: dict[str, str] = {}
    problems = []
    for step in recipe.steps:
        for value in _strings(step.set):
            for name, key in REF.findall(value):
                if name not in seen:
                    later = name in [s.name for s in recipe.steps]
                    problems.append(f"steps.{step.name}: ${{{name}.{key}}} refers to " +
                                    ("a later step" if later else f"no step called '{name}'"))
                elif key not in OUTPUTS[seen[name]]:
                    problems.append(f"steps.{step.name}: ${{{name}.{key}}}: a {seen[name]} step has no '{key}' "
                                    f"(it has: {', '.join(OUTPUTS[seen[name]])})")
        if step.gates.min or step.gates.max:
            if step.command not in GATED:
                problems.append(f"steps.{step.name}.gates: {step.command} has its own thresholds (e.g. quantize max_drop, "
                                "export atol, bench fail_if_slower); set them under set:")
        seen[step.name] = step.command
    if problems:
        raise UsageError(f"{len(problems)} problem(s) in the pipeline", "fix the step references", details=problems)


def _build(step, base: Path, step_out: Path, outputs: dict) -> tuple[Any, list[str]]:
    from nncli.recipe.load import resolve_relative

    cmd = step.command
    raw: dict = {}
    if step.recipe:
        rp = Path(step.recipe) if Path(step.recipe).is_absolute() else base / step.recipe
        if not rp.exists():
            from nncli.recipe.shipped import find_recipe

            rp = find_recipe(step.recipe)
        raw = read_yaml(rp)
        if raw.get("command", "finetune") != cmd:
            raise UsageError(f"recipe {step.recipe} is a '{raw.get('command', 'finetune')}' recipe, the step runs {cmd}",
                             "point recipe: at a recipe of the same command")
        resolve_relative(raw, rp.resolve().parent, cmd)
    refs: list[str] = []

    def sub(value):
        if isinstance(value, str):
            full = REF.fullmatch(value)
            for name, _ in REF.findall(value):
                refs.append(name)
            if full:
                return outputs[full.group(1)][full.group(2)]
            return REF.sub(lambda m: outputs[m.group(1)][m.group(2)], value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    settings: dict = {}
    for key, value in step.set.items():
        set_path(settings, str(key).split("."), sub(value))
    resolve_relative(settings, base, cmd)
    for key, value in _flatten(settings):
        set_path(raw, key, value)
    raw["command"] = cmd
    raw.setdefault("name", step.name)
    if "output" not in step.set:
        raw["output"] = str(step_out)
    return validate(SCHEMAS[cmd], raw, source=f"step {step.name}"), sorted(set(refs))


def _flatten(tree: dict, prefix: tuple = ()):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _flatten(v, prefix + (k,))
        else:
            yield list(prefix + (k,)), v


def _gates(step, recipe) -> list[dict]:
    from nncli.core.report import parse_gates

    if step.command not in GATED:
        return []
    # the step's gates add to the recipe's; an explicitly empty side (STEP.gates.min={}) removes the recipe's too
    sides = {}
    for side in ("min", "max"):
        mine = getattr(step.gates, side)
        cleared = side in step.gates.model_fields_set and not mine
        sides[side] = {} if cleared else {**getattr(recipe.gates, side), **mine}
    mins, maxs = sides["min"], sides["max"]
    return parse_gates(mins, maxs)


def _execute(cmd: str, recipe, gates: list[dict], resume: bool) -> dict:
    if cmd == "finetune":
        from nncli.train import finetune

        return finetune.run(recipe, overwrite=not resume, resume=resume, gates=gates)
    if cmd == "distill":
        from nncli.train import distill

        return distill.run(recipe, overwrite=not resume, resume=resume, gates=gates)
    if cmd == "evaluate":
        from nncli.evaluate import evaluation as evaluate

        return evaluate.run(recipe, overwrite=True, gates=gates)
    if cmd == "quantize":
        from nncli.deploy import quantize

        return quantize.run(recipe, overwrite=True)
    if cmd == "export":
        from nncli.deploy import export

        return export.run(recipe, overwrite=True)
    if cmd == "bench":
        from nncli.deploy import bench

        return bench.run(recipe.models, batch_sizes=recipe.batch_sizes, seq_lens=recipe.seq_lens, threads=recipe.threads,
                         torch_int8=recipe.torch_int8, output=recipe.output, overwrite=True, baseline=recipe.baseline,
                         fail_if_slower=recipe.fail_if_slower, min_seconds=recipe.min_seconds)
    if cmd == "drift":
        from nncli.evaluate import drift

        return drift.run(recipe, overwrite=True)
    raise UsageError(f"unknown step command {cmd}")  # pragma: no cover (the schema allows only the above)


# ---------------------------------------------------------------------------------------------- fingerprints

def _strings(tree) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _strings(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in _strings(v)]
    return []


def content_hash(p: Path) -> str:
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _fingerprint(cmd: str, recipe: dict, upstream: dict, pipeline_dir: Path) -> str:
    files = {}
    for s in _strings(recipe):
        if len(s) > 4096 or "\n" in s:
            continue
        try:
            p = Path(s)
            if not p.is_absolute() or not p.exists():
                continue
            rp = p.resolve()
        except (OSError, ValueError):
            continue
        if rp == pipeline_dir or pipeline_dir in rp.parents:
            continue   # outputs of this pipeline: covered by the upstream run ids
        files[s] = content_hash(rp)
    return fingerprint({"nncli": __version__, "command": cmd, "recipe": recipe, "upstream": upstream, "inputs": files})


def _read_state(p: Path) -> dict:
    f = p / STATE_FILE
    if f.exists():
        try:
            s = json.loads(f.read_text())
            if isinstance(s.get("steps"), dict):
                return s
        except (OSError, ValueError):
            console.warn(f"{f} is unreadable: every step will run")
    return {"schema_version": 1, "steps": {}}


def _read_report(d: Path) -> dict | None:
    try:
        return json.loads((d / "report.json").read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- summaries

def _summary(cmd: str, r: dict | None) -> dict:
    """The few numbers a person wants per step, in the pipeline report."""
    if not r:
        return {}
    m: dict[str, Any] = {}
    if cmd in ("finetune", "distill"):
        for split in ("test", "validation"):
            if split in (r.get("metrics") or {}):
                m.update({f"{split}.accuracy": r["metrics"][split].get("accuracy"), f"{split}.macro_f1": r["metrics"][split].get("macro_f1")})
                break
        if cmd == "distill" and r.get("distill"):
            m.update(retention=r["distill"]["retention"]["accuracy"], speedup=r["distill"]["speedup_throughput"])
    elif cmd == "evaluate":
        x = r.get("metrics") or {}
        m.update({k: x.get(k) for k in ("accuracy", "macro_f1", "ece", "perplexity") if x.get(k) is not None})
        cal = (r.get("models") or [{}])[0].get("calibration") or {}
        if cal.get("ece_after") is not None:
            m["ece_after_calibration"] = cal["ece_after"]
    elif cmd == "quantize":
        chosen = next((c for c in r.get("candidates", []) if c.get("status") == "chosen"), None)
        if chosen:
            m.update(chosen=chosen["candidate"], speedup=chosen["speedup"], accuracy_drop_points=chosen["accuracy_drop"] * 100,
                     flip_rate=chosen["flip_rate"], size_mb=chosen["size_mb"])
    elif cmd == "export":
        p = r.get("parity") or {}
        m.update({k: p.get(k) for k in ("max_abs_diff", "flipped", "agreement") if k in p})
    elif cmd == "bench":
        res = r.get("results") or []
        if res:
            best = max(res, key=lambda x: x["throughput_per_second"])
            m.update(best_throughput=best["throughput_per_second"], best_backend=best["backend"], best_batch=best["batch_size"])
    elif cmd == "drift":
        m.update(drift_detected=r.get("drift_detected"), top_drifting=r.get("top_drifting"))
    return {"metrics": m, "artifacts": r.get("artifacts") or {}}


def markdown(report: dict) -> str:
    rows = []
    for s in report.get("steps", []):
        nums = ", ".join(f"{k} {fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        if s.get("error"):
            nums = (nums + "; " if nums else "") + s["error"][:200]
        rows.append([s["name"], s["command"], s.get("status", "not run"), f"{s.get('seconds', 0):.1f}", nums])
    lines = [f"# Pipeline {report.get('name') or ''}: {report.get('status')}", ""]
    lines += table(["step", "command", "status", "seconds", "key numbers"], rows)
    if report.get("failed_step"):
        lines += ["", f"Stopped at step `{report['failed_step']}`."]
    return "\n".join(lines) + "\n"


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v[:5]))
    return str(v)
