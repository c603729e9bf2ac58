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
import re
from pathlib import Path
from typing import Any

from nncli.core import console, signals
from nncli.core.atomic import atomic_write_json, atomic_write_text
from nncli.core.errors import GateFailed, Interrupted, NncliError, UsageError
from nncli.core.report import Timer, base_report, now
from nncli.core.rundir import MARKER, RunDir, read_marker
from nncli.pipeline.steps import markdown, step_fingerprint, strings, summary
from nncli.recipe.load import get_path, parse_override, read_yaml, set_path, validate
from nncli.recipe.pipeline import PipelineRecipe
from nncli.recipe.registry import PATH_KEYS

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
    recipe = validate("pipeline", raw, source=str(path))
    return recipe, path.resolve().parent


def run(path: str | Path, overrides: list[str] | None = None, *, force: list[str] | None = None) -> dict:
    timer = Timer()
    recipe, base = load(path, overrides)
    force = list(force or [])
    names = [s.name for s in recipe.steps]
    unknown = [f for f in force if f not in names]
    if unknown:
        raise UsageError(f"--force {unknown[0]}: no such step", f"steps: {', '.join(names)}")
    out_path = Path(recipe.output) if recipe.output else Path("runs") / (recipe.name or "pipeline")
    out = RunDir(out_path.resolve(), command="pipeline")
    _check_references(recipe)
    inputs = _check_steps(recipe, base)   # every step's recipe is valid before the first one runs (and before any output)
    state = _read_state(out.path)          # validated before the directory is touched
    _prepare(out, [Path(path).resolve(), *inputs])
    p = _Pipeline(path, recipe, base, out, state, force, timer)
    p.report["steps"] = [{"name": s.name, "command": s.command, "output": str(out.path / s.name), "status": "not run"}
                         for s in recipe.steps]
    p.save("running", 0)
    for i, step in enumerate(recipe.steps):
        p.run_step(i, step)
    p.save("succeeded", 0)
    return p.report


class _Pipeline:
    """One `nncli run` in progress: its report and state file (saved after every change), and each finished step's
    outputs and run id (what later steps' references resolve to)."""

    def __init__(self, path, recipe: PipelineRecipe, base: Path, out: RunDir, state: dict, force: list[str], timer: Timer):
        self.path, self.recipe, self.base, self.out, self.state, self.force, self.timer = (
            path, recipe, base, out, state, force, timer)
        self.report = base_report("pipeline", recipe.name)
        self.report.update(pipeline=str(Path(path).resolve()), output=str(out.path), steps=[], status="running")
        self.outputs: dict[str, dict] = {}
        self.run_ids: dict[str, str] = {}

    def save(self, status: str, code: int) -> None:
        report, out = self.report, self.out
        report.update(status=status, exit_code=code, timings={"wall_seconds": self.timer()})
        if status != "running":
            report["finished_at"] = now()
        atomic_write_json(out.path / "report.json", report)
        atomic_write_text(out.path / "report.md", markdown(report))
        atomic_write_json(out.path / STATE_FILE, self.state)

    def run_step(self, i: int, step) -> None:
        """Run step `i` unless its fingerprint is unchanged since it last succeeded (then record it as skipped)."""
        cmd, n = step.command, len(self.recipe.steps)
        step_out = self.out.path / step.name
        row = self.report["steps"][i]
        try:
            step_recipe, refs = _build(step, self.base, step_out, self.outputs)
        except NncliError as e:
            row.update(status="error", error=e.message)
            self.save("error", int(e.code))
            raise type(e)(f"step '{step.name}' ({cmd}): {e.message}", e.hint, details=e.details) from e
        dump_ = step_recipe.model_dump(mode="json")
        fp = step_fingerprint(cmd, dump_, {r: self.run_ids[r] for r in refs}, self.out.path)
        prev = self.state["steps"].get(step.name, {})
        row["fingerprint"] = fp
        if (prev.get("fingerprint") == fp and prev.get("status") == "succeeded" and step.name not in self.force
                and (step_out / "report.json").exists()):
            console.log(f"[{i + 1}/{n}] {step.name} ({cmd}): inputs unchanged since {prev.get('finished_at')}, skipped")
            row.update(status="skipped", reason="unchanged inputs", seconds=0.0, **summary(cmd, _read_report(step_out)))
            self.outputs[step.name] = prev["outputs"]
            self.run_ids[step.name] = prev["run_id"]
            return
        resume = prev.get("fingerprint") == fp and prev.get("status") == "interrupted" and cmd in ("finetune", "distill") \
            and (step_out / "checkpoint" / "state.json").exists()
        console.log(f"[{i + 1}/{n}] {step.name} ({cmd})" + (": resuming from its checkpoint" if resume else ""))
        t = Timer()
        owned = _owned(self.out.path, step_out, prev)
        self.state["steps"][step.name] = {"fingerprint": fp, "status": "running", "started_at": now()}
        self.save("running", 0)
        result = self._execute(step, step_recipe, resume, owned, row, t)
        outs = {k: str(step_out / v) if v else str(step_out) for k, v in OUTPUTS[cmd].items()}
        run_id = hashlib.sha256(f"{fp}|{now()}".encode()).hexdigest()[:16]
        self.state["steps"][step.name].update(status="succeeded", finished_at=now(), outputs=outs, run_id=run_id)
        self.outputs[step.name], self.run_ids[step.name] = outs, run_id
        row.update(status="succeeded", seconds=t(), **summary(cmd, result))
        self.save("running", 0)

    def _execute(self, step, step_recipe, resume: bool, owned: bool, row: dict, t: Timer) -> dict:
        """Run one step; on a failed gate, an interrupt or an error, record it in the report and state, then re-raise."""
        cmd, step_out, entry = step.command, self.out.path / step.name, self.state["steps"][step.name]
        try:
            return _execute(cmd, step_recipe, resume, owned)
        except GateFailed as e:
            rep = e.report or _read_report(step_out)
            failed = [g for g in (rep or {}).get("gates", []) if not g.get("passed", True)]
            row.update(status="failed", seconds=t(), error=e.message, failed_gates=failed, **summary(cmd, rep))
            entry.update(status="failed", finished_at=now())
            self.report["failed_step"] = step.name
            self.save("failed", 5)
            raise GateFailed(f"step '{step.name}' ({cmd}) failed a gate: {e.message}; later steps were not run",
                             f"see {step_out}/report.json and {self.out.path}/report.json", report=self.report) from e
        except (Interrupted, KeyboardInterrupt) as e:   # Ctrl-C anywhere in a step, or a step that stopped cleanly on it
            row.update(status="interrupted", seconds=t(), error=getattr(e, "message", "interrupted"))
            entry.update(status="interrupted")
            self.save("interrupted", 130)
            raise Interrupted(f"pipeline interrupted during step '{step.name}' ({cmd})"
                              + (f": {e.message}" if isinstance(e, Interrupted) else ""),
                              f"run the pipeline again: nncli run {self.path} (finished steps are skipped; an interrupted "
                              "finetune or distill step resumes from its checkpoint)") from None
        except NncliError as e:
            row.update(status="error", seconds=t(), error=e.message)
            entry.update(status="error")
            self.report["failed_step"] = step.name
            self.save("error", int(e.code))
            raise type(e)(f"step '{step.name}' ({cmd}): {e.message}", e.hint, details=e.details) from e
        except BaseException:
            row.update(status="error", seconds=t())
            entry.update(status="error")
            self.save("error", 1)
            raise


def check(path: str | Path, overrides: list[str] | None = None) -> PipelineRecipe:
    """Validate a pipeline without running it: its structure, its references, and every step's recipe."""
    recipe, base = load(path, overrides)
    _check_references(recipe)
    _check_steps(recipe, base)
    return recipe


def _check_steps(recipe: PipelineRecipe, base: Path) -> list[Path]:
    """Validate every step's recipe; return the local files and folders the steps read from outside the pipeline."""
    outputs: dict[str, dict] = {}
    problems, inputs = [], []
    for step in recipe.steps:
        placeholder = Path("/nncli-pipeline-check") / step.name
        try:
            built, _ = _build(step, base, placeholder, outputs)
            dump_ = built.model_dump(mode="json")
            dump_.pop("output", None)
            inputs += [p for p in _local_paths(dump_) if not str(p).startswith("/nncli-pipeline-check")]
            if step.recipe:
                inputs.append(_step_recipe_path(step, base))
        except NncliError as e:
            problems += [f"steps.{step.name}: {d}" for d in (e.details or [e.message])]
        outputs[step.name] = {k: str(placeholder / v) if v else str(placeholder) for k, v in OUTPUTS[step.command].items()}
    if problems:
        raise UsageError(f"{len(problems)} problem(s) in the pipeline's steps", "fix the keys listed", details=problems)
    return inputs


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

def _prepare(out: RunDir, inputs: list[Path]) -> None:
    """A pipeline directory is reused on purpose (unchanged steps are skipped): continue one nncli made, refuse anything else."""
    p = out.path
    marker = read_marker(p) if p.is_dir() else None
    if marker is not None and marker.get("command") != "pipeline":
        raise UsageError(f"pipeline output {p} is an nncli {marker.get('command')} run directory, not a pipeline directory",
                         "set output: to a new or empty directory, or to this pipeline's own directory")
    if marker is None and p.is_dir() and (p / STATE_FILE).exists():
        raise UsageError(f"pipeline output {p} was written by an earlier nncli version (it has no {MARKER})",
                         "delete it yourself (its steps would be replaced), or set output: to a new directory")
    out.prepare(resume=marker is not None, inputs=inputs)


def _owned(pipeline_dir: Path, step_out: Path, prev: dict) -> bool:
    """May a step replace its output directory? Inside the pipeline directory, or where this step wrote before; a step's
    `output:` pointing at an existing folder elsewhere is refused, never emptied (and nncli replaces only its own runs)."""
    p = step_out.resolve()
    return pipeline_dir in p.parents or (prev.get("outputs") or {}).get("output") == str(step_out)


def _step_recipe_path(step, base: Path) -> Path:
    rp = Path(step.recipe) if Path(step.recipe).is_absolute() else base / step.recipe
    if not rp.exists():
        from nncli.recipe.shipped import find_recipe

        rp = find_recipe(step.recipe)
    return rp


def _local_paths(tree) -> list[Path]:
    out = []
    for s in strings(tree):
        if len(s) > 4096 or "\n" in s or not Path(s).is_absolute():
            continue
        try:
            p = Path(s)
            if p.exists():
                out.append(p.resolve())
        except (OSError, ValueError):
            continue
    return out


def _check_references(recipe: PipelineRecipe) -> None:
    seen: dict[str, str] = {}
    problems = []
    for step in recipe.steps:
        for value in strings(step.set):
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
        rp = _step_recipe_path(step, base)
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
    return with_step_gates(step, validate(cmd, raw, source=f"step {step.name}")), sorted(set(refs))


def _flatten(tree: dict, prefix: tuple = ()):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _flatten(v, prefix + (k,))
        else:
            yield list(prefix + (k,)), v


def with_step_gates(step, recipe):
    """The step's gates add to its recipe's (an explicitly empty side, STEP.gates.min={}, removes the recipe's too),
    and become part of the recipe the step runs (and of its fingerprint)."""
    if step.command not in GATED:
        return recipe
    sides = {}
    for side in ("min", "max"):
        mine = getattr(step.gates, side)
        cleared = side in step.gates.model_fields_set and not mine
        sides[side] = {} if cleared else {**getattr(recipe.gates, side), **mine}
    recipe.gates = type(recipe.gates)(**sides)
    return recipe


RESUMABLE = ("finetune", "distill")
RUNNERS = {"finetune": "nncli.train.finetune", "distill": "nncli.train.distill", "evaluate": "nncli.evaluate.evaluation",
           "quantize": "nncli.deploy.quantize", "export": "nncli.deploy.export", "bench": "nncli.deploy.bench",
           "drift": "nncli.evaluate.drift"}


def _execute(cmd: str, recipe, resume: bool, owned: bool):
    """Every step the same way: its command's run(recipe); it may replace its output only when the pipeline owns it
    (`owned`), and then only an nncli run."""
    import importlib

    signals.check()   # a signal that came during the last step, after its own last safe point: stop before this one
    module = importlib.import_module(RUNNERS[cmd])
    if cmd == "bench":
        return module.run(recipe.models, batch_sizes=recipe.batch_sizes, seq_lens=recipe.seq_lens, threads=recipe.threads,
                          torch_int8=recipe.torch_int8, output=recipe.output, overwrite=owned, baseline=recipe.baseline,
                          fail_if_slower=recipe.fail_if_slower, min_seconds=recipe.min_seconds)
    return module.run(recipe, overwrite=owned and not resume, **({"resume": resume} if cmd in RESUMABLE else {}))


def _read_state(p: Path) -> dict:
    from nncli.core.artifacts import PipelineState, read_artifact

    f = p / STATE_FILE
    if f.exists() and read_marker(p) is not None:     # only a pipeline directory nncli made (_prepare refuses the rest)
        return read_artifact(f, PipelineState).model_dump()
    return {"schema_version": 1, "steps": {}}


def _read_report(d: Path) -> dict | None:
    from nncli.core.artifacts import Report, read_artifact

    f = d / "report.json"
    return read_artifact(f, Report, hint=f"rerun this step with --force {d.name}").model_dump() if f.exists() else None
