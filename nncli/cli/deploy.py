"""nncli export, quantize, bench, generate and predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from nncli.cli.app import app
from nncli.cli.args import columns, int_list, model_and_overrides
from nncli.cli.options import LabelColOpt, OverwriteOpt, PairColOpt, TextColOpt, command_options, positional
from nncli.cli.output import stdout
from nncli.core.errors import UsageError


@app.command()
@command_options()
def export(
    args: positional("[RECIPE.yaml] MODEL [KEY=VALUE]...",
                      "A run directory, model directory or hub id (and optionally a recipe and overrides).") = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="onnx (default) or safetensors.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Export directory (default: <run>/onnx).")] = None,
    data: Annotated[str | None,
                    typer.Option("--data", "-d", help="Texts for the parity check (default: the run's validation data).")] = None,
    text_column: TextColOpt = None,
    atol: Annotated[float | None, typer.Option(help="Largest acceptable absolute logit difference (default 1e-4).")] = None,
    max_flipped: Annotated[int | None, typer.Option(help="Largest acceptable number of changed predictions (default 0).")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: optimum's choice).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export directory.", metavar="")] = False,
):
    """Export a model to ONNX (or safetensors) and refuse it (exit 5) if its outputs differ from the source.

    Examples:

      nncli export runs/quickstart/finetune

      nncli export runs/quickstart/finetune --output exports/reviews --atol 1e-5 --json

      nncli export ./my-model --data valid.csv --text-column review --output exports/my-model
    """
    def job():
        from nncli.deploy import export as ex
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe

        recipe_name, model, overrides = model_and_overrides(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model": model, "format": format, "output": output, "parity.data": data,
                 "parity.text_column": columns(text_column),
                 "parity.atol": atol, "parity.max_flipped": max_flipped, "opset": opset}
        return ex.run(load_recipe("export", path, overrides, flags), overwrite=overwrite)

    def render(r):
        p = r.get("parity", {})
        stdout().print(f"export {r['status']}: {r['format']} -> {r.get('artifacts')}\nparity on {p.get('samples')} "
                        f"{'images' if r.get('task') == 'image-classification' else 'texts'}: "
                        f"max |Δlogit| {p.get('max_abs_diff', float('nan')):.2e} (limit {p.get('atol')}), mean "
                        f"{p.get('mean_abs_diff', float('nan')):.2e}, agreement {p.get('agreement', float('nan')):.4f}, "
                        f"flipped {p.get('flipped')}", markup=False)

    return job, render



# ---------------------------------------------------------------------------------------------- quantize

@app.command()
@command_options()
def quantize(
    args: positional("[RECIPE.yaml] MODEL [KEY=VALUE]...", "A run directory or model directory (a sequence classifier).") = None,
    method: Annotated[str | None, typer.Option(help="auto (default: the fastest within budget), dynamic or static.")] = None,
    backend: Annotated[str | None, typer.Option(help="auto (default: both), torch or onnxruntime.")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Largest acceptable accuracy loss in points (default 1.0).")] = None,
    max_flip_rate: Annotated[float | None,
                             typer.Option(help="Largest acceptable share of changed predictions, e.g. 0.05 "
                                               "(default: no limit).")] = None,
    output: Annotated[str | None,
                      typer.Option("--output", "-o", help="Where the chosen model goes (default <run>/quantized).")] = None,
    data: Annotated[str | None,
                    typer.Option("--data", "-d",
                                 help="Labelled data for accuracy (default: the run's validation split).")] = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Quantize to int8 and keep the fastest candidate within --max-drop accuracy points; otherwise write nothing (exit 5).

    Examples:

      nncli quantize runs/quickstart/finetune

      nncli quantize runs/quickstart/finetune --backend onnxruntime --max-drop 0.5 --max-flip-rate 0.05 --json

      nncli quantize ./my-model --data valid.csv --text-column review --label-column stars --output models/int8
    """
    def job():
        from nncli.deploy import quantize as qz
        from nncli.recipe.load import load_recipe
        from nncli.recipe.shipped import find_recipe

        recipe_name, model, overrides = model_and_overrides(args)
        path = find_recipe(recipe_name) if recipe_name else None
        flags = {"model": model, "method": method, "backend": backend, "max_drop": max_drop, "max_flip_rate": max_flip_rate,
                 "output": output, "data.path": data, "data.label_column": label_column,
                 "data.text_column": columns(text_column)}
        return qz.run(load_recipe("quantize", path, overrides, flags), overwrite=overwrite)

    return job, _render_quantize


def _render_quantize(r: dict) -> None:
    from rich.table import Table

    t = Table(title=f"quantize: {r['status']}" + (f", chose {r['chosen']}" if r.get("chosen") else ""))
    for col in ("candidate", "accuracy", "95% CI", "n", "drop (pts)", "flips", "batch-1 ms", "throughput/s", "speed-up", "MB",
                "status"):
        t.add_column(col)
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for c in r.get("candidates", []):
        ci = c.get("accuracy_ci95")
        t.add_row(c["candidate"], f(c.get("accuracy"), ".4f"), f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-",
                  str(c.get("n_labelled", "-")),
                  f(None if c.get("accuracy_drop") is None else c["accuracy_drop"] * 100, "+.2f"),
                  f(c.get("flip_rate"), ".1%"), f(c.get("latency_ms_batch1"), ".1f"), f(c.get("throughput_per_second"), ".1f"),
                  f(c.get("speedup"), ".2f"), f(c.get("size_mb"), ".1f"), c.get("status", ""))
    stdout().print(t)



@app.command()
@command_options()
def bench(
    models: Annotated[list[str], typer.Argument(help="Run directories, model directories or ONNX exports.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    seq_lens: Annotated[str, typer.Option(help="Comma-separated sequence lengths (tokens).")] = "32,128",
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    torch_int8: Annotated[bool, typer.Option("--torch-int8", help="Also time PyTorch dynamic int8 of each PyTorch model.",
                                             metavar="")] = False,
    min_seconds: Annotated[float, typer.Option(help="Time each configuration at least this long.")] = 2.0,
    output: Annotated[str | None,
                      typer.Option("--output", "-o", help="Write report.json and latency_throughput.png here.")] = None,
    overwrite: OverwriteOpt = False,
    baseline: Annotated[str | None, typer.Option(help="An earlier bench report.json to compare with.")] = None,
    fail_if_slower: Annotated[str | None, typer.Option(
        help="With --baseline: exit 5 if throughput falls by more than this: a percentage (10%) or a fraction (0.10).")] = None,
):
    """Measure latency (p50/p95/p99) and throughput per batch size and length, models and backends side by side.

    Examples:

      nncli bench runs/quickstart/finetune runs/quickstart/finetune/onnx runs/quickstart/finetune/quantized \\
        --torch-int8 -o runs/bench

      nncli bench runs/quickstart/finetune/onnx --batch-sizes 1,32 --seq-lens 128 \\
        --baseline runs/bench/report.json --fail-if-slower 10%
    """
    def job():
        from nncli.core.report import parse_slowdown
        from nncli.deploy import bench as bn

        pct = parse_slowdown(fail_if_slower) if fail_if_slower is not None else None
        return bn.run(models, batch_sizes=int_list(batch_sizes, "--batch-sizes"), seq_lens=int_list(seq_lens, "--seq-lens"),
                      threads=threads, torch_int8=torch_int8, output=output, overwrite=overwrite, baseline=baseline,
                      fail_if_slower=pct, min_seconds=min_seconds)

    def render(r):
        from rich.table import Table

        t = Table(title=f"bench on {r['machine']['cpu']} ({r['machine']['cores']} cores)")
        for col in ("model", "backend", "batch", "tokens", "p50 ms", "p95 ms", "p99 ms", "examples/s"):
            t.add_column(col)
        for x in r["results"]:
            t.add_row(Path(x["model"].rstrip("/")).name, x["backend"], str(x["batch_size"]), str(x["seq_len"]),
                      f"{x['p50_ms']:.1f}",
                      f"{x['p95_ms']:.1f}", f"{x['p99_ms']:.1f}", f"{x['throughput_per_second']:.1f}")
        out = stdout()
        out.print(t)
        out.print(r["machine"]["int8_note"], markup=False)
        for g in r.get("gates", []):
            out.print(f"{g['metric']}: {g['value']:.2f}x -> {'pass' if g['passed'] else 'FAIL'}", markup=False)

    return job, render



# ---------------------------------------------------------------------------------------------- generate

@app.command()
@command_options()
def generate(
    model: Annotated[str, typer.Argument(help="A causal-LM run directory, its merged/ folder, a model directory or hub id.")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", metavar="TEXT", help="A prompt (repeatable).")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="A file of prompts.")] = None,
    prompt_column: Annotated[str, typer.Option(help="With --data: the prompt column.")] = "prompt",
    limit: Annotated[int, typer.Option(help="With --data: the first N prompts.")] = 20,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy; > 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling (with --temperature).")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0 = off).")] = 0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap each prompt as a user message in the chat template.",
                                       metavar="")] = False,
):
    """Generate text from a causal LM, for a quick look at what a fine-tune produces.

    Examples:

      nncli generate runs/chat --prompt "Summarise: the kettle broke after a week" --chat

      nncli generate runs/domain --data prompts.csv --prompt-column question --temperature 0.7 --top-p 0.9 --json
    """
    def job():
        from nncli.deploy import generate as gen

        if bool(prompt) == bool(data):
            raise UsageError("generate needs --prompt or --data (one of them)", 'e.g. --prompt "Once upon a time"')
        if max_new_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise UsageError("--max-new-tokens must be >= 1, --temperature >= 0, --top-p in (0, 1]",
                             "e.g. --temperature 0.7 --top-p 0.9")
        prompts = list(prompt or [])
        if data:
            from nncli.io.labelled import read_texts

            s, _, _ = read_texts(data, prompt_column, role="prompts", clean=False)
            prompts = s.texts[:limit]
        return gen.generate_command(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    top_k=top_k,
                                    seed=seed, chat=chat)

    def render(r):
        out = stdout()
        for g in r["generations"]:
            out.print(f"[bold]{g['prompt']}[/]", highlight=False)
            out.print(g["generated"], markup=False, highlight=False)
            out.print("")

    return job, render



# ---------------------------------------------------------------------------------------------- predict

@app.command()
@command_options()
def predict(
    model: Annotated[str, typer.Argument(help="Run directory, model directory, hub id or ONNX export.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Texts: a CSV/TSV/JSON/JSONL/parquet file; images: a folder "
                                      "or a CSV/JSONL of paths.")],
    text_column: TextColOpt = None,
    text_pair_column: PairColOpt = None,
    image_column: Annotated[str, typer.Option(help="Images: the listing's column of image paths.")] = "image",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write JSONL here (default: JSONL on stdout).")] = None,
    id_column: Annotated[str | None,
                         typer.Option(help="Column copied to each prediction as its id (default: 'id' if present).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per batch.")] = 64,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
):
    """Predict labels for a file of texts, with the model's label names and calibration temperature.

    One JSONL row per input row, in order: "row" is the input's data-row number (1-based), "id" the --id-column value,
    and rows that cannot be scored (empty text) carry "skipped" instead of a prediction.

    Examples:

      nncli predict runs/quickstart/finetune --data new_reviews.csv --output preds.jsonl

      nncli predict runs/quickstart/finetune/onnx --data new.jsonl --text-column body > preds.jsonl

      nncli predict runs/digits --data photos/ -o preds.jsonl   # an image classifier: every image under the folder
    """
    def job():
        from nncli.deploy import predict as pr

        cols = columns(text_column) or "text"
        return pr.run(model, data, text_column=cols, text_pair_column=text_pair_column, output=output, id_column=id_column,
                      batch_size=batch_size, threads=threads, limit=limit, overwrite=overwrite, image_column=image_column)

    def render(r):
        if "predictions" in r:
            sys.stdout.write("".join(json.dumps(p, ensure_ascii=False, default=str) + "\n" for p in r["predictions"]))
        else:
            stdout().print(f"{r['rows']} rows ({r['scored']} scored) -> {r['output']} ({r['backend']}, "
                           f"{r['throughput_per_second']} "
                           f"texts/s); predicted: {r['predicted_distribution']}", markup=False)

    return job, render
