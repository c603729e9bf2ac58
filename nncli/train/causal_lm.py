"""`nncli finetune --task causal-lm`, around the one loop: text, prompt/completion or chat data (nncli/train/lm_data.py),
LoRA or DoRA on every linear projection the architecture has (never lm_head), validation loss and perplexity,
sample generations from validation prompts, the adapter merged into merged/."""

from __future__ import annotations

from dataclasses import dataclass, field

from nncli.core import console
from nncli.core.errors import InputError

LM_METRICS = ["validation.loss", "validation.perplexity", "loss", "perplexity", "test.loss", "test.perplexity"]


@dataclass
class Prepared:
    model_path: str
    tokenizer: object
    examples: dict
    summary: dict
    fingerprint: str
    max_length: int
    warnings: list[str] = field(default_factory=list)
    estimate: dict = field(default_factory=dict)


def prepare(recipe) -> Prepared:
    from nncli.io.models import load_tokenizer, resolve
    from nncli.recipe.load import fingerprint
    from nncli.train.lm_data import IGNORE, load_examples

    resolved = resolve(recipe.model.name, recipe.model.revision, recipe.model.allow_pickle)
    tok = load_tokenizer(resolved.path, recipe.model.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    examples = load_examples(recipe, tok)
    splits = {name: {"examples": len(e.input_ids), "rows_read": e.rows_read, "dropped": e.dropped, "truncated": e.truncated,
                     "target_tokens": int(sum(sum(1 for x in lab if x != IGNORE) for lab in e.labels))}
              for name, e in examples.items()}
    warnings = []
    for name, s in splits.items():
        console.log(f"{name}: {s['examples']} examples ({examples[name].mode}), {s['target_tokens']} target tokens"
                    + (f", {s['truncated']} truncated to {recipe.data.max_length} tokens" if s["truncated"] else ""))
        if s["truncated"] > 0.1 * s["examples"]:
            warnings.append(f"{name}: {s['truncated']} of {s['examples']} examples are longer than data.max_length="
                            f"{recipe.data.max_length} and were truncated")
    for w in warnings:
        console.warn(w)
    fp = fingerprint({k: (e.input_ids, e.labels) for k, e in examples.items()})
    return Prepared(resolved.path, tok, examples, {"mode": examples["train"].mode, "splits": splits}, fp,
                    recipe.data.max_length, warnings)


def render(pf) -> str:
    return "\n".join(f"{k}: {v['examples']} examples, {v['target_tokens']} target tokens, {v['truncated']} truncated"
                     for k, v in pf.summary["splits"].items())


def known_metrics(pf) -> list[str]:
    return LM_METRICS


def inputs_of(recipe) -> list:
    return [recipe.data.train, recipe.data.validation, recipe.data.test, recipe.model.name]


def data_fingerprint(pf) -> str:
    return pf.fingerprint


def build(pf, recipe, report):
    from transformers import AutoModelForCausalLM

    from nncli.io.models import lora_target_regex
    from nncli.train.tasks.causal_lm import CausalLMTask

    try:
        model = AutoModelForCausalLM.from_pretrained(pf.model_path, trust_remote_code=recipe.model.trust_remote_code,
                                                     use_safetensors=None if recipe.model.allow_pickle else True)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load {recipe.model.name} as a causal LM: {str(e).splitlines()[0][:200]}",
                         "pass a decoder model (GPT-2, Llama, Qwen, Mistral...) with safetensors weights") from e
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pf.tokenizer.pad_token_id
    training = {"fully_trained_modules": ["all"]}
    if recipe.method == "lora":
        from peft import LoraConfig, get_peft_model

        target, leaves = lora_target_regex(model, recipe.lora.target_modules, [])
        gpt2_style = any(type(m).__name__ == "Conv1D" for m in model.modules())
        cfg = LoraConfig(task_type="CAUSAL_LM", r=recipe.lora.r, lora_alpha=recipe.lora.alpha or 2 * recipe.lora.r,
                         lora_dropout=recipe.lora.dropout, target_modules=target, use_dora=recipe.lora.use_dora,
                         fan_in_fan_out=gpt2_style)
        model = get_peft_model(model, cfg)
        training = {"lora_targets": leaves, "dora": recipe.lora.use_dora}
    training.update(trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                    total_parameters=sum(p.numel() for p in model.parameters()))
    report["training"] = training
    task = CausalLMTask(pf.examples, pf.tokenizer.pad_token_id, recipe.data.max_length, recipe.data.packing,
                        pf.tokenizer.eos_token_id)
    return task, model


def conclude(run, pf, recipe, out, report) -> tuple[dict, dict, dict]:
    from nncli.core.atomic import atomic_dir
    from nncli.train import checkpoint

    metrics = {name: {**run.evaluate(name), "n": len(pf.examples[name].input_ids)}
               for name in ("validation", "test") if name in pf.examples}
    report["metrics"] = metrics
    if not run.is_main:
        return {}, {}, {}
    report["samples"] = sample_generations(run.model, pf.tokenizer, pf.examples["validation"], recipe)
    model, tok = run.model, pf.tokenizer
    if recipe.method == "lora":
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        report["artifacts"]["adapter"] = "adapter"
        model = model.merge_and_unload()
    with atomic_dir(out / "merged") as tmp:
        model.config.nncli = {"task": "causal-lm", "run": recipe.name, "max_length": recipe.data.max_length}
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    report["artifacts"].update(merged="merged", metrics="metrics.jsonl", recipe="recipe.yaml")
    checkpoint.remove(out)
    values = {f"{s}.{k}": m[k] for s, m in metrics.items() for k in ("loss", "perplexity")}
    primary = metrics.get("test", metrics["validation"])
    values.update(loss=primary["loss"], perplexity=primary["perplexity"])
    sizes = {k: metrics[k.split(".")[0] if "." in k else ("test" if "test" in metrics else "validation")]["target_tokens"]
             for k in values}
    return values, {}, sizes


def sample_generations(model, tok, ex, recipe, n: int = 3, max_new_tokens: int = 32) -> list[dict]:
    from nncli.deploy.generate import generate
    from nncli.io.chat import render_chat

    out = []
    for p in ex.prompts[:n]:
        prompt = render_chat(tok, p["messages"], recipe.data.chat_template,
                             add_generation_prompt=True) if "messages" in p else p["prompt"]
        out.append({"prompt": prompt, "generated": generate(model, tok, prompt, max_new_tokens=max_new_tokens),
                    "reference": p.get("reference")})
    return out


def card(report, recipe) -> str:
    from nncli.train.cards import lm_card

    return lm_card(report, recipe)


def score(model_dir, recipe, split: str) -> dict:
    """Loss and perplexity of a trained causal LM on one split of the recipe's data (a sweep's best trial on test)."""
    import torch
    from transformers import AutoModelForCausalLM

    from nncli.train.batching import eval_shard
    from nncli.train.tasks.causal_lm import CausalLMTask

    pf = prepare(recipe)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True).eval()
    task = CausalLMTask(pf.examples, pf.tokenizer.pad_token_id, recipe.data.max_length, False, pf.tokenizer.eos_token_id)
    batches, _ = eval_shard(task.lengths(split), 16)
    parts = []
    with torch.inference_mode():
        for idx in batches:
            parts.append(task.eval_outputs(model, task.collate(split, idx)))
    outputs = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    return task.eval_metrics(outputs, split)
