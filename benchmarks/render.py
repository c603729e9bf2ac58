"""Render the tables of benchmarks/README.md from benchmarks/results/*.json (so every number has a source).

    python benchmarks/render.py           # print the deploy and evaluate tables
    python benchmarks/render.py --write   # replace them between the <!-- deploy/evaluate:start/end --> markers in README.md

The fine-tuning block is rendered by `finetune_bench.py --render-only`.
"""

from __future__ import annotations

import json
from pathlib import Path

R = Path(__file__).resolve().parent / "results"


def finetune() -> str:
    f = R / "finetune.json"
    if not f.exists():
        return "(no results/finetune.json yet)"
    d = json.loads(f.read_text())
    s = d["summary"]
    lines = ["| system | train samples/s (median, range) | peak memory MB (median) | SST-2 dev accuracy (median) |",
             "|---|---|---|---|"]
    for name, v in s.items():
        t = v["train_samples_per_second"]
        lines.append(f"| {name} | {t['median']:.1f} ({t['min']:.1f}–{t['max']:.1f}) | {v['peak_memory_mb']['median']:.0f} | "
                     f"{v['dev_accuracy']['median']:.4f} |")
    r = d["ratios"]
    gap = d["accuracy_gap_points"]
    lines += ["", f"- nncli vs Trainer padding to max_length: **{r['nncli_vs_trainer_max_length']:.2f}x** (target ≥ 1.5x: "
              f"{'met' if r['nncli_vs_trainer_max_length'] >= 1.5 else 'NOT met'})",
              f"- nncli vs Trainer with dynamic padding: **{r['nncli_vs_trainer_dynamic']:.2f}x** (target ≥ 1.2x: "
              f"{'met' if r['nncli_vs_trainer_dynamic'] >= 1.2 else 'NOT met'})",
              "- accuracy gap (nncli minus baseline, points): " + ", ".join(f"{k} {v:+.2f}" for k, v in gap.items()) +
              f" (target: within 1 point: {'met' if all(abs(v) <= 1 for v in gap.values()) else 'NOT met'})",
              f"- settings: {d['settings']['train_rows']} SST-2 training rows (seeded sample), {d['settings']['epochs']} epoch, "
              f"lr {d['settings']['lr']}, {d['settings']['repeats']} interleaved repeats; CPU {d['cpu']}; "
              f"load average before runs {min(d['load_average_before_runs']):.2f}–{max(d['load_average_before_runs']):.2f}"]
    return "\n".join(lines)


def deploy() -> str:
    f = R / "deploy.json"
    if not f.exists():
        return "(no results/deploy.json yet)"
    d = json.loads(f.read_text())
    lines = ["| backend | latency batch 1 (ms) | throughput batch 32 (/s) | speed-up vs PyTorch fp32 | SST-2 dev accuracy | "
             "flipped vs fp32 |",
             "|---|---|---|---|---|---|"]
    for name, r in d["rows"].items():
        lines.append(f"| {name} | {r['latency_ms_batch1']:.1f} | {r['throughput_batch32']:.1f} | "
                     f"{r['speedup_vs_pytorch_fp32']:.2f}x | "
                     f"{r['dev_accuracy']:.4f} | {r['flip_rate_vs_fp32']:.1%} |")
    p = d["parity"]
    lines += ["", f"- fp32 ONNX export parity on {p['samples']} validation texts: max |Δlogit| {p['max_abs_diff']:.2e}, "
              f"mean {p['mean_abs_diff']:.2e}, {p['flipped']} flipped (target ≤ 1e-4: "
              f"{'met' if p['max_abs_diff'] <= 1e-4 else 'NOT met'})",
              f"- `nncli quantize` chose: {d['quantize_chosen'] or 'nothing (no candidate qualified)'}",
              f"- CPU {d['cpu']} ({', '.join(d.get('cpu_features') or [])}); "
              f"medians of {d['settings']['repeats']} interleaved rounds"]
    return "\n".join(lines)


def distill() -> str:
    f = R / "distill.json"
    if not f.exists():
        return "(no results/distill.json yet)"
    d = json.loads(f.read_text())
    t, s, c = d["teacher"], d["student"], d.get("control")
    lines = ["| model | parameters | without embeddings | size MB | batch-1 ms | batch-32 /s | SST-2 dev accuracy | macro-F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in (("teacher: all-MiniLM-L6-v2 + LoRA (6 layers)", t), ("student: 3 layers, distilled", s)):
        m = r["metrics"]["test"]
        lines.append(f"| {name} | {r['parameters']['total']:,} | {r['parameters']['without_embeddings']:,} | "
                     f"{r['size_mb']:.1f} | {r['latency_ms_batch1']:.1f} | {r['throughput_per_second']:.1f} | "
                     f"{m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    if c:
        m = c["metrics"]["test"]
        lines.append(f"| control: same student, labels only | | | | | | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    ret = d["retention"]["accuracy"]
    sp = d["speedup_throughput"]
    st = d["settings"]
    lines += ["",
              f"- retention (student ÷ teacher accuracy on SST-2 dev): **{ret:.3f}** (target ≥ 0.97: "
              f"{'met' if ret >= 0.97 else 'NOT met'}); "
              f"throughput **{sp:.2f}x** the teacher's at batch 32 (target ≥ 2x: {'met' if sp >= 2 else 'NOT met'}); "
              f"batch-1 latency {d['speedup_latency']:.2f}x lower",
              (f"- gain from the teacher over the control: accuracy {d['gain_over_control']['accuracy'] * 100:+.2f} points, "
               f"macro-F1 {d['gain_over_control']['macro_f1'] * 100:+.2f} points" if d.get("gain_over_control")
               else "- no control run"),
              f"- settings: {st['labelled_rows']} labelled SST-2 train rows, {st['transfer_rows']} unlabelled transfer rows, "
              f"{st['epochs']} epochs, {st['student']}, alpha {st['alpha']}, T {st['temperature']}; test = {st['test']}; "
              f"wall time teacher {d['wall_seconds']['teacher']} s, distill + control "
              f"{d['wall_seconds']['distill_with_control']} s; "
              f"CPU {d['cpu']}; {d['when']}"]
    return "\n".join(lines)


def tuning() -> str:
    f = R / "tuning.json"
    if not f.exists():
        return "(no results/tuning.json yet)"
    d = json.loads(f.read_text())
    st = d["settings"]
    lines = [f"| setting ({st['rows']} SST-2 train rows, LoRA) | SST-2 dev accuracy | macro-F1 | notes |", "|---|---|---|---|"]
    lines.append(f"| default recipe (lr {d['default']['lr']:g}) | {d['default']['test']['accuracy']:.4f} | "
                 f"{d['default']['test']['macro_f1']:.4f} | |")
    sw = d["sweep"]
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sw["best_params"].items())
    if sw.get("test"):
        lines.append(f"| `nncli sweep` best of {st['trials']} trials | {sw['test']['accuracy']:.4f} | "
                     f"{sw['test']['macro_f1']:.4f} | "
                     f"{params}; trials {sw['counts']}; {sw['seconds']:.0f} s |")
    lf = d["lr_finder"]
    lines.append(f"| `--use-found-lr` (suggested {lf['suggested_lr']:.3g}) | {lf['test']['accuracy']:.4f} | "
                 f"{lf['test']['macro_f1']:.4f} | |")
    a = d["augmentation"]
    lines += ["",
              f"| {st['aug_rows']} train rows, {st['seeds']} seeds | median dev accuracy | median macro-F1 | "
              "per seed (accuracy) |",
              "|---|---|---|---|"]
    for name in ("none", "augment"):
        x = a[name]
        per = ", ".join(f"{r['test']['accuracy']:.3f}" for r in x["runs"])
        label = "no augmentation" if name == "none" else "synonym + swap + deletion, 2 copies"
        lines.append(f"| {label} | {x['median_accuracy']:.4f} | {x['median_macro_f1']:.4f} | {per} |")
    lines.append(f"\n- run {d['when']}; `python benchmarks/tuning_bench.py --rows {st['rows']} --trials {st['trials']} "
                 f"--aug-rows {st['aug_rows']} --seeds {st['seeds']}`")
    return "\n".join(lines)


def evaluate() -> str:
    f = R / "evaluate.json"
    if not f.exists():
        return "(no results/evaluate.json yet)"
    d = json.loads(f.read_text())
    return "\n".join(["| system | examples/s | accuracy |", "|---|---|---|",
                      f"| nncli (batched, length-sorted) | {d['nncli_examples_per_second']:.1f} | {d['accuracy_nncli']:.4f} |",
                      f"| transformers.pipeline, one text at a time | {d['pipeline_loop_examples_per_second']:.1f} | "
                      f"{d['accuracy_pipeline']:.4f} |",
                      "", f"- speed-up **{d['speedup']:.2f}x**, prediction agreement {d['agreement']:.4f} on {d['texts']} texts"])


def audit() -> str:
    f = R / "audit.json"
    if not f.exists():
        return "(no results/audit.json yet)"
    d = json.loads(f.read_text())
    lines = ["| data, planted noise | features | flagged rows | precision | recall | P@k audit | P@k low confidence | "
             "P@k random | best recall at precision ≥ 0.5 |", "|---|---|---|---|---|---|---|---|---|"]
    met = []
    for ds in ("sst2", "emotion"):
        x = d.get(ds)
        if not x:
            continue
        for s in x["scenarios"].values():
            what = f"{ds} {s['rate']:.0%} " + (f"{s['pair'][0]}↔{s['pair'][1]}" if s.get("pair") else "random")
            for rep in ("embeddings", "tfidf"):
                r = s[rep]
                fl = r["flagged"]
                au = r["audit (self-confidence)"]
                lines.append(f"| {what} (k={r['planted']}) | {'TF-IDF + MiniLM layers' if rep == 'embeddings' else 'TF-IDF'} | "
                             f"{fl['rows']} | {fl['precision']:.2f} | {fl['recall']:.2f} | {au['precision_at_k']:.2f} | "
                             f"{r['low model confidence']['precision_at_k']:.2f} | {r['random']['precision_at_k']:.2f} | "
                             f"{au['best_recall_at_precision_0.5']:.2f} |")
                if s["rate"] == 0.10:
                    ok = fl["precision"] >= 0.5 and fl["recall"] >= 0.6
                    met.append(f"{what} {rep}: {'met' if ok else 'NOT met'} (P {fl['precision']:.2f}, R {fl['recall']:.2f})")
    lines += ["", "- target recall ≥ 0.6 at precision ≥ 0.5 at 10% noise, on the rows audit flags: " + "; ".join(met)]
    dup_lines = ["", "| planted near-duplicates across splits | threshold | found | other cross-split pairs | by edit |",
                 "|---|---|---|---|---|"]
    for ds in ("sst2", "emotion"):
        for rep, by_thr in (d.get(ds) or {}).get("duplicates", {}).items():
            for thr, r in by_thr.items():
                dup_lines.append(f"| {ds}, {rep} | {thr} | {r['found']}/{r['planted']} | {r['other_cross_split_pairs']} | "
                                 + ", ".join(f"{k} {v}" for k, v in r["by_edit"].items()) + " |")
    lines += dup_lines
    for ds in ("sst2", "emotion"):
        ft = (d.get(ds) or {}).get("finetune")
        if not ft:
            continue
        lines += ["", f"| {ds} {ft['scenario']}: fine-tuned on | train rows | test accuracy | test macro-F1 |",
                  "|---|---|---|---|"]
        for v in ("clean", "noisy", "audited_and_cleaned"):
            lines.append(f"| {v.replace('_', ' ')} | {ft[v]['train_rows']} | {ft[v]['accuracy']:.4f} | {ft[v]['macro_f1']:.4f} |")
        rec = ft["share_recovered"]
        verdict = ("n/a (noise cost nothing)" if rec is None
                   else f"**{rec:.2f}** (target ≥ 0.5: {'met' if rec >= 0.5 else 'NOT met'})")
        fx = ft["audit_cli"]["fix"]
        lines.append(f"\n- macro-F1 lost to noise {ft['macro_f1_lost_to_noise'] * 100:.2f} points; share recovered by cleaning: "
                     f"{verdict}; `nncli audit --fix` removed {fx['removed']} of {fx['rows_in']} rows in "
                     f"{ft['audit_cli']['wall_seconds']:.0f} s")
    st = d["settings"]
    lines.append(f"- run {d['when']}: `python benchmarks/audit_bench.py --rows {st['rows']} --dups {st['dups']} "
                 f"--epochs {st['epochs']}`; load average {d['load_average_start'][0]:.1f} at the start, "
                 f"{d.get('wall_seconds', 0) / 60:.0f} min in all")
    return "\n".join(lines)


def smalldata() -> str:
    f = R / "smalldata.json"
    if not f.exists():
        return "(no results/smalldata.json yet)"
    d = json.loads(f.read_text())
    methods = [("nncli", "nncli default"), ("tfidf", "TF-IDF 1-2 gram + LR"), ("frozen", "frozen MiniLM + LR"),
               ("setfit", "SetFit")]
    lines = ["| task | majority acc | " + " | ".join(f"{label} acc / macro-F1 / paper / s" for _, label in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for task, t in d["tasks"].items():
        cells = []
        for m, _ in methods:
            x = t["methods"].get(m)
            if not x:
                cells.append("not run")
            elif "skipped" in x:
                cells.append("skipped")
            else:
                seeds = f" ({len(x['seeds'])} seeds, mF1 {x['macro_f1_range'][0]:.3f}–{x['macro_f1_range'][1]:.3f})" \
                    if len(x["seeds"]) > 1 else ""
                cells.append(f"{x['accuracy']:.3f} / {x['macro_f1']:.3f} / {x['paper_metric']:.3f} / "
                             f"{x['wall_seconds_median']:.0f}{seeds}")
        maj = t["majority_accuracy"]
        lines.append(f"| {task} | {maj:.3f} | " + " | ".join(cells) + " |")
    tg = d["targets"]

    def verdict(ok):
        return "met" if ok else "NOT met"

    b, a = tg["beat_tfidf_macro_f1_median_seed"], tg["never_below_majority_accuracy"]
    lines += ["", f"- beat TF-IDF + LR on macro-F1 on every task (median seed): **{verdict(b['met'])}** ("
              + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in b["per_task"].items()) + ")",
              f"- never below the majority class on accuracy (every seed): **{verdict(a['met'])}** ("
              + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in a["per_task"].items()) + ")"]
    if "match_setfit" in tg:
        s = tg["match_setfit"]
        lines.append(f"- match or beat SetFit on the median over tasks ({len(s['tasks'])} tasks) at no more than its wall time: "
                     f"**{verdict(s['met'])}** (macro-F1 {s['nncli_median_macro_f1']:.3f} vs {s['setfit_median_macro_f1']:.3f}; "
                     f"median wall {s['nncli_median_wall_seconds']:.0f} s vs {s['setfit_median_wall_seconds']:.0f} s; "
                     f"slower than SetFit on: {', '.join(s.get('tasks_where_nncli_is_slower', [])) or 'none'})")
    else:
        lines.append("- match SetFit: no SetFit results")
    lines.append(f"- collected {d['when']}; CPU {d['cpu']}; the notes below the table say what ran and what did not")
    return "\n".join(lines)


def write(readme: Path = Path(__file__).resolve().parent / "README.md") -> None:
    import re

    text = readme.read_text()
    for key, fn in (("deploy", deploy), ("evaluate", evaluate), ("distill", distill), ("tuning", tuning), ("audit", audit),
                     ("smalldata", smalldata)):
        start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
        if start not in text or end not in text:
            raise SystemExit(f"{readme}: markers {start} / {end} missing")
        block = f"{start}\n{fn()}\n{end}"
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m, block=block: block, text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write()
    else:
        print("## Deployment\n\n" + deploy() + "\n\n## Evaluation throughput\n\n" + evaluate()
              + "\n\n## Distillation\n\n" + distill())
