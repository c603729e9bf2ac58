"""Model cards (README.md of a run, and of its adapter/): Hub-ready YAML front matter (base model, datasets,
metrics), data, results with 95% intervals next to the baselines, training, limitations, and how to load it."""

from __future__ import annotations

from pathlib import Path


def _front_matter(recipe, report, pipeline_tag: str, metrics: list[tuple[str, str, float]]) -> list[str]:
    from nncli.io.models import looks_like_path

    base = recipe.model.name
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "tags: [nncli]"]
    if not looks_like_path(base) and not Path(base).exists():
        lines.append(f"base_model: {base}")
    datasets = [Path(str(d)).name for d in (recipe.data.train, recipe.data.validation, recipe.data.test) if d]
    if datasets:
        lines.append("datasets: [" + ", ".join(datasets) + "]")
    if metrics:
        lines += ["model-index:", f"- name: {recipe.name or 'nncli-run'}", "  results:", "  - task: {type: " + pipeline_tag + "}",
                  "    metrics:"]
        lines += [f"    - {{type: {t}, name: {n}, value: {v:.4f}}}" for t, n, v in metrics]
    return lines + ["---", ""]


def classifier_card_head(report, recipe, pipeline_tag: str, what: str, lora: str, unit: str) -> tuple[list[str], str]:
    """The opening every classifier card shares (text and images): front matter with the primary split's accuracy and
    macro-F1, title, the first alarm in bold, and the data table (one row a split, `unit` counted); and that split."""
    primary = "test" if "test" in report["metrics"] else "validation"
    m0, d = report["metrics"][primary], report["data"]
    lines = _front_matter(recipe, report, pipeline_tag,
                          [("accuracy", f"{primary} accuracy", m0["accuracy"]), ("f1", f"{primary} macro-F1", m0["macro_f1"])])
    lines += [f"# {recipe.name or 'nncli run'}", "", f"{what} fine-tuned by nncli {report['nncli_version']} from "
              f"`{recipe.model.name}` ({recipe.method}{lora}).", ""]
    alarm = next((w for w in report["warnings"] if w.startswith(("BELOW BASELINES", "COLLAPSED"))), None)
    if alarm:
        lines += [f"**{alarm}**", ""]
    lines += ["## Data", "", f"| split | {unit} | classes |", "|---|---|---|"]
    for name, r in d["rows"].items():
        lines.append(f"| {name} | {r['kept']} | " + ", ".join(f"{k}: {v}" for k, v in d["class_counts"][name].items()) + " |")
    return lines, primary


def classifier_card(report, recipe) -> str:
    d, t = report["data"], report["training"]
    lora = f", LoRA r={recipe.lora.r}" if recipe.method == "lora" else ""
    lines, primary = classifier_card_head(report, recipe, "text-classification", "Sequence classifier", lora, "rows")
    lines += ["", f"Labels: {', '.join(d['label_names'])}. Data fingerprint `{d['fingerprint']}`. Texts truncated to "
              f"{d['tokens']['max_length']} tokens ({d['tokens'].get('max_length_chosen', '')}).", "",
              "## Results (95% bootstrap confidence intervals)", "",
              "| split | n | accuracy | macro-F1 | log-loss | majority-class acc / F1 | TF-IDF+LR acc / F1 |",
              "|---|---|---|---|---|---|---|"]
    for split, m in report["metrics"].items():
        ci = m.get("ci95", {})
        fmt = lambda k, m=m, ci=ci: f"{m[k]:.3f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")  # noqa: E731
        maj, tf = report["baselines"]["majority_class"][split], report["baselines"]["tfidf_logreg"][split]
        lines.append(f"| {split} | {m['n']} | {fmt('accuracy')} | {fmt('macro_f1')} | {m['loss']:.3f} | {maj['accuracy']:.3f} / "
                     f"{maj['macro_f1']:.3f} | {tf['accuracy']:.3f} / {tf['macro_f1']:.3f} |")
    lines += _per_class(report, primary)
    lines += ["", "## Training", "",
              f"{t['steps']} optimizer steps ({t['epochs_run']} epochs{', stopped early' if t['stopped_early'] else ''}); best "
              f"validation {recipe.train.metric} at step {t['best_step']}. lr {t['lr']:g} (head {t['head_lr']:g}), batch "
              f"{recipe.train.batch_size} x {recipe.train.gradient_accumulation}, {recipe.train.scheduler} schedule with "
              f"{recipe.train.warmup_ratio:.0%} warm-up, weight decay {recipe.train.weight_decay}, class weights "
              f"{recipe.train.class_weights}, seed {recipe.train.seed}.",
              f"{t['trainable_parameters']:,} of {t['total_parameters']:,} parameters trained. "
              f"{report['timings'].get('train_samples_per_second')} training samples/s, peak memory "
              f"{report.get('peak_memory_mb')} MB.",
              "", "![training curves](curves.png)", "", "## Limitations and warnings", ""]
    lines += [f"- {w}" for w in (report["warnings"] or ["none raised by nncli's checks"])]
    if "test" not in report["metrics"]:
        lines += ["- No test split: the validation split also chose the best checkpoint (early stopping), so its metrics are "
                  "optimistic. Pass --test for an unbiased estimate."]
    lines += ["- Metrics hold for data like the files above; check calibration and behaviour on shifted data before "
              "deployment (`nncli evaluate`).", "", "## Use", "", "```python", "from transformers import pipeline",
              "clf = pipeline('text-classification', model='merged', truncation=True)  # truncates where training did",
              "```", ""]
    if recipe.method == "lora":
        lines += ["The LoRA adapter alone (`adapter/`, its own card in adapter/README.md) loads onto the base model with peft:",
                  ""]
        lines += adapter_snippet(adapter_base(recipe), "adapter") + [""]
    return "\n".join(lines + ["Re-run: `nncli finetune recipe.yaml`.", ""])


def adapter_base(recipe) -> str:
    from nncli.io.models import looks_like_path

    name = recipe.model.name
    return name if not looks_like_path(name) and not Path(name).exists() else str(Path(name).resolve())


def adapter_snippet(base: str, folder: str) -> list[str]:
    """The exact code that loads the adapter with peft (tested as written in tests/test_finetune.py)."""
    return ["```python", "from peft import PeftModel",
            "from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer",
            "", f'config = AutoConfig.from_pretrained("{folder}")   # label names and num_labels, saved beside the adapter',
            f'base = AutoModelForSequenceClassification.from_pretrained("{base}", config=config)',
            f'model = PeftModel.from_pretrained(base, "{folder}")', f'tokenizer = AutoTokenizer.from_pretrained("{folder}")',
            "```"]


def _per_class(report, split: str) -> list[str]:
    pc = report["metrics"][split].get("per_class")
    if not pc:
        return []
    lines = ["", f"Per class ({split}):", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    return lines + [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {int(v['support'])} |" for k,
                    v in pc.items()]


def adapter_card(base: str, labels: list[str], recipe, report) -> str:
    primary = "test" if "test" in report["metrics"] else "validation"
    m = report["metrics"][primary]
    return "\n".join([
        "---", "library_name: peft", f"base_model: {base}", "pipeline_tag: text-classification", "tags: [nncli, lora]", "---", "",
        f"# LoRA adapter: {recipe.name or 'nncli run'}", "",
        f"A LoRA adapter (r={recipe.lora.r}) for `{base}`, classifying into {len(labels)} labels: {', '.join(labels)}. "
        f"{primary} accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} (n={m['n']}; see the run's README.md).", "",
        "The classifier's configuration (label names, number of labels) is saved beside the adapter (config.json):", "",
        *adapter_snippet(base, "adapter"), "",
        "The merged model (`merged/`) needs no peft at all.", ""])


def lm_card(report, recipe) -> str:
    t = report["training"]
    primary = "test" if "test" in report["metrics"] else "validation"
    lines = _front_matter(recipe, report, "text-generation", [("perplexity", f"{primary} perplexity",
                                                              report["metrics"][primary]["perplexity"])])
    lora = f", LoRA r={recipe.lora.r}" if recipe.method == "lora" else ""
    lines += [f"# {recipe.name or 'nncli run'}", "", f"Causal LM fine-tuned by nncli {report['nncli_version']} from "
              f"`{recipe.model.name}` ({recipe.method}{lora}{', DoRA' if recipe.lora.use_dora else ''}) on "
              f"{report['data']['mode']} data.", "", "## Data", "", "| split | examples | target tokens | truncated |",
              "|---|---|---|---|"]
    for name, s in report["data"]["splits"].items():
        lines.append(f"| {name} | {s['examples']} | {s['target_tokens']} | {s['truncated']} |")
    lines += ["", "## Results", "", "| split | loss | perplexity | target tokens |", "|---|---|---|---|"]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | {m['loss']:.4f} | {m['perplexity']:.3f} | {m['target_tokens']} |")
    lines += ["",
              f"{t['steps']} optimizer steps; best validation loss at step {t['best_step']}; {t['trainable_parameters']:,} of "
                  f"{t['total_parameters']:,} parameters trained.", "", "## Sample generations (greedy, validation prompts)", ""]
    for s in report.get("samples", []):
        lines += [f"- prompt: `{s['prompt'][-200:]}`", f"  - generated: `{s['generated'][:200]}`",
                  f"  - reference: `{(s['reference'] or '')[:200]}`"]
    return "\n".join(lines + ["", "Re-run: `nncli finetune recipe.yaml`. Use: `nncli generate merged --prompt \"...\"`.", ""])
