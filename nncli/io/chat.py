"""Chat conversations rendered through a tokenizer's chat template (or one the recipe gives)."""

from __future__ import annotations

from nncli.core.errors import InputError


def render_chat(tok, messages: list[dict], template: str | None, add_generation_prompt: bool = False) -> str:
    kw = {"chat_template": template} if template else {}
    if not template and not getattr(tok, "chat_template", None):
        raise InputError("the tokenizer has no chat template, and the recipe sets none",
                         "set data.chat_template (a Jinja template), or use prompt/completion columns")
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kw)

