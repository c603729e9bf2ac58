"""`nncli generate`: greedy or sampled generations from a causal LM (a quick look at what a fine-tune produces).

`generate()` is also what training uses for its sample generations; it feeds the model only the tokenizer outputs
its forward accepts."""

from __future__ import annotations

from nncli.core.errors import InputError
from nncli.io.chat import render_chat


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


def generate_command(model_name: str, prompts: list[str], *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                     top_k: int = 0, seed: int = 0, chat: bool = False, threads: int | None = None) -> dict:
    from transformers import AutoModelForCausalLM

    from nncli.io.inference import model_dir_of
    from nncli.io.models import load_tokenizer, resolve
    from nncli.core.machine import set_threads

    set_threads(threads)
    d = model_dir_of(model_name)
    resolved = resolve(str(d) if d else model_name, None, False)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, use_safetensors=True).eval()
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load {model_name} as a causal LM: {str(e).splitlines()[0][:200]}",
                         "pass a run directory of a causal-LM fine-tune, its merged/ folder, or a decoder model") from e
    tok = load_tokenizer(resolved.path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    results = []
    for p in prompts:
        text = render_chat(tok, [{"role": "user", "content": p}], None, add_generation_prompt=True) if chat else p
        results.append({"prompt": p, "generated": generate(model, tok, text, max_new_tokens=max_new_tokens, temperature=temperature,
                                                            top_p=top_p, top_k=top_k, seed=seed)})
    return {"status": "succeeded", "exit_code": 0, "task": "generate", "model": model_name,
            "settings": {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
                         "greedy": temperature == 0}, "generations": results}

