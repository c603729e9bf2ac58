"""`nncli predict`: batch inference with the stored label names and calibration temperature.

One output row per input row, in input order: `row` is the input's data-row number (1-based, the header not
counted), `id` the user's id column when there is one, and a row that cannot be scored (an empty text) says so in
`skipped` instead of disappearing, so predictions can be joined back to the input by row number or by id.

PyTorch models (run directories, model directories, hub ids) and ONNX exports; the ONNX path needs only
onnxruntime and tokenizers at run time. Image classifiers predict a folder of images or a CSV/JSONL of image paths
(nncli/deploy/predict_images.py).
"""

from __future__ import annotations

import json
from collections import Counter

from nncli.core import console
from nncli.core.atomic import atomic_write_text
from nncli.core.errors import UsageError
from nncli.core.report import Timer

SKIP_EMPTY = "empty text"


def run(model: str, data: str, *, text_column="text", text_pair_column: str | None = None, output: str | None = None,
        id_column: str | None = None, batch_size: int = 64, threads: int | None = None, limit: int | None = None,
        encoding: str = "utf-8", trust_remote_code: bool = False, allow_pickle: bool = False, overwrite: bool = False,
        image_column: str = "image") -> dict:
    from nncli.core.outputs import prepare_output_file
    from nncli.io.inference import load_classifier, model_dir_of
    from nncli.io.labelled import check_column, to_split
    from nncli.io.tables import read_table

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1", "e.g. --batch-size 64")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be at least 1 (leave it out to predict every row)", "e.g. --limit 100")
    from nncli.io.image_inference import is_image_model

    if is_image_model(model):
        from nncli.deploy import predict_images

        return predict_images.run(model, data, image_column=image_column, output=output, batch_size=batch_size,
                                  threads=threads, limit=limit, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                  overwrite=overwrite)
    table = read_table(data, role="input", encoding=encoding)
    if id_column:
        check_column(table, id_column, "--id-column", "input")
    split, _ = to_split(table, "input", text_column, None, text_pair_column)
    for note in table.notes:
        console.warn(note)
    n_rows = min(table.n_rows, limit) if limit else table.n_rows
    keep = [i for i, r in enumerate(split.rows) if r <= n_rows]
    clf = load_classifier(model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, threads=threads)
    if output:
        prepare_output_file(output, overwrite=overwrite, inputs=[data, model_dir_of(model), clf.path])
    t = Timer()
    texts = [split.texts[i] for i in keep]
    pairs = [split.pairs[i] for i in keep] if split.pairs is not None else None
    probs = clf.predict_proba(texts, pairs, batch_size) if texts else []
    seconds = t()
    records = _records(table, split, keep, probs, clf.label_names, id_column, n_rows)
    skipped = n_rows - len(keep)
    counts = Counter(clf.label_names[int(p.argmax())] for p in probs)
    report = {"task": "predict", "status": "succeeded", "exit_code": 0, "model": model, "backend": clf.backend,
              "rows": n_rows, "scored": len(keep), "skipped": {"empty_text": skipped} if skipped else {},
              "temperature": clf.temperature, "predicted_distribution": dict(counts), "seconds": seconds,
              "throughput_per_second": round(len(keep) / seconds, 2) if seconds else None}
    # stderr has the summary only where stdout does not already say it (the result line under --output), and
    # always the warning about skipped rows
    line = f"predict: {n_rows} input rows, {len(keep)} scored, {skipped} skipped"
    if skipped:
        console.warn(f"{line} ({SKIP_EMPTY}: their rows say skipped)")
    elif not output:
        console.log(f"{line} ({report['throughput_per_second']} texts/s, {clf.backend})")
    if output:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
        report["output"] = str(output)
    else:
        report["predictions"] = records
    return report


def _records(table, split, keep: list[int], probs, labels: list[str], id_column: str | None, n_rows: int) -> list[dict]:
    """One record per input row 1..n_rows, in order: scored rows carry the prediction, the others why they were skipped."""
    from nncli.io.labelled import clean_text

    id_col = id_column or ("id" if "id" in table.columns else None)
    ids = table.columns[id_col] if id_col else None
    text_col = split.columns.get("text")
    scored = {split.rows[i]: (i, p) for i, p in zip(keep, probs)}
    out = []
    for row in range(1, n_rows + 1):
        rec: dict = {"row": row}
        if ids is not None:
            rec["id"] = ids[row - 1]
        if row in scored:
            i, p = scored[row]
            k = int(p.argmax())
            rec.update(text=split.texts[i], predicted=labels[k], confidence=round(float(p[k]), 6),
                       probabilities={n: round(float(v), 6) for n, v in zip(labels, p)}, skipped=None)
        else:
            rec.update(text=clean_text(table.columns[text_col][row - 1], clean=False), predicted=None, confidence=None,
                       probabilities=None, skipped=SKIP_EMPTY)
        out.append(rec)
    return out
