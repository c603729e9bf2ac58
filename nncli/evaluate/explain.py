"""`nncli explain`: token attributions for a prediction, and how faithful they are.

Methods (each gives one score per word; sub-word scores are summed into their word):
- `ig`: integrated gradients (Captum's LayerIntegratedGradients) on the input embeddings, from a
  baseline where every non-special token is the pad token, of the predicted class's probability
  (completeness: the scores sum to p(text) - p(baseline), up to the reported convergence delta);
- `occlusion`: the drop in the predicted class's probability when the word is removed;
- `attention`: attention rollout (Abnar & Zuidema, 2020): head-averaged attention plus identity,
  multiplied through the layers, read from the first token's row. Cheap; says where the model looks,
  not what pushes the prediction — its faithfulness is usually the lowest, and the report shows it.

Faithfulness, measured: comprehensiveness (drop in the predicted class's probability when the top-k
words are removed) and sufficiency (drop when only the top-k words are kept), against the same for k
random words (averaged over several draws), averaged over the texts. Higher comprehensiveness and lower
sufficiency than random mean the ranking carries information about what the model used.

Causal language models: the "prediction" is the most likely next token; the same methods attribute its
probability to the words of the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError, UsageError, missing_extra
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir
from nncli.evaluate.explain_common import RANDOM_DRAWS, check_methods, ig_converged, ig_schedule, write_outputs
from nncli.evaluate.explain_views import to_html

METHODS = ("ig", "occlusion", "attention")


class Explainer:
    """Wraps a PyTorch classifier or causal LM: probabilities of a target for batches of token sequences."""

    def __init__(self, name: str, *, max_length: int | None = None, threads: int | None = None, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from nncli.core.machine import set_threads
        from nncli.io.inference import model_dir_of, read_temperature
        from nncli.io.models import check_labels, is_weights_error, load_config, load_tokenizer, resolve, weights_error

        set_threads(threads)
        p = Path(name)
        d = model_dir_of(name)
        if (p.is_file() and p.suffix == ".onnx") or (d is not None and any(d.glob("*.onnx"))):
            raise InputError(f"{name} is an ONNX export: attributions need gradients and attentions of the PyTorch model",
                             "pass the run directory or its merged/ folder")
        resolved = resolve(name, None, False)
        config = load_config(resolved.path, trust_remote_code)
        archs = " ".join(config.architectures or [])
        self.causal = "ForCausalLM" in archs or "LMHead" in archs
        cls = AutoModelForCausalLM if self.causal else AutoModelForSequenceClassification
        try:
            self.model = cls.from_pretrained(resolved.path, use_safetensors=True, attn_implementation="eager",
                                             trust_remote_code=trust_remote_code).eval()
        except Exception as e:
            if is_weights_error(e):
                raise weights_error(e, resolved.path) from None
            if not isinstance(e, ValueError):
                raise
            raise InputError(f"cannot load {name} for explanations: {str(e).splitlines()[0][:200]}",
                             "pass a sequence classifier or causal LM directory with safetensors weights") from e
        self.path = resolved.path
        self.tok = load_tokenizer(resolved.path, trust_remote_code)
        if not getattr(self.tok, "is_fast", False):
            raise InputError(f"{name}: explanations need a fast tokenizer (word offsets)", "use a model with a tokenizer.json")
        self.torch = torch
        self.name = name
        self.max_length = max_length or min(512, getattr(config, "max_position_embeddings", 512) or 512)
        self.temperature = 1.0 if self.causal else read_temperature(Path(resolved.path))
        self.labels = None if self.causal else check_labels(config, resolved.path)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else (self.tok.eos_token_id or 0)

    # --- encoding
    def encode(self, text: str) -> dict:
        enc = self.tok(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        ids = enc["input_ids"]
        special = set(self.tok.all_special_ids)
        word_ids = enc.word_ids()
        words: list[list[int]] = []
        spans: list[tuple[int, int]] = []
        last = None
        for i, w in enumerate(word_ids):
            if w is None or ids[i] in special:
                continue
            if w != last:
                words.append([i])
                spans.append(tuple(enc["offset_mapping"][i]))
                last = w
            else:
                words[-1].append(i)
                spans[-1] = (spans[-1][0], enc["offset_mapping"][i][1])
        spans = [_trim(text, a, b) for a, b in spans]   # byte-level BPE offsets include the leading space
        return {"text": text, "ids": ids, "words": words, "spans": spans,
                "word_text": [text[a:b] for a, b in spans], "truncated": self._truncation(text, ids, words, spans)}

    def _truncation(self, text: str, ids: list[int], words: list, spans: list) -> dict | None:
        """What the model did not see of a text longer than max_length tokens (None when it saw all of it)."""
        full = self.tok(text, truncation=False, verbose=False)
        if len(full["input_ids"]) <= len(ids):
            return None
        n_words = len({w for w in full.word_ids() if w is not None})
        seen = spans[-1][1] if spans else 0
        return {"tokens": len(full["input_ids"]), "max_length": self.max_length, "words": n_words,
                "words_explained": len(words), "characters": len(text), "characters_explained": seen}

    def _forward_probs(self, ids_list: list[list[int]], target: int) -> np.ndarray:
        torch = self.torch
        out = []
        for i in range(0, len(ids_list), 32):
            chunk = ids_list[i:i + 32]
            width = max(len(x) for x in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, x in enumerate(chunk):
                if self.causal:   # left-pad so the last position is the next-token position
                    ids[r, width - len(x):] = torch.tensor(x)
                    mask[r, width - len(x):] = 1
                else:
                    ids[r, :len(x)] = torch.tensor(x)
                    mask[r, :len(x)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                logits = logits[:, -1] if self.causal else logits
                out.append(torch.softmax(logits.float() / self.temperature, -1)[:, target].numpy())
        return np.concatenate(out)

    def predict(self, e: dict) -> tuple[int, float, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            ids = torch.tensor([e["ids"]])
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            logits = logits[0, -1] if self.causal else logits[0]
            p = torch.softmax(logits.float() / self.temperature, -1).numpy()
        t = int(p.argmax())
        return t, float(p[t]), p

    def label_of(self, target: int) -> str:
        return self.tok.decode([target]) if self.causal else self.labels[target]

    def without(self, e: dict, drop: set[int]) -> list[int]:
        """Token ids with the given words removed (special tokens kept)."""
        gone = {i for w in drop for i in e["words"][w]}
        return [t for i, t in enumerate(e["ids"]) if i not in gone]

    def only(self, e: dict, keep: set[int]) -> list[int]:
        return self.without(e, set(range(len(e["words"]))) - keep)

    # --- methods
    def occlusion(self, e: dict, target: int, p: float) -> tuple[np.ndarray, dict]:
        variants = [self.without(e, {w}) for w in range(len(e["words"]))]
        probs = self._forward_probs(variants, target) if variants else np.zeros(0)
        return p - probs, {}

    def integrated_gradients(self, e: dict, target: int, steps: int = 50) -> tuple[np.ndarray, dict]:
        try:
            from captum.attr import LayerIntegratedGradients
        except ImportError:
            raise missing_extra("captum", "explain") from None
        torch = self.torch
        ids = torch.tensor([e["ids"]])
        special = set(self.tok.all_special_ids)
        base = torch.tensor([[t if t in special else self.pad_id for t in e["ids"]]])
        mask = torch.ones_like(ids)

        def fwd(input_ids, attention_mask):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask.expand(input_ids.shape[0], -1)).logits
            logits = logits[:, -1] if self.causal else logits
            return torch.softmax(logits.float() / self.temperature, -1)[:, target]

        lig = LayerIntegratedGradients(fwd, self.model.get_input_embeddings())
        with torch.no_grad():
            gap = float(fwd(ids, mask)[0] - fwd(base, mask)[0])
        # a saturated softmax can change within a sliver of the path: refine until the scores add up, within a
        # compute budget (long texts get fewer refinements: cost grows with steps x tokens)
        for n in ig_schedule(steps, max(steps, 100_000 // max(ids.shape[1], 1))):
            attr, delta = lig.attribute(ids, baselines=base, additional_forward_args=(mask,), n_steps=n,
                                        internal_batch_size=min(n, 256), return_convergence_delta=True)
            if ig_converged(float(delta.abs().max()), gap):
                break
        tok_scores = attr.sum(-1)[0].detach().numpy()
        scores = np.array([tok_scores[idx].sum() for idx in e["words"]])
        return scores, {"total_attribution": float(tok_scores.sum()), "prob_minus_baseline": gap,
                        "convergence_delta": float(delta.abs().max()), "steps": n}

    def attention_rollout(self, e: dict) -> tuple[np.ndarray, dict]:
        torch = self.torch
        ids = torch.tensor([e["ids"]])
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
        if not out.attentions:
            raise InputError(f"{self.name} does not return attention weights", "use --method ig or occlusion")
        n = ids.shape[1]
        roll = torch.eye(n)
        for a in out.attentions:
            a = a[0].float().mean(0)
            a = 0.5 * a + 0.5 * torch.eye(n)
            a = a / a.sum(-1, keepdim=True)
            roll = a @ roll
        row = roll[-1] if self.causal else roll[0]   # the position the prediction is read from
        tok = row.numpy()
        return np.array([tok[idx].sum() for idx in e["words"]]), {}


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    return a, b


# ---------------------------------------------------------------------------------------------- faithfulness

def faithfulness(ex: Explainer, e: dict, target: int, p: float, scores: np.ndarray, k: int, rng) -> dict:
    n = len(e["words"])
    k = min(k, n)
    if k == 0:
        return {}
    top = set(np.argsort(-scores)[:k].tolist())
    variants = [ex.without(e, top), ex.only(e, top)]
    draws = []
    for _ in range(RANDOM_DRAWS):
        r = set(rng.choice(n, k, replace=False).tolist())
        draws.append(r)
        variants += [ex.without(e, r), ex.only(e, r)]
    probs = ex._forward_probs(variants, target)
    rand_c = float(np.mean([p - probs[2 + 2 * i] for i in range(RANDOM_DRAWS)]))
    rand_s = float(np.mean([p - probs[3 + 2 * i] for i in range(RANDOM_DRAWS)]))
    return {"comprehensiveness": float(p - probs[0]), "sufficiency": float(p - probs[1]),
            "comprehensiveness_random": rand_c, "sufficiency_random": rand_s, "k": k}


# ---------------------------------------------------------------------------------------------- command

def run(model: str, *, text: str | None = None, data: str | None = None, text_column=None, limit: int = 50,
        methods: list[str] | None = None, output: str | None = None, overwrite: bool = False, top_k: int = 3,
        steps: int = 50, threads: int | None = None, seed: int = 0, image: dict | None = None) -> dict:
    """Explain a text model's predictions; an image classifier's go to explain_images.run (with `image` options)."""
    from nncli.io.image_inference import is_image_model

    if is_image_model(model):
        from nncli.evaluate import explain_images

        return explain_images.run(model, text=text, data=data, limit=limit, methods=methods, output=output,
                                  overwrite=overwrite, steps=steps, threads=threads, seed=seed, **(image or {}))
    timer = Timer()
    methods = methods or list(METHODS)
    check_methods(methods, METHODS)
    if (text is None) == (data is None):
        raise UsageError("explain needs exactly one of --text or --data", 'e.g. --text "great value" or --data reviews.csv')
    out = RunDir(output, command="explain") if output else None
    if out is not None:
        out.check(overwrite=overwrite, inputs=[data])    # fail fast; prepared once the explanations are computed
    texts, source = _texts_to_explain(text, data, text_column, limit)
    ex = Explainer(model, threads=threads)
    rng = np.random.default_rng(seed)
    results, notes = [], []
    faith = {m: [] for m in methods}
    for i, t in enumerate(texts):
        item = _explain_one(ex, t, methods, steps=steps, top_k=top_k, rng=rng, faith=faith, notes=notes, where=(i, len(texts)))
        if item is None:
            continue
        results.append(item)
        if len(texts) > 1 and (i + 1) % 10 == 0:
            console.log(f"explained {i + 1}/{len(texts)} texts")
    if not results:
        raise InputError(f"no text with words to explain in {source}", "check the text column")
    summary = {m: _mean_faith(v, top_k) for m, v in faith.items() if v}
    report = base_report("explain", None)
    report.update(model=model, source=source, texts=len(results), methods=methods, causal_lm=ex.causal,
                  faithfulness=summary, explanations=results, environment=environment(threads), warnings=notes,
                  truncated=sum(1 for r in results if r.get("truncated")))
    if len(results) > 1:
        report["shortcuts"] = shortcuts(results, methods[0])
    if out is not None:
        out.prepare(overwrite=overwrite, inputs=[data, ex.path])
        write_outputs(out, report, timer, lambda: {
            "explanations.html": to_html(report),
            "explanations.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)},
            {"html": "explanations.html", "jsonl": "explanations.jsonl"})
    report.update(status="succeeded", exit_code=0, finished_at=now(), timings={"wall_seconds": timer()})
    return report


def _texts_to_explain(text: str | None, data: str | None, text_column, limit: int) -> tuple[list[str], str]:
    if text is not None:
        if not text.strip():
            raise UsageError("--text is empty", 'pass the text to explain, e.g. --text "great value"')
        return [text], "--text"
    from nncli.io.labelled import read_texts

    s, _, _ = read_texts(data, text_column or "text", role="explain data")
    return s.texts[:limit], s.source


def _explain_one(ex: Explainer, t: str, methods: list[str], *, steps: int, top_k: int, rng, faith: dict, notes: list[str],
                 where: tuple[int, int]) -> dict | None:
    """Scores of every method for one text (text `where[0]` of `where[1]`), with their faithfulness (appended to `faith`;
    a truncation note to `notes`); None for a text without words."""
    e = ex.encode(t)
    if not e["words"]:
        return None
    target, p, _ = ex.predict(e)
    item = {"text": t, "prediction": ex.label_of(target), "probability": p, "words": e["word_text"],
            "spans": e["spans"], "scores": {}, "details": {}}
    if e["truncated"]:
        item["truncated"] = e["truncated"]
        notes.append(_truncation_note(*where, e["truncated"]))
        console.warn(notes[-1])
    for m in methods:
        if m == "ig":
            sc, det = ex.integrated_gradients(e, target, steps)
        elif m == "occlusion":
            sc, det = ex.occlusion(e, target, p)
        else:
            sc, det = ex.attention_rollout(e)
        item["scores"][m] = [float(x) for x in sc]
        if det:
            item["details"][m] = det
        f = faithfulness(ex, e, target, p, sc, top_k, rng)
        item.setdefault("faithfulness", {})[m] = f
        if f:
            faith[m].append(f)
    ig = item["details"].get("ig")
    if ig and not ig_converged(ig["convergence_delta"], ig["prob_minus_baseline"]):
        item["warnings"] = [f"integrated gradients did not converge in {ig['steps']} steps "
                            f"(delta {ig['convergence_delta']:.3f}); treat its scores for this text with care"]
    return item


def _truncation_note(i: int, n: int, t: dict) -> str:
    which = "the text" if n == 1 else f"text {i + 1}"
    return (f"{which} has {t['tokens']} tokens, more than the model's {t['max_length']}: only its first "
            f"{t['words_explained']} of {t['words']} words ({t['characters_explained']} of {t['characters']} characters) were "
            "explained; the rest was truncated and played no part in the prediction")


def _mean_faith(items: list[dict], k: int) -> dict:
    keys = ("comprehensiveness", "comprehensiveness_random", "sufficiency", "sufficiency_random")
    return {**{key: float(np.mean([x[key] for x in items])) for key in keys}, "k": k, "texts": len(items)}


def shortcuts(results: list[dict], method: str, top: int = 10) -> dict:
    """Per predicted class: the words that most often rank first-to-third in pushing towards it."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in results:
        sc = r["scores"].get(method)
        if not sc:
            continue
        order = np.argsort(-np.asarray(sc))[:3]
        for j in order:
            if sc[j] <= 0:
                continue
            w = r["words"][j].lower()
            by.setdefault(r["prediction"], {}).setdefault(w, []).append(sc[j])
    return {cls: [{"word": w, "count": len(v), "mean_score": float(np.mean(v))}
                  for w, v in sorted(words.items(), key=lambda kv: (-len(kv[1]), -np.mean(kv[1])))[:top]]
            for cls, words in by.items()}
