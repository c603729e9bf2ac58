"""`nncli generate`: greedy or sampled generations from a causal LM (a quick look at what a fine-tune produces).

It refuses (exit 3) a model without a trained language-modelling head (a classification run, an encoder): loading
one as a causal LM would attach a randomly initialised head and print noise with exit 0. `generate()` is also what
training uses for its sample generations."""

from __future__ import annotations

from nncli.core.errors import InputError
from nncli.io.chat import render_chat

CAUSAL_ARCHS = ("ForCausalLM", "LMHeadModel")


def generate(model, tok, prompt: str, *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
             top_k: int = 0, seed: int = 0) -> str:
    import torch

    model.eval()
    from nncli.io.models import model_inputs

    enc = model_inputs(model, tok(prompt, return_tensors="pt"))
    kw = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id}
    if temperature > 0:
        torch.manual_seed(seed)
        kw.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
    with torch.inference_mode():
        ids = model.generate(**enc, **kw)
    return tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def load_causal_lm(model_name: str, *, trust_remote_code: bool = False):
    """(model, tokenizer) of a causal LM with a trained head, or InputError naming what the model is instead."""
    from transformers import AutoModelForCausalLM

    from nncli.io.inference import model_dir_of
    from nncli.io.models import is_weights_error, load_config, load_tokenizer, resolve, weights_error

    d = model_dir_of(model_name)
    resolved = resolve(str(d) if d else model_name, None, False)
    config = load_config(resolved.path, trust_remote_code)
    archs = list(config.architectures or [])
    if not any(a.endswith(CAUSAL_ARCHS) for a in archs):
        raise InputError(f"{model_name} has no trained language-modelling head (architecture: "
                         f"{', '.join(archs) or config.model_type}): generating from it would print noise",
                         "pass a causal-LM run (nncli finetune --task causal-lm), its merged/ folder, or a decoder model "
                         "such as gpt2")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(resolved.path, use_safetensors=True,
                                                           trust_remote_code=trust_remote_code, output_loading_info=True)
    except Exception as e:
        if is_weights_error(e):
            raise weights_error(e, resolved.path) from None
        if isinstance(e, ValueError):
            raise InputError(f"cannot load {model_name} as a causal LM: {str(e).splitlines()[0][:200]}",
                             "pass a run directory of a causal-LM fine-tune, its merged/ folder, or a decoder model") from None
        raise
    untrained = [k for k in info.get("missing_keys", []) if "lm_head" in k or k.endswith(("score.weight", "embed_out.weight"))]
    if untrained:
        raise InputError(f"{model_name}: the language-modelling head ({untrained[0]}) is not in the weights (it would be random)",
                         "pass a causal LM whose weights include its head (a causal-LM run's merged/ folder)")
    tok = load_tokenizer(resolved.path, trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


def generate_command(model_name: str, prompts: list[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                     top_p: float = 1.0, top_k: int = 0, seed: int = 0, chat: bool = False, threads: int | None = None) -> dict:
    from nncli.core.machine import set_threads

    set_threads(threads)
    model, tok = load_causal_lm(model_name)
    results = []
    for p in prompts:
        text = render_chat(tok, [{"role": "user", "content": p}], None, add_generation_prompt=True) if chat else p
        out = generate(model, tok, text, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                       seed=seed)
        results.append({"prompt": p, "generated": out})
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
                "greedy": temperature == 0}
    return {"status": "succeeded", "exit_code": 0, "task": "generate", "model": model_name, "settings": settings,
            "generations": results}
