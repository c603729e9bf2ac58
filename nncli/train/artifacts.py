"""What a finished training run leaves behind, in the layouts the ecosystem loads (GUIDE §5), each appearing only
when complete: adapter/ (peft: PeftModel / AutoPeftModelFor*), merged/ (transformers: from_pretrained and
pipeline), the tokenizer with the run's truncation length and text cleaning inside it (so a client's own
tokenizer call computes what nncli reported), the drift reference profile and the training curves."""

from __future__ import annotations

import json
from pathlib import Path

from nncli.core import console
from nncli.core.atomic import atomic_dir

# entities unescaped by data.clean_text that the saved tokenizer also unescapes (plus the ones found in the data)
COMMON_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&#039;": "'", "&#39;": "'",
                   "&#34;": '"', "&#38;": "&", "&nbsp;": " ", "&#160;": " ", "&hellip;": "…", "&#8230;": "…",
                   "&mdash;": "—", "&ndash;": "–", "&rsquo;": "’", "&lsquo;": "‘", "&rdquo;": "”", "&ldquo;": "“",
                   "&#8217;": "’", "&#8216;": "‘", "&#8220;": "“", "&#8221;": "”"}


def prepared_tokenizer(tok, max_length: int, clean: bool, entities: set[str] | None = None):
    """The tokenizer as it is saved: model_max_length = the run's max_length (so `pipeline(..., truncation=True)`
    truncates where nncli did) and, with data.clean_text, a normalizer that unescapes HTML entities and folds
    whitespace like nncli's cleaning."""
    tok.model_max_length = max_length
    backend = getattr(tok, "backend_tokenizer", None)
    if clean and backend is not None:
        import html

        from tokenizers import Regex, normalizers

        table = dict(COMMON_ENTITIES)
        table.update({e: html.unescape(e) for e in entities or ()})
        steps = [normalizers.Replace("&amp;", "&")] + [normalizers.Replace(k, v) for k, v in table.items() if k != "&amp;"]
        steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
        if backend.normalizer is not None:
            steps.append(backend.normalizer)
        backend.normalizer = normalizers.Sequence(steps)
    return tok


def save_classifier(run, pf, recipe, out, report) -> None:
    console.log(f"saving: {'adapter, ' if recipe.method == 'lora' else ''}merged model, drift reference profile, curves in "
                f"{out.path}")
    model, tok = run.model, prepared_tokenizer(pf.tokenizer, pf.max_length, recipe.data.clean_text)
    arts = report["artifacts"]
    nncli_info = {"task": "sequence-classification", "run": recipe.name, "max_length": pf.max_length,
                  "truncation": "head", "clean_text": recipe.data.clean_text}
    if recipe.method == "lora":
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            _finish_adapter(tmp, model, recipe, report)
        arts["adapter"] = "adapter"
    merged = save_merged(out, model, nncli_info, tok, arts)
    from nncli.train import checkpoint

    checkpoint.remove(out)
    write_profile(out, recipe, pf, merged, tok, report)
    plot_curves(out, run.state.history, report)
    arts.update(curves="curves.png", metrics="metrics.jsonl", recipe="recipe.yaml")


def save_merged(out, model, info: dict, preprocessor, arts: dict):
    """merged/: the full model (LoRA merged in) with nncli's metadata in its config, and its tokenizer or image
    processor, so it loads in the ecosystem's clients alone. Returns the merged model."""
    from peft import PeftModel

    merged = model.merge_and_unload() if isinstance(model, PeftModel) else model
    with atomic_dir(out / "merged") as tmp:
        merged.config.nncli = info
        merged.save_pretrained(tmp, safe_serialization=True)
        preprocessor.save_pretrained(tmp)
    arts["merged"] = "merged"
    return merged


def _finish_adapter(d: Path, model, recipe, report) -> None:
    """Make adapter/ self-sufficient for peft's own loaders: the hub id as its base, the classifier's config (label
    names, num_labels) beside it for AutoConfig, and a real adapter card."""
    from nncli.train.cards import adapter_base

    cfg_path = d / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    base = adapter_base(recipe)
    cfg["base_model_name_or_path"] = base
    if cfg.get("modules_to_save"):
        cfg["modules_to_save"] = sorted(set(cfg["modules_to_save"]))
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    base_cfg = model.get_base_model().config
    base_cfg.to_json_file(str(d / "config.json"))
    labels = [base_cfg.id2label[i] for i in range(base_cfg.num_labels)]
    from nncli.train.cards import adapter_card

    (d / "README.md").write_text(adapter_card(base, labels, recipe, report))


def write_profile(out, recipe, pf, merged, tok, report) -> None:
    """Reference profile for `nncli drift`: text statistics on train + validation, model outputs on validation (held out)."""
    from nncli.evaluate import drift_profile as drift
    from nncli.io.inference import Classifier
    from nncli.io.models import accepted_inputs

    data = pf.data
    try:
        merged.eval()
        accepted = accepted_inputs(merged)
        inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted and k in tok.model_input_names]
        clf = Classifier(str(out / "merged"), str(out / "merged"), "torch", list(data.label_names), 1.0, pf.max_length,
                         {"inputs": inputs}, merged, tok)
        val = data.validation
        held = data.test or val          # the test split never chose a checkpoint: its accuracy is not optimistic
        profile = drift.build_profile(
            data.train.texts + val.texts, [data.label_names[i] for i in data.train.labels + val.labels], clf=clf,
            model_texts=held.texts, model_pairs=held.pairs, model_labels=[data.label_names[i] for i in held.labels],
            source=f"{recipe.data.train} (+ validation)", text_column=data.train.columns.get("text"),
            label_column=data.train.columns.get("label"), text_pair_column=data.train.columns.get("text_pair"),
            model_ref="merged", seed=recipe.train.seed, model_split=held.name, selected_on=held is val)
        drift.save_profile(out.path, profile)
        report["artifacts"]["profile"] = drift.PROFILE_FILE
    except Exception as e:  # a missing profile must not lose a finished model; say so
        profile_not_written(e, report)


def profile_not_written(e: Exception, report) -> None:
    """A profile that could not be written is a warning (the finished model is kept); a full disk is not."""
    if isinstance(e, OSError) and e.errno == 28:
        raise e
    msg = (f"could not write the drift reference profile ({type(e).__name__}: {str(e)[:160]}); "
           "nncli drift will need --reference DATA")
    console.warn(msg)
    report["warnings"].append(msg)


def plot_curves(out, history: list[dict], report) -> None:
    from nncli.core.figures import pyplot, save_figure

    train = []
    p = out / "metrics.jsonl"
    if p.exists():
        train = [r for r in map(json.loads, p.read_text().splitlines()) if "train_loss" in r]
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    if train:
        a.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train loss")
    scored = [k for k in ("accuracy", "macro_f1") if history and f"validation_{k}" in history[0]]
    if history:
        a.plot([r["step"] for r in history], [r["validation_loss"] for r in history], "o-", label="validation loss")
        for k, style in zip(scored, ("o-", "s-")):
            b.plot([r["step"] for r in history], [r[f"validation_{k}"] for r in history], style, label=k.replace("_", "-"))
        best = report["training"]["best_step"]
        b.axvline(best, color="grey", ls="--", lw=1, label=f"best (step {best})")
    a.set_xlabel("optimizer step"), a.set_title("loss"), a.legend()
    b.set_xlabel("optimizer step"), b.set_title("validation"), b.legend()
    if scored:
        b.set_ylim(0, 1)
    save_figure(fig, out / "curves.png")
