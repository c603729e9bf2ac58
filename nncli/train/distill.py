"""`nncli distill`: a smaller, faster student trained to mimic a fine-tuned teacher, through the one loop.

The student (nncli/train/student.py) is built from the teacher into <run>/student_init (so --resume finds the same
start); the task (nncli/train/tasks/distill.py) adds the teacher's cached soft targets to the classification loss.
The report puts teacher and student side by side (parameters with and without embeddings, size, latency and
throughput measured in the same process, accuracy and macro-F1, retention) and, by default, the same student trained
without the teacher (the control), so the gain is measured, not assumed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError
from nncli.core.report import RunReport, evaluate_gates, finish, gates_of
from nncli.core.rundir import recording
from nncli.train.finetune import start, summarise, train
from nncli.train.student import build_student, count_parameters, parse_student
from nncli.train.tasks.distill import DistillTask, cache_dir, model_fingerprint, teacher_outputs

METRICS = ["retention", "retention_accuracy", "retention_macro_f1", "speedup", "gain_over_control"]


def run(recipe, *, resume: bool = False, overwrite: bool = False) -> RunReport:
    from nncli.io.inference import release
    from nncli.train import image_distill

    images = recipe.task == "image-classification"
    teacher = image_distill.load_teacher(recipe) if images else _load_teacher(recipe)
    if not teacher.backend.startswith("torch"):
        raise InputError(f"teacher {recipe.teacher} is an ONNX export: distillation needs the PyTorch model",
                         "pass the run directory or its merged/ folder as --teacher")
    spec = image_distill.student_spec(recipe, teacher) if images else parse_student(recipe.student)
    teacher_fp = model_fingerprint(teacher.path)
    ft = finetune_recipe(recipe, spec["model"] if "model" in spec else teacher.path,
                         recipe.output or f"runs/{recipe.name or 'distill'}")
    d = recipe.distill
    settings = {"teacher": teacher_fp, "student": recipe.student, "alpha": d.alpha, "T": d.temperature}
    if not images:
        settings.update(hidden_weight=d.hidden_weight, transfer=d.transfer_data, transfer_limit=d.transfer_limit)
    s = start(ft, command="distill", resume=resume, overwrite=overwrite, extra_fingerprint=settings, extra_metrics=METRICS,
              saved=recipe)
    _check_labels(s.pf.data.label_names, teacher, recipe)
    info_d: dict = {}
    with recording(s.out, s.report):
        student_dir, init = _student(s, spec, teacher, resume, image_distill.build_student if images else build_student)
        build = (image_distill.builder(teacher, teacher_fp, student_dir, recipe, info_d) if images
                 else _builder(teacher, teacher_fp, student_dir, recipe, init, info_d))
        trained = train(s, build=build)
        DistillTask.detach(trained.model)
        summarise(s, trained)
        values, intervals, sizes = s.kind.conclude(trained, s.pf, ft, s.out, s.report)
        student = image_distill.load_teacher(_at(recipe, s.out.path)) if images else \
            _load_teacher(_at(recipe, s.out.path), trust=False)
        dist = _side_by_side(teacher, student, s.pf.data, recipe, s.report, image_distill.scores if images else _scores)
        release(student)
        dist.update(student={**dist["student"], "init": init}, **info_d)
        if d.control:
            console.log("control: the same student trained on the labels alone (no teacher)")
            from nncli.train import finetune

            ctrl = finetune.run(finetune_recipe(recipe, student_dir, str(s.out / "control"), gates=False), overwrite=True)
            dist["control"] = {"run": "control", "metrics": ctrl["metrics"]}
        release(teacher)
        if not d.keep_student_init and "model" not in spec:
            shutil.rmtree(student_dir, ignore_errors=True)
        values.update(_distill_values(dist, s.report, recipe))
        s.report["distill"] = dist
        card = s.kind.card(s.report, ft) + model_card_section(dist)
        return finish(s.report, s.out, evaluate_gates(gates_of(recipe.gates), values, intervals=intervals, sizes=sizes),
                      card=card)


def _load_teacher(recipe, trust: bool = True):
    from nncli.io.inference import load_classifier

    return load_classifier(recipe.teacher, trust_remote_code=trust and recipe.model.trust_remote_code,
                           allow_pickle=trust and recipe.model.allow_pickle, threads=recipe.train.threads)


def _at(recipe, path):
    """The recipe with the trained student as its `teacher` (to load it the way the teacher was loaded)."""
    return recipe.model_copy(update={"teacher": str(path)})


def _scores(clf, split) -> np.ndarray:
    return clf.logits(split.texts, split.pairs)


def finetune_recipe(recipe, model: str | Path, output: str, *, gates: bool = True):
    """The classifier recipe the student trains with (and the one pre-flight checks)."""
    from nncli.recipe.finetune import TASK_SCHEMAS

    raw = recipe.model_dump(mode="json")
    for k in ("command", "teacher", "student", "distill"):
        raw.pop(k, None)
    raw["model"] = {**raw["model"], "name": str(model)}
    raw["output"] = output
    if not gates:
        raw["gates"] = {"min": {}, "max": {}}
    return TASK_SCHEMAS[recipe.task].model_validate(raw)


def preflight_recipe(recipe):
    """What `nncli validate` checks for a distill recipe: the teacher's tokenizer, unless the student is a named model."""
    from nncli.io.inference import model_dir_of

    spec = parse_student(recipe.student) if recipe.student else {}      # images: no student = half the teacher
    if "model" in spec:
        return finetune_recipe(recipe, spec["model"], recipe.output or "")
    teacher = model_dir_of(recipe.teacher)
    return finetune_recipe(recipe, teacher if teacher is not None else recipe.teacher, recipe.output or "")


def _check_labels(label_names, teacher, recipe) -> None:
    missing = [n for n in label_names if n not in teacher.label_names]
    if missing:
        raise InputError(f"the data has labels the teacher does not know: {', '.join(map(str, missing[:5]))} "
                         f"(teacher labels: {', '.join(teacher.label_names)})",
                         "distil on data with the teacher's label set, or fine-tune a teacher on this data first")


def _student(s, spec: dict, teacher, resume: bool, build_student=build_student) -> tuple[str, dict]:
    """The student's initial weights, in the run directory (so --resume starts from the same student)."""
    if "model" in spec:
        return spec["model"], {"from": "model", "model": spec["model"]}
    work = s.out / "student_init"
    if resume:
        if not (work / "nncli_student.json").exists():
            raise InputError(f"nothing to resume in {s.out.path}: no student_init/", "run without --resume")
        return str(work), json.loads((work / "nncli_student.json").read_text())
    info = build_student(teacher.path, spec, work, s.pf.data.label_names)
    (work / "nncli_student.json").write_text(json.dumps(info))
    return str(work), info


def _builder(teacher, teacher_fp: str, student_dir: str, recipe, init: dict, info: dict):
    def build(pf, r, report):
        import dataclasses

        from nncli.io.models import accepted_inputs
        from nncli.train.tasks.classify import build_model

        model = build_model(student_dir, pf.data.label_names, r, report)
        d = recipe.distill
        matched = init.get("matched_teacher_layers")
        layers = [i + 1 for i in matched] if (d.hidden_weight > 0 and matched) else None   # hidden_states[0] = embeddings
        cache = cache_dir(d.cache_dir)
        tr = pf.data.train
        logits, hidden, hit = teacher_outputs(teacher, tr.texts, tr.pairs, layers, cache, teacher_fp, "training")
        info.update(cache_dir=str(cache), cache_reused=hit, train_rows=len(tr))
        order = [teacher.label_names.index(n) for n in pf.data.label_names]     # teacher columns in the data's label order
        split = tr
        if d.transfer_data:
            texts, pairs, t_logits, t_hidden = _transfer(pf.data, recipe, teacher, teacher_fp, layers, cache, info)
            split = dataclasses.replace(tr, texts=tr.texts + texts, labels=list(tr.labels) + [-100] * len(texts),
                                        pairs=(tr.pairs + pairs) if tr.pairs is not None else None)
            logits = np.concatenate([logits, t_logits])
            hidden = np.concatenate([hidden, t_hidden]) if hidden is not None else None
        t = r.train
        task = DistillTask(pf.data, pf.tokenizer, pf.max_length, accepted_inputs(model), metric=t.metric,
                           class_weights=t.class_weights, label_smoothing=t.label_smoothing, head_lr=t.head_lr, train_split=split,
                           teacher_logits=logits[:, order], teacher_hidden=hidden, alpha=d.alpha, temperature=d.temperature,
                           hidden_weight=d.hidden_weight)
        projection = task.attach(model)
        if projection:
            info["projection"] = projection
        return task, model

    return build


def _transfer(data, recipe, teacher, teacher_fp, layers, cache, info):
    """Unlabelled transfer texts (none that is also held out), labelled by the teacher."""
    from nncli.io.labelled import read_texts

    d = recipe.distill
    s, _, _ = read_texts(d.transfer_data, d.transfer_text_column or recipe.data.text_column, role="transfer data",
                         key_prefix="distill")
    held_out = {t for sp in (data.validation, data.test) if sp is not None for t in sp.texts}
    keep = [i for i, t in enumerate(s.texts) if t not in held_out]
    dropped = len(s.texts) - len(keep)
    keep = keep[: d.transfer_limit] if d.transfer_limit else keep
    texts = [s.texts[i] for i in keep]
    pairs = [s.pairs[i] for i in keep] if s.pairs is not None else None
    if dropped:
        console.warn(f"transfer data: dropped {dropped} texts that are also in the validation/test data (they would leak)")
    logits, hidden, hit = teacher_outputs(teacher, texts, pairs, layers, cache, teacher_fp, "transfer")
    info.update(transfer_rows=len(texts), transfer_dropped_overlap=dropped, transfer_cache_reused=hit)
    return texts, pairs or [""] * len(texts), logits, hidden


def _distill_values(dist: dict, report, recipe) -> dict:
    split = "test" if "test" in report["metrics"] else "validation"
    metric = recipe.train.metric if recipe.train.metric != "loss" else "accuracy"
    t, st = dist["teacher"]["metrics"][split], report["metrics"][split]
    retention = {m: (st[m] / t[m] if t[m] else None) for m in ("accuracy", "macro_f1")}
    dist.update(split=split, retention=retention, retention_metric=metric,
                loss={"alpha": recipe.distill.alpha, "temperature": recipe.distill.temperature,
                      "hidden_weight": getattr(recipe.distill, "hidden_weight", 0.0)},
                speedup_throughput=dist["student"]["throughput_per_second"] / dist["teacher"]["throughput_per_second"],
                speedup_latency=dist["teacher"]["latency_ms_batch1"] / dist["student"]["latency_ms_batch1"])
    values = {"retention": retention[metric], "retention_accuracy": retention["accuracy"],
              "retention_macro_f1": retention["macro_f1"],
              "speedup": dist["speedup_throughput"]}
    if "control" in dist:
        c = dist["control"]["metrics"][split]
        dist["gain_over_control"] = {m: st[m] - c[m] for m in ("accuracy", "macro_f1")}
        values["gain_over_control"] = dist["gain_over_control"][metric]
    return values


def _side_by_side(teacher, student, data, recipe, report, scores) -> dict:
    from nncli.core.timing import measure
    from nncli.evaluate import metrics as M
    from nncli.io.inference import softmax

    out = {}
    timing = {"min_seconds": recipe.distill.bench_seconds, "min_repeats": 5, "warmup": 2}
    for role, clf in (("teacher", teacher), ("student", student)):
        row = {"path": clf.path, "parameters": count_parameters(clf.model),
               "size_mb": round(sum(f.stat().st_size for f in Path(clf.path).glob("*.safetensors")) / 1e6, 2)}
        seq = min(128, clf.max_length)
        b1, b32 = clf.synthetic_batch(1, seq), clf.synthetic_batch(32, seq)
        row["latency_ms_batch1"] = measure(lambda clf=clf, b1=b1: clf.forward(b1), **timing)["p50_ms"]
        row["throughput_per_second"] = 32 / (measure(lambda clf=clf, b32=b32: clf.forward(b32), **timing)["p50_ms"] / 1000)
        if role == "teacher":
            order = [clf.label_names.index(n) for n in data.label_names]
            row["metrics"] = {}
            for s in (x for x in data.splits() if x.name != "train"):
                probs = softmax(scores(clf, s)[:, order])
                row["metrics"][s.name] = M.classification(np.asarray(s.labels), probs.argmax(1), len(data.label_names), probs)
        else:
            row["metrics"] = {k: {m: v[m] for m in ("accuracy", "macro_f1", "loss") if m in v} for k,
                              v in report["metrics"].items()}
        out[role] = row
    return out


def model_card_section(d: dict) -> str:
    t, s, split = d["teacher"], d["student"], d["split"]
    lines = ["", "## Distillation", "",
             f"Student ({s['init'].get('init', s['init'].get('model'))}) trained against the teacher `{t['path']}` with alpha "
             f"{d['loss']['alpha']}, temperature {d['loss']['temperature']}, hidden-state weight {d['loss']['hidden_weight']}.",
             "",
             "| | parameters | without embeddings | size MB | batch-1 ms | batch-32 /s | accuracy | macro-F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in (("teacher", t), ("student", s)):
        m = r["metrics"][split]
        lines.append(f"| {name} | {r['parameters']['total']:,} | {r['parameters']['without_embeddings']:,} | {r['size_mb']} | "
                     f"{r['latency_ms_batch1']:.1f} | {r['throughput_per_second']:.1f} | {m['accuracy']:.4f} | "
                     f"{m['macro_f1']:.4f} |")
    if "control" in d:
        m = d["control"]["metrics"][split]
        lines.append(f"| student without teacher (control) | | | | | | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    r = d["retention"]
    lines += ["", f"Retention on {split}: accuracy {r['accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f}; throughput "
                  f"{d['speedup_throughput']:.2f}x the teacher's, batch-1 latency {d['speedup_latency']:.2f}x lower."]
    if "gain_over_control" in d:
        g = d["gain_over_control"]
        lines.append(f"Gain from the teacher over the control: accuracy {g['accuracy'] * 100:+.2f} points, "
                     f"macro-F1 {g['macro_f1'] * 100:+.2f} points.")
    return "\n".join(lines) + "\n"
